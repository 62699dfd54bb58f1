//! Gauges read periodically from JetStream and PostgreSQL rather than counted on the hot
//! path: consumer lag (projectors and the saga), dead-letter depth and oldest age, sagas
//! per phase, the stream's last position.
//!
//! One pass costs a stream info, a consumer info and a direct get per consumer, and three
//! small queries; the `project` role runs it every [`SAMPLE_EVERY`]. With several
//! replicas each reports the same values: aggregate with `max by (...)`.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::order::Order;
use projections::registry;
use projections::status::projector_status;
use saga::trigger::CONSUMER as SAGA_CONSUMER;
use sqlx::PgPool;

/// How often the gauges are refreshed.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// Samples every [`SAMPLE_EVERY`] (the first pass at once) until `shutdown` completes.
pub async fn run(
    db: PgPool,
    jetstream: jetstream::Context,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        if let Err(error) = sample(&db, &jetstream).await {
            tracing::warn!(
                error = %infra_nats::ErrorChain(error.as_ref()),
                "sampling lag and dead letters failed; trying again later"
            );
        }
    }
}

/// One pass over every gauge.
///
/// # Errors
/// When JetStream or PostgreSQL fails; gauges sampled before the failure keep their
/// new values.
pub async fn sample(db: &PgPool, jetstream: &jetstream::Context) -> anyhow::Result<()> {
    let mut consumers = Vec::new();
    for projection in registry::all() {
        let status = projector_status(db, jetstream, &*projection).await?;
        set_lag(projection.name(), status.lag_events, status.lag_seconds);
        metrics::gauge!("shopstream_stream_last_position").set(status.stream_position as f64);
        consumers.push(projection.name().to_owned());
    }
    let (lag_events, lag_seconds) = saga_lag(jetstream).await?;
    set_lag(SAGA_CONSUMER, lag_events, lag_seconds);
    consumers.push(SAGA_CONSUMER.to_owned());
    dead_letters(db, consumers).await?;
    for (phase, count) in projections::sagas::counts(db).await? {
        metrics::gauge!("shopstream_sagas", "phase" => phase).set(count as f64);
    }
    Ok(())
}

fn set_lag(consumer: &str, events: u64, seconds: f64) {
    let consumer = consumer.to_owned();
    metrics::gauge!("shopstream_consumer_lag_events", "consumer" => consumer.clone())
        .set(events as f64);
    metrics::gauge!("shopstream_consumer_lag_seconds", "consumer" => consumer).set(seconds);
}

/// The saga consumer's unfinished order commits (not delivered, or delivered and not
/// acknowledged: sagas being driven) and the age of the oldest of them.
async fn saga_lag(jetstream: &jetstream::Context) -> anyhow::Result<(u64, f64)> {
    let backlog = infra_nats::consumer_backlog(jetstream, SAGA_CONSUMER, Order::TYPE).await?;
    Ok((backlog.commits, backlog.oldest.map_or(0.0, age_seconds)))
}

/// Parked commits per consumer and the oldest's age; consumers with none report 0.
async fn dead_letters(db: &PgPool, consumers: Vec<String>) -> anyhow::Result<()> {
    let rows: Vec<(String, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT consumer, count(*), min(parked_at) FROM public.dead_letters
          WHERE status = 'parked' GROUP BY consumer",
    )
    .fetch_all(db)
    .await?;
    let mut depth: HashMap<String, (i64, f64)> = consumers
        .into_iter()
        .map(|consumer| (consumer, (0, 0.0)))
        .collect();
    for (consumer, count, oldest) in rows {
        depth.insert(consumer, (count, age_seconds(oldest)));
    }
    for (consumer, (count, age)) in depth {
        metrics::gauge!("shopstream_dead_letters", "consumer" => consumer.clone())
            .set(count as f64);
        metrics::gauge!("shopstream_dead_letters_oldest_age_seconds", "consumer" => consumer)
            .set(age);
    }
    Ok(())
}

fn age_seconds(since: DateTime<Utc>) -> f64 {
    (Utc::now() - since).num_milliseconds().max(0) as f64 / 1000.0
}
