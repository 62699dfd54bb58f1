//! The auditor's reads of the log: verifying the hash chain of every aggregate, one
//! aggregate's history with its metadata, and an aggregate's state as of a past point.
//!
//! What it is not: a writer. Nothing here appends to the log, and the access log of who
//! looked at what lives with the callers (the CLI and the API), in PostgreSQL.

use std::collections::HashMap;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::RecordedCommit;
use crate::error::StoreError;
use crate::reader::{read_all, read_subject_batch, stream_last_position, DIRECT_GET_BATCH};
use crate::subjects::aggregate_subject;

/// The aggregate types an auditor can name, as they appear in subjects.
pub const AGGREGATE_TYPES: [&str; 5] = ["product", "inventory", "order", "payment", "order_saga"];

/// Why an audit read failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The aggregate type is not one of [`AGGREGATE_TYPES`].
    #[error(
        "unknown aggregate type `{0}` (known: product, inventory, order, payment, order_saga)"
    )]
    UnknownType(String),
    /// The aggregate has no events.
    #[error("{aggregate_type}/{aggregate_id} has no events")]
    NotFound {
        aggregate_type: String,
        aggregate_id: String,
    },
    /// The bound lies before the aggregate's first event.
    #[error("{0} is before the aggregate's first event")]
    BeforeFirstEvent(String),
    /// The version asked for was never reached.
    #[error("version {asked} is past the aggregate's last version {last}")]
    VersionPastEnd { asked: usize, last: usize },
    /// The log could not be read or decoded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

// ---------------------------------------------------------------------------------------
// Verify

/// What kind of damage a commit shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The commit's hash does not match its content chained to the previous commit's
    /// hash (or a chained aggregate continues with a commit that has no hash).
    Altered,
    /// The commit skips versions: its first sequence is past the previous version + 1.
    Gap,
    /// The commit repeats or goes back: its first sequence is at or below the previous
    /// commit's last version.
    Reordered,
}

/// One damaged commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The stream sequence of the damaged commit.
    pub position: u64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub first_sequence: usize,
    /// What was expected and what was found.
    pub detail: String,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The last stream position read.
    pub last_position: u64,
    /// Commits checked.
    pub commits: u64,
    /// Distinct aggregates seen.
    pub aggregates: u64,
    /// Commits written before the hash chain existed (no hash): not checked for
    /// alteration, not reported as damage.
    pub unchained: u64,
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// True when nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// What verify keeps per aggregate: its last version and its last commit's hash.
struct ChainTip {
    version: usize,
    hash: Option<String>,
}

/// Reads the whole log from position 1 to its current end and checks, per aggregate,
/// that every commit continues the previous one: hashes chain, versions follow without
/// gaps, nothing repeats or goes back. `aggregate_type` limits the check to one type.
///
/// Streams the log and keeps only a version and a hash per aggregate in memory. Each
/// commit is checked against the commit before it on the same subject, which is what the
/// store itself chains to when it appends.
///
/// # Errors
/// [`StoreError`] when the log cannot be read or a commit cannot be decoded.
pub async fn verify(
    js: &jetstream::Context,
    aggregate_type: Option<&str>,
) -> Result<VerifyReport, StoreError> {
    let end = stream_last_position(js).await?;
    let mut report = VerifyReport::default();
    if end == 0 {
        return Ok(report);
    }
    // Unfiltered: the end position is the stream's, so the read always reaches it even
    // when the last commits belong to other types; the type filter is applied here.
    let mut commits = read_all(js, 1, None).await?;
    let mut tips: HashMap<(String, String), ChainTip> = HashMap::new();
    while let Some(commit) = commits.next().await {
        let commit = commit?;
        report.last_position = commit.position;
        let wanted = aggregate_type.is_none_or(|t| t == commit.envelope.aggregate_type);
        if wanted {
            check_commit(&commit, &mut tips, &mut report);
        }
        if commit.position >= end {
            break;
        }
    }
    report.aggregates = tips.len() as u64;
    Ok(report)
}

fn check_commit(
    commit: &RecordedCommit,
    tips: &mut HashMap<(String, String), ChainTip>,
    report: &mut VerifyReport,
) {
    let envelope = &commit.envelope;
    report.commits += 1;
    let key = (
        envelope.aggregate_type.clone(),
        envelope.aggregate_id.clone(),
    );
    let tip = tips.entry(key).or_insert(ChainTip {
        version: 0,
        hash: None,
    });
    let mut finding = |kind, detail: String| {
        report.findings.push(Finding {
            kind,
            position: commit.position,
            aggregate_type: envelope.aggregate_type.clone(),
            aggregate_id: envelope.aggregate_id.clone(),
            first_sequence: envelope.first_sequence,
            detail,
        });
    };
    match &envelope.hash {
        Some(stored) => {
            let expected = envelope.chain_hash(tip.hash.as_deref());
            if *stored != expected {
                finding(
                    FindingKind::Altered,
                    format!("hash {stored} does not match content and previous hash (expected {expected})"),
                );
            }
        }
        None if tip.hash.is_some() => finding(
            FindingKind::Altered,
            "no hash after a chained commit".to_owned(),
        ),
        None => report.unchained += 1,
    }
    if envelope.first_sequence <= tip.version {
        finding(
            FindingKind::Reordered,
            format!(
                "first sequence {} at or below the previous version {}",
                envelope.first_sequence, tip.version
            ),
        );
    } else if envelope.first_sequence != tip.version + 1 {
        finding(
            FindingKind::Gap,
            format!(
                "first sequence {} after version {} (expected {})",
                envelope.first_sequence,
                tip.version,
                tip.version + 1
            ),
        );
    }
    // Like the store, the next commit continues from this one, whatever it was.
    tip.version = envelope.last_sequence();
    tip.hash = envelope.hash.clone();
}

// ---------------------------------------------------------------------------------------
// History

/// One event of an aggregate with everything recorded about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEvent {
    /// The stream sequence of the commit holding the event.
    pub position: u64,
    /// The aggregate version of the event.
    pub version: usize,
    pub event_type: String,
    pub event_version: String,
    pub timestamp: DateTime<Utc>,
    pub actor: String,
    pub command_id: String,
    pub correlation_id: String,
    pub causation_id: String,
    pub event_id: Uuid,
    /// The payload as stored (not upcast).
    pub payload: Value,
    /// The hash of the commit holding the event (`None` when unchained).
    pub commit_hash: Option<String>,
}

/// One page of an aggregate's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryPage {
    pub events: Vec<HistoryEvent>,
    /// Pass this as `after_version` for the next page; `None` on the last page.
    pub next_after_version: Option<usize>,
}

/// Checks that `aggregate_type` is one an auditor can name.
///
/// # Errors
/// [`AuditError::UnknownType`] otherwise.
pub fn check_type(aggregate_type: &str) -> Result<(), AuditError> {
    if AGGREGATE_TYPES.contains(&aggregate_type) {
        Ok(())
    } else {
        Err(AuditError::UnknownType(aggregate_type.to_owned()))
    }
}

/// Up to `limit` events of one aggregate with a version above `after_version`, oldest
/// first. Reads the aggregate's subject batch by batch and stops once the page is full.
///
/// # Errors
/// [`AuditError::UnknownType`], [`AuditError::NotFound`] when the aggregate has no
/// events at all, [`AuditError::Store`] when the log cannot be read.
pub async fn history(
    client: &async_nats::Client,
    aggregate_type: &str,
    aggregate_id: &str,
    after_version: usize,
    limit: usize,
) -> Result<HistoryPage, AuditError> {
    check_type(aggregate_type)?;
    let subject = aggregate_subject(aggregate_type, aggregate_id);
    let mut events = Vec::new();
    let mut after = 0;
    let mut any = false;
    // One more than asked for tells whether there is a next page.
    'read: loop {
        let batch = read_subject_batch(client, &subject, after).await?;
        let complete = batch.len() < DIRECT_GET_BATCH;
        for (position, payload) in batch {
            any = true;
            after = position;
            let commit = RecordedCommit::decode(position, &payload)?;
            let envelope = &commit.envelope;
            for (index, event) in envelope.events.iter().enumerate() {
                let version = envelope.first_sequence + index;
                if version <= after_version {
                    continue;
                }
                if events.len() > limit {
                    break 'read;
                }
                events.push(HistoryEvent {
                    position,
                    version,
                    event_type: event.event_type.clone(),
                    event_version: event.event_version.clone(),
                    timestamp: envelope.timestamp,
                    actor: envelope.actor.clone(),
                    command_id: envelope.command_id.clone(),
                    correlation_id: envelope.correlation_id.clone(),
                    causation_id: envelope.causation_id.clone(),
                    event_id: event.event_id,
                    payload: event.payload.clone(),
                    commit_hash: envelope.hash.clone(),
                });
            }
        }
        if complete {
            break;
        }
    }
    if !any {
        return Err(AuditError::NotFound {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
        });
    }
    let next_after_version = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|event| event.version)
    } else {
        None
    };
    Ok(HistoryPage {
        events,
        next_after_version,
    })
}

// ---------------------------------------------------------------------------------------
// State at a point

/// How far into an aggregate's history to fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Up to and including this aggregate version.
    Version(usize),
    /// Every event at or before this stream position.
    Position(u64),
    /// Every event stored at or before this time.
    At(DateTime<Utc>),
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Version(version) => write!(f, "version {version}"),
            Bound::Position(position) => write!(f, "position {position}"),
            Bound::At(at) => write!(f, "{}", at.to_rfc3339()),
        }
    }
}

/// An aggregate's state as of a bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateAt {
    /// The version of the last event folded.
    pub version: usize,
    /// The position of the commit holding that event.
    pub position: u64,
    /// When that commit was stored.
    pub timestamp: DateTime<Utc>,
    /// The aggregate state, as it serialises.
    pub state: Value,
}

/// The state of one aggregate as of `bound`, rebuilt by folding only the events up to
/// the bound through the aggregate's upcasters (the store's own decode path).
///
/// # Errors
/// [`AuditError::UnknownType`], [`AuditError::NotFound`], [`AuditError::BeforeFirstEvent`],
/// [`AuditError::VersionPastEnd`], or [`AuditError::Store`] when the log cannot be read
/// or an event does not decode.
pub async fn state_at(
    client: &async_nats::Client,
    aggregate_type: &str,
    aggregate_id: &str,
    bound: Bound,
) -> Result<StateAt, AuditError> {
    use domain::{inventory, order, payment, product, saga};
    match aggregate_type {
        "product" => {
            fold_to::<product::Product>(client, aggregate_id, bound, &product::upcasters()).await
        }
        "inventory" => {
            fold_to::<inventory::Inventory>(client, aggregate_id, bound, &inventory::upcasters())
                .await
        }
        "order" => fold_to::<order::Order>(client, aggregate_id, bound, &order::upcasters()).await,
        "payment" => {
            fold_to::<payment::Payment>(client, aggregate_id, bound, &payment::upcasters()).await
        }
        "order_saga" => {
            fold_to::<saga::OrderSaga>(client, aggregate_id, bound, &saga::upcasters()).await
        }
        other => Err(AuditError::UnknownType(other.to_owned())),
    }
}

/// [`state_at`] for one aggregate type.
///
/// # Errors
/// As [`state_at`].
pub async fn fold_to<A: Aggregate>(
    client: &async_nats::Client,
    aggregate_id: &str,
    bound: Bound,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<StateAt, AuditError> {
    let subject = aggregate_subject(A::TYPE, aggregate_id);
    let mut state = A::default();
    let mut folded: Option<(usize, u64, DateTime<Utc>)> = None;
    let mut last_version = 0;
    let mut after = 0;
    'read: loop {
        let batch = read_subject_batch(client, &subject, after).await?;
        let complete = batch.len() < DIRECT_GET_BATCH;
        for (position, payload) in batch {
            after = position;
            let commit = RecordedCommit::decode(position, &payload)?;
            last_version = commit.envelope.last_sequence();
            let timestamp = commit.envelope.timestamp;
            let commit_within = match bound {
                Bound::Position(bound) => position <= bound,
                Bound::At(at) => timestamp <= at,
                Bound::Version(_) => true,
            };
            if !commit_within {
                break 'read;
            }
            for envelope in commit.into_event_envelopes::<A>(upcasters)? {
                if matches!(bound, Bound::Version(version) if envelope.sequence > version) {
                    break 'read;
                }
                let version = envelope.sequence;
                state.apply(envelope.payload);
                folded = Some((version, position, timestamp));
            }
        }
        if complete {
            break;
        }
    }
    if after == 0 {
        return Err(AuditError::NotFound {
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
        });
    }
    if let Bound::Version(asked) = bound {
        if asked > last_version {
            return Err(AuditError::VersionPastEnd {
                asked,
                last: last_version,
            });
        }
    }
    let Some((version, position, timestamp)) = folded else {
        return Err(AuditError::BeforeFirstEvent(bound.to_string()));
    };
    let state = serde_json::to_value(&state)
        .map_err(|e| StoreError::decode(format!("state of {}/{aggregate_id}", A::TYPE), e))?;
    Ok(StateAt {
        version,
        position,
        timestamp,
        state,
    })
}

/// Every commit of one aggregate stored at or before `position`, oldest first: what a
/// read model could have seen of that aggregate when the log ended there. An aggregate
/// with no commit by then gives an empty list.
///
/// # Errors
/// [`AuditError::Store`] when the log cannot be read or a commit does not decode.
pub async fn commits_until(
    client: &async_nats::Client,
    aggregate_type: &str,
    aggregate_id: &str,
    position: u64,
) -> Result<Vec<RecordedCommit>, AuditError> {
    let subject = aggregate_subject(aggregate_type, aggregate_id);
    let mut commits = Vec::new();
    let mut after = 0;
    loop {
        let batch = read_subject_batch(client, &subject, after).await?;
        let complete = batch.len() < DIRECT_GET_BATCH;
        for (at, payload) in batch {
            if at > position {
                return Ok(commits);
            }
            commits.push(RecordedCommit::decode(at, &payload)?);
            after = at;
        }
        if complete {
            return Ok(commits);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::{TimeZone, Utc};
    use serde_json::json;
    use uuid::Uuid;

    use super::{check_commit, FindingKind, VerifyReport};
    use crate::envelope::{CommitEnvelope, RecordedCommit, StoredEvent};

    fn envelope(first_sequence: usize, amount: i64) -> CommitEnvelope {
        CommitEnvelope {
            aggregate_type: "tally".to_owned(),
            aggregate_id: "a".to_owned(),
            first_sequence,
            command_id: format!("c{first_sequence}"),
            correlation_id: "corr".to_owned(),
            causation_id: "cause".to_owned(),
            actor: "system:test".to_owned(),
            timestamp: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            extra: Default::default(),
            events: vec![StoredEvent {
                event_id: Uuid::nil(),
                event_type: "Added".to_owned(),
                event_version: "1.0".to_owned(),
                payload: json!({ "Added": { "amount": amount } }),
            }],
            hash: None,
        }
    }

    /// A chain of `n` sealed one-event commits at positions 1..=n.
    fn chain(n: usize) -> Vec<RecordedCommit> {
        let mut previous: Option<String> = None;
        (1..=n)
            .map(|version| {
                let mut envelope = envelope(version, version as i64);
                envelope.seal(previous.as_deref());
                previous = envelope.hash.clone();
                RecordedCommit {
                    position: version as u64,
                    envelope,
                }
            })
            .collect()
    }

    fn check(commits: &[RecordedCommit]) -> VerifyReport {
        let mut tips = HashMap::new();
        let mut report = VerifyReport::default();
        for commit in commits {
            check_commit(commit, &mut tips, &mut report);
        }
        report
    }

    #[test]
    fn the_hash_is_hex_sha256_and_stable() {
        let first = envelope(1, 5);
        let hash = first.chain_hash(None);
        assert_eq!(hash.len(), 64);
        assert!(hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(hash, first.clone().chain_hash(None));
    }

    #[test]
    fn the_hash_covers_the_previous_hash_and_every_field() {
        let base = envelope(1, 5);
        let hash = base.chain_hash(None);
        assert_ne!(hash, base.chain_hash(Some("00")));
        let mut changed = base.clone();
        changed.events[0].payload = json!({ "Added": { "amount": 6 } });
        assert_ne!(hash, changed.chain_hash(None));
        let mut changed = base.clone();
        changed.actor = "system:mallory".to_owned();
        assert_ne!(hash, changed.chain_hash(None));
        let mut changed = base.clone();
        changed.first_sequence = 2;
        assert_ne!(hash, changed.chain_hash(None));
        let mut changed = base.clone();
        changed.timestamp = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 6).unwrap();
        assert_ne!(hash, changed.chain_hash(None));
    }

    #[test]
    fn the_hash_survives_a_round_trip_through_json() {
        let mut sealed = envelope(1, 5);
        sealed.seal(None);
        let read: CommitEnvelope =
            serde_json::from_slice(&serde_json::to_vec(&sealed).unwrap()).unwrap();
        assert_eq!(read.hash, Some(read.chain_hash(None)));
    }

    #[test]
    fn an_unchained_envelope_decodes_without_a_hash() {
        let mut json = serde_json::to_value(envelope(1, 5)).unwrap();
        assert!(json.get("hash").is_none());
        json.as_object_mut().unwrap().remove("hash");
        let read: CommitEnvelope = serde_json::from_value(json).unwrap();
        assert_eq!(read.hash, None);
    }

    #[test]
    fn a_clean_chain_has_no_findings() {
        let report = check(&chain(4));
        assert!(report.is_clean(), "{report:?}");
        assert_eq!((report.commits, report.unchained), (4, 0));
    }

    #[test]
    fn unchained_commits_are_counted_not_reported() {
        let commits: Vec<_> = (1..=3)
            .map(|v| RecordedCommit {
                position: v as u64,
                envelope: envelope(v, 1),
            })
            .collect();
        let report = check(&commits);
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.unchained, 3);
    }

    #[test]
    fn a_changed_payload_is_altered() {
        let mut commits = chain(3);
        commits[1].envelope.events[0].payload = json!({ "Added": { "amount": 1000 } });
        let report = check(&commits);
        let kinds: Vec<_> = report
            .findings
            .iter()
            .map(|f| (f.kind, f.position))
            .collect();
        // The next commit still chains to the stored hash, so only the changed one breaks.
        assert_eq!(kinds, [(FindingKind::Altered, 2)]);
    }

    #[test]
    fn a_removed_hash_after_the_chain_started_is_altered() {
        let mut commits = chain(2);
        commits[1].envelope.hash = None;
        let report = check(&commits);
        assert_eq!(report.findings[0].kind, FindingKind::Altered);
    }

    #[test]
    fn a_skipped_version_is_a_gap_and_a_repeated_one_is_reordered() {
        let mut gap = chain(2);
        gap[1].envelope.first_sequence = 3;
        let previous = gap[0].envelope.hash.clone();
        gap[1].envelope.seal(previous.as_deref());
        let report = check(&gap);
        assert_eq!(report.findings.len(), 1, "{report:?}");
        assert_eq!(report.findings[0].kind, FindingKind::Gap);

        let mut repeat = chain(2);
        repeat[1].envelope.first_sequence = 1;
        let previous = repeat[0].envelope.hash.clone();
        repeat[1].envelope.seal(previous.as_deref());
        let report = check(&repeat);
        assert_eq!(report.findings.len(), 1, "{report:?}");
        assert_eq!(report.findings[0].kind, FindingKind::Reordered);
    }
}
