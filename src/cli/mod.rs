//! Command-line parsing and wiring (clap). Holds no logic of its own: each subcommand hands its
//! parsed arguments to the module that does the work.
//!
//! Exit status: `serve` and `cluster` exit 0 after a clean shutdown (SIGTERM/SIGINT), 2 on bad
//! configuration, 1 on a runtime failure; the client commands document theirs in
//! [`client_cmds`].

pub mod client_cmds;
pub mod cluster;
pub mod debug_read;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ServeArgs};

#[derive(Parser, Debug)]
#[command(
    name = "tern",
    version,
    about = "A Dynamo-style distributed key-value store"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node (one executor per shard) until SIGTERM/SIGINT.
    Serve(Box<ServeArgs>),
    /// Read a key: every concurrent version and the causal context.
    Get(client_cmds::GetArgs),
    /// Write a value (pass the context from `get` to replace what you read).
    Put(client_cmds::PutArgs),
    /// Delete a key (a versioned tombstone).
    Delete(client_cmds::DeleteArgs),
    /// Start a local cluster of node processes on 127.0.0.1, 127.0.0.2, ...
    Cluster(cluster::ClusterArgs),
    /// Ask one replica (one node) for its own record of a key, without quorum or repair.
    DebugRead(debug_read::DebugReadArgs),
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Get(a) => client_cmds::run_get(a),
        Command::Put(a) => client_cmds::run_put(a),
        Command::Delete(a) => client_cmds::run_delete(a),
        Command::Cluster(a) => cluster::run(a),
        Command::DebugRead(a) => debug_read::run(a),
    }
}

fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::try_new(f),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    }
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn serve(args: &ServeArgs) -> ExitCode {
    let cfg = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cfg.log.as_deref());
    match crate::server::serve(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
