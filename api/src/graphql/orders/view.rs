//! What a client sees of an order: the `Order` object with its lines, timeline,
//! payments, parcel, cancellation and refund, read from the read models.

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use projections::orders::{OrderDetail, OrderSummary};

use crate::consistency::ReadModel;
use crate::graphql::context::{ContextExt, Position};
use crate::graphql::error::{ApiError, ApiResult};
use crate::graphql::ids::{AccountId, GlobalId};
use crate::graphql::loaders::{self, OrderDetails, OrderLines, OrderPayments, OrderTimelines};
use crate::graphql::money::MoneyV2;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "domain::order::OrderStatus")]
pub enum OrderStatusCode {
    /// Placed; the saga is reserving stock.
    Placed,
    /// Stock is held; the payment is being authorised.
    StockReserved,
    /// The payment is authorised; it is being captured.
    PaymentAuthorised,
    /// Paid and confirmed; waiting to ship.
    Confirmed,
    /// On its way.
    Shipped,
    /// Delivered.
    Delivered,
    /// Cancelled; held stock and money were given back.
    Cancelled,
    /// Money went back after delivery or cancellation.
    Refunded,
}

/// What became of an order's payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "projections::orders::PaymentState")]
pub enum OrderPaymentState {
    /// No payment yet.
    None,
    /// The card was declined.
    Declined,
    /// Money is held on the card.
    Authorised,
    /// The hold was released.
    Voided,
    /// Money was taken.
    Captured,
    /// Money went back.
    Refunded,
}

/// An order.
#[derive(Clone)]
pub struct Order {
    summary: OrderSummary,
    detail: Option<Arc<OrderDetail>>,
}

impl Order {
    pub(super) fn from_summary(summary: OrderSummary) -> Self {
        Self {
            summary,
            detail: None,
        }
    }

    /// The order of a read-model detail.
    pub fn from_detail(detail: OrderDetail) -> Self {
        Self {
            summary: detail.summary.clone(),
            detail: Some(Arc::new(detail)),
        }
    }

    async fn detail(&self, ctx: &Context<'_>) -> ApiResult<Arc<OrderDetail>> {
        if let Some(detail) = &self.detail {
            return Ok(detail.clone());
        }
        // A page's orders load their details in one batch.
        ctx.data_unchecked::<DataLoader<OrderDetails>>()
            .load_one(self.summary.id)
            .await
            .map_err(loaders::field_error)?
            .ok_or(ApiError::NotFound("order"))
    }
}

/// An order.
#[Object]
impl Order {
    /// The order's opaque id.
    async fn id(&self) -> ID {
        self.summary.id.to_global()
    }

    /// Where the order is in its life.
    async fn status(&self) -> OrderStatusCode {
        self.summary.status.into()
    }

    /// What became of its payment.
    async fn payment_state(&self) -> OrderPaymentState {
        self.summary.payment_state.into()
    }

    /// The account that placed it.
    async fn customer_id(&self) -> ID {
        AccountId(self.summary.customer_id.as_uuid()).to_global()
    }

    /// The lines, in the order they were placed.
    async fn lines(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderLineItem>> {
        // A single order was read with its lines; a page's orders load theirs in one batch.
        let lines = match &self.detail {
            Some(detail) => Arc::new(detail.lines.clone()),
            None => ctx
                .data_unchecked::<DataLoader<OrderLines>>()
                .load_one(self.summary.id)
                .await
                .map_err(loaders::field_error)?
                .unwrap_or_default(),
        };
        Ok(lines
            .iter()
            .map(|line| OrderLineItem {
                sku: line.sku.clone(),
                quantity: line.quantity,
                unit_price: line.unit_price.into(),
                line_total: line.line_total.into(),
            })
            .collect())
    }

    /// Units over all lines.
    async fn item_count(&self) -> i64 {
        self.summary.item_count
    }

    /// What the customer pays.
    async fn total(&self) -> MoneyV2 {
        self.summary.total.into()
    }

    /// The sum of the lines.
    async fn subtotal(&self, ctx: &Context<'_>) -> async_graphql::Result<MoneyV2> {
        Ok(self.detail(ctx).await?.subtotal.into())
    }

    /// When it was placed.
    async fn placed_at(&self) -> DateTime<Utc> {
        self.summary.placed_at
    }

    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.summary.updated_at
    }

    /// Every status it went through, oldest first.
    async fn status_timeline(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<OrderStatusChange>> {
        let timeline = match &self.detail {
            Some(detail) => Arc::new(detail.timeline.clone()),
            None => ctx
                .data_unchecked::<DataLoader<OrderTimelines>>()
                .load_one(self.summary.id)
                .await
                .map_err(loaders::field_error)?
                .unwrap_or_default(),
        };
        Ok(timeline.iter().map(OrderStatusChange::from).collect())
    }

    /// The payments made for it, with their operations.
    async fn payments(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Payment>> {
        // Payments have their own read model: a read after a position waits for it too.
        ctx.read(ReadModel::Payments).await?;
        let payments = ctx
            .data_unchecked::<DataLoader<OrderPayments>>()
            .load_one(self.summary.id)
            .await
            .map_err(loaders::field_error)?
            .unwrap_or_default();
        Ok(payments.iter().map(Payment::from).collect())
    }

    /// The parcel, once shipped.
    async fn shipment(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Shipment>> {
        Ok(self
            .detail(ctx)
            .await?
            .shipping
            .as_ref()
            .map(|shipping| Shipment {
                carrier: shipping.carrier.clone(),
                tracking: shipping.tracking.clone(),
                shipped_at: shipping.shipped_at,
                delivered_at: shipping.delivered_at,
            }))
    }

    /// Why and by whom it was cancelled, if it was.
    async fn cancellation(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<OrderCancellation>> {
        Ok(self
            .detail(ctx)
            .await?
            .cancellation
            .as_ref()
            .map(|cancellation| OrderCancellation {
                reason: cancellation.reason.clone(),
                cancelled_by: cancellation.by.clone(),
                cancelled_at: cancellation.cancelled_at,
            }))
    }

    /// Where it goes; null for orders placed before addresses were recorded.
    async fn shipping_address(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<ShippingAddressView>> {
        Ok(self
            .detail(ctx)
            .await?
            .shipping_address
            .as_ref()
            .map(|address| ShippingAddressView {
                name: address.name.clone(),
                line1: address.line1.clone(),
                line2: address.line2.clone(),
                city: address.city.clone(),
                postal_code: address.postal_code.clone(),
                country_code: address.country_code.clone(),
            }))
    }

    /// The refund, if money went back.
    async fn refund(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<OrderRefund>> {
        Ok(self
            .detail(ctx)
            .await?
            .refund
            .as_ref()
            .map(|refund| OrderRefund {
                amount: refund.amount.into(),
                reason: refund.reason.clone(),
                refunded_at: refund.refunded_at,
            }))
    }
}

/// One line of an order.
#[derive(Clone, SimpleObject)]
pub struct OrderLineItem {
    /// The variant ordered.
    pub sku: String,
    /// Units.
    pub quantity: i64,
    /// The price per unit when the order was placed.
    pub unit_price: MoneyV2,
    /// `unitPrice × quantity`.
    pub line_total: MoneyV2,
}

/// One status an order went through.
#[derive(Clone, SimpleObject)]
pub struct OrderStatusChange {
    /// The status it entered.
    pub status: OrderStatusCode,
    /// When.
    pub at: DateTime<Utc>,
    /// Why, for cancellations and refunds.
    pub reason: Option<String>,
    /// The log position of the change.
    pub position: Position,
}

impl From<&projections::orders::StatusChange> for OrderStatusChange {
    fn from(change: &projections::orders::StatusChange) -> Self {
        OrderStatusChange {
            status: change.status.into(),
            at: change.at,
            reason: change.reason.clone(),
            position: Position(u64::try_from(change.position).unwrap_or(0)),
        }
    }
}

/// Where an order goes.
#[derive(Clone, SimpleObject)]
#[graphql(name = "ShippingAddress")]
pub struct ShippingAddressView {
    /// The recipient.
    pub name: String,
    /// Street and number.
    pub line1: String,
    /// Flat, floor, building.
    pub line2: String,
    /// Town or city.
    pub city: String,
    /// Postal or ZIP code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country_code: String,
}

/// A shipped parcel.
#[derive(Clone, SimpleObject)]
pub struct Shipment {
    /// The carrier.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking: String,
    /// When it left.
    pub shipped_at: DateTime<Utc>,
    /// When it arrived.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A cancellation.
#[derive(Clone, SimpleObject)]
pub struct OrderCancellation {
    /// Why.
    pub reason: String,
    /// `customer`, `admin` or `system`.
    pub cancelled_by: String,
    /// When.
    pub cancelled_at: DateTime<Utc>,
}

/// A refund of an order.
#[derive(Clone, SimpleObject)]
pub struct OrderRefund {
    /// How much went back.
    pub amount: MoneyV2,
    /// Why.
    pub reason: String,
    /// When.
    pub refunded_at: DateTime<Utc>,
}

/// A payment for an order.
#[derive(Clone, SimpleObject)]
pub struct Payment {
    /// The payment's opaque id.
    pub id: ID,
    /// `authorised`, `declined`, `captured`, `partially_refunded`, `refunded` or `voided`.
    pub status: String,
    /// The amount asked for.
    pub amount: MoneyV2,
    /// Held on the card.
    pub authorised: MoneyV2,
    /// Taken.
    pub captured: MoneyV2,
    /// Given back.
    pub refunded: MoneyV2,
    /// Why the card was declined, if it was.
    pub decline_reason: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<&projections::payments::PaymentView> for Payment {
    fn from(view: &projections::payments::PaymentView) -> Self {
        Payment {
            id: view.id.to_global(),
            status: view.status.as_str().to_owned(),
            amount: view.amount.into(),
            authorised: view.authorised.into(),
            captured: view.captured.into(),
            refunded: view.refunded.into(),
            decline_reason: view.decline_reason.clone(),
            created_at: view.created_at,
        }
    }
}
