//! An order's read-model view as of a stream position, for auditors: what `order(id)`
//! would have answered had the log ended at that position.
//!
//! The orders read model of one order is the fold of the order's commits and the commits
//! of its payments. This reads those commits up to the position from the log (the
//! payments are found through the order's own events, its saga's, and the live model's
//! payment links), and applies them
//! with the live [`OrdersProjection`] into a scratch copy of the `orders` tables, inside
//! one transaction on a connection of its own that is always rolled back. The live
//! tables are only read for their structure; nothing is left behind, even on error.

use async_nats::jetstream;
use cqrs_es::Aggregate;
use domain::ids::{OrderId, PaymentId};
use domain::order::{Order, OrderEvent};
use domain::payment::Payment;
use domain::saga::{OrderSaga, SagaEvent};
use infra_nats::audit::{self, AuditError};
use infra_nats::stream_last_position;
use infra_nats::RecordedCommit;
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use super::query::{order_in, OrderDetail};
use super::OrdersProjection;
use crate::projection::{ApplyError, Delivery, DeliveryMode, Projection};
use crate::runtime::rebuild::quoted;
use crate::runtime::set_schema;

/// One order as the read model showed it at a position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderAsOf {
    pub order_id: OrderId,
    /// The position asked for.
    pub position: u64,
    /// The position of the last commit folded into the view (at most `position`).
    pub last_applied: u64,
    /// How many commits were folded: the order's and its payments'.
    pub commits: usize,
    pub order: OrderDetail,
}

/// Why an order's past view could not be given.
#[derive(Debug, thiserror::Error)]
pub enum AsOfError {
    /// The log ends before the position asked for.
    #[error("position {asked} is past the end of the log (its last position is {last})")]
    PositionPastEnd { asked: u64, last: u64 },
    /// The log holds no order with this id.
    #[error("order {0} has no events")]
    NotFound(OrderId),
    /// The order was placed after the position asked for.
    #[error("order {order} did not exist at position {position} (it was placed at position {placed_at})")]
    NotYetPlaced {
        order: OrderId,
        position: u64,
        placed_at: u64,
    },
    /// The read model refuses the log (the live projector would have parked it too).
    #[error("the orders read model cannot apply the log: {0}")]
    Apply(#[from] ApplyError),
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] AuditError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The orders read model's view of `order_id` as of `position`.
///
/// # Errors
/// [`AsOfError::PositionPastEnd`], [`AsOfError::NotFound`], [`AsOfError::NotYetPlaced`],
/// or a failure to read the log, reach PostgreSQL or apply a commit. Nothing is written
/// in any case.
pub async fn order_as_of(
    pool: &PgPool,
    js: &jetstream::Context,
    order_id: OrderId,
    position: u64,
) -> Result<OrderAsOf, AsOfError> {
    let last = stream_last_position(js)
        .await
        .map_err(|e| AsOfError::Log(e.into()))?;
    if position > last {
        return Err(AsOfError::PositionPastEnd {
            asked: position,
            last,
        });
    }
    let client = js.client();
    let id = order_id.as_uuid().to_string();
    let order_commits = audit::commits_until(&client, Order::TYPE, &id, position).await?;
    if order_commits.is_empty() {
        // Placed later, or never: the whole subject tells which.
        let all = audit::commits_until(&client, Order::TYPE, &id, u64::MAX).await?;
        return Err(match all.first() {
            Some(first) => AsOfError::NotYetPlaced {
                order: order_id,
                position,
                placed_at: first.position,
            },
            None => AsOfError::NotFound(order_id),
        });
    }
    let saga_commits = audit::commits_until(&client, OrderSaga::TYPE, &id, position).await?;
    // The live model's links find payments neither the order nor a saga names (one
    // authorised outside a saga); what is folded still comes from the log alone.
    let linked: Vec<Uuid> =
        sqlx::query_scalar("SELECT payment_id FROM orders.order_payments WHERE order_id = $1")
            .bind(order_id.as_uuid())
            .fetch_all(pool)
            .await?;
    let mut commits = order_commits.clone();
    let mut payments = payment_ids(&order_commits, &saga_commits)?;
    payments.extend(linked.into_iter().map(PaymentId::from_uuid));
    payments.sort_by_key(|id| id.as_uuid());
    payments.dedup();
    for payment in payments {
        let payment = payment.as_uuid().to_string();
        commits.extend(audit::commits_until(&client, Payment::TYPE, &payment, position).await?);
    }
    commits.sort_by_key(|commit| commit.position);
    let last_applied = commits.last().map_or(0, |commit| commit.position);
    let order = fold_in_scratch(pool, order_id, &commits).await?;
    Ok(OrderAsOf {
        order_id,
        position,
        last_applied,
        commits: commits.len(),
        order,
    })
}

/// The payments of an order: the one its saga opened and any the order recorded.
fn payment_ids(
    order_commits: &[RecordedCommit],
    saga_commits: &[RecordedCommit],
) -> Result<Vec<PaymentId>, AuditError> {
    let mut ids = Vec::new();
    for commit in saga_commits {
        for event in commit.into_event_envelopes::<OrderSaga>(&domain::saga::upcasters())? {
            if let SagaEvent::SagaStarted { payment_id, .. } = event.payload {
                ids.push(payment_id);
            }
        }
    }
    for commit in order_commits {
        for event in commit.into_event_envelopes::<Order>(&domain::order::upcasters())? {
            if let OrderEvent::OrderPaymentAuthorised { payment_id, .. } = event.payload {
                ids.push(payment_id);
            }
        }
    }
    Ok(ids)
}

/// Applies `commits` to an empty copy of the orders tables and reads the order back,
/// in a transaction that is rolled back.
async fn fold_in_scratch(
    pool: &PgPool,
    order_id: OrderId,
    commits: &[RecordedCommit],
) -> Result<OrderDetail, AsOfError> {
    let projection = OrdersProjection;
    let live = projection.schema();
    let scratch = format!("{live}__as_of_{}", Uuid::new_v4().simple());
    // A connection of its own, closed afterwards: the projection's unqualified statement
    // texts must not be cached against the scratch tables on a pooled connection (see
    // `runtime::private_pool`).
    let mut conn = PgConnection::connect_with(pool.connect_options().as_ref()).await?;
    let mut tx = conn.begin().await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename",
    )
    .bind(live)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(&format!("CREATE SCHEMA {}", quoted(&scratch)))
        .execute(&mut *tx)
        .await?;
    for table in &tables {
        sqlx::query(&format!(
            "CREATE TABLE {scratch}.{table} (LIKE {live}.{table} INCLUDING ALL)",
            scratch = quoted(&scratch),
            live = quoted(live),
            table = quoted(table),
        ))
        .execute(&mut *tx)
        .await?;
    }
    set_schema(&mut tx, &scratch).await?;
    let batch: Vec<Delivery<'_>> = commits
        .iter()
        .map(|commit| Delivery {
            commit,
            mode: DeliveryMode::Replay,
        })
        .collect();
    projection.apply(&mut tx, &batch).await?;
    let order = order_in(&mut tx, &scratch, order_id).await?;
    // Schema, tables and rows go with the rollback.
    tx.rollback().await?;
    conn.close().await?;
    order.ok_or_else(|| {
        AsOfError::Apply(ApplyError::Inconsistent(format!(
            "the orders read model has no row for order {order_id} after its commits"
        )))
    })
}
