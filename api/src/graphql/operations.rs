//! For operators: the dead-letter queue over GraphQL, as `shopstream dlq` offers it on
//! the command line. Every action is recorded with its actor and reason; a caller whose
//! role may not act is refused, and the refusal is recorded too.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use projections::dead_letters::{self, Action, DeadLetter, DeadLetterError, DeadLetterFilter};
use serde_json::json;
use uuid::Uuid;

use super::context::{ContextExt, Position};
use super::error::ApiError;
use super::relay::UserError;
use super::text::{check_text, Limit};
use crate::audit_log::{self, Access};
use crate::auth::Role;

/// A parked commit: a projector could not apply it, so it and every later commit of its
/// aggregate wait for an operator.
#[derive(Debug, Clone, SimpleObject)]
pub struct DeadLetterEntry {
    /// Pass to `deadLetterAct`.
    pub id: ID,
    /// The projector that parked it.
    pub consumer: String,
    /// The commit's position in the log.
    pub position: Position,
    /// Its aggregate.
    pub aggregate_type: String,
    /// Its aggregate's id.
    pub aggregate_id: String,
    /// Why it failed; empty for commits parked behind a failed one.
    pub error: String,
    /// Groups entries that failed the same way.
    pub error_fingerprint: String,
    /// Attempts so far.
    pub attempts: i32,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
}

impl From<DeadLetter> for DeadLetterEntry {
    fn from(entry: DeadLetter) -> Self {
        DeadLetterEntry {
            id: ID(entry.id.to_string()),
            consumer: entry.consumer,
            position: Position(u64::try_from(entry.position).unwrap_or(0)),
            aggregate_type: entry.aggregate_type,
            aggregate_id: entry.aggregate_id,
            error: entry.error,
            error_fingerprint: entry.error_fingerprint,
            attempts: entry.attempts,
            parked_at: entry.parked_at,
        }
    }
}

/// Operator reads.
#[derive(Default)]
pub struct OperationsQuery;

#[Object]
impl OperationsQuery {
    /// Parked commits, by consumer and position (operators and admins).
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        consumer: Option<String>,
        error_fingerprint: Option<String>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 100))] first: i32,
    ) -> async_graphql::Result<Vec<DeadLetterEntry>> {
        ctx.require(&[Role::Operator, Role::Admin])?;
        let filter = DeadLetterFilter {
            consumer,
            fingerprint: error_fingerprint,
            ..DeadLetterFilter::default()
        };
        Ok(
            dead_letters::list(&ctx.services().db, &filter, i64::from(first))
                .await
                .map_err(ApiError::from)?
                .into_iter()
                .map(DeadLetterEntry::from)
                .collect(),
        )
    }
}

/// What to do with a parked sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum DeadLetterActionKind {
    /// Apply it again (after fixing the cause), in order.
    Retry,
    /// Leave the failing head unapplied and apply the rest.
    Skip,
    /// Leave the whole sequence unapplied.
    Discard,
}

/// An action on the parked sequence holding one dead letter.
#[derive(Debug, InputObject)]
pub struct DeadLetterActInput {
    /// A dead letter's id.
    pub id: ID,
    /// What to do.
    pub action: DeadLetterActionKind,
    /// Why; recorded with the action.
    pub reason: String,
}

/// What an action did.
#[derive(Debug, SimpleObject)]
pub struct DeadLetterActPayload {
    /// Positions applied to the read model.
    pub applied: Vec<Position>,
    /// Positions left unapplied on purpose.
    pub dropped: Vec<Position>,
    /// Positions still parked (the head failed again).
    pub still_parked: Vec<Position>,
    /// Rules the input broke.
    pub user_errors: Vec<UserError>,
}

/// Operator actions.
#[derive(Default)]
pub struct OperationsMutation;

#[Object]
impl OperationsMutation {
    /// Retries, skips or discards the parked sequence holding a dead letter (operators).
    async fn dead_letter_act(
        &self,
        ctx: &Context<'_>,
        input: DeadLetterActInput,
    ) -> async_graphql::Result<DeadLetterActPayload> {
        let services = ctx.services();
        let operator = match ctx.require(&[Role::Operator]) {
            Ok(operator) => operator,
            Err(refusal) => {
                let actor = ctx.viewer().map_or_else(
                    || "anonymous".to_owned(),
                    |viewer| viewer.actor().to_string(),
                );
                audit_log::record(
                    &services.db,
                    &Access {
                        actor: &actor,
                        action: "refused:deadLetterAct",
                        target_type: Some("dead_letter"),
                        target_id: Some(input.id.as_str()),
                        arguments: json!({ "action": format!("{:?}", input.action) }),
                    },
                )
                .await
                .map_err(ApiError::from)?;
                return Err(refusal.into());
            }
        };
        let id = Uuid::parse_str(input.id.as_str())
            .map_err(|_| ApiError::bad_input("`id` is not a dead-letter id"))?;
        let reason = check_text(&input.reason, "reason", Limit::REASON)?;
        let rejected = |field: &str, code: &str, message: String| DeadLetterActPayload {
            applied: Vec::new(),
            dropped: Vec::new(),
            still_parked: Vec::new(),
            user_errors: vec![UserError::on(&[field], code, message)],
        };
        if reason.is_empty() {
            return Ok(rejected(
                "reason",
                "REASON_REQUIRED",
                "a reason is required".to_owned(),
            ));
        }
        let sequence = match dead_letters::sequence_of(&services.db, id).await {
            Ok(sequence) => sequence,
            Err(DeadLetterError::UnknownId(_) | DeadLetterError::NothingParked { .. }) => {
                return Err(ApiError::NotFound("dead letter").into())
            }
            Err(error) => return Err(ApiError::internal(infra_nats::ErrorChain(&error)).into()),
        };
        let Some(projection) = projections::registry::by_name(&sequence.consumer) else {
            return Ok(rejected(
                "id",
                "NOT_A_PROJECTION",
                format!(
                    "`{}` is not a projector; use its own tools",
                    sequence.consumer
                ),
            ));
        };
        let action = match input.action {
            DeadLetterActionKind::Retry => Action::Retry,
            DeadLetterActionKind::Skip => Action::Skip,
            DeadLetterActionKind::Discard => Action::Discard,
        };
        let actor = operator.actor().to_string();
        let outcome = match dead_letters::act(
            &services.db,
            &projection,
            &sequence,
            action,
            &actor,
            &reason,
        )
        .await
        {
            Ok(outcome) => outcome,
            // Resolved meanwhile (or before): nothing of it is parked any more.
            Err(DeadLetterError::NothingParked { .. }) => {
                return Err(ApiError::NotFound("parked dead letter").into())
            }
            Err(error) => return Err(ApiError::internal(infra_nats::ErrorChain(&error)).into()),
        };
        let positions = |positions: &[i64]| {
            positions
                .iter()
                .map(|position| Position(u64::try_from(*position).unwrap_or(0)))
                .collect()
        };
        Ok(DeadLetterActPayload {
            applied: positions(&outcome.applied),
            dropped: positions(&outcome.dropped),
            still_parked: positions(&outcome.still_parked),
            user_errors: outcome
                .error
                .map(|error| UserError::on(&["id"], "STILL_FAILING", error))
                .into_iter()
                .collect(),
        })
    }
}
