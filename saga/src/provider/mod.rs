//! The seam between the saga and a payment provider, which lies outside the system.
//!
//! Every call carries an idempotency key, so that the saga can retry after a timeout or a
//! crash without charging twice: a provider answers a repeated key with its first answer.
//! The saga derives the keys from its own ids, so a restarted saga sends the same keys.
//!
//! [`SimulatedProvider`] is the default provider; a real one would implement
//! [`PaymentProvider`] over HTTP.

mod simulated;

pub use simulated::{
    EntryState, Ledger, LedgerEntry, SimulatedProvider, SimulatorConfig, UnknownEntryState,
};

use domain::ids::{OrderId, PaymentId};
use domain::money::Money;

/// A payment provider: authorise, capture, void and refund card payments.
///
/// Every method is idempotent by the request's idempotency key, so retrying after a
/// [`ProviderError::Transient`] with the same key is always safe.
#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Authorises an amount on a card. The same idempotency key always gets the first answer.
    ///
    /// # Errors
    /// [`ProviderError::Declined`] when the card is refused, [`ProviderError::Transient`]
    /// when the call may be retried, [`ProviderError::Refused`] when the key was voided.
    async fn authorise(&self, request: &AuthoriseRequest) -> Result<Authorisation, ProviderError>;

    /// Captures (part of) an authorisation, once per idempotency key.
    ///
    /// # Errors
    /// [`ProviderError::Refused`] when the authorisation cannot be captured (voided,
    /// declined, already captured, amount above the authorised one),
    /// [`ProviderError::Transient`] when the call may be retried.
    async fn capture(&self, request: &CaptureRequest) -> Result<(), ProviderError>;

    /// Voids whatever the authorise call with `authorisation_key` did or will do; safe to repeat.
    ///
    /// # Errors
    /// [`ProviderError::Refused`] when the money was already captured (refund it instead),
    /// [`ProviderError::Transient`] when the call may be retried.
    async fn void(&self, request: &VoidRequest) -> Result<VoidOutcome, ProviderError>;

    /// Refunds captured money, once per idempotency key.
    ///
    /// # Errors
    /// [`ProviderError::Refused`] when nothing was captured or the refunds would exceed the
    /// captured amount, [`ProviderError::Transient`] when the call may be retried.
    async fn refund(&self, request: &RefundRequest) -> Result<(), ProviderError>;
}

/// Asks the provider to hold an amount on a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthoriseRequest {
    /// Repeating this key returns the first answer instead of authorising again.
    pub idempotency_key: String,
    /// The payment this authorisation belongs to.
    pub payment_id: PaymentId,
    /// The order being paid.
    pub order_id: OrderId,
    /// The provider's token for the card; the saga never sees card numbers.
    pub card_token: String,
    /// The amount to hold.
    pub amount: Money,
}

/// A successful authorisation: the money is held on the card until captured or voided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorisation {
    /// The provider's reference for the authorisation, for operators and reconciliation.
    pub reference: String,
}

/// Asks the provider to take held money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRequest {
    /// Repeating this key has no further effect.
    pub idempotency_key: String,
    /// The idempotency key of the authorise call whose hold is captured.
    pub authorisation_key: String,
    /// The amount to take, at most the authorised amount.
    pub amount: Money,
}

/// Asks the provider to release a hold, or to refuse an authorisation that has not arrived yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoidRequest {
    /// The key of this void call.
    pub idempotency_key: String,
    /// The idempotency key of the authorise call to void.
    pub authorisation_key: String,
}

/// What a void did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoidOutcome {
    /// A hold existed, or an authorisation was in flight, and it is now released.
    Voided,
    /// Nothing was held (never authorised, or declined); a later authorise with the key is refused.
    NothingToVoid,
    /// The money was already captured: nothing is voided, and giving it back takes a refund.
    AlreadyCaptured,
}

/// Asks the provider to give captured money back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// Repeating this key has no further effect.
    pub idempotency_key: String,
    /// The idempotency key of the authorise call whose captured money is refunded.
    pub authorisation_key: String,
    /// The amount to give back; all refunds together are at most the captured amount.
    pub amount: Money,
}

/// Why a provider call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the payment for good (card declined, insufficient funds).
    #[error("payment declined: {reason}")]
    Declined {
        /// The provider's reason, for the customer and the operator.
        reason: String,
        /// Whether the simulator's failure injection caused it (always false for real providers).
        injected: bool,
    },
    /// Worth retrying with the same idempotency key (timeout, 5xx, rate limit).
    #[error("payment provider unavailable: {0}")]
    Transient(String),
    /// The request breaks the provider's rules (capture after void, refund above captured); retrying cannot help.
    #[error("payment provider refused the request: {0}")]
    Refused(String),
}

impl ProviderError {
    /// Whether retrying the same request with the same idempotency key may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ProviderError::Transient(_))
    }
}
