//! Accounts and sessions against a real PostgreSQL: registration, login, token
//! rotation and theft detection, logout, and access tokens that must not verify.

use std::time::{Duration, Instant};

use api::auth::{
    cli_session_status, end_cli_session, Accounts, AuthConfig, AuthError, CliSessionStatus,
    Principal, Role,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use testkit::TestDatabase;
use uuid::Uuid;

const SECRET: &[u8] = b"test-secret-that-is-at-least-32-bytes-long";
const ISSUER: &str = "shopstream";
const AUDIENCE: &str = "shopstream-api";
const PASSWORD: &str = "correct horse battery";

fn config() -> AuthConfig {
    config_with(SECRET, ISSUER, AUDIENCE)
}

fn config_with(secret: &[u8], issuer: &str, audience: &str) -> AuthConfig {
    AuthConfig::new(
        secret.to_vec(),
        issuer,
        audience,
        Duration::from_secs(15 * 60),
        Duration::from_secs(30 * 24 * 3600),
    )
    .unwrap()
}

async fn setup() -> anyhow::Result<(TestDatabase, Accounts)> {
    setup_with(config()).await
}

async fn setup_with(config: AuthConfig) -> anyhow::Result<(TestDatabase, Accounts)> {
    let db = TestDatabase::create().await?;
    api::migrate(&db.pool).await?;
    let accounts = Accounts::new(db.pool.clone(), config);
    Ok((db, accounts))
}

async fn count(db: &TestDatabase, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM accounts.{table}"))
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// Claims as `Accounts` writes them, for tokens built by hand.
fn claims(sub: Uuid, role: &str) -> Value {
    let now = Utc::now().timestamp();
    json!({
        "sub": sub, "role": role, "iss": ISSUER, "aud": AUDIENCE,
        "exp": now + 600, "iat": now, "jti": Uuid::new_v4(),
    })
}

fn b64(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap())
}

/// HMAC-SHA256 (RFC 2104), to sign hand-built tokens.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0_u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// A token with any header, signed by HMAC-SHA256 with `key` whatever the header says.
fn hand_signed(header: &Value, claims: &Value, key: &[u8]) -> String {
    let content = format!("{}.{}", b64(header), b64(claims));
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(key, content.as_bytes()));
    format!("{content}.{signature}")
}

fn assert_invalid_token(result: Result<Principal, AuthError>) {
    match result {
        Err(AuthError::InvalidToken(reason)) => assert!(!reason.is_empty()),
        other => panic!("expected InvalidToken, got {other:?}"),
    }
}

#[tokio::test]
async fn register_login_and_verify_give_the_principal() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;

    let account = accounts.register("  Alice@Example.com ", PASSWORD).await?;
    let session = accounts.login("ALICE@example.com", PASSWORD).await?;
    let principal = accounts.verify(&session.access_token)?;

    assert_eq!(account.email, "alice@example.com");
    assert_eq!(account.role, Role::Customer);
    assert_eq!(session.account, account);
    assert_eq!(
        principal,
        Principal {
            account_id: account.id,
            role: Role::Customer
        }
    );
    assert_eq!(principal.actor(), domain::Actor::User(account.id));
    let access_ttl = session.access_expires_at - Utc::now();
    assert!(access_ttl.num_seconds() > 14 * 60 && access_ttl.num_seconds() <= 15 * 60);
    assert!(session.refresh_expires_at > Utc::now() + chrono::TimeDelta::days(29));
    assert_eq!(accounts.account(account.id).await?, Some(account));
    assert_eq!(accounts.account(Uuid::new_v4()).await?, None);
    Ok(())
}

#[tokio::test]
async fn a_created_account_has_the_role_it_was_given() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;

    let admin = accounts
        .create("root@shop.test", PASSWORD, Role::Admin)
        .await?;
    let session = accounts.login("root@shop.test", PASSWORD).await?;

    assert_eq!(admin.role, Role::Admin);
    assert_eq!(accounts.verify(&session.access_token)?.role, Role::Admin);
    Ok(())
}

#[tokio::test]
async fn the_same_email_in_another_case_is_taken() -> anyhow::Result<()> {
    let (db, accounts) = setup().await?;
    accounts.register("bob@example.com", PASSWORD).await?;

    let error = accounts
        .register(" BOB@Example.COM", "another password")
        .await
        .unwrap_err();

    assert!(matches!(error, AuthError::EmailTaken), "{error:?}");
    assert_eq!(error.code(), "CONFLICT");
    assert_eq!(count(&db, "accounts").await, 1);
    Ok(())
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_fail_alike() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;
    accounts.register("carol@example.com", PASSWORD).await?;

    let wrong_password = accounts
        .login("carol@example.com", "not the password")
        .await
        .unwrap_err();
    let unknown_email = accounts
        .login("dave@example.com", PASSWORD)
        .await
        .unwrap_err();

    assert!(matches!(wrong_password, AuthError::InvalidCredentials));
    assert!(matches!(unknown_email, AuthError::InvalidCredentials));
    assert_eq!(wrong_password.to_string(), unknown_email.to_string());
    assert_eq!(unknown_email.code(), "UNAUTHENTICATED");
    Ok(())
}

#[tokio::test]
async fn an_unknown_email_costs_a_password_hash_too() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;
    accounts.register("erin@example.com", PASSWORD).await?;
    // Warm the pool and the blocking threads so neither path pays for them.
    let _ = accounts.login("erin@example.com", "wrong password").await;

    let time = |email: &'static str| {
        let accounts = accounts.clone();
        async move {
            let mut samples = Vec::new();
            for _ in 0..3 {
                let started = Instant::now();
                let _ = accounts.login(email, "wrong password").await;
                samples.push(started.elapsed());
            }
            samples.sort();
            samples[1]
        }
    };
    let known = time("erin@example.com").await;
    let unknown = time("nobody@example.com").await;

    // A lookup alone takes about a millisecond; an argon2id verify tens of them.
    assert!(
        unknown * 4 > known,
        "unknown email took {unknown:?}, a wrong password {known:?}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_writes_nothing() -> anyhow::Result<()> {
    let (db, accounts) = setup().await?;

    let short = accounts
        .register("a@example.com", "1234567")
        .await
        .unwrap_err();
    let long = accounts
        .register("a@example.com", &"x".repeat(257))
        .await
        .unwrap_err();
    let no_at = accounts
        .register("a.example.com", PASSWORD)
        .await
        .unwrap_err();
    let empty_local = accounts
        .register("@example.com", PASSWORD)
        .await
        .unwrap_err();
    let too_long_email = accounts
        .register(&format!("{}@example.com", "a".repeat(250)), PASSWORD)
        .await
        .unwrap_err();

    assert!(
        matches!(short, AuthError::WeakPassword { min: 8 }),
        "{short:?}"
    );
    assert!(
        matches!(long, AuthError::PasswordTooLong { max: 256 }),
        "{long:?}"
    );
    for error in [&no_at, &empty_local, &too_long_email] {
        assert!(matches!(error, AuthError::InvalidEmail), "{error:?}");
    }
    for error in [&short, &long, &no_at] {
        assert_eq!(error.code(), "BAD_USER_INPUT");
    }
    assert_eq!(count(&db, "accounts").await, 0);
    Ok(())
}

#[tokio::test]
async fn the_stored_hash_is_an_argon2id_phc_string() -> anyhow::Result<()> {
    let (db, accounts) = setup().await?;
    let account = accounts.register("frank@example.com", PASSWORD).await?;

    let stored: String =
        sqlx::query_scalar("SELECT password_hash FROM accounts.accounts WHERE account_id = $1")
            .bind(account.id)
            .fetch_one(&db.pool)
            .await?;

    assert!(stored.starts_with("$argon2id$v=19$"), "{stored}");
    assert_eq!(stored.split('$').count(), 6, "{stored}");
    assert!(!stored.contains(PASSWORD));
    Ok(())
}

#[tokio::test]
async fn refresh_rotates_and_the_old_token_then_revokes_the_family() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;
    let account = accounts.register("grace@example.com", PASSWORD).await?;
    let first = accounts.login("grace@example.com", PASSWORD).await?;

    let second = accounts.refresh(&first.refresh_token).await?;
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(
        accounts.verify(&second.access_token)?.account_id,
        account.id
    );

    let replayed = accounts.refresh(&first.refresh_token).await.unwrap_err();
    assert!(
        matches!(replayed, AuthError::InvalidToken(_)),
        "{replayed:?}"
    );
    // The replay revoked the family: the newest token is dead as well.
    let newest = accounts.refresh(&second.refresh_token).await.unwrap_err();
    assert!(matches!(newest, AuthError::InvalidToken(_)), "{newest:?}");
    Ok(())
}

#[tokio::test]
async fn a_rotation_chain_keeps_working_while_each_token_is_used_once() -> anyhow::Result<()> {
    let (db, accounts) = setup().await?;
    accounts.register("heidi@example.com", PASSWORD).await?;
    let mut session = accounts.login("heidi@example.com", PASSWORD).await?;

    for _ in 0..3 {
        session = accounts.refresh(&session.refresh_token).await?;
    }

    assert!(accounts.verify(&session.access_token).is_ok());
    assert_eq!(count(&db, "refresh_tokens").await, 4);
    let stored_plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts.refresh_tokens WHERE token_hash = convert_to($1, 'UTF8')",
    )
    .bind(&session.refresh_token)
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(stored_plain, 0, "refresh tokens are stored hashed");
    Ok(())
}

#[tokio::test]
async fn a_refresh_sees_the_current_role() -> anyhow::Result<()> {
    let (db, accounts) = setup().await?;
    let account = accounts.register("ivan@example.com", PASSWORD).await?;
    let session = accounts.login("ivan@example.com", PASSWORD).await?;
    sqlx::query("UPDATE accounts.accounts SET role = 'operator' WHERE account_id = $1")
        .bind(account.id)
        .execute(&db.pool)
        .await?;

    let refreshed = accounts.refresh(&session.refresh_token).await?;

    assert_eq!(refreshed.account.role, Role::Operator);
    assert_eq!(
        accounts.verify(&refreshed.access_token)?.role,
        Role::Operator
    );
    Ok(())
}

#[tokio::test]
async fn a_replay_racing_the_owners_refresh_leaves_no_live_token() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;
    accounts.register("judy@example.com", PASSWORD).await?;

    for round in 0..10 {
        let stolen = accounts.login("judy@example.com", PASSWORD).await?;
        let current = accounts.refresh(&stolen.refresh_token).await?;

        let (replay, owner) = tokio::join!(
            accounts.refresh(&stolen.refresh_token),
            accounts.refresh(&current.refresh_token),
        );

        assert!(replay.is_err(), "round {round}: the replay succeeded");
        if let Ok(owner) = owner {
            // Whichever committed first, the family ends up revoked.
            let next = accounts.refresh(&owner.refresh_token).await;
            assert!(
                next.is_err(),
                "round {round}: a token outlived the revocation"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn logout_revokes_the_session_and_only_that_one() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;
    accounts.register("ken@example.com", PASSWORD).await?;
    let phone = accounts.login("ken@example.com", PASSWORD).await?;
    let laptop = accounts.login("ken@example.com", PASSWORD).await?;
    let phone_now = accounts.refresh(&phone.refresh_token).await?;

    accounts.logout(&phone_now.refresh_token).await?;

    let error = accounts
        .refresh(&phone_now.refresh_token)
        .await
        .unwrap_err();
    assert!(matches!(error, AuthError::InvalidToken(_)), "{error:?}");
    assert!(accounts.refresh(&laptop.refresh_token).await.is_ok());
    // Logging out twice is not an error.
    accounts.logout(&phone_now.refresh_token).await?;
    Ok(())
}

#[tokio::test]
async fn unknown_and_expired_refresh_tokens_fail() -> anyhow::Result<()> {
    let mut config = config();
    config.refresh_ttl = Duration::ZERO;
    let (_db, accounts) = setup_with(config).await?;
    accounts.register("leo@example.com", PASSWORD).await?;
    let session = accounts.login("leo@example.com", PASSWORD).await?;

    let expired = accounts.refresh(&session.refresh_token).await.unwrap_err();
    let unknown = accounts.refresh("not-a-token").await.unwrap_err();
    let unknown_logout = accounts.logout("not-a-token").await.unwrap_err();

    assert!(
        matches!(&expired, AuthError::InvalidToken(reason) if reason.contains("expired")),
        "{expired:?}"
    );
    assert!(matches!(unknown, AuthError::InvalidToken(_)), "{unknown:?}");
    assert!(matches!(unknown_logout, AuthError::InvalidToken(_)));
    Ok(())
}

#[tokio::test]
async fn a_hand_signed_hs256_token_verifies() -> anyhow::Result<()> {
    // The control for the forgeries below: the same construction with the right
    // header is accepted, so their rejection is about what they change.
    let (_db, accounts) = setup().await?;
    let id = Uuid::new_v4();

    let token = hand_signed(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims(id, "admin"),
        SECRET,
    );

    assert_eq!(
        accounts.verify(&token)?,
        Principal {
            account_id: id,
            role: Role::Admin
        }
    );
    Ok(())
}

fn expired_by(seconds: i64) -> String {
    let mut claims = claims(Uuid::new_v4(), "customer");
    let exp = Utc::now().timestamp() - seconds;
    claims["exp"] = json!(exp);
    claims["iat"] = json!(exp - 900);
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

#[tokio::test]
async fn an_expired_access_token_is_refused_after_a_few_seconds_of_leeway() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;

    let just_expired = expired_by(1);
    let expired = expired_by(10);

    // Five seconds of leeway for clock skew, not jsonwebtoken's default of sixty.
    assert!(accounts.verify(&just_expired).is_ok());
    assert_invalid_token(accounts.verify(&expired));
    Ok(())
}

#[tokio::test]
async fn an_alg_none_token_is_refused() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;
    let header = json!({"alg": "none", "typ": "JWT"});

    let token = format!(
        "{}.{}.",
        b64(&header),
        b64(&claims(Uuid::new_v4(), "admin"))
    );

    assert_invalid_token(accounts.verify(&token));
    Ok(())
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_refused() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;
    let other = Accounts::new(
        accounts_pool_placeholder(),
        config_with(b"another-secret-that-is-32-bytes-or-more", ISSUER, AUDIENCE),
    );

    let (token, _) = other.issue_access_token(Uuid::new_v4(), Role::Admin)?;

    assert_invalid_token(accounts.verify(&token));
    Ok(())
}

#[tokio::test]
async fn an_hs512_token_with_the_same_secret_is_refused() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;

    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims(Uuid::new_v4(), "admin"),
        &EncodingKey::from_secret(SECRET),
    )?;

    assert_invalid_token(accounts.verify(&token));
    Ok(())
}

#[tokio::test]
async fn an_rs256_header_over_an_hmac_signature_is_refused() -> anyhow::Result<()> {
    // Key confusion: a verifier that trusts the header might check an "RS256"
    // signature with the HMAC secret as the key.
    let (_db, accounts) = setup().await?;

    let token = hand_signed(
        &json!({"alg": "RS256", "typ": "JWT"}),
        &claims(Uuid::new_v4(), "admin"),
        SECRET,
    );

    assert_invalid_token(accounts.verify(&token));
    Ok(())
}

#[tokio::test]
async fn tokens_for_another_audience_or_issuer_are_refused() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;
    let other_audience = Accounts::new(
        accounts_pool_placeholder(),
        config_with(SECRET, ISSUER, "another-api"),
    );
    let other_issuer = Accounts::new(
        accounts_pool_placeholder(),
        config_with(SECRET, "someone-else", AUDIENCE),
    );

    let (for_audience, _) = other_audience.issue_access_token(Uuid::new_v4(), Role::Admin)?;
    let (from_issuer, _) = other_issuer.issue_access_token(Uuid::new_v4(), Role::Admin)?;

    assert_invalid_token(accounts.verify(&for_audience));
    assert_invalid_token(accounts.verify(&from_issuer));
    Ok(())
}

#[tokio::test]
async fn an_unknown_role_or_a_missing_subject_is_refused() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let mut no_subject = claims(Uuid::new_v4(), "admin");
    no_subject.as_object_mut().unwrap().remove("sub");

    let unknown_role = hand_signed(&header, &claims(Uuid::new_v4(), "superuser"), SECRET);
    let without_sub = hand_signed(&header, &no_subject, SECRET);

    assert_invalid_token(accounts.verify(&unknown_role));
    assert_invalid_token(accounts.verify(&without_sub));
    Ok(())
}

#[tokio::test]
async fn garbage_is_not_a_token() -> anyhow::Result<()> {
    let (_db, accounts) = setup().await?;

    for garbage in ["", "abc", "a.b.c", "....", "Bearer x"] {
        assert_invalid_token(accounts.verify(garbage));
    }
    Ok(())
}

#[test]
fn a_secret_shorter_than_32_bytes_is_refused() {
    let result = AuthConfig::new(
        vec![1; 31],
        ISSUER,
        AUDIENCE,
        Duration::from_secs(60),
        Duration::from_secs(60),
    );

    assert!(matches!(result, Err(AuthError::WeakSecret)));
}

/// A pool that never connects, for `Accounts` that only sign tokens.
fn accounts_pool_placeholder() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .unwrap()
}

#[tokio::test]
async fn a_cli_session_follows_the_accounts_current_role_until_logout() -> anyhow::Result<()> {
    let (db, accounts) = setup().await?;
    let account = accounts
        .create("mia@example.com", PASSWORD, Role::Operator)
        .await?;
    let session = accounts
        .start_cli_session("MIA@example.com", PASSWORD, Duration::from_secs(3600))
        .await?;
    let active = |role| {
        CliSessionStatus::Active(Principal {
            account_id: account.id,
            role,
        })
    };
    assert_eq!(
        cli_session_status(&db.pool, &session.token).await?,
        active(Role::Operator)
    );
    // Only the token's sha256 is stored.
    let hash: Vec<u8> = Sha256::digest(session.token.as_bytes()).to_vec();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM accounts.cli_sessions")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(stored, hash);

    sqlx::query("UPDATE accounts.accounts SET role = 'auditor' WHERE account_id = $1")
        .bind(account.id)
        .execute(&db.pool)
        .await?;
    assert_eq!(
        cli_session_status(&db.pool, &session.token).await?,
        active(Role::Auditor)
    );

    assert!(end_cli_session(&db.pool, &session.token).await?);
    assert!(!end_cli_session(&db.pool, &session.token).await?);
    assert_eq!(
        cli_session_status(&db.pool, &session.token).await?,
        CliSessionStatus::Revoked {
            account_id: account.id
        }
    );
    assert_eq!(
        cli_session_status(&db.pool, "not-a-token").await?,
        CliSessionStatus::Unknown
    );
    Ok(())
}

#[tokio::test]
async fn a_cli_session_past_its_lifetime_is_expired() -> anyhow::Result<()> {
    let (db, accounts) = setup().await?;
    let account = accounts
        .create("ned@example.com", PASSWORD, Role::Auditor)
        .await?;
    let session = accounts
        .start_cli_session("ned@example.com", PASSWORD, Duration::from_secs(60))
        .await?;
    sqlx::query(
        "UPDATE accounts.cli_sessions
         SET created_at = now() - interval '2 minutes', expires_at = now() - interval '1 minute'",
    )
    .execute(&db.pool)
    .await?;
    assert_eq!(
        cli_session_status(&db.pool, &session.token).await?,
        CliSessionStatus::Expired {
            account_id: account.id
        }
    );
    Ok(())
}

#[tokio::test]
async fn a_cli_login_fails_alike_for_a_wrong_password_or_an_unknown_email_and_stores_nothing(
) -> anyhow::Result<()> {
    let (db, accounts) = setup().await?;
    accounts
        .create("olga@example.com", PASSWORD, Role::Operator)
        .await?;
    let ttl = Duration::from_secs(60);
    let wrong = accounts
        .start_cli_session("olga@example.com", "wrong password", ttl)
        .await
        .unwrap_err();
    let unknown = accounts
        .start_cli_session("nobody@example.com", PASSWORD, ttl)
        .await
        .unwrap_err();
    let zero = accounts
        .start_cli_session("olga@example.com", PASSWORD, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(wrong, AuthError::InvalidCredentials), "{wrong:?}");
    assert!(
        matches!(unknown, AuthError::InvalidCredentials),
        "{unknown:?}"
    );
    assert!(matches!(zero, AuthError::InvalidLifetime), "{zero:?}");
    assert_eq!(count(&db, "cli_sessions").await, 0);
    Ok(())
}
