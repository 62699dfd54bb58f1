//! Every real read model, fed by every real projector at once from a shop history driven
//! through the real write side (the JetStream command buses), shows what the commands the
//! test saw acknowledged imply; and rebuilding each one beside its running live projector
//! produces tables identical to the live ones, without repeating a side effect.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use cqrs_es::Aggregate;
use domain::inventory::{Inventory, InventoryCommand};
use domain::order::{Canceller, Order, OrderCommand, OrderLine, OrderStatus};
use domain::payment::{Payment, PaymentCommand, PaymentMethod};
use domain::product::{NewVariant, Product, ProductCommand};
use domain::{
    Actor, CommandMetadata, Currency, CustomerId, Money, OrderId, PaymentId, ProductId, RefundId,
    Sku,
};
use infra_nats::subjects::EVENTS_SUBJECTS;
use infra_nats::{
    CommandBus, CommitOutcome, ConflictPolicy, EventStoreConfig, JetStreamEventStore,
    ProductCommands, SkuRegistry, StreamSettings,
};
use projections::catalog::{ProductFilter, ProductSort};
use projections::dead_letters::{self, DeadLetterFilter};
use projections::notifications::NotificationKind;
use projections::orders::{OrderFilter, PaymentState};
use projections::page::PageRequest;
use projections::payments::PaymentStatus;
use projections::runtime::{consumer_filter, rebuild, Projector, ProjectorConfig, RebuildOptions};
use projections::Projection;
use sqlx::PgPool;
use testkit::{eventually, NatsServer, TestDatabase};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// The schemas of the read models, whose every table a rebuild must reproduce.
const READ_MODEL_SCHEMAS: [&str; 7] = [
    "catalog",
    "inventory",
    "orders",
    "payments",
    "sagas",
    "sales",
    "notifications",
];

/// How many orders the history places before the rebuild (nine flows, five rounds).
const ORDERS: usize = 45;

// ---------------------------------------------------------------------------------------
// What the test itself acknowledged.

#[derive(Debug, Clone)]
struct ExpectedVariant {
    sku: String,
    name: String,
    price: i64,
    retired: bool,
}

#[derive(Debug, Clone)]
struct ExpectedProduct {
    name: String,
    description: String,
    category: String,
    currency: Currency,
    published: bool,
    variants: Vec<ExpectedVariant>,
}

#[derive(Debug, Clone, Default)]
struct ExpectedStock {
    on_hand: i64,
    reservations: BTreeMap<OrderId, i64>,
    /// Units committed per order, until they are returned.
    committed: BTreeMap<OrderId, i64>,
    movements: i64,
}

impl ExpectedStock {
    fn reserved(&self) -> i64 {
        self.reservations.values().sum()
    }

    fn available(&self) -> i64 {
        self.on_hand - self.reserved()
    }
}

#[derive(Debug, Clone)]
struct ExpectedOrder {
    customer: CustomerId,
    currency: Currency,
    lines: Vec<(String, u32, i64)>,
    total: i64,
    placed_at: DateTime<Utc>,
    timeline: Vec<OrderStatus>,
    /// Mirrors the read model's rule: the state only moves up, and the payment named is
    /// the one that last moved it (or kept it level).
    payment_state: PaymentState,
    payment_id: Option<PaymentId>,
    /// Every payment attempt, in the order they were made.
    payments: Vec<PaymentId>,
    stock_reserved: bool,
    /// The reservations were committed, so a cancellation returns the stock.
    stock_committed: bool,
    confirmed: bool,
    shipped: bool,
    delivered: bool,
    cancelled_by: Option<&'static str>,
    refunded: Option<i64>,
}

impl ExpectedOrder {
    fn status(&self) -> OrderStatus {
        *self
            .timeline
            .last()
            .expect("an order is placed before anything else")
    }

    fn raise(&mut self, state: PaymentState, payment_id: PaymentId) {
        if state >= self.payment_state {
            self.payment_state = state;
            self.payment_id = Some(payment_id);
        }
    }

    fn units(&self) -> i64 {
        self.lines.iter().map(|(_, q, _)| i64::from(*q)).sum()
    }
}

#[derive(Debug, Clone)]
struct ExpectedPayment {
    order_id: OrderId,
    status: PaymentStatus,
    amount: i64,
    authorised: i64,
    captured: i64,
    refunded: i64,
    operations: usize,
}

/// Per customer and notification kind, how many notifications the notifier owes.
type Notifications = BTreeMap<CustomerId, BTreeMap<&'static str, usize>>;

#[derive(Debug, Default)]
struct Expected {
    /// The last position committed per aggregate type.
    last_position: BTreeMap<&'static str, u64>,
    commands: usize,
    products: BTreeMap<ProductId, ExpectedProduct>,
    stock: BTreeMap<String, ExpectedStock>,
    orders: BTreeMap<OrderId, ExpectedOrder>,
    payments: BTreeMap<PaymentId, ExpectedPayment>,
    notifications: Notifications,
}

impl Expected {
    fn notify(&mut self, customer: CustomerId, kind: NotificationKind) {
        *self
            .notifications
            .entry(customer)
            .or_default()
            .entry(kind.as_str())
            .or_default() += 1;
    }

    /// The SKUs an order in `currency` may buy: active variants of published products.
    fn buyable(&self, currency: Currency) -> Vec<(String, i64)> {
        self.products
            .values()
            .filter(|p| p.published && p.currency == currency)
            .flat_map(|p| p.variants.iter().filter(|v| !v.retired))
            .map(|v| (v.sku.clone(), v.price))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// The write side: the real buses, and the record of what they acknowledged.

struct Shop {
    catalog: ProductCommands,
    inventory: CommandBus<Inventory>,
    orders: CommandBus<Order>,
    payments: CommandBus<Payment>,
    expected: Expected,
}

fn metadata() -> CommandMetadata {
    CommandMetadata::new(Actor::System("e2e".to_owned()))
}

fn sku(text: &str) -> Sku {
    Sku::parse(text).expect("the test's SKUs are valid")
}

fn product_id(n: u128) -> ProductId {
    ProductId::from_uuid(Uuid::from_u128(0x1000_0000 + n))
}

fn order_id(n: usize) -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(0x2000_0000 + n as u128))
}

fn payment_id(order: usize, attempt: usize) -> PaymentId {
    PaymentId::from_uuid(Uuid::from_u128(
        0x3000_0000 + ((order as u128) << 8) + attempt as u128,
    ))
}

fn customer_id(n: usize) -> CustomerId {
    CustomerId::from_uuid(Uuid::from_u128(0x4000_0000 + n as u128))
}

fn refund_id(order: usize, part: usize) -> RefundId {
    RefundId::from_uuid(Uuid::from_u128(
        0x5000_0000 + ((order as u128) << 8) + part as u128,
    ))
}

impl Shop {
    async fn open(client: &async_nats::Client, js: &jetstream::Context) -> anyhow::Result<Self> {
        let products =
            JetStreamEventStore::<Product>::new(client.clone(), EventStoreConfig::default())
                .await?;
        let inventory =
            JetStreamEventStore::<Inventory>::new(client.clone(), EventStoreConfig::default())
                .await?;
        let orders =
            JetStreamEventStore::<Order>::new(client.clone(), EventStoreConfig::default()).await?;
        let payments =
            JetStreamEventStore::<Payment>::new(client.clone(), EventStoreConfig::default())
                .await?;
        Ok(Self {
            catalog: ProductCommands::new(
                CommandBus::new(products, (), ConflictPolicy::default()),
                SkuRegistry::open(js).await?,
            ),
            inventory: CommandBus::new(inventory, (), ConflictPolicy::default()),
            orders: CommandBus::new(orders, (), ConflictPolicy::default()),
            payments: CommandBus::new(payments, (), ConflictPolicy::default()),
            expected: Expected::default(),
        })
    }

    /// Records an acknowledged commit; every command the test sends must append events.
    fn committed(&mut self, aggregate_type: &'static str, outcome: &CommitOutcome) {
        assert!(
            !outcome.duplicate && outcome.events > 0,
            "{aggregate_type} command appended nothing: {outcome:?}"
        );
        let last = self
            .expected
            .last_position
            .entry(aggregate_type)
            .or_default();
        assert!(outcome.position > *last, "positions only grow: {outcome:?}");
        *last = outcome.position;
        self.expected.commands += 1;
    }

    async fn product(&mut self, id: ProductId, command: ProductCommand) {
        let outcome = self
            .catalog
            .execute(id, command.clone(), &metadata())
            .await
            .unwrap_or_else(|e| panic!("{command:?} on product {id}: {e}"));
        self.committed(Product::TYPE, &outcome);
        let product = self.expected.products.get_mut(&id);
        match command {
            ProductCommand::CreateProduct {
                name,
                description,
                category,
                variants,
                ..
            } => {
                let currency = variants[0].price.currency;
                let variants = variants.into_iter().map(expected_variant).collect();
                self.expected.products.insert(
                    id,
                    ExpectedProduct {
                        name,
                        description,
                        category,
                        currency,
                        published: false,
                        variants,
                    },
                );
            }
            ProductCommand::RenameProduct { name } => product.unwrap().name = name,
            ProductCommand::DescribeProduct { description } => {
                product.unwrap().description = description;
            }
            ProductCommand::ChangeCategory { category } => product.unwrap().category = category,
            ProductCommand::ChangeVariantPrice { sku, price } => {
                let product = product.unwrap();
                let variant = product.variants.iter_mut().find(|v| v.sku == sku.as_str());
                variant.unwrap().price = price.amount_minor;
            }
            ProductCommand::AddVariant { variant } => {
                product.unwrap().variants.push(expected_variant(variant));
            }
            ProductCommand::RetireVariant { sku } => {
                let product = product.unwrap();
                let variant = product.variants.iter_mut().find(|v| v.sku == sku.as_str());
                variant.unwrap().retired = true;
            }
            ProductCommand::PublishProduct => product.unwrap().published = true,
            ProductCommand::UnpublishProduct => product.unwrap().published = false,
        }
    }

    async fn stock(&mut self, sku_text: &str, command: InventoryCommand) {
        let outcome = self
            .inventory
            .execute(sku_text, command.clone(), &metadata())
            .await
            .unwrap_or_else(|e| panic!("{command:?} on {sku_text}: {e}"));
        self.committed(Inventory::TYPE, &outcome);
        let stock = self.expected.stock.entry(sku_text.to_owned()).or_default();
        stock.movements += 1;
        match command {
            InventoryCommand::ReceiveStock { quantity, .. } => {
                stock.on_hand += i64::from(quantity);
            }
            InventoryCommand::AdjustStock { delta, .. } => stock.on_hand += delta,
            InventoryCommand::ReserveStock { order_id, quantity } => {
                stock.reservations.insert(order_id, i64::from(quantity));
            }
            InventoryCommand::ReleaseReservation { order_id, .. } => {
                stock.reservations.remove(&order_id).unwrap();
            }
            InventoryCommand::CommitReservation { order_id } => {
                let quantity = stock.reservations.remove(&order_id).unwrap();
                stock.on_hand -= quantity;
                stock.committed.insert(order_id, quantity);
            }
            InventoryCommand::ReturnCommittedStock { order_id, .. } => {
                stock.on_hand += stock.committed.remove(&order_id).unwrap();
            }
        }
    }

    async fn receive(&mut self, sku_text: &str, quantity: u32, reference: &str) {
        let command = InventoryCommand::ReceiveStock {
            sku: sku(sku_text),
            quantity,
            reference: reference.to_owned(),
        };
        self.stock(sku_text, command).await;
    }

    async fn adjust(&mut self, sku_text: &str, delta: i64, reason: &str) {
        let command = InventoryCommand::AdjustStock {
            sku: sku(sku_text),
            delta,
            reason: reason.to_owned(),
        };
        self.stock(sku_text, command).await;
    }

    /// Sends an order command and records the status it moves the order to.
    async fn order(&mut self, id: OrderId, command: OrderCommand, status: OrderStatus) {
        let outcome = self
            .orders
            .execute(&id.to_string(), command.clone(), &metadata())
            .await
            .unwrap_or_else(|e| panic!("{command:?} on order {id}: {e}"));
        self.committed(Order::TYPE, &outcome);
        if let Some(order) = self.expected.orders.get_mut(&id) {
            order.timeline.push(status);
        }
    }

    async fn payment(&mut self, id: PaymentId, command: PaymentCommand) {
        let outcome = self
            .payments
            .execute(&id.to_string(), command.clone(), &metadata())
            .await
            .unwrap_or_else(|e| panic!("{command:?} on payment {id}: {e}"));
        self.committed(Payment::TYPE, &outcome);
    }

    /// Runs one step of order number `n`'s flow.
    async fn step(&mut self, n: usize, step: Step) {
        let id = order_id(n);
        match step {
            Step::Place => self.place(n).await,
            Step::Reserve => {
                let lines = self.expected.orders[&id].lines.clone();
                for (sku_text, quantity, _) in lines {
                    let command = InventoryCommand::ReserveStock {
                        order_id: id,
                        quantity,
                    };
                    self.stock(&sku_text, command).await;
                }
                self.order(
                    id,
                    OrderCommand::MarkStockReserved,
                    OrderStatus::StockReserved,
                )
                .await;
                self.expected.orders.get_mut(&id).unwrap().stock_reserved = true;
            }
            Step::Decline => {
                let payment = self.next_payment(n);
                let total = self.total(id);
                let command = PaymentCommand::DeclinePayment {
                    payment_id: payment,
                    order_id: id,
                    amount: total,
                    reason: "insufficient funds".to_owned(),
                };
                self.payment(payment, command).await;
                self.record_payment(payment, id, PaymentStatus::Declined, total.amount_minor, 0);
                let order = self.expected.orders.get_mut(&id).unwrap();
                order.raise(PaymentState::Declined, payment);
            }
            Step::Authorise => {
                let payment = self.next_payment(n);
                let total = self.total(id);
                let command = PaymentCommand::AuthorisePayment {
                    payment_id: payment,
                    order_id: id,
                    amount: total,
                    method: PaymentMethod::Card {
                        token: format!("tok_{n}"),
                    },
                    provider_reference: format!("auth-{n}"),
                };
                self.payment(payment, command).await;
                let amount = total.amount_minor;
                self.record_payment(payment, id, PaymentStatus::Authorised, amount, amount);
                self.expected
                    .orders
                    .get_mut(&id)
                    .unwrap()
                    .raise(PaymentState::Authorised, payment);
                let command = OrderCommand::MarkPaymentAuthorised {
                    payment_id: payment,
                };
                self.order(id, command, OrderStatus::PaymentAuthorised)
                    .await;
                self.expected
                    .orders
                    .get_mut(&id)
                    .unwrap()
                    .raise(PaymentState::Authorised, payment);
            }
            Step::Confirm => {
                self.order(id, OrderCommand::ConfirmOrder, OrderStatus::Confirmed)
                    .await;
                let order = self.expected.orders.get_mut(&id).unwrap();
                order.confirmed = true;
                let customer = order.customer;
                self.expected
                    .notify(customer, NotificationKind::OrderConfirmed);
            }
            Step::Capture => self.capture(id).await,
            Step::Commit => self.commit_stock(id).await,
            Step::Ship => {
                self.commit_stock(id).await;
                self.capture(id).await;
                let command = OrderCommand::ShipOrder {
                    carrier: "DHL".to_owned(),
                    tracking: format!("JD{n:06}"),
                };
                self.order(id, command, OrderStatus::Shipped).await;
                self.expected.orders.get_mut(&id).unwrap().shipped = true;
            }
            Step::Deliver => {
                self.order(id, OrderCommand::MarkDelivered, OrderStatus::Delivered)
                    .await;
                self.expected.orders.get_mut(&id).unwrap().delivered = true;
            }
            Step::Cancel(by) => self.cancel(n, by).await,
            Step::Refund(parts) => self.refund(n, parts).await,
        }
    }

    async fn place(&mut self, n: usize) {
        let id = order_id(n);
        let currency = if n % 6 == 5 {
            Currency::USD
        } else {
            Currency::EUR
        };
        let buyable = self.expected.buyable(currency);
        let wanted = (1 + n % 3).min(buyable.len());
        let mut chosen = BTreeSet::new();
        let mut lines = Vec::new();
        let mut k = 0;
        while lines.len() < wanted {
            let (sku_text, price) = &buyable[(n * 7 + k * 5) % buyable.len()];
            k += 1;
            if !chosen.insert(sku_text.clone()) {
                continue;
            }
            let quantity = 1 + ((n + k) % 3) as u32;
            lines.push((sku_text.clone(), quantity, *price));
        }
        let customer = customer_id(n % 7);
        // Four placing days, one minute apart within a day: the sales model counts
        // placements per day.
        let placed_at = Utc.with_ymd_and_hms(2024, 5, 1, 9, 0, 0).unwrap()
            + chrono::Duration::days((n % 4) as i64)
            + chrono::Duration::minutes(n as i64);
        let total = lines.iter().map(|(_, q, p)| i64::from(*q) * p).sum();
        let command = OrderCommand::PlaceOrder {
            order_id: id,
            customer_id: customer,
            lines: lines
                .iter()
                .map(|(s, quantity, price)| OrderLine {
                    sku: sku(s),
                    quantity: *quantity,
                    unit_price: Money::new(*price, currency),
                })
                .collect(),
            currency,
            payment_method: PaymentMethod::Card {
                token: format!("tok_{n}"),
            },
            shipping_address: None,
            placed_at,
        };
        self.expected.orders.insert(
            id,
            ExpectedOrder {
                customer,
                currency,
                lines,
                total,
                placed_at,
                timeline: Vec::new(),
                payment_state: PaymentState::None,
                payment_id: None,
                payments: Vec::new(),
                stock_reserved: false,
                stock_committed: false,
                confirmed: false,
                shipped: false,
                delivered: false,
                cancelled_by: None,
                refunded: None,
            },
        );
        self.order(id, command, OrderStatus::Placed).await;
    }

    fn total(&self, id: OrderId) -> Money {
        let order = &self.expected.orders[&id];
        Money::new(order.total, order.currency)
    }

    fn next_payment(&mut self, n: usize) -> PaymentId {
        let order = self.expected.orders.get_mut(&order_id(n)).unwrap();
        let payment = payment_id(n, order.payments.len());
        order.payments.push(payment);
        payment
    }

    fn record_payment(
        &mut self,
        payment: PaymentId,
        order_id: OrderId,
        status: PaymentStatus,
        amount: i64,
        authorised: i64,
    ) {
        self.expected.payments.insert(
            payment,
            ExpectedPayment {
                order_id,
                status,
                amount,
                authorised,
                captured: 0,
                refunded: 0,
                operations: 1,
            },
        );
    }

    /// The order's authorised payment, the last attempt.
    fn authorised_payment(&self, id: OrderId) -> PaymentId {
        let payment = *self.expected.orders[&id].payments.last().unwrap();
        assert_ne!(
            self.expected.payments[&payment].status,
            PaymentStatus::Declined
        );
        payment
    }

    async fn capture(&mut self, id: OrderId) {
        let payment = self.authorised_payment(id);
        if self.expected.payments[&payment].status != PaymentStatus::Authorised {
            return;
        }
        let total = self.total(id);
        self.payment(payment, PaymentCommand::CapturePayment { amount: total })
            .await;
        let expected = self.expected.payments.get_mut(&payment).unwrap();
        expected.status = PaymentStatus::Captured;
        expected.captured = total.amount_minor;
        expected.operations += 1;
        self.expected
            .orders
            .get_mut(&id)
            .unwrap()
            .raise(PaymentState::Captured, payment);
    }

    /// Commits the reservation of every line, unless that was done already.
    async fn commit_stock(&mut self, id: OrderId) {
        if self.expected.orders[&id].stock_committed {
            return;
        }
        let lines = self.expected.orders[&id].lines.clone();
        for (sku_text, _, _) in lines {
            let command = InventoryCommand::CommitReservation { order_id: id };
            self.stock(&sku_text, command).await;
        }
        self.expected.orders.get_mut(&id).unwrap().stock_committed = true;
    }

    /// Cancels, gives the reserved or committed stock back, and voids an uncaptured
    /// authorisation.
    async fn cancel(&mut self, n: usize, by: Canceller) {
        let id = order_id(n);
        let command = OrderCommand::CancelOrder {
            reason: format!("cancelled in flow {}", n % 9),
            by,
        };
        self.order(id, command, OrderStatus::Cancelled).await;
        let order = self.expected.orders.get_mut(&id).unwrap();
        order.cancelled_by = Some(match by {
            Canceller::Customer => "customer",
            Canceller::System => "system",
            Canceller::Admin => "admin",
        });
        let customer = order.customer;
        self.expected
            .notify(customer, NotificationKind::OrderCancelled);
        if self.expected.orders[&id].stock_committed {
            let lines = self.expected.orders[&id].lines.clone();
            for (sku_text, _, _) in lines {
                let command = InventoryCommand::ReturnCommittedStock {
                    order_id: id,
                    reason: "cancelled before shipping".to_owned(),
                };
                self.stock(&sku_text, command).await;
            }
        } else if self.expected.orders[&id].stock_reserved {
            let lines = self.expected.orders[&id].lines.clone();
            for (sku_text, _, _) in lines {
                let command = InventoryCommand::ReleaseReservation {
                    order_id: id,
                    reason: "order cancelled".to_owned(),
                };
                self.stock(&sku_text, command).await;
            }
        }
        let last = self.expected.orders[&id].payments.last().copied();
        if let Some(payment) = last {
            if self.expected.payments[&payment].status == PaymentStatus::Authorised {
                self.payment(payment, PaymentCommand::VoidPayment).await;
                let expected = self.expected.payments.get_mut(&payment).unwrap();
                expected.status = PaymentStatus::Voided;
                expected.operations += 1;
                self.expected
                    .orders
                    .get_mut(&id)
                    .unwrap()
                    .raise(PaymentState::Voided, payment);
            }
        }
    }

    /// Refunds `parts` (fractions of the total) of the captured payment, then records
    /// their sum on the order.
    async fn refund(&mut self, n: usize, parts: &[(i64, i64)]) {
        let id = order_id(n);
        let payment = self.authorised_payment(id);
        let order = &self.expected.orders[&id];
        let (total, currency, customer) = (order.total, order.currency, order.customer);
        let mut sum = 0;
        for (part, (numerator, denominator)) in parts.iter().enumerate() {
            let amount = total * numerator / denominator;
            let command = PaymentCommand::RefundPayment {
                refund_id: refund_id(n, part),
                amount: Money::new(amount, currency),
                reason: "returned goods".to_owned(),
            };
            self.payment(payment, command).await;
            sum += amount;
            let expected = self.expected.payments.get_mut(&payment).unwrap();
            expected.refunded += amount;
            expected.operations += 1;
            expected.status = if expected.refunded == expected.captured {
                PaymentStatus::Refunded
            } else {
                PaymentStatus::PartiallyRefunded
            };
            self.expected
                .notify(customer, NotificationKind::RefundIssued);
            self.expected
                .orders
                .get_mut(&id)
                .unwrap()
                .raise(PaymentState::Refunded, payment);
        }
        let command = OrderCommand::MarkRefunded {
            amount: Money::new(sum, currency),
            reason: "returned goods".to_owned(),
        };
        self.order(id, command, OrderStatus::Refunded).await;
        let order = self.expected.orders.get_mut(&id).unwrap();
        order.refunded = Some(sum);
        if let Some(payment) = order.payment_id {
            order.raise(PaymentState::Refunded, payment);
        }
    }
}

fn expected_variant(variant: NewVariant) -> ExpectedVariant {
    ExpectedVariant {
        sku: variant.sku.as_str().to_owned(),
        name: variant.name,
        price: variant.price.amount_minor,
        retired: false,
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Place,
    /// Reserves every line, then marks the order's stock reserved.
    Reserve,
    /// A payment attempt the provider refused.
    Decline,
    /// A new payment the provider authorised, recorded on the order.
    Authorise,
    Confirm,
    Capture,
    /// Commits the reservations (the units leave the shelf) without shipping yet.
    Commit,
    /// Commits the reservations (if not yet), captures (if not yet), ships.
    Ship,
    Deliver,
    Cancel(Canceller),
    Refund(&'static [(i64, i64)]),
}

/// The flow of order number `n`: nine kinds of order life, the ninth left in flight at
/// one of four points.
fn flow(n: usize) -> Vec<Step> {
    use Step::*;
    match n % 9 {
        0 => vec![Place, Reserve, Authorise, Confirm, Ship, Deliver],
        1 => vec![
            Place,
            Reserve,
            Authorise,
            Confirm,
            Ship,
            Deliver,
            Refund(&[(1, 3), (1, 4)]),
        ],
        2 => vec![Place, Reserve, Cancel(Canceller::Customer)],
        3 => vec![Place, Cancel(Canceller::Admin)],
        4 => vec![Place, Reserve, Decline, Cancel(Canceller::System)],
        5 => vec![Place, Reserve, Decline, Authorise, Confirm, Ship],
        // The units left the shelf before the cancellation, so they are returned.
        6 => vec![
            Place,
            Reserve,
            Authorise,
            Confirm,
            Commit,
            Cancel(Canceller::Admin),
        ],
        7 => vec![
            Place,
            Reserve,
            Authorise,
            Confirm,
            Capture,
            Cancel(Canceller::Customer),
            Refund(&[(1, 1)]),
        ],
        _ => {
            let mut steps = vec![Place, Reserve, Authorise, Confirm];
            steps.truncate(1 + (n / 9) % 4);
            steps
        }
    }
}

/// A product to create: number, name, category, variants (SKU, price) and currency.
type ProductSpec = (
    u128,
    &'static str,
    &'static str,
    &'static [(&'static str, i64)],
    Currency,
);

/// Drives the catalog and its stock: products, variants, prices, publishing, deliveries.
async fn stock_the_shop(shop: &mut Shop) {
    let eur = |minor| Money::new(minor, Currency::EUR);
    let products: [ProductSpec; 9] = [
        (
            0,
            "Ceramic mug",
            "kitchen",
            &[("MUG-RED", 1250), ("MUG-BLUE", 1250), ("MUG-GREEN", 1350)],
            Currency::EUR,
        ),
        (
            1,
            "Espresso cup",
            "kitchen",
            &[("CUP-S", 800), ("CUP-L", 950)],
            Currency::EUR,
        ),
        (
            2,
            "Linen apron",
            "textiles",
            &[("APRON-S", 2400), ("APRON-M", 2400), ("APRON-L", 2600)],
            Currency::EUR,
        ),
        (
            3,
            "Tea towel",
            "textiles",
            &[("TOWEL-1", 650)],
            Currency::EUR,
        ),
        (
            4,
            "Oak board",
            "kitchen",
            &[("BOARD-S", 3200), ("BOARD-L", 4500)],
            Currency::EUR,
        ),
        (
            5,
            "Wool throw",
            "home",
            &[("THROW-GREY", 8900), ("THROW-OCHRE", 8900)],
            Currency::EUR,
        ),
        (
            6,
            "Beeswax candle",
            "home",
            &[("CANDLE-1", 1500), ("CANDLE-2", 1800)],
            Currency::EUR,
        ),
        (
            7,
            "Travel adapter",
            "gadgets",
            &[("ADAPTER-EU", 1999), ("ADAPTER-UK", 2199)],
            Currency::USD,
        ),
        (
            8,
            "Prototype lamp",
            "home",
            &[("LAMP-1", 12000)],
            Currency::EUR,
        ),
    ];
    for (n, name, category, variants, currency) in products {
        let id = product_id(n);
        let command = ProductCommand::CreateProduct {
            product_id: id,
            name: name.to_owned(),
            description: format!("{name}, made to last"),
            category: category.to_owned(),
            variants: variants
                .iter()
                .map(|(s, price)| NewVariant {
                    sku: sku(s),
                    name: s.to_lowercase(),
                    price: Money::new(*price, currency),
                })
                .collect(),
        };
        shop.product(id, command).await;
        for (s, _) in variants {
            shop.receive(s, 30, &format!("PO-{n}")).await;
        }
    }
    // Stock booked before the product that sells it gains the variant.
    shop.receive("CUP-XL", 20, "PO-early").await;
    let command = ProductCommand::AddVariant {
        variant: NewVariant {
            sku: sku("CUP-XL"),
            name: "cup-xl".to_owned(),
            price: eur(1100),
        },
    };
    shop.product(product_id(1), command).await;
    for (n, s, price) in [
        (0, "MUG-GREEN", 1290),
        (4, "BOARD-L", 4200),
        (1, "CUP-S", 850),
    ] {
        let command = ProductCommand::ChangeVariantPrice {
            sku: sku(s),
            price: eur(price),
        };
        shop.product(product_id(n), command).await;
    }
    let command = ProductCommand::RenameProduct {
        name: "Waffle tea towel".to_owned(),
    };
    shop.product(product_id(3), command).await;
    let command = ProductCommand::DescribeProduct {
        description: "Washed linen, one size fits most".to_owned(),
    };
    shop.product(product_id(2), command).await;
    for n in 0..8 {
        shop.product(product_id(n), ProductCommand::PublishProduct)
            .await;
    }
    shop.adjust("MUG-BLUE", -2, "breakage").await;
    shop.adjust("TOWEL-1", 3, "stocktake").await;
    shop.adjust("THROW-GREY", -1, "damaged in transit").await;
    shop.receive("MUG-RED", 12, "PO-top-up").await;
}

/// Catalog and stock changes between rounds of orders.
async fn between_rounds(shop: &mut Shop, round: usize) {
    let eur = |minor| Money::new(minor, Currency::EUR);
    match round {
        1 => {
            let command = ProductCommand::ChangeVariantPrice {
                sku: sku("MUG-RED"),
                price: eur(1190),
            };
            shop.product(product_id(0), command).await;
            let command = ProductCommand::RetireVariant {
                sku: sku("APRON-L"),
            };
            shop.product(product_id(2), command).await;
            let command = ProductCommand::ChangeCategory {
                category: "decor".to_owned(),
            };
            shop.product(product_id(6), command).await;
            shop.product(product_id(5), ProductCommand::UnpublishProduct)
                .await;
            shop.adjust("BOARD-S", -1, "stocktake").await;
        }
        3 => {
            shop.product(product_id(5), ProductCommand::PublishProduct)
                .await;
            shop.product(product_id(6), ProductCommand::UnpublishProduct)
                .await;
            shop.receive("MUG-RED", 10, "PO-reorder").await;
            shop.adjust("CUP-L", 2, "found in the back").await;
        }
        _ => {}
    }
}

/// Places and moves the orders in rounds of nine, one step of each order at a time, so
/// that commits of different orders interleave in the log.
async fn trade(shop: &mut Shop, orders: std::ops::Range<usize>) {
    let numbers: Vec<usize> = orders.collect();
    for group in numbers.chunks(9) {
        between_rounds(shop, group[0] / 9).await;
        let flows: Vec<(usize, Vec<Step>)> = group.iter().map(|&n| (n, flow(n))).collect();
        let longest = flows.iter().map(|(_, f)| f.len()).max().unwrap_or(0);
        for index in 0..longest {
            for (n, steps) in &flows {
                if let Some(step) = steps.get(index) {
                    shop.step(*n, *step).await;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The read side: the projectors, and what they must show.

struct Running {
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

fn spawn_projectors(pool: &PgPool, jetstream: &jetstream::Context) -> Running {
    let mut running = Running {
        stops: Vec::new(),
        tasks: Vec::new(),
    };
    for projection in projections::registry::all() {
        let projector = Projector::new(
            projection,
            pool.clone(),
            jetstream.clone(),
            ProjectorConfig::default(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        running.tasks.push(tokio::spawn(projector.run(async {
            let _ = stopped.await;
        })));
        running.stops.push(stop);
    }
    running
}

impl Running {
    async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for task in self.tasks {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("a projector stops on shutdown")
                .expect("a projector task does not panic");
        }
    }
}

/// Where `projection`'s position must get to: a projection of several aggregate types
/// reads the whole log (see `consumer_filter`), one of a single type only its own commits.
async fn target(projection: &dyn Projection, shop: &Shop, jetstream: &jetstream::Context) -> u64 {
    if consumer_filter(projection.aggregate_types()) == EVENTS_SUBJECTS {
        infra_nats::stream_last_position(jetstream).await.unwrap()
    } else {
        projection
            .aggregate_types()
            .iter()
            .filter_map(|t| shop.expected.last_position.get(t).copied())
            .max()
            .unwrap_or(0)
    }
}

async fn position(pool: &PgPool, projector: &str) -> i64 {
    sqlx::query_scalar("SELECT position FROM projector_positions WHERE projector = $1")
        .bind(projector)
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

async fn wait_for_projectors(pool: &PgPool, shop: &Shop, jetstream: &jetstream::Context) {
    for projection in projections::registry::all() {
        let target = target(&*projection, shop, jetstream).await as i64;
        let name = projection.name();
        eventually(
            &format!("projector {name} to reach {target}"),
            WAIT,
            || async { (position(pool, name).await >= target).then_some(()) },
        )
        .await;
        assert_eq!(position(pool, name).await, target, "projector {name}");
    }
}

async fn assert_no_dead_letters(pool: &PgPool) {
    let parked = dead_letters::list(pool, &DeadLetterFilter::default(), 100)
        .await
        .unwrap();
    assert!(parked.is_empty(), "parked dead letters: {parked:#?}");
}

async fn assert_catalog(pool: &PgPool, expected: &Expected) {
    for (id, product) in &expected.products {
        let view = projections::catalog::product(pool, *id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("product {} missing", product.name));
        assert_eq!(view.name, product.name);
        assert_eq!(view.description, product.description);
        assert_eq!(view.category, product.category, "{}", product.name);
        assert_eq!(view.currency, product.currency);
        assert_eq!(view.published, product.published, "{}", product.name);
        let lowest = product
            .variants
            .iter()
            .filter(|v| !v.retired)
            .map(|v| v.price)
            .min();
        assert_eq!(
            view.price.map(|p| p.amount_minor),
            lowest,
            "{}",
            product.name
        );
        let variants: Vec<_> = view
            .variants
            .iter()
            .map(|v| {
                (
                    v.sku.clone(),
                    v.name.clone(),
                    v.price.amount_minor,
                    v.retired,
                    v.available,
                )
            })
            .collect();
        let expected_variants: Vec<_> = product
            .variants
            .iter()
            .map(|v| {
                let available = expected.stock.get(&v.sku).map_or(0, |s| s.available());
                (v.sku.clone(), v.name.clone(), v.price, v.retired, available)
            })
            .collect();
        assert_eq!(variants, expected_variants, "{}", product.name);
        let available: i64 = expected_variants.iter().filter(|v| !v.3).map(|v| v.4).sum();
        assert_eq!(view.available, available, "{}", product.name);
    }

    let mut categories: BTreeMap<String, i64> = BTreeMap::new();
    for product in expected.products.values().filter(|p| p.published) {
        *categories.entry(product.category.clone()).or_default() += 1;
    }
    let listed: BTreeMap<String, i64> = projections::catalog::categories(pool)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.category, c.product_count))
        .collect();
    assert_eq!(listed, categories);

    let filter = ProductFilter {
        published_only: true,
        ..ProductFilter::default()
    };
    let page = projections::catalog::products(
        pool,
        &filter,
        ProductSort::Name,
        false,
        PageRequest::first(100),
    )
    .await
    .unwrap();
    let mut names: Vec<String> = expected
        .products
        .values()
        .filter(|p| p.published)
        .map(|p| p.name.clone())
        .collect();
    names.sort_by_key(|name| name.to_lowercase());
    let listed: Vec<String> = page.nodes().map(|p| p.name.clone()).collect();
    assert_eq!(listed, names);
    assert_eq!(page.total_count, Some(names.len() as i64));
    let filter = ProductFilter {
        search: Some("mug".to_owned()),
        ..ProductFilter::default()
    };
    let found = projections::catalog::products(
        pool,
        &filter,
        ProductSort::Relevance,
        false,
        PageRequest::first(10),
    )
    .await
    .unwrap();
    let found = found.into_nodes();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name, "Ceramic mug");
}

async fn assert_inventory(pool: &PgPool, expected: &Expected) {
    for (sku_text, stock) in &expected.stock {
        let level = projections::inventory::stock_level(pool, sku_text)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no stock level for {sku_text}"));
        assert_eq!(
            (level.on_hand, level.reserved, level.available),
            (stock.on_hand, stock.reserved(), stock.available()),
            "stock of {sku_text}"
        );
        let movements = projections::inventory::movements(pool, sku_text, PageRequest::first(100))
            .await
            .unwrap();
        assert_eq!(
            movements.total_count,
            Some(stock.movements),
            "movements of {sku_text}"
        );
        let on_hand: i64 = movements.nodes().map(|m| m.on_hand_change).sum();
        let reserved: i64 = movements.nodes().map(|m| m.reserved_change).sum();
        assert_eq!(
            (on_hand, reserved),
            (stock.on_hand, stock.reserved()),
            "{sku_text}"
        );
    }
}

async fn assert_orders(pool: &PgPool, expected: &Expected) {
    for (id, order) in &expected.orders {
        let view = projections::orders::order(pool, *id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("order {id} missing"));
        let summary = &view.summary;
        assert_eq!(summary.customer_id, order.customer);
        assert_eq!(summary.status, order.status(), "order {id}");
        assert_eq!(summary.payment_state, order.payment_state, "order {id}");
        assert_eq!(view.payment_id, order.payment_id, "order {id}");
        assert_eq!(summary.total, Money::new(order.total, order.currency));
        assert_eq!(view.subtotal, summary.total);
        assert_eq!(summary.line_count as usize, order.lines.len());
        assert_eq!(summary.item_count, order.units());
        assert_eq!(summary.placed_at, order.placed_at);
        let lines: Vec<_> = view
            .lines
            .iter()
            .map(|l| (l.sku.clone(), l.quantity, l.unit_price.amount_minor))
            .collect();
        let expected_lines: Vec<_> = order
            .lines
            .iter()
            .map(|(s, q, p)| (s.clone(), i64::from(*q), *p))
            .collect();
        assert_eq!(lines, expected_lines, "order {id}");
        let timeline: Vec<OrderStatus> = view.timeline.iter().map(|t| t.status).collect();
        assert_eq!(timeline, order.timeline, "timeline of order {id}");
        assert_eq!(view.shipping.is_some(), order.shipped, "order {id}");
        assert_eq!(
            view.shipping
                .as_ref()
                .is_some_and(|s| s.delivered_at.is_some()),
            order.delivered
        );
        assert_eq!(
            view.cancellation.as_ref().map(|c| c.by.as_str()),
            order.cancelled_by,
            "order {id}"
        );
        assert_eq!(
            view.refund.as_ref().map(|r| r.amount.amount_minor),
            order.refunded
        );
    }

    let customers: BTreeSet<CustomerId> = expected.orders.values().map(|o| o.customer).collect();
    for customer in customers {
        let mut mine: Vec<(DateTime<Utc>, OrderId)> = expected
            .orders
            .iter()
            .filter(|(_, o)| o.customer == customer)
            .map(|(id, o)| (o.placed_at, *id))
            .collect();
        mine.sort();
        mine.reverse();
        let page = projections::orders::customer_orders(pool, customer, PageRequest::first(100))
            .await
            .unwrap();
        let listed: Vec<OrderId> = page.nodes().map(|o| o.id).collect();
        let expected_ids: Vec<OrderId> = mine.into_iter().map(|(_, id)| id).collect();
        assert_eq!(listed, expected_ids, "orders of customer {customer}");
    }

    let all = projections::orders::orders(pool, &OrderFilter::default(), PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(all.total_count, Some(expected.orders.len() as i64));
    let cancelled = OrderFilter {
        status: Some(OrderStatus::Cancelled),
        ..OrderFilter::default()
    };
    let page = projections::orders::orders(pool, &cancelled, PageRequest::first(100))
        .await
        .unwrap();
    let expected_cancelled = expected
        .orders
        .values()
        .filter(|o| o.status() == OrderStatus::Cancelled)
        .count();
    assert_eq!(page.total_count, Some(expected_cancelled as i64));
}

async fn assert_payments(pool: &PgPool, expected: &Expected) {
    for (id, order) in &expected.orders {
        let views = projections::payments::payments_for_order(pool, *id)
            .await
            .unwrap();
        let mut listed: Vec<PaymentId> = views.iter().map(|p| p.id).collect();
        listed.sort();
        let mut attempts = order.payments.clone();
        attempts.sort();
        assert_eq!(listed, attempts, "payments of order {id}");
        for view in &views {
            let payment = &expected.payments[&view.id];
            let money = |minor| Money::new(minor, order.currency);
            assert_eq!(view.order_id, payment.order_id);
            assert_eq!(view.status, payment.status, "payment {}", view.id);
            assert_eq!(view.amount, money(payment.amount));
            assert_eq!(
                view.authorised,
                money(payment.authorised),
                "payment {}",
                view.id
            );
            assert_eq!(
                view.captured,
                money(payment.captured),
                "payment {}",
                view.id
            );
            assert_eq!(
                view.refunded,
                money(payment.refunded),
                "payment {}",
                view.id
            );
            assert_eq!(
                view.operations.len(),
                payment.operations,
                "payment {}",
                view.id
            );
        }
        let totals = projections::payments::order_payment_totals(pool, *id)
            .await
            .unwrap();
        if order.payments.is_empty() {
            assert!(totals.is_empty());
        } else {
            let payments: Vec<&ExpectedPayment> = order
                .payments
                .iter()
                .map(|p| &expected.payments[p])
                .collect();
            let authorised: i64 = payments
                .iter()
                .filter(|p| !matches!(p.status, PaymentStatus::Declined | PaymentStatus::Voided))
                .map(|p| p.amount)
                .sum();
            let captured: i64 = payments.iter().map(|p| p.captured).sum();
            let refunded: i64 = payments.iter().map(|p| p.refunded).sum();
            assert_eq!(totals.len(), 1);
            assert_eq!(totals[0].payments, payments.len() as i64);
            assert_eq!(totals[0].authorised.amount_minor, authorised, "order {id}");
            assert_eq!(totals[0].captured.amount_minor, captured, "order {id}");
            assert_eq!(totals[0].refunded.amount_minor, refunded, "order {id}");
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Sales {
    placed: i64,
    confirmed: i64,
    cancelled: i64,
    units: i64,
    gross: i64,
    refunded: i64,
    net: i64,
}

async fn assert_sales(pool: &PgPool, expected: &Expected) {
    let from = NaiveDate::from_ymd_opt(2024, 4, 30).unwrap();
    let to = Utc::now().date_naive() + chrono::Duration::days(1);

    let mut want: BTreeMap<String, Sales> = BTreeMap::new();
    let mut placed_per_day: BTreeMap<(NaiveDate, String), i64> = BTreeMap::new();
    let mut sellers: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for order in expected.orders.values() {
        let currency = order.currency.code().to_owned();
        let sales = want.entry(currency.clone()).or_default();
        sales.placed += 1;
        *placed_per_day
            .entry((order.placed_at.date_naive(), currency))
            .or_default() += 1;
        if order.cancelled_by.is_some() {
            sales.cancelled += 1;
        }
        if order.confirmed {
            sales.confirmed += 1;
            sales.units += order.units();
            sales.gross += order.total;
            for (s, quantity, price) in &order.lines {
                let seller = sellers.entry(s.clone()).or_default();
                seller.0 += i64::from(*quantity);
                seller.1 += i64::from(*quantity) * price;
                seller.2 += 1;
            }
        }
        sales.refunded += order.refunded.unwrap_or(0);
        sales.net = sales.gross - sales.refunded;
    }

    let days = projections::sales::daily_sales(pool, from, to)
        .await
        .unwrap();
    let mut got: BTreeMap<String, Sales> = BTreeMap::new();
    let mut got_placed_per_day: BTreeMap<(NaiveDate, String), i64> = BTreeMap::new();
    for day in &days {
        let currency = day.gross_revenue.currency.code().to_owned();
        if day.orders_placed > 0 {
            got_placed_per_day.insert((day.day, currency.clone()), day.orders_placed);
        }
        let sales = got.entry(currency).or_default();
        sales.placed += day.orders_placed;
        sales.confirmed += day.orders_confirmed;
        sales.cancelled += day.orders_cancelled;
        sales.units += day.units_sold;
        sales.gross += day.gross_revenue.amount_minor;
        sales.refunded += day.refunded.amount_minor;
        sales.net += day.net_revenue.amount_minor;
    }
    assert_eq!(got, want, "daily sales summed per currency");
    assert_eq!(got_placed_per_day, placed_per_day);

    let top = projections::sales::top_sellers(pool, from, to, 100)
        .await
        .unwrap();
    let got_sellers: BTreeMap<String, (i64, i64, i64)> = top
        .into_iter()
        .map(|t| (t.sku, (t.units_sold, t.revenue.amount_minor, t.orders)))
        .collect();
    assert_eq!(got_sellers, sellers, "top sellers");

    let mut statuses: BTreeMap<String, i64> = BTreeMap::new();
    for order in expected.orders.values() {
        *statuses.entry(order.status().to_string()).or_default() += 1;
    }
    let counts: BTreeMap<String, i64> = projections::sales::status_counts(pool)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.status.to_string(), c.orders))
        .collect();
    assert_eq!(counts, statuses, "status counts");

    let rate = projections::sales::cancellation_rate(pool, from, to)
        .await
        .unwrap();
    let cancelled = expected
        .orders
        .values()
        .filter(|o| o.cancelled_by.is_some())
        .count() as i64;
    assert_eq!(
        (rate.placed, rate.cancelled),
        (expected.orders.len() as i64, cancelled)
    );
}

async fn assert_notifications(pool: &PgPool, expected: &Expected) {
    let mut total = 0;
    let customers: BTreeSet<CustomerId> = expected.orders.values().map(|o| o.customer).collect();
    for customer in customers {
        let page = projections::notifications::customer_notifications(pool, customer, 100, None)
            .await
            .unwrap();
        assert!(!page.has_next_page);
        let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
        for notification in &page.items {
            assert_eq!(notification.customer_id, customer);
            let order = &expected.orders[&notification.order_id];
            assert_eq!(order.customer, customer);
            *kinds.entry(notification.kind.as_str()).or_default() += 1;
        }
        let want = expected
            .notifications
            .get(&customer)
            .cloned()
            .unwrap_or_default();
        assert_eq!(kinds, want, "notifications of customer {customer}");
        total += page.items.len();
    }
    assert_eq!(outbox_rows(pool).await, total as i64);
}

async fn outbox_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox.notifications")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn assert_read_models(pool: &PgPool, expected: &Expected) {
    assert_catalog(pool, expected).await;
    assert_inventory(pool, expected).await;
    assert_orders(pool, expected).await;
    assert_payments(pool, expected).await;
    assert_sales(pool, expected).await;
    assert_notifications(pool, expected).await;
}

/// Every row of every table of every read-model schema, as JSON text, sorted per table.
async fn dump(pool: &PgPool) -> BTreeMap<String, Vec<String>> {
    let schemas: Vec<String> = READ_MODEL_SCHEMAS.iter().map(|s| (*s).to_owned()).collect();
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT schemaname::text, tablename::text FROM pg_tables
          WHERE schemaname = ANY($1) ORDER BY 1, 2",
    )
    .bind(&schemas)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut dump = BTreeMap::new();
    for (schema, table) in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t)::text FROM \"{schema}\".\"{table}\" t ORDER BY to_jsonb(t)::text"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        dump.insert(format!("{schema}.{table}"), rows);
    }
    dump
}

async fn leftover_schemas(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace
          WHERE nspname LIKE '%\\_\\_next' OR nspname LIKE '%\\_\\_old' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Rebuilds every projection, one after the other, beside the live projectors.
async fn rebuild_all(pool: &PgPool, jetstream: &jetstream::Context) {
    for projection in projections::registry::all() {
        let name = projection.name();
        let report = rebuild(
            projection,
            pool,
            jetstream,
            &RebuildOptions::default(),
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("rebuilding {name}: {e}"));
        assert_eq!(report.parked, 0, "{report:?}");
    }
}

fn assert_same_tables(
    live: &BTreeMap<String, Vec<String>>,
    rebuilt: &BTreeMap<String, Vec<String>>,
) {
    assert_eq!(
        rebuilt.keys().collect::<Vec<_>>(),
        live.keys().collect::<Vec<_>>()
    );
    for (table, rows) in live {
        assert_eq!(&rebuilt[table], rows, "table {table} after the rebuild");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_models_match_the_history_and_rebuild_identically_beside_live_projectors() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let nats = NatsServer::start();
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool.clone();
    projections::migrate(&pool).await.unwrap();
    let client = infra_nats::connect(&nats.url()).await.unwrap();
    let jetstream = jetstream::new(client.clone());
    infra_nats::provision(&jetstream, &StreamSettings::default())
        .await
        .unwrap();
    let mut shop = Shop::open(&client, &jetstream).await.unwrap();

    // Arrange: the catalog and its stock form a backlog; the projectors start on it and
    // follow the orders live.
    stock_the_shop(&mut shop).await;
    let running = spawn_projectors(&pool, &jetstream);
    trade(&mut shop, 0..ORDERS).await;
    assert!(
        shop.expected.commands > 300,
        "{} commands",
        shop.expected.commands
    );
    assert_eq!(
        infra_nats::stream_last_position(&jetstream).await.unwrap(),
        shop.expected.last_position.values().copied().max().unwrap(),
        "every commit in the stream is one the test saw acknowledged"
    );

    // Act and assert: the live read models.
    wait_for_projectors(&pool, &shop, &jetstream).await;
    assert_read_models(&pool, &shop.expected).await;
    assert_no_dead_letters(&pool).await;

    // Act: rebuild every read model beside its running live projector.
    let live = dump(&pool).await;
    for schema in READ_MODEL_SCHEMAS {
        let tables = live.keys().filter(|t| t.starts_with(&format!("{schema}.")));
        assert!(tables.count() > 0, "schema {schema} has tables");
    }
    let outbox = outbox_rows(&pool).await;
    rebuild_all(&pool, &jetstream).await;

    // Assert: identical tables, no repeated side effect, nothing left behind.
    assert_same_tables(&live, &dump(&pool).await);
    assert_eq!(
        outbox_rows(&pool).await,
        outbox,
        "a rebuild enqueues nothing"
    );
    assert_eq!(leftover_schemas(&pool).await, Vec::<String>::new());
    wait_for_projectors(&pool, &shop, &jetstream).await;
    assert_no_dead_letters(&pool).await;

    // Act: rebuild again while orders keep coming in, so that each rebuild catches up
    // with its live projector before switching, and the live projectors carry on on the
    // rebuilt tables.
    tokio::join!(
        trade(&mut shop, ORDERS..ORDERS + 18),
        rebuild_all(&pool, &jetstream)
    );
    wait_for_projectors(&pool, &shop, &jetstream).await;

    // Assert: the read models hold the whole history, and one more rebuild at rest
    // reproduces them.
    assert_read_models(&pool, &shop.expected).await;
    assert_no_dead_letters(&pool).await;
    let live = dump(&pool).await;
    let outbox = outbox_rows(&pool).await;
    rebuild_all(&pool, &jetstream).await;
    assert_same_tables(&live, &dump(&pool).await);
    assert_eq!(
        outbox_rows(&pool).await,
        outbox,
        "a rebuild enqueues nothing"
    );
    assert_eq!(leftover_schemas(&pool).await, Vec::<String>::new());

    running.stop().await;
}
