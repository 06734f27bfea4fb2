//! kefu (客服): a bilingual (Chinese/English) help-center engine — search over support articles
//! and routing of support tickets — sharing one text analyzer.
//!
//! Map of the crate:
//! - `analyzer/`: the one analyzer (normalize, jieba, English words): "what are the terms of this text?"
//! - `article.rs`: articles and sections: "what does an article look like, where are its sections?"
//! - `ingest.rs`: Markdown/JSONL/HTML in: "which articles are in these files, and what was bad?"
//! - `search/`: the tantivy index, ranking, snippets: "which sections answer this question?"
//! - `eval/`: quality metrics over query sets: "how good is search on these judged queries?"
//! - `route/`: classifier, calibration, rules: "which queue and priority for this ticket?"
//! - `server/`: HTTP API, widget, console, analytics: "how do the users reach all this?"
//! - `analytics.rs`: the search log, clicks and votes (SQLite): "what do people ask, what finds nothing?"
//! - `cli/`: the subcommands behind `kefu`.

pub mod analytics;
pub mod analyzer;
pub mod article;
pub mod cli;
pub mod eval;
pub mod ingest;
pub mod logging;
pub mod route;
pub mod search;
pub mod server;
