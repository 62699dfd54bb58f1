//! `shopstream replay` and `shopstream replays`: re-deliver a range of the log to one
//! projector (repairing its read model) or to the saga in replay mode (which acts on
//! nothing and reports what it would still do), chunked, rate-limited, resumable.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use projections::runtime::replay::{
    self, Begun, ChunkReport, Progress, RangeReader, ReplayJob, Selection, SAGA_TARGET,
};
use projections::Projection;
use saga::replay::{SagaReplay, Verdict};
use serde_json::json;
use sqlx::{Connection, PgPool};

use crate::cli::{actor, CliCommand, SUCCESS};
use crate::cli_auth::{Caller, Gate};
use crate::projecting::{confirm, projection_named, watch_for_interrupt};
use crate::{Connections, Settings};

/// The exit code of a replay stopped by Ctrl-C (it resumes when run again).
pub const INTERRUPTED: i32 = 130;

/// The aggregate types commits can have.
const AGGREGATE_TYPES: [&str; 5] = ["product", "inventory", "order", "payment", "order_saga"];

/// `shopstream replay`: what to replay, and where.
#[derive(Debug, Args)]
pub struct ReplayCommand {
    #[command(flatten)]
    pub args: ReplayArgs,
    #[command(flatten)]
    pub settings: Settings,
}

impl CliCommand for ReplayCommand {
    fn settings(&self) -> Option<&Settings> {
        Some(&self.settings)
    }

    fn gate(&self) -> Option<Gate> {
        Some(Gate::operator("replay", self.args.to_json()))
    }

    async fn run(self, conns: &Connections, caller: Option<&Caller>) -> anyhow::Result<i32> {
        replay(conns, self.args, actor(caller)?).await
    }
}

/// `shopstream replays ...`.
#[derive(Debug, Subcommand)]
pub enum ReplaysCommand {
    /// Replays, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Mark an unfinished replay abandoned (what it applied stays applied).
    Abandon {
        /// The replay's id (from `replays list`).
        id: uuid::Uuid,
        #[command(flatten)]
        settings: Settings,
    },
}

impl CliCommand for ReplaysCommand {
    fn settings(&self) -> Option<&Settings> {
        match self {
            ReplaysCommand::List { settings, .. } | ReplaysCommand::Abandon { settings, .. } => {
                Some(settings)
            }
        }
    }

    fn gate(&self) -> Option<Gate> {
        Some(match self {
            ReplaysCommand::List { limit, .. } => {
                Gate::operator("replays list", json!({ "limit": limit }))
            }
            ReplaysCommand::Abandon { id, .. } => {
                Gate::operator("replays abandon", json!({ "id": id }))
            }
        })
    }

    async fn run(self, conns: &Connections, _: Option<&Caller>) -> anyhow::Result<i32> {
        match self {
            ReplaysCommand::List { limit, json, .. } => replays_list(conns, limit, json).await?,
            ReplaysCommand::Abandon { id, .. } => replays_abandon(conns, id).await?,
        }
        Ok(SUCCESS)
    }
}

/// The range, target and pace of `shopstream replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The projector to re-deliver to (catalog, inventory, orders, payments, sagas, sales,
    /// notifier), or `saga` for the saga's replay mode (no effects; reports what it would do).
    #[arg(long)]
    pub target: String,
    /// First position of the range (default: the log's first).
    #[arg(long, conflicts_with = "since")]
    pub from_position: Option<u64>,
    /// Last position of the range (default: the log's last, or what the projector has applied).
    #[arg(long, conflicts_with = "until")]
    pub to_position: Option<u64>,
    /// Start at the first commit stored at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// End at the last commit stored at or before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
    /// Only commits of this aggregate type, or of one aggregate as `type:id`.
    #[arg(long)]
    pub aggregate: Option<String>,
    /// Report how many commits, which aggregates and which consumers would be touched;
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// Commits read and applied per transaction.
    #[arg(long, default_value_t = 500)]
    pub chunk: usize,
    /// At most this many commits per second (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Why; recorded with the replay (required unless --dry-run).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Print JSON.
    #[arg(short, long)]
    pub json: bool,
}

impl ReplayArgs {
    /// The arguments as recorded with a refusal.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "target": self.target,
            "from_position": self.from_position,
            "to_position": self.to_position,
            "since": self.since,
            "until": self.until,
            "aggregate": self.aggregate,
            "dry_run": self.dry_run,
            "force": self.force,
            "reason": self.reason,
        })
    }
}

/// Where a replay goes.
enum Target {
    Projector(Arc<dyn Projection>),
    Saga,
}

impl Target {
    fn named(name: &str) -> anyhow::Result<Self> {
        if name == SAGA_TARGET {
            return Ok(Target::Saga);
        }
        projection_named(name)
            .map(Target::Projector)
            .map_err(|error| anyhow::anyhow!("{error}, or `{SAGA_TARGET}`; nothing changed"))
    }

    fn name(&self) -> &str {
        match self {
            Target::Projector(projection) => projection.name(),
            Target::Saga => SAGA_TARGET,
        }
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        match self {
            Target::Projector(projection) => projection.aggregate_types(),
            Target::Saga => &["order"],
        }
    }
}

/// `shopstream replay`: returns the process exit code (0, or [`INTERRUPTED`]).
///
/// # Errors
/// Bad arguments (unknown target, a range outside the log or past what the projector has
/// applied, an aggregate type the target does not consume), NATS or PostgreSQL failures,
/// or a commit the projection refuses; nothing of an unfinished chunk is kept.
pub async fn replay(conns: &Connections, args: ReplayArgs, actor: &str) -> anyhow::Result<i32> {
    let target = Target::named(&args.target)?;
    if args.chunk == 0 {
        bail!("--chunk must be at least 1; nothing changed");
    }
    if !args.dry_run && args.reason.trim().is_empty() {
        bail!("a reason is required (--reason); nothing changed");
    }
    let nats = conns.nats().await?;
    let db = conns.db().await?;
    let js = jetstream::new(nats.clone());
    let selection = resolve_selection(&js, db, &target, &args).await?;

    if args.dry_run {
        return dry_run(nats, db, &target, &selection, args.json).await;
    }
    if let Some(running) = replay::unfinished(db, target.name()).await? {
        if running.selection != selection {
            bail!(
                "{}; nothing changed",
                replay::ReplayError::OtherUnfinished(Box::new(running))
            );
        }
        println!(
            "replay {} of `{}` was interrupted at position {}: resuming",
            running.id,
            target.name(),
            running.cursor
        );
    }
    let positions = selection.to - selection.from + 1;
    if !args.force
        && !confirm(&format!(
            "Replay positions {}..={} ({positions} positions{}) to `{}`{}? [y/N] ",
            selection.from,
            selection.to,
            describe_filter(&selection),
            target.name(),
            match target {
                Target::Saga => " in replay mode (no command, no payment call)",
                Target::Projector(_) => " (its live tables; no effect outside them)",
            },
        ))?
    {
        bail!("not confirmed; nothing changed (pass -f to skip the question)");
    }
    let (job, begun) = replay::begin(db, target.name(), &selection, actor, &args.reason).await?;
    if begun == Begun::Started {
        tracing::info!(replay = %job.id, target = target.name(), "replay started");
    }
    run(nats, db, &target, job, &args).await
}

async fn resolve_selection(
    js: &jetstream::Context,
    db: &PgPool,
    target: &Target,
    args: &ReplayArgs,
) -> anyhow::Result<Selection> {
    let (aggregate_type, aggregate_id) = match args.aggregate.as_deref() {
        // A target of one aggregate type reads only that type's subjects.
        None => match target.aggregate_types() {
            [single] => (Some((*single).to_owned()), None),
            _ => (None, None),
        },
        Some(aggregate) => {
            let (kind, id) = crate::projecting::parse_aggregate(aggregate);
            if !AGGREGATE_TYPES.contains(&kind.as_str()) {
                bail!(
                    "no aggregate type `{kind}` (known: {}); nothing changed",
                    AGGREGATE_TYPES.join(", ")
                );
            }
            if !target.aggregate_types().contains(&kind.as_str()) {
                bail!(
                    "`{}` consumes only {} commits, not `{kind}`; nothing changed",
                    target.name(),
                    target.aggregate_types().join(", ")
                );
            }
            if id.as_deref().is_some_and(|id| id.trim().is_empty()) {
                bail!("an empty aggregate id in `{aggregate}`; nothing changed");
            }
            (Some(kind), id)
        }
    };
    let (first, last) = infra_nats::stream_range(js).await?;
    if last == 0 {
        bail!("the log is empty; nothing to replay");
    }
    let from = match (args.from_position, args.since) {
        (Some(position), _) => position,
        (None, Some(since)) => infra_nats::first_position_at_or_after(js, since)
            .await?
            .with_context(|| format!("nothing was stored at or after {since}; nothing changed"))?,
        (None, None) => first.max(1),
    };
    let to = match (args.to_position, args.until) {
        (Some(position), _) => position,
        (None, Some(until)) => {
            let after = until + chrono::Duration::nanoseconds(1);
            match infra_nats::first_position_at_or_after(js, after).await? {
                Some(position) => position.saturating_sub(1),
                None => last,
            }
        }
        (None, None) => match target {
            // Up to what the live projector has applied: later commits are its own.
            Target::Projector(projection) => replay::live_position(db, projection.name())
                .await?
                .min(last),
            Target::Saga => last,
        },
    };
    if from == 0 {
        bail!("positions start at 1; nothing changed");
    }
    if from > last || to > last {
        bail!(
            "position {} is past the end of the log (positions {first}..={last}); nothing changed",
            from.max(to)
        );
    }
    if let Target::Projector(projection) = target {
        let live = replay::live_position(db, projection.name()).await?;
        if to > live || from > live {
            bail!(
                "{}; nothing changed",
                replay::ReplayError::PastLive {
                    name: projection.name().to_owned(),
                    live
                }
            );
        }
    }
    if from > to {
        bail!("the range is empty: {from} comes after {to}; nothing changed");
    }
    Ok(Selection {
        from,
        to,
        aggregate_type,
        aggregate_id,
    })
}

fn describe_filter(selection: &Selection) -> String {
    match (&selection.aggregate_type, &selection.aggregate_id) {
        (Some(kind), Some(id)) => format!(", only {kind} {id}"),
        (Some(kind), None) => format!(", only {kind} commits"),
        _ => String::new(),
    }
}

async fn dry_run(
    nats: &async_nats::Client,
    db: &PgPool,
    target: &Target,
    selection: &Selection,
    json: bool,
) -> anyhow::Result<i32> {
    let consumed = target.aggregate_types();
    let summary = replay::summarise(nats, selection, |commit| {
        consumed.contains(&commit.envelope.aggregate_type.as_str())
    })
    .await?;
    let unfinished = replay::unfinished(db, target.name()).await?;
    let effects = match target {
        Target::Saga => "none: the saga judges each order event and records nothing",
        Target::Projector(p) if p.name() == "notifier" => {
            "none: notifications are sent for live deliveries only"
        }
        Target::Projector(_) => "none outside its own tables",
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "target": target.name(),
                "selection": selection,
                "summary": summary,
                "consumers": [target.name()],
                "effects": effects,
                "unfinished": unfinished,
            }))?
        );
        return Ok(0);
    }
    println!(
        "would replay positions {}..={}{} to `{}`",
        selection.from,
        selection.to,
        describe_filter(selection),
        target.name()
    );
    println!(
        "  commits:    {} ({} events), positions {}",
        summary.commits,
        summary.events,
        match (summary.first_position, summary.last_position) {
            (Some(first), Some(last)) => format!("{first}..={last}"),
            _ => "none".to_owned(),
        }
    );
    for (kind, count) in &summary.aggregates {
        let examples = summary.examples.get(kind).cloned().unwrap_or_default();
        let more = if *count as usize > examples.len() {
            ", ..."
        } else {
            ""
        };
        println!(
            "  aggregates: {count} {kind} ({}{more})",
            examples.join(", ")
        );
    }
    println!("  consumers:  {} only", target.name());
    println!("  effects:    {effects}");
    if let Some(job) = unfinished {
        println!(
            "  note: replay {} is unfinished at position {} (positions {}..={})",
            job.id, job.cursor, job.selection.from, job.selection.to
        );
    }
    println!("dry run: nothing changed");
    Ok(0)
}

async fn run(
    nats: &async_nats::Client,
    db: &PgPool,
    target: &Target,
    mut job: ReplayJob,
    args: &ReplayArgs,
) -> anyhow::Result<i32> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let watcher = watch_for_interrupt(Arc::clone(&interrupted))?;
    let bar = ProgressBar::new(job.selection.to - job.selection.from + 1);
    bar.set_position(job.cursor + 1 - job.selection.from);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} positions ({per_sec}, {eta} left) {msg}",
        )
        .context("progress template")?,
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    // Projections name their tables unqualified: a pool of their own (see `private_pool`).
    let writer = projections::runtime::private_pool(db, 2);
    let saga = match target {
        Target::Saga => Some(SagaReplay::new(nats.clone()).await?),
        Target::Projector(_) => None,
    };
    let chunk = if args.rate > 0 {
        args.chunk.min(args.rate as usize)
    } else {
        args.chunk
    };
    let started = Instant::now();
    let mut delivered_now = 0u64;
    let mut reader = RangeReader::new(nats.clone(), job.selection.clone(), job.cursor);
    let result: anyhow::Result<()> = async {
        while let Some(part) = reader.next_chunk(chunk).await? {
            if interrupted.load(Ordering::SeqCst) {
                break;
            }
            let report = match (target, &saga) {
                (Target::Projector(projection), _) => {
                    replay::apply_chunk(&writer, projection.as_ref(), &job, &part.commits, part.end)
                        .await?
                }
                (Target::Saga, Some(judge)) => judge_chunk(db, judge, &job, &part).await?,
                (Target::Saga, None) => unreachable!("the saga's judge is made above"),
            };
            job.cursor = report.cursor;
            delivered_now += report.delivered;
            bar.set_position(job.cursor + 1 - job.selection.from);
            bar.set_message(format!("{} delivered", job.delivered + delivered_now));
            if args.rate > 0 {
                // Paced by commits delivered: sleep off any lead over the rate.
                let due = Duration::from_secs_f64(delivered_now as f64 / f64::from(args.rate));
                if let Some(lead) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(lead).await;
                }
            }
        }
        Ok(())
    }
    .await;
    watcher.abort();
    bar.finish_and_clear();
    let job = replay::get(db, job.id).await?;
    if let Err(error) = result {
        eprintln!(
            "replay {} stopped at position {}: nothing after it was applied; fix the cause and \
             run the same command again to resume",
            job.id, job.cursor
        );
        return Err(error);
    }
    print_job(&job, started.elapsed(), delivered_now, args.json)?;
    if job.is_finished() {
        Ok(0)
    } else {
        eprintln!(
            "interrupted at position {}: run the same command again to resume",
            job.cursor
        );
        Ok(INTERRUPTED)
    }
}

/// The saga's replay mode for one chunk: judge each commit, then advance the cursor with
/// the verdicts in one transaction (nothing else is written anywhere).
async fn judge_chunk(
    db: &PgPool,
    judge: &SagaReplay,
    job: &ReplayJob,
    part: &replay::Chunk,
) -> anyhow::Result<ChunkReport> {
    let mut progress = Progress::default();
    for commit in &part.commits {
        progress.delivered += 1;
        for judgement in judge.judge(commit).await? {
            *progress
                .outcome
                .entry(judgement.verdict.as_str().to_owned())
                .or_default() += 1;
            if judgement.verdict == Verdict::WouldAct {
                progress.findings.push(serde_json::to_value(&judgement)?);
            }
        }
    }
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    replay::advance(&mut tx, job.id, job.cursor, part.end, &progress).await?;
    tx.commit().await?;
    Ok(ChunkReport {
        cursor: part.end,
        delivered: progress.delivered,
        skipped_parked: 0,
    })
}

fn print_job(
    job: &ReplayJob,
    elapsed: Duration,
    delivered_now: u64,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(job)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "replay {} to `{}`: {} at position {} of {}..={}",
        job.id, job.target, job.status, job.cursor, job.selection.from, job.selection.to
    )?;
    writeln!(
        out,
        "  delivered {} commits ({} in this run, {:.0}/s), passed over {} of parked aggregates",
        job.delivered,
        delivered_now,
        delivered_now as f64 / elapsed.as_secs_f64().max(1e-9),
        job.skipped_parked
    )?;
    writeln!(out, "  outcome: {}", job.outcome)?;
    if let Some(findings) = job.findings.as_array().filter(|f| !f.is_empty()) {
        writeln!(out, "  findings ({}):", findings.len())?;
        for finding in findings {
            writeln!(
                out,
                "    position {} order {}: {} ({})",
                finding["position"], finding["order_id"], finding["detail"], finding["reaction"]
            )?;
        }
    }
    Ok(())
}

/// `shopstream replays list`.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn replays_list(conns: &Connections, limit: i64, json: bool) -> anyhow::Result<()> {
    let jobs = replay::list(conns.db().await?, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(());
    }
    println!(
        "{:<36}  {:<10}  {:<9}  {:>21}  {:>9}  {:>10}  {:<20}  reason",
        "id", "target", "status", "range", "cursor", "delivered", "started"
    );
    for job in jobs {
        println!(
            "{:<36}  {:<10}  {:<9}  {:>21}  {:>9}  {:>10}  {:<20}  {}",
            job.id,
            job.target,
            job.status,
            format!("{}..={}", job.selection.from, job.selection.to),
            job.cursor,
            job.delivered,
            job.started_at.format("%Y-%m-%d %H:%M:%S"),
            job.reason
        );
    }
    Ok(())
}

/// `shopstream replays abandon <id>`: lets another selection start on the same target.
///
/// # Errors
/// When no unfinished replay has this id, or PostgreSQL fails.
pub async fn replays_abandon(conns: &Connections, id: uuid::Uuid) -> anyhow::Result<()> {
    let job = replay::abandon(conns.db().await?, id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}; nothing changed"))?;
    println!(
        "abandoned replay {} of `{}` at position {} of {}..={}",
        job.id, job.target, job.cursor, job.selection.from, job.selection.to
    );
    Ok(())
}
