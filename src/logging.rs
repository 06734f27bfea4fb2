//! Structured logs to stderr with `tracing`: `KEFU_LOG` (or `RUST_LOG`) sets the filter,
//! `KEFU_LOG_FORMAT=json` switches to JSON lines for log shippers.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops.
pub fn init() {
    let filter = std::env::var("KEFU_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "kefu=info,warn".to_string());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        // Colour codes only for people: log files and collectors get plain text.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if std::env::var("KEFU_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
