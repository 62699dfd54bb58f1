//! Idempotency keys: every effect a saga step has is named by the saga and the step, so a
//! step run again after a crash (or by a second driver) has its effect once.

use domain::{Actor, CommandMetadata, OrderId};
use uuid::Uuid;

/// The namespace of saga step ids (a fixed v4 uuid; changing it would re-run effects).
const SAGA_STEPS: Uuid = Uuid::from_u128(0x6f1c_2a4e_93b7_4d0a_9c51_0e8d_7a3b_52f1);

/// The command id of `step` in the saga of `order_id`, such as `reserve/MUG-01`.
pub fn step_id(order_id: OrderId, step: &str) -> Uuid {
    Uuid::new_v5(&SAGA_STEPS, format!("{order_id}/{step}").as_bytes())
}

/// The idempotency key sent to the payment provider for `step`.
pub fn provider_key(order_id: OrderId, step: &str) -> String {
    format!("order-{order_id}-{step}")
}

/// An operation the saga asks of the payment provider (temporary: see the saga-steps branch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderStep {
    /// Authorising.
    Authorise,
}

/// The provider key of the authorisation of `order_id`.
pub fn provider_key_of(order_id: OrderId, step: ProviderStep) -> String {
    match step {
        ProviderStep::Authorise => provider_key(order_id, "authorise"),
    }
}

/// The provider idempotency key of an admin's refund.
pub fn admin_refund_key(refund_id: domain::RefundId) -> String {
    format!("refund-{}", refund_id.0)
}

/// The payment aggregate a saga records its provider outcomes on: one per order.
pub fn payment_id(order_id: OrderId) -> domain::PaymentId {
    domain::PaymentId(step_id(order_id, "payment"))
}

/// The metadata of the command a saga step sends: the step id is the idempotency key,
/// the order id correlates everything the order caused.
pub fn step_metadata(order_id: OrderId, step: &str, causation: Uuid) -> CommandMetadata {
    CommandMetadata {
        command_id: step_id(order_id, step),
        correlation_id: order_id.as_uuid(),
        causation_id: causation,
        actor: Actor::System("saga".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_per_saga_and_step_and_differ_otherwise() {
        let a = OrderId(Uuid::from_u128(1));
        let b = OrderId(Uuid::from_u128(2));
        assert_eq!(step_id(a, "reserve/MUG"), step_id(a, "reserve/MUG"));
        assert_ne!(step_id(a, "reserve/MUG"), step_id(a, "release/MUG"));
        assert_ne!(step_id(a, "reserve/MUG"), step_id(b, "reserve/MUG"));
        assert_eq!(payment_id(a), payment_id(a));
        assert_ne!(provider_key(a, "authorise"), provider_key(b, "authorise"));
    }
}
