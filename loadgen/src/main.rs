//! `loadgen`: the bundled load generator (DESIGN.md part 9).
//!
//! Drives tern (flatbuffers protocol) or Redis (RESP) with closed-loop or open-loop load from
//! one pinned glommio executor per core, and reports latency per op type from HdrHistograms
//! (text, JSON, `.hgrm`, SVG plot). `loadgen plot` merges JSON results into one plot.
//! This file only parses arguments and wires the modules together.

mod args;
mod conn;
mod dist;
mod driver;
mod hgrm;
mod plot;
mod report;
mod resp;
mod runner;
mod schedule;
mod stats;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let result = match cli.cmd {
        Some(args::Cmd::Plot(p)) => args::run_plot(&p),
        Some(args::Cmd::Table(t)) => args::run_table(&t),
        None => args::run_load(&cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
