//! Orders: placing (which starts the saga), reading with lines, timeline and payments,
//! and the admin's lifecycle actions and refunds.

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::order::{Canceller, OrderCommand, OrderLine, OrderStatus, ShippingAddress};
use domain::payment::{PaymentCommand, PaymentMethod};
use domain::{CommandMetadata, CustomerId, Money, OrderId, RefundId, Sku};
use infra_nats::CommitOutcome;
use projections::orders::{self as orders_model, OrderDetail, OrderSummary};
use saga::provider::RefundRequest;
use uuid::Uuid;

use super::catalog::owner_of;
use super::context::{ContextExt, Position};
use super::error::{ApiError, ApiResult};
use super::idempotency::id_for_key;
use super::ids::{AccountId, CartId, GlobalId};
use super::loaders::{OrderDetails, OrderLines, OrderPayments, OrderTimelines};
use super::money::{MoneyInput, MoneyV2};
use super::outcome::{executed, Executed};
use super::relay::{connection, page_request, UserError};
use super::text::{check_text, Limit};
use crate::auth::{Principal, Role};
use crate::consistency::ReadModel;
use crate::storefront::{MAX_CART_LINES, MAX_LINE_QUANTITY};

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
    fn from_summary(summary: OrderSummary) -> Self {
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
            .map_err(super::loaders::field_error)?
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
                .map_err(super::loaders::field_error)?
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
                .map_err(super::loaders::field_error)?
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
            .map_err(super::loaders::field_error)?
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
    /// `authorised`, `declined`, `captured` or `voided`.
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
            status: format!("{:?}", view.status).to_lowercase(),
            amount: view.amount.into(),
            authorised: view.authorised.into(),
            captured: view.captured.into(),
            refunded: view.refunded.into(),
            decline_reason: view.decline_reason.clone(),
            created_at: view.created_at,
        }
    }
}

connection!(OrderConnection, OrderEdge, Order);

/// Which orders an admin lists.
#[derive(Debug, Default, InputObject)]
pub struct OrderFilter {
    /// Only orders in this status.
    pub status: Option<OrderStatusCode>,
    /// Only this customer's orders (an account id).
    pub customer: Option<ID>,
    /// Only orders placed at or after this time.
    pub placed_after: Option<DateTime<Utc>>,
    /// Only orders placed before this time.
    pub placed_before: Option<DateTime<Utc>>,
}

/// May `viewer` see an order of `customer_id`? Admins and auditors see every order,
/// customers their own.
fn may_see(viewer: &Principal, customer_id: CustomerId) -> bool {
    match viewer.role {
        Role::Admin | Role::Auditor => true,
        Role::Customer => viewer.account_id == customer_id.as_uuid(),
        Role::Operator => false,
    }
}

/// Reads an order the caller may see: another customer's order is "not found", so its
/// existence does not leak.
///
/// # Errors
/// [`ApiError::Unauthenticated`], [`ApiError::NotFound`], or a read failure.
pub async fn visible_order(ctx: &Context<'_>, id: OrderId) -> ApiResult<OrderDetail> {
    let viewer = ctx.require(&[Role::Customer, Role::Admin, Role::Auditor])?;
    let db = ctx.read(ReadModel::Orders).await?;
    match orders_model::order(db, id).await? {
        Some(order) if may_see(viewer, order.summary.customer_id) => Ok(order),
        _ => Err(ApiError::NotFound("order")),
    }
}

/// Order reads.
#[derive(Default)]
pub struct OrderQuery;

#[Object]
impl OrderQuery {
    /// One order: the customer's own, or any for admins and auditors.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Order> {
        let id = OrderId::from_global(&id)?;
        Ok(Order::from_detail(visible_order(ctx, id).await?))
    }

    /// Every order, newest first (admins and auditors).
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "super::relay::page_cost(first, last, child_complexity)")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<OrderFilter>,
    ) -> async_graphql::Result<OrderConnection> {
        ctx.require(&[Role::Admin, Role::Auditor])?;
        let page = page_request(first, after.as_deref(), last, before.as_deref())?;
        let filter = filter.unwrap_or_default();
        let read_filter = orders_model::OrderFilter {
            status: filter.status.map(OrderStatus::from),
            customer_id: filter
                .customer
                .as_ref()
                .map(AccountId::from_global)
                .transpose()?
                .map(|account| CustomerId(account.0)),
            placed_after: filter.placed_after,
            placed_before: filter.placed_before,
        };
        let db = ctx.read(ReadModel::Orders).await?;
        let page = orders_model::orders(db, &read_filter, page)
            .await
            .map_err(ApiError::from)?;
        Ok(OrderConnection::from_page(page, Order::from_summary))
    }
}

/// A customer's own orders, newest first.
///
/// # Errors
/// Bad page arguments or a read failure.
pub async fn customer_orders(
    ctx: &Context<'_>,
    customer: Uuid,
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
) -> async_graphql::Result<OrderConnection> {
    let page = page_request(first, after.as_deref(), last, before.as_deref())?;
    let db = ctx.read(ReadModel::Orders).await?;
    let page = orders_model::customer_orders(db, CustomerId(customer), page)
        .await
        .map_err(ApiError::from)?;
    Ok(OrderConnection::from_page(page, Order::from_summary))
}

/// A line to order.
#[derive(Debug, Clone, InputObject, serde::Serialize)]
pub struct OrderLineInput {
    /// The variant.
    pub sku: String,
    /// Units, 1 to 10,000.
    pub quantity: i32,
}

/// Where to deliver.
#[derive(Debug, Clone, InputObject, serde::Serialize)]
pub struct ShippingAddressInput {
    /// The recipient.
    pub name: String,
    /// Street and number.
    pub line1: String,
    /// Flat, floor, building.
    #[graphql(default)]
    pub line2: String,
    /// Town or city.
    pub city: String,
    /// Postal or ZIP code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country_code: String,
}

/// A new order: either `lines` or `cartId`.
#[derive(Debug, Clone, InputObject, serde::Serialize)]
pub struct OrderPlaceInput {
    /// The lines to order.
    pub lines: Option<Vec<OrderLineInput>>,
    /// Order the caller's cart instead; its ordered lines leave the cart.
    pub cart_id: Option<ID>,
    /// The payment provider's token for the card.
    pub payment_token: String,
    /// Where to deliver.
    pub shipping_address: ShippingAddressInput,
    /// Retrying with the same key places the order once and answers the same.
    pub idempotency_key: Option<String>,
}

/// An order to cancel.
#[derive(Debug, InputObject)]
pub struct OrderCancelInput {
    /// The order.
    pub id: ID,
    /// Why.
    pub reason: String,
}

/// An order handed to a carrier.
#[derive(Debug, InputObject)]
pub struct OrderShipInput {
    /// The order.
    pub id: ID,
    /// The carrier.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking: String,
}

/// A delivered order.
#[derive(Debug, InputObject)]
pub struct OrderDeliverInput {
    /// The order.
    pub id: ID,
}

/// Money to give back for an order.
#[derive(Debug, Clone, InputObject, serde::Serialize)]
pub struct PaymentRefundInput {
    /// The order.
    pub order_id: ID,
    /// How much; everything still refundable when left out.
    pub amount: Option<MoneyInput>,
    /// Why.
    pub reason: String,
    /// Retrying with the same key refunds once and answers the same.
    pub idempotency_key: Option<String>,
}

/// The answer to an order mutation.
pub struct OrderPayload {
    order_id: Option<OrderId>,
    user_errors: Vec<UserError>,
    position: Option<u64>,
    /// Where a payment change was committed, when the mutation made one (refunds): the
    /// payments read model is projected apart from the orders one.
    payment_position: Option<u64>,
}

impl OrderPayload {
    fn rejected(error: UserError) -> Self {
        Self {
            order_id: None,
            user_errors: vec![error],
            position: None,
            payment_position: None,
        }
    }

    fn from_executed(order_id: OrderId, executed: Executed) -> Self {
        match executed {
            Executed::Committed(outcome) => Self {
                order_id: Some(order_id),
                user_errors: Vec::new(),
                position: Some(outcome.position),
                payment_position: None,
            },
            Executed::Rejected(error) => Self::rejected(error),
        }
    }
}

#[Object]
impl OrderPayload {
    /// The order as the read model shows it once it reflects this change; null when the
    /// mutation was refused.
    async fn order(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Order>> {
        let (Some(id), Some(position)) = (self.order_id, self.position) else {
            return Ok(None);
        };
        let services = ctx.services();
        services
            .positions
            .wait_for(ReadModel::Orders, position)
            .await?;
        if let Some(payment_position) = self.payment_position {
            services
                .positions
                .wait_for(ReadModel::Payments, payment_position)
                .await?;
        }
        Ok(orders_model::order(&services.db, id)
            .await
            .map_err(ApiError::from)?
            .map(Order::from_detail))
    }

    /// Rules the input broke; empty when the change was made.
    async fn user_errors(&self) -> &[UserError] {
        &self.user_errors
    }

    /// Where the change was committed in the log; send it as `X-Min-Position` to read it.
    async fn position(&self) -> Option<Position> {
        self.position.map(Position)
    }
}

/// Order changes.
#[derive(Default)]
pub struct OrderMutation;

#[Object]
impl OrderMutation {
    /// Places an order at the catalog's current prices and starts its saga (reserve
    /// stock, take payment, confirm). The order comes back `PLACED`; follow it with
    /// `orderStatusChanged`.
    async fn order_place(
        &self,
        ctx: &Context<'_>,
        input: OrderPlaceInput,
    ) -> async_graphql::Result<OrderPayload> {
        let customer = ctx.require(&[Role::Customer])?.clone();
        let services = ctx.services().clone();
        let token = check_text(&input.payment_token, "paymentToken", Limit::TOKEN)?;
        let address = checked_address(&input.shipping_address)?;
        let (requested, cart_id) = match (&input.lines, &input.cart_id) {
            (Some(lines), None) => (checked_lines(lines)?, None),
            (None, Some(cart_id)) => {
                let cart_id = CartId::from_global(cart_id)?;
                let cart = services
                    .carts
                    .cart_of(customer.account_id)
                    .await
                    .map_err(ApiError::from)?;
                if cart.id != cart_id.0 {
                    return Err(ApiError::NotFound("cart").into());
                }
                if cart.lines.is_empty() {
                    return Ok(OrderPayload::rejected(UserError::on(
                        &["cartId"],
                        "EMPTY_CART",
                        "the cart is empty",
                    )));
                }
                (cart.lines, Some(cart.id))
            }
            _ => {
                return Err(ApiError::bad_input("pass either `lines` or `cartId`").into());
            }
        };

        // Refused while the saga is behind: nothing is recorded, not even the key.
        services.admission.admit()?;
        let keyed = id_for_key(
            &services,
            customer.account_id,
            "orderPlace",
            input.idempotency_key.as_deref(),
            &input,
        )
        .await?;
        let (order_id, metadata) = match keyed {
            Some(id) => (
                OrderId(id),
                CommandMetadata::new(customer.actor()).with_command_id(id),
            ),
            None => (
                OrderId(Uuid::now_v7()),
                CommandMetadata::new(customer.actor()),
            ),
        };

        let (lines, currency) = match priced_lines(ctx, &requested).await? {
            Ok(priced) => priced,
            Err(error) => return Ok(OrderPayload::rejected(error)),
        };
        let command = OrderCommand::PlaceOrder {
            order_id,
            customer_id: CustomerId(customer.account_id),
            lines,
            currency,
            payment_method: PaymentMethod::Card { token },
            shipping_address: Some(address),
            placed_at: Utc::now(),
        };
        let result = services
            .commands
            .orders
            .execute(&order_id.to_string(), command, &metadata)
            .await;
        let executed = executed(result, &["lines"])?;
        if let (Executed::Committed(_), Some(cart_id)) = (&executed, cart_id) {
            services
                .carts
                .check_out(cart_id, &requested)
                .await
                .map_err(ApiError::from)?;
        }
        metrics::counter!("shopstream_orders_placed_total").increment(1);
        Ok(OrderPayload::from_executed(order_id, executed))
    }

    /// Cancels an order before it ships: customers their own, admins any. The saga
    /// gives back held stock and money.
    async fn order_cancel(
        &self,
        ctx: &Context<'_>,
        input: OrderCancelInput,
    ) -> async_graphql::Result<OrderPayload> {
        let viewer = ctx.require(&[Role::Customer, Role::Admin])?.clone();
        let order_id = OrderId::from_global(&input.id)?;
        let reason = check_text(&input.reason, "reason", Limit::REASON)?;
        let order = load_order(ctx, order_id).await?;
        let owner = order.customer_id().map(|customer| customer.as_uuid());
        let by = match viewer.role {
            Role::Admin => Canceller::Admin,
            _ if owner == Some(viewer.account_id) => Canceller::Customer,
            _ => return Err(ApiError::NotFound("order").into()),
        };
        order_command(
            ctx,
            &viewer,
            order_id,
            OrderCommand::CancelOrder { reason, by },
            &["id"],
        )
        .await
    }

    /// Records that an order left with a carrier (admins).
    async fn order_ship(
        &self,
        ctx: &Context<'_>,
        input: OrderShipInput,
    ) -> async_graphql::Result<OrderPayload> {
        let admin = ctx.require(&[Role::Admin])?.clone();
        let order_id = OrderId::from_global(&input.id)?;
        let command = OrderCommand::ShipOrder {
            carrier: check_text(&input.carrier, "carrier", Limit::NAME)?,
            tracking: check_text(&input.tracking, "tracking", Limit::NAME)?,
        };
        order_command(ctx, &admin, order_id, command, &["id"]).await
    }

    /// Records that an order arrived (admins).
    async fn order_deliver(
        &self,
        ctx: &Context<'_>,
        input: OrderDeliverInput,
    ) -> async_graphql::Result<OrderPayload> {
        let admin = ctx.require(&[Role::Admin])?.clone();
        let order_id = OrderId::from_global(&input.id)?;
        order_command(ctx, &admin, order_id, OrderCommand::MarkDelivered, &["id"]).await
    }

    /// Gives money back to the customer at the payment provider and records it on the
    /// payment and the order (admins). For delivered or cancelled, paid orders.
    async fn payment_refund(
        &self,
        ctx: &Context<'_>,
        input: PaymentRefundInput,
    ) -> async_graphql::Result<OrderPayload> {
        let admin = ctx.require(&[Role::Admin])?.clone();
        let services = ctx.services().clone();
        let order_id = OrderId::from_global(&input.order_id)?;
        let reason = check_text(&input.reason, "reason", Limit::REASON)?;
        let requested = input
            .amount
            .as_ref()
            .map(|amount| amount.to_money("amount"))
            .transpose()?;
        let refund_id = RefundId(
            id_for_key(
                &services,
                admin.account_id,
                "paymentRefund",
                input.idempotency_key.as_deref(),
                &input,
            )
            .await?
            .unwrap_or_else(Uuid::now_v7),
        );

        let order = load_order(ctx, order_id).await?;
        let Some(payment_id) = order.payment_id() else {
            return Ok(OrderPayload::rejected(UserError::on(
                &["orderId"],
                "NOT_PAID",
                "the order has no payment to refund",
            )));
        };
        if !matches!(
            order.status(),
            Some(OrderStatus::Delivered | OrderStatus::Cancelled | OrderStatus::Refunded)
        ) {
            return Ok(OrderPayload::rejected(UserError::on(
                &["orderId"],
                "NOT_REFUNDABLE",
                "only delivered or cancelled orders are refunded here; cancel the order to refund it",
            )));
        }
        let payment = services
            .commands
            .payments
            .store()
            .load_fresh(&payment_id.to_string())
            .await
            .map_err(ApiError::store)?;
        let refundable = payment.state().refundable();
        let amount = match (requested, refundable) {
            (Some(amount), _) => amount,
            (None, Some(refundable)) if refundable.is_positive() => refundable,
            _ => {
                return Ok(OrderPayload::rejected(UserError::on(
                    &["amount"],
                    "NOTHING_TO_REFUND",
                    "nothing captured is left to refund",
                )))
            }
        };
        // The payment decides first, on its own state, so an amount above what is left
        // never reaches the provider.
        if let Err(error) = payment.state().decide(PaymentCommand::RefundPayment {
            refund_id,
            amount,
            reason: reason.clone(),
        }) {
            return Ok(OrderPayload::rejected(UserError::on(
                &["amount"],
                domain::ErrorCode::code(&error),
                error.to_string(),
            )));
        }
        let refund = RefundRequest {
            idempotency_key: format!("refund-{}", refund_id.0),
            authorisation_key: saga::keys::provider_key(order_id, "authorise"),
            amount,
        };
        if let Err(error) = services.commands.provider.refund(&refund).await {
            return if error.is_transient() {
                Err(ApiError::unavailable(format!(
                    "payment provider unavailable ({error}); retry with the same idempotency key"
                ))
                .into())
            } else {
                Ok(OrderPayload::rejected(UserError::on(
                    &["amount"],
                    "PROVIDER_REFUSED",
                    error.to_string(),
                )))
            };
        }
        let metadata = CommandMetadata::new(admin.actor());
        let recorded = services
            .commands
            .payments
            .execute(
                &payment_id.to_string(),
                PaymentCommand::RefundPayment {
                    refund_id,
                    amount,
                    reason: reason.clone(),
                },
                &metadata.caused_by(metadata.command_id, Uuid::new_v5(&refund_id.0, b"record")),
            )
            .await;
        let recorded = match executed(recorded, &["amount"])? {
            Executed::Committed(outcome) => outcome,
            Executed::Rejected(error) => return Ok(OrderPayload::rejected(error)),
        };
        let marked = services
            .commands
            .orders
            .execute(
                &order_id.to_string(),
                OrderCommand::MarkRefunded { amount, reason },
                &metadata.caused_by(metadata.command_id, Uuid::new_v5(&refund_id.0, b"order")),
            )
            .await;
        // An order refunded before stays refunded; this refund is on the payment.
        let position = match executed(marked, &["orderId"])? {
            Executed::Committed(outcome) => outcome.position.max(recorded.position),
            Executed::Rejected(_) => recorded.position,
        };
        Ok(OrderPayload {
            order_id: Some(order_id),
            user_errors: Vec::new(),
            position: Some(position),
            payment_position: Some(recorded.position),
        })
    }
}

/// The order aggregate itself (not the read model), for decisions.
async fn load_order(ctx: &Context<'_>, order_id: OrderId) -> ApiResult<domain::order::Order> {
    let context = ctx
        .services()
        .commands
        .orders
        .store()
        .load_fresh(&order_id.to_string())
        .await
        .map_err(ApiError::store)?;
    let order = context.state().clone();
    if order.id().is_none() {
        return Err(ApiError::NotFound("order"));
    }
    Ok(order)
}

async fn order_command(
    ctx: &Context<'_>,
    viewer: &Principal,
    order_id: OrderId,
    command: OrderCommand,
    field: &[&str],
) -> async_graphql::Result<OrderPayload> {
    let result: Result<CommitOutcome, _> = ctx
        .services()
        .commands
        .orders
        .execute(
            &order_id.to_string(),
            command,
            &CommandMetadata::new(viewer.actor()),
        )
        .await;
    Ok(OrderPayload::from_executed(
        order_id,
        executed(result, field)?,
    ))
}

fn checked_address(input: &ShippingAddressInput) -> ApiResult<ShippingAddress> {
    Ok(ShippingAddress {
        name: check_text(&input.name, "shippingAddress.name", Limit::NAME)?,
        line1: check_text(&input.line1, "shippingAddress.line1", Limit::NAME)?,
        line2: check_text(&input.line2, "shippingAddress.line2", Limit::NAME)?,
        city: check_text(&input.city, "shippingAddress.city", Limit::NAME)?,
        postal_code: check_text(
            &input.postal_code,
            "shippingAddress.postalCode",
            Limit::NAME,
        )?,
        country_code: check_text(
            &input.country_code,
            "shippingAddress.countryCode",
            Limit::NAME,
        )?,
    })
}

/// Lines with sane quantities, SKUs of sane length, at most [`MAX_CART_LINES`].
///
/// # Errors
/// [`ApiError::BadUserInput`] naming the first line at fault.
pub fn checked_lines(lines: &[OrderLineInput]) -> ApiResult<Vec<(String, u32)>> {
    if lines.len() > MAX_CART_LINES {
        return Err(ApiError::bad_input(format!(
            "at most {MAX_CART_LINES} lines, not {}",
            lines.len()
        )));
    }
    lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            let quantity = u32::try_from(line.quantity)
                .ok()
                .filter(|quantity| (1..=MAX_LINE_QUANTITY).contains(quantity))
                .ok_or_else(|| {
                    ApiError::bad_input(format!(
                        "lines.{index}.quantity must be between 1 and {MAX_LINE_QUANTITY}, not {}",
                        line.quantity
                    ))
                })?;
            let sku = check_text(&line.sku, &format!("lines.{index}.sku"), Limit::NAME)?;
            Ok((sku, quantity))
        })
        .collect()
}

/// Prices each line from its product (the command side's own state, not a read model):
/// the variant must exist, be on sale, and its product be published; all lines must
/// share a currency. A line at fault becomes a user error.
///
/// # Errors
/// [`ApiError::Internal`] when the event store cannot be read.
async fn priced_lines(
    ctx: &Context<'_>,
    requested: &[(String, u32)],
) -> ApiResult<Result<(Vec<OrderLine>, domain::Currency), UserError>> {
    let mut lines = Vec::with_capacity(requested.len());
    let mut currency = None;
    for (index, (sku_text, quantity)) in requested.iter().enumerate() {
        let index = index.to_string();
        let unknown = || {
            UserError::on(
                &["lines", &index, "sku"],
                "UNKNOWN_SKU",
                format!("no product sells SKU {}", super::ids::truncated(sku_text)),
            )
        };
        let Ok(sku) = Sku::parse(sku_text.clone()) else {
            return Ok(Err(unknown()));
        };
        let Some(product_id) = owner_of(ctx, &sku).await? else {
            return Ok(Err(unknown()));
        };
        let product = ctx
            .services()
            .commands
            .products
            .bus()
            .store()
            .load_fresh(&product_id.to_string())
            .await
            .map_err(ApiError::store)?;
        let product = product.state();
        let Some(variant) = product.variants().iter().find(|variant| variant.sku == sku) else {
            return Ok(Err(unknown()));
        };
        if !product.is_published() || variant.retired {
            return Ok(Err(UserError::on(
                &["lines", &index, "sku"],
                "NOT_FOR_SALE",
                format!("SKU {sku} is not for sale"),
            )));
        }
        let price: Money = variant.price;
        match currency {
            None => currency = Some(price.currency),
            Some(currency) if currency != price.currency => {
                return Ok(Err(UserError::on(
                    &["lines", &index, "sku"],
                    "CURRENCY_MISMATCH",
                    format!(
                        "SKU {sku} is priced in {}, the order in {currency}",
                        price.currency
                    ),
                )))
            }
            Some(_) => {}
        }
        lines.push(OrderLine {
            sku,
            quantity: *quantity,
            unit_price: price,
        });
    }
    match currency {
        Some(currency) => Ok(Ok((lines, currency))),
        None => Ok(Err(UserError::on(
            &["lines"],
            "NO_LINES",
            "an order needs at least one line",
        ))),
    }
}
