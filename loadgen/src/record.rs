//! The load generator's record: one JSON line per request the API acknowledged.
//!
//! The checker judges the system against this file alone, so it holds only what the API
//! confirmed (an order id with its position, a cancellation or a receipt with its
//! position), never what was merely sent. Each line is flushed when written: a load
//! generator killed mid-run leaves a record of everything acknowledged until then.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

/// One acknowledged request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// `orderPlace` answered with an order and the position it was committed at.
    Order {
        order_id: Uuid,
        position: u64,
        lines: Vec<Line>,
        payment_token: String,
        customer: String,
        at: DateTime<Utc>,
    },
    /// `orderCancel` answered without user errors, at `position`.
    Cancel {
        order_id: Uuid,
        position: u64,
        at: DateTime<Utc>,
    },
    /// `inventoryReceive` answered without user errors (the setup's and restocks).
    Receive {
        sku: String,
        quantity: u32,
        reference: String,
        position: u64,
        at: DateTime<Utc>,
    },
}

/// An order line as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub quantity: u32,
}

/// Appends entries to the record file from any task.
#[derive(Debug, Clone)]
pub struct Recorder {
    sender: Option<mpsc::UnboundedSender<Entry>>,
}

impl Recorder {
    /// A recorder that writes nothing (no `--record`).
    pub fn disabled() -> Self {
        Self { sender: None }
    }

    /// Creates (truncates) `path` and writes every entry sent to it, one flushed line
    /// each, on a blocking thread; the returned handle ends once every recorder is dropped.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn create(
        path: &Path,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<anyhow::Result<()>>)> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("creating the record {}", path.display()))?;
        let (sender, mut receiver) = mpsc::unbounded_channel::<Entry>();
        let writer = tokio::task::spawn_blocking(move || {
            let mut file = std::io::BufWriter::new(file);
            while let Some(entry) = receiver.blocking_recv() {
                serde_json::to_writer(&mut file, &entry).context("encoding a record entry")?;
                file.write_all(b"\n").context("writing the record")?;
                file.flush().context("writing the record")?;
            }
            Ok(())
        });
        Ok((
            Self {
                sender: Some(sender),
            },
            writer,
        ))
    }

    /// Records one acknowledged request.
    pub fn record(&self, entry: Entry) {
        if let Some(sender) = &self.sender {
            // The writer only stops when every sender is gone, so this cannot fail while
            // `self` exists; if the writer died on an I/O error, its result reports it.
            let _ = sender.send(entry);
        }
    }
}

/// Reads a record; a last line cut short (the load generator was killed while writing
/// it) is skipped, any other bad line is an error.
///
/// # Errors
/// When the file cannot be read or a complete line is not an entry.
pub fn read(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening the record {}", path.display()))?;
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading the record {}", path.display()))?;
    let count = lines.len();
    let mut entries = Vec::with_capacity(count);
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(entry) => entries.push(entry),
            Err(error) if n + 1 == count && error.is_eof() => {
                tracing::warn!(line = n + 1, "skipping the record's truncated last line");
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "line {} of the record {} is not an entry",
                        n + 1,
                        path.display()
                    )
                })
            }
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(position: u64) -> Entry {
        Entry::Receive {
            sku: "MUG-1".to_owned(),
            quantity: 5,
            reference: "setup".to_owned(),
            position,
            at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn what_is_recorded_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.jsonl");
        let (recorder, writer) = Recorder::create(&path).unwrap();
        recorder.record(receipt(1));
        recorder.record(receipt(2));
        drop(recorder);
        writer.await.unwrap().unwrap();
        let positions: Vec<u64> = read(&path)
            .unwrap()
            .into_iter()
            .map(|e| match e {
                Entry::Receive { position, .. } => position,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(positions, [1, 2]);
    }

    #[test]
    fn a_last_line_cut_short_is_skipped_and_any_other_bad_line_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.jsonl");
        let whole = serde_json::to_string(&receipt(1)).unwrap();
        std::fs::write(&path, format!("{whole}\n{}", &whole[..whole.len() / 2])).unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);

        std::fs::write(&path, format!("{}\n{whole}\n", &whole[..whole.len() / 2])).unwrap();
        let error = format!("{:#}", read(&path).unwrap_err());
        assert!(error.contains("line 1"), "{error}");
    }
}
