//! Relay connections (`edges { cursor node }`, `nodes`, `pageInfo`, `totalCount`) over the
//! read models' keyset pages, and the `userErrors` every mutation payload carries.

use async_graphql::SimpleObject;
use projections::page::{PageRequest, MAX_PAGE_SIZE};

use super::error::ApiError;

/// A page size when the client names none.
const DEFAULT_PAGE_SIZE: usize = 20;

/// Where a page sits in its list.
#[derive(Debug, Clone, SimpleObject)]
pub struct PageInfo {
    /// Whether items follow this page.
    pub has_next_page: bool,
    /// Whether items precede this page.
    pub has_previous_page: bool,
    /// The cursor of the first item, for `before`.
    pub start_cursor: Option<String>,
    /// The cursor of the last item, for `after`.
    pub end_cursor: Option<String>,
}

/// A rule the input broke; the mutation changed nothing.
#[derive(Debug, Clone, SimpleObject)]
pub struct UserError {
    /// The path of the input field at fault (`["input", "lines", "0", "quantity"]`).
    pub field: Option<Vec<String>>,
    /// What is wrong, for people.
    pub message: String,
    /// What is wrong, for programs (`ALREADY_SHIPPED`, `INSUFFICIENT_STOCK`).
    pub code: String,
}

impl UserError {
    /// An error on `field` (a path below `input`).
    pub fn on(field: &[&str], code: &str, message: impl Into<String>) -> Self {
        let mut path = vec!["input".to_owned()];
        path.extend(field.iter().map(|part| (*part).to_owned()));
        UserError {
            field: Some(path),
            message: message.into(),
            code: code.to_owned(),
        }
    }

    /// An error about the request as a whole.
    pub fn general(code: &str, message: impl Into<String>) -> Self {
        UserError {
            field: None,
            message: message.into(),
            code: code.to_owned(),
        }
    }
}

/// The page asked for with `first/after` or `last/before`.
///
/// # Errors
/// [`ApiError::BadUserInput`] for both `first` and `last`, a negative count, or more
/// than 100.
pub fn page_request<'a>(
    first: Option<i32>,
    after: Option<&'a str>,
    last: Option<i32>,
    before: Option<&'a str>,
) -> Result<PageRequest<'a>, ApiError> {
    let count = |n: i32, name: &str| {
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_PAGE_SIZE)
            .ok_or_else(|| {
                ApiError::bad_input(format!("`{name}` must be between 0 and {MAX_PAGE_SIZE}"))
            })
    };
    match (first, last) {
        (Some(_), Some(_)) => Err(ApiError::bad_input(
            "pass `first` (with `after`) or `last` (with `before`), not both",
        )),
        (_, Some(last)) => {
            if after.is_some() {
                return Err(ApiError::bad_input("`after` goes with `first`, not `last`"));
            }
            Ok(PageRequest::Backward {
                last: count(last, "last")?,
                before,
            })
        }
        (first, None) => {
            if before.is_some() {
                return Err(ApiError::bad_input(
                    "`before` goes with `last`, not `first`",
                ));
            }
            Ok(PageRequest::Forward {
                first: first.map_or(Ok(DEFAULT_PAGE_SIZE), |n| count(n, "first"))?,
                after,
            })
        }
    }
}

/// The complexity of a connection field: its children count once per item asked for,
/// so a hundred aliased 100-item pages cost what they would cost to run.
pub fn page_cost(first: Option<i32>, last: Option<i32>, child_complexity: usize) -> usize {
    let items = first.or(last).map_or(DEFAULT_PAGE_SIZE, |n| {
        usize::try_from(n).unwrap_or(0).min(MAX_PAGE_SIZE)
    });
    items
        .max(1)
        .saturating_mul(child_complexity)
        .saturating_add(1)
}

/// Declares `<Name>Connection` and `<Name>Edge` for a node type, built from a
/// `projections::page::Page` of read-model rows.
macro_rules! connection {
    ($connection:ident, $edge:ident, $node:ty) => {
        /// One item of a list and its cursor.
        #[derive(Clone, async_graphql::SimpleObject)]
        pub struct $edge {
            /// Pass as `after` (or `before`) to page from this item.
            pub cursor: String,
            /// The item.
            pub node: $node,
        }

        /// A page of a list.
        #[derive(Clone, async_graphql::SimpleObject)]
        pub struct $connection {
            /// The items with their cursors.
            pub edges: Vec<$edge>,
            /// The items alone.
            pub nodes: Vec<$node>,
            /// Where this page sits.
            pub page_info: $crate::graphql::relay::PageInfo,
            /// How many items the whole list holds.
            pub total_count: i64,
        }

        impl $connection {
            /// The connection of a read-model page, each row made a node by `node`.
            pub fn from_page<T>(
                page: projections::page::Page<T>,
                mut node: impl FnMut(T) -> $node,
            ) -> Self {
                let page_info = $crate::graphql::relay::PageInfo {
                    has_next_page: page.has_next_page,
                    has_previous_page: page.has_previous_page,
                    start_cursor: page.start_cursor().map(str::to_owned),
                    end_cursor: page.end_cursor().map(str::to_owned),
                };
                let total_count = page.total_count.unwrap_or(0);
                let edges: Vec<$edge> = page
                    .edges
                    .into_iter()
                    .map(|edge| $edge {
                        cursor: edge.cursor,
                        node: node(edge.node),
                    })
                    .collect();
                let nodes = edges.iter().map(|edge| edge.node.clone()).collect();
                Self {
                    edges,
                    nodes,
                    page_info,
                    total_count,
                }
            }
        }
    };
}
pub(crate) use connection;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_arguments_pick_a_direction() {
        assert_eq!(
            page_request(None, None, None, None).unwrap(),
            PageRequest::Forward {
                first: 20,
                after: None
            }
        );
        assert_eq!(
            page_request(None, None, Some(5), Some("c")).unwrap(),
            PageRequest::Backward {
                last: 5,
                before: Some("c")
            }
        );
    }

    #[test]
    fn contradictory_or_oversized_page_arguments_are_bad_input() {
        for (first, after, last, before) in [
            (Some(1), None, Some(1), None),
            (Some(101), None, None, None),
            (Some(-1), None, None, None),
            (None, Some("c"), Some(2), None),
            (Some(2), None, None, Some("c")),
            (None, None, Some(1000), None),
        ] {
            let error = page_request(first, after, last, before).unwrap_err();
            assert_eq!(error.code(), "BAD_USER_INPUT");
        }
    }
}
