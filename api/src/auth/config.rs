//! How tokens are signed and how long they live.

use std::fmt;
use std::time::Duration;

use crate::auth::AuthError;

/// The shortest HS256 secret accepted: as long as the hash output (RFC 7518 §3.2).
pub(crate) const MIN_SECRET_BYTES: usize = 32;

/// Token settings, shared by every replica that issues or checks tokens.
#[derive(Clone)]
pub struct AuthConfig {
    /// The HS256 signing key, at least 32 bytes.
    pub secret: Vec<u8>,
    /// The `iss` claim written and required.
    pub issuer: String,
    /// The `aud` claim written and required.
    pub audience: String,
    /// How long an access token is valid.
    pub access_ttl: Duration,
    /// How long a refresh token is valid; each rotation starts a new period.
    pub refresh_ttl: Duration,
}

impl AuthConfig {
    /// Checks and bundles the settings.
    ///
    /// # Errors
    /// [`AuthError::WeakSecret`] when `secret` is shorter than 32 bytes.
    pub fn new(
        secret: Vec<u8>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Result<Self, AuthError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthError::WeakSecret);
        }
        Ok(Self {
            secret,
            issuer: issuer.into(),
            audience: audience.into(),
            access_ttl,
            refresh_ttl,
        })
    }
}

/// Everything but the secret, so the config can be logged.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish()
    }
}
