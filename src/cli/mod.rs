//! Command-line front ends: one file per group of subcommands, each an `Args` struct (clap) with
//! a `run` method. `main.rs` only dispatches.

pub mod route;
pub mod search;
pub mod serve;
