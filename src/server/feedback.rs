//! `POST /v1/feedback`: result clicks and "was this helpful? 👍 👎" from the widget, the article
//! page and the console, into analytics.
//!
//! Must never: make the caller wait on a disk write (the event is queued), or accept an event it
//! cannot name (`event` is `click`, `helpful` or `not_helpful`; `helpful: bool` is accepted too).

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::articles::check_id;
use super::error::{ApiError, Json};
use crate::analytics::FeedbackEvent;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/feedback", post(feedback))
}

/// A click or a vote on one result of one query.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FeedbackRequest {
    /// The query whose result this is (empty when the article was opened directly).
    #[serde(default)]
    pub query: String,
    pub article_id: String,
    /// `click`, `helpful` or `not_helpful`.
    #[serde(default)]
    pub event: Option<FeedbackEvent>,
    /// Shorthand for `event`: `true` = `helpful`, `false` = `not_helpful`.
    #[serde(default)]
    pub helpful: Option<bool>,
}

/// `{"ok": true}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OkResponse {
    pub ok: bool,
}

/// Record a result click or a helpfulness vote.
#[utoipa::path(
    post, path = "/v1/feedback", tag = "analytics",
    request_body = FeedbackRequest,
    responses(
        (status = 200, description = "Recorded", body = OkResponse),
        (status = 400, description = "No event, bad article id, over-long query, malformed JSON", body = super::error::ErrorBody),
        (status = 415, description = "Not `application/json`", body = super::error::ErrorBody),
    )
)]
pub async fn feedback(
    State(state): State<AppState>,
    Json(request): Json<FeedbackRequest>,
) -> Result<Json<OkResponse>, ApiError> {
    let event = match (request.event, request.helpful) {
        (Some(event), _) => event,
        (None, Some(true)) => FeedbackEvent::Helpful,
        (None, Some(false)) => FeedbackEvent::NotHelpful,
        (None, None) => {
            return Err(ApiError::bad_request(
                "missing_event",
                "send `event` (click, helpful, not_helpful) or `helpful` (true/false)",
            ));
        }
    };
    check_id(&request.article_id).map_err(|m| ApiError::bad_request("invalid_id", m))?;
    let chars = request.query.chars().count();
    if chars > state.config.max_query_chars {
        return Err(ApiError::bad_request(
            "query_too_long",
            format!(
                "query has {chars} characters; at most {} are accepted",
                state.config.max_query_chars
            ),
        ));
    }
    state
        .analytics
        .record_feedback(&request.query, &request.article_id, event);
    Ok(Json(OkResponse { ok: true }))
}
