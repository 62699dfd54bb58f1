//! Checks on free text from clients: a length bound per kind of field (huge strings are
//! refused before they reach a command or a query) and no control characters.

use super::error::ApiError;
use super::ids::truncated;

/// The most characters a kind of field may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub usize);

impl Limit {
    /// Names, categories, carriers, references.
    pub const NAME: Limit = Limit(200);
    /// Descriptions.
    pub const DESCRIPTION: Limit = Limit(5_000);
    /// Search queries.
    pub const SEARCH: Limit = Limit(200);
    /// Reasons given for a change.
    pub const REASON: Limit = Limit(500);
    /// Tokens and keys.
    pub const TOKEN: Limit = Limit(255);
}

/// `text` trimmed, when it fits `limit` and holds no control characters (newlines and
/// tabs aside).
///
/// # Errors
/// [`ApiError::BadUserInput`] naming `field`.
pub fn check_text(text: &str, field: &str, limit: Limit) -> Result<String, ApiError> {
    let text = text.trim();
    let length = text.chars().count();
    if length > limit.0 {
        return Err(ApiError::bad_input(format!(
            "`{field}` holds {length} characters; at most {} are allowed",
            limit.0
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(ApiError::bad_input(format!(
            "`{field}` holds control characters: `{}`",
            truncated(&text.escape_debug().to_string())
        )));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_within_its_limit_comes_back_trimmed() {
        assert_eq!(check_text("  Mug \n", "name", Limit::NAME).unwrap(), "Mug");
    }

    #[test]
    fn huge_or_binary_text_is_bad_input() {
        let huge = "x".repeat(Limit::NAME.0 + 1);
        assert_eq!(
            check_text(&huge, "name", Limit::NAME).unwrap_err().code(),
            "BAD_USER_INPUT"
        );
        assert_eq!(
            check_text("a\u{0}b", "name", Limit::NAME)
                .unwrap_err()
                .code(),
            "BAD_USER_INPUT"
        );
    }
}
