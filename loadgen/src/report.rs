//! What a run measured: per operation, how many requests, how fast, and what failed.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::client::Failure;
use super::mix::Operation;

/// Latencies above this are clamped (the request timeout is far below).
const MAX_MICROS: u64 = 10 * 60 * 1_000_000;

#[derive(Debug)]
struct OperationStats {
    latency: Histogram<u64>,
    ok: u64,
    refused: u64,
    errors: u64,
}

impl OperationStats {
    fn new() -> Self {
        Self {
            // Three significant digits from 1 µs to ten minutes.
            latency: Histogram::new_with_bounds(1, MAX_MICROS, 3)
                .expect("static histogram bounds are valid"),
            ok: 0,
            refused: 0,
            errors: 0,
        }
    }
}

/// Outcomes collected from every request task.
#[derive(Debug, Default)]
pub struct Collector {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    operations: BTreeMap<Operation, OperationStats>,
    codes: BTreeMap<(Operation, &'static str, String), u64>,
    acknowledged: Acknowledged,
}

/// Requests the API acknowledged, as written to the record.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Acknowledged {
    pub orders: u64,
    pub cancellations: u64,
    pub receipts: u64,
}

impl Collector {
    /// Counts one request of `op` that took `latency` (from when it was due, so that
    /// time spent waiting behind a slow server counts) and ended with `outcome`.
    pub fn observe(&self, op: Operation, latency: Duration, outcome: Result<(), &Failure>) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let stats = inner
            .operations
            .entry(op)
            .or_insert_with(OperationStats::new);
        // Clamped into the histogram's bounds above, so recording cannot fail.
        let _ = stats.latency.record(micros);
        match outcome {
            Ok(()) => stats.ok += 1,
            Err(failure) if failure.is_refusal() => stats.refused += 1,
            Err(_) => stats.errors += 1,
        }
        if let Err(failure) = outcome {
            let kind = if failure.is_refusal() {
                "refused"
            } else {
                "error"
            };
            *inner
                .codes
                .entry((op, kind, failure.code().to_owned()))
                .or_default() += 1;
        }
    }

    /// Counts what the record got.
    pub fn acknowledge(&self, update: impl FnOnce(&mut Acknowledged)) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        update(&mut inner.acknowledged);
    }

    /// Requests completed so far.
    pub fn completed(&self) -> u64 {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .operations
            .values()
            .map(|s| s.ok + s.refused + s.errors)
            .sum()
    }

    /// The summary of a run that lasted `elapsed`.
    pub fn summary(&self, run: RunInfo, elapsed: Duration) -> Summary {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
        let row = |name: String, s: &OperationStats| {
            let count = s.ok + s.refused + s.errors;
            let ms = |q: f64| s.latency.value_at_quantile(q) as f64 / 1000.0;
            OperationSummary {
                operation: name,
                requests: count,
                ok: s.ok,
                refused: s.refused,
                errors: s.errors,
                per_second: count as f64 / seconds,
                p50_ms: ms(0.50),
                p95_ms: ms(0.95),
                p99_ms: ms(0.99),
                max_ms: s.latency.max() as f64 / 1000.0,
            }
        };
        let mut operations: Vec<OperationSummary> = inner
            .operations
            .iter()
            .map(|(op, s)| row(op.as_str().to_owned(), s))
            .collect();
        let mut all = OperationStats::new();
        for s in inner.operations.values() {
            // Both histograms have the same bounds.
            let _ = all.latency.add(&s.latency);
            all.ok += s.ok;
            all.refused += s.refused;
            all.errors += s.errors;
        }
        let total = row("total".to_owned(), &all);
        operations.push(total);
        Summary {
            run,
            elapsed_seconds: seconds,
            operations,
            failures: inner
                .codes
                .iter()
                .map(|((op, kind, code), count)| FailureCount {
                    operation: op.as_str().to_owned(),
                    kind,
                    code: code.clone(),
                    count: *count,
                })
                .collect(),
            acknowledged: inner.acknowledged,
        }
    }
}

/// The run's settings, repeated in its summary.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub urls: Vec<String>,
    pub rate: f64,
    pub duration_seconds: f64,
    pub concurrency: usize,
    pub seed: u64,
    pub customers: usize,
    pub skus: usize,
    pub mix: Vec<(String, f64)>,
    /// Requests due while all `concurrency` slots were busy: each waited for one, and
    /// its latency includes the wait.
    pub delayed_by_concurrency: u64,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct OperationSummary {
    pub operation: String,
    pub requests: u64,
    pub ok: u64,
    /// Answered with `userErrors` (a rule of the shop, such as `INSUFFICIENT_STOCK`).
    pub refused: u64,
    /// No usable answer: transport failures, HTTP and GraphQL errors.
    pub errors: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// How often one operation failed with one code.
#[derive(Debug, Clone, Serialize)]
pub struct FailureCount {
    pub operation: String,
    /// `refused` (a user error) or `error`.
    pub kind: &'static str,
    pub code: String,
    pub count: u64,
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run: RunInfo,
    pub elapsed_seconds: f64,
    pub operations: Vec<OperationSummary>,
    pub failures: Vec<FailureCount>,
    pub acknowledged: Acknowledged,
}

impl Summary {
    /// The report as a table for people.
    pub fn table(&self) -> String {
        let mut out = format!(
            "offered {:.0} requests/s for {:.0} s ({:.1} s with the tail) over {} endpoint(s), \
             concurrency cap {}, seed {}, {} customers, {} SKUs\n",
            self.run.rate,
            self.run.duration_seconds,
            self.elapsed_seconds,
            self.run.urls.len(),
            self.run.concurrency,
            self.run.seed,
            self.run.customers,
            self.run.skus,
        );
        out.push_str(&format!(
            "{:<13} {:>8} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "operation",
            "requests",
            "ok",
            "refused",
            "errors",
            "req/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms"
        ));
        for row in &self.operations {
            out.push_str(&format!(
                "{:<13} {:>8} {:>8} {:>8} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}\n",
                row.operation,
                row.requests,
                row.ok,
                row.refused,
                row.errors,
                row.per_second,
                row.p50_ms,
                row.p95_ms,
                row.p99_ms,
                row.max_ms
            ));
        }
        if self.failures.is_empty() {
            out.push_str("no refusals or errors\n");
        } else {
            out.push_str(&format!(
                "{:<13} {:<8} {:<24} {:>8}\n",
                "operation", "kind", "code", "count"
            ));
            for f in &self.failures {
                out.push_str(&format!(
                    "{:<13} {:<8} {:<24} {:>8}\n",
                    f.operation, f.kind, f.code, f.count
                ));
            }
        }
        if self.run.delayed_by_concurrency > 0 {
            out.push_str(&format!(
                "{} requests waited for a free slot (--concurrency): their latency includes the wait\n",
                self.run.delayed_by_concurrency
            ));
        }
        out.push_str(&format!(
            "acknowledged: {} orders, {} cancellations, {} stock receipts\n",
            self.acknowledged.orders, self.acknowledged.cancellations, self.acknowledged.receipts
        ));
        out
    }
}
