//! Keyset pagination shared by the read models' query functions, in the shape of Relay's
//! connections.
//!
//! A page is asked for with a [`PageRequest`]: the `first` items after a cursor, or the
//! `last` items before one. Every item of a [`Page`] comes in an [`Edge`] with its own
//! cursor. The cursor is opaque to clients: it holds the sort key values and the id of
//! an item, so a page starts with a row comparison on an index instead of an `OFFSET`
//! that rescans everything before it.
//!
//! A query reads one row more than it returns (see [`limit_with_lookahead`]): that row
//! tells whether more items lie beyond the page. Going backward, the query reads the
//! list the other way round, with its sort order and its keyset comparison both flipped
//! (see `Scan`), and the page is turned back into list order.
//!
//! Every read model's paginated queries (catalog, inventory, orders, sagas) use these, so
//! they share one [`Page`], one [`QueryError`] and one cursor format.

use std::fmt::Write as _;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The most items one page may hold.
pub const MAX_PAGE_SIZE: usize = 100;

/// Which slice of a list to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageRequest<'a> {
    /// The first `first` items after the cursor `after` (from the start without one).
    Forward {
        first: usize,
        after: Option<&'a str>,
    },
    /// The last `last` items before the cursor `before` (up to the end without one);
    /// still returned in list order.
    Backward {
        last: usize,
        before: Option<&'a str>,
    },
}

impl PageRequest<'_> {
    /// The first `n` items of the list.
    pub fn first(n: usize) -> Self {
        PageRequest::Forward {
            first: n,
            after: None,
        }
    }

    /// How many items the page may hold.
    fn size(self) -> usize {
        match self {
            PageRequest::Forward { first, .. } => first,
            PageRequest::Backward { last, .. } => last,
        }
    }

    /// Checks the page size, decodes the cursor, and says how a query whose list runs
    /// from the largest key down (`list_descending`) or up reads this page's rows.
    ///
    /// # Errors
    /// [`QueryError::PageTooLarge`] above [`MAX_PAGE_SIZE`], then
    /// [`QueryError::InvalidCursor`] when the cursor is not one of key type `K`.
    pub(crate) fn scan<K: DeserializeOwned>(
        self,
        list_descending: bool,
    ) -> Result<Scan<K>, QueryError> {
        let limit = limit_with_lookahead(self.size())?;
        let (cursor, backward) = match self {
            PageRequest::Forward { after, .. } => (after, false),
            PageRequest::Backward { before, .. } => (before, true),
        };
        Ok(Scan {
            cursor: cursor.map(decode_cursor).transpose()?,
            descending: list_descending != backward,
            limit,
        })
    }
}

/// How a query reads the rows of one page: from its cursor on (excluded), in the
/// direction it reads, one row more than the page holds. Build the page from the rows
/// with [`Page::from_lookahead`] or [`Page::from_lookahead_edges`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scan<K> {
    /// The sort key and id of the cursor's item, which the rows come strictly after.
    pub(crate) cursor: Option<K>,
    /// Whether the query reads from the largest key down: the list's own direction
    /// going forward, the other one going backward.
    pub(crate) descending: bool,
    /// The SQL `LIMIT`: the page size plus the lookahead row.
    pub(crate) limit: i64,
}

impl<K> Scan<K> {
    /// The SQL operator comparing a row's `(key, id)` with the cursor's: the rows that
    /// come after the cursor in the direction the query reads.
    pub(crate) fn comparison(&self) -> &'static str {
        if self.descending {
            "<"
        } else {
            ">"
        }
    }

    /// The SQL direction of every `ORDER BY` column.
    pub(crate) fn direction(&self) -> &'static str {
        if self.descending {
            "DESC"
        } else {
            "ASC"
        }
    }
}

/// One item of a page and its cursor.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Edge<T> {
    /// The cursor pointing at this item: as `after`, the next page starts just after it;
    /// as `before`, the previous page ends just before it.
    pub cursor: String,
    /// The item.
    pub node: T,
}

/// One page of a keyset-paginated list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Page<T> {
    /// The items with their cursors, in list order, whichever way the page was asked for.
    pub edges: Vec<Edge<T>>,
    /// Whether items follow the last one of this page.
    ///
    /// Going backward this is whether `before` was given: an item (the cursor's) follows
    /// the page then, and none follows the end of the list otherwise. Relay allows that
    /// instead of a second query.
    pub has_next_page: bool,
    /// Whether items come before the first one of this page.
    ///
    /// Going forward this is whether `after` was given: an item (the cursor's) comes
    /// before the page then, and none comes before the start of the list otherwise.
    /// Relay allows that instead of a second query.
    pub has_previous_page: bool,
    /// How many items the whole list holds, over all pages; `None` when the query does
    /// not count them.
    pub total_count: Option<i64>,
}

/// Why a read-model query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The `after` or `before` cursor was not issued by this query.
    #[error("invalid cursor")]
    InvalidCursor,
    /// `first` or `last` is larger than [`MAX_PAGE_SIZE`].
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
/// row that tells whether more items lie beyond the page.
///
/// # Errors
/// [`QueryError::PageTooLarge`] above [`MAX_PAGE_SIZE`].
pub fn limit_with_lookahead(size: usize) -> Result<i64, QueryError> {
    if size > MAX_PAGE_SIZE {
        return Err(QueryError::PageTooLarge(size));
    }
    // At most MAX_PAGE_SIZE + 1, which fits.
    Ok(i64::try_from(size + 1).expect("page sizes are small"))
}

impl<T> Page<T> {
    /// The cursor of the first item; `None` for an empty page.
    pub fn start_cursor(&self) -> Option<&str> {
        self.edges.first().map(|edge| edge.cursor.as_str())
    }

    /// The cursor of the last item; `None` for an empty page.
    pub fn end_cursor(&self) -> Option<&str> {
        self.edges.last().map(|edge| edge.cursor.as_str())
    }

    /// The items, in list order.
    pub fn nodes(&self) -> impl Iterator<Item = &T> {
        self.edges.iter().map(|edge| &edge.node)
    }

    /// The items, in list order, without their cursors.
    pub fn into_nodes(self) -> Vec<T> {
        self.edges.into_iter().map(|edge| edge.node).collect()
    }

    /// The same page with each item turned into another; the cursors stay.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            edges: self
                .edges
                .into_iter()
                .map(|edge| Edge {
                    cursor: edge.cursor,
                    node: f(edge.node),
                })
                .collect(),
            has_next_page: self.has_next_page,
            has_previous_page: self.has_previous_page,
            total_count: self.total_count,
        }
    }

    /// Builds a page from rows read as [`PageRequest::scan`] says, each given the cursor
    /// `cursor_of` makes for it. See [`Page::from_lookahead_edges`].
    pub(crate) fn from_lookahead(
        rows: Vec<T>,
        request: PageRequest<'_>,
        total_count: Option<i64>,
        cursor_of: impl Fn(&T) -> String,
    ) -> Self {
        let edges = rows
            .into_iter()
            .map(|node| Edge {
                cursor: cursor_of(&node),
                node,
            })
            .collect();
        Self::from_lookahead_edges(edges, request, total_count)
    }

    /// Builds a page from rows read as [`PageRequest::scan`] says, in the order the query
    /// read them: the lookahead row, when there, says that more items lie beyond the
    /// page in the direction read and is dropped; rows read backward are turned back
    /// into list order. The flag on the cursor's side is whether there is a cursor.
    pub(crate) fn from_lookahead_edges(
        mut edges: Vec<Edge<T>>,
        request: PageRequest<'_>,
        total_count: Option<i64>,
    ) -> Self {
        let size = request.size();
        let more = edges.len() > size;
        edges.truncate(size);
        let (has_previous_page, has_next_page) = match request {
            PageRequest::Forward { after, .. } => (after.is_some(), more),
            PageRequest::Backward { before, .. } => {
                edges.reverse();
                (more, before.is_some())
            }
        };
        Self {
            edges,
            has_next_page,
            has_previous_page,
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

    fn cursor_of(n: &i32) -> String {
        format!("c{n}")
    }

    fn nodes_and_flags(page: &Page<i32>) -> (Vec<i32>, bool, bool) {
        (
            page.nodes().copied().collect(),
            page.has_previous_page,
            page.has_next_page,
        )
    }

    #[test]
    fn going_forward_the_lookahead_row_sets_has_next_page_and_is_dropped() {
        let first = PageRequest::first(2);
        let page = Page::from_lookahead(vec![1, 2, 3], first, Some(9), cursor_of);
        assert_eq!(nodes_and_flags(&page), (vec![1, 2], false, true));
        assert_eq!(page.total_count, Some(9));
        assert_eq!(page.start_cursor(), Some("c1"));
        assert_eq!(page.end_cursor(), Some("c2"));

        let after = PageRequest::Forward {
            first: 2,
            after: Some("c2"),
        };
        let last = Page::from_lookahead(vec![3, 4], after, None, cursor_of);
        assert_eq!(nodes_and_flags(&last), (vec![3, 4], true, false));
    }

    #[test]
    fn going_backward_the_rows_are_turned_into_list_order_and_the_flags_swap() {
        // Read backward from the end of the list 1..=5: 5, 4, then 3 as lookahead.
        let from_the_end = PageRequest::Backward {
            last: 2,
            before: None,
        };
        let page = Page::from_lookahead(vec![5, 4, 3], from_the_end, None, cursor_of);
        assert_eq!(nodes_and_flags(&page), (vec![4, 5], true, false));
        assert_eq!(page.start_cursor(), Some("c4"));
        assert_eq!(page.end_cursor(), Some("c5"));

        let before = PageRequest::Backward {
            last: 3,
            before: Some("c4"),
        };
        let first = Page::from_lookahead(vec![3, 2, 1], before, None, cursor_of);
        assert_eq!(nodes_and_flags(&first), (vec![1, 2, 3], false, true));
        let edges: Vec<&str> = first.edges.iter().map(|e| e.cursor.as_str()).collect();
        assert_eq!(edges, vec!["c1", "c2", "c3"]);
    }

    #[test]
    fn an_empty_page_still_tells_whether_items_lie_beyond_it() {
        let none = PageRequest::Backward {
            last: 0,
            before: None,
        };
        let page = Page::from_lookahead(vec![7], none, None, cursor_of);
        assert_eq!(nodes_and_flags(&page), (vec![], true, false));
        assert_eq!((page.start_cursor(), page.end_cursor()), (None, None));
        let empty = Page::from_lookahead(Vec::new(), PageRequest::first(0), None, cursor_of);
        assert_eq!(nodes_and_flags(&empty), (vec![], false, false));
    }

    #[test]
    fn mapping_a_page_keeps_its_cursors_and_flags() {
        let page = Page::from_lookahead(vec![1, 2, 3], PageRequest::first(2), Some(3), cursor_of);
        let mapped = page.clone().map(|n| n * 10);
        assert_eq!(mapped.into_nodes(), vec![10, 20]);
        let mapped = page.clone().map(|n| n.to_string());
        assert_eq!(mapped.end_cursor(), page.end_cursor());
        assert_eq!(
            (
                mapped.has_next_page,
                mapped.has_previous_page,
                mapped.total_count
            ),
            (true, false, Some(3))
        );
    }

    #[test]
    fn a_backward_scan_flips_the_comparison_and_the_order_of_the_list() {
        let cursor = encode_cursor(&(1_i64, 2_i32));
        let forward = PageRequest::Forward {
            first: 10,
            after: Some(&cursor),
        };
        let backward = PageRequest::Backward {
            last: 10,
            before: Some(&cursor),
        };
        let read = |request: PageRequest<'_>, descending: bool| {
            let scan = request.scan::<(i64, i32)>(descending).unwrap();
            assert_eq!(scan.cursor, Some((1, 2)));
            assert_eq!(scan.limit, 11);
            (scan.comparison(), scan.direction())
        };
        assert_eq!(read(forward, true), ("<", "DESC"));
        assert_eq!(read(forward, false), (">", "ASC"));
        assert_eq!(read(backward, true), (">", "ASC"));
        assert_eq!(read(backward, false), ("<", "DESC"));
    }

    #[test]
    fn a_scan_refuses_large_pages_then_foreign_cursors() {
        let oversized = PageRequest::Backward {
            last: MAX_PAGE_SIZE + 1,
            before: Some("zz"),
        };
        assert!(matches!(
            oversized.scan::<(i64, i32)>(true),
            Err(QueryError::PageTooLarge(101))
        ));
        let foreign = PageRequest::Backward {
            last: 1,
            before: Some("zz"),
        };
        assert!(matches!(
            foreign.scan::<(i64, i32)>(true),
            Err(QueryError::InvalidCursor)
        ));
        let largest = PageRequest::first(MAX_PAGE_SIZE).scan::<(i64, i32)>(false);
        assert_eq!(largest.unwrap().limit, 101);
        assert_eq!(limit_with_lookahead(0).unwrap(), 1);
    }
}
