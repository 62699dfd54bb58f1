//! Where each projector is: position, lag and parked commits.

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use infra_nats::subjects::EVENTS_STREAM;
use serde::Serialize;
use sqlx::PgPool;

use crate::projection::Projection;
use crate::runtime::sink_conversions::to_u64;
use crate::runtime::Projector;

/// The PostgreSQL `NOTIFY` channel on which projectors announce each new position, as
/// `<projector>:<position>`, when the transaction that reached it commits.
pub const POSITIONS_CHANNEL: &str = "projector_positions";

/// One projector's progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectorStatus {
    pub name: String,
    /// The code version, and the one that built the live tables.
    pub version: i32,
    pub stored_version: Option<i32>,
    /// The last stream position applied (0 before the first).
    pub position: u64,
    /// The stream's last position.
    pub stream_position: u64,
    /// Commits of the projector's aggregate types not yet applied.
    pub lag_events: u64,
    /// How far behind the log the read model is in time (0 when caught up).
    pub lag_seconds: f64,
    pub parked: i64,
    pub gaps_detected: i64,
    pub last_event_at: Option<DateTime<Utc>>,
}

/// Why a status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error("NATS: {0}")]
    Nats(#[source] infra_nats::BoxError),
}

/// The status of `projection`.
///
/// Lag in events comes from the durable consumer (pending plus unacknowledged, which
/// counts only the projector's own aggregate types); when the consumer does not exist
/// (the projector never ran), from the stream's last position.
///
/// # Errors
/// See [`StatusError`].
pub async fn projector_status(
    pool: &PgPool,
    jetstream: &jetstream::Context,
    projection: &dyn Projection,
) -> Result<ProjectorStatus, StatusError> {
    let row: Option<(i64, i32, Option<DateTime<Utc>>, i64)> = sqlx::query_as(
        "SELECT position, version, last_event_at, gaps_detected
           FROM public.projector_positions WHERE projector = $1",
    )
    .bind(projection.name())
    .fetch_optional(pool)
    .await?;
    let parked = crate::dead_letters::parked_count(pool, projection.name()).await?;
    let mut stream = jetstream
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| StatusError::Nats(Box::new(e)))?;
    let state = stream
        .info()
        .await
        .map_err(|e| StatusError::Nats(Box::new(e)))?
        .state
        .clone();
    let position = row.as_ref().map_or(0, |r| to_u64(r.0));
    let last_event_at = row.as_ref().and_then(|r| r.2);
    let lag_events = match stream
        .consumer_info(Projector::consumer_name(projection))
        .await
    {
        Ok(info) => {
            // The consumer starts at the stored position, so what it has not delivered
            // or not had acknowledged is what the read model lacks (acks follow commits).
            info.num_pending + u64::try_from(info.num_ack_pending).unwrap_or(0)
        }
        Err(_) => state.last_sequence.saturating_sub(position),
    };
    let lag_seconds = match (lag_events, last_event_at) {
        (0, _) => 0.0,
        (_, Some(applied)) => {
            let newest = state.last_timestamp;
            (newest - applied).num_milliseconds().max(0) as f64 / 1000.0
        }
        (_, None) => {
            (Utc::now() - state.first_timestamp)
                .num_milliseconds()
                .max(0) as f64
                / 1000.0
        }
    };
    Ok(ProjectorStatus {
        name: projection.name().to_owned(),
        version: projection.version(),
        stored_version: row.as_ref().map(|r| r.1),
        position,
        stream_position: state.last_sequence,
        lag_events,
        lag_seconds,
        parked,
        gaps_detected: row.map_or(0, |r| r.3),
        last_event_at,
    })
}
