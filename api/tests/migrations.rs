//! The api crate's and the projections' migrators share one `_sqlx_migrations` table.

use testkit::TestDatabase;

#[tokio::test]
async fn both_migrators_run_in_any_order_on_one_database() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;

    projections::migrate(&db.pool).await?;
    api::migrate(&db.pool).await?;
    // Without `ignore_missing` this fails with VersionMissing(1001).
    projections::migrate(&db.pool).await?;
    api::migrate(&db.pool).await?;

    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&db.pool)
            .await?;
    let newest_api = api::MIGRATOR.iter().map(|m| m.version).max();
    assert_eq!(versions.last().copied(), newest_api);
    assert_eq!(
        versions.len(),
        projections::MIGRATOR.iter().count() + api::MIGRATOR.iter().count()
    );
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts.accounts")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(accounts, 0);
    Ok(())
}

#[tokio::test]
async fn the_api_migrations_can_run_first() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;

    api::migrate(&db.pool).await?;
    // Without `ignore_missing` on the projections' migrator this fails.
    projections::migrate(&db.pool).await?;

    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(
        applied as usize,
        projections::MIGRATOR.iter().count() + api::MIGRATOR.iter().count()
    );
    Ok(())
}
