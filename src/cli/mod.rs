//! Command-line parsing and wiring (clap). Holds no logic of its own.

pub mod client_cmds;
