//! Idempotency keys: the same key twice gives the same ids (so the command bus answers
//! the repeat with the first outcome), and the same key with other input is refused.

use serde::Serialize;
use uuid::Uuid;

use super::context::Services;
use super::error::ApiError;
use super::text::{check_text, Limit};
use crate::storefront::KeyUse;

/// Namespace of the ids derived from idempotency keys.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x5e0b_57a3_0a1d_4c8e_9f3b_6c2d_1e4f_0a77);

/// The id of whatever `operation` by `principal` with idempotency `key` creates: the
/// same three always give the same id, so a retried mutation finds its first effect.
pub fn keyed_id(principal: Uuid, operation: &str, key: &str) -> Uuid {
    Uuid::new_v5(
        &IDEMPOTENCY_NAMESPACE,
        format!("{principal}/{operation}/{key}").as_bytes(),
    )
}

/// The id `key` stands for (`None` without a key): records the first use of the key
/// with `input`, and checks a later use against it.
///
/// # Errors
/// [`ApiError::BadUserInput`] for an oversized key, [`ApiError::Conflict`] when the key
/// was used with other input, [`ApiError::Internal`] when PostgreSQL fails.
pub async fn id_for_key(
    services: &Services,
    principal: Uuid,
    operation: &str,
    key: Option<&str>,
    input: &impl Serialize,
) -> Result<Option<Uuid>, ApiError> {
    let Some(key) = key else {
        return Ok(None);
    };
    let key = check_text(key, "idempotencyKey", Limit::TOKEN)?;
    let request = serde_json::to_value(input).map_err(ApiError::internal)?;
    let claimed = services
        .idempotency
        .claim(principal, operation, &key, &request)
        .await?;
    if claimed == KeyUse::ReusedWithOtherInput {
        return Err(ApiError::Conflict(
            "this idempotency key was used with other input".to_owned(),
        ));
    }
    Ok(Some(keyed_id(principal, operation, &key)))
}
