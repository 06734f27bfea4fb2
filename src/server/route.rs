//! `POST /v1/classify`, `POST /v1/route` (the ticket pipeline's hook) and `POST /v1/assist` (the
//! agent console: the routing decision and the top articles for a ticket in one call).
//!
//! Must never: run inference on the async workers, or fail search because the model is missing
//! (route endpoints answer 503 then; `assist` still returns articles, with `decision: null`).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, Json};
use super::search::bounded;
use crate::route::{Decision, Ticket, TicketRouter};
use crate::search::{SearchHit, SearchRequest};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/classify", post(classify))
        .route("/v1/route", post(route))
        .route("/v1/assist", post(assist))
}

/// Body of `POST /v1/assist`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct AssistRequest {
    /// The ticket: `id`, `subject`, `body`.
    #[serde(flatten)]
    pub ticket: Ticket,
    /// Articles wanted, 1–20 (default 5).
    #[serde(default)]
    pub limit: Option<i64>,
}

/// What an agent needs for one ticket.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssistResponse {
    /// `null` when no routing model is loaded.
    pub decision: Option<Decision>,
    pub articles: Vec<SearchHit>,
    pub took_ms: f64,
}

fn ticket_router(state: &AppState) -> Result<Arc<TicketRouter>, ApiError> {
    state.router.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unavailable",
            format!(
                "no routing model is loaded: {}",
                state
                    .router_error
                    .as_deref()
                    .unwrap_or("start the server with --models pointing at a trained model")
            ),
        )
    })
}

fn check_ticket(subject: &str, body: &str) -> Result<(), ApiError> {
    if subject.trim().is_empty() && body.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_ticket",
            "a ticket needs a subject or a body",
        ));
    }
    Ok(())
}

async fn decide(state: &AppState, ticket: Ticket) -> Result<Decision, ApiError> {
    check_ticket(&ticket.subject, &ticket.body)?;
    let router = ticket_router(state)?;
    let decision = state.cpu.run(move || router.route(&ticket)).await??;
    Ok(decision)
}

/// Predict a ticket's category (the same decision as `/v1/route`).
#[utoipa::path(
    post, path = "/v1/classify", tag = "route",
    request_body = Ticket,
    responses(
        (status = 200, description = "Category, confidence, queue, priority and SLA", body = Decision),
        (status = 400, description = "Empty ticket or malformed JSON", body = super::error::ErrorBody),
        (status = 503, description = "No routing model loaded", body = super::error::ErrorBody),
    )
)]
pub async fn classify(
    State(state): State<AppState>,
    Json(ticket): Json<Ticket>,
) -> Result<Json<Decision>, ApiError> {
    Ok(Json(decide(&state, ticket).await?))
}

/// Route a ticket: category → queue, urgency → priority with its SLA, "needs a human" when unsure.
#[utoipa::path(
    post, path = "/v1/route", tag = "route",
    request_body = Ticket,
    responses(
        (status = 200, description = "The routing decision", body = Decision),
        (status = 400, description = "Empty ticket or malformed JSON", body = super::error::ErrorBody),
        (status = 503, description = "No routing model loaded", body = super::error::ErrorBody),
    )
)]
pub async fn route(
    State(state): State<AppState>,
    Json(ticket): Json<Ticket>,
) -> Result<Json<Decision>, ApiError> {
    Ok(Json(decide(&state, ticket).await?))
}

/// For agents: the routing decision and the top articles for the ticket's text.
#[utoipa::path(
    post, path = "/v1/assist", tag = "route",
    request_body = AssistRequest,
    responses(
        (status = 200, description = "Decision (null without a model) and articles", body = AssistResponse),
        (status = 400, description = "Empty ticket, bad limit or malformed JSON", body = super::error::ErrorBody),
    )
)]
pub async fn assist(
    State(state): State<AppState>,
    Json(request): Json<AssistRequest>,
) -> Result<Json<AssistResponse>, ApiError> {
    let started = Instant::now();
    let AssistRequest { ticket, limit } = request;
    check_ticket(&ticket.subject, &ticket.body)?;
    let limit = bounded("limit", limit, 5, 1, 20)?;
    // A ticket can be long; its opening carries the question, and search takes a bounded query.
    let text = format!("{}\n{}", ticket.subject.trim(), ticket.body.trim());
    let query: String = text
        .trim()
        .chars()
        .take(state.config.max_query_chars)
        .collect();
    let engine = state.engine.clone();
    let router = state.router.clone();
    let (decision, articles) = state
        .cpu
        .run(move || {
            let decision = router.map(|r| r.route(&ticket)).transpose();
            let articles = engine.search(&SearchRequest {
                query,
                lang: None,
                product: None,
                category: None,
                limit,
                offset: 0,
            });
            (decision, articles)
        })
        .await?;
    Ok(Json(AssistResponse {
        decision: decision?,
        articles: articles?.hits,
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    }))
}
