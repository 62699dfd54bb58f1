//! The projector role and the operator commands on projections and dead letters.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use async_nats::jetstream;
use indicatif::{ProgressBar, ProgressStyle};
use projections::dead_letters::{self, Action, DeadLetterFilter};
use projections::runtime::{rebuild, Projector, ProjectorConfig, RebuildOptions};
use projections::{registry, Projection};
use tracing::info;

use crate::{connect_database, connect_nats, Settings};

/// Runs every projector (each as the active instance or a hot standby) and the
/// notification dispatcher until `shutdown` completes.
///
/// # Errors
/// When NATS or PostgreSQL cannot be reached at start-up.
pub async fn run_projectors(
    settings: &Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let nats = connect_nats(settings).await?;
    let db = connect_database(&settings.database_url).await?;
    projections::migrate(&db)
        .await
        .context("migrating PostgreSQL")?;
    let jetstream = jetstream::new(nats.clone());
    let (stop, _) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for projection in registry::all() {
        let projector = Projector::new(
            projection,
            db.clone(),
            jetstream.clone(),
            ProjectorConfig::default(),
        );
        let mut stopped = stop.subscribe();
        tasks.spawn(projector.run(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
    }
    {
        let db = db.clone();
        let mut stopped = stop.subscribe();
        tasks.spawn(async move {
            let sender = projections::notifications::LogSender;
            projections::notifications::run_dispatcher(
                db,
                &sender,
                projections::notifications::DispatcherConfig::default(),
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )
            .await;
        });
    }
    info!(projectors = registry::all().len(), "projecting");
    shutdown.await;
    info!("stopping projectors");
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    nats.drain().await.context("draining NATS")?;
    Ok(())
}

/// A pool on a database with every migration applied (idempotent; operator commands
/// may be the first thing run against a new database).
async fn migrated_database(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    let db = connect_database(&settings.database_url).await?;
    projections::migrate(&db)
        .await
        .context("migrating PostgreSQL")?;
    Ok(db)
}

fn projection_named(name: &str) -> anyhow::Result<Arc<dyn Projection>> {
    registry::by_name(name).with_context(|| {
        let known: Vec<&str> = registry::all().iter().map(|p| p.name()).collect();
        format!("no projection named `{name}` (known: {})", known.join(", "))
    })
}

/// `shopstream projections status`.
///
/// # Errors
/// When NATS or PostgreSQL fail.
pub async fn projections_status(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let nats = connect_nats(settings).await?;
    let db = migrated_database(settings).await?;
    let jetstream = jetstream::new(nats);
    let mut statuses = Vec::new();
    for projection in registry::all() {
        statuses.push(projections::status::projector_status(&db, &jetstream, &*projection).await?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
        return Ok(());
    }
    println!(
        "{:<12} {:>8} {:>10} {:>10} {:>10} {:>9} {:>7} {:>5}",
        "PROJECTOR", "VERSION", "POSITION", "STREAM", "LAG", "LAG (s)", "PARKED", "GAPS"
    );
    for s in statuses {
        let version = match s.stored_version {
            Some(stored) if stored != s.version => format!("{stored}->{}", s.version),
            _ => s.version.to_string(),
        };
        println!(
            "{:<12} {:>8} {:>10} {:>10} {:>10} {:>9.1} {:>7} {:>5}",
            s.name,
            version,
            s.position,
            s.stream_position,
            s.lag_events,
            s.lag_seconds,
            s.parked,
            s.gaps_detected
        );
    }
    Ok(())
}

/// `shopstream projections rebuild <name>`.
///
/// # Errors
/// Unknown projection, a rebuild already running, or NATS/PostgreSQL failures; the live
/// tables are untouched on error.
pub async fn projections_rebuild(
    settings: &Settings,
    name: &str,
    force: bool,
) -> anyhow::Result<()> {
    let projection = projection_named(name)?;
    if !force
        && !confirm(&format!(
        "Rebuild `{name}` from the start of the log beside the live tables, then switch? [y/N] "
    ))? {
        bail!("not confirmed; nothing changed (pass -f to skip the question)");
    }
    let nats = connect_nats(settings).await?;
    let db = connect_database(&settings.database_url).await?;
    projections::migrate(&db)
        .await
        .context("migrating PostgreSQL")?;
    let jetstream = jetstream::new(nats);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} commits ({per_sec}, {eta} left)",
        )
        .context("progress template")?,
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let report = rebuild(
        projection,
        &db,
        &jetstream,
        &RebuildOptions::default(),
        |p| {
            bar.set_length(p.commits + p.remaining);
            bar.set_position(p.commits);
        },
    )
    .await?;
    bar.finish_and_clear();
    println!(
        "rebuilt `{}`: {} commits ({} parked) in {:.1} s; live from position {}",
        report.projection,
        report.commits,
        report.parked,
        report.elapsed.as_secs_f64(),
        report.position
    );
    Ok(())
}

/// `shopstream dlq list`.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn dlq_list(
    settings: &Settings,
    consumer: Option<String>,
    grouped: bool,
    json: bool,
) -> anyhow::Result<()> {
    let db = migrated_database(settings).await?;
    if grouped {
        let groups = dead_letters::groups(&db).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&groups)?);
        } else {
            println!(
                "{:<12} {:>6} {:>10} {:<26} ERROR",
                "CONSUMER", "COUNT", "AGGREGATES", "OLDEST"
            );
            for g in groups {
                println!(
                    "{:<12} {:>6} {:>10} {:<26} {}",
                    g.consumer,
                    g.count,
                    g.aggregates,
                    g.oldest.to_rfc3339(),
                    g.example_error
                );
            }
        }
        return Ok(());
    }
    let filter = DeadLetterFilter {
        consumer,
        ..DeadLetterFilter::default()
    };
    let entries = dead_letters::list(&db, &filter, 1000).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    println!(
        "{:<36} {:<10} {:>9} {:<30} {:>8} ERROR",
        "ID", "CONSUMER", "POSITION", "AGGREGATE", "ATTEMPTS"
    );
    for d in entries {
        println!(
            "{:<36} {:<10} {:>9} {:<30} {:>8} {}",
            d.id,
            d.consumer,
            d.position,
            format!("{}/{}", d.aggregate_type, d.aggregate_id),
            d.attempts,
            d.error
        );
    }
    Ok(())
}

/// `shopstream dlq retry|skip|discard <id>`: acts on the parked sequence holding `id`.
///
/// # Errors
/// Unknown id, missing reason, nothing parked, or PostgreSQL failures; nothing changes.
pub async fn dlq_act(
    settings: &Settings,
    id: uuid::Uuid,
    action: Action,
    actor: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let db = migrated_database(settings).await?;
    let sequence = dead_letters::sequence_of(&db, id).await?;
    let projection = projection_named(&sequence.consumer)?;
    let outcome = dead_letters::act(&db, &projection, &sequence, action, actor, reason).await?;
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    if outcome.error.is_some() {
        bail!("the head of the sequence still fails; it stays parked");
    }
    Ok(())
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    print!("{question}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
