//! The notifier: what it enqueues in which delivery mode, and how the dispatcher sends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use domain::money::{Currency, Money};
use domain::order::{Canceller, Order, OrderEvent, OrderLine};
use domain::payment::{Payment, PaymentEvent, PaymentMethod};
use domain::{CustomerId, OrderId, PaymentId, RefundId, Sku};
use infra_nats::RecordedCommit;
use projections::fixtures;
use projections::notifications::{
    customer_notifications, dispatch_pending, run_dispatcher, DispatcherConfig, LogSender,
    Notification, NotificationKind, NotificationSender, NotifierProjection, QueryError,
    RetryPolicy, SendError,
};
use projections::runtime::{apply_directly, set_schema};
use projections::{ApplyError, Delivery, DeliveryMode, Projection};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use testkit::{PostgresServer, TestDatabase};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// A story of two orders, told as the event store records it
// ---------------------------------------------------------------------------------------

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(second.into())
}

fn eur(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::EUR)
}

fn placed(order_id: OrderId, customer_id: CustomerId, total_minor: i64) -> OrderEvent {
    OrderEvent::OrderPlaced {
        order_id,
        customer_id,
        lines: vec![OrderLine {
            sku: Sku::parse("MUG-01").unwrap(),
            quantity: 1,
            unit_price: eur(total_minor),
        }],
        currency: Currency::EUR,
        subtotal: eur(total_minor),
        total: eur(total_minor),
        payment_method: Some(PaymentMethod::Card {
            token: "tok_visa".to_owned(),
        }),
        placed_at: at(0),
        shipping_address: None,
    }
}

fn order_commit(
    position: u64,
    order_id: OrderId,
    first_sequence: usize,
    events: &[OrderEvent],
) -> RecordedCommit {
    fixtures::commit::<Order>(
        position,
        &order_id.to_string(),
        first_sequence,
        events,
        at(position as u32),
    )
}

fn payment_commit(
    position: u64,
    payment_id: PaymentId,
    first_sequence: usize,
    events: &[PaymentEvent],
) -> RecordedCommit {
    fixtures::commit::<Payment>(
        position,
        &payment_id.to_string(),
        first_sequence,
        events,
        at(position as u32),
    )
}

/// Order A (customer 1) is confirmed, shipped, delivered and refunded through payment P;
/// order B (customer 2) has its payment Q declined and is cancelled.
struct Story {
    customer_1: CustomerId,
    customer_2: CustomerId,
    order_a: OrderId,
    order_b: OrderId,
    payment_p: PaymentId,
    refund_1: RefundId,
    commits: Vec<RecordedCommit>,
}

impl Story {
    fn new() -> Self {
        let customer_1 = CustomerId::from_uuid(Uuid::new_v4());
        let customer_2 = CustomerId::from_uuid(Uuid::new_v4());
        let order_a = OrderId::from_uuid(Uuid::new_v4());
        let order_b = OrderId::from_uuid(Uuid::new_v4());
        let payment_p = PaymentId::from_uuid(Uuid::new_v4());
        let payment_q = PaymentId::from_uuid(Uuid::new_v4());
        let refund_1 = RefundId::from_uuid(Uuid::new_v4());
        let commits = vec![
            order_commit(1, order_a, 1, &[placed(order_a, customer_1, 2500)]),
            order_commit(2, order_b, 1, &[placed(order_b, customer_2, 1000)]),
            order_commit(
                3,
                order_a,
                2,
                &[
                    OrderEvent::OrderStockReserved { order_id: order_a },
                    OrderEvent::OrderPaymentAuthorised {
                        order_id: order_a,
                        payment_id: payment_p,
                    },
                ],
            ),
            payment_commit(
                4,
                payment_p,
                1,
                &[PaymentEvent::PaymentAuthorised {
                    payment_id: payment_p,
                    order_id: order_a,
                    amount: eur(2500),
                    method: PaymentMethod::Card {
                        token: "tok_visa".into(),
                    },
                    provider_reference: "auth-1".into(),
                }],
            ),
            order_commit(
                5,
                order_a,
                4,
                &[OrderEvent::OrderConfirmed { order_id: order_a }],
            ),
            payment_commit(
                6,
                payment_q,
                1,
                &[PaymentEvent::PaymentDeclined {
                    payment_id: payment_q,
                    order_id: order_b,
                    amount: eur(1000),
                    reason: "insufficient funds".into(),
                }],
            ),
            order_commit(
                7,
                order_b,
                2,
                &[OrderEvent::OrderCancelled {
                    order_id: order_b,
                    reason: "payment declined".into(),
                    by: Canceller::System,
                }],
            ),
            payment_commit(
                8,
                payment_p,
                2,
                &[PaymentEvent::PaymentCaptured {
                    payment_id: payment_p,
                    amount: eur(2500),
                }],
            ),
            order_commit(
                9,
                order_a,
                5,
                &[
                    OrderEvent::OrderShipped {
                        order_id: order_a,
                        carrier: "DHL".into(),
                        tracking: "TRACK-1".into(),
                    },
                    OrderEvent::OrderDelivered { order_id: order_a },
                ],
            ),
            payment_commit(
                10,
                payment_p,
                3,
                &[PaymentEvent::PaymentRefunded {
                    payment_id: payment_p,
                    refund_id: refund_1,
                    amount: eur(2500),
                    reason: "damaged in transit".into(),
                }],
            ),
            order_commit(
                11,
                order_a,
                7,
                &[OrderEvent::OrderRefunded {
                    order_id: order_a,
                    amount: eur(2500),
                    reason: "damaged in transit".into(),
                }],
            ),
        ];
        Self {
            customer_1,
            customer_2,
            order_a,
            order_b,
            payment_p,
            refund_1,
            commits,
        }
    }

    fn commit(&self, position: u64) -> &RecordedCommit {
        &self.commits[position as usize - 1]
    }

    fn event_id(&self, position: u64, index: usize) -> Uuid {
        self.commit(position).envelope.events[index].event_id
    }

    /// The outbox rows a live delivery of the whole story must leave, in stream order.
    fn expected_outbox(&self) -> Vec<OutboxRow> {
        vec![
            OutboxRow {
                id: self.event_id(5, 0),
                position: 5,
                event_index: 0,
                kind: "order_confirmed".into(),
                customer_id: self.customer_1.as_uuid(),
                order_id: self.order_a.as_uuid(),
                payload: json!({ "total": { "amount_minor": 2500, "currency": "EUR" } }),
                occurred_at: at(5),
                sent: false,
                attempts: 0,
            },
            OutboxRow {
                id: self.event_id(7, 0),
                position: 7,
                event_index: 0,
                kind: "order_cancelled".into(),
                customer_id: self.customer_2.as_uuid(),
                order_id: self.order_b.as_uuid(),
                payload: json!({ "reason": "payment declined", "cancelled_by": "system" }),
                occurred_at: at(7),
                sent: false,
                attempts: 0,
            },
            OutboxRow {
                id: self.event_id(10, 0),
                position: 10,
                event_index: 0,
                kind: "refund_issued".into(),
                customer_id: self.customer_1.as_uuid(),
                order_id: self.order_a.as_uuid(),
                payload: json!({
                    "payment_id": self.payment_p.to_string(),
                    "refund_id": self.refund_1.to_string(),
                    "amount": { "amount_minor": 2500, "currency": "EUR" },
                    "reason": "damaged in transit",
                }),
                occurred_at: at(10),
                sent: false,
                attempts: 0,
            },
        ]
    }

    /// The notifier's state after the whole story, whatever the delivery mode.
    fn expected_orders(&self) -> Vec<OrderRow> {
        let mut rows = vec![
            (
                self.order_a.as_uuid(),
                self.customer_1.as_uuid(),
                2500,
                "EUR".to_owned(),
                1,
            ),
            (
                self.order_b.as_uuid(),
                self.customer_2.as_uuid(),
                1000,
                "EUR".to_owned(),
                2,
            ),
        ];
        rows.sort();
        rows
    }

    fn expected_payments(&self) -> Vec<PaymentRow> {
        // The declined payment Q can never be refunded, so it is not kept.
        vec![(self.payment_p.as_uuid(), self.order_a.as_uuid(), 4)]
    }
}

fn deliveries(commits: &[RecordedCommit], mode: DeliveryMode) -> Vec<Delivery<'_>> {
    commits
        .iter()
        .map(|commit| Delivery { commit, mode })
        .collect()
}

async fn migrated_database() -> TestDatabase {
    let db = TestDatabase::create().await.expect("test database");
    projections::migrate(&db.pool).await.expect("migrations");
    db
}

async fn apply(pool: &PgPool, commits: &[RecordedCommit], mode: DeliveryMode) {
    apply_directly(pool, &NotifierProjection, &deliveries(commits, mode))
        .await
        .expect("applying the batch");
}

// ---------------------------------------------------------------------------------------
// Reading the tables back
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct OutboxRow {
    id: Uuid,
    position: i64,
    event_index: i32,
    kind: String,
    customer_id: Uuid,
    order_id: Uuid,
    payload: serde_json::Value,
    occurred_at: DateTime<Utc>,
    sent: bool,
    attempts: i32,
}

type OrderRow = (Uuid, Uuid, i64, String, i64);
type PaymentRow = (Uuid, Uuid, i64);

async fn outbox(pool: &PgPool) -> Vec<OutboxRow> {
    sqlx::query_as(
        "SELECT id, position, event_index, kind, customer_id, order_id, payload, occurred_at,
                sent_at IS NOT NULL AS sent, attempts
         FROM outbox.notifications ORDER BY position, event_index",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn orders(pool: &PgPool) -> Vec<OrderRow> {
    sqlx::query_as(
        "SELECT order_id, customer_id, total_minor, currency, placed_position
         FROM notifications.orders ORDER BY order_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn payments(pool: &PgPool) -> Vec<PaymentRow> {
    sqlx::query_as(
        "SELECT payment_id, order_id, authorised_position
         FROM notifications.payments ORDER BY payment_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// A sender that records what it sends and fails on demand
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct RecordingSender {
    /// How many of the next attempts fail, whatever the notification.
    failures_left: AtomicU32,
    /// Every attempt, successful or not.
    attempts: AtomicU32,
    /// Successful sends per notification id.
    sent: Mutex<HashMap<Uuid, u32>>,
    /// How long each send takes, so that parallel dispatchers overlap.
    pause: Option<Duration>,
}

impl RecordingSender {
    fn failing(times: u32) -> Self {
        Self {
            failures_left: AtomicU32::new(times),
            ..Self::default()
        }
    }

    fn slow(pause: Duration) -> Self {
        Self {
            pause: Some(pause),
            ..Self::default()
        }
    }

    fn sent(&self) -> HashMap<Uuid, u32> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait]
impl NotificationSender for RecordingSender {
    async fn send(&self, notification: &Notification) -> Result<(), SendError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(pause) = self.pause {
            tokio::time::sleep(pause).await;
        }
        let failing = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if failing {
            return Err(SendError::new(format!("provider down (attempt {attempt})")));
        }
        *self
            .sent
            .lock()
            .unwrap()
            .entry(notification.id)
            .or_default() += 1;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The projection
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn live_delivery_enqueues_one_notification_per_meaningful_event_and_none_for_others() {
    let db = migrated_database().await;
    let story = Story::new();

    apply(&db.pool, &story.commits, DeliveryMode::Live).await;

    assert_eq!(outbox(&db.pool).await, story.expected_outbox());
    assert_eq!(orders(&db.pool).await, story.expected_orders());
    assert_eq!(payments(&db.pool).await, story.expected_payments());
}

#[tokio::test]
async fn the_same_commit_delivered_twice_enqueues_once_even_after_it_was_sent() {
    let db = migrated_database().await;
    let story = Story::new();
    apply(&db.pool, &story.commits, DeliveryMode::Live).await;
    let sender = RecordingSender::default();
    let first_round = dispatch_pending(&db.pool, &sender, 10).await.unwrap();

    // Redelivered alone, and twice within one batch.
    apply(&db.pool, &story.commits[4..5], DeliveryMode::Live).await;
    let twice = [story.commit(10).clone(), story.commit(10).clone()];
    apply(&db.pool, &twice, DeliveryMode::Live).await;
    let second_round = dispatch_pending(&db.pool, &sender, 10).await.unwrap();

    assert_eq!(first_round.sent, 3);
    assert_eq!(second_round.claimed, 0, "nothing new to send");
    let expected: Vec<OutboxRow> = story
        .expected_outbox()
        .into_iter()
        .map(|row| OutboxRow {
            sent: true,
            attempts: 1,
            ..row
        })
        .collect();
    assert_eq!(outbox(&db.pool).await, expected);
    let sent = sender.sent();
    assert_eq!(sent.len(), 3);
    assert!(sent.values().all(|&times| times == 1), "{sent:?}");
}

#[tokio::test]
async fn rebuild_and_replay_enqueue_nothing_but_keep_the_order_customer_table() {
    for mode in [DeliveryMode::Rebuild, DeliveryMode::Replay] {
        let db = migrated_database().await;
        let story = Story::new();

        apply(&db.pool, &story.commits, mode).await;

        assert_eq!(outbox(&db.pool).await, [], "{mode:?} enqueues nothing");
        assert_eq!(orders(&db.pool).await, story.expected_orders(), "{mode:?}");
        assert_eq!(
            payments(&db.pool).await,
            story.expected_payments(),
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn a_live_event_after_a_rebuild_reaches_the_customer_known_from_the_rebuild() {
    let db = migrated_database().await;
    let story = Story::new();
    apply(&db.pool, &story.commits, DeliveryMode::Rebuild).await;
    let refund_2 = RefundId::from_uuid(Uuid::new_v4());
    let later = payment_commit(
        12,
        story.payment_p,
        4,
        &[PaymentEvent::PaymentRefunded {
            payment_id: story.payment_p,
            refund_id: refund_2,
            amount: eur(300),
            reason: "goodwill".into(),
        }],
    );

    apply(&db.pool, std::slice::from_ref(&later), DeliveryMode::Live).await;

    let rows = outbox(&db.pool).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].id, later.envelope.events[0].event_id);
    assert_eq!(rows[0].kind, "refund_issued");
    assert_eq!(rows[0].customer_id, story.customer_1.as_uuid());
    assert_eq!(rows[0].order_id, story.order_a.as_uuid());
    assert_eq!(rows[0].payload["refund_id"], json!(refund_2.to_string()));
    assert_eq!(rows[0].payload["amount"]["amount_minor"], json!(300));
}

#[tokio::test]
async fn only_the_live_deliveries_of_a_mixed_batch_enqueue() {
    let db = migrated_database().await;
    let story = Story::new();
    let batch: Vec<Delivery<'_>> = story
        .commits
        .iter()
        .map(|commit| Delivery {
            commit,
            // Positions 1 to 7 are replayed; 8 onwards arrive live.
            mode: if commit.position <= 7 {
                DeliveryMode::Replay
            } else {
                DeliveryMode::Live
            },
        })
        .collect();

    apply_directly(&db.pool, &NotifierProjection, &batch)
        .await
        .unwrap();

    let refund_only: Vec<OutboxRow> = story
        .expected_outbox()
        .into_iter()
        .filter(|row| row.position >= 8)
        .collect();
    assert_eq!(refund_only.len(), 1);
    assert_eq!(outbox(&db.pool).await, refund_only);
}

#[tokio::test]
async fn a_batch_applied_at_once_equals_the_commits_applied_one_by_one() {
    let at_once = migrated_database().await;
    let one_by_one = migrated_database().await;
    let story = Story::new();

    apply(&at_once.pool, &story.commits, DeliveryMode::Live).await;
    for commit in &story.commits {
        apply(
            &one_by_one.pool,
            std::slice::from_ref(commit),
            DeliveryMode::Live,
        )
        .await;
    }

    assert_eq!(outbox(&at_once.pool).await, story.expected_outbox());
    assert_eq!(outbox(&one_by_one.pool).await, story.expected_outbox());
    assert_eq!(orders(&one_by_one.pool).await, orders(&at_once.pool).await);
    assert_eq!(
        payments(&one_by_one.pool).await,
        payments(&at_once.pool).await
    );
}

#[tokio::test]
async fn a_confirmation_of_an_order_never_placed_is_inconsistent_and_writes_nothing() {
    let db = migrated_database().await;
    let story = Story::new();
    // Order B's placement is missing from the log the notifier sees.
    let stranger = OrderId::from_uuid(Uuid::new_v4());
    let batch = [
        story.commit(1).clone(),
        order_commit(
            2,
            stranger,
            4,
            &[OrderEvent::OrderConfirmed { order_id: stranger }],
        ),
    ];

    let result = apply_directly(
        &db.pool,
        &NotifierProjection,
        &deliveries(&batch, DeliveryMode::Live),
    )
    .await;

    match result {
        Err(ApplyError::Inconsistent(message)) => {
            assert!(message.contains(&stranger.to_string()), "{message}");
            assert!(message.contains("OrderConfirmed"), "{message}");
        }
        other => panic!("expected Inconsistent, got {other:?}"),
    }
    assert_eq!(orders(&db.pool).await, [], "the batch was rolled back");
    assert_eq!(outbox(&db.pool).await, []);
}

#[tokio::test]
async fn a_refund_of_a_payment_never_authorised_is_inconsistent() {
    let db = migrated_database().await;
    let story = Story::new();
    apply(&db.pool, &story.commits[..3], DeliveryMode::Live).await;

    // The refund arrives without the authorisation at position 4.
    let result = apply_directly(
        &db.pool,
        &NotifierProjection,
        &deliveries(&story.commits[9..10], DeliveryMode::Live),
    )
    .await;

    match result {
        Err(ApplyError::Inconsistent(message)) => {
            assert!(message.contains(&story.payment_p.to_string()), "{message}");
        }
        other => panic!("expected Inconsistent, got {other:?}"),
    }
    assert_eq!(outbox(&db.pool).await, []);
}

#[tokio::test]
async fn an_event_of_the_wrong_shape_is_a_decode_error() {
    let db = migrated_database().await;
    let story = Story::new();
    let mut broken = story.commit(5).clone();
    broken.envelope.events[0].payload = json!({ "OrderConfirmed": { "order_id": 42 } });

    let result = apply_directly(
        &db.pool,
        &NotifierProjection,
        &deliveries(std::slice::from_ref(&broken), DeliveryMode::Live),
    )
    .await;

    assert!(
        matches!(result, Err(ApplyError::Decode(_))),
        "expected Decode, got {result:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The dispatcher
// ---------------------------------------------------------------------------------------

async fn database_clock(pool: &PgPool) -> DateTime<Utc> {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Lets the clock run past every pending retry.
async fn time_passes(pool: &PgPool) {
    sqlx::query(
        "UPDATE outbox.notifications SET next_attempt_at = now() - interval '1 second'
         WHERE sent_at IS NULL",
    )
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_failing_sender_is_retried_with_backoff_and_sends_exactly_once_after_recovering() {
    let db = migrated_database().await;
    let story = Story::new();
    apply(&db.pool, &story.commits[..5], DeliveryMode::Live).await;
    let confirmation = story.event_id(5, 0);
    let sender = RecordingSender::failing(3);

    // Doubling from one second.
    for (failure, backoff_secs) in [(1, 1), (2, 2), (3, 4)] {
        let before = database_clock(&db.pool).await;
        let report = dispatch_pending(&db.pool, &sender, 10).await.unwrap();
        let after = database_clock(&db.pool).await;
        let too_early = dispatch_pending(&db.pool, &sender, 10).await.unwrap();

        assert_eq!(report.claimed, 1, "attempt {failure}");
        assert_eq!(report.failed, 1, "attempt {failure}");
        assert_eq!(too_early.claimed, 0, "not due again before the backoff");
        let (attempts, last_error, next_attempt_at, sent): (
            i32,
            Option<String>,
            DateTime<Utc>,
            bool,
        ) = sqlx::query_as(
            "SELECT attempts, last_error, next_attempt_at, sent_at IS NOT NULL
                 FROM outbox.notifications WHERE id = $1",
        )
        .bind(confirmation)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(attempts, failure);
        assert_eq!(
            last_error.as_deref(),
            Some(format!("provider down (attempt {failure})").as_str())
        );
        assert!(!sent);
        let backoff = chrono::Duration::seconds(backoff_secs);
        assert!(
            before + backoff <= next_attempt_at && next_attempt_at <= after + backoff,
            "attempt {failure}: next attempt {next_attempt_at} not {backoff} after [{before}, {after}]"
        );
        time_passes(&db.pool).await;
    }
    let recovered = dispatch_pending(&db.pool, &sender, 10).await.unwrap();
    let afterwards = dispatch_pending(&db.pool, &sender, 10).await.unwrap();

    assert_eq!((recovered.claimed, recovered.sent), (1, 1));
    assert_eq!(afterwards.claimed, 0);
    assert_eq!(sender.sent(), HashMap::from([(confirmation, 1)]));
    assert_eq!(sender.attempts.load(Ordering::SeqCst), 4);
    let (attempts, last_error, sent): (i32, Option<String>, bool) = sqlx::query_as(
        "SELECT attempts, last_error, sent_at IS NOT NULL FROM outbox.notifications WHERE id = $1",
    )
    .bind(confirmation)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((attempts, last_error, sent), (4, None, true));
}

#[test]
fn the_standard_backoff_doubles_from_one_second_up_to_ten_minutes() {
    let delays: Vec<u64> = (1..=12)
        .map(|failures| RetryPolicy::STANDARD.backoff(failures).as_secs())
        .collect();

    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
    assert_eq!(RetryPolicy::STANDARD.backoff(u32::MAX).as_secs(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_dispatchers_never_send_the_same_notification_twice() {
    let db = migrated_database().await;
    let customer = CustomerId::from_uuid(Uuid::new_v4());
    let mut commits = Vec::new();
    for n in 0..100u64 {
        let order_id = OrderId::from_uuid(Uuid::new_v4());
        commits.push(order_commit(
            2 * n + 1,
            order_id,
            1,
            &[placed(order_id, customer, 100)],
        ));
        commits.push(order_commit(
            2 * n + 2,
            order_id,
            4,
            &[OrderEvent::OrderConfirmed { order_id }],
        ));
    }
    apply(&db.pool, &commits, DeliveryMode::Live).await;
    let sender = Arc::new(RecordingSender::slow(Duration::from_millis(2)));
    let start = Arc::new(tokio::sync::Barrier::new(4));

    let dispatchers: Vec<_> = (0..4)
        .map(|_| {
            let (pool, sender, start) = (db.pool.clone(), sender.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mut sent = 0;
                loop {
                    let report = dispatch_pending(&pool, &*sender, 5).await.unwrap();
                    if report.claimed == 0 {
                        return sent;
                    }
                    sent += report.sent;
                }
            })
        })
        .collect();
    let mut sent_by_dispatcher = Vec::new();
    for dispatcher in dispatchers {
        sent_by_dispatcher.push(dispatcher.await.unwrap());
    }

    let sent = sender.sent();
    assert_eq!(sent.len(), 100);
    let twice: Vec<_> = sent.iter().filter(|(_, &times)| times != 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(sent_by_dispatcher.iter().sum::<usize>(), 100);
    assert!(
        sent_by_dispatcher.iter().filter(|&&n| n > 0).count() > 1,
        "the dispatchers shared the work: {sent_by_dispatcher:?}"
    );
    let unsent: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox.notifications WHERE sent_at IS NULL")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(unsent, 0);
}

#[tokio::test]
async fn the_dispatcher_loop_sends_what_is_enqueued_and_stops_on_shutdown() {
    let db = migrated_database().await;
    let story = Story::new();
    let sender = Arc::new(RecordingSender::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dispatcher = tokio::spawn({
        let (pool, sender) = (db.pool.clone(), sender.clone());
        let config = DispatcherConfig {
            idle: Duration::from_millis(20),
            ..DispatcherConfig::default()
        };
        async move {
            run_dispatcher(pool, &*sender, config, async {
                let _ = stopped.await;
            })
            .await;
        }
    });

    apply(&db.pool, &story.commits, DeliveryMode::Live).await;
    let sent = testkit::eventually("three notifications sent", Duration::from_secs(10), || {
        let sent = sender.sent();
        async move { (sent.len() == 3).then_some(sent) }
    })
    .await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), dispatcher)
        .await
        .expect("the loop stops on shutdown")
        .unwrap();

    let expected: HashMap<Uuid, u32> = story
        .expected_outbox()
        .iter()
        .map(|row| (row.id, 1))
        .collect();
    assert_eq!(sent, expected);
}

#[tokio::test]
async fn a_crash_mid_apply_enqueues_nothing_and_the_dispatcher_loop_carries_on_after_restart() {
    let mut server = PostgresServer::start().await;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&server.url())
        .await
        .unwrap();
    projections::migrate(&pool).await.unwrap();
    let story = Story::new();
    let sender = Arc::new(RecordingSender::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dispatcher = tokio::spawn({
        let (pool, sender) = (pool.clone(), sender.clone());
        let config = DispatcherConfig {
            idle: Duration::from_millis(20),
            ..DispatcherConfig::default()
        };
        async move {
            run_dispatcher(pool, &*sender, config, async {
                let _ = stopped.await;
            })
            .await;
        }
    });
    let mut connection = PgConnection::connect(&server.url()).await.unwrap();
    let mut transaction = connection.begin().await.unwrap();
    set_schema(&mut transaction, "notifications").await.unwrap();
    NotifierProjection
        .apply(
            &mut transaction,
            &deliveries(&story.commits, DeliveryMode::Live),
        )
        .await
        .unwrap();

    server.kill();
    let commit = transaction.commit().await;
    server.start_again().await;
    let after_restart = outbox(&pool).await;
    apply(&pool, &story.commits, DeliveryMode::Live).await;
    let sent = testkit::eventually("three notifications sent", Duration::from_secs(20), || {
        let sent = sender.sent();
        async move { (sent.len() == 3).then_some(sent) }
    })
    .await;
    stop.send(()).unwrap();
    dispatcher.await.unwrap();

    assert!(
        commit.is_err(),
        "the projector's commit fails with the server"
    );
    assert_eq!(
        after_restart,
        [],
        "the crashed transaction enqueued nothing"
    );
    let expected: HashMap<Uuid, u32> = story
        .expected_outbox()
        .iter()
        .map(|row| (row.id, 1))
        .collect();
    assert_eq!(sent, expected);
}

#[tokio::test]
async fn the_log_sender_marks_every_due_notification_sent() {
    let db = migrated_database().await;
    let story = Story::new();
    apply(&db.pool, &story.commits, DeliveryMode::Live).await;

    let report = dispatch_pending(&db.pool, &LogSender, 2).await.unwrap();
    let rest = dispatch_pending(&db.pool, &LogSender, 2).await.unwrap();

    assert_eq!((report.claimed, report.sent), (2, 2));
    assert_eq!((rest.claimed, rest.sent), (1, 1));
    let sent: Vec<bool> = outbox(&db.pool).await.iter().map(|row| row.sent).collect();
    assert_eq!(sent, [true, true, true]);
}

// ---------------------------------------------------------------------------------------
// Reading a customer's notifications
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_customers_notifications_come_newest_first_a_page_at_a_time() {
    let db = migrated_database().await;
    let story = Story::new();
    apply(&db.pool, &story.commits, DeliveryMode::Live).await;

    let first = customer_notifications(&db.pool, story.customer_1, 1, None)
        .await
        .unwrap();
    let second = customer_notifications(&db.pool, story.customer_1, 1, first.end_cursor.as_deref())
        .await
        .unwrap();
    let everything = customer_notifications(&db.pool, story.customer_2, 10, None)
        .await
        .unwrap();

    assert_eq!(first.items.len(), 1);
    assert_eq!(first.items[0].id, story.event_id(10, 0));
    assert_eq!(first.items[0].kind, NotificationKind::RefundIssued);
    assert!(first.has_next_page);
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].id, story.event_id(5, 0));
    assert_eq!(second.items[0].kind, NotificationKind::OrderConfirmed);
    assert_eq!(second.items[0].customer_id, story.customer_1);
    assert_eq!(second.items[0].order_id, story.order_a);
    assert_eq!(second.items[0].occurred_at, at(5));
    assert!(!second.has_next_page);
    assert_eq!(everything.items.len(), 1);
    assert_eq!(everything.items[0].kind, NotificationKind::OrderCancelled);
    assert!(!everything.has_next_page);
}

#[tokio::test]
async fn a_cursor_not_made_by_the_api_is_rejected() {
    let db = migrated_database().await;
    let customer = CustomerId::from_uuid(Uuid::new_v4());

    let result = customer_notifications(&db.pool, customer, 10, Some("5.0")).await;

    assert!(
        matches!(result, Err(QueryError::InvalidCursor(ref cursor)) if cursor == "5.0"),
        "{result:?}"
    );
}
