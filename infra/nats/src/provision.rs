//! Connecting to NATS, checking the server, and creating the stream and buckets.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use tracing::info;

use crate::error::StoreError;
use crate::subjects::{EVENTS_STREAM, EVENTS_SUBJECTS, SKUS_BUCKET, SNAPSHOTS_BUCKET};

/// The oldest nats-server shopstream runs on, as (major, minor, patch).
///
/// 2.12 is the first release with everything the store relies on together: per-subject
/// expected-sequence checks fixed for clusters (nats-server #4320), batch direct get
/// (ADR-31) used to load aggregates, and message schedules for durable deadlines.
/// 2.10.20 to 2.10.22 could lose a whole stream after `kill -9`.
pub const MINIMUM_SERVER_VERSION: (u64, u64, u64) = (2, 12, 0);

/// Why a server was refused at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ServerCheckError {
    #[error(
        "nats-server {found} is too old: shopstream needs {}.{}.{} or newer (see README, \"NATS version\")",
        MINIMUM_SERVER_VERSION.0, MINIMUM_SERVER_VERSION.1, MINIMUM_SERVER_VERSION.2
    )]
    TooOld { found: String },
    #[error("nats-server {version} does not have JetStream enabled (start it with -js): {source}")]
    NoJetStream {
        version: String,
        #[source]
        source: async_nats::jetstream::context::AccountError,
    },
    #[error("cannot parse the nats-server version `{0}`")]
    BadVersion(String),
}

/// How the events stream and buckets are laid out on the server.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// 1 on a single server, 3 on a cluster.
    pub replicas: usize,
    /// How long the server remembers a `Nats-Msg-Id` for de-duplication.
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            replicas: 1,
            duplicate_window: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// Connects with settings suited to a long-running service (unbounded reconnects).
///
/// `urls` names one server or several, comma-separated (the nodes of a cluster): the
/// client connects to one of them and moves to another when its server goes away.
///
/// # Errors
/// [`StoreError::Nats`] when a URL is malformed or no server answers.
pub async fn connect(urls: &str) -> Result<async_nats::Client, StoreError> {
    async_nats::ConnectOptions::new()
        .name("shopstream")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(server_addrs(urls)?)
        .await
        .map_err(StoreError::nats)
}

/// Parses a comma-separated list of server URLs; async-nats reads a string as one URL.
fn server_addrs(urls: &str) -> Result<Vec<async_nats::ServerAddr>, StoreError> {
    let addrs = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|e| StoreError::nats(format!("`{url}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(StoreError::nats("no NATS server URL given"));
    }
    Ok(addrs)
}

/// Refuses a server that is older than [`MINIMUM_SERVER_VERSION`] or lacks JetStream.
///
/// # Errors
/// [`ServerCheckError`] naming the version found and the one needed.
pub async fn check_server(client: &async_nats::Client) -> Result<(), ServerCheckError> {
    let version = connected_server_version(client).await;
    let found = parse_version(&version)?;
    if found < MINIMUM_SERVER_VERSION {
        return Err(ServerCheckError::TooOld { found: version });
    }
    jetstream::new(client.clone())
        .query_account()
        .await
        .map_err(|source| ServerCheckError::NoJetStream {
            version: version.clone(),
            source,
        })?;
    Ok(())
}

/// The server's version once the (possibly still retrying) connection is up.
async fn connected_server_version(client: &async_nats::Client) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let version = client.server_info().version;
        if !version.is_empty() || tokio::time::Instant::now() > deadline {
            return version;
        }
        // `flush` completes once the connection is established.
        let _ = tokio::time::timeout(Duration::from_millis(250), client.flush()).await;
    }
}

fn parse_version(version: &str) -> Result<(u64, u64, u64), ServerCheckError> {
    let core = version.trim_start_matches('v');
    let core = core.split(['-', '+']).next().unwrap_or(core);
    let mut parts = core.split('.').map(str::parse::<u64>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch))) => Ok((major, minor, patch)),
        _ => Err(ServerCheckError::BadVersion(version.to_owned())),
    }
}

/// The events stream's configuration.
pub fn events_stream_config(settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: EVENTS_STREAM.to_owned(),
        description: Some("shopstream domain events: one message per command commit".to_owned()),
        subjects: vec![EVENTS_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window,
        deny_delete: true,
        deny_purge: true,
        // Loading an aggregate uses batch direct get by subject.
        allow_direct: true,
        ..Default::default()
    }
}

/// Creates or updates the events stream and the buckets; safe to run on every start.
///
/// # Errors
/// [`StoreError::Nats`] when the server refuses the configuration.
pub async fn provision(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<(), StoreError> {
    js.create_or_update_stream(events_stream_config(settings))
        .await
        .map_err(StoreError::nats)?;
    for (bucket, description, history) in [
        (
            SNAPSHOTS_BUCKET,
            "aggregate snapshots (a cache: the stream is the truth)",
            1,
        ),
        (
            SKUS_BUCKET,
            "catalog-wide SKU reservations: sku -> product id",
            1,
        ),
    ] {
        let config = kv::Config {
            bucket: bucket.to_owned(),
            description: description.to_owned(),
            history,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            ..Default::default()
        };
        if js.get_key_value(bucket).await.is_err() {
            js.create_key_value(config)
                .await
                .map_err(StoreError::nats)?;
        }
    }
    info!(
        stream = EVENTS_STREAM,
        replicas = settings.replicas,
        "event store provisioned"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(parse_version("2.15.1").unwrap(), (2, 15, 1));
        assert_eq!(parse_version("v2.12.0-beta.1").unwrap(), (2, 12, 0));
        assert!(parse_version("2.9.25").unwrap() < MINIMUM_SERVER_VERSION);
        assert!(parse_version("2.10.0").unwrap() < MINIMUM_SERVER_VERSION);
        assert!(parse_version("2.12.0").unwrap() >= MINIMUM_SERVER_VERSION);
        assert!(parse_version("garbage").is_err());
    }

    #[test]
    fn a_comma_separated_url_list_is_every_server_in_order() {
        let addrs = server_addrs("nats://10.0.0.1:4222, nats-2:4223,,tls://nats-3:4224").unwrap();
        let hosts: Vec<_> = addrs
            .iter()
            .map(|addr| (addr.host().to_owned(), addr.port()))
            .collect();
        assert_eq!(
            hosts,
            [
                ("10.0.0.1".to_owned(), 4222),
                ("nats-2".to_owned(), 4223),
                ("nats-3".to_owned(), 4224)
            ]
        );
    }

    #[test]
    fn a_malformed_or_empty_url_list_is_refused_naming_the_url() {
        let error = server_addrs("nats://ok:4222,nats://bad:port").unwrap_err();
        assert!(error.to_string().contains("nats://bad:port"), "{error}");
        assert!(server_addrs(" , ").is_err());
    }
}
