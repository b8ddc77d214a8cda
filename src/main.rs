//! The `tern` binary: parses the command line and hands off to `tern::cli`.
fn main() -> std::process::ExitCode {
    tern::cli::main()
}
