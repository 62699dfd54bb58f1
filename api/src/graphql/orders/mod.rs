//! Orders: placing (which starts the saga), reading with lines, timeline and payments,
//! and the admin's lifecycle actions and refunds.

use application::orders::{OrderChange, OrderItems, PlaceOrder, RefundPayment, Requester};
use application::storefront::{MAX_CART_LINES, MAX_LINE_QUANTITY};
use async_graphql::{Context, InputObject, Object, ID};
use chrono::{DateTime, Utc};
use domain::order::{OrderStatus, ShippingAddress};
use domain::payment::PaymentMethod;
use domain::{CustomerId, OrderId};
use projections::orders::{self as orders_model, OrderDetail};
use uuid::Uuid;

use super::context::{ContextExt, Position};
use super::error::{ApiError, ApiResult};
use super::idempotency::idempotency;
use super::ids::{AccountId, CartId, GlobalId};
use super::money::MoneyInput;
use super::outcome::decided;
use super::relay::{connection, page_request, UserError};
use super::text::{check_text, Limit};
use crate::auth::{Principal, Role};
use crate::consistency::ReadModel;

mod view;

pub use view::{
    Order, OrderCancellation, OrderLineItem, OrderPaymentState, OrderRefund, OrderStatusChange,
    OrderStatusCode, Payment, Shipment, ShippingAddressView,
};

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

    fn committed(order_id: OrderId, position: u64) -> Self {
        Self {
            order_id: Some(order_id),
            user_errors: Vec::new(),
            position: Some(position),
            payment_position: None,
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
        let customer = ctx.require(&[Role::Customer])?;
        let token = check_text(&input.payment_token, "paymentToken", Limit::TOKEN)?;
        let items = match (&input.lines, &input.cart_id) {
            (Some(lines), None) => OrderItems::Lines(checked_lines(lines)?),
            (None, Some(cart_id)) => OrderItems::Cart(CartId::from_global(cart_id)?.0),
            _ => return Err(ApiError::bad_input("pass either `lines` or `cartId`").into()),
        };
        let place = PlaceOrder {
            customer: CustomerId(customer.account_id),
            items,
            payment_method: PaymentMethod::Card { token },
            shipping_address: checked_address(&input.shipping_address)?,
            idempotency: idempotency(input.idempotency_key.as_deref(), &input)?,
        };
        let placed = ctx.services().shop.place_order(place).await;
        Ok(match decided(placed)? {
            Ok(placed) => OrderPayload::committed(placed.order_id, placed.outcome.position),
            Err(error) => OrderPayload::rejected(error),
        })
    }

    /// Cancels an order before it ships: customers their own, admins any. The saga
    /// gives back held stock and money.
    async fn order_cancel(
        &self,
        ctx: &Context<'_>,
        input: OrderCancelInput,
    ) -> async_graphql::Result<OrderPayload> {
        let viewer = ctx.require(&[Role::Customer, Role::Admin])?;
        let order_id = OrderId::from_global(&input.id)?;
        let reason = check_text(&input.reason, "reason", Limit::REASON)?;
        change_order(
            ctx,
            requester(viewer),
            order_id,
            OrderChange::Cancel { reason },
        )
        .await
    }

    /// Records that an order left with a carrier (admins).
    async fn order_ship(
        &self,
        ctx: &Context<'_>,
        input: OrderShipInput,
    ) -> async_graphql::Result<OrderPayload> {
        let admin = ctx.require(&[Role::Admin])?;
        let order_id = OrderId::from_global(&input.id)?;
        let change = OrderChange::Ship {
            carrier: check_text(&input.carrier, "carrier", Limit::NAME)?,
            tracking: check_text(&input.tracking, "tracking", Limit::NAME)?,
        };
        change_order(ctx, requester(admin), order_id, change).await
    }

    /// Records that an order arrived (admins).
    async fn order_deliver(
        &self,
        ctx: &Context<'_>,
        input: OrderDeliverInput,
    ) -> async_graphql::Result<OrderPayload> {
        let admin = ctx.require(&[Role::Admin])?;
        let order_id = OrderId::from_global(&input.id)?;
        change_order(ctx, requester(admin), order_id, OrderChange::Deliver).await
    }

    /// Gives money back to the customer at the payment provider and records it on the
    /// payment and the order (admins). For delivered or cancelled, paid orders.
    async fn payment_refund(
        &self,
        ctx: &Context<'_>,
        input: PaymentRefundInput,
    ) -> async_graphql::Result<OrderPayload> {
        let admin = ctx.require(&[Role::Admin])?;
        let refund = RefundPayment {
            order_id: OrderId::from_global(&input.order_id)?,
            reason: check_text(&input.reason, "reason", Limit::REASON)?,
            amount: input
                .amount
                .as_ref()
                .map(|amount| amount.to_money("amount"))
                .transpose()?,
            idempotency: idempotency(input.idempotency_key.as_deref(), &input)?,
        };
        let refunded = ctx
            .services()
            .shop
            .refund_payment(admin.account_id, refund)
            .await;
        Ok(match decided(refunded)? {
            Ok(refunded) => OrderPayload {
                order_id: Some(refunded.order_id),
                user_errors: Vec::new(),
                position: Some(refunded.position),
                payment_position: Some(refunded.payment_position),
            },
            Err(error) => OrderPayload::rejected(error),
        })
    }
}

/// On whose behalf a signed-in caller changes an order: admins as staff, anyone else as
/// the customer they are.
fn requester(viewer: &Principal) -> Requester {
    match viewer.role {
        Role::Admin => Requester::Staff(viewer.account_id),
        _ => Requester::Customer(CustomerId(viewer.account_id)),
    }
}

async fn change_order(
    ctx: &Context<'_>,
    requester: Requester,
    order_id: OrderId,
    change: OrderChange,
) -> async_graphql::Result<OrderPayload> {
    let changed = ctx
        .services()
        .shop
        .change_order(requester, order_id, change)
        .await;
    Ok(match decided(changed)? {
        Ok(outcome) => OrderPayload::committed(order_id, outcome.position),
        Err(error) => OrderPayload::rejected(error),
    })
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
