//! The HTTP service: search, routing, articles, feedback and analytics under `/v1`, the help
//! widget, the demo help center and the agent console, `/healthz`, `/metrics`, `/openapi.json`.
//!
//! Owns: HTTP — shapes, limits, keys, CORS, logs, metrics. Must never: rank, analyze or infer
//! itself (that is `search/`, `analyzer/`, `route/`), or run that CPU work on the async workers
//! (requests' work goes to the [`cpu::CpuPool`], index writes and SQLite reads to
//! `spawn_blocking`). [`router`] builds the whole app from an [`AppState`] and is what tests
//! drive in-process with `tower::ServiceExt::oneshot`; [`serve`] binds it to a socket with
//! graceful shutdown. One file per resource, merged here.
//!
//! ```no_run
//! # async fn run(engine: kefu::search::SearchEngine) -> std::io::Result<()> {
//! use std::sync::Arc;
//! use kefu::{analytics::Analytics, server};
//! let state = server::AppState::new(Arc::new(engine), Arc::new(Analytics::open_in_memory().unwrap()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7700").await?;
//! server::serve(listener, state).await
//! # }
//! ```

pub mod analytics;
pub mod articles;
pub mod auth;
pub mod cpu;
pub mod error;
pub mod feedback;
pub mod metrics;
pub mod openapi;
pub mod route;
pub mod search;
pub mod static_files;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;
use utoipa::ToSchema;

use crate::analytics::Analytics;
use crate::route::{RouteError, TicketRouter};
use crate::search::SearchEngine;
use auth::ApiKeys;
use cpu::CpuPool;
use error::Json;
use metrics::Metrics;

/// Limits and options of the service (flags and `KEFU_*` variables fill it).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Largest request body (bytes); larger ones get 413.
    pub max_body_bytes: usize,
    /// Longest query (characters); longer ones get 400.
    pub max_query_chars: usize,
    /// Largest `limit` of a search.
    pub max_limit: usize,
    /// Largest `offset` of a search.
    pub max_offset: usize,
    /// Origins allowed to call the API from browsers; `None`: any origin may read.
    pub cors_origins: Option<Vec<String>>,
    /// Requests running longer than this are answered 408.
    pub request_timeout: Duration,
    /// Analytics older than this are pruned (hourly, while serving); `None`: kept forever.
    pub analytics_retention: Option<Duration>,
    /// Requests whose CPU work (search, suggest, assist, route, classify) runs at once; the
    /// others wait in arrival order ([`cpu::CpuPool`]).
    pub cpu_concurrency: usize,
}

impl Default for ServiceConfig {
    fn default() -> ServiceConfig {
        ServiceConfig {
            max_body_bytes: 2 * 1024 * 1024,
            max_query_chars: 1000,
            max_limit: 100,
            max_offset: 1000,
            cors_origins: None,
            request_timeout: Duration::from_secs(30),
            analytics_retention: Some(Duration::from_secs(90 * 86_400)),
            cpu_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<SearchEngine>,
    /// `None` when no routing model could be loaded (route endpoints answer 503).
    pub router: Option<Arc<TicketRouter>>,
    /// Why the model is missing, for the 503 message.
    pub router_error: Option<Arc<str>>,
    pub analytics: Arc<Analytics>,
    pub keys: Arc<ApiKeys>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<ServiceConfig>,
    /// Threads for requests' CPU work, `config.cpu_concurrency` of them.
    pub cpu: CpuPool,
}

impl AppState {
    /// A state with no routing model, no API keys and default limits.
    pub fn new(engine: Arc<SearchEngine>, analytics: Arc<Analytics>) -> AppState {
        let config = ServiceConfig::default();
        AppState {
            cpu: CpuPool::new(config.cpu_concurrency),
            engine,
            router: None,
            router_error: None,
            analytics,
            keys: Arc::new(ApiKeys::default()),
            metrics: Arc::new(Metrics::new()),
            config: Arc::new(config),
        }
    }

    /// Uses the loaded router, or remembers why loading failed.
    pub fn with_router(mut self, router: Result<TicketRouter, RouteError>) -> AppState {
        match router {
            Ok(router) => {
                self.router = Some(Arc::new(router));
                self.router_error = None;
            }
            Err(err) => {
                self.router = None;
                self.router_error = Some(err.to_string().into());
            }
        }
        self
    }

    pub fn with_keys(mut self, keys: ApiKeys) -> AppState {
        self.keys = Arc::new(keys);
        self
    }

    pub fn with_config(mut self, config: ServiceConfig) -> AppState {
        self.cpu = CpuPool::new(config.cpu_concurrency);
        self.config = Arc::new(config);
        self
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let reads = Router::new()
        .merge(search::routes())
        .merge(route::routes())
        .merge(articles::read_routes())
        .merge(feedback::routes())
        .merge(analytics::routes())
        .route_layer(from_fn_with_state(state.clone(), auth::require_search));
    let writes = articles::write_routes()
        .route_layer(from_fn_with_state(state.clone(), auth::require_admin));
    let open = Router::new()
        .route("/healthz", get(healthz))
        .merge(static_files::routes())
        .merge(metrics::routes())
        .merge(openapi::routes());
    Router::new()
        .merge(reads)
        .merge(writes)
        .merge(open)
        .route_layer(from_fn(metrics::tag_route))
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(CatchPanicLayer::new())
        .layer(from_fn(error::shape_errors))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(cors(&config))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// CORS: with configured origins, those may read and (with a key) write; without, any origin may
/// read — the widget is meant to be embedded — but no other site can send a key.
fn cors(config: &ServiceConfig) -> CorsLayer {
    let layer = CorsLayer::new()
        .max_age(Duration::from_secs(600))
        .expose_headers([header::CONTENT_TYPE]);
    match &config.cors_origins {
        None => layer
            .allow_origin(AllowOrigin::any())
            .allow_methods([Method::GET, Method::HEAD, Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::ACCEPT]),
        Some(origins) => {
            let origins: Vec<HeaderValue> = origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok())
                .collect();
            layer
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([
                    Method::GET,
                    Method::HEAD,
                    Method::POST,
                    Method::PUT,
                    Method::DELETE,
                ])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::ACCEPT,
                    header::AUTHORIZATION,
                    HeaderName::from_static("x-requested-with"),
                ])
        }
    }
}

/// `/healthz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when no routing model is loaded.
    pub status: String,
    pub articles: u64,
    /// Labels of the routing model (0: none loaded).
    pub model_labels: usize,
    pub version: String,
}

/// Liveness and readiness.
#[utoipa::path(
    get, path = "/healthz", tag = "service",
    responses((status = 200, description = "Serving", body = Health))
)]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let model_labels = state.router.as_ref().map_or(0, |r| r.labels().len());
    Json(Health {
        status: if state.router.is_some() {
            "ok"
        } else {
            "degraded"
        }
        .to_string(),
        articles: state.engine.num_articles(),
        model_labels,
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// Serves the app on `listener` until SIGTERM or Ctrl-C; in-flight requests finish, then the
/// analytics queue is written out.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let analytics = state.analytics.clone();
    let pruning = state.config.analytics_retention.map(|keep| {
        let analytics = analytics.clone();
        tokio::spawn(async move {
            let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every_hour.tick().await;
                let before = crate::analytics::now_ms() - keep.as_millis() as i64;
                analytics.prune_before(before);
            }
        })
    });
    let app = router(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    if let Some(task) = pruning {
        task.abort();
    }
    tokio::task::spawn_blocking(move || analytics.shutdown())
        .await
        .map_err(std::io::Error::other)?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
