//! Access tokens (HS256 JWTs) and refresh tokens (random, stored hashed).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::{AuthConfig, AuthError, Principal, Role};

/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_SECONDS: u64 = 5;

/// The claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: String,
    iss: String,
    aud: String,
    exp: i64,
    iat: i64,
    jti: Uuid,
}

/// Signs and checks access tokens; built once from an [`AuthConfig`].
pub(crate) struct AccessTokens {
    header: Header,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: TimeDelta,
}

impl AccessTokens {
    pub(crate) fn new(config: &AuthConfig) -> Self {
        // The algorithm is pinned: the header's `alg` only has to agree with it, so
        // `none`, HS512 or an RS256 header with our secret as a "public key" all fail.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_audience(&[config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.leeway = LEEWAY_SECONDS;
        Self {
            header: Header::new(Algorithm::HS256),
            encoding: EncodingKey::from_secret(&config.secret),
            decoding: DecodingKey::from_secret(&config.secret),
            validation,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            // A TTL beyond what chrono can add (hundreds of millions of years) is
            // treated as "never" would be: the largest representable one.
            ttl: TimeDelta::from_std(config.access_ttl).unwrap_or(TimeDelta::MAX),
        }
    }

    /// A signed token for `account_id` and when it expires (whole seconds, as in `exp`).
    pub(crate) fn issue(
        &self,
        account_id: Uuid,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), AuthError> {
        let expires_at = now
            .checked_add_signed(self.ttl)
            .and_then(|at| DateTime::from_timestamp(at.timestamp(), 0))
            .ok_or_else(|| AuthError::Hashing("access token expiry out of range".into()))?;
        let claims = Claims {
            sub: account_id,
            role: role.as_str().to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: expires_at.timestamp(),
            iat: now.timestamp(),
            jti: Uuid::new_v4(),
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.encoding)
            .map_err(|error| AuthError::Hashing(Box::new(error)))?;
        Ok((token, expires_at))
    }

    /// The principal of a valid token.
    pub(crate) fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| AuthError::InvalidToken(error.to_string()))?;
        let role = data
            .claims
            .role
            .parse::<Role>()
            .map_err(|error| AuthError::InvalidToken(error.to_string()))?;
        Ok(Principal {
            account_id: data.claims.sub,
            role,
        })
    }
}

/// A new refresh token: what the client keeps, and what the database keeps.
pub(crate) struct RefreshToken {
    /// 32 random bytes, base64url without padding.
    pub(crate) token: String,
    /// sha256 of `token`.
    pub(crate) hash: [u8; 32],
}

impl RefreshToken {
    pub(crate) fn generate() -> Result<Self, AuthError> {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).map_err(|error| AuthError::Hashing(Box::new(error)))?;
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let hash = hash_refresh_token(&token);
        Ok(Self { token, hash })
    }
}

/// What the database stores for a refresh token. A fast hash is enough: the token has
/// 256 bits of entropy, so there is nothing to brute-force.
pub(crate) fn hash_refresh_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests;
