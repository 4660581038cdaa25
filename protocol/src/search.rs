//! Full-text search (extension, docs/PROTOCOL.md "Search"): the request a gateway sends to
//! the worker owning a partition, for the caller's rooms of that partition, and the hits.
//! Results are newest first (by seq, which orders messages across rooms too); a page ends
//! where `before` of the next one starts.

use serde::{Deserialize, Serialize};

/// Longest query, in bytes.
pub const MAX_QUERY_BYTES: usize = 256;
/// Most words (runs of letters and digits, as the index splits text) in one query: a
/// phrase's cost grows with its words times their places in each candidate message, so a
/// long phrase of a word a room repeats could hold a worker's cores for seconds.
pub const MAX_QUERY_WORDS: usize = 16;

/// The words of `q` as the index splits text (runs of letters and digits).
pub fn query_words(q: &str) -> usize {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .count()
}

/// Most hits one page returns.
pub const MAX_SEARCH_LIMIT: usize = 50;
/// Most rooms one search covers (the caller's rooms, as `rooms_list` lists them).
pub const MAX_SEARCH_ROOMS: usize = 1_000;

/// A search of some rooms of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// The words to find (all of them; `"a phrase"`, `-word` and `word*` as in docs).
    pub q: String,
    /// The rooms to look in: rooms of this partition the caller may read (the gateway checks).
    pub rooms: Vec<String>,
    /// Only messages from this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Only messages sent at or after this time (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Only messages sent before this time (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// Only messages with a seq below this one (the paging cursor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Most hits to return (1..=[`MAX_SEARCH_LIMIT`]).
    pub limit: usize,
}

/// One message found, in its current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchHit {
    pub room: String,
    pub seq: u64,
    pub from: String,
    pub ts: u64,
    pub body: String,
}

/// Hits, newest first; `more` when the page was cut at `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    pub more: bool,
    /// With `more`: the `before` of the next page. The last hit's seq, or below it where
    /// the search went on past hits the store no longer holds (a page of those alone is
    /// empty and still has a next one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}
