//! `GET|POST /v1/search` and `GET /v1/suggest`: the help widget's and the console's search.
//!
//! Owns: checking the request (query length, `limit`/`offset` bounds), running the search off the
//! async workers (on the [`CpuPool`](super::cpu::CpuPool)), and recording the query with
//! its hit count in analytics. Must never: rank or highlight (that is `search/`), or let an
//! analytics write slow a search down (it is queued).

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::{HeaderMap, header, request::Parts};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, Json, Query};
use crate::search::{SearchRequest, SearchResponse, Suggestion};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/search", get(search_get).post(search_post))
        .route("/v1/suggest", get(suggest))
}

/// Query string of `GET /v1/search`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The question, as typed (Chinese, English or mixed; traditional and full-width work).
    pub q: Option<String>,
    /// Only articles in this language (`zh`, `en`).
    pub lang: Option<String>,
    /// Only articles of this product.
    pub product: Option<String>,
    /// Only articles of this support category (`billing`, `network`... the router's labels).
    pub category: Option<String>,
    /// Results per page, 1–100 (default 10).
    pub limit: Option<i64>,
    /// Results to skip, 0–1000 (default 0).
    pub offset: Option<i64>,
}

/// Body of `POST /v1/search` (for long queries and clients that prefer JSON, as in Meilisearch).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SearchBody {
    #[serde(alias = "query")]
    pub q: Option<String>,
    pub lang: Option<String>,
    pub product: Option<String>,
    pub category: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl From<SearchBody> for SearchParams {
    fn from(b: SearchBody) -> SearchParams {
        SearchParams {
            q: b.q,
            lang: b.lang,
            product: b.product,
            category: b.category,
            limit: b.limit,
            offset: b.offset,
        }
    }
}

/// Query string of `GET /v1/suggest`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuggestParams {
    /// What has been typed so far.
    pub q: Option<String>,
    /// Suggestions wanted, 1–20 (default 8).
    pub limit: Option<i64>,
}

/// Completions for search-as-you-type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SuggestResponse {
    pub query: String,
    /// Popular past queries (`kind: "query"`) first, then article titles (`kind: "title"`).
    pub suggestions: Vec<Suggestion>,
}

/// `value` within `[min, max]`, or a 400 naming the parameter.
pub fn bounded(
    name: &str,
    value: Option<i64>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<usize, ApiError> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("{name} must be between {min} and {max}, got {v}"),
        ));
    }
    Ok(v as usize)
}

/// A non-empty query of at most `max_chars` characters.
pub fn checked_query(q: Option<String>, max_chars: usize) -> Result<String, ApiError> {
    let q = q.unwrap_or_default();
    if q.trim().is_empty() {
        return Err(ApiError::bad_request(
            "missing_query",
            "q must not be empty",
        ));
    }
    let chars = q.chars().count();
    if chars > max_chars {
        return Err(ApiError::bad_request(
            "query_too_long",
            format!("q has {chars} characters; at most {max_chars} are accepted"),
        ));
    }
    if q.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q must not contain control characters",
        ));
    }
    Ok(q)
}

fn optional_filter(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    {
        Some(v) if v.chars().count() > 64 || v.chars().any(char::is_control) => Err(
            ApiError::bad_request("invalid_parameter", format!("{name} is not a valid filter")),
        ),
        other => Ok(other),
    }
}

/// Who is typing, for grouping a client's searches into typing bursts. In memory only, hashed
/// with a per-process random key: nothing identifying is stored.
pub fn client_key(headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<u64> {
    static KEY: LazyLock<std::collections::hash_map::RandomState> =
        LazyLock::new(std::collections::hash_map::RandomState::new);
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim);
    let agent = headers.get(header::USER_AGENT).map(|v| v.as_bytes());
    if peer.is_none() && forwarded.is_none() && agent.is_none() {
        return None;
    }
    let mut h = KEY.build_hasher();
    peer.map(|p| p.ip()).hash(&mut h);
    forwarded.hash(&mut h);
    agent.hash(&mut h);
    Some(h.finish())
}

/// The [`client_key`] of a request (`None` when nothing tells clients apart).
pub struct Client(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(Client(client_key(&parts.headers, peer)))
    }
}

/// Search the help center.
#[utoipa::path(
    get, path = "/v1/search", tag = "search",
    params(SearchParams),
    responses(
        (status = 200, description = "Ranked articles with highlighted snippets", body = SearchResponse),
        (status = 400, description = "Empty or over-long query, bad limit/offset", body = super::error::ErrorBody),
    )
)]
pub async fn search_get(
    State(state): State<AppState>,
    Client(client): Client,
    Query(params): Query<SearchParams>,
) -> Result<Json<SearchResponse>, ApiError> {
    run_search(state, params, client).await
}

/// Search the help center (JSON body; same answer as `GET`).
#[utoipa::path(
    post, path = "/v1/search", tag = "search",
    request_body = SearchBody,
    responses(
        (status = 200, description = "Ranked articles with highlighted snippets", body = SearchResponse),
        (status = 400, description = "Empty or over-long query, bad limit/offset, malformed JSON", body = super::error::ErrorBody),
        (status = 415, description = "Not `application/json`", body = super::error::ErrorBody),
    )
)]
pub async fn search_post(
    State(state): State<AppState>,
    Client(client): Client,
    Json(body): Json<SearchBody>,
) -> Result<Json<SearchResponse>, ApiError> {
    run_search(state, body.into(), client).await
}

async fn run_search(
    state: AppState,
    params: SearchParams,
    client: Option<u64>,
) -> Result<Json<SearchResponse>, ApiError> {
    let limits = &state.config;
    let request = SearchRequest {
        query: checked_query(params.q, limits.max_query_chars)?,
        lang: optional_filter("lang", params.lang)?,
        product: optional_filter("product", params.product)?,
        category: optional_filter("category", params.category)?,
        limit: bounded("limit", params.limit, 10, 1, limits.max_limit as i64)?,
        offset: bounded("offset", params.offset, 0, 0, limits.max_offset as i64)?,
    };
    let engine = state.engine.clone();
    let (request, result) = state
        .cpu
        .run(move || {
            let result = engine.search(&request);
            (request, result)
        })
        .await?;
    let response = result?;
    // Later pages of the same query are not new searches.
    if request.offset == 0 {
        state
            .analytics
            .record_search(&request.query, response.total, client);
    }
    Ok(Json(response))
}

/// Completions for what has been typed so far.
#[utoipa::path(
    get, path = "/v1/suggest", tag = "search",
    params(SuggestParams),
    responses(
        (status = 200, description = "Popular past queries and article titles", body = SuggestResponse),
        (status = 400, description = "Over-long prefix or bad limit", body = super::error::ErrorBody),
    )
)]
pub async fn suggest(
    State(state): State<AppState>,
    Query(params): Query<SuggestParams>,
) -> Result<Json<SuggestResponse>, ApiError> {
    let limit = bounded("limit", params.limit, 8, 1, 20)?;
    let query = params.q.unwrap_or_default();
    if query.trim().is_empty() {
        return Ok(Json(SuggestResponse {
            query,
            suggestions: Vec::new(),
        }));
    }
    let query = checked_query(Some(query), state.config.max_query_chars)?;
    let engine = state.engine.clone();
    let analytics = state.analytics.clone();
    let prefix = query.clone();
    let suggestions = state
        .cpu
        .run(move || {
            // Past queries get at most half the slots so titles (answers) always show.
            let popular = analytics
                .popular_with_prefix(&prefix, limit.div_ceil(2))
                .unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "suggest: popular queries unavailable");
                    Vec::new()
                });
            let titles = engine.suggest(&prefix, limit)?;
            let mut out: Vec<Suggestion> = popular
                .into_iter()
                .map(|p| Suggestion {
                    text: p.query,
                    kind: "query".into(),
                    id: None,
                })
                .collect();
            for title in titles {
                if out.len() >= limit {
                    break;
                }
                if !out.iter().any(|s| s.text == title.text) {
                    out.push(title);
                }
            }
            Ok::<_, crate::search::SearchError>(out)
        })
        .await??;
    Ok(Json(SuggestResponse { query, suggestions }))
}
