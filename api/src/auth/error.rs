//! What can go wrong with accounts and sessions, and how the edge names it.

use crate::auth::password::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};

/// Why an account or session operation failed.
///
/// Messages are safe to show to the caller except for [`AuthError::InvalidToken`],
/// whose reason is for logs only, and the infrastructure variants, which the edge
/// reports as an internal error.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The email is not `local@domain` or is longer than 254 characters.
    #[error("invalid email address")]
    InvalidEmail,
    /// The password is shorter than `min` characters.
    #[error("password must be at least {min} characters")]
    WeakPassword {
        /// The minimum, [`MIN_PASSWORD_CHARS`].
        min: usize,
    },
    /// The password is longer than `max` characters.
    #[error("password must be at most {max} characters")]
    PasswordTooLong {
        /// The maximum, [`MAX_PASSWORD_CHARS`].
        max: usize,
    },
    /// An account with this email exists already.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Unknown email or wrong password; deliberately the same error for both.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// An access or refresh token that is malformed, forged, expired, used or revoked.
    /// The reason is for logs: callers only learn that the token is not valid.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// A session lifetime of zero, or too long to add to the current time.
    #[error("session lifetime out of range")]
    InvalidLifetime,
    /// The signing secret is shorter than 32 bytes.
    #[error("the token signing secret must be at least 32 bytes")]
    WeakSecret,
    /// PostgreSQL failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Hashing or verifying a password, or signing a token, failed; the cause is kept for
    /// the log.
    #[error("hashing failed: {0}")]
    Hashing(#[source] infra_nats::BoxError),
}

impl AuthError {
    /// The GraphQL `extensions.code` for this error.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::InvalidEmail
            | AuthError::WeakPassword { .. }
            | AuthError::PasswordTooLong { .. }
            | AuthError::InvalidLifetime => "BAD_USER_INPUT",
            AuthError::EmailTaken => "CONFLICT",
            AuthError::InvalidCredentials | AuthError::InvalidToken(_) => "UNAUTHENTICATED",
            AuthError::WeakSecret | AuthError::Database(_) | AuthError::Hashing(_) => "INTERNAL",
        }
    }

    /// The code of this error in a payload's `userErrors`: the client's contract,
    /// spelled out so that renaming a variant cannot change it. The edge sends only the
    /// codes of errors the caller can fix; the others are listed to keep the match total.
    pub fn user_error_code(&self) -> &'static str {
        match self {
            AuthError::InvalidEmail => "INVALID_EMAIL",
            AuthError::WeakPassword { .. } => "WEAK_PASSWORD",
            AuthError::PasswordTooLong { .. } => "PASSWORD_TOO_LONG",
            AuthError::EmailTaken => "EMAIL_TAKEN",
            AuthError::InvalidCredentials => "INVALID_CREDENTIALS",
            AuthError::InvalidToken(_) => "INVALID_TOKEN",
            AuthError::InvalidLifetime => "INVALID_LIFETIME",
            AuthError::WeakSecret => "WEAK_SECRET",
            AuthError::Database(_) => "DATABASE",
            AuthError::Hashing(_) => "HASHING",
        }
    }

    pub(crate) fn weak_password() -> Self {
        AuthError::WeakPassword {
            min: MIN_PASSWORD_CHARS,
        }
    }

    pub(crate) fn password_too_long() -> Self {
        AuthError::PasswordTooLong {
            max: MAX_PASSWORD_CHARS,
        }
    }
}

#[cfg(test)]
mod tests;
