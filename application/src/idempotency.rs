//! Idempotency keys: the same key twice gives the same ids (so the command bus answers
//! the repeat with the first outcome), and the same key with other input is refused.

use uuid::Uuid;

use crate::error::AppError;
use crate::storefront::{IdempotencyKeys, KeyUse};

/// Namespace of the ids derived from idempotency keys (a fixed v4 uuid; changing it would
/// make a retried request after an upgrade run twice).
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x5e0b_57a3_0a1d_4c8e_9f3b_6c2d_1e4f_0a77);

/// The operations that take an idempotency key. Each one's name is stored with the keys
/// and seeds the ids derived from them, so it is written out, never derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Placing an order.
    PlaceOrder,
    /// Refunding a payment.
    RefundPayment,
    /// Receiving stock.
    ReceiveStock,
    /// Adjusting stock.
    AdjustStock,
}

impl Operation {
    /// The stored name (the GraphQL mutation it first served, kept for the stored keys).
    pub fn name(self) -> &'static str {
        match self {
            Operation::PlaceOrder => "orderPlace",
            Operation::RefundPayment => "paymentRefund",
            Operation::ReceiveStock => "inventoryReceive",
            Operation::AdjustStock => "inventoryAdjust",
        }
    }
}

/// An idempotency key sent with a request, and the request it came with (to tell a
/// retry from a reuse with other input).
#[derive(Debug, Clone, PartialEq)]
pub struct Idempotency {
    /// The caller's key, already checked for length by the edge.
    pub key: String,
    /// The request as the caller sent it.
    pub request: serde_json::Value,
}

/// The id of whatever `operation` by `principal` with idempotency `key` creates: the
/// same three always give the same id, so a retried request finds its first effect.
pub fn keyed_id(principal: Uuid, operation: Operation, key: &str) -> Uuid {
    Uuid::new_v5(
        &IDEMPOTENCY_NAMESPACE,
        format!("{principal}/{}/{key}", operation.name()).as_bytes(),
    )
}

/// The id `idempotency` stands for (`None` without a key): records the first use of the
/// key with its request, and checks a later use against it.
///
/// # Errors
/// [`AppError::Conflict`] when the key was used with other input, a database error
/// otherwise.
pub async fn claim(
    keys: &IdempotencyKeys,
    principal: Uuid,
    operation: Operation,
    idempotency: Option<&Idempotency>,
) -> Result<Option<Uuid>, AppError> {
    let Some(idempotency) = idempotency else {
        return Ok(None);
    };
    let claimed = keys
        .claim(
            principal,
            operation.name(),
            &idempotency.key,
            &idempotency.request,
        )
        .await?;
    if claimed == KeyUse::ReusedWithOtherInput {
        return Err(AppError::Conflict(
            "this idempotency key was used with other input".to_owned(),
        ));
    }
    Ok(Some(keyed_id(principal, operation, &idempotency.key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_the_stored_ones() {
        let all = [
            (Operation::PlaceOrder, "orderPlace"),
            (Operation::RefundPayment, "paymentRefund"),
            (Operation::ReceiveStock, "inventoryReceive"),
            (Operation::AdjustStock, "inventoryAdjust"),
        ];
        for (operation, name) in all {
            assert_eq!(operation.name(), name);
        }
    }

    #[test]
    fn keyed_ids_are_stable_across_releases() {
        // Pinned: a retry after an upgrade must find the first request's effect.
        let principal = Uuid::from_u128(7);
        assert_eq!(
            keyed_id(principal, Operation::PlaceOrder, "k-1"),
            Uuid::new_v5(
                &IDEMPOTENCY_NAMESPACE,
                b"00000000-0000-0000-0000-000000000007/orderPlace/k-1"
            )
        );
        assert_ne!(
            keyed_id(principal, Operation::PlaceOrder, "k-1"),
            keyed_id(principal, Operation::RefundPayment, "k-1")
        );
    }
}
