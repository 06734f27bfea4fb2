//! `kefu eval search`: builds a temporary index of a document set, runs every judged query and
//! reports MRR@10, nDCG@10, Recall@10/100 per language and overall, latency percentiles and
//! indexing time.
//!
//! Owns: reading query files (`{"qid","query","lang","relevant":[ids]}` per line), the temporary
//! index and the report (human table or the fixed `--json` shape). Must never: leave the
//! temporary index behind, or let a query see its own id when `exclude_query_id` is set.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{mean, ndcg, percentile, recall, reciprocal_rank};
use crate::ingest::IngestProblem;
use crate::search::query::RankParams;
use crate::search::{SearchEngine, SearchError, SearchRequest};

/// Ranked ids fetched per query (Recall@100, plus one for a dropped query id).
const DEPTH: usize = 101;

/// What can go wrong in an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The query file is unreadable or has a malformed line.
    #[error("{path}:{line}: {message}")]
    Queries {
        path: String,
        line: usize,
        message: String,
    },
    /// The documents gave no article at all.
    #[error("no articles in {0}")]
    NoArticles(String),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// One judged query.
#[derive(Debug, Deserialize)]
pub struct JudgedQuery {
    pub qid: String,
    pub query: String,
    #[serde(default)]
    pub lang: Option<String>,
    pub relevant: Vec<String>,
}

/// Metrics averaged over a set of queries.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    pub queries: usize,
    #[serde(rename = "mrr@10")]
    pub mrr10: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg10: f64,
    #[serde(rename = "recall@10")]
    pub recall10: f64,
    #[serde(rename = "recall@100")]
    pub recall100: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// The report; its JSON form is the `--json` output of `kefu eval search`.
#[derive(Debug, Clone, Serialize)]
pub struct SearchEvalReport {
    #[serde(flatten)]
    pub overall: Metrics,
    pub by_lang: BTreeMap<String, Metrics>,
    /// Per query: a user's search (`SearchEngine::search`, top 10 with highlighted snippets).
    pub latency_ms: Latency,
    pub index_seconds: f64,
    /// Per query: ranking the top 101 ids, as the metrics need.
    #[serde(skip)]
    pub ranking_latency_ms: Latency,
    #[serde(skip)]
    pub articles: u64,
    #[serde(skip)]
    pub problems: Vec<IngestProblem>,
}

/// Reads a JSONL query file.
pub fn read_queries(path: &Path) -> Result<Vec<JudgedQuery>, EvalError> {
    let text = std::fs::read_to_string(path)?;
    let mut queries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let query = serde_json::from_str(line).map_err(|err| EvalError::Queries {
            path: path.display().to_string(),
            line: i + 1,
            message: err.to_string(),
        })?;
        queries.push(query);
    }
    Ok(queries)
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("kefu-eval-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Indexes `docs` into a temporary index and evaluates `queries` against it.
pub fn evaluate(
    docs: &Path,
    queries: &[JudgedQuery],
    exclude_query_id: bool,
    params: RankParams,
) -> Result<SearchEvalReport, EvalError> {
    let mut reports = evaluate_each(docs, queries, exclude_query_id, vec![params])?;
    Ok(reports.remove(0))
}

/// [`evaluate`] for several ranking settings over one index (tuning: only queries change).
pub fn evaluate_each(
    docs: &Path,
    queries: &[JudgedQuery],
    exclude_query_id: bool,
    settings: Vec<RankParams>,
) -> Result<Vec<SearchEvalReport>, EvalError> {
    let dir = TempDir::new()?;
    let started = Instant::now();
    let ingested = crate::ingest::read_paths(&[docs.to_path_buf()]);
    if ingested.articles.is_empty() {
        return Err(EvalError::NoArticles(docs.display().to_string()));
    }
    let mut engine = SearchEngine::open_or_create(&dir.0)?;
    engine.upsert(&ingested.articles)?;
    engine.wait_merges()?;
    let index_seconds = started.elapsed().as_secs_f64();
    let mut reports = Vec::new();
    for params in settings {
        engine.set_rank_params(params);
        let mut report = run_queries(&engine, queries, exclude_query_id)?;
        report.index_seconds = index_seconds;
        report.problems = ingested.problems.clone();
        reports.push(report);
    }
    Ok(reports)
}

/// Runs every query against an open index.
pub fn run_queries(
    engine: &SearchEngine,
    queries: &[JudgedQuery],
    exclude_query_id: bool,
) -> Result<SearchEvalReport, EvalError> {
    let mut per_query: Vec<(String, Metrics)> = Vec::with_capacity(queries.len());
    let mut latencies = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let ranked: Vec<String> = engine
            .rank_ids(&q.query, DEPTH)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        let mut ranked: Vec<String> = ranked
            .into_iter()
            .filter(|id| !(exclude_query_id && *id == q.qid))
            .collect();
        ranked.truncate(100);
        let relevant: HashSet<String> = q.relevant.iter().cloned().collect();
        per_query.push((
            q.lang.clone().unwrap_or_else(|| "?".into()),
            Metrics {
                queries: 1,
                mrr10: reciprocal_rank(&ranked, &relevant, 10),
                ndcg10: ndcg(&ranked, &relevant, 10),
                recall10: recall(&ranked, &relevant, 10),
                recall100: recall(&ranked, &relevant, 100),
            },
        ));
    }
    let mut interactive = Vec::with_capacity(queries.len());
    for q in queries {
        let request = SearchRequest {
            query: q.query.clone(),
            limit: 10,
            ..SearchRequest::default()
        };
        let t = Instant::now();
        let _ = engine.search(&request);
        interactive.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let overall = average(per_query.iter().map(|(_, m)| m));
    let mut langs: BTreeMap<String, Vec<&Metrics>> = BTreeMap::new();
    for (lang, m) in &per_query {
        langs.entry(lang.clone()).or_default().push(m);
    }
    let by_lang = langs
        .into_iter()
        .map(|(lang, ms)| (lang, average(ms.into_iter())))
        .collect();
    Ok(SearchEvalReport {
        overall,
        by_lang,
        latency_ms: latency(interactive),
        index_seconds: 0.0,
        ranking_latency_ms: latency(latencies),
        articles: engine.num_articles(),
        problems: Vec::new(),
    })
}

fn average<'a>(metrics: impl Iterator<Item = &'a Metrics>) -> Metrics {
    let all: Vec<&Metrics> = metrics.collect();
    let column = |f: fn(&Metrics) -> f64| mean(&all.iter().map(|m| f(m)).collect::<Vec<_>>());
    Metrics {
        queries: all.len(),
        mrr10: column(|m| m.mrr10),
        ndcg10: column(|m| m.ndcg10),
        recall10: column(|m| m.recall10),
        recall100: column(|m| m.recall100),
    }
}

fn latency(mut values: Vec<f64>) -> Latency {
    values.sort_by(f64::total_cmp);
    Latency {
        p50: percentile(&values, 0.5),
        p95: percentile(&values, 0.95),
        p99: percentile(&values, 0.99),
    }
}

impl SearchEvalReport {
    /// The human-readable table.
    pub fn render(&self) -> String {
        let mut out = format!(
            "indexed {} articles in {:.2} s ({} input problems)\n",
            self.articles,
            self.index_seconds,
            self.problems.len()
        );
        out.push_str(&format!(
            "{:<8} {:>7} {:>7} {:>8} {:>7} {:>8}\n",
            "", "queries", "MRR@10", "nDCG@10", "R@10", "R@100"
        ));
        let row = |name: &str, m: &Metrics| {
            format!(
                "{:<8} {:>7} {:>7.3} {:>8.3} {:>7.3} {:>8.3}\n",
                name, m.queries, m.mrr10, m.ndcg10, m.recall10, m.recall100
            )
        };
        out.push_str(&row("all", &self.overall));
        for (lang, m) in &self.by_lang {
            out.push_str(&row(lang, m));
        }
        let l = &self.latency_ms;
        out.push_str(&format!(
            "latency ms, search top 10 with snippets: p50 {:.3} p95 {:.3} p99 {:.3}\n",
            l.p50, l.p95, l.p99
        ));
        let l = &self.ranking_latency_ms;
        out.push_str(&format!(
            "latency ms, ranking top 101 ids: p50 {:.3} p95 {:.3} p99 {:.3}\n",
            l.p50, l.p95, l.p99
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_fixed() {
        let m = Metrics {
            queries: 2,
            mrr10: 0.5,
            ndcg10: 0.25,
            recall10: 1.0,
            recall100: 1.0,
        };
        let l = Latency {
            p50: 1.0,
            p95: 2.0,
            p99: 3.0,
        };
        let report = SearchEvalReport {
            overall: m.clone(),
            by_lang: [("zh".to_string(), m)].into(),
            latency_ms: l.clone(),
            index_seconds: 1.5,
            ranking_latency_ms: l,
            articles: 3,
            problems: Vec::new(),
        };
        let json = serde_json::to_value(&report).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut expected = vec![
            "queries",
            "mrr@10",
            "ndcg@10",
            "recall@10",
            "recall@100",
            "by_lang",
            "latency_ms",
            "index_seconds",
        ];
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(json["by_lang"]["zh"]["mrr@10"], 0.5);
        assert_eq!(json["latency_ms"]["p99"], 3.0);
    }
}
