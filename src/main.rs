//! The `kefu` binary: parses arguments, sets up logging, runs a library command, maps errors to
//! exit codes (2 on error, 0 on a closed pipe).

use std::io::ErrorKind;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kefu::cli::{route, search, serve};

/// mimalloc instead of the system allocator: indexing allocates a string per token, several
/// times over (analyzer, tantivy's copies of pre-tokenized text); glibc's malloc spent ≈ 20% of
/// `kefu index`'s CPU and held a third more memory. Built without transparent huge pages
/// (feature `no_thp`): with them, a few searches in a few thousand took 5–6 ms of CPU (the
/// kernel compacting memory for a huge page) against 2 ms at most without.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// kefu (客服): bilingual help-center search and ticket routing.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Index articles from folders/files (Markdown, JSONL, HTML); upsert by id.
    Index(search::IndexArgs),
    /// Delete articles by id.
    Delete(search::DeleteArgs),
    /// Search the index.
    Search(search::SearchArgs),
    /// Train a ticket router.
    Train(Box<route::TrainArgs>),
    /// Classify tickets.
    Classify(route::ClassifyArgs),
    /// Route JSONL tickets (stdin → stdout).
    Route(route::RouteArgs),
    /// Evaluate search or classification quality.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Run the HTTP service (API, help widget, agent console).
    Serve(serve::ServeArgs),
    /// Print search analytics (top queries, zero-result queries).
    Analytics(serve::AnalyticsArgs),
}

#[derive(Debug, Subcommand)]
enum EvalCommand {
    /// MRR@10, nDCG@10, Recall@10/100 and latency over a query set.
    Search(search::EvalSearchArgs),
    /// Accuracy, macro-F1, calibration and abstention over labelled data.
    Classify(route::EvalClassifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    kefu::logging::init();
    let result = match cli.command {
        Command::Index(args) => args.run(),
        Command::Delete(args) => args.run(),
        Command::Search(args) => args.run(),
        Command::Train(args) => args.run(),
        Command::Classify(args) => args.run(),
        Command::Route(args) => args.run(),
        Command::Eval(EvalCommand::Search(args)) => args.run(),
        Command::Eval(EvalCommand::Classify(args)) => args.run(),
        Command::Serve(args) => args.run(),
        Command::Analytics(args) => args.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kefu: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        let kind = match (
            e.downcast_ref::<std::io::Error>(),
            e.downcast_ref::<serde_json::Error>(),
        ) {
            (Some(io), _) => Some(io.kind()),
            (_, Some(json)) => json.io_error_kind(),
            _ => None,
        };
        kind == Some(ErrorKind::BrokenPipe)
    })
}
