//! Relay cursor connections: `PageInfo`, opaque cursors over UUIDv7 ids, and `first` bounds.

use async_graphql::SimpleObject;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// Page size when `first` is left out.
pub const DEFAULT_PAGE: i32 = 20;
/// Largest page.
pub const MAX_PAGE: u64 = 100;

/// Position of a page in a list (Relay cursor connections).
#[derive(SimpleObject, Debug, Clone)]
#[graphql(shareable)]
pub struct PageInfo {
    /// More items follow this page.
    pub has_next_page: bool,
    /// Items come before this page.
    pub has_previous_page: bool,
    /// Cursor of the first item of the page.
    pub start_cursor: Option<String>,
    /// Cursor of the last item of the page; pass it as `after` for the next page.
    pub end_cursor: Option<String>,
}

impl PageInfo {
    pub fn new(cursors: &[String], has_next_page: bool, had_after: bool) -> Self {
        Self {
            has_next_page,
            has_previous_page: had_after,
            start_cursor: cursors.first().cloned(),
            end_cursor: cursors.last().cloned(),
        }
    }
}

/// `first` checked: 0 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when left out.
pub fn page_size(first: Option<i32>) -> ApiResult<u64> {
    u64::try_from(first.unwrap_or(DEFAULT_PAGE))
        .ok()
        .filter(|n| *n <= MAX_PAGE)
        .ok_or_else(|| {
            ApiError::bad_input("first", format!("`first` must be between 0 and {MAX_PAGE}"))
        })
}

pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Decodes an `after` cursor made by [`encode_cursor`].
pub fn decode_cursor(cursor: &str) -> ApiResult<Uuid> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ApiError::bad_input("after", "`after` is not a cursor returned by this list")
        })
}

/// A cursor over a list ordered by a number (e.g. the audit log's sequence).
pub fn encode_number_cursor(n: i64) -> String {
    URL_SAFE_NO_PAD.encode(n.to_be_bytes())
}

/// Decodes an `after` cursor made by [`encode_number_cursor`].
pub fn decode_number_cursor(cursor: &str) -> ApiResult<i64> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map(i64::from_be_bytes)
        .ok_or_else(|| {
            ApiError::bad_input("after", "`after` is not a cursor returned by this list")
        })
}
