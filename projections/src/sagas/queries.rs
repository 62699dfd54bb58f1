//! What the admin API and CLI read from the sagas read model (the live `sagas` schema).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::ids::{CustomerId, OrderId, PaymentId};
use domain::money::Money;
use domain::order::Canceller;
use domain::saga::Owner;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{parse_canceller, parse_owner, SagaPhase, SagaState};
use crate::orders::query::{decode_error, money};
use crate::page::{encode_cursor, Page, PageRequest, QueryError};

/// How long a compensating saga may go without an event before it counts as
/// [`SagaState::StuckPastDeadline`]: compensation has no deadline of its own, but each
/// step is retried within seconds, so a silent minute means its driver is likely gone.
pub const COMPENSATION_STALL: Duration = Duration::from_secs(60);

/// A saga as listed: where it stands, why, and who drives it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SagaSummary {
    /// The saga's id, which is its order's id.
    pub saga_id: Uuid,
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    /// The payment the saga records provider outcomes on.
    pub payment_id: PaymentId,
    pub phase: SagaPhase,
    /// Why the saga compensates, compensated or is parked; `None` in the other phases.
    pub reason: Option<String>,
    /// The compensation step that kept failing (such as `refund`), when parked.
    pub failed_step: Option<String>,
    /// That step's last error, when parked.
    pub last_error: Option<String>,
    /// When the current forward phase (reserving, authorising, completing) gives up.
    pub deadline_at: Option<DateTime<Utc>>,
    /// Who drives the saga; `None` at rest.
    pub owner: Option<Owner>,
    /// Who cancelled the order, once the saga noticed.
    pub cancelled_by: Option<Canceller>,
    /// How many times compensation started (more than 1 after an operator's retry).
    pub compensation_rounds: i32,
    /// What the saga charges.
    pub amount: Money,
    /// When the saga started (the time of its first commit).
    pub started_at: DateTime<Utc>,
    /// When its last event was written.
    pub updated_at: DateTime<Utc>,
    /// The saga's aggregate version: how many events it has.
    pub version: i64,
    /// The stream position of its last commit.
    pub position: i64,
}

impl SagaSummary {
    /// The opaque cursor of this saga in a most-recently-changed-first list (the cursor
    /// of its edge).
    pub fn cursor(&self) -> String {
        encode_cursor(&(self.updated_at, self.saga_id))
    }
}

/// One event of a saga's history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SagaTimelineEntry {
    /// The saga's aggregate version after this event, from 1.
    pub version: i64,
    /// The stream position of the commit holding it.
    pub position: i64,
    /// The event's type, such as `SagaStepFailed`.
    pub event_type: String,
    /// The event's fields as JSON (`{}` for an event without fields); the card token is
    /// never kept.
    pub detail: serde_json::Value,
    /// When the commit was written.
    pub at: DateTime<Utc>,
}

/// Which sagas to list; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SagaFilter {
    pub state: Option<SagaState>,
    pub order_id: Option<OrderId>,
}

#[derive(sqlx::FromRow)]
struct SummaryRecord {
    saga_id: Uuid,
    order_id: Uuid,
    customer_id: Uuid,
    payment_id: Uuid,
    phase: String,
    reason: Option<String>,
    failed_step: Option<String>,
    last_error: Option<String>,
    deadline_at: Option<DateTime<Utc>>,
    owner: Option<String>,
    cancelled_by: Option<String>,
    compensation_rounds: i32,
    amount_minor: i64,
    currency: String,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    position: i64,
}

const SUMMARY_COLUMNS: &str = "saga_id, order_id, customer_id, payment_id, phase, reason, \
    failed_step, last_error, deadline_at, owner, cancelled_by, compensation_rounds, \
    amount_minor, currency, started_at, updated_at, version, position";

impl TryFrom<SummaryRecord> for SagaSummary {
    type Error = sqlx::Error;

    fn try_from(record: SummaryRecord) -> Result<Self, Self::Error> {
        Ok(SagaSummary {
            saga_id: record.saga_id,
            order_id: OrderId(record.order_id),
            customer_id: CustomerId(record.customer_id),
            payment_id: PaymentId(record.payment_id),
            phase: record.phase.parse().map_err(decode_error)?,
            reason: record.reason,
            failed_step: record.failed_step,
            last_error: record.last_error,
            deadline_at: record.deadline_at,
            owner: record
                .owner
                .as_deref()
                .map(parse_owner)
                .transpose()
                .map_err(decode_error)?,
            cancelled_by: record
                .cancelled_by
                .as_deref()
                .map(parse_canceller)
                .transpose()
                .map_err(decode_error)?,
            compensation_rounds: record.compensation_rounds,
            amount: money(record.amount_minor, &record.currency)?,
            started_at: record.started_at,
            updated_at: record.updated_at,
            version: record.version,
            position: record.position,
        })
    }
}

/// The sagas matching `filter`, most recently changed first (by `updated_at`, then id):
/// the page `page` asks for, each saga with its cursor, with the number of matching
/// sagas.
///
/// A saga that changes while an operator pages moves to the front of the list: it may
/// then be missed by later pages or shown twice, as with any list sorted by a time that
/// moves.
///
/// # Errors
/// [`QueryError::InvalidCursor`], [`QueryError::PageTooLarge`], or a database error.
pub async fn list(
    pool: &PgPool,
    filter: &SagaFilter,
    page: PageRequest<'_>,
) -> Result<Page<SagaSummary>, QueryError> {
    let scan = page.scan::<(DateTime<Utc>, Uuid)>(true)?;

    let mut query = QueryBuilder::<Postgres>::new(format!(
        "SELECT {SUMMARY_COLUMNS} FROM sagas.instances WHERE true"
    ));
    push_filter(&mut query, filter);
    if let Some((updated_at, saga_id)) = scan.cursor {
        query
            .push(format!(
                " AND (updated_at, saga_id) {} (",
                scan.comparison()
            ))
            .push_bind(updated_at)
            .push(", ")
            .push_bind(saga_id)
            .push(")");
    }
    let direction = scan.direction();
    query
        .push(format!(
            " ORDER BY updated_at {direction}, saga_id {direction} LIMIT "
        ))
        .push_bind(scan.limit);
    let records: Vec<SummaryRecord> = query.build_query_as().fetch_all(pool).await?;
    let items = records
        .into_iter()
        .map(SagaSummary::try_from)
        .collect::<Result<Vec<_>, _>>()?;

    let mut query =
        QueryBuilder::<Postgres>::new("SELECT count(*) FROM sagas.instances WHERE true");
    push_filter(&mut query, filter);
    let (total,): (i64,) = query.build_query_as().fetch_one(pool).await?;

    Ok(Page::from_lookahead(
        items,
        page,
        Some(total),
        SagaSummary::cursor,
    ))
}

fn push_filter(query: &mut QueryBuilder<'_, Postgres>, filter: &SagaFilter) {
    let words = |phases: &[SagaPhase]| phases.iter().map(|p| p.as_str()).collect::<Vec<_>>();
    let forward = [
        SagaPhase::Reserving,
        SagaPhase::Authorising,
        SagaPhase::Completing,
    ];
    match filter.state {
        None => {}
        Some(SagaState::Running) => {
            let running: Vec<SagaPhase> = SagaPhase::ALL
                .into_iter()
                .filter(|phase| !phase.is_at_rest())
                .collect();
            query
                .push(" AND phase = ANY(")
                .push_bind(words(&running))
                .push(")");
        }
        Some(SagaState::Waiting) => {
            query
                .push(" AND phase = ")
                .push_bind(SagaPhase::Authorising.as_str());
        }
        Some(SagaState::StuckPastDeadline) => {
            query
                .push(" AND ((phase = ANY(")
                .push_bind(words(&forward))
                .push(") AND deadline_at < now()) OR (phase = ")
                .push_bind(SagaPhase::Compensating.as_str())
                .push(" AND updated_at < now() - make_interval(secs => ")
                .push_bind(COMPENSATION_STALL.as_secs_f64())
                .push(")))");
        }
        Some(SagaState::CompensationFailed) => {
            query
                .push(" AND phase = ")
                .push_bind(SagaPhase::CompensationFailed.as_str());
        }
        Some(SagaState::Completed) => {
            query
                .push(" AND phase = ")
                .push_bind(SagaPhase::Completed.as_str());
        }
        Some(SagaState::Compensated) => {
            query
                .push(" AND phase = ")
                .push_bind(SagaPhase::Compensated.as_str());
        }
    }
    if let Some(order_id) = filter.order_id {
        // The projection rejects a saga started for another order than its id, so the
        // primary key finds the order's saga.
        query.push(" AND saga_id = ").push_bind(order_id.as_uuid());
    }
}

/// One saga; `None` when the read model does not know it.
///
/// # Errors
/// When PostgreSQL fails or holds a value this code cannot read.
pub async fn get(pool: &PgPool, saga_id: Uuid) -> Result<Option<SagaSummary>, sqlx::Error> {
    let record: Option<SummaryRecord> = sqlx::query_as(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM sagas.instances WHERE saga_id = $1"
    ))
    .bind(saga_id)
    .fetch_optional(pool)
    .await?;
    record.map(SagaSummary::try_from).transpose()
}

/// Every event of a saga, oldest first; empty when the read model does not know it.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn timeline(pool: &PgPool, saga_id: Uuid) -> Result<Vec<SagaTimelineEntry>, sqlx::Error> {
    let rows: Vec<(i64, i64, String, serde_json::Value, DateTime<Utc>)> = sqlx::query_as(
        "SELECT version, position, event_type, detail, at FROM sagas.timeline \
         WHERE saga_id = $1 ORDER BY version",
    )
    .bind(saga_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(version, position, event_type, detail, at)| SagaTimelineEntry {
                version,
                position,
                event_type,
                detail,
                at,
            },
        )
        .collect())
}

/// How many sagas are in each phase: every phase in the order a saga goes through them
/// ([`SagaPhase::ALL`]), zeros included.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn counts(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT phase, count(*) FROM sagas.instances GROUP BY phase ORDER BY phase")
            .fetch_all(pool)
            .await?;
    let mut by_phase: HashMap<String, i64> = rows.into_iter().collect();
    let mut counts: Vec<(String, i64)> = SagaPhase::ALL
        .into_iter()
        .map(|phase| {
            let count = by_phase.remove(phase.as_str()).unwrap_or(0);
            (phase.as_str().to_owned(), count)
        })
        .collect();
    // A phase this code does not know would fail `list`; show it rather than hide it.
    let mut unknown: Vec<(String, i64)> = by_phase.into_iter().collect();
    unknown.sort();
    counts.extend(unknown);
    Ok(counts)
}
