//! Stock per SKU: levels and movements for admins, receiving and adjusting stock.

use application::inventory::StockChange;
use async_graphql::{Context, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use projections::inventory::{self as inventory_model, Movement, StockLevel};

use super::context::{ContextExt, Position};
use super::error::ApiError;
use super::idempotency::idempotency;
use super::ids::GlobalId;
use super::outcome::decided;
use super::relay::{connection, page_request, UserError};
use super::text::{check_text, Limit};
use crate::auth::Role;
use crate::consistency::ReadModel;

/// Stock of one SKU.
#[derive(Clone)]
pub struct InventoryLevel {
    level: StockLevel,
}

/// Stock of one SKU.
#[Object]
impl InventoryLevel {
    /// The SKU.
    async fn sku(&self) -> &str {
        &self.level.sku
    }

    /// Units in the warehouse.
    async fn on_hand(&self) -> i64 {
        self.level.on_hand
    }

    /// Units held for orders in progress.
    async fn reserved(&self) -> i64 {
        self.level.reserved
    }

    /// Units that can still be ordered.
    async fn available(&self) -> i64 {
        self.level.available
    }

    /// When stock last moved.
    async fn last_movement_at(&self) -> DateTime<Utc> {
        self.level.last_movement_at
    }

    /// Every movement, newest first.
    #[graphql(complexity = "super::relay::page_cost(first, last, child_complexity)")]
    async fn movements(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<StockMovementConnection> {
        let page = page_request(first, after.as_deref(), last, before.as_deref())?;
        let db = ctx.read(ReadModel::Inventory).await?;
        let page = inventory_model::movements(db, &self.level.sku, page)
            .await
            .map_err(ApiError::from)?;
        Ok(StockMovementConnection::from_page(
            page,
            StockMovement::from,
        ))
    }
}

/// One change of a SKU's stock.
#[derive(Clone, SimpleObject)]
pub struct StockMovement {
    /// `received`, `adjusted`, `reserved`, `released`, `committed` or `returned`.
    pub kind: String,
    /// Units moved.
    pub quantity: i64,
    /// Change of units on hand.
    pub on_hand_change: i64,
    /// Change of units reserved.
    pub reserved_change: i64,
    /// The order it was for, if any.
    pub order_id: Option<async_graphql::ID>,
    /// The delivery reference of received stock.
    pub reference: Option<String>,
    /// Why, for adjustments and releases.
    pub reason: Option<String>,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// Its position in the log.
    pub position: Position,
}

impl From<Movement> for StockMovement {
    fn from(movement: Movement) -> Self {
        StockMovement {
            kind: movement.kind.as_str().to_owned(),
            quantity: movement.quantity,
            on_hand_change: movement.on_hand_change,
            reserved_change: movement.reserved_change,
            order_id: movement.order_id.map(|id| id.to_global()),
            reference: movement.reference,
            reason: movement.reason,
            occurred_at: movement.occurred_at,
            position: Position(u64::try_from(movement.position).unwrap_or(0)),
        }
    }
}

impl From<StockLevel> for InventoryLevel {
    fn from(level: StockLevel) -> Self {
        InventoryLevel { level }
    }
}

connection!(StockMovementConnection, StockMovementEdge, StockMovement);

/// Stock reads (admins).
#[derive(Default)]
pub struct InventoryQuery;

#[Object]
impl InventoryQuery {
    /// The stock of one SKU; null before any stock moved.
    async fn inventory(
        &self,
        ctx: &Context<'_>,
        sku: String,
    ) -> async_graphql::Result<Option<InventoryLevel>> {
        ctx.require(&[Role::Admin])?;
        let sku = check_text(&sku, "sku", Limit::NAME)?;
        let db = ctx.read(ReadModel::Inventory).await?;
        Ok(inventory_model::stock_level(db, &sku)
            .await
            .map_err(ApiError::from)?
            .map(|level| InventoryLevel { level }))
    }
}

/// Stock that arrived.
#[derive(Debug, InputObject, serde::Serialize)]
pub struct InventoryReceiveInput {
    /// The SKU.
    pub sku: String,
    /// Units received, at least 1.
    pub quantity: i32,
    /// The delivery's reference.
    pub reference: String,
    /// Retrying with the same key receives once and answers the same.
    pub idempotency_key: Option<String>,
}

/// A correction of stock on hand.
#[derive(Debug, InputObject, serde::Serialize)]
pub struct InventoryAdjustInput {
    /// The SKU.
    pub sku: String,
    /// Units to add (positive) or remove (negative).
    pub delta: i32,
    /// Why (a stock count, breakage).
    pub reason: String,
    /// Retrying with the same key adjusts once and answers the same.
    pub idempotency_key: Option<String>,
}

/// The answer to a stock mutation.
pub struct InventoryPayload {
    sku: Option<String>,
    user_errors: Vec<UserError>,
    position: Option<u64>,
}

#[Object]
impl InventoryPayload {
    /// The stock once the inventory read model reflects this change.
    async fn inventory_level(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<InventoryLevel>> {
        let (Some(sku), Some(position)) = (&self.sku, self.position) else {
            return Ok(None);
        };
        let services = ctx.services();
        services
            .positions
            .wait_for(ReadModel::Inventory, position)
            .await?;
        Ok(inventory_model::stock_level(&services.db, sku)
            .await
            .map_err(ApiError::from)?
            .map(|level| InventoryLevel { level }))
    }

    /// Rules the input broke; empty when the change was made.
    async fn user_errors(&self) -> &[UserError] {
        &self.user_errors
    }

    /// Where the change was committed in the log.
    async fn position(&self) -> Option<Position> {
        self.position.map(Position)
    }
}

/// Stock changes (admins).
#[derive(Default)]
pub struct InventoryMutation;

#[Object]
impl InventoryMutation {
    /// Records stock that arrived.
    async fn inventory_receive(
        &self,
        ctx: &Context<'_>,
        input: InventoryReceiveInput,
    ) -> async_graphql::Result<InventoryPayload> {
        let quantity = u32::try_from(input.quantity)
            .ok()
            .filter(|quantity| *quantity > 0)
            .ok_or_else(|| {
                ApiError::bad_input(format!(
                    "quantity must be at least 1, not {}",
                    input.quantity
                ))
            })?;
        let change = StockChange::Receive {
            quantity,
            reference: check_text(&input.reference, "reference", Limit::NAME)?,
        };
        stock_change(
            ctx,
            &input.sku,
            change,
            input.idempotency_key.as_deref(),
            &input,
        )
        .await
    }

    /// Corrects stock on hand.
    async fn inventory_adjust(
        &self,
        ctx: &Context<'_>,
        input: InventoryAdjustInput,
    ) -> async_graphql::Result<InventoryPayload> {
        let change = StockChange::Adjust {
            delta: i64::from(input.delta),
            reason: check_text(&input.reason, "reason", Limit::REASON)?,
        };
        stock_change(
            ctx,
            &input.sku,
            change,
            input.idempotency_key.as_deref(),
            &input,
        )
        .await
    }
}

async fn stock_change(
    ctx: &Context<'_>,
    sku: &str,
    change: StockChange,
    idempotency_key: Option<&str>,
    input: &impl serde::Serialize,
) -> async_graphql::Result<InventoryPayload> {
    let admin = ctx.require(&[Role::Admin])?;
    let sku = check_text(sku, "sku", Limit::NAME)?;
    let idempotency = idempotency(idempotency_key, input)?;
    let changed = ctx
        .services()
        .shop
        .change_stock(admin.account_id, &sku, change, idempotency.as_ref())
        .await;
    Ok(match decided(changed)? {
        Ok(outcome) => InventoryPayload {
            sku: Some(outcome.aggregate_id),
            user_errors: Vec::new(),
            position: Some(outcome.position),
        },
        Err(error) => InventoryPayload {
            sku: None,
            user_errors: vec![error],
            position: None,
        },
    })
}
