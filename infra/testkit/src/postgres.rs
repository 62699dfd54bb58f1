use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// A fresh database on the PostgreSQL named by `DATABASE_URL`, dropped when the test ends.
pub struct TestDatabase {
    name: String,
    admin: PgConnectOptions,
    pub pool: PgPool,
    pub url: String,
}

impl TestDatabase {
    /// Creates `shopstream_test_<uuid>` and connects a pool to it.
    ///
    /// # Errors
    /// When PostgreSQL is unreachable (run `scripts/install.sh`).
    pub async fn create() -> anyhow::Result<Self> {
        let base = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let admin: PgConnectOptions = base.parse().context("parsing DATABASE_URL")?;
        let name = format!("shopstream_test_{}", uuid::Uuid::new_v4().simple());
        let mut connection = admin
            .connect()
            .await
            .with_context(|| format!("connecting to {base} (is PostgreSQL running?)"))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await?;
        connection.close().await?;
        let options = admin.clone().database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await?;
        Ok(Self {
            name,
            admin,
            pool,
            url,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = self.admin.clone();
        // Drop cannot await; a short-lived thread with its own runtime does the cleanup.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async move {
                    if let Ok(mut connection) = PgConnection::connect_with(&admin).await {
                        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(&drop).execute(&mut connection).await;
                    }
                });
            }
        })
        .join();
    }
}
