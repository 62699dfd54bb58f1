//! The payment provider, configured once per process: the saga takes payments through it
//! and the refund use case gives money back through the same one.

use std::sync::Arc;

use saga::provider::SimulatedProvider;
pub use saga::provider::{PaymentProvider, ProviderError, SimulatorConfig};
use sqlx::PgPool;

use crate::error::AppError;

/// Which provider a process pays through, and how it behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProviderSettings {
    /// The simulated provider's behaviour (latency, failure injection); the only
    /// provider today, a real one would be chosen here.
    pub simulator: SimulatorConfig,
}

/// The provider of `settings`, with its ledger in `db`.
///
/// # Errors
/// When the simulator's ledger cannot be installed in PostgreSQL.
pub async fn install(
    db: PgPool,
    settings: &ProviderSettings,
) -> Result<Arc<dyn PaymentProvider>, AppError> {
    let provider = SimulatedProvider::install(db, settings.simulator).await?;
    Ok(Arc::new(provider))
}
