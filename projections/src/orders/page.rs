//! Keyset pagination: pages, opaque cursors and the errors of paginated queries.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The most items one page may hold.
pub const MAX_PAGE_SIZE: usize = 100;

/// One page of a list sorted by a key, read after a cursor.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Page<T> {
    /// The items, in list order.
    pub items: Vec<T>,
    /// Whether items follow the last one of this page.
    pub has_next_page: bool,
    /// The cursor of the last item, to pass as `after` for the next page.
    pub end_cursor: Option<String>,
    /// How many items the whole list holds, when the query counts them.
    pub total_count: Option<i64>,
}

/// Why a paginated query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The `after` cursor was not made by this read model.
    #[error("invalid cursor")]
    InvalidCursor,
    /// `first` is larger than [`MAX_PAGE_SIZE`].
    #[error("a page holds at most {MAX_PAGE_SIZE} items, {0} were asked for")]
    PageTooLarge(usize),
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The cursor of an item sorted by `(time, id)`: opaque to clients, stable across calls.
pub(crate) fn encode_cursor(time: DateTime<Utc>, id: Uuid) -> String {
    let plain = format!("v1|{}|{}", time.timestamp_micros(), id.simple());
    plain.bytes().map(|byte| format!("{byte:02x}")).collect()
}

/// The `(time, id)` inside a cursor made by [`encode_cursor`].
///
/// # Errors
/// [`QueryError::InvalidCursor`] for anything else.
pub(crate) fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), QueryError> {
    if !cursor.len().is_multiple_of(2) || !cursor.is_ascii() {
        return Err(QueryError::InvalidCursor);
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| QueryError::InvalidCursor)?;
    let plain = String::from_utf8(bytes).map_err(|_| QueryError::InvalidCursor)?;
    let mut parts = plain.split('|');
    let (Some("v1"), Some(micros), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(QueryError::InvalidCursor);
    };
    let time = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or(QueryError::InvalidCursor)?;
    let id = Uuid::parse_str(id).map_err(|_| QueryError::InvalidCursor)?;
    Ok((time, id))
}

/// Checks `first` and returns the number of rows to fetch: one more than asked for,
/// to learn whether a next page exists.
pub(crate) fn fetch_limit(first: usize) -> Result<i64, QueryError> {
    if first > MAX_PAGE_SIZE {
        return Err(QueryError::PageTooLarge(first));
    }
    // At most MAX_PAGE_SIZE + 1, which fits.
    Ok(i64::try_from(first + 1).expect("page sizes are small"))
}

/// Turns `first + 1` fetched items into a page of at most `first`.
pub(crate) fn into_page<T>(
    mut items: Vec<T>,
    first: usize,
    cursor: impl Fn(&T) -> String,
    total_count: Option<i64>,
) -> Page<T> {
    let has_next_page = items.len() > first;
    items.truncate(first);
    let end_cursor = items.last().map(cursor);
    Page {
        items,
        has_next_page,
        end_cursor,
        total_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_decodes_to_what_was_encoded() {
        let time = DateTime::from_timestamp_micros(1_718_000_000_123_456).unwrap();
        let id = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        assert_eq!(decode_cursor(&encode_cursor(time, id)).unwrap(), (time, id));
    }

    #[test]
    fn foreign_cursors_are_rejected() {
        for cursor in ["", "abc", "zz", "76327c317c32", "not a cursor at all"] {
            assert!(
                matches!(decode_cursor(cursor), Err(QueryError::InvalidCursor)),
                "{cursor:?} was accepted"
            );
        }
    }
}
