//! Password rules and argon2id hashing.
//!
//! Hashing costs tens of milliseconds of CPU by design, so it runs on tokio's blocking
//! pool, never on the async workers.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use crate::auth::AuthError;

/// The shortest password accepted at registration, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// The longest password accepted, in characters; it keeps huge inputs away from the
/// hasher.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// An argon2id hash with the default parameters of a password nobody knows. Login with
/// an unknown email verifies against it, so that it costs as much as a wrong password
/// and the timing does not tell which emails have accounts. A unit test checks that its
/// parameters are still the ones new hashes get.
pub(crate) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$\
    ozcH6aNmJ6g2qlOl3JIGhQ$BDPylcDN7wgIqb22R31OUblfrZR2a7P8aIE2tVfHne4";

/// Checks the length rules for a new password.
pub(crate) fn check_new(password: &str) -> Result<(), AuthError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(AuthError::weak_password());
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(AuthError::password_too_long());
    }
    Ok(())
}

/// Whether a password presented at login is short enough to be worth hashing; no
/// account can have a longer one.
pub(crate) fn within_limit(password: &str) -> bool {
    password.chars().count() <= MAX_PASSWORD_CHARS
}

/// Hashes `password` into an argon2id PHC string with a fresh random salt.
pub(crate) async fn hash(password: &str) -> Result<String, AuthError> {
    let password = password.to_owned();
    blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|error| AuthError::Hashing(Box::new(error)))
    })
    .await
}

/// Whether `password` matches the PHC string `hash`.
pub(crate) async fn verify(password: &str, hash: &str) -> Result<bool, AuthError> {
    let password = password.to_owned();
    let hash = hash.to_owned();
    blocking(
        move || match Argon2::default().verify_password(password.as_bytes(), hash.as_str()) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(error) => Err(AuthError::Hashing(Box::new(error))),
        },
    )
    .await
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
) -> Result<T, AuthError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| AuthError::Hashing(Box::new(error)))?
}

#[cfg(test)]
mod tests;
