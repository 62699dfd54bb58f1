//! `shopstream streams info`: the event stream and its consumers, as JetStream sees them.

use anyhow::Context;
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use futures::TryStreamExt;
use infra_nats::subjects::EVENTS_STREAM;
use serde::Serialize;
use serde_json::json;

use crate::cli::{CliCommand, SUCCESS};
use crate::cli_auth::{Caller, Gate};
use crate::{Connections, Settings};

/// `shopstream streams ...`.
#[derive(Debug, Subcommand)]
pub enum StreamsCommand {
    /// Messages, bytes, first and last position of the event stream, and every
    /// consumer's pending, ack pending, redelivered and last delivered position.
    Info {
        /// Print JSON.
        #[arg(short, long)]
        json: bool,
        #[command(flatten)]
        settings: Settings,
    },
}

impl CliCommand for StreamsCommand {
    fn settings(&self) -> Option<&Settings> {
        match self {
            StreamsCommand::Info { settings, .. } => Some(settings),
        }
    }

    fn gate(&self) -> Option<Gate> {
        match self {
            StreamsCommand::Info { .. } => Some(Gate::operator("streams info", json!({}))),
        }
    }

    async fn run(self, conns: &Connections, _: Option<&Caller>) -> anyhow::Result<i32> {
        match self {
            StreamsCommand::Info { json, .. } => streams_info(conns, json).await?,
        }
        Ok(SUCCESS)
    }
}

/// The event stream's size and range.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
    pub first_position: u64,
    pub first_at: Option<DateTime<Utc>>,
    pub last_position: u64,
    pub last_at: Option<DateTime<Utc>>,
    pub subjects: Option<u64>,
    pub consumers: Vec<ConsumerSummary>,
}

/// One consumer of the event stream and how far behind it is.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerSummary {
    pub name: String,
    pub durable: bool,
    pub filter_subjects: Vec<String>,
    /// Messages matching its filter not yet delivered: its lag.
    pub pending: u64,
    /// Delivered, not yet acknowledged.
    pub ack_pending: u64,
    /// Delivered more than once and not yet acknowledged.
    pub redelivered: u64,
    /// The stream position of the last message delivered to it.
    pub last_delivered_position: u64,
    pub last_delivered_at: Option<DateTime<Utc>>,
    pub last_acked_position: u64,
}

/// Reads the event stream's state and every consumer's.
///
/// # Errors
/// When NATS cannot be reached or the stream does not exist.
pub async fn events_stream_info(jetstream: &jetstream::Context) -> anyhow::Result<StreamSummary> {
    let mut stream = jetstream
        .get_stream(EVENTS_STREAM)
        .await
        .with_context(|| format!("reading stream {EVENTS_STREAM}"))?;
    let info = stream.info().await.context("reading stream info")?;
    let state = info.state.clone();
    let name = info.config.name.clone();
    let mut consumers: Vec<ConsumerSummary> = stream
        .consumers()
        .map_ok(|c| {
            let mut filter_subjects = c.config.filter_subjects.clone();
            if !c.config.filter_subject.is_empty() {
                filter_subjects.insert(0, c.config.filter_subject.clone());
            }
            ConsumerSummary {
                durable: c.config.durable_name.is_some(),
                name: c.name,
                filter_subjects,
                pending: c.num_pending,
                ack_pending: u64::try_from(c.num_ack_pending).unwrap_or(0),
                redelivered: u64::try_from(c.num_redelivered).unwrap_or(0),
                last_delivered_position: c.delivered.stream_sequence,
                last_delivered_at: c.delivered.last_active,
                last_acked_position: c.ack_floor.stream_sequence,
            }
        })
        .try_collect()
        .await
        .context("listing consumers")?;
    consumers.sort_by(|a, b| a.name.cmp(&b.name));
    let stamp = |position: u64, at: DateTime<Utc>| (position > 0).then_some(at);
    Ok(StreamSummary {
        name,
        messages: state.messages,
        bytes: state.bytes,
        first_position: state.first_sequence,
        first_at: stamp(state.messages, state.first_timestamp),
        last_position: state.last_sequence,
        last_at: stamp(state.messages, state.last_timestamp),
        subjects: Some(state.subjects_count),
        consumers,
    })
}

/// `shopstream streams info`.
///
/// # Errors
/// When NATS cannot be reached.
pub async fn streams_info(conns: &Connections, json: bool) -> anyhow::Result<()> {
    let nats = conns.nats().await?;
    let summary = events_stream_info(&jetstream::new(nats.clone())).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    let at = |at: Option<DateTime<Utc>>| at.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
    println!("stream {}", summary.name);
    println!("  messages  {}", summary.messages);
    println!("  bytes     {}", summary.bytes);
    println!(
        "  first     {} ({})",
        summary.first_position,
        at(summary.first_at)
    );
    println!(
        "  last      {} ({})",
        summary.last_position,
        at(summary.last_at)
    );
    println!();
    println!(
        "{:<28} {:>9} {:>11} {:>11} {:>14} {:<26} FILTER",
        "CONSUMER", "PENDING", "ACK PENDING", "REDELIVERED", "LAST DELIVERED", "AT"
    );
    for c in &summary.consumers {
        println!(
            "{:<28} {:>9} {:>11} {:>11} {:>14} {:<26} {}",
            c.name,
            c.pending,
            c.ack_pending,
            c.redelivered,
            c.last_delivered_position,
            at(c.last_delivered_at),
            c.filter_subjects.join(",")
        );
    }
    Ok(())
}
