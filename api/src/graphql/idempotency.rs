//! Idempotency keys as mutations take them: checked for size, and paired with the
//! request they came with, for the use case to claim.

use application::Idempotency;
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use super::text::{check_text, Limit};

/// The key a mutation was sent with (`None` without one), with its input.
///
/// # Errors
/// [`ApiError::BadUserInput`] for an oversized key.
pub fn idempotency(key: Option<&str>, input: &impl Serialize) -> ApiResult<Option<Idempotency>> {
    let Some(key) = key else {
        return Ok(None);
    };
    Ok(Some(Idempotency {
        key: check_text(key, "idempotencyKey", Limit::TOKEN)?,
        request: serde_json::to_value(input).map_err(ApiError::internal)?,
    }))
}
