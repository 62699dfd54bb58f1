//! For auditors and admins: any aggregate's history with its metadata, and its state as
//! of a past version, position or time. Every read is recorded in `audit.access_log`.

use async_graphql::{Context, Json, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::OrderId;
use infra_nats::audit::{self, AuditError, Bound, HistoryEvent};
use projections::orders::{order_as_of, AsOfError};
use serde_json::json;

use super::context::{ContextExt, Position};
use super::error::ApiError;
use super::ids::GlobalId;
use crate::audit_log::{self, Access};
use crate::auth::Role;

/// The most events one `aggregateHistory` page may hold.
const MAX_HISTORY_PAGE: i32 = 500;

/// One event of an aggregate with everything recorded about it.
#[derive(Debug, Clone, SimpleObject)]
pub struct AuditEvent {
    /// The position of the commit holding the event.
    pub position: Position,
    /// The aggregate version of the event (from 1).
    pub version: u64,
    /// The event's type name.
    pub event_type: String,
    /// The event's schema version, as stored.
    pub event_version: String,
    /// When the commit was stored.
    pub timestamp: DateTime<Utc>,
    /// Who sent the command: `user:<uuid>` or `system:<name>`.
    pub actor: String,
    /// The command that emitted the event.
    pub command_id: String,
    /// The correlation id of the command.
    pub correlation_id: String,
    /// The id of the message that caused the command.
    pub causation_id: String,
    /// The event's own id.
    pub event_id: String,
    /// The payload as stored (not upcast).
    pub payload: Json<serde_json::Value>,
    /// The hash chaining the commit to the aggregate's previous commit, if chained.
    pub commit_hash: Option<String>,
}

impl From<HistoryEvent> for AuditEvent {
    fn from(event: HistoryEvent) -> Self {
        Self {
            position: Position(event.position),
            version: event.version as u64,
            event_type: event.event_type,
            event_version: event.event_version,
            timestamp: event.timestamp,
            actor: event.actor,
            command_id: event.command_id,
            correlation_id: event.correlation_id,
            causation_id: event.causation_id,
            event_id: event.event_id.to_string(),
            payload: Json(event.payload),
            commit_hash: event.commit_hash,
        }
    }
}

/// The orders read model's view of one order as of a stream position.
#[derive(Debug, Clone, SimpleObject)]
pub struct OrderAsOfView {
    /// The position asked for.
    pub position: Position,
    /// The last commit folded into the view (at most `position`).
    pub last_applied: Position,
    /// How many commits (the order's and its payments') were folded.
    pub commits: u64,
    /// The order as the read model held it: summary, lines, timeline, shipping,
    /// cancellation, refund and address, as JSON.
    pub order: Json<serde_json::Value>,
}

/// The auditors' queries.
#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Every event of one aggregate (product, inventory by SKU, order, payment,
    /// order_saga), oldest first, after `afterVersion`, at most `first` (default 100,
    /// at most 500). Auditors and admins only; the read is recorded.
    async fn aggregate_history(
        &self,
        ctx: &Context<'_>,
        aggregate_type: String,
        aggregate_id: String,
        first: Option<i32>,
        after_version: Option<i32>,
    ) -> async_graphql::Result<Vec<AuditEvent>> {
        let principal = ctx.require(&[Role::Auditor, Role::Admin])?;
        let first = first.unwrap_or(100);
        if !(1..=MAX_HISTORY_PAGE).contains(&first) {
            return Err(ApiError::bad_input(format!(
                "first must be between 1 and {MAX_HISTORY_PAGE}"
            ))
            .into());
        }
        let after_version = usize::try_from(after_version.unwrap_or(0))
            .map_err(|_| ApiError::bad_input("afterVersion must not be negative"))?;
        audit::check_type(&aggregate_type).map_err(audit_error)?;
        let services = ctx.services();
        audit_log::record(
            &services.db,
            &Access {
                actor: &principal.actor().to_string(),
                action: "history",
                target_type: Some(&aggregate_type),
                target_id: Some(&aggregate_id),
                arguments: json!({ "first": first, "after_version": after_version }),
            },
        )
        .await
        .map_err(ApiError::from)?;
        let page = audit::history(
            &services.jetstream.client(),
            &aggregate_type,
            &aggregate_id,
            after_version,
            first as usize,
        )
        .await
        .map_err(audit_error)?;
        Ok(page.events.into_iter().map(AuditEvent::from).collect())
    }

    /// One aggregate's state as of exactly one of: a version, a position (a stream
    /// sequence, as a decimal string), or a time, rebuilt from the log. Auditors and admins only; the read is recorded.
    async fn aggregate_state(
        &self,
        ctx: &Context<'_>,
        aggregate_type: String,
        aggregate_id: String,
        version: Option<i32>,
        position: Option<String>,
        at: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<Json<serde_json::Value>> {
        let principal = ctx.require(&[Role::Auditor, Role::Admin])?;
        let arguments = json!({ "version": version, "position": position, "at": at });
        let bound = match (version, position, at) {
            (Some(version), None, None) => Bound::Version(
                usize::try_from(version)
                    .map_err(|_| ApiError::bad_input("version must not be negative"))?,
            ),
            (None, Some(position), None) => Bound::Position(
                position
                    .parse()
                    .map_err(|_| ApiError::bad_input("position is not a stream sequence"))?,
            ),
            (None, None, Some(at)) => Bound::At(at),
            _ => {
                return Err(ApiError::bad_input("give exactly one of version, position, at").into())
            }
        };
        audit::check_type(&aggregate_type).map_err(audit_error)?;
        let services = ctx.services();
        audit_log::record(
            &services.db,
            &Access {
                actor: &principal.actor().to_string(),
                action: "state",
                target_type: Some(&aggregate_type),
                target_id: Some(&aggregate_id),
                arguments,
            },
        )
        .await
        .map_err(ApiError::from)?;
        let state = audit::state_at(
            &services.jetstream.client(),
            &aggregate_type,
            &aggregate_id,
            bound,
        )
        .await
        .map_err(audit_error)?;
        Ok(Json(state.state))
    }

    /// The orders read model's view of one order as of a stream position (a decimal
    /// string): what `order(id)` answered when the log ended there, rebuilt from the log
    /// in a scratch copy that is thrown away. Auditors and admins only; the read is
    /// recorded.
    async fn order_as_of(
        &self,
        ctx: &Context<'_>,
        id: ID,
        position: String,
    ) -> async_graphql::Result<OrderAsOfView> {
        let principal = ctx.require(&[Role::Auditor, Role::Admin])?;
        let order_id = OrderId::from_global(&id)?;
        let position: u64 = position
            .parse()
            .map_err(|_| ApiError::bad_input("position is not a stream sequence"))?;
        let services = ctx.services();
        audit_log::record(
            &services.db,
            &Access {
                actor: &principal.actor().to_string(),
                action: "order_as_of",
                target_type: Some("order"),
                target_id: Some(&order_id.to_string()),
                arguments: json!({ "position": position }),
            },
        )
        .await
        .map_err(ApiError::from)?;
        let view = order_as_of(&services.db, &services.jetstream, order_id, position)
            .await
            .map_err(|error| match error {
                AsOfError::PositionPastEnd { .. } | AsOfError::NotYetPlaced { .. } => {
                    ApiError::bad_input(error.to_string())
                }
                AsOfError::NotFound(_) => ApiError::NotFound("order"),
                other => ApiError::internal(infra_nats::ErrorChain(&other)),
            })?;
        Ok(OrderAsOfView {
            position: Position(view.position),
            last_applied: Position(view.last_applied),
            commits: view.commits as u64,
            order: Json(serde_json::to_value(&view.order).map_err(ApiError::internal)?),
        })
    }
}

fn audit_error(error: AuditError) -> ApiError {
    match error {
        AuditError::UnknownType(_)
        | AuditError::BeforeFirstEvent(_)
        | AuditError::VersionPastEnd { .. } => ApiError::bad_input(error.to_string()),
        AuditError::NotFound { .. } => ApiError::NotFound("aggregate"),
        AuditError::Store(error) => ApiError::store(error),
    }
}
