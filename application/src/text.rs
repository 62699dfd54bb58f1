//! Echoing client input back in messages, bounded.

/// Most characters of client input a message echoes.
const ECHOED: usize = 64;

/// At most 64 characters of `text`, with an ellipsis when cut.
pub fn truncated(text: &str) -> String {
    if text.chars().count() <= ECHOED {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(ECHOED).collect::<String>())
    }
}
