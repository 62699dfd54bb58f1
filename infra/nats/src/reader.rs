//! Reading commits back: one aggregate's by subject, or the whole log from a position.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use async_nats::StatusCode;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::envelope::RecordedCommit;
use crate::error::StoreError;
use crate::subjects::EVENTS_STREAM;

/// How many commits one batch direct get asks for.
pub(crate) const DIRECT_GET_BATCH: usize = 256;
/// How long to wait for the next message of a batch before giving up.
const BATCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Serialize)]
struct BatchGetRequest<'a> {
    seq: u64,
    next_by_subj: &'a str,
    batch: usize,
}

/// Reads every commit on `subject` after stream sequence `after`, in order.
///
/// # Errors
/// [`StoreError::Nats`] on a timeout or a server error, [`StoreError::Decode`] on a bad payload.
pub(crate) async fn read_subject(
    client: &async_nats::Client,
    subject: &str,
    mut after: u64,
) -> Result<Vec<RecordedCommit>, StoreError> {
    let mut commits = Vec::new();
    loop {
        let batch = read_subject_batch(client, subject, after).await?;
        let complete = batch.len() < DIRECT_GET_BATCH;
        for (position, payload) in batch {
            commits.push(RecordedCommit::decode(position, &payload)?);
            after = position;
        }
        if complete {
            return Ok(commits);
        }
    }
}

/// Reads up to [`DIRECT_GET_BATCH`] raw commits on `subject` after stream sequence
/// `after`, in one request: fewer than a full batch means the subject's end was reached.
///
/// Uses batch direct get (ADR-31): the server walks only this subject's messages, so
/// loading an aggregate never scans other aggregates.
///
/// # Errors
/// [`StoreError::Nats`] on a timeout or a server error.
pub(crate) async fn read_subject_batch(
    client: &async_nats::Client,
    subject: &str,
    after: u64,
) -> Result<Vec<(u64, Bytes)>, StoreError> {
    read_batch(client, subject, after, DIRECT_GET_BATCH).await
}

/// Reads up to `batch` raw commits after stream sequence `after` whose subject matches
/// `filter` (wildcards allowed: `events.order.>`, `events.>`), in one request, in order.
/// An empty answer means nothing matching is stored after `after`; a short one does not
/// always mean the end (the server may cut a batch by size).
///
/// # Errors
/// [`StoreError::Nats`] on a timeout or a server error.
pub async fn read_batch(
    client: &async_nats::Client,
    filter: &str,
    after: u64,
    batch: usize,
) -> Result<Vec<(u64, Bytes)>, StoreError> {
    let subject = filter;
    let api_subject = format!("$JS.API.DIRECT.GET.{EVENTS_STREAM}");
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(StoreError::nats)?;
    let request = serde_json::to_vec(&BatchGetRequest {
        seq: after + 1,
        next_by_subj: subject,
        batch,
    })
    .map_err(StoreError::nats)?;
    client
        .publish_with_reply(api_subject, inbox, request.into())
        .await
        .map_err(StoreError::nats)?;
    let mut commits = Vec::new();
    while commits.len() < batch {
        let reply = tokio::time::timeout(BATCH_TIMEOUT, replies.next())
            .await
            .map_err(|_| StoreError::nats(format!("direct get on {subject} timed out")))?
            .ok_or_else(|| StoreError::nats("reply subscription closed"))?;
        match reply.status {
            // 204 (EOB) ends a batch; 404 says nothing (more) is stored on this subject.
            Some(status) if status.as_u16() == 204 || status == StatusCode::NOT_FOUND => break,
            Some(status) if status != StatusCode::OK => {
                return Err(StoreError::nats(format!(
                    "direct get on {subject} answered {status}: {}",
                    reply.description.unwrap_or_default()
                )))
            }
            _ => {}
        }
        let position = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Sequence"))
            .and_then(|v| v.as_str().parse::<u64>().ok())
            .ok_or_else(|| StoreError::decode("direct get reply", "no Nats-Sequence header"))?;
        commits.push((position, reply.payload));
    }
    Ok(commits)
}

/// What a durable consumer of one aggregate type's commits has not finished: commits not
/// yet delivered or delivered and not acknowledged, and when the oldest of them was
/// committed (`None` when there are none, or the consumer does not exist yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerBacklog {
    pub commits: u64,
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
}

/// The backlog of durable consumer `consumer`, which reads `aggregate_type`'s commits.
///
/// # Errors
/// [`StoreError::Nats`] when the stream or the oldest commit cannot be read.
pub async fn consumer_backlog(
    js: &jetstream::Context,
    consumer: &str,
    aggregate_type: &str,
) -> Result<ConsumerBacklog, StoreError> {
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(StoreError::nats)?;
    let Ok(info) = stream.consumer_info(consumer).await else {
        // Nobody has consumed yet: nothing is waiting on this consumer.
        return Ok(ConsumerBacklog {
            commits: 0,
            oldest: None,
        });
    };
    let commits = info.num_pending + u64::try_from(info.num_ack_pending).unwrap_or(0);
    if commits == 0 {
        return Ok(ConsumerBacklog {
            commits,
            oldest: None,
        });
    }
    let oldest = stream
        .direct_get_next_for_subject(
            crate::subjects::aggregate_type_filter(aggregate_type),
            Some(info.ack_floor.stream_sequence + 1),
        )
        .await
        .map_err(StoreError::nats)?;
    Ok(ConsumerBacklog {
        commits,
        oldest: Some(oldest.time),
    })
}

/// The stream sequence of the newest commit in the log (0 when empty).
///
/// # Errors
/// [`StoreError::Nats`] when the stream cannot be read.
pub async fn stream_last_position(js: &jetstream::Context) -> Result<u64, StoreError> {
    let mut stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(StoreError::nats)?;
    let info = stream.info().await.map_err(StoreError::nats)?;
    Ok(info.state.last_sequence)
}

/// Every commit from `from_position` (inclusive) on, optionally filtered by subject
/// (`events.order.*`), following the log live: the stream never ends by itself.
///
/// Backed by an ordered consumer, which the client recreates on gaps or server restarts.
///
/// # Errors
/// [`StoreError::Nats`] when the consumer cannot be created.
pub async fn read_all(
    js: &jetstream::Context,
    from_position: u64,
    filter_subject: Option<String>,
) -> Result<BoxStream<'static, Result<RecordedCommit, StoreError>>, StoreError> {
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(StoreError::nats)?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from_position.max(1),
            },
            filter_subject: filter_subject.unwrap_or_default(),
            ..Default::default()
        })
        .await
        .map_err(StoreError::nats)?;
    let messages = consumer.messages().await.map_err(StoreError::nats)?;
    Ok(messages
        .map_err(StoreError::nats)
        .and_then(|message| async move {
            let info = message.info().map_err(StoreError::nats)?;
            RecordedCommit::decode(info.stream_sequence, &message.payload)
        })
        .boxed())
}

/// The aggregate type of the commit at `position` (`order`), or `None` when the log has
/// no message there (past its end, or never written).
///
/// Asks the stream leader, so a commit acknowledged a moment ago is always found.
///
/// # Errors
/// [`StoreError::Nats`] when the stream cannot be read.
pub async fn aggregate_type_at(
    js: &jetstream::Context,
    position: u64,
) -> Result<Option<String>, StoreError> {
    if position == 0 {
        return Ok(None);
    }
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(StoreError::nats)?;
    match stream.get_raw_message(position).await {
        Ok(message) => Ok(crate::subjects::parse_aggregate_subject(&message.subject)
            .map(|(aggregate_type, _)| aggregate_type)),
        Err(error)
            if error.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
        {
            Ok(None)
        }
        Err(error) => Err(StoreError::nats(error)),
    }
}

/// The first and last stream position of the log (`(0, 0)` when it is empty).
///
/// # Errors
/// [`StoreError::Nats`] when the stream cannot be read.
pub async fn stream_range(js: &jetstream::Context) -> Result<(u64, u64), StoreError> {
    let mut stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(StoreError::nats)?;
    let info = stream.info().await.map_err(StoreError::nats)?;
    Ok((info.state.first_sequence, info.state.last_sequence))
}

/// The first position stored at or after `at`, or `None` when every commit is older.
///
/// A binary search over stream positions by the time the server stored each message
/// (monotonic within a stream): about log2(commits) direct gets.
///
/// # Errors
/// [`StoreError::Nats`] when the stream cannot be read.
pub async fn first_position_at_or_after(
    js: &jetstream::Context,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<u64>, StoreError> {
    let (first, last) = stream_range(js).await?;
    if last == 0 {
        return Ok(None);
    }
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(StoreError::nats)?;
    let stored_at = |position: u64| {
        let stream = &stream;
        async move {
            let message = stream
                .get_raw_message(position)
                .await
                .map_err(StoreError::nats)?;
            Ok::<_, StoreError>(message.time.with_timezone(&chrono::Utc))
        }
    };
    if stored_at(last).await? < at {
        return Ok(None);
    }
    // Invariant: the answer lies in [low, high].
    let (mut low, mut high) = (first.max(1), last);
    while low < high {
        let middle = low + (high - low) / 2;
        if stored_at(middle).await? < at {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    Ok(Some(low))
}
