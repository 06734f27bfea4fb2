//! `GET /metrics`: Prometheus text (OpenMetrics) — request counts and latency histograms per
//! route, index size and freshness, model labels, analytics events dropped, CPU work running and
//! waiting.
//!
//! Owns: the metric registry and the middleware that times every request. Routes are labelled by
//! their pattern (`/v1/articles/{*id}`), never by the raw path, so label cardinality stays fixed.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::AppState;
use super::error::ApiError;

/// Content type of the exposition format `prometheus-client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    index_articles: Gauge,
    index_sections: Gauge,
    index_size_bytes: Gauge,
    index_last_commit: Gauge<f64, AtomicU64>,
    model_labels: Gauge,
    analytics_dropped: Gauge<i64, AtomicI64>,
    cpu_running: Gauge,
    cpu_waiting: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … 8 s: search answers in a few ms, bulk commits take seconds.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kefu");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let m = Metrics {
            requests: requests.clone(),
            latency: latency.clone(),
            index_articles: Gauge::default(),
            index_sections: Gauge::default(),
            index_size_bytes: Gauge::default(),
            index_last_commit: Gauge::default(),
            model_labels: Gauge::default(),
            analytics_dropped: Gauge::default(),
            cpu_running: Gauge::default(),
            cpu_waiting: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests,
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            latency,
        );
        registry.register(
            "index_articles",
            "Articles in the search index",
            m.index_articles.clone(),
        );
        registry.register(
            "index_sections",
            "Sections in the search index",
            m.index_sections.clone(),
        );
        registry.register(
            "index_size_bytes",
            "Size of the index on disk",
            m.index_size_bytes.clone(),
        );
        registry.register(
            "index_last_commit_timestamp_seconds",
            "Unix time of the index's last commit",
            m.index_last_commit.clone(),
        );
        registry.register(
            "model_labels",
            "Labels of the loaded routing model (0: no model)",
            m.model_labels.clone(),
        );
        registry.register(
            "analytics_dropped_events",
            "Analytics events dropped because the writer fell behind",
            m.analytics_dropped.clone(),
        );
        registry.register(
            "cpu_work_running",
            "Requests whose CPU work (search, routing) is running",
            m.cpu_running.clone(),
        );
        registry.register(
            "cpu_work_waiting",
            "Requests waiting for a CPU thread (sustained: the cores are saturated)",
            m.cpu_waiting.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts and times one request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// The exposition text, with gauges refreshed from `state`.
    pub fn render(&self, state: &AppState) -> Result<String, std::fmt::Error> {
        let stats = state.engine.stats();
        self.index_articles.set(stats.articles as i64);
        self.index_sections.set(stats.sections as i64);
        self.index_size_bytes.set(stats.size_bytes as i64);
        if let Some(ms) = stats
            .last_commit
            .as_deref()
            .and_then(crate::analytics::parse_rfc3339_ms)
        {
            self.index_last_commit.set(ms as f64 / 1000.0);
        }
        self.model_labels
            .set(state.router.as_ref().map_or(0, |r| r.labels().len() as i64));
        self.analytics_dropped.set(state.analytics.dropped() as i64);
        self.cpu_running.set(state.cpu.running() as i64);
        self.cpu_waiting.set(state.cpu.waiting() as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Prometheus metrics.
#[utoipa::path(
    get, path = "/metrics", tag = "service",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let metrics: Arc<Metrics> = state.metrics.clone();
    let text = tokio::task::spawn_blocking(move || metrics.render(&state))
        .await
        .map_err(ApiError::from_join)?
        .map_err(ApiError::internal)?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        text,
    )
        .into_response())
}

/// The route pattern a request matched, carried to [`track`] in the response.
#[derive(Clone)]
struct RouteTag(MatchedPath);

/// Route-layer middleware: tags the response with the matched route pattern.
pub async fn tag_route(request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(RouteTag(matched));
    }
    response
}

/// Outer middleware: counts and times every request, unknown routes as `unmatched`.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<RouteTag>()
        .map(|t| t.0.as_str().to_string());
    state.metrics.observe(
        method.as_str(),
        route.as_deref().unwrap_or("unmatched"),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
