//! The projector runtime against real JetStream and PostgreSQL, with a test projection
//! that records every commit it applies, so that loss, duplication and reordering are
//! visible.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_trait::async_trait;
use chrono::Utc;
use domain::ids::Sku;
use domain::inventory::{Inventory, InventoryEvent};
use futures::StreamExt;
use infra_nats::subjects::aggregate_subject;
use infra_nats::{provision, StreamSettings};
use projections::dead_letters::{self, Action, DeadLetterFilter, DeadLetterStatus, ParkedSequence};
use projections::fixtures;
use projections::runtime::replay::{self, Selection};
use projections::runtime::{rebuild, Projector, ProjectorConfig, RebuildOptions, RetryPolicy};
use projections::{ApplyError, Delivery, Projection};
use sqlx::{PgConnection, PgPool};
use testkit::{eventually, NatsServer, TestDatabase};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(30);

/// Per SKU: every applied position in order, and the units received. Commits whose
/// reference is `poison` fail until `fixed` is set. Live deliveries also write an
/// "effects" row, which must never be written on a rebuild.
struct Ledger {
    fixed: Arc<AtomicBool>,
    version: i32,
    aggregate_types: &'static [&'static str],
}

#[async_trait]
impl Projection for Ledger {
    fn name(&self) -> &'static str {
        "ledger"
    }
    fn schema(&self) -> &'static str {
        "ledger"
    }
    fn version(&self) -> i32 {
        self.version
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        self.aggregate_types
    }
    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[Delivery<'_>],
    ) -> Result<(), ApplyError> {
        for delivery in batch {
            let events = delivery.events::<Inventory>(&domain::inventory::upcasters())?;
            for event in events {
                let InventoryEvent::StockReceived {
                    sku,
                    quantity,
                    reference,
                } = event.payload
                else {
                    continue;
                };
                if reference == "poison" && !self.fixed.load(Ordering::SeqCst) {
                    return Err(ApplyError::Inconsistent("poison reference".into()));
                }
                sqlx::query(
                    "INSERT INTO skus (sku, received, positions) VALUES ($1, $2, ARRAY[$3::bigint])
                     ON CONFLICT (sku) DO UPDATE
                        SET received = skus.received + $2,
                            positions = skus.positions || $3::bigint",
                )
                .bind(sku.as_str())
                .bind(i64::from(quantity))
                .bind(delivery.position() as i64)
                .execute(&mut *conn)
                .await?;
            }
            if delivery.mode.allows_side_effects() {
                sqlx::query("INSERT INTO public.ledger_effects (position) VALUES ($1)")
                    .bind(delivery.position() as i64)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
}

struct Harness {
    nats: NatsServer,
    db: TestDatabase,
    jetstream: jetstream::Context,
    fixed: Arc<AtomicBool>,
}

impl Harness {
    async fn start() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let nats = NatsServer::start();
        let db = TestDatabase::create().await.unwrap();
        projections::migrate(&db.pool).await.unwrap();
        sqlx::raw_sql(
            "CREATE SCHEMA ledger;
             CREATE TABLE ledger.skus (sku text PRIMARY KEY, received bigint NOT NULL,
                                       positions bigint[] NOT NULL);
             CREATE TABLE public.ledger_effects (position bigint PRIMARY KEY);",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let client = infra_nats::connect(&nats.url()).await.unwrap();
        let jetstream = jetstream::new(client);
        provision(&jetstream, &StreamSettings::default())
            .await
            .unwrap();
        Self {
            nats,
            db,
            jetstream,
            fixed: Arc::new(AtomicBool::new(false)),
        }
    }

    fn projection(&self) -> Arc<dyn Projection> {
        Arc::new(Ledger {
            fixed: Arc::clone(&self.fixed),
            version: 1,
            aggregate_types: &["inventory"],
        })
    }

    /// Runs a projector until the returned sender is dropped or fired.
    fn spawn_projector(&self) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let projector = Projector::new(
            self.projection(),
            self.db.pool.clone(),
            self.jetstream.clone(),
            config(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(projector.run(async {
            let _ = stopped.await;
        }));
        (stop, task)
    }

    /// Appends one commit receiving `quantity` units of `sku`; returns its position.
    async fn receive(&self, sku: &str, quantity: u32, reference: &str) -> u64 {
        receive_on(&self.jetstream, sku, quantity, reference).await
    }

    async fn publish(&self, sku: &str, payload: Vec<u8>) -> u64 {
        self.jetstream
            .publish(aggregate_subject("inventory", sku), payload.into())
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence
    }

    async fn position(&self) -> i64 {
        position_of(&self.db.pool, "ledger").await
    }

    async fn wait_for_position(&self, position: u64) {
        eventually("the projector to reach the last position", WAIT, || async {
            (self.position().await >= position as i64).then_some(())
        })
        .await;
    }

    async fn ledger(&self) -> BTreeMap<String, (i64, Vec<i64>)> {
        ledger_rows(&self.db.pool, "ledger").await
    }
}

/// Appends one commit receiving `quantity` units of `sku`, as the event store writes it;
/// returns its position.
async fn receive_on(
    jetstream: &jetstream::Context,
    sku: &str,
    quantity: u32,
    reference: &str,
) -> u64 {
    let event = InventoryEvent::StockReceived {
        sku: Sku::parse(sku).unwrap(),
        quantity,
        reference: reference.to_owned(),
    };
    let commit = fixtures::commit::<Inventory>(0, sku, 1, &[event], Utc::now());
    jetstream
        .publish(
            aggregate_subject("inventory", sku),
            serde_json::to_vec(&commit.envelope).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

/// How many live effects the ledger projection caused.
async fn effects(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ledger_effects")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn position_of(pool: &PgPool, projector: &str) -> i64 {
    sqlx::query_scalar("SELECT position FROM projector_positions WHERE projector = $1")
        .bind(projector)
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

async fn ledger_rows(pool: &PgPool, schema: &str) -> BTreeMap<String, (i64, Vec<i64>)> {
    let rows: Vec<(String, i64, Vec<i64>)> = sqlx::query_as(&format!(
        "SELECT sku, received, positions FROM {schema}.skus ORDER BY sku"
    ))
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().map(|(s, r, p)| (s, (r, p))).collect()
}

fn config() -> ProjectorConfig {
    ProjectorConfig {
        batch_size: 64,
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
        },
        standby_poll: Duration::from_millis(100),
        leadership_check: Duration::from_millis(200),
        ..ProjectorConfig::default()
    }
}

/// What the test itself appended: per SKU, the units and positions in order.
#[derive(Default)]
struct Oracle(BTreeMap<String, (i64, Vec<i64>)>);

impl Oracle {
    fn record(&mut self, sku: &str, quantity: u32, position: u64) {
        let entry = self.0.entry(sku.to_owned()).or_default();
        entry.0 += i64::from(quantity);
        entry.1.push(position as i64);
    }
}

#[tokio::test]
async fn every_commit_is_applied_once_in_order_across_restarts_and_batches() {
    let harness = Harness::start().await;
    let mut oracle = Oracle::default();
    // A backlog first (applied in batches), then live commits while it runs.
    for i in 0..300u32 {
        let sku = format!("SKU-{}", i % 7);
        let position = harness.receive(&sku, i % 5 + 1, "po").await;
        oracle.record(&sku, i % 5 + 1, position);
    }
    let (stop, task) = harness.spawn_projector();
    let mut last = 0;
    for i in 0..100u32 {
        let sku = format!("SKU-{}", i % 3);
        last = harness.receive(&sku, 2, "po").await;
        oracle.record(&sku, 2, last);
    }
    harness.wait_for_position(last).await;
    assert_eq!(harness.ledger().await, oracle.0);
    drop(stop);
    task.await.unwrap();

    // A new instance resumes from the stored position: nothing applied twice.
    for i in 0..50u32 {
        let sku = format!("SKU-{}", i % 4);
        last = harness.receive(&sku, 1, "po").await;
        oracle.record(&sku, 1, last);
    }
    let (stop, task) = harness.spawn_projector();
    harness.wait_for_position(last).await;
    assert_eq!(harness.ledger().await, oracle.0);
    let effects = effects(&harness.db.pool).await;
    assert_eq!(effects, 450, "one live effect per commit");
    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn a_poison_commit_parks_its_aggregate_while_others_flow_and_can_be_retried_in_order() {
    let harness = Harness::start().await;
    let (stop, task) = harness.spawn_projector();
    let mut oracle = Oracle::default();

    let ok_a1 = harness.receive("A", 1, "po").await;
    oracle.record("A", 1, ok_a1);
    let poison = harness.receive("A", 10, "poison").await;
    let behind_1 = harness.receive("A", 100, "po").await;
    let other = harness.receive("B", 5, "po").await;
    oracle.record("B", 5, other);
    let garbage = harness.publish("C", b"{not json".to_vec()).await;
    let behind_2 = harness.receive("A", 1000, "po").await;
    let after_c = harness.receive("C", 7, "po").await;
    let last = harness.receive("B", 6, "po").await;
    oracle.record("B", 6, last);
    harness.wait_for_position(last).await;

    // A stops at its poison commit; B flows; C stops at its undecodable commit.
    assert_eq!(harness.ledger().await, oracle.0);
    let parked = dead_letters::list(&harness.db.pool, &DeadLetterFilter::default(), 100)
        .await
        .unwrap();
    let summary: Vec<(i64, &str, Option<i64>, i32)> = parked
        .iter()
        .map(|d| {
            (
                d.position,
                d.aggregate_id.as_str(),
                d.blocked_by,
                d.attempts,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (poison as i64, "A", None, 3),
            (behind_1 as i64, "A", Some(poison as i64), 0),
            (garbage as i64, "C", None, 1),
            (behind_2 as i64, "A", Some(poison as i64), 0),
            (after_c as i64, "C", Some(garbage as i64), 0),
        ]
    );
    assert!(
        parked[0].error.contains("poison reference"),
        "{}",
        parked[0].error
    );
    assert!(
        parked[2].error.contains("commit at position"),
        "{}",
        parked[2].error
    );
    assert!(parked
        .iter()
        .all(|d| d.consumer == "ledger" && d.mode == "live"));

    // After the fix, a retry applies A's sequence in order; the live projector then
    // lets A's new commits through.
    harness.fixed.store(true, Ordering::SeqCst);
    let sequence = ParkedSequence {
        consumer: "ledger".into(),
        aggregate_type: "inventory".into(),
        aggregate_id: "A".into(),
    };
    let outcome = dead_letters::act(
        &harness.db.pool,
        &harness.projection(),
        &sequence,
        Action::Retry,
        "operator:ada",
        "fixed the poison check",
    )
    .await
    .unwrap();
    assert_eq!(
        outcome.applied,
        vec![poison as i64, behind_1 as i64, behind_2 as i64]
    );
    oracle.record("A", 10, poison);
    oracle.record("A", 100, behind_1);
    oracle.record("A", 1000, behind_2);
    let next_a = harness.receive("A", 3, "po").await;
    oracle.record("A", 3, next_a);
    harness.wait_for_position(next_a).await;
    eventually("A's new commit to be applied", WAIT, || async {
        (harness.ledger().await == oracle.0).then_some(())
    })
    .await;

    // C's head can never decode: skip it (its successor is then applied), recorded.
    let c = ParkedSequence {
        aggregate_id: "C".into(),
        ..sequence.clone()
    };
    let empty_reason = dead_letters::act(
        &harness.db.pool,
        &harness.projection(),
        &c,
        Action::Skip,
        "operator:ada",
        " ",
    )
    .await;
    assert!(matches!(
        empty_reason,
        Err(dead_letters::DeadLetterError::ReasonRequired)
    ));
    let skipped = dead_letters::act(
        &harness.db.pool,
        &harness.projection(),
        &c,
        Action::Skip,
        "operator:ada",
        "garbage written by a broken client",
    )
    .await
    .unwrap();
    assert_eq!(skipped.dropped, vec![garbage as i64]);
    assert_eq!(skipped.applied, vec![after_c as i64]);
    oracle.record("C", 7, after_c);
    assert_eq!(harness.ledger().await, oracle.0);

    // Nothing is parked now; discarding an empty sequence is refused.
    assert!(
        dead_letters::list(&harness.db.pool, &DeadLetterFilter::default(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let nothing = dead_letters::act(
        &harness.db.pool,
        &harness.projection(),
        &c,
        Action::Discard,
        "operator:ada",
        "again",
    )
    .await;
    assert!(matches!(
        nothing,
        Err(dead_letters::DeadLetterError::NothingParked { .. })
    ));
    let history = dead_letters::history(&harness.db.pool, Some("ledger"), 10)
        .await
        .unwrap();
    let actions: Vec<(&str, &str, &str)> = history
        .iter()
        .map(|a| (a.action.as_str(), a.actor.as_str(), a.aggregate_id.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("skip", "operator:ada", "C"),
            ("retry", "operator:ada", "A")
        ]
    );
    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn discard_drops_a_parked_sequence_without_applying_it() {
    let harness = Harness::start().await;
    let (stop, task) = harness.spawn_projector();
    let poison = harness.receive("A", 10, "poison").await;
    let behind = harness.receive("A", 1, "po").await;
    harness.wait_for_position(behind).await;
    let sequence = ParkedSequence {
        consumer: "ledger".into(),
        aggregate_type: "inventory".into(),
        aggregate_id: "A".into(),
    };
    let outcome = dead_letters::act(
        &harness.db.pool,
        &harness.projection(),
        &sequence,
        Action::Discard,
        "operator:ada",
        "test data",
    )
    .await
    .unwrap();
    assert_eq!(outcome.dropped, vec![poison as i64, behind as i64]);
    assert!(outcome.applied.is_empty());
    let discarded = dead_letters::list(
        &harness.db.pool,
        &DeadLetterFilter {
            status: Some(DeadLetterStatus::Discarded),
            ..DeadLetterFilter::default()
        },
        10,
    )
    .await
    .unwrap();
    assert_eq!(discarded.len(), 2);
    // A is no longer parked: its next commit is applied.
    let next = harness.receive("A", 4, "po").await;
    eventually("A's next commit", WAIT, || async {
        (harness.ledger().await.get("A") == Some(&(4, vec![next as i64]))).then_some(())
    })
    .await;
    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn two_replicas_lose_nothing_and_reorder_nothing_when_the_active_one_dies() {
    let harness = Harness::start().await;
    let mut oracle = Oracle::default();
    // The first replica is the active one (it is alone when the first commit lands).
    let first = harness.spawn_projector();
    let mut last = harness.receive("SKU-0", 1, "po").await;
    oracle.record("SKU-0", 1, last);
    harness.wait_for_position(last).await;
    let second = harness.spawn_projector();
    for i in 1..200u32 {
        let sku = format!("SKU-{}", i % 5);
        last = harness.receive(&sku, 1, "po").await;
        oracle.record(&sku, 1, last);
        if i == 100 {
            // The active replica dies mid-stream; the standby takes over.
            first.1.abort();
        }
    }
    harness.wait_for_position(last).await;
    assert_eq!(harness.ledger().await, oracle.0);
    drop(second.0);
    second.1.await.unwrap();
}

#[tokio::test]
async fn a_delivery_out_of_sequence_is_detected_and_nothing_is_skipped() {
    let harness = Harness::start().await;
    let mut oracle = Oracle::default();
    let mut last = 0;
    for _ in 0..100u32 {
        last = harness.receive("A", 1, "po").await;
        oracle.record("A", 1, last);
    }
    let (stop, task) = harness.spawn_projector();
    harness.wait_for_position(last).await;
    // A rogue client pulls from the projector's durable consumer and takes deliveries.
    let stream = harness.jetstream.get_stream("EVENTS").await.unwrap();
    let consumer: jetstream::consumer::PullConsumer =
        stream.get_consumer("projector-ledger").await.unwrap();
    let rogue = tokio::spawn(async move {
        let mut messages = consumer.messages().await.unwrap();
        while let Some(Ok(message)) = messages.next().await {
            let _ = message; // taken, never acknowledged
        }
    });
    for _ in 0..200u32 {
        last = harness.receive("A", 1, "po").await;
        oracle.record("A", 1, last);
    }
    harness.wait_for_position(last).await;
    rogue.abort();
    assert_eq!(harness.ledger().await, oracle.0);
    let gaps: i64 = sqlx::query_scalar(
        "SELECT gaps_detected FROM projector_positions WHERE projector = 'ledger'",
    )
    .fetch_one(&harness.db.pool)
    .await
    .unwrap();
    assert!(gaps >= 1, "the stolen deliveries were noticed");
    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn a_rebuild_beside_the_live_tables_equals_them_and_repeats_no_side_effect() {
    let harness = Harness::start().await;
    let (stop, task) = harness.spawn_projector();
    let mut oracle = Oracle::default();
    let mut last = 0;
    for i in 0..400u32 {
        let sku = format!("SKU-{}", i % 9);
        last = harness.receive(&sku, i % 3 + 1, "po").await;
        oracle.record(&sku, i % 3 + 1, last);
    }
    harness.wait_for_position(last).await;
    let before = harness.ledger().await;
    assert_eq!(before, oracle.0);

    // Rebuild while commits keep arriving and the live projector keeps running.
    let writer = {
        let jetstream = harness.jetstream.clone();
        tokio::spawn(async move {
            let mut written = Vec::new();
            for _ in 0..200u32 {
                written.push(receive_on(&jetstream, "SKU-LIVE", 1, "po").await);
            }
            written
        })
    };
    let mut reports = 0;
    let report = rebuild(
        harness.projection(),
        &harness.db.pool,
        &harness.jetstream,
        &RebuildOptions::default(),
        |_| reports += 1,
    )
    .await
    .unwrap();
    assert!(reports >= 1);
    assert!(report.commits >= 400, "{report:?}");
    for position in writer.await.unwrap() {
        oracle.record("SKU-LIVE", 1, position);
        last = position;
    }
    harness.wait_for_position(last).await;
    eventually(
        "the live projector to continue on the rebuilt tables",
        WAIT,
        || async { (harness.ledger().await == oracle.0).then_some(()) },
    )
    .await;
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'ledger%' ORDER BY 1",
    )
    .fetch_all(&harness.db.pool)
    .await
    .unwrap();
    assert_eq!(
        schemas,
        vec!["ledger".to_owned()],
        "the old tables are dropped"
    );
    let effects = effects(&harness.db.pool).await;
    assert_eq!(effects, 600, "the rebuild repeated no side effect");
    drop(stop);
    task.await.unwrap();
    drop(harness.nats);
}

#[tokio::test]
async fn postgres_killed_mid_transaction_loses_nothing_and_doubles_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let nats = NatsServer::start();
    let mut postgres = testkit::PostgresServer::start().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&postgres.url())
        .await
        .unwrap();
    projections::migrate(&pool).await.unwrap();
    sqlx::raw_sql(
        "CREATE SCHEMA ledger;
         CREATE TABLE ledger.skus (sku text PRIMARY KEY, received bigint NOT NULL,
                                   positions bigint[] NOT NULL);
         CREATE TABLE public.ledger_effects (position bigint PRIMARY KEY);",
    )
    .execute(&pool)
    .await
    .unwrap();
    let client = infra_nats::connect(&nats.url()).await.unwrap();
    let jetstream = jetstream::new(client);
    provision(&jetstream, &StreamSettings::default())
        .await
        .unwrap();
    let projection: Arc<dyn Projection> = Arc::new(Ledger {
        fixed: Arc::new(AtomicBool::new(false)),
        version: 1,
        aggregate_types: &["inventory"],
    });
    let projector = Projector::new(projection, pool.clone(), jetstream.clone(), config());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(projector.run(async {
        let _ = stopped.await;
    }));

    // Commits keep arriving while PostgreSQL is killed (SIGKILL: whatever transaction
    // the projector has open dies with it) and started again, three times. The writer is
    // paced and capped: the ledger's per-SKU position arrays make each apply cost grow
    // with the commits before it, and unpaced, a slow restart on a loaded machine let it
    // write 20,000+ commits whose catch-up then took minutes.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let jetstream = jetstream.clone();
        let writing = Arc::clone(&writing);
        tokio::spawn(async move {
            let mut oracle = Oracle::default();
            let mut i = 0u32;
            while (writing.load(Ordering::SeqCst) && i < 3_000) || i < 300 {
                let sku = format!("SKU-{}", i % 6);
                let position = receive_on(&jetstream, &sku, i % 4 + 1, "po").await;
                oracle.record(&sku, i % 4 + 1, position);
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            oracle
        })
    };
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        postgres.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        postgres.start_again().await;
    }
    writing.store(false, Ordering::SeqCst);
    let oracle = writer.await.unwrap();
    let last = oracle
        .0
        .values()
        .flat_map(|(_, p)| p)
        .max()
        .copied()
        .unwrap();
    // A liveness guard, not a timing claim: unloaded the catch-up takes a few seconds.
    eventually(
        "the projector to recover and catch up",
        Duration::from_secs(240),
        || async { (position_of(&pool, "ledger").await >= last).then_some(()) },
    )
    .await;
    assert_eq!(ledger_rows(&pool, "ledger").await, oracle.0);
    let effects = effects(&pool).await;
    let committed: i64 = oracle.0.values().map(|(_, p)| p.len() as i64).sum();
    assert_eq!(effects, committed);
    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn a_new_projection_version_rebuilds_itself_at_start_up() {
    let harness = Harness::start().await;
    let (stop, task) = harness.spawn_projector();
    let mut oracle = Oracle::default();
    let mut last = 0;
    for _ in 0..50u32 {
        last = harness.receive("A", 1, "po").await;
        oracle.record("A", 1, last);
    }
    harness.wait_for_position(last).await;
    drop(stop);
    task.await.unwrap();
    // Tamper with the live tables, as a buggy version 1 might have.
    sqlx::query("UPDATE ledger.skus SET received = -1")
        .execute(&harness.db.pool)
        .await
        .unwrap();

    let version_2: Arc<dyn Projection> = Arc::new(Ledger {
        fixed: Arc::clone(&harness.fixed),
        version: 2,
        aggregate_types: &["inventory"],
    });
    let projector = Projector::new(
        version_2,
        harness.db.pool.clone(),
        harness.jetstream.clone(),
        config(),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(projector.run(async {
        let _ = stopped.await;
    }));
    eventually("version 2 to be live", WAIT, || async {
        let version: i32 = sqlx::query_scalar(
            "SELECT version FROM projector_positions WHERE projector = 'ledger'",
        )
        .fetch_one(&harness.db.pool)
        .await
        .unwrap();
        (version == 2).then_some(())
    })
    .await;
    assert_eq!(harness.ledger().await, oracle.0, "rebuilt from the log");
    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn status_reports_position_lag_and_parked_commits() {
    let harness = Harness::start().await;
    let projection = harness.projection();
    for i in 0..30u32 {
        harness.receive(&format!("SKU-{}", i % 3), 1, "po").await;
    }
    let poison = harness.receive("P", 1, "poison").await;
    harness.receive("P", 1, "po").await;
    let before =
        projections::status::projector_status(&harness.db.pool, &harness.jetstream, &*projection)
            .await
            .unwrap();
    assert_eq!(before.position, 0);
    assert_eq!(before.lag_events, poison + 1);
    assert_eq!(before.parked, 0);

    let (stop, task) = harness.spawn_projector();
    harness.wait_for_position(poison + 1).await;
    let after = eventually("the acks to reach the server", WAIT, || async {
        let status = projections::status::projector_status(
            &harness.db.pool,
            &harness.jetstream,
            &*projection,
        )
        .await
        .unwrap();
        (status.lag_events == 0).then_some(status)
    })
    .await;
    assert_eq!(after.position, poison + 1);
    assert_eq!(after.stream_position, poison + 1);
    assert_eq!(after.lag_seconds, 0.0);
    assert_eq!(after.parked, 2, "the poison commit and the one behind it");
    assert_eq!(after.stored_version, Some(1));
    assert!(after.last_event_at.is_some());
    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn a_projection_of_several_types_passes_over_commits_of_other_types() {
    let harness = Harness::start().await;
    let projection: Arc<dyn Projection> = Arc::new(Ledger {
        fixed: Arc::clone(&harness.fixed),
        version: 1,
        // Two types: the consumer reads the whole log (one filter subject).
        aggregate_types: &["inventory", "product"],
    });
    assert_eq!(
        projections::runtime::consumer_filter(projection.aggregate_types()),
        "events.>"
    );
    let projector = Projector::new(
        Arc::clone(&projection),
        harness.db.pool.clone(),
        harness.jetstream.clone(),
        config(),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(projector.run(async {
        let _ = stopped.await;
    }));
    let mut oracle = Oracle::default();
    let mut last = 0;
    for i in 0..40u32 {
        let position = harness.receive("A", 1, "po").await;
        oracle.record("A", 1, position);
        // Not a commit this projection could read: it must neither apply nor park it.
        last = harness
            .jetstream
            .publish(
                aggregate_subject("order", &format!("o-{i}")),
                "not json".into(),
            )
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence;
    }
    harness.wait_for_position(last).await;
    assert_eq!(harness.ledger().await, oracle.0);
    assert_eq!(
        dead_letters::parked_count(&harness.db.pool, "ledger")
            .await
            .unwrap(),
        0
    );
    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn the_projector_resumes_on_its_own_after_nats_restarts() {
    let mut harness = Harness::start().await;
    let (stop, task) = harness.spawn_projector();
    let mut oracle = Oracle::default();
    let mut last = 0;
    for _ in 0..50u32 {
        last = harness.receive("A", 1, "po").await;
        oracle.record("A", 1, last);
    }
    harness.wait_for_position(last).await;

    harness.nats.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    harness.nats.restart();
    // The clients reconnect by themselves; the projector must resume without a restart.
    // (The test's own publishes wait until JetStream answers again, so that no ack is
    // lost and the oracle stays exact.)
    eventually("JetStream to answer again", WAIT, || async {
        harness
            .jetstream
            .get_stream("EVENTS")
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    for _ in 0..50u32 {
        last = harness.receive("A", 1, "po").await;
        oracle.record("A", 1, last);
    }
    harness.wait_for_position(last).await;
    assert_eq!(harness.ledger().await, oracle.0);
    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn a_rebuild_never_takes_commits_from_the_live_projector_so_their_effects_happen_once() {
    let harness = Harness::start().await;
    let (stop, task) = harness.spawn_projector();
    let mut oracle = Oracle::default();
    let mut last = 0;
    for _ in 0..30u32 {
        last = harness.receive("A", 1, "po").await;
        oracle.record("A", 1, last);
    }
    harness.wait_for_position(last).await;
    drop(stop);
    task.await.unwrap();
    let live_position = last;

    // Commits the stopped live projector has not seen yet.
    for _ in 0..20u32 {
        last = harness.receive("A", 1, "po").await;
        oracle.record("A", 1, last);
    }
    let report = rebuild(
        harness.projection(),
        &harness.db.pool,
        &harness.jetstream,
        &RebuildOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.position, live_position, "{report:?}");
    assert_eq!(harness.position().await, live_position as i64);

    // The live projector applies the rest, live, with their effects.
    let (stop, task) = harness.spawn_projector();
    harness.wait_for_position(last).await;
    assert_eq!(harness.ledger().await, oracle.0);
    let effects = effects(&harness.db.pool).await;
    assert_eq!(effects, 50, "every commit's effect exactly once");
    drop(stop);
    task.await.unwrap();
}

/// Replays every selected commit of `selection` to the ledger, `chunk` positions at a
/// time, stopping after `stop_after` chunks when given; returns the replay as stored.
async fn replay_ledger(
    harness: &Harness,
    selection: &Selection,
    chunk: usize,
    stop_after: Option<usize>,
) -> (replay::ReplayJob, replay::Begun) {
    let pool = &harness.db.pool;
    let (mut job, begun) = replay::begin(pool, "ledger", selection, "user:test", "repair")
        .await
        .unwrap();
    let client = infra_nats::connect(&harness.nats.url()).await.unwrap();
    let mut reader = replay::RangeReader::new(client, selection.clone(), job.cursor);
    let mut chunks = 0;
    while let Some(part) = reader.next_chunk(chunk).await.unwrap() {
        if stop_after == Some(chunks) {
            break;
        }
        let report = replay::apply_chunk(
            pool,
            harness.projection().as_ref(),
            &job,
            &part.commits,
            part.end,
        )
        .await
        .unwrap();
        job.cursor = report.cursor;
        chunks += 1;
    }
    (replay::get(pool, job.id).await.unwrap(), begun)
}

#[tokio::test]
async fn a_replay_delivers_each_selected_commit_once_passes_over_parked_aggregates_and_stops_at_the_live_position(
) {
    let harness = Harness::start().await;
    let (stop, task) = harness.spawn_projector();
    let a1 = harness.receive("A", 1, "po").await;
    let poison = harness.receive("A", 10, "poison").await;
    let b1 = harness.receive("B", 5, "po").await;
    let c1 = harness.receive("C", 7, "po").await;
    let b2 = harness.receive("B", 6, "po").await;
    harness.wait_for_position(b2).await;
    eventually("A's poison commit to be parked", WAIT, || async {
        let parked = dead_letters::list(&harness.db.pool, &DeadLetterFilter::default(), 10)
            .await
            .unwrap();
        (!parked.is_empty()).then_some(())
    })
    .await;
    drop(stop);
    task.await.unwrap();
    let live = harness.ledger().await;
    let live_effects = effects(&harness.db.pool).await;

    // The read model loses its rows; a replay of everything puts them back, B's in order.
    sqlx::query("TRUNCATE ledger.skus")
        .execute(&harness.db.pool)
        .await
        .unwrap();
    let everything = Selection {
        from: 1,
        to: b2,
        aggregate_type: None,
        aggregate_id: None,
    };
    // Interrupted after two chunks of one position each, then resumed.
    let (stopped, begun) = replay_ledger(&harness, &everything, 1, Some(2)).await;
    assert_eq!(begun, replay::Begun::Started);
    assert_eq!((stopped.status.as_str(), stopped.cursor), ("running", 2));
    let (done, begun) = replay_ledger(&harness, &everything, 1, None).await;
    assert_eq!(begun, replay::Begun::Resumed);
    assert_eq!(done.id, stopped.id);
    assert_eq!(done.status, "finished");
    assert_eq!(harness.ledger().await, live, "each commit once, in order");
    // A's poison head is parked: it and everything of A after it stay with the queue.
    assert_eq!((done.delivered, done.skipped_parked), (4, 1));
    assert_eq!(
        ledger_rows(&harness.db.pool, "ledger").await["B"],
        (11, vec![b1 as i64, b2 as i64])
    );
    assert_eq!(
        effects(&harness.db.pool).await,
        live_effects,
        "no live effect"
    );
    let _ = (a1, poison, c1);

    // One aggregate only, in chunks larger than the range.
    sqlx::query("DELETE FROM ledger.skus WHERE sku = 'C'")
        .execute(&harness.db.pool)
        .await
        .unwrap();
    let only_c = Selection {
        aggregate_type: Some("inventory".into()),
        aggregate_id: Some("C".into()),
        ..everything.clone()
    };
    let (job, _) = replay_ledger(&harness, &only_c, 100, None).await;
    assert_eq!((job.delivered, job.status.as_str()), (1, "finished"));
    assert_eq!(harness.ledger().await, live);

    // Past the live projector's position (it is stopped): refused, nothing kept.
    let beyond = harness.receive("D", 1, "po").await;
    let past = Selection {
        from: beyond,
        to: beyond,
        aggregate_type: None,
        aggregate_id: None,
    };
    let (job, _) = replay::begin(&harness.db.pool, "ledger", &past, "user:test", "x")
        .await
        .unwrap();
    let client = infra_nats::connect(&harness.nats.url()).await.unwrap();
    let mut reader = replay::RangeReader::new(client, past.clone(), job.cursor);
    let part = reader.next_chunk(10).await.unwrap().unwrap();
    let refused = replay::apply_chunk(
        &harness.db.pool,
        harness.projection().as_ref(),
        &job,
        &part.commits,
        part.end,
    )
    .await;
    assert!(
        matches!(refused, Err(replay::ReplayError::PastLive { live, .. }) if live == b2),
        "{refused:?}"
    );
    assert_eq!(harness.ledger().await, live);
    // Another selection on the same target waits for the unfinished one.
    let other = replay::begin(&harness.db.pool, "ledger", &everything, "user:test", "x").await;
    assert!(
        matches!(other, Err(replay::ReplayError::OtherUnfinished(_))),
        "{other:?}"
    );
    replay::abandon(&harness.db.pool, job.id).await.unwrap();
    assert!(
        replay::begin(&harness.db.pool, "ledger", &everything, "user:test", "x")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_first_position_at_a_time_is_found_by_the_times_the_server_stored() {
    let harness = Harness::start().await;
    let before = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(
        infra_nats::first_position_at_or_after(&harness.jetstream, before)
            .await
            .unwrap(),
        None,
        "an empty log has no position"
    );
    let mut positions = Vec::new();
    let mut times = Vec::new();
    for sku in ["A", "B", "C", "D", "E"] {
        tokio::time::sleep(Duration::from_millis(20)).await;
        times.push(Utc::now());
        tokio::time::sleep(Duration::from_millis(20)).await;
        positions.push(harness.receive(sku, 1, "po").await);
    }
    for (time, position) in times.iter().zip(&positions) {
        assert_eq!(
            infra_nats::first_position_at_or_after(&harness.jetstream, *time)
                .await
                .unwrap(),
            Some(*position)
        );
    }
    assert_eq!(
        infra_nats::first_position_at_or_after(&harness.jetstream, before)
            .await
            .unwrap(),
        Some(positions[0])
    );
    assert_eq!(
        infra_nats::first_position_at_or_after(&harness.jetstream, Utc::now())
            .await
            .unwrap(),
        None
    );
}
