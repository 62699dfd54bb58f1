//! GraphQL over HTTP, spread over the API replicas round robin, with every failure
//! reduced to a code the report can count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

/// Why a request did not give an answer the load generator could use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No HTTP answer: `TIMEOUT`, `CONNECT` or `TRANSPORT`.
    Transport(&'static str),
    /// A GraphQL error's `extensions.code` (`RATE_LIMITED`, `READ_MODEL_BEHIND`...), or
    /// `HTTP_<status>` when the body carried none.
    Error(String),
    /// A `userErrors` code: the API refused the input by a rule (`INSUFFICIENT_STOCK`).
    Refused(String),
}

impl Failure {
    /// The code the report counts.
    pub fn code(&self) -> &str {
        match self {
            Failure::Transport(code) => code,
            Failure::Error(code) | Failure::Refused(code) => code.as_str(),
        }
    }

    /// Whether the API answered with a rule broken rather than failing.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Failure::Refused(_))
    }
}

/// A GraphQL client for one or more API replicas.
#[derive(Debug)]
pub struct Graphql {
    http: reqwest::Client,
    urls: Vec<String>,
    next: AtomicUsize,
}

impl Graphql {
    /// A client for `urls`, each request bounded by `timeout`.
    ///
    /// # Errors
    /// When `urls` is empty or the HTTP client cannot be built.
    pub fn new(urls: Vec<String>, timeout: Duration, connections: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !urls.is_empty(),
            "--url needs at least one GraphQL endpoint"
        );
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(connections)
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            urls,
            next: AtomicUsize::new(0),
        })
    }

    /// Sends `query` with `variables` (as `token`'s account when given) to the next
    /// replica, and returns `data`.
    ///
    /// # Errors
    /// A [`Failure`]: no answer, an HTTP error, or a GraphQL error (the first one's code).
    pub async fn request(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Result<Value, Failure> {
        let url = &self.urls[self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len()];
        let mut request = self
            .http
            .post(url)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(error) if error.is_timeout() => return Err(Failure::Transport("TIMEOUT")),
            Err(_) => return Err(Failure::Error(format!("HTTP_{}", status.as_u16()))),
        };
        if let Some(error) = body["errors"].as_array().and_then(|e| e.first()) {
            let code = error["extensions"]["code"]
                .as_str()
                .map_or_else(|| format!("HTTP_{}", status.as_u16()), str::to_owned);
            return Err(Failure::Error(code));
        }
        if !status.is_success() {
            return Err(Failure::Error(format!("HTTP_{}", status.as_u16())));
        }
        Ok(body["data"].clone())
    }

    /// Sends a mutation and returns its payload (`data.<field>`), or the first of its
    /// `userErrors` as [`Failure::Refused`].
    ///
    /// # Errors
    /// As [`Graphql::request`], plus the refusal.
    pub async fn mutate(
        &self,
        token: Option<&str>,
        field: &str,
        query: &str,
        variables: Value,
    ) -> Result<Value, Failure> {
        let data = self.request(token, query, variables).await?;
        let payload = data[field].clone();
        if let Some(error) = payload["userErrors"].as_array().and_then(|e| e.first()) {
            return Err(Failure::Refused(
                error["code"].as_str().unwrap_or("USER_ERROR").to_owned(),
            ));
        }
        Ok(payload)
    }
}

fn transport(error: reqwest::Error) -> Failure {
    Failure::Transport(if error.is_timeout() {
        "TIMEOUT"
    } else if error.is_connect() {
        "CONNECT"
    } else {
        "TRANSPORT"
    })
}

/// A `Position` scalar (a decimal string) as a number.
pub fn position(payload: &Value) -> Option<u64> {
    payload["position"].as_str()?.parse().ok()
}

/// The uuid inside an opaque id (`gid://shopstream/Order/<uuid>`).
pub fn uuid_of(global_id: &str) -> Option<uuid::Uuid> {
    global_id.rsplit('/').next()?.parse().ok()
}
