//! Keyset pagination shared by the read models' query functions.
//!
//! A page is asked for with `first` (how many items) and `after` (the cursor of the last
//! item already seen). The cursor is opaque to clients: it holds the sort key values and
//! the id of an item, so the next page starts with a row comparison on an index instead
//! of an `OFFSET` that rescans everything before it.
//!
//! Every read model's paginated queries (catalog, inventory, orders) use these, so they
//! share one [`Page`], one [`QueryError`] and one cursor format.

use std::fmt::Write as _;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The most items one page may hold.
pub const MAX_PAGE_SIZE: usize = 100;

/// One page of a keyset-paginated list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Page<T> {
    /// The items, in the requested order.
    pub items: Vec<T>,
    /// Whether items follow the last one of this page.
    pub has_next_page: bool,
    /// The cursor of the last item, to pass as `after` for the next page.
    pub end_cursor: Option<String>,
    /// How many items the whole list holds, over all pages; `None` when the query does
    /// not count them.
    pub total_count: Option<i64>,
}

/// Why a read-model query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The `after` cursor was not issued by this query.
    #[error("invalid cursor")]
    InvalidCursor,
    /// `first` is larger than [`MAX_PAGE_SIZE`].
    #[error("a page holds at most {MAX_PAGE_SIZE} items, {0} were asked for")]
    PageTooLarge(usize),
    /// An argument other than the page size is out of range or does not fit the others.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Checks a requested page size and returns it as a SQL `LIMIT` for one extra row, the
/// row that tells whether a next page exists.
///
/// # Errors
/// [`QueryError::PageTooLarge`] above [`MAX_PAGE_SIZE`].
pub fn limit_with_lookahead(first: usize) -> Result<i64, QueryError> {
    if first > MAX_PAGE_SIZE {
        return Err(QueryError::PageTooLarge(first));
    }
    // At most MAX_PAGE_SIZE + 1, which fits.
    Ok(i64::try_from(first + 1).expect("page sizes are small"))
}

impl<T> Page<T> {
    /// Builds a page from rows fetched with [`limit_with_lookahead`]: drops the extra row
    /// and takes the end cursor from the last item kept.
    pub fn from_lookahead(
        mut items: Vec<T>,
        first: usize,
        total_count: Option<i64>,
        cursor_of: impl Fn(&T) -> String,
    ) -> Self {
        let has_next_page = items.len() > first;
        items.truncate(first);
        let end_cursor = items.last().map(cursor_of);
        Self {
            items,
            has_next_page,
            end_cursor,
            total_count,
        }
    }
}

/// Encodes a cursor key as an opaque string (hex of its JSON).
pub fn encode_cursor<K: Serialize>(key: &K) -> String {
    // Cursor keys are tuples and enums of numbers, strings, uuids and timestamps, which
    // always serialise.
    let json = serde_json::to_vec(key).expect("cursor keys serialise");
    let mut cursor = String::with_capacity(json.len() * 2);
    for byte in json {
        // Writing to a String cannot fail.
        let _ = write!(cursor, "{byte:02x}");
    }
    cursor
}

/// Decodes a cursor made by [`encode_cursor`].
///
/// # Errors
/// [`QueryError::InvalidCursor`] when the text is not such a cursor for key type `K`.
pub fn decode_cursor<K: DeserializeOwned>(cursor: &str) -> Result<K, QueryError> {
    if !cursor.len().is_multiple_of(2) || !cursor.is_ascii() {
        return Err(QueryError::InvalidCursor);
    }
    let json = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| QueryError::InvalidCursor)?;
    serde_json::from_slice(&json).map_err(|_| QueryError::InvalidCursor)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_cursor_decodes_to_the_key_it_encodes() {
        let key = (
            "Blue Mug".to_owned(),
            uuid::Uuid::from_u128(7),
            0.0607927_f32,
        );
        let cursor = encode_cursor(&key);
        assert!(cursor.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            decode_cursor::<(String, uuid::Uuid, f32)>(&cursor).unwrap(),
            key
        );
    }

    #[test]
    fn a_foreign_cursor_is_rejected() {
        assert!(matches!(
            decode_cursor::<(i64, uuid::Uuid)>("zz"),
            Err(QueryError::InvalidCursor)
        ));
        assert!(matches!(
            decode_cursor::<(i64, uuid::Uuid)>(&encode_cursor(&("a", 1))),
            Err(QueryError::InvalidCursor)
        ));
        assert!(matches!(
            decode_cursor::<(i64, uuid::Uuid)>("abc"),
            Err(QueryError::InvalidCursor)
        ));
    }

    #[test]
    fn a_time_and_id_cursor_decodes_to_what_was_encoded() {
        let time = DateTime::from_timestamp_micros(1_718_000_000_123_456).unwrap();
        let id = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        let cursor = encode_cursor(&(time, id));
        assert_eq!(
            decode_cursor::<(DateTime<Utc>, Uuid)>(&cursor).unwrap(),
            (time, id)
        );
    }

    #[test]
    fn malformed_time_and_id_cursors_are_rejected() {
        // The last is a cursor of the orders model's former `v1|micros|id` format.
        for cursor in [
            "",
            "abc",
            "zz",
            "76327c317c32",
            "not a cursor at all",
            "76317c317c3030303030303030303030303030303030303030303030303030303030303031",
        ] {
            assert!(
                matches!(
                    decode_cursor::<(DateTime<Utc>, Uuid)>(cursor),
                    Err(QueryError::InvalidCursor)
                ),
                "{cursor:?} was accepted"
            );
        }
    }

    #[test]
    fn the_lookahead_row_sets_has_next_page_and_is_dropped() {
        let page = Page::from_lookahead(vec![1, 2, 3], 2, Some(9), |n| n.to_string());
        assert_eq!(page.items, vec![1, 2]);
        assert!(page.has_next_page);
        assert_eq!(page.end_cursor.as_deref(), Some("2"));
        let last = Page::from_lookahead(vec![1, 2], 2, None, |n| n.to_string());
        assert!(!last.has_next_page);
        assert!(matches!(
            limit_with_lookahead(MAX_PAGE_SIZE + 1),
            Err(QueryError::PageTooLarge(101))
        ));
        assert_eq!(limit_with_lookahead(MAX_PAGE_SIZE).unwrap(), 101);
        assert_eq!(limit_with_lookahead(10).unwrap(), 11);
    }
}
