//! `kefu train`, `kefu classify`, `kefu route`, `kefu eval classify`.
//! (routing engineer implements)

use std::path::PathBuf;

use clap::Args;

/// Train a router model.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub dev: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl TrainArgs {
    pub fn run(self) -> anyhow::Result<()> {
        todo!("routing engineer")
    }
}

/// Classify one ticket (argument) or JSONL tickets on stdin.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[arg(long, env = "KEFU_MODEL", default_value = "models/router")]
    pub model: PathBuf,
    #[arg(long)]
    pub json: bool,
    pub text: Option<String>,
}

impl ClassifyArgs {
    pub fn run(self) -> anyhow::Result<()> {
        todo!("routing engineer")
    }
}

/// Route JSONL tickets from stdin to JSONL decisions on stdout.
#[derive(Debug, Args)]
pub struct RouteArgs {
    #[arg(long, env = "KEFU_MODEL", default_value = "models/router")]
    pub model: PathBuf,
    #[arg(long, env = "KEFU_RULES")]
    pub rules: Option<PathBuf>,
}

impl RouteArgs {
    pub fn run(self) -> anyhow::Result<()> {
        todo!("routing engineer")
    }
}

/// Evaluate a model on labelled JSONL.
#[derive(Debug, Args)]
pub struct EvalClassifyArgs {
    #[arg(long, default_value = "models/router")]
    pub model: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub json: bool,
}

impl EvalClassifyArgs {
    pub fn run(self) -> anyhow::Result<()> {
        todo!("routing engineer")
    }
}
