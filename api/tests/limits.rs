//! The rate-limit middleware in front of a real axum server on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use api::auth::{Accounts, AuthConfig, Role};
use api::limits::{rate_limit, RateLimitConfig, RateLimits};
use axum::routing::post;
use axum::{middleware, Router};
use serde_json::Value;
use testkit::{eventually, http_post, HttpResponse};
use uuid::Uuid;

const SECRET: &[u8] = b"test-secret-that-is-at-least-32-bytes-long";

/// Only token checks happen here, so the pool never connects.
fn accounts_with(secret: &[u8]) -> Accounts {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .unwrap();
    let config = AuthConfig::new(
        secret.to_vec(),
        "shopstream",
        "shopstream-api",
        Duration::from_secs(600),
        Duration::from_secs(3600),
    )
    .unwrap();
    Accounts::new(pool, config)
}

fn limits(accounts: Accounts, config: RateLimitConfig) -> RateLimits {
    RateLimits::new(config, accounts)
}

fn config() -> RateLimitConfig {
    RateLimitConfig {
        per_ip_per_second: 1000,
        per_ip_burst: 1000,
        per_user_per_second: 0,
        per_user_burst: 0,
        trust_forwarded_for: false,
    }
}

/// Serves a stand-in `/graphql` behind the middleware on 127.0.0.1:0.
async fn serve(limits: RateLimits) -> SocketAddr {
    let app = Router::new()
        .route("/graphql", post(|| async { r#"{"data":{}}"# }))
        .layer(middleware::from_fn_with_state(limits, rate_limit));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

async fn call(addr: SocketAddr, headers: &[(&str, &str)]) -> HttpResponse {
    http_post(addr, "/graphql", headers, r#"{"query":"{ __typename }"}"#)
        .await
        .unwrap()
}

/// The statuses of `n` requests in a row.
async fn statuses(addr: SocketAddr, headers: &[(&str, &str)], n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(call(addr, headers).await.status);
    }
    statuses
}

fn bearer(accounts: &Accounts, account_id: Uuid) -> String {
    let (token, _) = accounts
        .issue_access_token(account_id, Role::Customer)
        .unwrap();
    format!("Bearer {token}")
}

#[tokio::test]
async fn an_anonymous_flood_gets_429_after_the_burst() {
    let addr = serve(limits(
        accounts_with(SECRET),
        RateLimitConfig {
            per_ip_per_second: 1,
            per_ip_burst: 5,
            ..config()
        },
    ))
    .await;

    let burst = statuses(addr, &[], 5).await;
    let refused = call(addr, &[]).await;

    assert_eq!(burst, vec![200; 5]);
    assert_eq!(refused.status, 429);
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    let body: Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(body["errors"][0]["message"], "too many requests");
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
}

#[tokio::test]
async fn each_user_has_their_own_budget() {
    let accounts = accounts_with(SECRET);
    let addr = serve(limits(
        accounts.clone(),
        RateLimitConfig {
            per_user_per_second: 1,
            per_user_burst: 2,
            ..config()
        },
    ))
    .await;
    let alice = bearer(&accounts, Uuid::new_v4());
    let bob = bearer(&accounts, Uuid::new_v4());

    let alices = statuses(addr, &[("Authorization", &alice)], 3).await;
    let bobs = statuses(addr, &[("Authorization", &bob)], 3).await;
    let anonymous = statuses(addr, &[], 3).await;

    assert_eq!(alices, vec![200, 200, 429]);
    assert_eq!(bobs, vec![200, 200, 429]);
    // Anonymous requests only count against the (generous) IP budget.
    assert_eq!(anonymous, vec![200; 3]);
}

#[tokio::test]
async fn a_forged_token_does_not_spend_its_victims_budget() {
    let accounts = accounts_with(SECRET);
    let forger = accounts_with(b"a-secret-the-forger-made-up-32-bytes-long");
    let addr = serve(limits(
        accounts.clone(),
        RateLimitConfig {
            per_user_per_second: 1,
            per_user_burst: 2,
            ..config()
        },
    ))
    .await;
    let victim = Uuid::new_v4();
    let forged = bearer(&forger, victim);

    let forged_calls = statuses(addr, &[("Authorization", &forged)], 3).await;
    let victims_calls = statuses(addr, &[("Authorization", &bearer(&accounts, victim))], 2).await;

    // Not the limiter's to refuse: the API answers a bad token itself.
    assert_eq!(forged_calls, vec![200; 3]);
    assert_eq!(victims_calls, vec![200; 2]);
}

#[tokio::test]
async fn a_trusted_forwarded_for_is_the_ip_key() {
    let addr = serve(limits(
        accounts_with(SECRET),
        RateLimitConfig {
            per_ip_per_second: 1,
            per_ip_burst: 2,
            trust_forwarded_for: true,
            ..config()
        },
    ))
    .await;

    let first = statuses(addr, &[("X-Forwarded-For", "203.0.113.1, 10.0.0.1")], 3).await;
    let second = statuses(addr, &[("X-Forwarded-For", "203.0.113.2")], 2).await;

    assert_eq!(first, vec![200, 200, 429]);
    assert_eq!(second, vec![200, 200]);
}

#[tokio::test]
async fn an_untrusted_forwarded_for_cannot_escape_the_limit() {
    let addr = serve(limits(
        accounts_with(SECRET),
        RateLimitConfig {
            per_ip_per_second: 1,
            per_ip_burst: 2,
            ..config()
        },
    ))
    .await;

    let mut seen = Vec::new();
    for i in 1..=3 {
        let forwarded = format!("203.0.113.{i}");
        seen.push(call(addr, &[("X-Forwarded-For", &forwarded)]).await.status);
    }

    assert_eq!(seen, vec![200, 200, 429]);
}

#[tokio::test]
async fn idle_keys_are_forgotten() {
    let accounts = accounts_with(SECRET);
    let limits = limits(
        accounts.clone(),
        RateLimitConfig {
            per_ip_per_second: 1000,
            per_ip_burst: 1,
            per_user_per_second: 1000,
            per_user_burst: 1,
            trust_forwarded_for: true,
        },
    );
    let addr = serve(limits.clone()).await;
    for i in 1..=5 {
        let forwarded = format!("203.0.113.{i}");
        let user = bearer(&accounts, Uuid::new_v4());
        let headers = [
            ("X-Forwarded-For", forwarded.as_str()),
            ("Authorization", &user),
        ];
        assert_eq!(call(addr, &headers).await.status, 200);
    }
    assert_eq!(limits.tracked_keys(), 10);

    // A bucket refills in a millisecond at this rate; then sweeping drops it.
    eventually("idle keys to be swept", Duration::from_secs(5), || {
        let limits = limits.clone();
        async move {
            limits.sweep();
            (limits.tracked_keys() == 0).then_some(())
        }
    })
    .await;
}
