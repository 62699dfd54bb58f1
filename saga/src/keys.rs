//! Idempotency keys: every effect a saga step has is named by the saga and the step, so a
//! step run again after a crash (or by a second driver) has its effect once.
//!
//! Steps are typed ([`SagaStep`], [`ProviderStep`]) and their names are spelled here only:
//! a step misspelled at a call site would get a fresh key and run its effect twice. The
//! names are part of the log (a saga in flight at an upgrade repeats its steps under the
//! keys it used before), so they never change; the tests pin them.

use std::borrow::Cow;
use std::fmt;

use domain::{Actor, CommandMetadata, OrderId, RefundId, Sku};
use uuid::Uuid;

/// The namespace of saga step ids (a fixed v4 uuid; changing it would re-run effects).
const SAGA_STEPS: Uuid = Uuid::from_u128(0x6f1c_2a4e_93b7_4d0a_9c51_0e8d_7a3b_52f1);

/// A step of an order's saga whose command id (or recorded id) is derived from the saga
/// and the step, so that the step's effect happens once however often it runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SagaStep {
    /// Starting the saga on `OrderPlaced`.
    Start,
    /// Noting on the saga the cancellation the trigger read at `position`; each
    /// cancellation event is noted once.
    NoteCancellation {
        /// The global position of the cancelling commit.
        position: u64,
    },
    /// Cancelling an order that cannot start a saga.
    CancelUnstartable,
    /// Recording the outcome of the reserving phase on the saga.
    RecordReserve,
    /// Recording the outcome of the authorising phase on the saga.
    RecordAuthorise,
    /// Recording the outcome of the completing phase on the saga.
    RecordComplete,
    /// Recording the outcome of a compensation round on the saga; an operator's retry
    /// starts another round, which records under its own key.
    RecordCompensate {
        /// The saga's compensation round.
        round: u32,
    },
    /// Reserving the stock of one line.
    Reserve(Sku),
    /// Marking the order's stock reserved.
    MarkStockReserved,
    /// Recording a declined authorisation on the payment.
    RecordDecline,
    /// Recording the authorisation on the payment.
    RecordAuthorisation,
    /// Recording the capture on the payment (while completing, or before a refund when
    /// the provider says it was captured: one command either way).
    RecordCapture,
    /// Committing the stock of one line.
    Commit(Sku),
    /// Confirming the paid order.
    Confirm,
    /// Returning the committed stock of one line.
    Return(Sku),
    /// Releasing the reserved stock of one line.
    Release(Sku),
    /// Cancelling the order while compensating.
    Cancel,
    /// Marking the order refunded after a compensating refund.
    MarkRefunded,
    /// Recording the void on the payment.
    RecordVoid,
    /// Refunding the captured payment while compensating; also the refund's id.
    Refund,
    /// Recording the compensating refund on the payment.
    RecordRefund,
    /// The order's payment aggregate (one per order), not a command.
    Payment,
}

impl SagaStep {
    /// The step's stable name, such as `reserve/MUG-01`: it seeds the step's id and names
    /// the step in the saga's log (a failed compensation records it).
    pub fn name(&self) -> Cow<'static, str> {
        let name = match self {
            SagaStep::Start => "start",
            SagaStep::NoteCancellation { position } => {
                return Cow::Owned(format!("note-cancellation/{position}"))
            }
            SagaStep::CancelUnstartable => "cancel-unstartable",
            SagaStep::RecordReserve => "record/reserve",
            SagaStep::RecordAuthorise => "record/authorise",
            SagaStep::RecordComplete => "record/complete",
            SagaStep::RecordCompensate { round } => {
                return Cow::Owned(format!("record/compensate/{round}"))
            }
            SagaStep::Reserve(sku) => return Cow::Owned(format!("reserve/{sku}")),
            SagaStep::MarkStockReserved => "mark-stock-reserved",
            SagaStep::RecordDecline => "record-decline",
            SagaStep::RecordAuthorisation => "record-authorisation",
            SagaStep::RecordCapture => "record-capture",
            SagaStep::Commit(sku) => return Cow::Owned(format!("commit/{sku}")),
            SagaStep::Confirm => "confirm",
            SagaStep::Return(sku) => return Cow::Owned(format!("return/{sku}")),
            SagaStep::Release(sku) => return Cow::Owned(format!("release/{sku}")),
            SagaStep::Cancel => "cancel",
            SagaStep::MarkRefunded => "mark-refunded",
            SagaStep::RecordVoid => "record-void",
            SagaStep::Refund => "refund",
            SagaStep::RecordRefund => "record-refund",
            SagaStep::Payment => "payment",
        };
        Cow::Borrowed(name)
    }
}

/// For log lines and error messages; keys come from [`SagaStep::name`].
impl fmt::Display for SagaStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// An operation the saga asks of the payment provider, which deduplicates it by the key
/// [`provider_key`] derives from the order and the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderStep {
    /// Authorising the order's amount on the card.
    Authorise,
    /// Capturing the authorised amount.
    Capture,
    /// Voiding the authorisation.
    Void,
    /// Refunding the captured amount while compensating.
    Refund,
}

impl ProviderStep {
    /// The operation's stable name: it ends the provider key and names the step in the
    /// saga's log (a failed compensation records it).
    pub fn name(self) -> &'static str {
        match self {
            ProviderStep::Authorise => "authorise",
            ProviderStep::Capture => "capture",
            ProviderStep::Void => "void",
            ProviderStep::Refund => "refund",
        }
    }
}

/// For log lines and error messages; keys come from [`ProviderStep::name`].
impl fmt::Display for ProviderStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The command id of `step` in the saga of `order_id`.
pub fn step_id(order_id: OrderId, step: &SagaStep) -> Uuid {
    Uuid::new_v5(
        &SAGA_STEPS,
        format!("{order_id}/{}", step.name()).as_bytes(),
    )
}

/// The idempotency key sent to the payment provider for `step` of the order's saga.
pub fn provider_key(order_id: OrderId, step: ProviderStep) -> String {
    format!("order-{order_id}-{}", step.name())
}

/// The idempotency key sent to the payment provider for an admin's refund: one per
/// refund id, so a retried request refunds once, and never the saga's own refund key.
pub fn admin_refund_key(refund_id: RefundId) -> String {
    format!("refund-{}", refund_id.0)
}

/// The payment aggregate a saga records its provider outcomes on: one per order.
pub fn payment_id(order_id: OrderId) -> domain::PaymentId {
    domain::PaymentId(step_id(order_id, &SagaStep::Payment))
}

/// The metadata of the command a saga step sends: the step id is the idempotency key,
/// the order id correlates everything the order caused.
pub fn step_metadata(order_id: OrderId, step: &SagaStep, causation: Uuid) -> CommandMetadata {
    CommandMetadata {
        command_id: step_id(order_id, step),
        correlation_id: order_id.as_uuid(),
        causation_id: causation,
        actor: Actor::System("saga".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn mug() -> Sku {
        Sku::parse("MUG").unwrap()
    }

    #[test]
    fn keys_are_stable_per_saga_and_step_and_differ_otherwise() {
        let a = OrderId(Uuid::from_u128(1));
        let b = OrderId(Uuid::from_u128(2));
        let reserve = SagaStep::Reserve(mug());
        assert_eq!(step_id(a, &reserve), step_id(a, &reserve));
        assert_ne!(step_id(a, &reserve), step_id(a, &SagaStep::Release(mug())));
        assert_ne!(step_id(a, &reserve), step_id(b, &reserve));
        assert_eq!(payment_id(a), payment_id(a));
        assert_ne!(
            provider_key(a, ProviderStep::Authorise),
            provider_key(b, ProviderStep::Authorise)
        );
    }

    /// The keys the string-named steps produced before the steps were typed: a saga in
    /// flight at an upgrade must find its steps under the same ids.
    #[test]
    fn keys_are_those_of_the_string_named_steps() {
        let order = OrderId(Uuid::parse_str("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap());
        let sku = || Sku::parse("MUG-01").unwrap();
        let pinned = [
            (SagaStep::Start, "14e15eec-1144-5910-88c6-8ace017c72c4"),
            (
                SagaStep::NoteCancellation { position: 42 },
                "44354655-2e6d-539a-96ba-a1abfbeccdc3",
            ),
            (
                SagaStep::CancelUnstartable,
                "c476768e-17d1-5c2b-bbd0-d29fbea024c8",
            ),
            (
                SagaStep::RecordReserve,
                "0a00e53f-89b9-595d-b2c1-ccaae3856285",
            ),
            (
                SagaStep::RecordAuthorise,
                "324e18df-d0be-5ce6-856d-bf9008880deb",
            ),
            (
                SagaStep::RecordComplete,
                "7f181055-73b0-5422-9293-91f081f4db88",
            ),
            (
                SagaStep::RecordCompensate { round: 0 },
                "01b0b553-369e-58ba-83b1-b1025dc69a30",
            ),
            (
                SagaStep::RecordCompensate { round: 2 },
                "56f3a6cc-0e0b-5b0f-9909-8a7bde3d21ef",
            ),
            (
                SagaStep::Reserve(sku()),
                "338266d2-dd02-5390-97d4-36fa4f71aa35",
            ),
            (
                SagaStep::MarkStockReserved,
                "9fc8e5de-e546-5b26-bc7c-f53f537abc2a",
            ),
            (
                SagaStep::RecordDecline,
                "24e1f968-74cd-54a5-880e-dc08c0c80c92",
            ),
            (
                SagaStep::RecordAuthorisation,
                "a9ea2679-2af4-5635-a75b-3c4ed585dfbc",
            ),
            (
                SagaStep::RecordCapture,
                "af8e9ee6-feda-5cd1-a054-18337ab4ba7c",
            ),
            (
                SagaStep::Commit(sku()),
                "a2c6c1be-cc73-57fa-978a-08cbfd18c9bb",
            ),
            (SagaStep::Confirm, "3f2f6a6b-15f1-5094-a9e4-395b51b53540"),
            (
                SagaStep::Return(sku()),
                "bf695f21-6fdf-5ee7-bfc6-aa82ae2dd06f",
            ),
            (
                SagaStep::Release(sku()),
                "599064b2-78e0-56ca-b10a-eead050a98a7",
            ),
            (SagaStep::Cancel, "f9e723e2-a53e-515d-b32f-54f43976fc84"),
            (
                SagaStep::MarkRefunded,
                "07db6a36-0f28-5eab-9f0d-55dbaf9d3966",
            ),
            (SagaStep::RecordVoid, "5d4785b1-77e9-5dcd-911b-0532f6adbef6"),
            (SagaStep::Refund, "16be87e1-332c-50af-83ee-461d26af8550"),
            (
                SagaStep::RecordRefund,
                "8fa500b0-b580-59cb-b931-f7e2df0bce3f",
            ),
            (SagaStep::Payment, "eae05dfa-d7ec-5725-90e3-dfe212a1edb6"),
        ];
        for (step, id) in &pinned {
            assert_eq!(step_id(order, step).to_string(), *id, "{step:?}");
        }
        assert_eq!(
            payment_id(order).to_string(),
            "eae05dfa-d7ec-5725-90e3-dfe212a1edb6"
        );
        // No two steps share an id, so none does another's effect.
        let ids: HashSet<Uuid> = pinned
            .iter()
            .map(|(step, _)| step_id(order, step))
            .collect();
        assert_eq!(ids.len(), pinned.len());

        let order_key = "order-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        for (step, suffix) in [
            (ProviderStep::Authorise, "authorise"),
            (ProviderStep::Capture, "capture"),
            (ProviderStep::Void, "void"),
            (ProviderStep::Refund, "refund"),
        ] {
            assert_eq!(provider_key(order, step), format!("{order_key}-{suffix}"));
        }
        assert_eq!(
            admin_refund_key(RefundId(Uuid::from_u128(7))),
            "refund-00000000-0000-0000-0000-000000000007"
        );
    }
}
