//! `kefu serve`, `kefu analytics`.
//! (service engineer implements)

use std::path::PathBuf;

use clap::Args;

/// Run the HTTP service.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, env = "KEFU_INDEX", default_value = "index")]
    pub index: PathBuf,
    #[arg(long, env = "KEFU_MODELS", default_value = "models")]
    pub models: PathBuf,
    #[arg(long, env = "KEFU_ADDR", default_value = "127.0.0.1:7700")]
    pub addr: String,
}

impl ServeArgs {
    pub fn run(self) -> anyhow::Result<()> {
        todo!("service engineer")
    }
}

/// Print search analytics.
#[derive(Debug, Args)]
pub struct AnalyticsArgs {
    #[arg(long, env = "KEFU_INDEX", default_value = "index")]
    pub index: PathBuf,
}

impl AnalyticsArgs {
    pub fn run(self) -> anyhow::Result<()> {
        todo!("service engineer")
    }
}
