//! `GET /v1/analytics/queries`: the report KB editors work from — the most asked queries with
//! their clicks and votes, and the queries that found nothing (content gaps).
//!
//! Must never: count the prefixes of search-as-you-type as queries (see `crate::analytics` for
//! how typing bursts are collapsed).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, Json, Query};
use super::search::bounded;
use crate::analytics::{QueryStat, ReportKind, parse_rfc3339_ms};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/analytics/queries", get(queries))
}

/// Query string of `GET /v1/analytics/queries`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// `top` (default) or `zero_results`.
    pub kind: Option<ReportKind>,
    /// Only activity at or after this RFC 3339 time (default: all).
    pub since: Option<String>,
    /// Lines, 1–1000 (default 50).
    pub limit: Option<i64>,
}

/// A report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportResponse {
    pub kind: ReportKind,
    pub since: Option<String>,
    pub queries: Vec<QueryStat>,
}

/// Top queries or zero-result queries.
#[utoipa::path(
    get, path = "/v1/analytics/queries", tag = "analytics",
    params(ReportParams),
    responses(
        (status = 200, description = "The report", body = ReportResponse),
        (status = 400, description = "Bad kind, since or limit", body = super::error::ErrorBody),
    )
)]
pub async fn queries(
    State(state): State<AppState>,
    Query(params): Query<ReportParams>,
) -> Result<Json<ReportResponse>, ApiError> {
    let kind = params.kind.unwrap_or(ReportKind::Top);
    let limit = bounded("limit", params.limit, 50, 1, 1000)?;
    let since_ms = match params.since.as_deref().filter(|s| !s.is_empty()) {
        None => 0,
        Some(text) => parse_rfc3339_ms(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                format!(
                    "since must be an RFC 3339 time such as 2026-01-31T00:00:00Z, got {text:?}"
                ),
            )
        })?,
    };
    let analytics = state.analytics.clone();
    let queries = tokio::task::spawn_blocking(move || analytics.queries(kind, since_ms, limit))
        .await
        .map_err(ApiError::from_join)?
        .map_err(ApiError::internal)?;
    Ok(Json(ReportResponse {
        kind,
        since: params.since,
        queries,
    }))
}
