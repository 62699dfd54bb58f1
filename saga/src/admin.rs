//! What operators do to sagas: look at one (its state and every event it recorded), and
//! resume, retry or force-compensate it, always with a reason. The operator CLI and the
//! admin GraphQL API call these; listing sagas by state reads the `sagas` read model.

use domain::saga::{OperatorAction, OrderSaga, Owner, Phase, SagaCommand, SagaEvent};
use domain::{Actor, CommandMetadata, OrderId};
use infra_nats::{BoxError, CommandError, RecordedCommit};
use serde::Serialize;
use uuid::Uuid;

use crate::driver::{DriveError, DriveOutcome, SagaDriver};
use crate::parking;

/// One saga as operators and auditors see it.
#[derive(Debug, Clone, Serialize)]
pub struct SagaView {
    /// The saga's folded state.
    pub saga: OrderSaga,
    /// Every commit the saga recorded, oldest first.
    pub history: Vec<SagaHistoryEntry>,
}

/// One recorded saga event with its metadata.
#[derive(Debug, Clone, Serialize)]
pub struct SagaHistoryEntry {
    /// The commit's global position.
    pub position: u64,
    /// The event's version within the saga.
    pub version: usize,
    /// When it was recorded.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Who caused it (`system:saga` or an operator).
    pub actor: String,
    /// The event.
    pub event: SagaEvent,
}

/// Why an operator action was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No saga for this order.
    #[error("no saga for order {0}")]
    NotFound(OrderId),
    /// The saga refused the action in its phase, or the reason is blank.
    #[error("{0}")]
    Refused(String),
    /// The log or the database failed.
    #[error("{0}")]
    Unavailable(#[source] BoxError),
}

impl From<DriveError> for AdminError {
    fn from(error: DriveError) -> Self {
        match error {
            DriveError::Refused(reason) => AdminError::Refused(reason),
            DriveError::Store(cause) => AdminError::Unavailable(cause),
            error @ DriveError::Park(_) => AdminError::Unavailable(Box::new(error)),
        }
    }
}

/// The saga of `order_id` with its full history; the card token is withheld.
///
/// # Errors
/// [`AdminError::NotFound`], or the log failing.
pub async fn show(driver: &SagaDriver, order_id: OrderId) -> Result<SagaView, AdminError> {
    let store = driver.buses().sagas.store();
    let commits = store
        .history(&order_id.to_string())
        .await
        .map_err(|e| AdminError::Unavailable(Box::new(e)))?;
    if commits.is_empty() {
        return Err(AdminError::NotFound(order_id));
    }
    let mut saga = OrderSaga::default();
    let mut history = Vec::new();
    for commit in &commits {
        history.extend(entries(commit)?);
    }
    for entry in &history {
        cqrs_es::Aggregate::apply(&mut saga, entry.event.clone());
    }
    Ok(SagaView { saga, history })
}

fn entries(commit: &RecordedCommit) -> Result<Vec<SagaHistoryEntry>, AdminError> {
    let envelopes = commit
        .into_event_envelopes::<OrderSaga>(&domain::saga::upcasters())
        .map_err(|e| AdminError::Unavailable(Box::new(e)))?;
    Ok(envelopes
        .into_iter()
        .map(|envelope| SagaHistoryEntry {
            position: commit.position,
            version: envelope.sequence,
            at: commit.envelope.timestamp,
            actor: commit.envelope.actor.clone(),
            event: envelope.payload.without_card_token(),
        })
        .collect())
}

/// Takes over a running saga whose driver seems gone, and drives it to rest.
///
/// # Errors
/// [`AdminError`]: not found, refused in this phase, or the log failing.
pub async fn resume(
    driver: &SagaDriver,
    order_id: OrderId,
    actor: &Actor,
    reason: &str,
) -> Result<DriveOutcome, AdminError> {
    intervene(driver, order_id, OperatorAction::Resume, actor, reason).await
}

/// Runs a failed compensation again.
///
/// # Errors
/// [`AdminError`]: not found, refused in this phase, or the log failing.
pub async fn retry(
    driver: &SagaDriver,
    order_id: OrderId,
    actor: &Actor,
    reason: &str,
) -> Result<DriveOutcome, AdminError> {
    intervene(driver, order_id, OperatorAction::Retry, actor, reason).await
}

/// Abandons the order: compensates whatever the saga did.
///
/// # Errors
/// [`AdminError`]: not found, refused in this phase, or the log failing.
pub async fn compensate(
    driver: &SagaDriver,
    order_id: OrderId,
    actor: &Actor,
    reason: &str,
) -> Result<DriveOutcome, AdminError> {
    intervene(driver, order_id, OperatorAction::Compensate, actor, reason).await
}

async fn intervene(
    driver: &SagaDriver,
    order_id: OrderId,
    action: OperatorAction,
    actor: &Actor,
    reason: &str,
) -> Result<DriveOutcome, AdminError> {
    let actor_name = actor.to_string();
    let metadata = CommandMetadata {
        // Each operator action is a new decision, not a retry of an earlier one.
        command_id: Uuid::new_v4(),
        correlation_id: order_id.as_uuid(),
        causation_id: Uuid::new_v4(),
        actor: actor.clone(),
    };
    let command = SagaCommand::Intervene {
        action,
        actor: actor_name.clone(),
        reason: reason.to_owned(),
    };
    match driver
        .buses()
        .sagas
        .execute(&order_id.to_string(), command, &metadata)
        .await
    {
        Ok(_) => {}
        Err(CommandError::Rejected(domain::saga::SagaError::NotStarted)) => {
            return Err(AdminError::NotFound(order_id))
        }
        Err(CommandError::Rejected(error)) => return Err(AdminError::Refused(error.to_string())),
        Err(error) => return Err(AdminError::Unavailable(Box::new(error))),
    }
    let outcome = driver
        .drive(order_id, &Owner::Operator(actor_name.clone()))
        .await?;
    if let DriveOutcome::Rested(phase) = &outcome {
        let saga = driver.load(order_id).await?;
        if !matches!(saga.phase(), Some(Phase::CompensationFailed { .. })) {
            parking::resolve(
                driver.db(),
                &order_id.to_string(),
                action.as_str(),
                &actor_name,
                reason,
                &format!("saga {phase}"),
            )
            .await
            .map_err(|e| AdminError::Unavailable(Box::new(e)))?;
        }
    }
    Ok(outcome)
}
