//! Scripting order and payment histories through the real aggregates, shared by the
//! orders, payments and sales read-model tests. Each test crate uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::Aggregate;
use domain::ids::{CustomerId, OrderId, PaymentId, Sku};
use domain::money::{Currency, Money};
use domain::order::{Order, OrderCommand, OrderLine};
use domain::payment::{Payment, PaymentCommand, PaymentMethod};
use infra_nats::RecordedCommit;
use projections::{fixtures, Delivery, DeliveryMode};
use sqlx::PgPool;
use testkit::TestDatabase;
use uuid::Uuid;

/// A shop whose commands go through the real aggregates and end up as commits, in the
/// order they would be in the `EVENTS` stream.
#[derive(Default)]
pub struct Shop {
    pub log: Vec<RecordedCommit>,
    orders: HashMap<OrderId, Order>,
    payments: HashMap<PaymentId, Payment>,
    versions: HashMap<Uuid, usize>,
}

impl Shop {
    pub fn order(&mut self, id: OrderId, command: OrderCommand, at: DateTime<Utc>) {
        let order = self.orders.entry(id).or_default();
        let events = order
            .decide(command)
            .expect("the order accepts the command");
        for event in &events {
            order.apply(event.clone());
        }
        self.record::<Order>(id.as_uuid(), &events, at);
    }

    pub fn payment(&mut self, id: PaymentId, command: PaymentCommand, at: DateTime<Utc>) {
        let payment = self.payments.entry(id).or_default();
        let events = payment
            .decide(command)
            .expect("the payment accepts the command");
        for event in &events {
            payment.apply(event.clone());
        }
        self.record::<Payment>(id.as_uuid(), &events, at);
    }

    pub fn record<A: Aggregate>(&mut self, id: Uuid, events: &[A::Event], at: DateTime<Utc>) {
        let version = self.versions.entry(id).or_insert(0);
        let position = self.log.len() as u64 + 1;
        let commit = fixtures::commit::<A>(position, &id.to_string(), *version + 1, events, at);
        *version += events.len();
        self.log.push(commit);
    }

    /// Places an order and takes it through reservation and payment authorisation.
    pub fn paid_order(
        &mut self,
        id: OrderId,
        customer: CustomerId,
        lines: Vec<OrderLine>,
        payment: PaymentId,
        at: DateTime<Utc>,
    ) {
        let total: i64 = lines
            .iter()
            .map(|l| l.unit_price.amount_minor * i64::from(l.quantity))
            .sum();
        self.order(id, place(id, customer, lines, at), at);
        self.order(
            id,
            OrderCommand::MarkStockReserved,
            at + Duration::minutes(1),
        );
        self.payment(
            payment,
            PaymentCommand::AuthorisePayment {
                payment_id: payment,
                order_id: id,
                amount: eur(total),
                method: card(),
                provider_reference: format!("auth-{payment}"),
            },
            at + Duration::minutes(2),
        );
        self.order(
            id,
            OrderCommand::MarkPaymentAuthorised {
                payment_id: payment,
            },
            at + Duration::minutes(3),
        );
    }
}

pub fn deliveries(commits: &[RecordedCommit]) -> Vec<Delivery<'_>> {
    commits
        .iter()
        .map(|commit| Delivery {
            commit,
            mode: DeliveryMode::Live,
        })
        .collect()
}

pub fn day(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, day, hour, 0, 0).unwrap()
}

pub fn eur(cents: i64) -> Money {
    Money::new(cents, Currency::EUR)
}

pub fn line(sku: &str, quantity: u32, cents: i64) -> OrderLine {
    OrderLine {
        sku: Sku::parse(sku).unwrap(),
        quantity,
        unit_price: eur(cents),
    }
}

pub fn card() -> PaymentMethod {
    PaymentMethod::Card {
        token: "tok_visa".into(),
    }
}

pub fn place(
    id: OrderId,
    customer: CustomerId,
    lines: Vec<OrderLine>,
    at: DateTime<Utc>,
) -> OrderCommand {
    OrderCommand::PlaceOrder {
        order_id: id,
        customer_id: customer,
        lines,
        currency: Currency::EUR,
        payment_method: card(),
        placed_at: at,
        shipping_address: None,
    }
}

pub fn order_id(n: u128) -> OrderId {
    OrderId(Uuid::from_u128(0x0a00 + n))
}

pub fn payment_id(n: u128) -> PaymentId {
    PaymentId(Uuid::from_u128(0x0b00 + n))
}

pub fn customer(n: u128) -> CustomerId {
    CustomerId(Uuid::from_u128(0x0c00 + n))
}

pub async fn migrated() -> TestDatabase {
    let db = TestDatabase::create().await.expect("test database");
    projections::migrate(&db.pool).await.expect("migrations");
    db
}

/// Every row of every table of `schema`, as sorted JSON per table.
pub async fn dump(pool: &PgPool, schema: &str) -> Vec<(String, String)> {
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut dump = Vec::new();
    for (table,) in tables {
        let (rows,): (String,) = sqlx::query_as(&format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]')::text \
             FROM {schema}.{table} t"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        dump.push((table, rows));
    }
    dump
}

/// Rows of one table in a dump.
pub type Dump = Vec<(String, String)>;

/// Applies `log` to `projection` three ways, each in a fresh database: as one batch,
/// commit by commit, and in chunks of `chunk` followed by a replay (mode `Replay`) of
/// `replayed`, which were already applied and must change nothing. Returns the dumps of
/// the projection's schema in that order.
pub async fn apply_three_ways(
    projection: &dyn projections::Projection,
    log: &[RecordedCommit],
    chunk: usize,
    replayed: std::ops::Range<usize>,
) -> [Dump; 3] {
    use projections::runtime::apply_directly;
    let all = deliveries(log);

    let whole = migrated().await;
    apply_directly(&whole.pool, projection, &all).await.unwrap();

    let single = migrated().await;
    for delivery in &all {
        apply_directly(&single.pool, projection, std::slice::from_ref(delivery))
            .await
            .unwrap();
    }

    let chunked = migrated().await;
    for part in all.chunks(chunk) {
        apply_directly(&chunked.pool, projection, part)
            .await
            .unwrap();
    }
    let replay: Vec<Delivery<'_>> = all[replayed]
        .iter()
        .map(|d| Delivery {
            commit: d.commit,
            mode: DeliveryMode::Replay,
        })
        .collect();
    apply_directly(&chunked.pool, projection, &replay)
        .await
        .unwrap();

    let schema = projection.schema();
    [
        dump(&whole.pool, schema).await,
        dump(&single.pool, schema).await,
        dump(&chunked.pool, schema).await,
    ]
}
