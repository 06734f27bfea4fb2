//! Ingestion: folders of Markdown, JSONL article files and HTML into [`Article`]s.
//!
//! INTERFACE (fixed by the lead; the search engineer implements):

use std::path::{Path, PathBuf};

use crate::article::Article;

/// One bad record, reported and skipped; the rest of the batch goes on.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct IngestProblem {
    /// File the record came from (or `<request>` for HTTP bodies).
    pub source: String,
    /// 1-based line of the record, when it has one (JSONL).
    pub line: Option<usize>,
    pub message: String,
}

/// Articles read from paths, and the problems met on the way.
#[derive(Debug, Default)]
pub struct Ingested {
    pub articles: Vec<Article>,
    pub problems: Vec<IngestProblem>,
}

/// Reads every article under `paths` (folders walked recursively; `.md`, `.jsonl`, `.html`).
pub fn read_paths(paths: &[PathBuf]) -> Ingested {
    let _ = paths;
    todo!("search engineer")
}

/// Parses JSONL text (one article object per line) or a JSON array of articles, as posted to
/// `POST /v1/articles`. `source` names the input in problems.
pub fn parse_articles_json(text: &str, source: &str) -> Ingested {
    let _ = (text, source);
    todo!("search engineer")
}

/// Checks one article (id shape, non-empty title/body, sizes) before it is stored.
pub fn validate(article: &Article) -> Result<(), String> {
    let _ = article;
    todo!("search engineer")
}

/// Reads one Markdown file (front matter optional); `root` gives the id.
pub fn read_markdown(root: &Path, path: &Path) -> Result<Article, IngestProblem> {
    let _ = (root, path);
    todo!("search engineer")
}
