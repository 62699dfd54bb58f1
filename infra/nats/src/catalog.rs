//! Product commands with catalog-wide SKU uniqueness.
//!
//! The product aggregate sees only itself, so it cannot know whether another product
//! already sells a SKU. This edge reserves the SKUs a command introduces in the `skus`
//! bucket (create-only keys) before the command runs, and releases what it reserved if
//! the aggregate rejects the command.

use domain::product::{Product, ProductCommand, ProductError};
use domain::{CommandMetadata, ErrorCode, ProductId};
use tracing::warn;

use crate::command_bus::{CommandBus, CommandError, CommitOutcome};
use crate::error::ErrorChain;
use crate::sku_registry::{SkuRegistry, SkuReservationError};

/// Why a product command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ProductCommandError {
    /// Another product already holds one of the command's SKUs. Nothing was appended.
    #[error(transparent)]
    SkuTaken(SkuTaken),
    #[error(transparent)]
    Command(#[from] CommandError<ProductError>),
}

/// A SKU the command introduces already belongs to another product: a catalog-wide
/// rule no single product can check, so it is refused here rather than by the aggregate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SKU {sku} already belongs to product {owner}")]
pub struct SkuTaken {
    /// The SKU asked for.
    pub sku: String,
    /// The product that holds it.
    pub owner: String,
}

/// The code is the client's contract, spelled out like the domain's own rejections.
impl ErrorCode for SkuTaken {
    fn code(&self) -> &'static str {
        "SKU_TAKEN"
    }
}

/// Runs product commands, keeping SKUs unique across the catalog.
pub struct ProductCommands {
    bus: CommandBus<Product>,
    skus: SkuRegistry,
}

impl ProductCommands {
    pub fn new(bus: CommandBus<Product>, skus: SkuRegistry) -> Self {
        Self { bus, skus }
    }

    /// The bus under this handler.
    pub fn bus(&self) -> &CommandBus<Product> {
        &self.bus
    }

    /// Reserves the command's new SKUs, then executes it.
    ///
    /// If the command is rejected, the SKUs this call reserved are released. If its
    /// outcome is unknown (NATS unavailable), they stay reserved: the command may have
    /// been stored, and a retry with the same command id finds them already held.
    ///
    /// # Errors
    /// [`ProductCommandError::SkuTaken`], or the command's own [`CommandError`].
    pub async fn execute(
        &self,
        product_id: ProductId,
        command: ProductCommand,
        metadata: &CommandMetadata,
    ) -> Result<CommitOutcome, ProductCommandError> {
        let owner = product_id.to_string();
        let skus: Vec<String> = command
            .new_skus()
            .iter()
            .map(|sku| sku.as_str().to_owned())
            .collect();
        let reserved_now = match self.skus.reserve_all(&skus, &owner).await {
            Ok(reserved_now) => reserved_now,
            Err(SkuReservationError::Taken { sku, owner }) => {
                return Err(ProductCommandError::SkuTaken(SkuTaken { sku, owner }))
            }
            Err(SkuReservationError::Store(error)) => return Err(CommandError::from(error).into()),
        };
        let result = self.bus.execute(&owner, command, metadata).await;
        if matches!(result, Err(CommandError::Rejected(_))) {
            for sku in &reserved_now {
                if let Err(error) = self.skus.release(sku, &owner).await {
                    warn!(sku, error = %ErrorChain(&error), "SKU stays reserved after a rejected command");
                }
            }
        }
        Ok(result?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_sku_keeps_its_code() {
        let taken = SkuTaken {
            sku: "MUG-1".to_owned(),
            owner: "another product".to_owned(),
        };
        assert_eq!(taken.code(), "SKU_TAKEN");
    }
}
