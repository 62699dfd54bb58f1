//! Per-IP and per-user rate limits, as an axum middleware in front of the API.
//!
//! Every request counts against its client IP; a request with a valid bearer token also
//! counts against its account, so a user cannot escape their budget by changing
//! address, and users behind one NAT do not share theirs beyond the IP budget.
//! Budgets are GCRA token buckets (`governor`), kept in memory per replica: with N
//! replicas behind a balancer a client can get up to N times the configured rate.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use serde_json::json;

use crate::auth::Accounts;

/// How many requests pass between two sweeps of idle keys.
///
/// A limiter keeps one entry per key it has seen. `retain_recent` drops the entries
/// whose bucket has refilled completely, which behave exactly like absent ones, so
/// sweeping loses no information. Sweeping every N requests on the request path (one
/// pass over the map, cost shared by N requests) needs no background task and no
/// shutdown handling, and bounds the map to the keys active within one refill period
/// plus at most N new ones.
const SWEEP_EVERY: u64 = 4096;

/// Budgets. A `*_per_second` of 0 turns that limit off; a `*_burst` of 0 means "the
/// same as the per-second rate".
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    /// Sustained requests per second from one client IP.
    pub per_ip_per_second: u32,
    /// Requests one client IP may send at once after being idle.
    pub per_ip_burst: u32,
    /// Sustained requests per second from one account.
    pub per_user_per_second: u32,
    /// Requests one account may send at once after being idle.
    pub per_user_burst: u32,
    /// Take the client IP from the first `X-Forwarded-For` entry instead of the peer
    /// address. Only set this behind a proxy that overwrites the header: otherwise any
    /// client picks its own IP key.
    pub trust_forwarded_for: bool,
}

/// The shared limiter state; cheap to clone (one `Arc` inside).
#[derive(Clone)]
pub struct RateLimits {
    inner: Arc<Inner>,
}

struct Inner {
    config: RateLimitConfig,
    per_ip: Option<DefaultKeyedRateLimiter<String>>,
    per_user: Option<DefaultKeyedRateLimiter<String>>,
    accounts: Accounts,
    requests: AtomicU64,
}

impl RateLimits {
    /// Limiters for `config`; `accounts` checks bearer tokens to find the user.
    pub fn new(config: RateLimitConfig, accounts: Accounts) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                per_ip: limiter(config.per_ip_per_second, config.per_ip_burst),
                per_user: limiter(config.per_user_per_second, config.per_user_burst),
                accounts,
                requests: AtomicU64::new(0),
            }),
        }
    }

    /// How many keys (IPs and users) the limiters currently remember.
    pub fn tracked_keys(&self) -> usize {
        self.inner.per_ip.as_ref().map_or(0, |l| l.len())
            + self.inner.per_user.as_ref().map_or(0, |l| l.len())
    }

    /// Forgets the keys whose budget has refilled completely; also done every
    /// few thousand requests.
    pub fn sweep(&self) {
        for limiter in [&self.inner.per_ip, &self.inner.per_user]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Takes one request from each budget it counts against; on refusal, how long
    /// until the exhausted budget allows one again.
    fn check(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Duration> {
        let count = self.inner.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if count.is_multiple_of(SWEEP_EVERY) {
            self.sweep();
        }
        if let Some(per_ip) = &self.inner.per_ip {
            let ip = client_ip(peer, headers, self.inner.config.trust_forwarded_for);
            take(per_ip, &format!("ip:{ip}"))?;
        }
        if let Some(per_user) = &self.inner.per_user {
            // An invalid token is not refused here: the API answers it with its own
            // error, and the request has counted against the IP.
            if let Some(principal) =
                bearer(headers).and_then(|t| self.inner.accounts.verify(t).ok())
            {
                take(per_user, &format!("user:{}", principal.account_id))?;
            }
        }
        Ok(())
    }
}

/// The middleware: refuses a request over any of its budgets with 429, `Retry-After`
/// and a GraphQL-shaped error (`extensions.code` `RATE_LIMITED`); passes the rest on.
///
/// Needs the router served with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
pub async fn rate_limit(
    State(limits): State<RateLimits>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    match limits.check(peer, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(wait) => too_many_requests(wait),
    }
}

fn limiter(per_second: u32, burst: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(DefaultKeyedRateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

fn take(limiter: &DefaultKeyedRateLimiter<String>, key: &String) -> Result<(), Duration> {
    limiter
        .check_key(key)
        .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
}

fn client_ip(peer: SocketAddr, headers: &HeaderMap, trust_forwarded_for: bool) -> IpAddr {
    let forwarded = || {
        headers
            .get("x-forwarded-for")?
            .to_str()
            .ok()?
            .split(',')
            .next()?
            .trim()
            .parse::<IpAddr>()
            .ok()
    };
    trust_forwarded_for
        .then(forwarded)
        .flatten()
        .unwrap_or_else(|| peer.ip())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

fn too_many_requests(wait: Duration) -> Response {
    // Whole seconds, rounded up, never 0: a client retrying at once would be refused.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let body = json!({
        "errors": [{ "message": "too many requests", "extensions": { "code": "RATE_LIMITED" } }]
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

#[cfg(test)]
mod tests;
