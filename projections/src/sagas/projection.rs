//! How commits of order sagas change the sagas read model: load the sagas a batch
//! touches (one statement), fold the commits in stream order with the domain's own
//! `OrderSaga::apply`, write back (two bulk statements).
//!
//! Reusing the aggregate's fold, rather than a copy of its rules, is what keeps phases,
//! owners, compensation rounds and reasons exactly as the saga driver sees them. The
//! price is that `instances.state` holds the aggregate's serde shape: a change to that
//! shape which old rows cannot deserialise needs a new [`SagasProjection::version`] and
//! a rebuild.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use domain::saga::{OrderSaga, Phase, Run, SagaEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{canceller_text, owner_text};
use crate::commits::{continuity, decode_commit, Continuity, Decoded};
use crate::projection::{ApplyError, Delivery, Projection};

/// Projects order sagas and their timelines into the `sagas` schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct SagasProjection;

#[async_trait]
impl Projection for SagasProjection {
    fn name(&self) -> &'static str {
        "sagas"
    }

    fn schema(&self) -> &'static str {
        "sagas"
    }

    fn version(&self) -> i32 {
        1
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[OrderSaga::TYPE]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[Delivery<'_>],
    ) -> Result<(), ApplyError> {
        let upcasters = domain::saga::upcasters();
        let commits = batch
            .iter()
            .filter(|delivery| delivery.aggregate_type() == OrderSaga::TYPE)
            .map(|delivery| decode_commit::<OrderSaga>(delivery, &upcasters))
            .collect::<Result<Vec<_>, _>>()?;
        if commits.is_empty() {
            return Ok(());
        }
        let mut model = Model::load(conn, &commits).await?;
        for commit in &commits {
            model.apply(commit)?;
        }
        model.write(conn).await
    }
}

/// A saga as folded so far, with what the commits add to it.
struct Instance {
    saga: OrderSaga,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    position: i64,
}

/// What `load` reads of a row of `instances`.
#[derive(sqlx::FromRow)]
struct StoredInstance {
    saga_id: Uuid,
    state: serde_json::Value,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    position: i64,
}

/// One row of `timeline`.
struct TimelineRow {
    saga_id: Uuid,
    version: i64,
    position: i64,
    event_type: String,
    detail: serde_json::Value,
    at: DateTime<Utc>,
}

#[derive(Default)]
struct Model {
    instances: HashMap<Uuid, Instance>,
    changed: HashSet<Uuid>,
    timeline: Vec<TimelineRow>,
}

impl Model {
    async fn load(
        conn: &mut PgConnection,
        commits: &[Decoded<'_, SagaEvent>],
    ) -> Result<Self, ApplyError> {
        let ids: Vec<Uuid> = commits
            .iter()
            .map(|commit| commit.aggregate_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let rows: Vec<StoredInstance> = sqlx::query_as(
            "SELECT saga_id, state, started_at, updated_at, version, position \
             FROM instances WHERE saga_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        let mut instances = HashMap::with_capacity(rows.len());
        for row in rows {
            let saga: OrderSaga = serde_json::from_value(row.state).map_err(|e| {
                ApplyError::Inconsistent(format!(
                    "saga {}: the stored state no longer fits the aggregate ({e}); \
                     the read model needs a rebuild",
                    row.saga_id
                ))
            })?;
            instances.insert(
                row.saga_id,
                Instance {
                    saga,
                    started_at: row.started_at,
                    updated_at: row.updated_at,
                    version: row.version,
                    position: row.position,
                },
            );
        }
        Ok(Model {
            instances,
            ..Model::default()
        })
    }

    fn apply(&mut self, commit: &Decoded<'_, SagaEvent>) -> Result<(), ApplyError> {
        let saga_id = commit.aggregate_id;
        let applied = self.instances.get(&saga_id).map(|i| i.version);
        if continuity("saga", applied, commit.envelope)? == Continuity::AlreadyApplied {
            return Ok(());
        }
        let at = commit.timestamp();
        for (index, event) in commit.events.iter().enumerate() {
            let version = commit.sequence(index);
            let event = event.clone().without_card_token();
            let started = check(saga_id, self.instances.get(&saga_id), &event)?;
            self.timeline.push(TimelineRow {
                saga_id,
                version,
                position: commit.position,
                event_type: event.event_type(),
                detail: detail(&event)?,
                at,
            });
            let instance = self.instances.entry(saga_id).or_insert_with(|| Instance {
                saga: OrderSaga::default(),
                started_at: at,
                updated_at: at,
                version,
                position: commit.position,
            });
            if started {
                instance.started_at = at;
            }
            instance.saga.apply(event);
            instance.updated_at = at;
            instance.version = version;
            instance.position = commit.position;
        }
        self.changed.insert(saga_id);
        Ok(())
    }

    async fn write(self, conn: &mut PgConnection) -> Result<(), ApplyError> {
        let rows = self
            .changed
            .iter()
            .map(|id| InstanceRow::new(*id, &self.instances[id]))
            .collect::<Result<Vec<_>, _>>()?;
        if !rows.is_empty() {
            upsert_instances(conn, &rows).await?;
        }
        if !self.timeline.is_empty() {
            insert_timeline(conn, &self.timeline).await?;
        }
        Ok(())
    }
}

/// Rejects what the aggregate would silently ignore or mislabel: an event of a saga
/// never started (it would leave no row to show), and a start naming another order
/// (the saga's id is its order's id, which the queries rely on). Returns whether the
/// event starts the saga.
fn check(
    saga_id: Uuid,
    instance: Option<&Instance>,
    event: &SagaEvent,
) -> Result<bool, ApplyError> {
    match event {
        SagaEvent::SagaStarted { order_id, .. } if order_id.as_uuid() != saga_id => {
            Err(ApplyError::Inconsistent(format!(
                "saga {saga_id} starts for order {order_id}, yet a saga's id is its order's"
            )))
        }
        SagaEvent::SagaStarted { .. } => Ok(true),
        _ if instance.and_then(|i| i.saga.run()).is_none() => {
            Err(ApplyError::Inconsistent(format!(
                "saga {saga_id} was never started, yet it has a {}",
                event.event_type()
            )))
        }
        _ => Ok(false),
    }
}

/// The event's fields as a JSON object (`{}` for an event without fields), the card
/// token left out.
fn detail(event: &SagaEvent) -> Result<serde_json::Value, ApplyError> {
    let value = serde_json::to_value(event).map_err(|e| ApplyError::Decode(Box::new(e)))?;
    // Serde tags an enum externally: `{"Variant": {fields}}`, or `"Variant"` alone.
    let mut fields = match value {
        serde_json::Value::Object(tagged) => tagged
            .into_iter()
            .next()
            .map(|(_, fields)| fields)
            .unwrap_or_default(),
        _ => serde_json::Value::Object(serde_json::Map::new()),
    };
    if let Some(fields) = fields.as_object_mut() {
        fields.remove("card_token");
    }
    Ok(fields)
}

/// One row of `instances`, flattened from the folded saga.
struct InstanceRow {
    saga_id: Uuid,
    order_id: Uuid,
    customer_id: Uuid,
    payment_id: Uuid,
    phase: &'static str,
    reason: Option<String>,
    failed_step: Option<String>,
    last_error: Option<String>,
    deadline_at: Option<DateTime<Utc>>,
    owner: Option<String>,
    cancelled_by: Option<&'static str>,
    compensation_rounds: i32,
    amount_minor: i64,
    currency: String,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    position: i64,
    state: serde_json::Value,
}

impl InstanceRow {
    fn new(saga_id: Uuid, instance: &Instance) -> Result<Self, ApplyError> {
        // `check` lets no event through before the start, so a changed saga has a run.
        let run: &Run = instance
            .saga
            .run()
            .ok_or_else(|| ApplyError::Inconsistent(format!("saga {saga_id} was never started")))?;
        let (reason, failed_step, last_error) = match &run.phase {
            Phase::Compensating { reason } | Phase::Compensated { reason } => {
                (Some(reason.clone()), None, None)
            }
            Phase::CompensationFailed {
                reason,
                step,
                error,
            } => (
                Some(reason.clone()),
                Some(step.clone()),
                Some(error.clone()),
            ),
            Phase::Reserving { .. }
            | Phase::Authorising { .. }
            | Phase::Completing { .. }
            | Phase::Completed => (None, None, None),
        };
        let compensation_rounds = i32::try_from(run.compensation_rounds).map_err(|_| {
            ApplyError::Inconsistent(format!("saga {saga_id}: too many compensation rounds"))
        })?;
        let state =
            serde_json::to_value(&instance.saga).map_err(|e| ApplyError::Decode(Box::new(e)))?;
        Ok(InstanceRow {
            saga_id,
            order_id: run.order_id.as_uuid(),
            customer_id: run.customer_id.as_uuid(),
            payment_id: run.payment_id.as_uuid(),
            phase: run.phase.as_str(),
            reason,
            failed_step,
            last_error,
            deadline_at: run.phase.deadline_at(),
            owner: run.owner.as_ref().map(owner_text),
            cancelled_by: run.cancellation.as_ref().map(|c| canceller_text(c.by)),
            compensation_rounds,
            amount_minor: run.amount.amount_minor,
            currency: run.amount.currency.code().to_owned(),
            started_at: instance.started_at,
            updated_at: instance.updated_at,
            version: instance.version,
            position: instance.position,
            state,
        })
    }
}

async fn upsert_instances(conn: &mut PgConnection, rows: &[InstanceRow]) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO instances (saga_id, order_id, customer_id, payment_id, phase, reason, \
             failed_step, last_error, deadline_at, owner, cancelled_by, compensation_rounds, \
             amount_minor, currency, started_at, updated_at, version, position, state) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::text[], $11::text[], \
             $12::integer[], $13::bigint[], $14::text[], $15::timestamptz[], \
             $16::timestamptz[], $17::bigint[], $18::bigint[], $19::jsonb[]) \
         ON CONFLICT (saga_id) DO UPDATE SET \
             order_id = EXCLUDED.order_id, customer_id = EXCLUDED.customer_id, \
             payment_id = EXCLUDED.payment_id, phase = EXCLUDED.phase, \
             reason = EXCLUDED.reason, failed_step = EXCLUDED.failed_step, \
             last_error = EXCLUDED.last_error, deadline_at = EXCLUDED.deadline_at, \
             owner = EXCLUDED.owner, cancelled_by = EXCLUDED.cancelled_by, \
             compensation_rounds = EXCLUDED.compensation_rounds, \
             amount_minor = EXCLUDED.amount_minor, currency = EXCLUDED.currency, \
             started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at, \
             version = EXCLUDED.version, position = EXCLUDED.position, state = EXCLUDED.state",
    )
    .bind(rows.iter().map(|r| r.saga_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.order_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.customer_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.payment_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.phase).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.reason.clone()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.failed_step.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| r.last_error.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.deadline_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.owner.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.cancelled_by).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.compensation_rounds)
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.amount_minor).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.currency.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.started_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.state.clone()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_timeline(conn: &mut PgConnection, rows: &[TimelineRow]) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO timeline (saga_id, version, position, event_type, detail, at) \
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], \
             $5::jsonb[], $6::timestamptz[]) \
         ON CONFLICT (saga_id, version) DO NOTHING",
    )
    .bind(rows.iter().map(|r| r.saga_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.event_type.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.detail.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}
