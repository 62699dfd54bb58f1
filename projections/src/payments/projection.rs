//! How commits of payments change the payments read model: load the payments a batch
//! touches (one statement), fold the commits in stream order, write back (two bulk
//! statements).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::payment::{Payment, PaymentEvent, PaymentMethod};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{OperationKind, PaymentStatus};
use crate::commits::{continuity, decode_commit, event_index, Continuity, Decoded};
use crate::projection::{ApplyError, Delivery, Projection};

/// Projects payments and their operations into the `payments` schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentsProjection;

#[async_trait]
impl Projection for PaymentsProjection {
    fn name(&self) -> &'static str {
        "payments"
    }

    fn schema(&self) -> &'static str {
        "payments"
    }

    fn version(&self) -> i32 {
        1
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Payment::TYPE]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[Delivery<'_>],
    ) -> Result<(), ApplyError> {
        let upcasters = domain::payment::upcasters();
        let commits = batch
            .iter()
            .filter(|delivery| delivery.aggregate_type() == Payment::TYPE)
            .map(|delivery| decode_commit::<Payment>(delivery, &upcasters))
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

/// One row of `payments`.
#[derive(Debug, Clone, sqlx::FromRow)]
struct PaymentRow {
    payment_id: Uuid,
    order_id: Uuid,
    status: String,
    currency: String,
    amount_minor: i64,
    captured_minor: i64,
    refunded_minor: i64,
    method: Option<String>,
    provider_reference: Option<String>,
    decline_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_sequence: i64,
}

/// One row of `operations`.
struct OperationRow {
    payment_id: Uuid,
    sequence: i64,
    position: i64,
    event_index: i32,
    kind: OperationKind,
    amount_minor: Option<i64>,
    currency: String,
    occurred_at: DateTime<Utc>,
    reason: Option<String>,
    provider_reference: Option<String>,
    refund_id: Option<Uuid>,
}

#[derive(Default)]
struct Model {
    payments: HashMap<Uuid, PaymentRow>,
    changed: HashSet<Uuid>,
    operations: Vec<OperationRow>,
}

impl Model {
    async fn load(
        conn: &mut PgConnection,
        commits: &[Decoded<'_, PaymentEvent>],
    ) -> Result<Self, ApplyError> {
        let ids: Vec<Uuid> = commits
            .iter()
            .map(|commit| commit.aggregate_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let rows: Vec<PaymentRow> =
            sqlx::query_as("SELECT * FROM payments WHERE payment_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *conn)
                .await?;
        Ok(Model {
            payments: rows.into_iter().map(|row| (row.payment_id, row)).collect(),
            ..Model::default()
        })
    }

    fn apply(&mut self, commit: &Decoded<'_, PaymentEvent>) -> Result<(), ApplyError> {
        let payment_id = commit.aggregate_id;
        let applied = self.payments.get(&payment_id).map(|row| row.last_sequence);
        if continuity("payment", applied, commit.envelope)? == Continuity::AlreadyApplied {
            return Ok(());
        }
        let at = commit.timestamp();
        for (index, event) in commit.events.iter().enumerate() {
            let sequence = commit.sequence(index);
            let operation = match self.payments.get_mut(&payment_id) {
                None => {
                    let (row, operation) = first_answer(payment_id, event, at, sequence)?;
                    self.payments.insert(payment_id, row);
                    operation
                }
                Some(row) => {
                    let operation = follow_up(row, event)?;
                    row.updated_at = at;
                    row.last_sequence = sequence;
                    operation
                }
            };
            self.operations.push(OperationRow {
                payment_id,
                sequence,
                position: commit.position,
                event_index: event_index(index)?,
                kind: operation.kind,
                amount_minor: operation.amount_minor,
                currency: self.payments[&payment_id].currency.clone(),
                occurred_at: at,
                reason: operation.reason,
                provider_reference: operation.provider_reference,
                refund_id: operation.refund_id,
            });
        }
        self.changed.insert(payment_id);
        Ok(())
    }

    async fn write(self, conn: &mut PgConnection) -> Result<(), ApplyError> {
        let rows: Vec<&PaymentRow> = self.changed.iter().map(|id| &self.payments[id]).collect();
        if !rows.is_empty() {
            upsert_payments(conn, &rows).await?;
        }
        if !self.operations.is_empty() {
            insert_operations(conn, &self.operations).await?;
        }
        Ok(())
    }
}

/// What one event adds to the operations of its payment.
struct Operation {
    kind: OperationKind,
    amount_minor: Option<i64>,
    reason: Option<String>,
    provider_reference: Option<String>,
    refund_id: Option<Uuid>,
}

/// Records the provider's first answer for a payment the model never saw.
fn first_answer(
    payment_id: Uuid,
    event: &PaymentEvent,
    at: DateTime<Utc>,
    sequence: i64,
) -> Result<(PaymentRow, Operation), ApplyError> {
    let (order_id, amount, status, method, provider_reference, decline_reason) = match event {
        PaymentEvent::PaymentAuthorised {
            payment_id: id,
            order_id,
            amount,
            method,
            provider_reference,
        } if id.as_uuid() == payment_id => (
            order_id,
            amount,
            PaymentStatus::Authorised,
            Some(method_name(method)),
            Some(provider_reference.clone()),
            None,
        ),
        PaymentEvent::PaymentDeclined {
            payment_id: id,
            order_id,
            amount,
            reason,
        } if id.as_uuid() == payment_id => (
            order_id,
            amount,
            PaymentStatus::Declined,
            None,
            None,
            Some(reason.clone()),
        ),
        _ => {
            return Err(ApplyError::Inconsistent(format!(
                "payment {payment_id} was never authorised nor declined, yet it has a {event:?}"
            )))
        }
    };
    let row = PaymentRow {
        payment_id,
        order_id: order_id.as_uuid(),
        status: status.as_str().to_owned(),
        currency: amount.currency.code().to_owned(),
        amount_minor: amount.amount_minor,
        captured_minor: 0,
        refunded_minor: 0,
        method: method.map(str::to_owned),
        provider_reference: provider_reference.clone(),
        decline_reason: decline_reason.clone(),
        created_at: at,
        updated_at: at,
        last_sequence: sequence,
    };
    let operation = Operation {
        kind: if status == PaymentStatus::Declined {
            OperationKind::Decline
        } else {
            OperationKind::Authorisation
        },
        amount_minor: Some(amount.amount_minor),
        reason: decline_reason,
        provider_reference,
        refund_id: None,
    };
    Ok((row, operation))
}

/// Applies an event that follows the provider's first answer.
fn follow_up(row: &mut PaymentRow, event: &PaymentEvent) -> Result<Operation, ApplyError> {
    let operation = match event {
        PaymentEvent::PaymentAuthorised { .. } | PaymentEvent::PaymentDeclined { .. } => {
            return Err(ApplyError::Inconsistent(format!(
                "payment {} is answered a second time",
                row.payment_id
            )))
        }
        PaymentEvent::PaymentCaptured { amount, .. } => {
            check_currency(row, amount.currency.code())?;
            row.captured_minor = amount.amount_minor;
            row.status = PaymentStatus::Captured.as_str().to_owned();
            Operation {
                kind: OperationKind::Capture,
                amount_minor: Some(amount.amount_minor),
                reason: None,
                provider_reference: None,
                refund_id: None,
            }
        }
        PaymentEvent::PaymentVoided { .. } => {
            row.status = PaymentStatus::Voided.as_str().to_owned();
            Operation {
                kind: OperationKind::Void,
                amount_minor: None,
                reason: None,
                provider_reference: None,
                refund_id: None,
            }
        }
        PaymentEvent::PaymentRefunded {
            refund_id,
            amount,
            reason,
            ..
        } => {
            check_currency(row, amount.currency.code())?;
            row.refunded_minor = row
                .refunded_minor
                .checked_add(amount.amount_minor)
                .ok_or_else(|| {
                    ApplyError::Inconsistent(format!(
                        "payment {}: refunds overflow",
                        row.payment_id
                    ))
                })?;
            let status = if row.refunded_minor >= row.captured_minor {
                PaymentStatus::Refunded
            } else {
                PaymentStatus::PartiallyRefunded
            };
            row.status = status.as_str().to_owned();
            Operation {
                kind: OperationKind::Refund,
                amount_minor: Some(amount.amount_minor),
                reason: Some(reason.clone()),
                provider_reference: None,
                refund_id: Some(refund_id.as_uuid()),
            }
        }
    };
    Ok(operation)
}

fn check_currency(row: &PaymentRow, currency: &str) -> Result<(), ApplyError> {
    if row.currency == currency {
        Ok(())
    } else {
        Err(ApplyError::Inconsistent(format!(
            "payment {} is in {}, yet an event of it is in {currency}",
            row.payment_id, row.currency
        )))
    }
}

/// The method as stored; the card token stays with the provider.
fn method_name(method: &PaymentMethod) -> &'static str {
    match method {
        PaymentMethod::Card { .. } => "card",
    }
}

async fn upsert_payments(conn: &mut PgConnection, rows: &[&PaymentRow]) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO payments (payment_id, order_id, status, currency, amount_minor, \
             captured_minor, refunded_minor, method, provider_reference, decline_reason, \
             created_at, updated_at, last_sequence) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], \
             $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[], \
             $11::timestamptz[], $12::timestamptz[], $13::bigint[]) \
         ON CONFLICT (payment_id) DO UPDATE SET \
             order_id = EXCLUDED.order_id, status = EXCLUDED.status, \
             currency = EXCLUDED.currency, amount_minor = EXCLUDED.amount_minor, \
             captured_minor = EXCLUDED.captured_minor, \
             refunded_minor = EXCLUDED.refunded_minor, method = EXCLUDED.method, \
             provider_reference = EXCLUDED.provider_reference, \
             decline_reason = EXCLUDED.decline_reason, created_at = EXCLUDED.created_at, \
             updated_at = EXCLUDED.updated_at, last_sequence = EXCLUDED.last_sequence",
    )
    .bind(rows.iter().map(|r| r.payment_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.order_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.currency.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.amount_minor).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.captured_minor).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.refunded_minor).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.method.clone()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.provider_reference.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| r.decline_reason.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.last_sequence).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_operations(
    conn: &mut PgConnection,
    operations: &[OperationRow],
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO operations (payment_id, sequence, position, event_index, kind, \
             amount_minor, currency, occurred_at, reason, provider_reference, refund_id) \
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::integer[], \
             $5::text[], $6::bigint[], $7::text[], $8::timestamptz[], $9::text[], $10::text[], \
             $11::uuid[]) \
         ON CONFLICT (payment_id, sequence) DO NOTHING",
    )
    .bind(operations.iter().map(|o| o.payment_id).collect::<Vec<_>>())
    .bind(operations.iter().map(|o| o.sequence).collect::<Vec<_>>())
    .bind(operations.iter().map(|o| o.position).collect::<Vec<_>>())
    .bind(operations.iter().map(|o| o.event_index).collect::<Vec<_>>())
    .bind(
        operations
            .iter()
            .map(|o| o.kind.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        operations
            .iter()
            .map(|o| o.amount_minor)
            .collect::<Vec<_>>(),
    )
    .bind(
        operations
            .iter()
            .map(|o| o.currency.clone())
            .collect::<Vec<_>>(),
    )
    .bind(operations.iter().map(|o| o.occurred_at).collect::<Vec<_>>())
    .bind(
        operations
            .iter()
            .map(|o| o.reason.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        operations
            .iter()
            .map(|o| o.provider_reference.clone())
            .collect::<Vec<_>>(),
    )
    .bind(operations.iter().map(|o| o.refund_id).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}
