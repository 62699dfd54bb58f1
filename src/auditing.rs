//! `shopstream audit`: the auditor's tools on the command line. Verify the hash chain,
//! read an aggregate's history, rebuild its state as of a past point, and list who
//! looked at what. Every command records who ran it in `audit.access_log` first; who
//! that is comes from the caller's CLI session (`crate::cli_auth`), checked against
//! [`AuditCommand`]'s gate before it runs.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use domain::OrderId;
use infra_nats::audit::{self, Bound};
use projections::orders::OrderAsOf;
use serde_json::json;
use sqlx::PgPool;

use crate::cli::{actor, CliCommand};
use crate::cli_auth::{Caller, Gate};
use crate::{Connections, Settings};

/// The exit code of `audit verify` when it found damage.
pub const DAMAGE_FOUND: i32 = 2;

/// `shopstream audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every aggregate's hash chain and version sequence; exits 2 on any finding.
    Verify {
        /// Only this aggregate type (product, inventory, order, payment, order_saga).
        #[arg(long = "type")]
        aggregate_type: Option<String>,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Every event of one aggregate with its metadata, oldest first, a page at a time.
    History {
        /// product, inventory (id = SKU), order, payment or order_saga.
        aggregate_type: String,
        aggregate_id: String,
        /// Start after this version (the previous page's last).
        #[arg(long, default_value_t = 0)]
        after_version: usize,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// One aggregate's state as of a version, a stream position or a time, as JSON.
    State {
        /// product, inventory (id = SKU), order, payment or order_saga.
        aggregate_type: String,
        aggregate_id: String,
        #[command(flatten)]
        bound: BoundArgs,
        /// Print the state with its version, position and time (otherwise the state only).
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// What the orders read model showed of one order as of a stream position: rebuilt
    /// from the log (the order's and its payments' commits up to there) in a scratch copy
    /// that is thrown away.
    OrderView {
        /// The order id (a UUID, or its GraphQL id `gid://shopstream/Order/<uuid>`).
        order_id: String,
        /// Every commit at or before this stream position.
        #[arg(long)]
        position: u64,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Who ran which audit command, newest first.
    Access {
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
}

/// Exactly one bound for `audit state`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct BoundArgs {
    /// Up to and including this aggregate version.
    #[arg(long)]
    version: Option<usize>,
    /// Every event at or before this stream position.
    #[arg(long)]
    position: Option<u64>,
    /// Every event stored at or before this time (RFC 3339).
    #[arg(long)]
    at: Option<DateTime<Utc>>,
}

impl BoundArgs {
    fn bound(&self) -> anyhow::Result<Bound> {
        match (self.version, self.position, self.at) {
            (Some(version), None, None) => Ok(Bound::Version(version)),
            (None, Some(position), None) => Ok(Bound::Position(position)),
            (None, None, Some(at)) => Ok(Bound::At(at)),
            _ => anyhow::bail!("give exactly one of --version, --position, --at"),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        json!({ "version": self.version, "position": self.position, "at": self.at })
    }
}

impl CliCommand for AuditCommand {
    fn settings(&self) -> Option<&Settings> {
        match self {
            AuditCommand::Verify { settings, .. }
            | AuditCommand::History { settings, .. }
            | AuditCommand::State { settings, .. }
            | AuditCommand::OrderView { settings, .. }
            | AuditCommand::Access { settings, .. } => Some(settings),
        }
    }

    /// Every audit subcommand, including any added later, is an auditor's.
    fn gate(&self) -> Option<Gate> {
        let (command, arguments) = self.describe();
        Some(Gate::auditor(command, arguments))
    }

    async fn run(self, conns: &Connections, caller: Option<&Caller>) -> anyhow::Result<i32> {
        run(self, conns, actor(caller)?).await
    }
}

impl AuditCommand {
    /// The command as typed, such as `audit history`, and its arguments as JSON (for
    /// the record of a refusal).
    pub fn describe(&self) -> (String, serde_json::Value) {
        let (verb, arguments) = match self {
            AuditCommand::Verify { aggregate_type, .. } => {
                ("verify", json!({ "type": aggregate_type }))
            }
            AuditCommand::History {
                aggregate_type,
                aggregate_id,
                after_version,
                limit,
                ..
            } => (
                "history",
                json!({
                    "aggregate_type": aggregate_type,
                    "aggregate_id": aggregate_id,
                    "after_version": after_version,
                    "limit": limit,
                }),
            ),
            AuditCommand::State {
                aggregate_type,
                aggregate_id,
                bound,
                ..
            } => (
                "state",
                json!({
                    "aggregate_type": aggregate_type,
                    "aggregate_id": aggregate_id,
                    "bound": bound.to_json(),
                }),
            ),
            AuditCommand::OrderView {
                order_id, position, ..
            } => (
                "order-view",
                json!({ "order_id": order_id, "position": position }),
            ),
            AuditCommand::Access { limit, .. } => ("access", json!({ "limit": limit })),
        };
        (format!("audit {verb}"), arguments)
    }
}

/// Runs one audit command for `actor` (`user:<uuid>`, recorded in the access log) and
/// returns the process exit code (0, or [`DAMAGE_FOUND`]).
///
/// # Errors
/// When NATS or PostgreSQL cannot be reached, the aggregate type is unknown, the
/// aggregate has no events, or the bound is outside its history.
pub async fn run(command: AuditCommand, conns: &Connections, actor: &str) -> anyhow::Result<i32> {
    let db = conns.db().await?;
    match command {
        AuditCommand::Verify {
            aggregate_type,
            json,
            ..
        } => {
            if let Some(t) = &aggregate_type {
                audit::check_type(t)?;
            }
            log_access(
                db,
                actor,
                "verify",
                aggregate_type.as_deref(),
                None,
                json!({ "type": aggregate_type }),
            )
            .await?;
            let js = async_nats::jetstream::new(conns.nats().await?.clone());
            let report = audit::verify(&js, aggregate_type.as_deref())
                .await
                .context("verifying the log")?;
            print_verify(&report, json)?;
            Ok(if report.is_clean() { 0 } else { DAMAGE_FOUND })
        }
        AuditCommand::History {
            aggregate_type,
            aggregate_id,
            after_version,
            limit,
            json,
            ..
        } => {
            audit::check_type(&aggregate_type)?;
            log_access(
                db,
                actor,
                "history",
                Some(&aggregate_type),
                Some(&aggregate_id),
                json!({ "after_version": after_version, "limit": limit }),
            )
            .await?;
            let nats = conns.nats().await?;
            let page =
                audit::history(nats, &aggregate_type, &aggregate_id, after_version, limit).await?;
            print_history(&page, json)?;
            Ok(0)
        }
        AuditCommand::State {
            aggregate_type,
            aggregate_id,
            bound,
            json,
            ..
        } => {
            audit::check_type(&aggregate_type)?;
            let arguments = bound.to_json();
            let bound = bound.bound()?;
            log_access(
                db,
                actor,
                "state",
                Some(&aggregate_type),
                Some(&aggregate_id),
                arguments,
            )
            .await?;
            let nats = conns.nats().await?;
            let state = audit::state_at(nats, &aggregate_type, &aggregate_id, bound).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&state)?);
            } else {
                println!(
                    "{aggregate_type}/{aggregate_id} at version {} (position {}, {})",
                    state.version,
                    state.position,
                    state.timestamp.to_rfc3339()
                );
                println!("{}", serde_json::to_string_pretty(&state.state)?);
            }
            Ok(0)
        }
        AuditCommand::OrderView {
            order_id,
            position,
            json,
            ..
        } => {
            let order_id = parse_order_id(&order_id)?;
            log_access(
                db,
                actor,
                "order_as_of",
                Some("order"),
                Some(&order_id.to_string()),
                json!({ "position": position }),
            )
            .await?;
            let js = async_nats::jetstream::new(conns.nats().await?.clone());
            let view = projections::orders::order_as_of(db, &js, order_id, position).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_order_view(&view)?;
            }
            Ok(0)
        }
        AuditCommand::Access { limit, json, .. } => {
            log_access(db, actor, "access", None, None, json!({ "limit": limit })).await?;
            let rows = api::audit_log::recent(db, limit)
                .await
                .context("reading the access log")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<25}  {:<24}  {:<8}  {:<30}  arguments",
                    "at", "actor", "action", "target"
                );
                for row in rows {
                    let target = match (&row.target_type, &row.target_id) {
                        (Some(t), Some(id)) => format!("{t}/{id}"),
                        (Some(t), None) => t.clone(),
                        _ => "-".to_owned(),
                    };
                    println!(
                        "{:<25}  {:<24}  {:<8}  {:<30}  {}",
                        row.accessed_at.to_rfc3339(),
                        row.actor,
                        row.action,
                        target,
                        row.arguments
                    );
                }
            }
            Ok(0)
        }
    }
}

async fn log_access(
    db: &PgPool,
    actor: &str,
    action: &str,
    target_type: Option<&str>,
    target_id: Option<&str>,
    arguments: serde_json::Value,
) -> anyhow::Result<()> {
    api::audit_log::record(
        db,
        &api::audit_log::Access {
            actor,
            action,
            target_type,
            target_id,
            arguments,
        },
    )
    .await
    .context("recording the access in audit.access_log")
}

/// An order id as a UUID or as the API's global id.
fn parse_order_id(text: &str) -> anyhow::Result<OrderId> {
    let uuid = text.strip_prefix("gid://shopstream/Order/").unwrap_or(text);
    uuid.parse().with_context(|| {
        format!("`{text}` is not an order id (a UUID or gid://shopstream/Order/<uuid>)")
    })
}

fn print_order_view(view: &OrderAsOf) -> anyhow::Result<()> {
    let order = &view.order;
    let summary = &order.summary;
    println!(
        "order {} as of position {} (last commit folded at {}, {} commits)",
        view.order_id, view.position, view.last_applied, view.commits
    );
    println!(
        "status {:?}, payment {:?}, total {}, {} lines, {} items, placed {}, updated {}",
        summary.status,
        summary.payment_state,
        summary.total,
        summary.line_count,
        summary.item_count,
        summary.placed_at.to_rfc3339(),
        summary.updated_at.to_rfc3339()
    );
    for line in &order.lines {
        println!(
            "  {:<24} {:>5} x {:>12} = {:>12}",
            line.sku, line.quantity, line.unit_price, line.line_total
        );
    }
    println!("timeline:");
    for change in &order.timeline {
        println!(
            "  {:>10}  {:<25}  {:?}{}",
            change.position,
            change.at.to_rfc3339(),
            change.status,
            change
                .reason
                .as_deref()
                .map(|reason| format!(" ({reason})"))
                .unwrap_or_default()
        );
    }
    std::io::stdout().flush()?;
    Ok(())
}

fn print_verify(report: &audit::VerifyReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!(
            "{} commits, {} aggregates, {} unchained, up to position {}",
            report.commits, report.aggregates, report.unchained, report.last_position
        );
        if report.is_clean() {
            println!("no damage found");
        } else {
            println!(
                "{:>10}  {:<9}  {:<40}  {:>5}  detail",
                "position", "kind", "aggregate", "first"
            );
            for finding in &report.findings {
                println!(
                    "{:>10}  {:<9}  {:<40}  {:>5}  {}",
                    finding.position,
                    serde_json::to_value(finding.kind)?
                        .as_str()
                        .unwrap_or_default(),
                    format!("{}/{}", finding.aggregate_type, finding.aggregate_id),
                    finding.first_sequence,
                    finding.detail
                );
            }
        }
    }
    std::io::stdout().flush()?;
    Ok(())
}

fn print_history(page: &audit::HistoryPage, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(page)?);
        return Ok(());
    }
    println!(
        "{:>10}  {:>4}  {:<28}  {:<25}  {:<24}  {:<36}  {:<36}  {:<36}  {:<36}  payload",
        "position",
        "ver",
        "event",
        "at",
        "actor",
        "command",
        "correlation",
        "causation",
        "event id"
    );
    for event in &page.events {
        println!(
            "{:>10}  {:>4}  {:<28}  {:<25}  {:<24}  {:<36}  {:<36}  {:<36}  {:<36}  {}",
            event.position,
            event.version,
            format!("{} v{}", event.event_type, event.event_version),
            event.timestamp.to_rfc3339(),
            event.actor,
            event.command_id,
            event.correlation_id,
            event.causation_id,
            event.event_id,
            event.payload
        );
    }
    if let Some(next) = page.next_after_version {
        println!("more: --after-version {next}");
    }
    Ok(())
}
