//! Read-your-writes: where each read model is, and a bounded wait until it has passed a
//! position a mutation returned.
//!
//! Projectors announce every new position on a PostgreSQL channel when the transaction
//! that reached it commits (`projections::status::POSITIONS_CHANNEL`); one listener per
//! API process keeps the latest position of each read model in a `watch` channel, and
//! waiters wake on it. A poll of `projector_positions` every half second covers
//! notifications lost while the listener reconnects, and rebuilds that switch schemas.
//!
//! A read model only moves past positions of the aggregate types it projects: the
//! catalog never sees an order commit. So the wait first asks the log which aggregate
//! type was written at the position; a read model that does not project that type cannot
//! show the write, and does not wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::graphql::error::ApiError;

/// How often positions are read from the table, beside the notifications.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Remembered aggregate types of positions, before the memo is cleared.
const MEMO_CAPACITY: usize = 10_000;

/// A read model the API serves, by its projector's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadModel {
    /// Products, variants, stock per SKU.
    Catalog,
    /// Stock levels and movements.
    Inventory,
    /// Orders, lines, timelines.
    Orders,
    /// Payments and their operations.
    Payments,
    /// Sales analytics.
    Sales,
}

impl ReadModel {
    /// The projector's name.
    pub fn name(self) -> &'static str {
        match self {
            ReadModel::Catalog => "catalog",
            ReadModel::Inventory => "inventory",
            ReadModel::Orders => "orders",
            ReadModel::Payments => "payments",
            ReadModel::Sales => "sales",
        }
    }
}

/// Where the read models are; cheap to clone.
#[derive(Clone)]
pub struct ReadModelPositions {
    positions: watch::Receiver<HashMap<String, u64>>,
    jetstream: jetstream::Context,
    projected_types: Arc<HashMap<&'static str, &'static [&'static str]>>,
    type_memo: Arc<Mutex<HashMap<u64, Option<String>>>>,
    timeout: Duration,
}

impl ReadModelPositions {
    /// Reads the positions and starts following them; waits give up after `timeout`.
    ///
    /// # Errors
    /// When PostgreSQL cannot be read or listened to.
    pub async fn start(
        pool: PgPool,
        jetstream: jetstream::Context,
        timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        let (sender, receiver) = watch::channel(read_positions(&pool).await?);
        let mut listener = PgListener::connect_with(&pool).await?;
        listener
            .listen(projections::status::POSITIONS_CHANNEL)
            .await?;
        tokio::spawn(follow(pool, listener, sender));
        let projected_types = projections::registry::all()
            .iter()
            .map(|projection| (projection.name(), projection.aggregate_types()))
            .collect();
        Ok(Self {
            positions: receiver,
            jetstream,
            projected_types: Arc::new(projected_types),
            type_memo: Arc::new(Mutex::new(HashMap::new())),
            timeout,
        })
    }

    /// The position `read_model` has applied, 0 before its first commit.
    pub fn position(&self, read_model: ReadModel) -> u64 {
        self.positions
            .borrow()
            .get(read_model.name())
            .copied()
            .unwrap_or(0)
    }

    /// Waits, at most the configured timeout, until `read_model` shows the write at
    /// `position`; returns at once when it cannot show it (another aggregate type).
    ///
    /// # Errors
    /// [`ApiError::BadUserInput`] for a position past the end of the log,
    /// [`ApiError::ReadModelBehind`] when the wait runs out, [`ApiError::Internal`] when
    /// NATS cannot be asked.
    pub async fn wait_for(&self, read_model: ReadModel, position: u64) -> Result<(), ApiError> {
        if self.position(read_model) >= position {
            return Ok(());
        }
        let Some(aggregate_type) = self.aggregate_type_at(position).await? else {
            return Err(ApiError::bad_input(format!(
                "position {position} is not in the log"
            )));
        };
        let projects_it = self
            .projected_types
            .get(read_model.name())
            .is_some_and(|types| types.contains(&aggregate_type.as_str()));
        if !projects_it {
            return Ok(());
        }
        let mut positions = self.positions.clone();
        let reached = async move {
            positions
                .wait_for(|positions| {
                    positions.get(read_model.name()).copied().unwrap_or(0) >= position
                })
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(self.timeout, reached).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ApiError::internal(
                "the read-model position follower stopped",
            )),
            Err(_) => {
                metrics::counter!("shopstream_read_your_writes_timeouts_total", "read_model" => read_model.name()).increment(1);
                Err(ApiError::ReadModelBehind {
                    projection: read_model.name(),
                    position,
                })
            }
        }
    }

    async fn aggregate_type_at(&self, position: u64) -> Result<Option<String>, ApiError> {
        if let Some(known) = self.memo().get(&position) {
            return Ok(known.clone());
        }
        let found = infra_nats::aggregate_type_at(&self.jetstream, position)
            .await
            .map_err(ApiError::store)?;
        // Only a found position is settled: a missing one may be written any moment.
        if found.is_some() {
            let mut memo = self.memo();
            if memo.len() >= MEMO_CAPACITY {
                memo.clear();
            }
            memo.insert(position, found.clone());
        }
        Ok(found)
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Option<String>>> {
        // A panic while holding this lock leaves a plain map behind: still usable.
        self.type_memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn read_positions(pool: &PgPool) -> Result<HashMap<String, u64>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT projector, position FROM public.projector_positions")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(name, position)| (name, u64::try_from(position).unwrap_or(0)))
        .collect())
}

/// Applies notifications and polls until every receiver is gone.
async fn follow(
    pool: PgPool,
    mut listener: PgListener,
    sender: watch::Sender<HashMap<String, u64>>,
) {
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = sender.closed() => return,
            notification = listener.recv() => match notification {
                Ok(notification) => {
                    if let Some((name, position)) = notification.payload().rsplit_once(':') {
                        if let Ok(position) = position.parse::<u64>() {
                            advance(&sender, name, position);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        error = %infra_nats::ErrorChain(&error),
                        "listening for read-model positions; polling meanwhile"
                    );
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            },
            _ = poll.tick() => match read_positions(&pool).await {
                Ok(positions) => {
                    sender.send_if_modified(|current| {
                        let changed = *current != positions;
                        *current = positions;
                        changed
                    });
                }
                Err(error) => {
                    tracing::warn!(error = %infra_nats::ErrorChain(&error), "reading read-model positions")
                }
            },
        }
    }
}

fn advance(sender: &watch::Sender<HashMap<String, u64>>, name: &str, position: u64) {
    sender.send_if_modified(|positions| match positions.get_mut(name) {
        Some(current) if *current >= position => false,
        Some(current) => {
            *current = position;
            true
        }
        None => {
            positions.insert(name.to_owned(), position);
            true
        }
    });
}
