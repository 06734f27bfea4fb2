//! Search: the tantivy index of article sections, ranking, grouping per article and snippets.
//!
//! INTERFACE (fixed by the lead; the search engineer implements the bodies and may add
//! submodules, fields and methods, but must keep these signatures so `server` compiles):

use std::path::Path;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::article::Article;

/// What can go wrong in search and indexing.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The caller's request is invalid (empty/oversized query, bad filter, bad id...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The index on disk was built by another analyzer: re-index.
    #[error("{0}")]
    AnalyzerMismatch(String),
    /// tantivy failed.
    #[error("index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// Reading or writing files failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A search request (CLI, HTTP and evaluation all build one).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SearchRequest {
    pub query: String,
    pub lang: Option<String>,
    pub product: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

/// One article in the results; its best section gives `anchor`, `section` and `snippet`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub id: String,
    pub title: String,
    pub lang: String,
    pub product: Option<String>,
    pub url: Option<String>,
    pub anchor: Option<String>,
    pub section: Option<String>,
    /// HTML-escaped text with `<em>`…`</em>` around matched terms.
    pub snippet: String,
    pub score: f32,
}

/// Results of one search.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    pub query: String,
    pub hits: Vec<SearchHit>,
    /// Number of matching articles (not sections).
    pub total: usize,
    pub took_ms: f64,
}

/// A completion for search-as-you-type.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Suggestion {
    pub text: String,
    /// `title` (an article title) or `query` (a popular past query, added by the server).
    pub kind: String,
    pub id: Option<String>,
}

/// Size and freshness of the index, for `/metrics` and `/healthz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IndexStats {
    pub articles: u64,
    pub sections: u64,
    pub size_bytes: u64,
    /// RFC 3339 time of the last commit, if any.
    pub last_commit: Option<String>,
}

/// Outcome of an upsert batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpsertReport {
    pub upserted: usize,
}

/// An open index: readers for search, one writer behind a lock for upserts and deletes.
/// `Send + Sync`; share it in an `Arc`.
pub struct SearchEngine {}

impl SearchEngine {
    /// Opens the index in `dir`, creating an empty one if there is none. Refuses an index built by
    /// another analyzer with [`SearchError::AnalyzerMismatch`].
    pub fn open_or_create(dir: &Path) -> Result<SearchEngine, SearchError> {
        let _ = dir;
        todo!("search engineer")
    }

    /// Number of articles in the index.
    pub fn num_articles(&self) -> u64 {
        todo!("search engineer")
    }

    /// Inserts or replaces articles by id in one commit; visible to search when this returns.
    pub fn upsert(&self, articles: &[Article]) -> Result<UpsertReport, SearchError> {
        let _ = articles;
        todo!("search engineer")
    }

    /// Deletes articles by id in one commit; returns how many existed.
    pub fn delete(&self, ids: &[String]) -> Result<usize, SearchError> {
        let _ = ids;
        todo!("search engineer")
    }

    /// The stored article, if present.
    pub fn get(&self, id: &str) -> Result<Option<Article>, SearchError> {
        let _ = id;
        todo!("search engineer")
    }

    /// Ranked, grouped, highlighted results.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse, SearchError> {
        let _ = request;
        todo!("search engineer")
    }

    /// Article titles completing `prefix` (search-as-you-type).
    pub fn suggest(&self, prefix: &str, limit: usize) -> Result<Vec<Suggestion>, SearchError> {
        let _ = (prefix, limit);
        todo!("search engineer")
    }

    /// Index size and last commit.
    pub fn stats(&self) -> IndexStats {
        todo!("search engineer")
    }
}
