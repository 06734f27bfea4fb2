//! `/v1/articles`: read one article (the article page), and the keyed writes editors use —
//! `PUT` one, `DELETE` one, `POST` many (JSONL or a JSON array). Writes are committed before the
//! response returns, so a search right after sees them.
//!
//! Must never: store an article whose id could escape a folder or break a URL (`..` segments,
//! control characters, absurd length), or lose the good records of a bulk upload because of a
//! bad one (bad ones are reported per record, with their line).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, Json, Path};
use crate::article::{Article, Section};
use crate::ingest::{self, IngestProblem};
use crate::search::UpsertReport;

/// Longest article id accepted (bytes).
pub const MAX_ID_BYTES: usize = 512;

pub fn read_routes() -> Router<AppState> {
    Router::new().route("/v1/articles/{*id}", get(get_article))
}

pub fn write_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/articles", post(bulk_upsert))
        .route(
            "/v1/articles/{*id}",
            put(put_article).delete(delete_article),
        )
}

/// An article as the article page shows it: metadata and its sections with anchors.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ArticleView {
    pub id: String,
    pub title: String,
    pub lang: String,
    pub product: Option<String>,
    pub category: Option<String>,
    pub url: Option<String>,
    pub tags: Vec<String>,
    pub updated_at: Option<String>,
    pub sections: Vec<Section>,
}

impl From<Article> for ArticleView {
    fn from(a: Article) -> ArticleView {
        ArticleView {
            lang: a.lang().to_string(),
            sections: a.sections(),
            id: a.id,
            title: a.title,
            product: a.product,
            category: a.category,
            url: a.url,
            tags: a.tags,
            updated_at: a.updated_at,
        }
    }
}

/// Outcome of a write.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WriteResponse {
    /// Articles stored (upserts) or removed (delete).
    pub upserted: usize,
    pub deleted: usize,
    /// Records skipped, with why (bulk uploads).
    pub problems: Vec<ProblemView>,
}

/// [`IngestProblem`] as JSON (it is `Serialize` only).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProblemView {
    pub source: String,
    pub line: Option<usize>,
    pub message: String,
}

impl From<IngestProblem> for ProblemView {
    fn from(p: IngestProblem) -> ProblemView {
        ProblemView {
            source: p.source,
            line: p.line,
            message: p.message,
        }
    }
}

/// Why an id is refused, if it is.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the article id is empty".into());
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "the article id has {} bytes; at most {MAX_ID_BYTES} are accepted",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("the article id contains control characters".into());
    }
    if id.starts_with('/') || id.contains('\\') {
        return Err("the article id must be a relative path with `/` separators".into());
    }
    if id
        .split('/')
        .any(|seg| seg == ".." || seg == "." || seg.is_empty())
    {
        return Err("the article id must not contain empty, `.` or `..` segments".into());
    }
    Ok(())
}

fn checked_id(id: &str) -> Result<(), ApiError> {
    check_id(id).map_err(|m| ApiError::bad_request("invalid_id", m))
}

/// One stored article with its sections.
#[utoipa::path(
    get, path = "/v1/articles/{id}", tag = "articles",
    params(("id" = String, Path, description = "Article id; may contain `/` (e.g. `billing/refund.zh.md`)")),
    responses(
        (status = 200, description = "The article", body = ArticleView),
        (status = 400, description = "Invalid id", body = super::error::ErrorBody),
        (status = 404, description = "No such article", body = super::error::ErrorBody),
    )
)]
pub async fn get_article(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ArticleView>, ApiError> {
    checked_id(&id)?;
    let engine = state.engine.clone();
    let lookup = id.clone();
    let article = state.cpu.run(move || engine.get(&lookup)).await??;
    match article {
        Some(article) => Ok(Json(article.into())),
        None => Err(ApiError::not_found(
            "article_not_found",
            format!("no article with id {id:?}"),
        )),
    }
}

async fn store(state: &AppState, articles: Vec<Article>) -> Result<UpsertReport, ApiError> {
    let engine = state.engine.clone();
    let report = tokio::task::spawn_blocking(move || engine.upsert(&articles))
        .await
        .map_err(ApiError::from_join)??;
    Ok(report)
}

/// Insert or replace one article (needs an admin key).
#[utoipa::path(
    put, path = "/v1/articles/{id}", tag = "articles",
    params(("id" = String, Path, description = "Article id; may contain `/`")),
    request_body = Article,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Stored; visible to search", body = WriteResponse),
        (status = 400, description = "Invalid id or article, malformed JSON", body = super::error::ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 415, description = "Not `application/json`", body = super::error::ErrorBody),
    )
)]
pub async fn put_article(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(mut article): Json<Article>,
) -> Result<Json<WriteResponse>, ApiError> {
    checked_id(&id)?;
    // The id comes from the path; one in the body is optional but must agree.
    if article.id.is_empty() {
        article.id = id;
    } else if article.id != id {
        return Err(ApiError::bad_request(
            "id_mismatch",
            format!(
                "the body's id {:?} differs from the path's {id:?}",
                article.id
            ),
        ));
    }
    if article.lang.as_deref().is_none_or(str::is_empty) {
        article.lang = Some(article.lang().to_string());
    }
    ingest::validate(&article).map_err(|m| ApiError::bad_request("invalid_article", m))?;
    let report = store(&state, vec![article]).await?;
    Ok(Json(WriteResponse {
        upserted: report.upserted,
        deleted: 0,
        problems: Vec::new(),
    }))
}

/// Delete one article (needs an admin key).
#[utoipa::path(
    delete, path = "/v1/articles/{id}", tag = "articles",
    params(("id" = String, Path, description = "Article id; may contain `/`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Deleted", body = WriteResponse),
        (status = 400, description = "Invalid id", body = super::error::ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = super::error::ErrorBody),
        (status = 404, description = "No such article", body = super::error::ErrorBody),
    )
)]
pub async fn delete_article(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WriteResponse>, ApiError> {
    checked_id(&id)?;
    let engine = state.engine.clone();
    let ids = vec![id.clone()];
    let deleted = tokio::task::spawn_blocking(move || engine.delete(&ids))
        .await
        .map_err(ApiError::from_join)??;
    if deleted == 0 {
        return Err(ApiError::not_found(
            "article_not_found",
            format!("no article with id {id:?}"),
        ));
    }
    Ok(Json(WriteResponse {
        upserted: 0,
        deleted,
        problems: Vec::new(),
    }))
}

/// Content types a bulk upload may use.
fn is_bulk_content_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        mime.as_str(),
        "application/json"
            | "application/x-ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
    )
}

/// Insert or replace many articles: JSONL (one article per line) or a JSON array (needs an
/// admin key). Good records are stored in one commit; bad ones are listed in `problems`.
#[utoipa::path(
    post, path = "/v1/articles", tag = "articles",
    request_body(description = "A JSON array of articles, or JSONL: one article object per line",
        content((Vec<Article> = "application/json"), (String = "application/x-ndjson"))),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Stored (some records may be listed as problems)", body = WriteResponse),
        (status = 400, description = "No valid record, invalid UTF-8", body = super::error::ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 415, description = "Not JSON or JSONL", body = super::error::ErrorBody),
    )
)]
pub async fn bulk_upsert(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<WriteResponse>, ApiError> {
    if !is_bulk_content_type(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected `application/json` (an array) or `application/x-ndjson` (JSONL)",
        ));
    }
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        ApiError::new(
            status,
            super::error::code_for_status(status),
            format!("request body: {}", rejection.body_text()),
        )
    })?;
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::bad_request("invalid_utf8", format!("the body is not valid UTF-8: {e}"))
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "empty_body",
            "no articles in the body",
        ));
    }
    let ingested = ingest::parse_articles_json(text, "<request>");
    let mut problems: Vec<IngestProblem> = ingested.problems;
    let mut articles = Vec::with_capacity(ingested.articles.len());
    for (i, article) in ingested.articles.into_iter().enumerate() {
        let checked = check_id(&article.id).and_then(|()| ingest::validate(&article));
        match checked {
            Ok(()) => articles.push(article),
            Err(message) => problems.push(IngestProblem {
                source: "<request>".into(),
                line: None,
                message: format!("article {} ({:?}): {message}", i + 1, article.id),
            }),
        }
    }
    if articles.is_empty() {
        let mut err = ApiError::bad_request(
            "invalid_articles",
            format!(
                "no valid article in the body ({} problem(s); first: {})",
                problems.len(),
                problems
                    .first()
                    .map(|p| p.message.as_str())
                    .unwrap_or("none")
            ),
        );
        err.problems = Some(problems);
        return Err(err);
    }
    let report = store(&state, articles).await?;
    Ok(Json(WriteResponse {
        upserted: report.upserted,
        deleted: 0,
        problems: problems.into_iter().map(ProblemView::from).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for good in [
            "billing/refund.zh.md",
            "faq-12",
            "产品/常见问题.md",
            "a b/c?.md",
        ] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_ID_BYTES + 1);
        for bad in [
            "",
            "../etc/passwd",
            "a/../../b",
            "a/./b",
            "/abs",
            "a//b",
            "a\\b",
            "a\nb",
            "a\u{0}b",
            long.as_str(),
        ] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }
}
