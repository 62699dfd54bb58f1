//! Checks for the free-text fields of commands.

/// Trims a required text, or fails with `error` when nothing is left.
pub(crate) fn required<E>(text: &str, error: E) -> Result<String, E> {
    let text = text.trim();
    if text.is_empty() {
        Err(error)
    } else {
        Ok(text.to_owned())
    }
}
