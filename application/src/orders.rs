//! Orders: placing one (which starts its saga), pricing lines, the lifecycle actions, and
//! refunds.

use chrono::Utc;
use domain::order::{Canceller, OrderCommand, OrderError, OrderLine, OrderStatus, ShippingAddress};
use domain::payment::{PaymentCommand, PaymentMethod};
use domain::{
    Actor, CommandMetadata, Currency, CustomerId, Money, OrderId, ProductId, RefundId, Sku,
};
use infra_nats::{CommandError, CommitOutcome};
use saga::keys::{admin_refund_key, provider_key, ProviderStep};
use saga::provider::RefundRequest;
use uuid::Uuid;

use crate::error::{committed, AppError, Refusal, Rejection, UseCaseResult};
use crate::idempotency::{self, Idempotency, Operation};
use crate::text::truncated;
use crate::Shop;

/// Who asks for an order change. Which roles may ask at all is the edge's check; this
/// says on whose behalf the change is made, which the use case needs to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    /// A customer, acting on their own orders only.
    Customer(CustomerId),
    /// Shop staff (an admin account), acting on any order.
    Staff(Uuid),
}

impl Requester {
    /// The account asking.
    pub fn account(self) -> Uuid {
        match self {
            Requester::Customer(customer) => customer.as_uuid(),
            Requester::Staff(account) => account,
        }
    }

    /// The actor recorded on the commands sent for this requester.
    pub fn actor(self) -> Actor {
        Actor::User(self.account())
    }
}

/// What to order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderItems {
    /// These lines: SKU and units.
    Lines(Vec<(String, u32)>),
    /// The customer's cart with this id; its ordered lines leave the cart.
    Cart(Uuid),
}

/// A new order.
#[derive(Debug, Clone)]
pub struct PlaceOrder {
    /// Who orders.
    pub customer: CustomerId,
    /// What.
    pub items: OrderItems,
    /// How it is paid.
    pub payment_method: PaymentMethod,
    /// Where it goes.
    pub shipping_address: ShippingAddress,
    /// Retrying with the same key places the order once and answers the same.
    pub idempotency: Option<Idempotency>,
}

/// A placed order (or the one placed first under the same idempotency key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOrder {
    /// The order.
    pub order_id: OrderId,
    /// Where it was committed.
    pub outcome: CommitOutcome,
}

/// Money to give back for an order.
#[derive(Debug, Clone)]
pub struct RefundPayment {
    /// The order.
    pub order_id: OrderId,
    /// How much; everything still refundable when `None`.
    pub amount: Option<Money>,
    /// Why.
    pub reason: String,
    /// Retrying with the same key refunds once and answers the same.
    pub idempotency: Option<Idempotency>,
}

/// A refund made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refunded {
    /// The order.
    pub order_id: OrderId,
    /// The latest position the refund wrote (the order's or the payment's).
    pub position: u64,
    /// Where the payment recorded it (the payments read model projects apart).
    pub payment_position: u64,
}

/// A change to an order that is one command.
#[derive(Debug, Clone)]
pub enum OrderChange {
    /// Cancel before it ships, for a reason.
    Cancel {
        /// Why.
        reason: String,
    },
    /// It left with a carrier (staff only).
    Ship {
        /// The carrier.
        carrier: String,
        /// The carrier's tracking number.
        tracking: String,
    },
    /// It arrived (staff only).
    Deliver,
}

impl Shop {
    /// Places an order at the catalog's current prices, which starts its saga (reserve
    /// stock, take payment, confirm). Refused with [`AppError::Overloaded`] while the saga
    /// is behind, before anything (even the idempotency key) is recorded.
    ///
    /// # Errors
    /// [`AppError::NotFound`] for a cart that is not the customer's, [`AppError::Overloaded`],
    /// [`AppError::Conflict`] for a reused idempotency key, or a backing service's failure.
    pub async fn place_order(&self, input: PlaceOrder) -> UseCaseResult<PlacedOrder> {
        let customer = input.customer;
        let (requested, cart_id) = match input.items {
            OrderItems::Lines(lines) => (lines, None),
            OrderItems::Cart(cart_id) => {
                let cart = self.carts.cart_of(customer.as_uuid()).await?;
                if cart.id != cart_id {
                    return Err(AppError::NotFound("cart"));
                }
                if cart.lines.is_empty() {
                    return Ok(Err(Rejection::refusal(
                        &["cartId"],
                        Refusal::EmptyCart,
                        "the cart is empty",
                    )));
                }
                (cart.lines, Some(cart.id))
            }
        };

        self.admission.admit()?;
        let keyed = idempotency::claim(
            &self.idempotency,
            customer.as_uuid(),
            Operation::PlaceOrder,
            input.idempotency.as_ref(),
        )
        .await?;
        let actor = Actor::User(customer.as_uuid());
        let (order_id, metadata) = match keyed {
            Some(id) => (OrderId(id), CommandMetadata::new(actor).with_command_id(id)),
            None => (OrderId(Uuid::now_v7()), CommandMetadata::new(actor)),
        };

        let (lines, currency) = match self.price_lines(&requested).await? {
            Ok(priced) => priced,
            Err(rejection) => return Ok(Err(rejection)),
        };
        let command = OrderCommand::PlaceOrder {
            order_id,
            customer_id: customer,
            lines,
            currency,
            payment_method: input.payment_method,
            shipping_address: Some(input.shipping_address),
            placed_at: Utc::now(),
        };
        let result = self
            .commands
            .orders()
            .execute(&order_id.to_string(), command, &metadata)
            .await;
        let outcome = match committed(result, &["lines"])? {
            Ok(outcome) => outcome,
            Err(rejection) => return Ok(Err(rejection)),
        };
        if let Some(cart_id) = cart_id {
            self.carts.check_out(cart_id, &requested).await?;
        }
        metrics::counter!("shopstream_orders_placed_total").increment(1);
        Ok(Ok(PlacedOrder { order_id, outcome }))
    }

    /// Prices each line from its product (the command side's own state, not a read
    /// model): the variant must exist and be on sale, its product published, and all
    /// lines must share a currency. A line at fault is a rejection naming it.
    ///
    /// # Errors
    /// When the SKU registry or the event store cannot be read.
    pub async fn price_lines(
        &self,
        requested: &[(String, u32)],
    ) -> UseCaseResult<(Vec<OrderLine>, Currency)> {
        let mut lines = Vec::with_capacity(requested.len());
        let mut currency = None;
        for (index, (sku_text, quantity)) in requested.iter().enumerate() {
            let index = index.to_string();
            let field = ["lines", index.as_str(), "sku"];
            let unknown = || {
                Rejection::refusal(
                    &field,
                    Refusal::UnknownSku,
                    format!("no product sells SKU {}", truncated(sku_text)),
                )
            };
            let Ok(sku) = Sku::parse(sku_text.clone()) else {
                return Ok(Err(unknown()));
            };
            let Some(product_id) = self.owner_of(&sku).await? else {
                return Ok(Err(unknown()));
            };
            let product = self
                .commands
                .products
                .bus()
                .load(&product_id.to_string())
                .await?;
            let Some(variant) = product.variants().iter().find(|variant| variant.sku == sku) else {
                return Ok(Err(unknown()));
            };
            if !product.is_published() || variant.retired {
                return Ok(Err(Rejection::refusal(
                    &field,
                    Refusal::NotForSale,
                    format!("SKU {sku} is not for sale"),
                )));
            }
            let price: Money = variant.price;
            match currency {
                None => currency = Some(price.currency),
                Some(currency) if currency != price.currency => {
                    return Ok(Err(Rejection::refusal(
                        &field,
                        Refusal::CurrencyMismatch,
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
            None => Ok(Err(Rejection::refusal(
                &["lines"],
                Refusal::NoLines,
                "an order needs at least one line",
            ))),
        }
    }

    /// The product that sells `sku`, if any.
    ///
    /// # Errors
    /// When the SKU registry cannot be read.
    pub async fn owner_of(&self, sku: &Sku) -> Result<Option<ProductId>, AppError> {
        let owner = self.commands.skus.owner(sku.as_str()).await?;
        Ok(owner
            .and_then(|owner| owner.parse::<Uuid>().ok())
            .map(ProductId))
    }

    /// Cancels, ships or delivers an order. A customer may only cancel their own order;
    /// another customer's order is not found, so its existence does not leak.
    ///
    /// # Errors
    /// [`AppError::NotFound`] for an order that does not exist or that the requester may
    /// not change, or a backing service's failure.
    pub async fn change_order(
        &self,
        requester: Requester,
        order_id: OrderId,
        change: OrderChange,
    ) -> UseCaseResult<CommitOutcome> {
        let command = match change {
            OrderChange::Cancel { reason } => {
                let order = self.load_order(order_id).await?;
                let by = match requester {
                    Requester::Staff(_) => Canceller::Admin,
                    Requester::Customer(customer) if order.customer_id() == Some(customer) => {
                        Canceller::Customer
                    }
                    Requester::Customer(_) => return Err(AppError::NotFound("order")),
                };
                OrderCommand::CancelOrder { reason, by }
            }
            OrderChange::Ship { carrier, tracking } => {
                OrderCommand::ShipOrder { carrier, tracking }
            }
            OrderChange::Deliver => OrderCommand::MarkDelivered,
        };
        let result = self
            .commands
            .orders()
            .execute(
                &order_id.to_string(),
                command,
                &CommandMetadata::new(requester.actor()),
            )
            .await;
        committed(result, &["id"])
    }

    /// Gives money back for a delivered or cancelled, paid order: at the payment provider
    /// first, then recorded on the payment and the order. Both aggregates decide on their
    /// own state before the provider is called, so an amount above what is left, or one the
    /// order refuses, never reaches it. A further partial refund of an order already
    /// refunded is recorded on its payment; the order stays refunded.
    ///
    /// # Errors
    /// [`AppError::NotFound`] for an unknown order, [`AppError::Unavailable`] when the
    /// provider is out of reach (retry with the same idempotency key), [`AppError::Conflict`]
    /// for a reused idempotency key, or a backing service's failure.
    pub async fn refund_payment(
        &self,
        staff: Uuid,
        input: RefundPayment,
    ) -> UseCaseResult<Refunded> {
        let order_id = input.order_id;
        let refund_id = RefundId(
            idempotency::claim(
                &self.idempotency,
                staff,
                Operation::RefundPayment,
                input.idempotency.as_ref(),
            )
            .await?
            .unwrap_or_else(Uuid::now_v7),
        );

        let order = self.load_order(order_id).await?;
        let Some(payment_id) = order.payment_id() else {
            return Ok(Err(Rejection::refusal(
                &["orderId"],
                Refusal::NotPaid,
                "the order has no payment to refund",
            )));
        };
        let already_refunded = match order.status() {
            Some(OrderStatus::Delivered | OrderStatus::Cancelled) => false,
            Some(OrderStatus::Refunded) => true,
            _ => {
                return Ok(Err(Rejection::refusal(
                    &["orderId"],
                    Refusal::NotRefundable,
                    "only delivered or cancelled orders are refunded here; cancel the order to refund it",
                )))
            }
        };
        let payment = self
            .commands
            .payments()
            .load(&payment_id.to_string())
            .await?;
        let amount = match (input.amount, payment.refundable()) {
            (Some(amount), _) => amount,
            (None, Some(refundable)) if refundable.is_positive() => refundable,
            _ => {
                return Ok(Err(Rejection::refusal(
                    &["amount"],
                    Refusal::NothingToRefund,
                    "nothing captured is left to refund",
                )))
            }
        };
        let record_on_payment = PaymentCommand::RefundPayment {
            refund_id,
            amount,
            reason: input.reason.clone(),
        };
        if let Err(error) = payment.decide(record_on_payment.clone()) {
            return Ok(Err(Rejection::domain(&["amount"], &error)));
        }
        let mark_order = OrderCommand::MarkRefunded {
            amount,
            reason: input.reason.clone(),
        };
        if !already_refunded {
            if let Err(error) = order.decide(mark_order.clone()) {
                return Ok(Err(Rejection::domain(&["amount"], &error)));
            }
        }

        let refund = RefundRequest {
            idempotency_key: admin_refund_key(refund_id),
            authorisation_key: provider_key(order_id, ProviderStep::Authorise),
            amount,
        };
        if let Err(error) = self.provider.refund(&refund).await {
            return if error.is_transient() {
                Err(AppError::Unavailable(Box::new(error)))
            } else {
                Ok(Err(Rejection::refusal(
                    &["amount"],
                    Refusal::ProviderRefused,
                    error.to_string(),
                )))
            };
        }
        let metadata = CommandMetadata::new(Actor::User(staff));
        let recorded = self
            .commands
            .payments()
            .execute(
                &payment_id.to_string(),
                record_on_payment,
                &metadata.caused_by(metadata.command_id, Uuid::new_v5(&refund_id.0, b"record")),
            )
            .await;
        let recorded = match committed(recorded, &["amount"])? {
            Ok(outcome) => outcome,
            Err(rejection) => return Ok(Err(rejection)),
        };
        // Sent on an order already refunded too: a retry of this very refund finds its
        // command id there and answers with the first outcome.
        let marked = self
            .commands
            .orders()
            .execute(
                &order_id.to_string(),
                mark_order,
                &metadata.caused_by(metadata.command_id, Uuid::new_v5(&refund_id.0, b"order")),
            )
            .await;
        let position = match marked {
            // A further partial refund of an order refunded before: the order stays
            // refunded, and the payment holds this refund.
            Err(CommandError::Rejected(OrderError::AlreadyRefunded)) if already_refunded => {
                recorded.position
            }
            marked => match committed(marked, &["orderId"])? {
                Ok(outcome) => recorded.position.max(outcome.position),
                // Decided on the order above, so only a concurrent change (another refund
                // that marked it first) gets here: the money went back and the payment
                // holds it, which is what the customer is owed.
                Err(rejection) => {
                    tracing::warn!(
                        %order_id,
                        code = rejection.code,
                        message = %rejection.message,
                        "the order refused to be marked refunded after its payment was refunded"
                    );
                    recorded.position
                }
            },
        };
        Ok(Ok(Refunded {
            order_id,
            position,
            payment_position: recorded.position,
        }))
    }

    /// The order aggregate itself (not the read model), for decisions.
    ///
    /// # Errors
    /// [`AppError::NotFound`] when it was never placed, or the store's failure.
    pub async fn load_order(&self, order_id: OrderId) -> Result<domain::order::Order, AppError> {
        let order = self.commands.orders().load(&order_id.to_string()).await?;
        if order.id().is_none() {
            return Err(AppError::NotFound("order"));
        }
        Ok(order)
    }
}
