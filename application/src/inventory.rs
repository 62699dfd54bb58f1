//! Stock: receiving goods and correcting what is on hand (staff).

use domain::inventory::InventoryCommand;
use domain::{Actor, CommandMetadata, Sku};
use infra_nats::CommitOutcome;
use uuid::Uuid;

use crate::error::{committed, Refusal, Rejection, UseCaseResult};
use crate::idempotency::{self, Idempotency, Operation};
use crate::Shop;

/// A change of stock on hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockChange {
    /// Goods arrived.
    Receive {
        /// Units, at least 1.
        quantity: u32,
        /// The delivery's reference (a purchase order).
        reference: String,
    },
    /// A correction after a count, up or down.
    Adjust {
        /// Units added (positive) or removed (negative).
        delta: i64,
        /// Why.
        reason: String,
    },
}

impl StockChange {
    fn operation(&self) -> Operation {
        match self {
            StockChange::Receive { .. } => Operation::ReceiveStock,
            StockChange::Adjust { .. } => Operation::AdjustStock,
        }
    }

    fn command(self, sku: Sku) -> InventoryCommand {
        match self {
            StockChange::Receive {
                quantity,
                reference,
            } => InventoryCommand::ReceiveStock {
                sku,
                quantity,
                reference,
            },
            StockChange::Adjust { delta, reason } => {
                InventoryCommand::AdjustStock { sku, delta, reason }
            }
        }
    }
}

impl Shop {
    /// Changes the stock of a SKU that a product sells, once per idempotency key.
    ///
    /// # Errors
    /// [`crate::AppError::Conflict`] for a reused idempotency key, or a backing service's
    /// failure.
    pub async fn change_stock(
        &self,
        staff: Uuid,
        sku: &str,
        change: StockChange,
        idempotency: Option<&Idempotency>,
    ) -> UseCaseResult<CommitOutcome> {
        let unknown =
            || Rejection::refusal(&["sku"], Refusal::UnknownSku, "no product sells this SKU");
        let Ok(sku) = Sku::parse(sku) else {
            return Ok(Err(unknown()));
        };
        if self.owner_of(&sku).await?.is_none() {
            return Ok(Err(unknown()));
        }
        let command_id =
            idempotency::claim(&self.idempotency, staff, change.operation(), idempotency)
                .await?
                .unwrap_or_else(Uuid::now_v7);
        let metadata = CommandMetadata::new(Actor::User(staff)).with_command_id(command_id);
        let aggregate_id = sku.as_str().to_owned();
        let result = self
            .commands
            .inventory()
            .execute(&aggregate_id, change.command(sku), &metadata)
            .await;
        committed(result, &["quantity"])
    }
}
