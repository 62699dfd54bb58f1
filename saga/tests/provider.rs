//! The simulated payment provider against a real PostgreSQL: every test card, every rule,
//! and exactly-once behaviour when two saga replicas send the same key at once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use domain::ids::{OrderId, PaymentId};
use domain::money::{Currency, Money};
use saga::provider::{
    AuthoriseRequest, CaptureRequest, EntryState, PaymentProvider, ProviderError, RefundRequest,
    SimulatedProvider, SimulatorConfig, VoidOutcome, VoidRequest,
};
use sqlx::postgres::PgPoolOptions;
use testkit::{eventually, TestDatabase};
use uuid::Uuid;

const HANG: Duration = Duration::from_millis(500);

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::EUR)
}

fn authorise(key: &str, card_token: &str, amount_minor: i64) -> AuthoriseRequest {
    AuthoriseRequest {
        idempotency_key: key.to_owned(),
        payment_id: PaymentId::from_uuid(Uuid::new_v4()),
        order_id: OrderId::from_uuid(Uuid::new_v4()),
        card_token: card_token.to_owned(),
        amount: eur(amount_minor),
    }
}

fn capture(key: &str, authorisation_key: &str, amount_minor: i64) -> CaptureRequest {
    CaptureRequest {
        idempotency_key: key.to_owned(),
        authorisation_key: authorisation_key.to_owned(),
        amount: eur(amount_minor),
    }
}

fn void(key: &str, authorisation_key: &str) -> VoidRequest {
    VoidRequest {
        idempotency_key: key.to_owned(),
        authorisation_key: authorisation_key.to_owned(),
    }
}

fn refund(key: &str, authorisation_key: &str, amount_minor: i64) -> RefundRequest {
    RefundRequest {
        idempotency_key: key.to_owned(),
        authorisation_key: authorisation_key.to_owned(),
        amount: eur(amount_minor),
    }
}

fn refused(reason: &str) -> ProviderError {
    ProviderError::Refused(reason.to_owned())
}

async fn simulator(config: SimulatorConfig) -> anyhow::Result<(TestDatabase, SimulatedProvider)> {
    let db = TestDatabase::create().await?;
    let provider = SimulatedProvider::install(db.pool.clone(), config)
        .await
        .context("installing the simulator")?;
    Ok((db, provider))
}

/// A second saga replica: its own pool on the same database.
async fn replica(db: &TestDatabase, config: SimulatorConfig) -> anyhow::Result<SimulatedProvider> {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&db.url)
        .await
        .context("connecting the replica")?;
    Ok(SimulatedProvider::install(pool, config).await?)
}

fn hanging() -> SimulatorConfig {
    SimulatorConfig {
        hang_for: HANG,
        ..SimulatorConfig::default()
    }
}

async fn wait_until_pending(provider: &SimulatedProvider, order_id: OrderId) {
    eventually(
        "the hanging authorisation to be pending",
        Duration::from_secs(5),
        || async {
            let entry = provider.entry(order_id).await.ok()??;
            (entry.state == EntryState::Pending).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn installing_repeatedly_and_concurrently_is_harmless() -> anyhow::Result<()> {
    let (db, _) = simulator(SimulatorConfig::default()).await?;
    let config = SimulatorConfig::default();
    let (a, b, c) = tokio::join!(
        SimulatedProvider::install(db.pool.clone(), config),
        SimulatedProvider::install(db.pool.clone(), config),
        SimulatedProvider::install(db.pool.clone(), config),
    );
    a?;
    b?;
    c?.ledger().await?;

    let fresh = TestDatabase::create().await?;
    let (a, b) = tokio::join!(
        SimulatedProvider::install(fresh.pool.clone(), config),
        SimulatedProvider::install(fresh.pool.clone(), config),
    );
    a?;
    b?.ledger().await?;
    Ok(())
}

#[tokio::test]
async fn an_ordinary_card_is_authorised_with_a_sim_reference() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    let request = authorise("auth-1", "tok_visa", 1999);

    let authorisation = provider.authorise(&request).await?;

    assert!(authorisation.reference.starts_with("sim_"));
    let entry = provider
        .entry(request.order_id)
        .await?
        .context("no entry")?;
    assert_eq!(entry.state, EntryState::Authorised);
    assert_eq!(entry.amount, eur(1999));
    assert_eq!(entry.payment_id, request.payment_id);
    assert_eq!(
        entry.reference.as_deref(),
        Some(authorisation.reference.as_str())
    );
    assert!(!entry.injected);
    assert_eq!(entry.authorise_attempts, 1);
    assert_eq!(provider.ledger().await?.authorised_held_minor, 1999);
    Ok(())
}

#[tokio::test]
async fn an_order_never_authorised_has_no_entry() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;

    let entry = provider.entry(OrderId::from_uuid(Uuid::new_v4())).await?;

    assert_eq!(entry, None);
    Ok(())
}

#[tokio::test]
async fn amounts_that_are_not_positive_are_refused() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    provider
        .authorise(&authorise("auth-1", "tok_visa", 100))
        .await?;

    let auth = provider
        .authorise(&authorise("auth-2", "tok_visa", 0))
        .await;
    let cap = provider.capture(&capture("cap-1", "auth-1", -1)).await;

    assert_eq!(auth, Err(refused("amount must be positive")));
    assert_eq!(cap, Err(refused("amount must be positive")));
    Ok(())
}

#[tokio::test]
async fn repeating_an_authorise_returns_the_first_reference_and_holds_once() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    let request = authorise("auth-1", "tok_visa", 500);

    let first = provider.authorise(&request).await?;
    let second = provider.authorise(&request).await?;

    assert_eq!(first, second);
    assert_eq!(provider.ledger().await?.authorised_held_minor, 500);
    let entry = provider
        .entry(request.order_id)
        .await?
        .context("no entry")?;
    assert_eq!(entry.authorise_attempts, 2);
    Ok(())
}

#[tokio::test]
async fn concurrent_authorises_from_two_replicas_authorise_once() -> anyhow::Result<()> {
    let (db, one) = simulator(SimulatorConfig::default()).await?;
    let two = replica(&db, SimulatorConfig::default()).await?;
    let request = authorise("auth-1", "tok_visa", 700);

    let (a, b) = tokio::join!(one.authorise(&request), two.authorise(&request));

    assert_eq!(a?, b?);
    assert_eq!(one.ledger().await?.authorised_held_minor, 700);
    Ok(())
}

#[tokio::test]
async fn the_declined_card_is_declined_and_repeats_get_the_same_decline() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    let request = authorise("auth-1", "tok_declined", 500);
    let declined = ProviderError::Declined {
        reason: "card declined".to_owned(),
        injected: false,
    };

    let first = provider.authorise(&request).await;
    let second = provider.authorise(&request).await;

    assert_eq!(first, Err(declined.clone()));
    assert_eq!(second, Err(declined));
    let ledger = provider.ledger().await?;
    assert_eq!((ledger.declined, ledger.injected_failures), (1, 0));
    assert_eq!(ledger.authorised_held_minor, 0);
    let entry = provider
        .entry(request.order_id)
        .await?
        .context("no entry")?;
    assert_eq!(entry.state, EntryState::Declined);
    assert_eq!(entry.decline_reason.as_deref(), Some("card declined"));
    Ok(())
}

#[tokio::test]
async fn tok_fail_2_fails_twice_then_authorises() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    let request = authorise("auth-1", "tok_fail_2", 300);

    let first = provider.authorise(&request).await;
    let second = provider.authorise(&request).await;
    let third = provider.authorise(&request).await?;
    let fourth = provider.authorise(&request).await?;

    assert!(first.is_err_and(|e| e.is_transient()));
    assert!(second.is_err_and(|e| e.is_transient()));
    assert_eq!(third, fourth);
    let entry = provider
        .entry(request.order_id)
        .await?
        .context("no entry")?;
    assert_eq!(entry.state, EntryState::Authorised);
    assert_eq!(entry.authorise_attempts, 4);
    assert_eq!(provider.ledger().await?.authorised_held_minor, 300);
    Ok(())
}

#[tokio::test]
async fn failing_attempts_are_counted_per_key_across_replicas() -> anyhow::Result<()> {
    let (db, one) = simulator(SimulatorConfig::default()).await?;
    let two = replica(&db, SimulatorConfig::default()).await?;
    let request = authorise("auth-1", "tok_fail_2", 300);

    let first = one.authorise(&request).await;
    let second = two.authorise(&request).await;
    let third = one.authorise(&request).await;
    let other_key = two.authorise(&authorise("auth-2", "tok_fail_2", 300)).await;

    assert!(first.is_err_and(|e| e.is_transient()));
    assert!(second.is_err_and(|e| e.is_transient()));
    assert!(third.is_ok());
    assert!(other_key.is_err_and(|e| e.is_transient()));
    Ok(())
}

#[tokio::test]
async fn a_hanging_authorise_voided_while_pending_never_authorises() -> anyhow::Result<()> {
    let (_db, provider) = simulator(hanging()).await?;
    let request = authorise("auth-1", "tok_hang", 900);
    let hanging_call = tokio::spawn({
        let (provider, request) = (provider.clone(), request.clone());
        async move { provider.authorise(&request).await }
    });
    wait_until_pending(&provider, request.order_id).await;

    let voided = provider.void(&void("void-1", "auth-1")).await?;
    let answer = hanging_call.await?;

    assert_eq!(voided, VoidOutcome::Voided);
    assert_eq!(answer, Err(refused("voided while pending")));
    assert_eq!(
        provider.authorise(&request).await,
        Err(refused("voided while pending"))
    );
    let ledger = provider.ledger().await?;
    assert_eq!((ledger.authorised_held_minor, ledger.voided), (0, 1));
    let entry = provider
        .entry(request.order_id)
        .await?
        .context("no entry")?;
    assert_eq!((entry.state, entry.reference), (EntryState::Voided, None));
    Ok(())
}

#[tokio::test]
async fn a_hanging_authorise_left_alone_authorises_after_the_hang() -> anyhow::Result<()> {
    let (_db, provider) = simulator(hanging()).await?;
    let request = authorise("auth-1", "tok_hang", 900);
    let started = Instant::now();

    let authorisation = provider.authorise(&request).await?;

    assert!(started.elapsed() >= HANG);
    assert_eq!(provider.authorise(&request).await?, authorisation);
    assert_eq!(provider.ledger().await?.authorised_held_minor, 900);
    Ok(())
}

#[tokio::test]
async fn an_authorise_repeated_during_the_hang_is_told_to_retry() -> anyhow::Result<()> {
    let (db, provider) = simulator(hanging()).await?;
    let other_replica = replica(&db, hanging()).await?;
    let request = authorise("auth-1", "tok_hang", 900);
    let hanging_call = tokio::spawn({
        let (provider, request) = (provider.clone(), request.clone());
        async move { provider.authorise(&request).await }
    });
    wait_until_pending(&provider, request.order_id).await;

    let during = other_replica.authorise(&request).await;
    let first = hanging_call.await??;
    let after = other_replica.authorise(&request).await?;

    assert!(during.is_err_and(|e| e.is_transient()));
    assert_eq!(first, after);
    assert_eq!(provider.ledger().await?.authorised_held_minor, 900);
    Ok(())
}

#[tokio::test]
async fn a_hang_whose_caller_died_completes_on_a_retry_after_the_hang() -> anyhow::Result<()> {
    let (_db, provider) = simulator(hanging()).await?;
    let request = authorise("auth-1", "tok_hang", 900);
    let hanging_call = tokio::spawn({
        let (provider, request) = (provider.clone(), request.clone());
        async move { provider.authorise(&request).await }
    });
    wait_until_pending(&provider, request.order_id).await;

    // The saga process dies mid-call; the pending row stays behind.
    hanging_call.abort();
    let authorisation = eventually("a retry to authorise", Duration::from_secs(5), || async {
        provider.authorise(&request).await.ok()
    })
    .await;

    assert_eq!(provider.authorise(&request).await?, authorisation);
    let entry = provider
        .entry(request.order_id)
        .await?
        .context("no entry")?;
    assert_eq!(entry.state, EntryState::Authorised);
    assert_eq!(provider.ledger().await?.authorised_held_minor, 900);
    Ok(())
}

#[tokio::test]
async fn a_void_before_the_authorise_refuses_the_late_authorise() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    let request = authorise("auth-1", "tok_visa", 400);

    let voided = provider.void(&void("void-1", "auth-1")).await?;
    let late = provider.authorise(&request).await;

    assert_eq!(voided, VoidOutcome::NothingToVoid);
    assert_eq!(late, Err(refused("voided")));
    assert_eq!(provider.authorise(&request).await, Err(refused("voided")));
    assert_eq!(
        provider.void(&void("void-2", "auth-1")).await?,
        VoidOutcome::NothingToVoid
    );
    let ledger = provider.ledger().await?;
    assert_eq!((ledger.authorised_held_minor, ledger.voided), (0, 0));
    // The refused authorise is on record for operators.
    let entry = provider
        .entry(request.order_id)
        .await?
        .context("no entry")?;
    assert_eq!((entry.state, entry.reference), (EntryState::Voided, None));
    Ok(())
}

#[tokio::test]
async fn a_void_racing_the_authorise_from_another_replica_leaves_nothing_held() -> anyhow::Result<()>
{
    let (db, one) = simulator(SimulatorConfig::default()).await?;
    let two = replica(&db, SimulatorConfig::default()).await?;
    let request = authorise("auth-1", "tok_visa", 400);
    let void_request = void("void-1", "auth-1");

    let (authorised, voided) = tokio::join!(one.authorise(&request), two.void(&void_request));

    match (authorised, voided?) {
        (Ok(_), VoidOutcome::Voided)
        | (Err(ProviderError::Refused(_)), VoidOutcome::NothingToVoid) => {}
        other => panic!("inconsistent race outcome: {other:?}"),
    }
    assert_eq!(one.ledger().await?.authorised_held_minor, 0);
    Ok(())
}

#[tokio::test]
async fn voiding_releases_the_hold_and_repeating_the_void_gives_the_same_answer(
) -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    let request = authorise("auth-1", "tok_visa", 400);
    provider.authorise(&request).await?;

    let first = provider.void(&void("void-1", "auth-1")).await?;
    let again = provider.void(&void("void-1", "auth-1")).await?;
    let other_key = provider.void(&void("void-2", "auth-1")).await?;

    assert_eq!(
        (first, again, other_key),
        (
            VoidOutcome::Voided,
            VoidOutcome::Voided,
            VoidOutcome::Voided
        )
    );
    let ledger = provider.ledger().await?;
    assert_eq!((ledger.authorised_held_minor, ledger.voided), (0, 1));
    assert_eq!(
        provider.capture(&capture("cap-1", "auth-1", 400)).await,
        Err(refused("authorisation voided"))
    );
    Ok(())
}

#[tokio::test]
async fn voiding_a_declined_authorisation_has_nothing_to_void() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    let declined = provider
        .authorise(&authorise("auth-1", "tok_declined", 400))
        .await;
    assert!(matches!(declined, Err(ProviderError::Declined { .. })));

    let outcome = provider.void(&void("void-1", "auth-1")).await?;

    assert_eq!(outcome, VoidOutcome::NothingToVoid);
    let ledger = provider.ledger().await?;
    assert_eq!((ledger.declined, ledger.voided), (1, 0));
    Ok(())
}

#[tokio::test]
async fn voiding_a_captured_authorisation_says_so_and_voids_nothing() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    provider
        .authorise(&authorise("auth-1", "tok_visa", 400))
        .await?;
    provider.capture(&capture("cap-1", "auth-1", 400)).await?;

    let outcome = provider.void(&void("void-1", "auth-1")).await;

    assert_eq!(outcome, Ok(VoidOutcome::AlreadyCaptured));
    assert_eq!(provider.ledger().await?.captured_minor, 400);
    Ok(())
}

#[tokio::test]
async fn tok_refund_fails_captures_but_its_refunds_and_voids_keep_failing() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    provider
        .authorise(&authorise("auth-1", "tok_refund_fails", 400))
        .await?;
    provider
        .authorise(&authorise("auth-2", "tok_refund_fails", 400))
        .await?;
    provider.capture(&capture("cap-1", "auth-1", 400)).await?;

    for _ in 0..3 {
        let refunded = provider.refund(&refund("ref-1", "auth-1", 400)).await;
        let voided = provider.void(&void("void-2", "auth-2")).await;
        assert!(refunded.is_err_and(|e| e.is_transient()));
        assert!(voided.is_err_and(|e| e.is_transient()));
    }

    let ledger = provider.ledger().await?;
    assert_eq!(ledger.captured_minor, 400);
    assert_eq!(ledger.refunded_minor, 0);
    assert_eq!(ledger.authorised_held_minor, 400);
    assert_eq!(ledger.voided, 0);
    Ok(())
}

#[tokio::test]
async fn repeating_a_capture_captures_once() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    let request = authorise("auth-1", "tok_visa", 1000);
    provider.authorise(&request).await?;

    provider.capture(&capture("cap-1", "auth-1", 800)).await?;
    provider.capture(&capture("cap-1", "auth-1", 800)).await?;

    let ledger = provider.ledger().await?;
    assert_eq!(
        (ledger.captured_minor, ledger.authorised_held_minor),
        (800, 0)
    );
    let entry = provider
        .entry(request.order_id)
        .await?
        .context("no entry")?;
    assert_eq!(
        (entry.state, entry.captured),
        (EntryState::Captured, eur(800))
    );
    Ok(())
}

#[tokio::test]
async fn concurrent_captures_from_two_replicas_capture_once() -> anyhow::Result<()> {
    let (db, one) = simulator(SimulatorConfig::default()).await?;
    let two = replica(&db, SimulatorConfig::default()).await?;
    one.authorise(&authorise("auth-1", "tok_visa", 1000))
        .await?;
    let request = capture("cap-1", "auth-1", 1000);

    let (a, b) = tokio::join!(one.capture(&request), two.capture(&request));

    a?;
    b?;
    assert_eq!(one.ledger().await?.captured_minor, 1000);
    Ok(())
}

#[tokio::test]
async fn of_two_concurrent_captures_with_different_keys_one_is_refused() -> anyhow::Result<()> {
    let (db, one) = simulator(SimulatorConfig::default()).await?;
    let two = replica(&db, SimulatorConfig::default()).await?;
    one.authorise(&authorise("auth-1", "tok_visa", 1000))
        .await?;

    let (first, second) = (
        capture("cap-1", "auth-1", 1000),
        capture("cap-2", "auth-1", 1000),
    );

    let (a, b) = tokio::join!(one.capture(&first), two.capture(&second));

    let mut answers = [a, b];
    answers.sort_by_key(Result::is_err);
    assert_eq!(answers, [Ok(()), Err(refused("already captured"))]);
    assert_eq!(one.ledger().await?.captured_minor, 1000);
    Ok(())
}

#[tokio::test]
async fn captures_that_break_the_rules_are_refused() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    provider
        .authorise(&authorise("auth-1", "tok_visa", 1000))
        .await?;
    let _ = provider
        .authorise(&authorise("auth-2", "tok_declined", 1000))
        .await;

    let above = provider.capture(&capture("cap-1", "auth-1", 1001)).await;
    let unknown = provider.capture(&capture("cap-2", "auth-nope", 10)).await;
    let declined = provider.capture(&capture("cap-3", "auth-2", 10)).await;
    let dollars = provider
        .capture(&CaptureRequest {
            amount: Money::new(10, Currency::USD),
            ..capture("cap-4", "auth-1", 10)
        })
        .await;
    provider.capture(&capture("cap-5", "auth-1", 600)).await?;
    let second = provider.capture(&capture("cap-6", "auth-1", 400)).await;
    let key_reused = provider.capture(&capture("cap-5", "auth-1", 500)).await;

    assert_eq!(above, Err(refused("capture above the authorised amount")));
    assert_eq!(unknown, Err(refused("no authorisation with this key")));
    assert_eq!(declined, Err(refused("authorisation declined")));
    assert_eq!(
        dollars,
        Err(refused("currency differs from the authorisation"))
    );
    assert_eq!(second, Err(refused("already captured")));
    assert_eq!(
        key_reused,
        Err(refused("idempotency key reused for a different capture"))
    );
    assert_eq!(provider.ledger().await?.captured_minor, 600);
    Ok(())
}

#[tokio::test]
async fn repeating_a_refund_refunds_once() -> anyhow::Result<()> {
    let (db, one) = simulator(SimulatorConfig::default()).await?;
    let two = replica(&db, SimulatorConfig::default()).await?;
    one.authorise(&authorise("auth-1", "tok_visa", 1000))
        .await?;
    one.capture(&capture("cap-1", "auth-1", 1000)).await?;
    let request = refund("ref-1", "auth-1", 300);

    let (a, b) = tokio::join!(one.refund(&request), two.refund(&request));
    a?;
    b?;
    one.refund(&request).await?;

    assert_eq!(one.ledger().await?.refunded_minor, 300);
    Ok(())
}

#[tokio::test]
async fn refunds_beyond_the_captured_amount_are_refused() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    provider
        .authorise(&authorise("auth-1", "tok_visa", 1000))
        .await?;
    let before_capture = provider.refund(&refund("ref-0", "auth-1", 100)).await;
    provider.capture(&capture("cap-1", "auth-1", 800)).await?;

    provider.refund(&refund("ref-1", "auth-1", 500)).await?;
    let too_much = provider.refund(&refund("ref-2", "auth-1", 301)).await;
    provider.refund(&refund("ref-3", "auth-1", 300)).await?;
    let nothing_left = provider.refund(&refund("ref-4", "auth-1", 1)).await;
    let key_reused = provider.refund(&refund("ref-1", "auth-1", 200)).await;
    let unknown = provider.refund(&refund("ref-5", "auth-nope", 1)).await;

    assert_eq!(before_capture, Err(refused("nothing captured to refund")));
    assert_eq!(too_much, Err(refused("refund above the captured amount")));
    assert_eq!(
        nothing_left,
        Err(refused("refund above the captured amount"))
    );
    assert_eq!(
        key_reused,
        Err(refused("idempotency key reused for a different refund"))
    );
    assert_eq!(unknown, Err(refused("no authorisation with this key")));
    let ledger = provider.ledger().await?;
    assert_eq!((ledger.captured_minor, ledger.refunded_minor), (800, 800));
    Ok(())
}

#[tokio::test]
async fn the_ledger_adds_up_holds_captures_and_refunds() -> anyhow::Result<()> {
    let (_db, provider) = simulator(SimulatorConfig::default()).await?;
    let held = authorise("auth-held", "tok_visa", 111);
    let taken = authorise("auth-taken", "tok_visa", 1000);
    let partly = authorise("auth-partly", "tok_visa", 2000);
    for request in [&held, &taken, &partly] {
        provider.authorise(request).await?;
    }
    provider
        .authorise(&authorise("auth-voided", "tok_visa", 5000))
        .await?;
    provider.void(&void("void-1", "auth-voided")).await?;
    let _ = provider
        .authorise(&authorise("auth-declined", "tok_declined", 7000))
        .await;
    provider
        .capture(&capture("cap-1", "auth-taken", 1000))
        .await?;
    provider
        .capture(&capture("cap-2", "auth-partly", 1500))
        .await?;
    provider
        .refund(&refund("ref-1", "auth-taken", 1000))
        .await?;
    provider
        .refund(&refund("ref-2", "auth-partly", 250))
        .await?;

    let ledger = provider.ledger().await?;

    assert_eq!(ledger.authorised_held_minor, 111);
    assert_eq!(ledger.captured_minor, 2500);
    assert_eq!(ledger.refunded_minor, 1250);
    assert_eq!(ledger.captured_minor - ledger.refunded_minor, 1250);
    assert_eq!(
        (ledger.declined, ledger.injected_failures, ledger.voided),
        (1, 0, 1)
    );
    let entry = provider.entry(partly.order_id).await?.context("no entry")?;
    assert_eq!(
        (entry.amount, entry.captured, entry.refunded),
        (eur(2000), eur(1500), eur(250))
    );
    Ok(())
}

#[tokio::test]
async fn the_ledger_outlives_the_provider_process() -> anyhow::Result<()> {
    let (db, provider) = simulator(SimulatorConfig::default()).await?;
    let request = authorise("auth-1", "tok_visa", 100);
    let authorisation = provider.authorise(&request).await?;
    drop(provider);

    let restarted = replica(&db, SimulatorConfig::default()).await?;

    assert_eq!(restarted.authorise(&request).await?, authorisation);
    assert_eq!(restarted.ledger().await?.authorised_held_minor, 100);
    Ok(())
}

/// Authorises 200 ordinary keys on a fresh ledger; returns the injected ones and the ledger.
async fn injected_keys(seed: u64) -> anyhow::Result<BTreeSet<String>> {
    let config = SimulatorConfig {
        failure_rate: 0.5,
        seed,
        ..SimulatorConfig::default()
    };
    let (_db, provider) = simulator(config).await?;
    let mut injected = BTreeSet::new();
    for i in 0..200 {
        let key = format!("load-{i}");
        match provider.authorise(&authorise(&key, "tok_visa", 100)).await {
            Ok(_) => {}
            Err(ProviderError::Declined {
                reason,
                injected: true,
            }) if reason == "injected failure" => {
                injected.insert(key);
            }
            Err(other) => anyhow::bail!("unexpected answer for {key}: {other}"),
        }
    }
    let ledger = provider.ledger().await?;
    let count = u64::try_from(injected.len())?;
    assert_eq!(ledger.injected_failures, count);
    assert_eq!(ledger.declined, count);
    assert_eq!(
        ledger.authorised_held_minor,
        (200 - i64::try_from(count)?) * 100
    );
    Ok(injected)
}

#[tokio::test]
async fn failure_injection_hits_the_same_keys_every_time_and_is_counted_exactly(
) -> anyhow::Result<()> {
    let first = injected_keys(42).await?;
    let second = injected_keys(42).await?;
    let other_seed = injected_keys(43).await?;

    assert!(
        (70..=130).contains(&first.len()),
        "{} of 200 injected",
        first.len()
    );
    assert_eq!(first, second);
    assert_ne!(first, other_seed);
    Ok(())
}

#[tokio::test]
async fn failure_injection_spares_the_test_cards() -> anyhow::Result<()> {
    let config = SimulatorConfig {
        failure_rate: 1.0,
        ..SimulatorConfig::default()
    };
    let (_db, provider) = simulator(config).await?;

    let ordinary = provider
        .authorise(&authorise("auth-1", "tok_visa", 100))
        .await;
    let refund_fails = provider
        .authorise(&authorise("auth-2", "tok_refund_fails", 100))
        .await;
    let declined = provider
        .authorise(&authorise("auth-3", "tok_declined", 100))
        .await;

    assert_eq!(
        ordinary,
        Err(ProviderError::Declined {
            reason: "injected failure".to_owned(),
            injected: true
        })
    );
    assert!(refund_fails.is_ok());
    assert_eq!(
        declined,
        Err(ProviderError::Declined {
            reason: "card declined".to_owned(),
            injected: false
        })
    );
    let ledger = provider.ledger().await?;
    assert_eq!((ledger.declined, ledger.injected_failures), (2, 1));
    Ok(())
}

#[tokio::test]
async fn latency_is_slept_before_every_call() -> anyhow::Result<()> {
    let latency = Duration::from_millis(100);
    let config = SimulatorConfig {
        latency,
        ..SimulatorConfig::default()
    };
    let (_db, provider) = simulator(config).await?;
    let started = Instant::now();

    provider
        .authorise(&authorise("auth-1", "tok_visa", 100))
        .await?;
    provider.capture(&capture("cap-1", "auth-1", 100)).await?;
    provider.refund(&refund("ref-1", "auth-1", 100)).await?;
    provider.void(&void("void-1", "auth-2")).await?;

    assert!(started.elapsed() >= latency * 4);
    Ok(())
}
