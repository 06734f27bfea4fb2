//! `kefu serve` (the HTTP service) and `kefu analytics` (the search report on the terminal).
//!
//! `kefu serve` opens the index (building it from the bundled `kb/` when it is empty, so a fresh
//! machine shows a working help center), loads `<models>/router` with `<models>/routing.toml`
//! (serving search without it when it is missing), opens the analytics database
//! (`<index>/analytics.sqlite3` unless `--analytics-db`) and serves until SIGTERM or Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use include_dir::{Dir, include_dir};

use crate::analytics::{self, Analytics, ReportKind};
use crate::route::TicketRouter;
use crate::search::SearchEngine;
use crate::server::auth::ApiKeys;
use crate::server::{AppState, ServiceConfig};

/// The sample knowledge base, embedded so `kefu serve` needs no checkout.
static BUNDLED_KB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/kb");

/// Run the HTTP service.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, env = "KEFU_INDEX", default_value = "index")]
    pub index: PathBuf,
    #[arg(long, env = "KEFU_MODELS", default_value = "models")]
    pub models: PathBuf,
    #[arg(long, env = "KEFU_ADDR", default_value = "127.0.0.1:7700")]
    pub addr: String,
    /// Admin API keys (comma-separated), required by article writes.
    #[arg(long, env = "KEFU_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// File of admin API keys, one per line.
    #[arg(long, env = "KEFU_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Search-only API keys (comma-separated); when set, the read API needs a key too.
    #[arg(long, env = "KEFU_SEARCH_API_KEYS", hide_env_values = true)]
    pub search_api_keys: Option<String>,
    /// Browser origins allowed to call the API (comma-separated); unset or `*`: any may read.
    #[arg(long, env = "KEFU_CORS_ORIGINS")]
    pub cors_origins: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "KEFU_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest search query in characters.
    #[arg(long, env = "KEFU_MAX_QUERY_CHARS", default_value_t = 1000)]
    pub max_query_chars: usize,
    /// Requests running longer than this many seconds are answered 408.
    #[arg(long, env = "KEFU_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Analytics database (default: `<index>/analytics.sqlite3`).
    #[arg(long, env = "KEFU_ANALYTICS_DB")]
    pub analytics_db: Option<PathBuf>,
    /// Days of search analytics to keep (0: keep forever).
    #[arg(long, env = "KEFU_ANALYTICS_RETENTION_DAYS", default_value_t = 90)]
    pub analytics_retention_days: u64,
    /// Async worker threads (default: one per core).
    #[arg(long, env = "KEFU_WORKERS")]
    pub workers: Option<usize>,
    /// Threads that run requests' CPU work (search, suggest, assist, route, classify; default:
    /// one per core), taking requests in arrival order. The work is CPU-bound, so more threads
    /// than cores only time-slice requests against each other.
    #[arg(long, env = "KEFU_CPU_CONCURRENCY")]
    pub cpu_concurrency: Option<usize>,
    /// Threads for other blocking work: index writes, analytics reports, metrics (default: two
    /// per core). Each thread keeps its own allocator caches, so more threads cost memory.
    #[arg(long, env = "KEFU_BLOCKING_THREADS")]
    pub blocking_threads: Option<usize>,
}

impl ServeArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let started = Instant::now();
        let state = self.open_state()?;
        let mut runtime = tokio::runtime::Builder::new_multi_thread();
        runtime.enable_all();
        if let Some(workers) = self.workers {
            runtime.worker_threads(workers.max(1));
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        runtime.max_blocking_threads(self.blocking_threads.unwrap_or(2 * cores).max(1));
        let runtime = runtime.build().context("starting the async runtime")?;
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(&self.addr)
                .await
                .with_context(|| format!("binding {}", self.addr))?;
            let local = listener.local_addr()?;
            tracing::info!(
                addr = %local,
                articles = state.engine.num_articles(),
                model = state.router.is_some(),
                ready_ms = started.elapsed().as_millis() as u64,
                "kefu serving on http://{local}/"
            );
            crate::server::serve(listener, state).await?;
            anyhow::Ok(())
        })?;
        runtime.shutdown_timeout(Duration::from_secs(5));
        Ok(())
    }

    fn open_state(&self) -> anyhow::Result<AppState> {
        let keys = ApiKeys::from_config(
            self.api_keys.as_deref(),
            self.api_keys_file.as_deref(),
            self.search_api_keys.as_deref(),
        )?;
        if !keys.has_admin_keys() {
            tracing::info!("no API keys configured: article writes are disabled");
        }
        // The model loads while the index opens: both take a moment.
        let models = self.models.clone();
        let model = std::thread::spawn(move || {
            let started = Instant::now();
            (load_router(&models), started.elapsed())
        });
        let index_started = Instant::now();
        std::fs::create_dir_all(&self.index)
            .with_context(|| format!("creating {}", self.index.display()))?;
        let engine = SearchEngine::open_or_create(&self.index)
            .with_context(|| format!("opening the index in {}", self.index.display()))?;
        if engine.num_articles() == 0 {
            bootstrap(&engine)?;
        }
        let index_ms = index_started.elapsed().as_millis() as u64;
        let db = self
            .analytics_db
            .clone()
            .unwrap_or_else(|| analytics::default_path(&self.index));
        let analytics = Analytics::open(&db)
            .with_context(|| format!("opening the analytics database {}", db.display()))?;
        let (router, model_time) = model
            .join()
            .map_err(|_| anyhow::anyhow!("loading the routing model panicked"))?;
        tracing::info!(
            index_ms,
            model_ms = model_time.as_millis() as u64,
            "index and model loaded"
        );
        if let Err(err) = &router {
            tracing::warn!(error = %err, "no routing model: serving search only; route endpoints answer 503");
        }
        let cors_origins = self
            .cors_origins
            .as_deref()
            .map(|csv| {
                csv.split(',')
                    .map(|o| o.trim().to_string())
                    .filter(|o| !o.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|list| !list.is_empty() && !list.iter().any(|o| o == "*"));
        let defaults = ServiceConfig::default();
        let config = ServiceConfig {
            max_body_bytes: self.max_body_bytes,
            max_query_chars: self.max_query_chars,
            cors_origins,
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            analytics_retention: (self.analytics_retention_days > 0)
                .then(|| Duration::from_secs(self.analytics_retention_days * 86_400)),
            cpu_concurrency: self
                .cpu_concurrency
                .unwrap_or(defaults.cpu_concurrency)
                .max(1),
            ..defaults
        };
        Ok(AppState::new(Arc::new(engine), Arc::new(analytics))
            .with_router(router)
            .with_keys(keys)
            .with_config(config))
    }
}

/// `<models>/router` with `<models>/routing.toml` when it exists.
fn load_router(models: &Path) -> Result<TicketRouter, crate::route::RouteError> {
    let dir = models.join("router");
    if !dir.is_dir() {
        return Err(crate::route::RouteError::Model(format!(
            "no model directory {}",
            dir.display()
        )));
    }
    let rules = models.join("routing.toml");
    TicketRouter::load(&dir, rules.is_file().then_some(rules.as_path()))
}

/// Indexes the bundled `kb/` into an empty index, through the same ingester as `kefu index kb`.
fn bootstrap(engine: &SearchEngine) -> anyhow::Result<()> {
    let started = Instant::now();
    let tmp = std::env::temp_dir().join(format!("kefu-kb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = (|| {
        BUNDLED_KB
            .extract(&tmp)
            .with_context(|| format!("extracting the bundled kb/ into {}", tmp.display()))?;
        let ingested = crate::ingest::read_paths(std::slice::from_ref(&tmp));
        for problem in &ingested.problems {
            tracing::warn!(source = %problem.source, line = ?problem.line, "bundled kb: {}", problem.message);
        }
        let report = engine.upsert(&ingested.articles)?;
        tracing::info!(
            articles = report.upserted,
            ms = started.elapsed().as_millis() as u64,
            "empty index: built it from the bundled kb/"
        );
        anyhow::Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Print search analytics.
#[derive(Debug, Args)]
pub struct AnalyticsArgs {
    #[arg(long, env = "KEFU_INDEX", default_value = "index")]
    pub index: PathBuf,
    /// Analytics database (default: `<index>/analytics.sqlite3`).
    #[arg(long, env = "KEFU_ANALYTICS_DB")]
    pub analytics_db: Option<PathBuf>,
    /// Which report.
    #[arg(long, value_enum, default_value = "top")]
    pub kind: KindArg,
    /// Only activity since: an RFC 3339 time, or an age such as `24h`, `7d`.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// JSON (the same shape as `GET /v1/analytics/queries`) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--kind`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Top,
    ZeroResults,
}

/// `2026-01-31T00:00:00Z`, or `90m`, `24h`, `7d` ago.
fn parse_since(text: &str, now_ms: i64) -> Option<i64> {
    if let Some(ms) = analytics::parse_rfc3339_ms(text) {
        return Some(ms);
    }
    let unit_ms = match text.chars().last()? {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return None,
    };
    let n: i64 = text[..text.len() - 1].parse().ok()?;
    Some(now_ms - n * unit_ms)
}

impl AnalyticsArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let db = self
            .analytics_db
            .clone()
            .unwrap_or_else(|| analytics::default_path(&self.index));
        anyhow::ensure!(
            analytics::exists(&db),
            "no analytics database at {} (it is created by `kefu serve`)",
            db.display()
        );
        let since_ms = match self.since.as_deref() {
            None => 0,
            Some(text) => parse_since(text, analytics::now_ms()).with_context(|| {
                format!("--since {text:?}: expected an RFC 3339 time or an age like 24h, 7d")
            })?,
        };
        let kind = match self.kind {
            KindArg::Top => ReportKind::Top,
            KindArg::ZeroResults => ReportKind::ZeroResults,
        };
        let store = Analytics::open(&db)?;
        let queries = store.queries(kind, since_ms, self.limit)?;
        let mut out = std::io::stdout().lock();
        use std::io::Write;
        if self.json {
            let report = serde_json::json!({
                "kind": kind,
                "since": self.since,
                "queries": queries,
            });
            writeln!(out, "{report}")?;
            return Ok(());
        }
        writeln!(
            out,
            "{:>7} {:>6} {:>7} {:>11}  {:<24}  query",
            match kind {
                ReportKind::Top => "count",
                ReportKind::ZeroResults => "zero",
            },
            "clicks",
            "helpful",
            "not_helpful",
            "last seen"
        )?;
        for q in &queries {
            writeln!(
                out,
                "{:>7} {:>6} {:>7} {:>11}  {:<24}  {}",
                q.count, q.clicks, q.helpful, q.not_helpful, q.last_seen, q.query
            )?;
        }
        if queries.is_empty() {
            writeln!(out, "(no queries recorded in this period)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_and_ages() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_since("7d", now), Some(now - 7 * 86_400_000));
        assert_eq!(parse_since("90m", now), Some(now - 90 * 60_000));
        assert_eq!(
            parse_since("2026-01-02T00:00:00Z", now),
            analytics::parse_rfc3339_ms("2026-01-02T00:00:00Z")
        );
        assert_eq!(parse_since("soon", now), None);
        assert_eq!(parse_since("", now), None);
    }

    #[test]
    fn bundled_kb_is_embedded() {
        assert!(BUNDLED_KB.get_file("faq.jsonl").is_some());
        assert!(BUNDLED_KB.dirs().count() >= 5);
    }
}
