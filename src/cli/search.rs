//! `kefu index`, `kefu delete`, `kefu search`, `kefu eval search`.
//! (search engineer implements)

use std::path::PathBuf;

use clap::Args;

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
        todo!("search engineer")
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
        todo!("search engineer")
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
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
    #[arg(required = true)]
    pub query: Vec<String>,
}

impl SearchArgs {
    pub fn run(self) -> anyhow::Result<()> {
        todo!("search engineer")
    }
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
}

impl EvalSearchArgs {
    pub fn run(self) -> anyhow::Result<()> {
        todo!("search engineer")
    }
}
