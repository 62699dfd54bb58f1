//! `shopstream-loadgen check`: after a run (or a fault suite), judges the system against
//! the record of acknowledged requests.
//!
//! The log is the truth: every order, inventory and saga state is loaded from JetStream
//! through the same buses the saga uses; the read models, the simulated provider's
//! ledger and the notifier's outbox are then compared with it. Orders are given a
//! bounded time to settle first (every saga at rest, every projector caught up).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use domain::inventory::Inventory;
use domain::order::OrderStatus;
use domain::saga::Phase;
use domain::OrderId;
use futures::{stream, StreamExt, TryStreamExt};
use infra_nats::EventStoreConfig;
use saga::provider::{EntryState, SimulatedProvider, SimulatorConfig};
use saga::SagaBuses;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::record::{self, Entry, Line};
use shopstream::Settings;

/// What `loadgen check` is asked.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub record: PathBuf,
    /// How long orders and read models may take to settle.
    pub settle_timeout: Duration,
    /// Also recompute every read model from the log and compare (slow on long logs).
    pub verify_read_models: bool,
    pub json: bool,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// What the checker found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub orders: usize,
    pub cancellations: usize,
    pub receipts: usize,
    pub skus: usize,
    /// Recorded orders by the status the log shows.
    pub order_statuses: BTreeMap<String, usize>,
    pub settled_in_seconds: f64,
    /// Whether every read model was recomputed from the log and compared.
    pub verified_read_models: bool,
    pub violations: Vec<Violation>,
}

/// An acknowledged order as recorded.
#[derive(Debug, Clone)]
struct Recorded {
    position: u64,
    lines: Vec<Line>,
    payment_token: String,
}

/// An order and its saga, as the log shows them.
#[derive(Debug, Clone)]
struct Facts {
    status: Option<OrderStatus>,
    phase: Option<Phase>,
    lines: Vec<Line>,
    total_minor: i64,
    refunded_minor: i64,
}

impl Facts {
    /// At rest, in a status that fits how the saga rested (a cancellation acknowledged
    /// after confirmation leaves a completed saga that still has to compensate).
    fn settled(&self) -> bool {
        let Some(status) = self.status else {
            return false;
        };
        match &self.phase {
            Some(Phase::Completed) => {
                is_shipped_or_confirmed(status) || status == OrderStatus::Refunded
            }
            Some(Phase::Compensated { .. }) => {
                matches!(status, OrderStatus::Cancelled | OrderStatus::Refunded)
            }
            Some(phase) => phase.is_at_rest(),
            None => false,
        }
    }
}

/// Runs every check and prints the report.
///
/// # Errors
/// When the record cannot be read or NATS or PostgreSQL fail; broken invariants are not
/// errors but the report's violations.
pub async fn check(settings: &Settings, options: &CheckOptions) -> anyhow::Result<CheckReport> {
    let entries = record::read(&options.record)?;
    let mut orders: BTreeMap<Uuid, Recorded> = BTreeMap::new();
    let mut cancels: BTreeMap<Uuid, u64> = BTreeMap::new();
    let mut received: BTreeMap<String, u64> = BTreeMap::new();
    let mut receipts = 0;
    for entry in entries {
        match entry {
            Entry::Order {
                order_id,
                position,
                lines,
                payment_token,
                ..
            } => {
                orders.insert(
                    order_id,
                    Recorded {
                        position,
                        lines,
                        payment_token,
                    },
                );
            }
            Entry::Cancel {
                order_id, position, ..
            } => {
                cancels.insert(order_id, position);
            }
            Entry::Receive { sku, quantity, .. } => {
                receipts += 1;
                *received.entry(sku).or_default() += u64::from(quantity);
            }
        }
    }
    let mut skus: BTreeSet<String> = received.keys().cloned().collect();
    skus.extend(
        orders
            .values()
            .flat_map(|o| o.lines.iter().map(|l| l.sku.clone())),
    );

    let nats = shopstream::connect_nats(settings).await?;
    let db = shopstream::connect_database(&settings.database_url).await?;
    let buses = SagaBuses::new(nats.clone(), EventStoreConfig::default())
        .await
        .context("opening the event store")?;
    let jetstream = jetstream::new(nats);
    let started = Instant::now();
    let deadline = started + options.settle_timeout;
    let mut violations = Vec::new();

    let facts = settle(&buses, orders.keys().copied().collect(), deadline).await?;
    let settled_in = started.elapsed();
    wait_for_read_models(&db, &jetstream, deadline, &mut violations).await?;

    let mut order_statuses: BTreeMap<String, usize> = BTreeMap::new();
    for (id, recorded) in &orders {
        let facts = &facts[id];
        let status = facts.status.map_or("missing", |s| s.as_str());
        *order_statuses.entry(status.to_owned()).or_default() += 1;
        check_order(*id, recorded, cancels.get(id), facts, &mut violations);
    }
    for (id, position) in &cancels {
        if !orders.contains_key(id) {
            violations.push(Violation {
                invariant: "acknowledged cancellation lost",
                detail: format!(
                    "the record cancels order {id} (at position {position}) but holds no acknowledged order with that id"
                ),
            });
        }
    }
    check_orders_read_model(&db, &facts, &mut violations).await?;
    check_stock(
        &buses,
        &db,
        &skus,
        &received,
        &orders,
        &facts,
        &mut violations,
    )
    .await?;
    check_payments(&db, &orders, &facts, &mut violations).await?;
    check_notifications(&db, &facts, &mut violations).await?;
    if options.verify_read_models {
        verify_read_models(&db, &jetstream, &mut violations).await?;
    }
    violations.sort();
    Ok(CheckReport {
        orders: orders.len(),
        cancellations: cancels.len(),
        receipts,
        skus: skus.len(),
        order_statuses,
        settled_in_seconds: settled_in.as_secs_f64(),
        verified_read_models: options.verify_read_models,
        violations,
    })
}

impl CheckReport {
    /// The report for people: a summary, then every violation.
    pub fn text(&self) -> String {
        let statuses: Vec<String> = self
            .order_statuses
            .iter()
            .map(|(status, n)| format!("{n} {status}"))
            .collect();
        let mut out = format!(
            "checked {} acknowledged orders ({}), {} acknowledged cancellations, {} acknowledged stock receipts, {} SKUs; settled in {:.1} s\n",
            self.orders,
            if statuses.is_empty() { "none".to_owned() } else { statuses.join(", ") },
            self.cancellations,
            self.receipts,
            self.skus,
            self.settled_in_seconds,
        );
        if self.verified_read_models {
            out.push_str(
                "every read model was recomputed from the log and compared with the live one\n",
            );
        }
        if self.violations.is_empty() {
            out.push_str(
                "every invariant holds: no acknowledged order lost, every order terminal, no oversold or stranded stock, payments balance, no duplicate notification\n",
            );
        } else {
            out.push_str(&format!("{} violations:\n", self.violations.len()));
            for v in &self.violations {
                out.push_str(&format!("VIOLATION {}: {}\n", v.invariant, v.detail));
            }
        }
        out
    }
}

async fn load_facts(buses: &SagaBuses, id: Uuid) -> anyhow::Result<Facts> {
    let key = id.to_string();
    let order = buses
        .orders
        .store()
        .load_fresh(&key)
        .await
        .with_context(|| format!("loading order {id}"))?;
    let saga = buses
        .sagas
        .store()
        .load_fresh(&key)
        .await
        .with_context(|| format!("loading the saga of order {id}"))?;
    let order = order.state();
    Ok(Facts {
        status: order.status(),
        phase: saga.state().phase().cloned(),
        lines: order
            .lines()
            .iter()
            .map(|l| Line {
                sku: l.sku.to_string(),
                quantity: l.quantity,
            })
            .collect(),
        total_minor: order.total().map_or(0, |m| m.amount_minor),
        refunded_minor: order.refunded().map_or(0, |m| m.amount_minor),
    })
}

/// Loads every order and its saga from the log until all rest or `deadline` passes.
async fn settle(
    buses: &SagaBuses,
    ids: Vec<Uuid>,
    deadline: Instant,
) -> anyhow::Result<BTreeMap<Uuid, Facts>> {
    let mut facts = BTreeMap::new();
    let mut pending = ids;
    loop {
        let loaded: Vec<(Uuid, Facts)> = stream::iter(pending.iter().copied())
            .map(|id| async move { anyhow::Ok((id, load_facts(buses, id).await?)) })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        pending.clear();
        for (id, f) in loaded {
            if !f.settled() {
                pending.push(id);
            }
            facts.insert(id, f);
        }
        if pending.is_empty() || Instant::now() >= deadline {
            return Ok(facts);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until every projector has applied every commit of its aggregate types.
async fn wait_for_read_models(
    db: &PgPool,
    jetstream: &jetstream::Context,
    deadline: Instant,
    violations: &mut Vec<Violation>,
) -> anyhow::Result<()> {
    // Read models get a few seconds even when the orders used up the bound.
    let deadline = deadline.max(Instant::now() + Duration::from_secs(5));
    loop {
        let mut behind = Vec::new();
        for projection in projections::registry::all() {
            let status = projections::status::projector_status(db, jetstream, &*projection)
                .await
                .with_context(|| {
                    format!("reading the status of projector {}", projection.name())
                })?;
            if status.lag_events > 0 || status.parked > 0 {
                behind.push(status);
            }
        }
        if behind.iter().all(|s| s.lag_events == 0) || Instant::now() >= deadline {
            for status in behind {
                let detail = if status.lag_events > 0 {
                    format!(
                        "projector {} is {} commits behind the log at position {}",
                        status.name, status.lag_events, status.position
                    )
                } else {
                    format!(
                        "projector {} has {} commits parked in the dead-letter queue",
                        status.name, status.parked
                    )
                };
                violations.push(Violation {
                    invariant: "read model behind the log",
                    detail,
                });
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn is_shipped_or_confirmed(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Confirmed | OrderStatus::Shipped | OrderStatus::Delivered
    )
}

fn sorted(lines: &[Line]) -> Vec<(String, u32)> {
    let mut lines: Vec<(String, u32)> = lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect();
    lines.sort();
    lines
}

fn check_order(
    id: Uuid,
    recorded: &Recorded,
    cancelled_at: Option<&u64>,
    facts: &Facts,
    violations: &mut Vec<Violation>,
) {
    let mut violation =
        |invariant, detail: String| violations.push(Violation { invariant, detail });
    let Some(status) = facts.status else {
        violation(
            "acknowledged order lost",
            format!(
                "order {id} was acknowledged at position {} but the log holds no such order",
                recorded.position
            ),
        );
        return;
    };
    match &facts.phase {
        Some(Phase::Completed)
            if is_shipped_or_confirmed(status) || status == OrderStatus::Refunded => {}
        Some(Phase::Compensated { .. })
            if matches!(status, OrderStatus::Cancelled | OrderStatus::Refunded) => {}
        Some(Phase::CompensationFailed { .. }) => violation(
            "order not terminal",
            format!(
                "order {id} is {status}: its saga's compensation failed and waits for an operator",
                status = status.as_str()
            ),
        ),
        Some(phase) if phase.is_at_rest() => violation(
            "order not terminal",
            format!(
                "order {id} is {} but its saga rested {}",
                status.as_str(),
                phase.as_str()
            ),
        ),
        phase => violation(
            "order not terminal",
            format!(
                "order {id} is still {} (saga {}) after the settle timeout",
                status.as_str(),
                phase.as_ref().map_or("not started", Phase::as_str)
            ),
        ),
    }
    if sorted(&facts.lines) != sorted(&recorded.lines) {
        violation(
            "order differs from its acknowledgement",
            format!(
                "order {id}: acknowledged with lines {:?}, the log holds {:?}",
                sorted(&recorded.lines),
                sorted(&facts.lines)
            ),
        );
    }
    if let Some(position) = cancelled_at {
        if !matches!(status, OrderStatus::Cancelled | OrderStatus::Refunded) {
            violation(
                "acknowledged cancellation lost",
                format!(
                    "order {id}: cancellation acknowledged at position {position}, but the order is {}",
                    status.as_str()
                ),
            );
        }
    }
    if recorded.payment_token == "tok_declined" && is_shipped_or_confirmed(status) {
        violation(
            "declined card confirmed",
            format!(
                "order {id} was paid with tok_declined and is {}",
                status.as_str()
            ),
        );
    }
}

async fn check_orders_read_model(
    db: &PgPool,
    facts: &BTreeMap<Uuid, Facts>,
    violations: &mut Vec<Violation>,
) -> anyhow::Result<()> {
    let ids: Vec<Uuid> = facts.keys().copied().collect();
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT order_id, status FROM orders.orders WHERE order_id = ANY($1)")
            .bind(&ids)
            .fetch_all(db)
            .await
            .context("reading the orders read model")?;
    let shown: BTreeMap<Uuid, String> = rows.into_iter().collect();
    for (id, f) in facts {
        let Some(status) = f.status else { continue };
        match shown.get(id) {
            Some(s) if s == status.as_str() => {}
            other => violations.push(Violation {
                invariant: "read model differs from the log",
                detail: format!(
                    "orders read model shows order {id} as {}, the log as {}",
                    other.map_or("missing", String::as_str),
                    status.as_str()
                ),
            }),
        }
    }
    Ok(())
}

#[derive(Debug, Default, sqlx::FromRow)]
struct Movements {
    received: i64,
    adjusted: i64,
    committed: i64,
    returned: i64,
}

async fn check_stock(
    buses: &SagaBuses,
    db: &PgPool,
    skus: &BTreeSet<String>,
    received: &BTreeMap<String, u64>,
    orders: &BTreeMap<Uuid, Recorded>,
    facts: &BTreeMap<Uuid, Facts>,
    violations: &mut Vec<Violation>,
) -> anyhow::Result<()> {
    let mut violation =
        |invariant, detail: String| violations.push(Violation { invariant, detail });
    let mut inventories: BTreeMap<&str, Inventory> = BTreeMap::new();
    for sku in skus {
        let inventory = buses
            .inventory
            .store()
            .load_fresh(sku)
            .await
            .with_context(|| format!("loading the inventory of {sku}"))?;
        inventories.insert(sku.as_str(), inventory.state().clone());
    }
    let skus_list: Vec<String> = skus.iter().cloned().collect();
    let levels: BTreeMap<String, (i64, i64)> = sqlx::query_as::<_, (String, i64, i64)>(
        "SELECT sku, on_hand, reserved FROM inventory.stock_levels WHERE sku = ANY($1)",
    )
    .bind(&skus_list)
    .fetch_all(db)
    .await
    .context("reading the inventory read model")?
    .into_iter()
    .map(|(sku, on_hand, reserved)| (sku, (on_hand, reserved)))
    .collect();
    for sku in skus {
        let inventory = &inventories[sku.as_str()];
        let movements: Movements = sqlx::query_as(
            "SELECT COALESCE(SUM(quantity) FILTER (WHERE kind = 'received'), 0)::bigint AS received,
                    COALESCE(SUM(on_hand_change) FILTER (WHERE kind = 'adjusted'), 0)::bigint AS adjusted,
                    COALESCE(SUM(quantity) FILTER (WHERE kind = 'committed'), 0)::bigint AS committed,
                    COALESCE(SUM(quantity) FILTER (WHERE kind = 'returned'), 0)::bigint AS returned
               FROM inventory.movements WHERE sku = $1",
        )
        .bind(sku)
        .fetch_one(db)
        .await
        .context("reading stock movements")?;
        let acknowledged = received.get(sku).copied().unwrap_or(0);
        if u64::try_from(movements.received).unwrap_or(0) < acknowledged {
            violation(
                "acknowledged receipt lost",
                format!(
                    "{sku}: {acknowledged} units were acknowledged as received, the log shows {}",
                    movements.received
                ),
            );
        }
        let out = movements.committed - movements.returned;
        if out > movements.received + movements.adjusted {
            violation(
                "oversold stock",
                format!(
                    "{sku}: {out} units went out to orders, only {} were received or adjusted in",
                    movements.received + movements.adjusted
                ),
            );
        }
        let (on_hand, reserved) = (
            i64::try_from(inventory.on_hand()).unwrap_or(i64::MAX),
            i64::try_from(inventory.reserved()).unwrap_or(i64::MAX),
        );
        if on_hand != movements.received + movements.adjusted - out {
            violation(
                "stock does not add up",
                format!(
                    "{sku}: the log has {on_hand} on hand, its movements add up to {}",
                    movements.received + movements.adjusted - out
                ),
            );
        }
        match levels.get(sku) {
            Some(level) if *level == (on_hand, reserved) => {}
            level => violation(
                "read model differs from the log",
                format!(
                    "{sku}: the inventory read model shows (on hand, reserved) {level:?}, the log ({on_hand}, {reserved})"
                ),
            ),
        }
    }
    // Per order, as the saga tests check it: confirmed orders took their stock out,
    // cancelled ones hold none and gave back what went out.
    for (id, recorded) in orders {
        let f = &facts[id];
        let (Some(status), true) = (f.status, f.settled()) else {
            continue;
        };
        let order = OrderId(*id);
        for line in &recorded.lines {
            let Some(inventory) = inventories.get(line.sku.as_str()) else {
                continue;
            };
            let committed = inventory.committed_quantity(order);
            let returned = inventory.is_returned(order);
            if is_shipped_or_confirmed(status) {
                if committed != Some(line.quantity) || returned {
                    violation(
                        "stock not committed",
                        format!(
                            "order {id} is {} but {} has {committed:?} units committed for it (returned: {returned}), not {}",
                            status.as_str(),
                            line.sku,
                            line.quantity
                        ),
                    );
                }
            } else if matches!(f.phase, Some(Phase::Compensated { .. })) {
                if let Some(units) = inventory.reservation(order) {
                    violation(
                        "stranded stock",
                        format!(
                            "order {id} is {} but {units} units of {} stay reserved for it",
                            status.as_str(),
                            line.sku
                        ),
                    );
                }
                if committed.is_some() && !returned {
                    violation(
                        "stranded stock",
                        format!(
                            "order {id} is {} but its units of {} went out and never came back",
                            status.as_str(),
                            line.sku
                        ),
                    );
                }
            }
        }
    }
    Ok(())
}

async fn check_payments(
    db: &PgPool,
    orders: &BTreeMap<Uuid, Recorded>,
    facts: &BTreeMap<Uuid, Facts>,
    violations: &mut Vec<Violation>,
) -> anyhow::Result<()> {
    let provider = SimulatedProvider::install(db.clone(), SimulatorConfig::default())
        .await
        .context("opening the payment simulator's ledger")?;
    for id in orders.keys() {
        let f = &facts[id];
        let (Some(status), true) = (f.status, f.settled()) else {
            continue;
        };
        let entry = provider
            .entry(OrderId(*id))
            .await
            .context("reading the payment simulator's ledger")?;
        let provider_net = entry
            .as_ref()
            .map_or(0, |e| e.captured.amount_minor - e.refunded.amount_minor);
        let expected = match status {
            OrderStatus::Cancelled => 0,
            _ if is_shipped_or_confirmed(status) || status == OrderStatus::Refunded => {
                f.total_minor - f.refunded_minor
            }
            _ => continue,
        };
        if provider_net != expected {
            violations.push(Violation {
                invariant: "payments do not balance",
                detail: format!(
                    "order {id} is {} (total {}, refunded {}): the provider's ledger has {provider_net} captured less refunded, expected {expected}",
                    status.as_str(),
                    f.total_minor,
                    f.refunded_minor
                ),
            });
        }
        if let Some(e) = entry
            .as_ref()
            .filter(|e| matches!(e.state, EntryState::Authorised | EntryState::Pending))
        {
            violations.push(Violation {
                invariant: "payments do not balance",
                detail: format!(
                    "order {id} is {} but the provider still holds {} on the card ({})",
                    status.as_str(),
                    e.amount.amount_minor,
                    e.state
                ),
            });
        }
        let read_model: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(captured_minor - refunded_minor), 0)::bigint
               FROM payments.payments WHERE order_id = $1",
        )
        .bind(*id)
        .fetch_one(db)
        .await
        .context("reading the payments read model")?;
        if read_model != provider_net {
            violations.push(Violation {
                invariant: "read model differs from the log",
                detail: format!(
                    "order {id}: the payments read model has {read_model} captured less refunded, the provider {provider_net}"
                ),
            });
        }
    }
    // Over everything, recorded or not: the read model and the ledger agree.
    let ledger = provider.ledger().await.context("reading the ledger")?;
    let read_model: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(captured_minor - refunded_minor), 0)::bigint FROM payments.payments",
    )
    .fetch_one(db)
    .await
    .context("reading the payments read model")?;
    if read_model != ledger.captured_minor - ledger.refunded_minor {
        violations.push(Violation {
            invariant: "payments do not balance",
            detail: format!(
                "the provider's ledger has {} captured less refunded over all orders, the payments read model {read_model}",
                ledger.captured_minor - ledger.refunded_minor
            ),
        });
    }
    Ok(())
}

async fn check_notifications(
    db: &PgPool,
    facts: &BTreeMap<Uuid, Facts>,
    violations: &mut Vec<Violation>,
) -> anyhow::Result<()> {
    // One per order and kind; refunds one per refund (an order may be refunded in parts).
    let duplicates: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "SELECT order_id, kind, count(*) FROM outbox.notifications
          GROUP BY order_id, kind, payload->>'refund_id' HAVING count(*) > 1
          ORDER BY order_id, kind",
    )
    .fetch_all(db)
    .await
    .context("reading the notifier's outbox")?;
    for (order, kind, count) in duplicates {
        violations.push(Violation {
            invariant: "duplicate notification",
            detail: format!("order {order}: {count} `{kind}` notifications in the outbox"),
        });
    }
    let confirmed: Vec<Uuid> = facts
        .iter()
        .filter(|(_, f)| f.settled() && f.status.is_some_and(is_shipped_or_confirmed))
        .map(|(id, _)| *id)
        .collect();
    let notified: BTreeSet<Uuid> = sqlx::query_scalar(
        "SELECT order_id FROM outbox.notifications
          WHERE kind = 'order_confirmed' AND order_id = ANY($1)",
    )
    .bind(&confirmed)
    .fetch_all(db)
    .await
    .context("reading the notifier's outbox")?
    .into_iter()
    .collect();
    for id in confirmed.iter().filter(|id| !notified.contains(id)) {
        violations.push(Violation {
            invariant: "missing notification",
            detail: format!(
                "order {id} is confirmed but no `order_confirmed` notification was enqueued"
            ),
        });
    }
    Ok(())
}

async fn verify_read_models(
    db: &PgPool,
    jetstream: &jetstream::Context,
    violations: &mut Vec<Violation>,
) -> anyhow::Result<()> {
    for projection in projections::registry::all() {
        let name = projection.name().to_owned();
        let report = projections::runtime::verify(
            projection,
            db,
            jetstream,
            &projections::runtime::RebuildOptions::default(),
            |_| {},
        )
        .await
        .with_context(|| format!("verifying read model {name}"))?;
        if let Some(first) = report.differences.first() {
            violations.push(Violation {
                invariant: "read model differs from the log",
                detail: format!(
                    "recomputing `{name}` from the log at position {} gives {} differing rows; first in {}: key {}, live {}, recomputed {}",
                    report.position,
                    report.differences.len(),
                    first.table,
                    first.key,
                    first.live.as_ref().map_or("none".to_owned(), ToString::to_string),
                    first.recomputed.as_ref().map_or("none".to_owned(), ToString::to_string),
                ),
            });
        }
    }
    Ok(())
}
