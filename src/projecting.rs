//! The projector role (`shopstream project`) and the operator commands on projections
//! (`shopstream projections`) and dead letters (`shopstream dlq`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use application::operations::{act_on_dead_letter, DeadLetterAct};
use application::AppError;
use async_nats::jetstream;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use projections::dead_letters::{
    self, Action, DeadLetterError, DeadLetterFilter, SequenceSelector,
};
use projections::runtime::{rebuild, verify, Projector, ProjectorConfig, RebuildOptions};
use projections::{registry, Projection};
use serde_json::json;
use tracing::info;

use crate::cli::{actor, CliCommand, SUCCESS};
use crate::cli_auth::{Caller, Gate};
use crate::health::HealthSettings;
use crate::{connect_database, connect_nats, Connections, Settings};

/// The exit code of `projections verify` when rows differ (as `diff` has).
pub const DIFFERENCES_FOUND: i32 = 2;

/// `shopstream project`: the projector role.
#[derive(Debug, Args)]
pub struct ProjectCommand {
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub health: HealthSettings,
}

impl CliCommand for ProjectCommand {
    fn settings(&self) -> Option<&Settings> {
        Some(&self.settings)
    }

    fn role(&self) -> &'static str {
        "projector"
    }

    /// Builds the [`ProjectRole`] (it connects on its own) and projects until signalled.
    async fn run(self, _: &Connections, _: Option<&Caller>) -> anyhow::Result<i32> {
        let _health = crate::health::serve(&self.health).await?;
        let role = ProjectRole::build(&self.settings).await?;
        crate::run_until_signalled(self.settings.shutdown_timeout(), |stopping| {
            role.run_until_stopped(stopping)
        })
        .await?;
        Ok(SUCCESS)
    }
}

/// `shopstream projections ...`.
#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Position, lag (events and seconds), parked commits and gaps of every projector.
    Status {
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Rebuild a read model from the start of the log beside the live one, then switch.
    Rebuild {
        /// The projection (catalog, inventory, orders, payments, sales, notifier).
        name: String,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Recompute a read model from the log beside the live one and report every row
    /// that differs (exit code 2 when any does).
    Verify {
        /// The projection (catalog, inventory, orders, payments, sagas, sales, notifier).
        name: String,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
}

impl CliCommand for ProjectionsCommand {
    fn settings(&self) -> Option<&Settings> {
        match self {
            ProjectionsCommand::Status { settings, .. }
            | ProjectionsCommand::Rebuild { settings, .. }
            | ProjectionsCommand::Verify { settings, .. } => Some(settings),
        }
    }

    fn gate(&self) -> Option<Gate> {
        Some(match self {
            ProjectionsCommand::Status { .. } => Gate::operator("projections status", json!({})),
            ProjectionsCommand::Rebuild { name, force, .. } => Gate::operator(
                "projections rebuild",
                json!({ "name": name, "force": force }),
            ),
            ProjectionsCommand::Verify { name, .. } => {
                Gate::operator("projections verify", json!({ "name": name }))
            }
        })
    }

    async fn run(self, conns: &Connections, _: Option<&Caller>) -> anyhow::Result<i32> {
        match self {
            ProjectionsCommand::Status { json, .. } => projections_status(conns, json).await?,
            ProjectionsCommand::Rebuild { name, force, .. } => {
                projections_rebuild(conns, &name, force).await?;
            }
            ProjectionsCommand::Verify { name, json, .. } => {
                if !projections_verify(conns, &name, json).await? {
                    return Ok(DIFFERENCES_FOUND);
                }
            }
        }
        Ok(SUCCESS)
    }
}

/// `shopstream dlq ...`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Parked commits, oldest first, or grouped by error.
    List {
        /// Only this consumer.
        #[arg(long)]
        consumer: Option<String>,
        /// Only this aggregate type, or one aggregate as `type:id`.
        #[arg(long)]
        aggregate: Option<String>,
        /// Only entries whose error contains this text.
        #[arg(long)]
        error: Option<String>,
        /// Group by error fingerprint with counts, consumers and oldest age.
        #[arg(long)]
        group: bool,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// One entry: its decoded commit, error, attempts, failure times and the parked
    /// commits of its aggregate behind it.
    Show {
        /// A dead-letter id (from `dlq list`).
        id: uuid::Uuid,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Every operator action on the queue, newest first.
    History {
        /// Only this consumer.
        #[arg(long)]
        consumer: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Apply the parked sequence holding <ID> (or every selected one) in order; stops
    /// at the first failure.
    Retry(DlqAction),
    /// Mark the head of the sequence holding <ID> (or of every selected one) as not
    /// applied, then retry the rest.
    Skip(DlqAction),
    /// Mark the whole sequence holding <ID> (or every selected one) as not applied.
    Discard(DlqAction),
}

/// The arguments of `dlq retry|skip|discard`: one sequence by id, or a selection.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("bulk").args(["all", "group"]).multiple(false))]
pub struct DlqAction {
    /// A dead-letter id (from `dlq list`).
    #[arg(required_unless_present_any = ["all", "group"], conflicts_with_all = ["all", "group"])]
    pub id: Option<uuid::Uuid>,
    /// Every parked sequence (of `--consumer`, if given).
    #[arg(long, conflicts_with = "group")]
    pub all: bool,
    /// Every parked sequence whose head failed with this error fingerprint.
    #[arg(long, value_name = "FINGERPRINT")]
    pub group: Option<String>,
    /// With --all or --group: only this consumer's sequences.
    #[arg(long, requires = "bulk")]
    pub consumer: Option<String>,
    /// With --all or --group: print what would be done and change nothing.
    #[arg(long, requires = "bulk")]
    pub dry_run: bool,
    /// With --all or --group: do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// Sequences read per page.
    #[arg(long, default_value_t = 100)]
    pub chunk: u32,
    /// At most this many sequences per second (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Why; recorded with the action and the signed-in caller.
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub settings: Settings,
}

impl DlqAction {
    /// The arguments as recorded with a refusal.
    fn to_json(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "all": self.all,
            "group": self.group,
            "consumer": self.consumer,
            "dry_run": self.dry_run,
            "force": self.force,
            "reason": self.reason,
        })
    }

    /// Acts on the one sequence holding `id`, or on every selected one.
    async fn act(self, conns: &Connections, kind: Action, actor: &str) -> anyhow::Result<()> {
        if let Some(id) = self.id {
            return dlq_act(conns, id, kind, actor, &self.reason).await;
        }
        let bulk = BulkAction {
            selector: SequenceSelector {
                consumer: self.consumer,
                fingerprint: self.group,
            },
            action: kind,
            actor: actor.to_owned(),
            reason: self.reason,
            force: self.force,
            dry_run: self.dry_run,
            chunk: self.chunk,
            rate: self.rate,
        };
        dlq_bulk(conns, bulk).await
    }
}

impl CliCommand for DlqCommand {
    fn settings(&self) -> Option<&Settings> {
        match self {
            DlqCommand::List { settings, .. }
            | DlqCommand::Show { settings, .. }
            | DlqCommand::History { settings, .. }
            | DlqCommand::Retry(DlqAction { settings, .. })
            | DlqCommand::Skip(DlqAction { settings, .. })
            | DlqCommand::Discard(DlqAction { settings, .. }) => Some(settings),
        }
    }

    fn gate(&self) -> Option<Gate> {
        Some(match self {
            DlqCommand::List {
                consumer,
                aggregate,
                error,
                group,
                ..
            } => Gate::operator(
                "dlq list",
                json!({ "consumer": consumer, "aggregate": aggregate, "error": error, "group": group }),
            ),
            DlqCommand::Show { id, .. } => Gate::operator("dlq show", json!({ "id": id })),
            DlqCommand::History {
                consumer, limit, ..
            } => Gate::operator(
                "dlq history",
                json!({ "consumer": consumer, "limit": limit }),
            ),
            DlqCommand::Retry(a) => Gate::operator("dlq retry", a.to_json()),
            DlqCommand::Skip(a) => Gate::operator("dlq skip", a.to_json()),
            DlqCommand::Discard(a) => Gate::operator("dlq discard", a.to_json()),
        })
    }

    async fn run(self, conns: &Connections, caller: Option<&Caller>) -> anyhow::Result<i32> {
        match self {
            DlqCommand::List {
                consumer,
                aggregate,
                error,
                group,
                json,
                ..
            } => {
                let (aggregate_type, aggregate_id) =
                    aggregate.as_deref().map(parse_aggregate).unzip();
                let filter = DeadLetterFilter {
                    consumer,
                    aggregate_type,
                    aggregate_id: aggregate_id.flatten(),
                    error_contains: error,
                    ..DeadLetterFilter::default()
                };
                dlq_list(conns, filter, group, json).await?;
            }
            DlqCommand::Show { id, json, .. } => dlq_show(conns, id, json).await?,
            DlqCommand::History {
                consumer,
                limit,
                json,
                ..
            } => dlq_history(conns, consumer.as_deref(), limit, json).await?,
            DlqCommand::Retry(a) => a.act(conns, Action::Retry, actor(caller)?).await?,
            DlqCommand::Skip(a) => a.act(conns, Action::Skip, actor(caller)?).await?,
            DlqCommand::Discard(a) => a.act(conns, Action::Discard, actor(caller)?).await?,
        }
        Ok(SUCCESS)
    }
}

/// The projector role, built (connected and migrated) and not yet running: every
/// projector (each as the active instance or a hot standby) and the notification
/// dispatcher.
pub struct ProjectRole {
    nats: async_nats::Client,
    db: sqlx::PgPool,
}

impl ProjectRole {
    /// Connects to NATS and PostgreSQL and migrates the read models.
    ///
    /// # Errors
    /// When NATS or PostgreSQL cannot be reached, or a migration fails.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        // Installed before anything records, so every metric reaches `/metrics`.
        let _ = crate::telemetry::metrics::install();
        let nats = connect_nats(settings).await?;
        let db = connect_database(&settings.database_url).await?;
        projections::migrate(&db)
            .await
            .context("migrating PostgreSQL")?;
        Ok(Self { nats, db })
    }

    /// Projects until `shutdown` completes, then lets every projector finish its batch
    /// and drains NATS.
    ///
    /// # Errors
    /// When draining NATS fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self { nats, db } = self;
        let jetstream = jetstream::new(nats.clone());
        let (stop, _) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        {
            // Lag, dead letters and saga phases as gauges (every projector replica samples).
            let (db, jetstream) = (db.clone(), jetstream.clone());
            let mut stopped = stop.subscribe();
            tasks.spawn(crate::telemetry::sampler::run(db, jetstream, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }));
        }
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
}

/// Runs the projector role until `shutdown` completes.
///
/// # Errors
/// When NATS or PostgreSQL cannot be reached at start-up.
pub async fn run_projectors(
    settings: &Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    ProjectRole::build(settings)
        .await?
        .run_until_stopped(shutdown)
        .await
}

pub(crate) fn projection_named(name: &str) -> anyhow::Result<Arc<dyn Projection>> {
    registry::by_name(name).with_context(|| {
        let known: Vec<&str> = registry::all().iter().map(|p| p.name()).collect();
        format!("no projection named `{name}` (known: {})", known.join(", "))
    })
}

/// `shopstream projections status`.
///
/// # Errors
/// When NATS or PostgreSQL fail.
pub async fn projections_status(conns: &Connections, json: bool) -> anyhow::Result<()> {
    let nats = conns.nats().await?;
    let db = conns.db().await?;
    let jetstream = jetstream::new(nats.clone());
    let mut statuses = Vec::new();
    for projection in registry::all() {
        statuses.push(projections::status::projector_status(db, &jetstream, &*projection).await?);
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
    conns: &Connections,
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
    let nats = conns.nats().await?;
    let db = conns.db().await?;
    let jetstream = jetstream::new(nats.clone());
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
        db,
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

/// Splits `--aggregate` (`type` or `type:id`) into its parts.
#[must_use]
pub fn parse_aggregate(aggregate: &str) -> (String, Option<String>) {
    match aggregate.split_once(':') {
        Some((kind, id)) => (kind.to_owned(), Some(id.to_owned())),
        None => (aggregate.to_owned(), None),
    }
}

/// `shopstream dlq list`.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn dlq_list(
    conns: &Connections,
    filter: DeadLetterFilter,
    grouped: bool,
    json: bool,
) -> anyhow::Result<()> {
    let db = conns.db().await?;
    if grouped {
        let groups = dead_letters::groups(db).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&groups)?);
        } else {
            println!(
                "{:<16} {:>9} {:>7} {:<20} {:>10} ERROR",
                "FINGERPRINT", "SEQUENCES", "COMMITS", "CONSUMERS", "OLDEST"
            );
            for g in groups {
                println!(
                    "{:<16} {:>9} {:>7} {:<20} {:>10} {}",
                    g.error_fingerprint,
                    g.sequences,
                    g.commits,
                    g.consumers.join(","),
                    age(g.oldest),
                    g.example_error
                );
            }
        }
        return Ok(());
    }
    let entries = dead_letters::list(db, &filter, 1000).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    println!(
        "{:<36} {:<10} {:>9} {:<30} {:>8} {:<16} ERROR",
        "ID", "CONSUMER", "POSITION", "AGGREGATE", "ATTEMPTS", "FINGERPRINT"
    );
    for d in entries {
        println!(
            "{:<36} {:<10} {:>9} {:<30} {:>8} {:<16} {}",
            d.id,
            d.consumer,
            d.position,
            format!("{}/{}", d.aggregate_type, d.aggregate_id),
            d.attempts,
            d.error_fingerprint,
            d.error
        );
    }
    Ok(())
}

/// How long ago `at` was, rounded for people (`42s`, `17m`, `5h`, `3d`).
fn age(at: chrono::DateTime<chrono::Utc>) -> String {
    let seconds = (chrono::Utc::now() - at).num_seconds().max(0);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86_400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// `shopstream dlq show <id>`: the entry, its decoded commit and what waits behind it.
///
/// # Errors
/// Unknown id, or PostgreSQL failures.
pub async fn dlq_show(conns: &Connections, id: uuid::Uuid, json: bool) -> anyhow::Result<()> {
    let detail = dead_letters::detail(conns.db().await?, id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
        return Ok(());
    }
    let d = &detail.entry;
    println!("id           {}", d.id);
    println!("consumer     {}", d.consumer);
    println!("position     {}", d.position);
    println!("aggregate    {}/{}", d.aggregate_type, d.aggregate_id);
    println!("status       {}", d.status);
    match d.blocked_by {
        Some(head) => println!("blocked by   position {head}"),
        None => println!("blocked by   - (the head of its sequence)"),
    }
    println!("error        {}", d.error);
    println!("fingerprint  {}", d.error_fingerprint);
    println!("attempts     {}", d.attempts);
    println!("mode         {}", d.mode);
    println!("first failed {}", detail.first_failure_at.to_rfc3339());
    println!("last failed  {}", detail.last_failure_at.to_rfc3339());
    if let Some(resolved) = d.resolved_at {
        println!("resolved     {}", resolved.to_rfc3339());
    }
    match (&detail.commit, &detail.decode_error) {
        (Some(commit), _) => println!("commit\n{}", serde_json::to_string_pretty(commit)?),
        (None, Some(error)) => println!("commit       does not decode: {error}"),
        (None, None) => {}
    }
    println!("behind it    {} parked", detail.behind.len());
    for b in &detail.behind {
        println!("  {} position {}", b.id, b.position);
    }
    Ok(())
}

/// `shopstream dlq history`: operator actions, newest first.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn dlq_history(
    conns: &Connections,
    consumer: Option<&str>,
    limit: i64,
    json: bool,
) -> anyhow::Result<()> {
    let actions = dead_letters::history(conns.db().await?, consumer, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&actions)?);
        return Ok(());
    }
    println!(
        "{:<32} {:<10} {:<10} {:<30} {:<16} {:<20} {:<24} OUTCOME",
        "AT", "ACTION", "CONSUMER", "AGGREGATE", "POSITIONS", "ACTOR", "REASON"
    );
    for a in actions {
        let positions = a
            .positions
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "{:<32} {:<10} {:<10} {:<30} {:<16} {:<20} {:<24} {}",
            a.at.to_rfc3339(),
            a.action,
            a.consumer,
            format!("{}/{}", a.aggregate_type, a.aggregate_id),
            positions,
            a.actor,
            a.reason,
            a.outcome
        );
    }
    Ok(())
}

/// How a bulk dead-letter action runs.
#[derive(Debug, Clone)]
pub struct BulkAction {
    pub selector: SequenceSelector,
    pub action: Action,
    pub actor: String,
    pub reason: String,
    /// Do not ask for confirmation.
    pub force: bool,
    /// Print the preview and change nothing.
    pub dry_run: bool,
    /// Sequences read per page.
    pub chunk: u32,
    /// At most this many sequences per second; 0 for no limit.
    pub rate: u32,
}

/// What a bulk action did.
#[derive(Debug, Default, serde::Serialize)]
struct BulkSummary {
    sequences: u64,
    /// Sequences now fully resolved.
    resolved: u64,
    /// Sequences whose head still fails (or that could not be acted on): still parked.
    failed: u64,
    applied_commits: u64,
    dropped_commits: u64,
    interrupted: bool,
}

/// `shopstream dlq retry|skip|discard --all|--group <fingerprint>`: previews, asks,
/// then acts on each selected sequence in its own transaction, page by page.
///
/// Each sequence is one transaction, in position order within its aggregate, so an
/// interruption (Ctrl-C is honoured between sequences) leaves every sequence either
/// done or still parked, and running the command again continues with what is parked.
///
/// # Errors
/// An unknown fingerprint or consumer, no confirmation, a sequence that still fails,
/// an interruption, or PostgreSQL failures.
pub async fn dlq_bulk(conns: &Connections, bulk: BulkAction) -> anyhow::Result<()> {
    if bulk.reason.trim().is_empty() {
        bail!("a reason is required (--reason)");
    }
    let db = conns.db().await?;
    let preview = dead_letters::preview(db, &bulk.selector).await?;
    if preview.sequences == 0 {
        if let Some(fingerprint) = &bulk.selector.fingerprint {
            bail!("no parked sequence whose head failed with fingerprint `{fingerprint}` (see `dlq list --group`); nothing changed");
        }
        if let Some(consumer) = &bulk.selector.consumer {
            bail!("no parked sequence for consumer `{consumer}`; nothing changed");
        }
        println!("nothing parked; nothing to do");
        return Ok(());
    }
    let verb = match bulk.action {
        Action::Retry => "retry",
        Action::Skip => "skip the head of",
        Action::Discard => "discard",
    };
    let list = |counts: &[(String, i64)]| {
        counts
            .iter()
            .map(|(name, count)| format!("{name} ({count})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "would {verb} {} parked sequences holding {} commits",
        preview.sequences, preview.commits
    );
    println!("  consumers:  {}", list(&preview.consumers));
    println!("  aggregates: {}", list(&preview.aggregate_types));
    for (consumer, _) in &preview.consumers {
        if registry::by_name(consumer).is_none() {
            println!("  note: `{consumer}` is not a projection; its sequences stay parked and are counted (the saga's have `shopstream sagas`)");
        }
    }
    if bulk.dry_run {
        println!("dry run: nothing changed");
        return Ok(());
    }
    if !bulk.force && !confirm("Go ahead? [y/N] ")? {
        bail!("not confirmed; nothing changed (pass -f to skip the question)");
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    let watcher = watch_for_interrupt(Arc::clone(&interrupted))?;
    let bar = ProgressBar::new(u64::try_from(preview.sequences).unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} sequences ({per_sec}, {eta} left) {msg}",
        )
        .context("progress template")?,
    );
    let mut pace = (bulk.rate > 0).then(|| {
        let mut interval =
            tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(bulk.rate)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut summary = BulkSummary::default();
    let mut after: Option<dead_letters::ParkedSequence> = None;
    'pages: loop {
        let page = dead_letters::sequences_page(
            db,
            &bulk.selector,
            after.as_ref(),
            i64::from(bulk.chunk.max(1)),
        )
        .await?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        for sequence in page {
            if interrupted.load(Ordering::SeqCst) {
                summary.interrupted = true;
                break 'pages;
            }
            if let Some(pace) = pace.as_mut() {
                pace.tick().await;
            }
            summary.sequences += 1;
            let outcome = match projection_named(&sequence.consumer) {
                Ok(projection) => dead_letters::act(
                    db,
                    &projection,
                    &sequence,
                    bulk.action,
                    &bulk.actor,
                    &bulk.reason,
                )
                .await
                .map_err(anyhow::Error::from),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(outcome) => {
                    summary.applied_commits += outcome.applied.len() as u64;
                    summary.dropped_commits += outcome.dropped.len() as u64;
                    if outcome.error.is_some() {
                        summary.failed += 1;
                    } else {
                        summary.resolved += 1;
                    }
                }
                // Someone else resolved it since the page was read: nothing to do.
                Err(error)
                    if matches!(
                        error.downcast_ref::<DeadLetterError>(),
                        Some(DeadLetterError::NothingParked { .. })
                    ) => {}
                Err(error) => {
                    summary.failed += 1;
                    tracing::warn!(
                        consumer = %sequence.consumer,
                        aggregate_type = %sequence.aggregate_type,
                        aggregate_id = %sequence.aggregate_id,
                        error = %infra_nats::ErrorChain(error.as_ref()),
                        "dead-letter sequence not acted on"
                    );
                }
            }
            bar.inc(1);
            bar.set_message(format!("{} still parked", summary.failed));
        }
        after = Some(last);
    }
    bar.finish_and_clear();
    watcher.abort();
    println!(
        "{} sequences: {} resolved, {} still parked; {} commits applied, {} dropped",
        summary.sequences,
        summary.resolved,
        summary.failed,
        summary.applied_commits,
        summary.dropped_commits
    );
    if summary.interrupted {
        bail!(
            "interrupted; every sequence is either done or still parked: run it again to continue"
        );
    }
    if summary.failed > 0 {
        bail!(
            "{} sequences still fail and stay parked (see `dlq list`)",
            summary.failed
        );
    }
    Ok(())
}

/// `shopstream projections verify <name>`: recomputes the read model from the log into
/// a scratch schema at the live position and compares it with the live tables.
/// Returns whether they are identical.
///
/// # Errors
/// Unknown projection, another verification running, or NATS/PostgreSQL failures; the
/// live tables are only read, and the scratch schema is dropped in every case.
pub async fn projections_verify(
    conns: &Connections,
    name: &str,
    json: bool,
) -> anyhow::Result<bool> {
    let projection = projection_named(name)?;
    let nats = conns.nats().await?;
    let db = conns.db().await?;
    let jetstream = jetstream::new(nats.clone());
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} commits replayed ({per_sec})",
        )
        .context("progress template")?,
    );
    let report = verify(
        projection,
        db,
        &jetstream,
        &RebuildOptions::default(),
        |p| {
            bar.set_length(p.commits + p.remaining);
            bar.set_position(p.commits);
        },
    )
    .await?;
    bar.finish_and_clear();
    let identical = report.differences.is_empty();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(identical);
    }
    println!(
        "verified `{}` at position {}: {} commits replayed ({} parked), {} tables",
        report.projection,
        report.position,
        report.commits,
        report.parked,
        report.tables.len()
    );
    if !report.ignored_columns.is_empty() {
        println!("not compared: {}", report.ignored_columns.join(", "));
    }
    if identical {
        println!("identical");
        return Ok(true);
    }
    println!("{} rows differ:", report.differences.len());
    let show = |row: &Option<serde_json::Value>| {
        row.as_ref()
            .map_or_else(|| "(missing)".to_owned(), serde_json::Value::to_string)
    };
    for d in &report.differences {
        println!("{} {}", d.table, d.key);
        println!("  live:       {}", show(&d.live));
        println!("  recomputed: {}", show(&d.recomputed));
    }
    Ok(false)
}

/// `shopstream dlq retry|skip|discard <id>`: acts on the parked sequence holding `id`.
///
/// # Errors
/// Unknown id, missing reason, nothing parked, or PostgreSQL failures; nothing changes.
pub async fn dlq_act(
    conns: &Connections,
    id: uuid::Uuid,
    action: Action,
    actor: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let act = DeadLetterAct {
        id,
        action,
        actor: actor.to_owned(),
        reason: reason.to_owned(),
    };
    let outcome = match act_on_dead_letter(conns.db().await?, act).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(rejection)) => bail!("{}", rejection.message),
        Err(AppError::NotFound(_)) => bail!("no dead letter with id {id}"),
        Err(error) => return Err(error.into()),
    };
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    if outcome.error.is_some() {
        bail!("the head of the sequence still fails; it stays parked");
    }
    Ok(())
}

/// Sets `interrupted` on Ctrl-C (SIGINT) instead of ending the process, so that a bulk
/// action stops between sequences. The handler is in place when this returns.
pub(crate) fn watch_for_interrupt(
    interrupted: Arc<AtomicBool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the SIGINT handler")?;
    Ok(tokio::spawn(async move {
        #[cfg(unix)]
        let received = signal.recv().await.is_some();
        #[cfg(not(unix))]
        let received = tokio::signal::ctrl_c().await.is_ok();
        if received {
            interrupted.store(true, Ordering::SeqCst);
        }
    }))
}

pub(crate) fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    print!("{question}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
