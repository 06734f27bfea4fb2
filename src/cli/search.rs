//! `kefu index`, `kefu delete`, `kefu search`, `kefu eval search`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::eval::search::{evaluate_each, read_queries};
use crate::search::query::RankParams;
use crate::search::{SearchEngine, SearchRequest};

/// Index articles (upsert by id).
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Index directory.
    #[arg(long, env = "KEFU_INDEX", default_value = "index")]
    pub index: PathBuf,
    /// Folders or files: Markdown, .jsonl articles, .html.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

impl IndexArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let started = Instant::now();
        let engine = SearchEngine::open_or_create(&self.index)
            .with_context(|| format!("opening index {}", self.index.display()))?;
        let ingested = crate::ingest::read_paths(&self.paths);
        for problem in &ingested.problems {
            match problem.line {
                Some(line) => eprintln!("skipped {}:{line}: {}", problem.source, problem.message),
                None => eprintln!("skipped {}: {}", problem.source, problem.message),
            }
        }
        // Drawn on stderr only when it is a terminal.
        let bar = ProgressBar::new(ingested.articles.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} articles, {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let report = engine
            .upsert_with_progress(&ingested.articles, &|n| bar.inc(n as u64))
            .context("indexing")?;
        engine.wait_merges()?;
        bar.finish_and_clear();
        let stats = engine.stats();
        let sections: usize = ingested.articles.iter().map(|a| a.sections().len()).sum();
        println!(
            "indexed {} articles ({} sections) in {:.2} s; {} problems; index now holds {} articles in {}",
            report.upserted,
            sections,
            started.elapsed().as_secs_f64(),
            ingested.problems.len(),
            stats.articles,
            self.index.display()
        );
        Ok(())
    }
}

/// Delete articles by id.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[arg(long, env = "KEFU_INDEX", default_value = "index")]
    pub index: PathBuf,
    #[arg(required = true)]
    pub ids: Vec<String>,
}

impl DeleteArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let engine = SearchEngine::open_or_create(&self.index)
            .with_context(|| format!("opening index {}", self.index.display()))?;
        let deleted = engine.delete(&self.ids)?;
        engine.wait_merges()?;
        println!("deleted {deleted} of {} articles", self.ids.len());
        Ok(())
    }
}

/// Search the index.
#[derive(Debug, Args)]
pub struct SearchArgs {
    #[arg(long, env = "KEFU_INDEX", default_value = "index")]
    pub index: PathBuf,
    #[arg(long)]
    pub lang: Option<String>,
    #[arg(long)]
    pub product: Option<String>,
    /// Only articles of this support category (front matter `category:`).
    #[arg(long)]
    pub category: Option<String>,
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
    #[arg(required = true)]
    pub query: Vec<String>,
}

impl SearchArgs {
    pub fn run(self) -> anyhow::Result<()> {
        if !self.index.join("meta.json").exists() {
            anyhow::bail!(
                "no index in {}: build one with `kefu index --index {} kb/`",
                self.index.display(),
                self.index.display()
            );
        }
        let engine = SearchEngine::open_or_create(&self.index)
            .with_context(|| format!("opening index {}", self.index.display()))?;
        let request = SearchRequest {
            query: self.query.join(" "),
            lang: self.lang,
            product: self.product,
            category: self.category,
            limit: self.limit,
            offset: 0,
        };
        let response = engine.search(&request)?;
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut out, &response.hits)?;
            writeln!(out)?;
            return Ok(());
        }
        let bold = std::io::stdout().is_terminal();
        writeln!(
            out,
            "{}{} matching articles ({:.1} ms)",
            response.total,
            if response.total_is_lower_bound {
                "+"
            } else {
                ""
            },
            response.took_ms
        )?;
        if response.relaxed {
            writeln!(
                out,
                "no article has the quoted phrase as written: these have its words"
            )?;
        }
        for (i, hit) in response.hits.iter().enumerate() {
            let link = match &hit.anchor {
                Some(anchor) => format!("{}#{anchor}", hit.id),
                None => hit.id.clone(),
            };
            writeln!(out, "\n{:>2}. {}  [{:.2}]", i + 1, hit.title, hit.score)?;
            writeln!(out, "    {link}")?;
            if let Some(section) = &hit.section {
                writeln!(out, "    § {section}")?;
            }
            writeln!(out, "    {}", terminal_snippet(&hit.snippet, bold))?;
        }
        Ok(())
    }
}

/// `<em>` as bold (terminal) or `[...]` (pipe), entities decoded.
fn terminal_snippet(snippet: &str, bold: bool) -> String {
    let (open, close) = if bold {
        ("\x1b[1m", "\x1b[0m")
    } else {
        ("[", "]")
    };
    snippet
        .replace("<em>", open)
        .replace("</em>", close)
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Evaluate search quality on a query set.
#[derive(Debug, Args)]
pub struct EvalSearchArgs {
    #[arg(long)]
    pub docs: PathBuf,
    #[arg(long)]
    pub queries: PathBuf,
    #[arg(long)]
    pub exclude_query_id: bool,
    #[arg(long)]
    pub json: bool,
    /// Ranking weight overrides for tuning, `key=value,...` (see `RankParams`); settings
    /// separated by `;` are evaluated one after the other over the same index.
    #[arg(long, hide = true, default_value = "")]
    pub params: String,
    /// A synonyms file used instead of the compiled-in `models/synonyms.txt` (tuning).
    #[arg(long, hide = true)]
    pub synonyms: Option<PathBuf>,
    /// Question words (whitespace-separated) used instead of the built-in list (tuning).
    #[arg(long, hide = true)]
    pub question_words: Option<PathBuf>,
}

impl EvalSearchArgs {
    pub fn run(self) -> anyhow::Result<()> {
        // `;` separates settings evaluated one after the other over the same index.
        let settings = self
            .params
            .split(';')
            .map(|spec| RankParams::default().with_overrides(spec))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        let specs: Vec<&str> = self.params.split(';').collect();
        if let Some(path) = &self.synonyms {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            if !crate::search::query::use_synonyms(&text) {
                anyhow::bail!("synonyms were already loaded");
            }
        }
        if let Some(path) = &self.question_words {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            if !crate::search::query::use_question_words(&text) {
                anyhow::bail!("question words were already loaded");
            }
        }
        let queries = read_queries(&self.queries)?;
        let reports = evaluate_each(&self.docs, &queries, self.exclude_query_id, settings)?;
        for (spec, report) in specs.iter().zip(&reports) {
            if self.json {
                println!("{}", serde_json::to_string(report)?);
            } else {
                if reports.len() > 1 {
                    println!("== params: {spec}");
                }
                print!("{}", report.render());
            }
        }
        Ok(())
    }
}
