//! Accounts in PostgreSQL, and the sessions that log them in.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use tracing::instrument;
use uuid::Uuid;

use crate::auth::config::MIN_SECRET_BYTES;
use crate::auth::password::{self, DUMMY_HASH};
use crate::auth::tokens::{hash_refresh_token, AccessTokens, RefreshToken};
use crate::auth::{AuthConfig, AuthError, Principal, Role};

/// The longest email accepted, in characters (RFC 5321's path limit).
const MAX_EMAIL_CHARS: usize = 254;

/// The first key of the transaction-level advisory lock taken on a refresh-token
/// family; the second is a hash of the family id. The two-key form never collides
/// with the single-key lock sqlx takes while migrating.
const FAMILY_LOCK_CLASS: i32 = 1001;

/// An account as the API shows it: never its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The account id, also the `sub` of its access tokens.
    pub id: Uuid,
    /// Trimmed and lowercased.
    pub email: String,
    /// What the account may do.
    pub role: Role,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// A logged-in session: a short-lived access token to send as `Authorization: Bearer`,
/// and a refresh token to trade for the next session.
#[derive(Clone)]
pub struct Session {
    /// Who is logged in.
    pub account: Account,
    /// An HS256 JWT.
    pub access_token: String,
    /// When the access token stops being accepted.
    pub access_expires_at: DateTime<Utc>,
    /// An opaque token, good for one [`Accounts::refresh`].
    pub refresh_token: String,
    /// When the refresh token stops being accepted.
    pub refresh_expires_at: DateTime<Utc>,
}

/// Tokens are credentials: debug output shows only when they expire.
impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("account", &self.account)
            .field("access_token", &"<redacted>")
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_token", &"<redacted>")
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish()
    }
}

/// Registration, login, token rotation and logout. Cheap to clone: one `Arc` inside.
#[derive(Clone)]
pub struct Accounts {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    access: AccessTokens,
    refresh_ttl: TimeDelta,
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    account_id: Uuid,
    email: String,
    role: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<AccountRow> for Account {
    type Error = AuthError;

    fn try_from(row: AccountRow) -> Result<Self, AuthError> {
        let role = row
            .role
            .parse()
            .map_err(|error| AuthError::Database(sqlx::Error::Decode(Box::new(error))))?;
        Ok(Account {
            id: row.account_id,
            email: row.email,
            role,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct CredentialsRow {
    password_hash: String,
    #[sqlx(flatten)]
    account: AccountRow,
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    #[sqlx(flatten)]
    account: AccountRow,
}

impl Accounts {
    /// Accounts stored in `pool` (migrated by [`crate::migrate`]), with tokens signed as
    /// `config` says.
    pub fn new(pool: PgPool, config: AuthConfig) -> Self {
        if config.secret.len() < MIN_SECRET_BYTES {
            // `AuthConfig::new` refuses such a secret; this one was built by hand.
            tracing::warn!(
                bytes = config.secret.len(),
                "the token signing secret is shorter than 32 bytes"
            );
        }
        Self {
            inner: Arc::new(Inner {
                pool,
                access: AccessTokens::new(&config),
                refresh_ttl: TimeDelta::from_std(config.refresh_ttl).unwrap_or(TimeDelta::MAX),
            }),
        }
    }

    /// Registers a customer account.
    ///
    /// # Errors
    /// [`AuthError::InvalidEmail`], [`AuthError::WeakPassword`] or
    /// [`AuthError::PasswordTooLong`] for bad input (nothing is written),
    /// [`AuthError::EmailTaken`] when the email, in any case, has an account already.
    pub async fn register(&self, email: &str, password: &str) -> Result<Account, AuthError> {
        self.create(email, password, Role::Customer).await
    }

    /// Creates an account with any role, such as the first admin from the command line.
    ///
    /// # Errors
    /// As [`Accounts::register`].
    #[instrument(skip_all, fields(role = %role))]
    pub async fn create(
        &self,
        email: &str,
        password: &str,
        role: Role,
    ) -> Result<Account, AuthError> {
        let email = normalize_email(email)?;
        password::check_new(password)?;
        let password_hash = password::hash(password).await?;
        let id = Uuid::new_v4();
        let created_at = sqlx::query_scalar::<_, DateTime<Utc>>(
            "INSERT INTO accounts.accounts (account_id, email, password_hash, role)
             VALUES ($1, $2, $3, $4)
             RETURNING created_at",
        )
        .bind(id)
        .bind(&email)
        .bind(&password_hash)
        .bind(role.as_str())
        .fetch_one(&self.inner.pool)
        .await
        .map_err(|error| match error.as_database_error() {
            // The only unique key a random v4 id can meet is the email.
            Some(database) if database.is_unique_violation() => AuthError::EmailTaken,
            _ => AuthError::Database(error),
        })?;
        tracing::info!(account_id = %id, "account created");
        Ok(Account {
            id,
            email,
            role,
            created_at,
        })
    }

    /// Checks the password and starts a session with a new refresh-token family.
    ///
    /// An unknown email costs the same password hashing as a wrong password, and both
    /// fail the same way, so neither the answer nor its timing tells which emails have
    /// accounts.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] for an unknown email or a wrong password.
    #[instrument(skip_all)]
    pub async fn login(&self, email: &str, password: &str) -> Result<Session, AuthError> {
        let account = self.authenticate(email, password).await?;
        let mut tx = self.inner.pool.begin().await?;
        let refresh = self
            .insert_refresh_token(&mut tx, account.id, Uuid::new_v4())
            .await?;
        tx.commit().await?;
        tracing::info!(account_id = %account.id, "logged in");
        self.session(account, refresh)
    }

    /// The account whose email and password these are, with its current role. Shared by
    /// [`Accounts::login`] and [`Accounts::start_cli_session`].
    ///
    /// An unknown email costs the same password hashing as a wrong password, and both
    /// fail the same way.
    pub(crate) async fn authenticate(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Account, AuthError> {
        // Neither a malformed email nor an over-long password can belong to an account.
        let Ok(email) = normalize_email(email) else {
            return Err(AuthError::InvalidCredentials);
        };
        if !password::within_limit(password) {
            return Err(AuthError::InvalidCredentials);
        }
        let row = sqlx::query_as::<_, CredentialsRow>(
            "SELECT account_id, email, password_hash, role, created_at
             FROM accounts.accounts
             WHERE email = $1",
        )
        .bind(&email)
        .fetch_optional(&self.inner.pool)
        .await?;
        let Some(row) = row else {
            // Spend the same work as for a real account; the outcome does not matter.
            let _ = password::verify(password, DUMMY_HASH).await;
            return Err(AuthError::InvalidCredentials);
        };
        if !password::verify(password, &row.password_hash).await? {
            return Err(AuthError::InvalidCredentials);
        }
        Account::try_from(row.account)
    }

    /// The pool the accounts live in, for the sessions' SQL next door.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Trades a refresh token for a new session in the same family, with the account's
    /// current role. The presented token is used up.
    ///
    /// Presenting a token that was already used means two parties hold it, one of them
    /// a thief: the whole family is revoked, so the thief's and the owner's latest
    /// tokens both stop working and the owner has to log in again.
    ///
    /// # Errors
    /// [`AuthError::InvalidToken`] for an unknown, expired, used or revoked token.
    #[instrument(skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, AuthError> {
        let token_hash = hash_refresh_token(refresh_token);
        let mut tx = self.inner.pool.begin().await?;
        let family = lock_family_of(&mut tx, &token_hash).await?;
        let row = sqlx::query_as::<_, RefreshRow>(
            "SELECT t.expires_at, t.used_at, t.revoked_at,
                    a.account_id, a.email, a.role, a.created_at
             FROM accounts.refresh_tokens t
             JOIN accounts.accounts a USING (account_id)
             WHERE t.token_hash = $1
             FOR UPDATE OF t",
        )
        .bind(token_hash.as_slice())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| AuthError::InvalidToken("unknown refresh token".to_owned()))?;
        if row.used_at.is_some() || row.revoked_at.is_some() {
            let revoked = revoke_family(&mut tx, family).await?;
            tx.commit().await?;
            tracing::warn!(
                account_id = %row.account.account_id,
                family_id = %family,
                revoked,
                "a used or revoked refresh token was presented; its family is revoked"
            );
            return Err(AuthError::InvalidToken(
                "refresh token already used or revoked".to_owned(),
            ));
        }
        if row.expires_at <= Utc::now() {
            return Err(AuthError::InvalidToken("refresh token expired".to_owned()));
        }
        sqlx::query("UPDATE accounts.refresh_tokens SET used_at = now() WHERE token_hash = $1")
            .bind(token_hash.as_slice())
            .execute(&mut *tx)
            .await?;
        let account = Account::try_from(row.account)?;
        let refresh = self
            .insert_refresh_token(&mut tx, account.id, family)
            .await?;
        tx.commit().await?;
        self.session(account, refresh)
    }

    /// Ends the session the refresh token belongs to: its whole family is revoked.
    /// Logging out twice is fine.
    ///
    /// # Errors
    /// [`AuthError::InvalidToken`] when the token was never issued.
    #[instrument(skip_all)]
    pub async fn logout(&self, refresh_token: &str) -> Result<(), AuthError> {
        let token_hash = hash_refresh_token(refresh_token);
        let mut tx = self.inner.pool.begin().await?;
        let family = lock_family_of(&mut tx, &token_hash).await?;
        let revoked = revoke_family(&mut tx, family).await?;
        tx.commit().await?;
        tracing::info!(family_id = %family, revoked, "logged out");
        Ok(())
    }

    /// The principal of a valid access token; no I/O.
    ///
    /// # Errors
    /// [`AuthError::InvalidToken`] for a malformed, forged, expired or foreign token,
    /// one signed with another algorithm than HS256, or one with an unknown role.
    pub fn verify(&self, access_token: &str) -> Result<Principal, AuthError> {
        self.inner.access.verify(access_token)
    }

    /// A signed access token for `account_id` and when it expires. Sessions get theirs
    /// from here; tests use it to act as any role.
    ///
    /// # Errors
    /// [`AuthError::Hashing`] when signing fails.
    pub fn issue_access_token(
        &self,
        account_id: Uuid,
        role: Role,
    ) -> Result<(String, DateTime<Utc>), AuthError> {
        self.inner.access.issue(account_id, role, Utc::now())
    }

    /// The account with this id, if any.
    ///
    /// # Errors
    /// [`AuthError::Database`] when PostgreSQL fails.
    pub async fn account(&self, id: Uuid) -> Result<Option<Account>, AuthError> {
        sqlx::query_as::<_, AccountRow>(
            "SELECT account_id, email, role, created_at
             FROM accounts.accounts
             WHERE account_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await?
        .map(Account::try_from)
        .transpose()
    }

    async fn insert_refresh_token(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        account_id: Uuid,
        family: Uuid,
    ) -> Result<(RefreshToken, DateTime<Utc>), AuthError> {
        let refresh = RefreshToken::generate()?;
        let expires_at = Utc::now()
            .checked_add_signed(self.inner.refresh_ttl)
            .ok_or_else(|| AuthError::Hashing("refresh token expiry out of range".into()))?;
        sqlx::query(
            "INSERT INTO accounts.refresh_tokens (token_hash, account_id, family_id, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(refresh.hash.as_slice())
        .bind(account_id)
        .bind(family)
        .bind(expires_at)
        .execute(&mut **tx)
        .await?;
        Ok((refresh, expires_at))
    }

    fn session(
        &self,
        account: Account,
        (refresh, refresh_expires_at): (RefreshToken, DateTime<Utc>),
    ) -> Result<Session, AuthError> {
        let (access_token, access_expires_at) =
            self.issue_access_token(account.id, account.role)?;
        Ok(Session {
            account,
            access_token,
            access_expires_at,
            refresh_token: refresh.token,
            refresh_expires_at,
        })
    }
}

/// Finds the family of a refresh token and locks it for the rest of the transaction.
///
/// Rotation inserts a new token into the family while revocation updates every token
/// in it. Under READ COMMITTED an `UPDATE` does not see rows committed after it
/// started, so without this lock a rotation racing a revocation (the owner refreshing
/// while a thief replays an old token, or a logout) could leave the new token alive.
async fn lock_family_of(
    tx: &mut Transaction<'static, Postgres>,
    token_hash: &[u8; 32],
) -> Result<Uuid, AuthError> {
    let family = sqlx::query_scalar::<_, Uuid>(
        "SELECT family_id FROM accounts.refresh_tokens WHERE token_hash = $1",
    )
    .bind(token_hash.as_slice())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| AuthError::InvalidToken("unknown refresh token".to_owned()))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
        .bind(FAMILY_LOCK_CLASS)
        .bind(family)
        .execute(&mut **tx)
        .await?;
    Ok(family)
}

/// Revokes every token of the family not revoked yet; returns how many.
async fn revoke_family(
    tx: &mut Transaction<'static, Postgres>,
    family: Uuid,
) -> Result<u64, AuthError> {
    let done = sqlx::query(
        "UPDATE accounts.refresh_tokens SET revoked_at = now()
         WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// Trims and lowercases `email`, then checks its shape: one `@` with text on both
/// sides, no spaces or control characters, at most 254 characters.
pub(crate) fn normalize_email(email: &str) -> Result<String, AuthError> {
    let email = email.trim().to_lowercase();
    let valid = email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(
            email.split_once('@'),
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        );
    if valid {
        Ok(email)
    } else {
        Err(AuthError::InvalidEmail)
    }
}

#[cfg(test)]
mod tests;
