//! Sign-ins of the `shopstream` command line, in `accounts.cli_sessions`.
//!
//! A CLI session is an opaque random token (256 bits, base64url), stored only as its
//! sha256 hash, like a refresh token. It is not a JWT: the operator and auditor
//! commands look it up on every run, joined to the account's current role, so a role
//! change or a logout applies to the very next command.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tracing::instrument;
use uuid::Uuid;

use crate::auth::tokens::{hash_refresh_token, RefreshToken};
use crate::auth::{Account, Accounts, AuthError, Principal, Role};

/// A new CLI session: the token to keep (in the session file or `SHOPSTREAM_TOKEN`).
#[derive(Clone)]
pub struct CliSession {
    /// Who signed in.
    pub account: Account,
    /// The opaque token; the database keeps only its hash.
    pub token: String,
    /// When the session stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// The token is a credential: debug output leaves it out.
impl fmt::Debug for CliSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CliSession")
            .field("account", &self.account)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What a presented CLI token stands for right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliSessionStatus {
    /// A live session, with the account's role as it is now (not as it was at login).
    Active(Principal),
    /// The session was live once, and its lifetime is over.
    Expired {
        /// Whose session it was.
        account_id: Uuid,
    },
    /// The session was ended by `shopstream logout`.
    Revoked {
        /// Whose session it was.
        account_id: Uuid,
    },
    /// No session was ever started with this token.
    Unknown,
}

#[derive(sqlx::FromRow)]
struct StatusRow {
    account_id: Uuid,
    role: String,
    expired: bool,
    revoked: bool,
}

impl Accounts {
    /// Checks the password exactly as [`Accounts::login`] does and starts a CLI session
    /// that lives for `ttl`.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] for an unknown email or a wrong password (the
    /// same error for both); [`AuthError::InvalidLifetime`] when `ttl` is zero or too
    /// large to add to now (nothing is checked or written then).
    #[instrument(skip_all)]
    pub async fn start_cli_session(
        &self,
        email: &str,
        password: &str,
        ttl: Duration,
    ) -> Result<CliSession, AuthError> {
        let ttl = TimeDelta::from_std(ttl)
            .ok()
            .filter(|ttl| *ttl > TimeDelta::zero())
            .ok_or(AuthError::InvalidLifetime)?;
        let account = self.authenticate(email, password).await?;
        // The same shape and entropy as a refresh token: 32 random bytes, hashed for storage.
        let token = RefreshToken::generate()?;
        let expires_at = Utc::now()
            .checked_add_signed(ttl)
            .ok_or(AuthError::InvalidLifetime)?;
        sqlx::query(
            "INSERT INTO accounts.cli_sessions (token_hash, account_id, expires_at)
             VALUES ($1, $2, $3)",
        )
        .bind(token.hash.as_slice())
        .bind(account.id)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        tracing::info!(account_id = %account.id, %expires_at, "signed in on the command line");
        Ok(CliSession {
            account,
            token: token.token,
            expires_at,
        })
    }
}

/// What `token` stands for now: the session joined to its account's current role.
///
/// # Errors
/// [`AuthError::Database`] when PostgreSQL fails, or the stored role is not one of
/// [`Role::ALL`].
pub async fn cli_session_status(pool: &PgPool, token: &str) -> Result<CliSessionStatus, AuthError> {
    let row = sqlx::query_as::<_, StatusRow>(
        "SELECT a.account_id, a.role,
                s.expires_at <= now() AS expired,
                s.revoked_at IS NOT NULL AS revoked
         FROM accounts.cli_sessions s
         JOIN accounts.accounts a USING (account_id)
         WHERE s.token_hash = $1",
    )
    .bind(hash_refresh_token(token).as_slice())
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(CliSessionStatus::Unknown);
    };
    if row.revoked {
        return Ok(CliSessionStatus::Revoked {
            account_id: row.account_id,
        });
    }
    if row.expired {
        return Ok(CliSessionStatus::Expired {
            account_id: row.account_id,
        });
    }
    let role = row
        .role
        .parse::<Role>()
        .map_err(|error| AuthError::Database(sqlx::Error::Decode(Box::new(error))))?;
    Ok(CliSessionStatus::Active(Principal {
        account_id: row.account_id,
        role,
    }))
}

/// Revokes the CLI session of `token`; returns whether it was live until now. Ending
/// an unknown, expired or already revoked session changes nothing.
///
/// # Errors
/// [`AuthError::Database`] when PostgreSQL fails.
pub async fn end_cli_session(pool: &PgPool, token: &str) -> Result<bool, AuthError> {
    let done = sqlx::query(
        "UPDATE accounts.cli_sessions SET revoked_at = now()
         WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(hash_refresh_token(token).as_slice())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
