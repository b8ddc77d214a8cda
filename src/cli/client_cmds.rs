//! The client commands of the `tern` binary: `get`, `put`, `delete`. Parsing (clap `Args`) and
//! printing only; the work is done by [`crate::client::Client`]. The server side wires these
//! structs into the top-level command enum.
//!
//! Exit codes (stable, for scripts):
//! - 0: success
//! - 1: key not found (or deleted: every version is a tombstone)
//! - 2: bad input or usage (oversize key/value, bad context, unreadable value file, bad flags)
//! - 3: quorum not met, timeout, node unavailable, overloaded or unreachable: a retry or another
//!   node may succeed
//! - 4: any other error (protocol or handshake failure, internal error on the node)
//!
//! `get` prints every sibling (tombstones included) with its dot and version vector, then the
//! causal context as hex; pass that text back with `--context` on the next `put`/`delete`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::client::{Client, ClientConfig, ClientError, Context, GetResult, OpOptions};
use crate::net::Quorum;

/// Success.
pub const EXIT_OK: u8 = 0;
/// The key has no live version.
pub const EXIT_NOT_FOUND: u8 = 1;
/// Bad input or usage.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Quorum failure, timeout or unavailability: retryable.
pub const EXIT_UNAVAILABLE: u8 = 3;
/// Any other error.
pub const EXIT_OTHER: u8 = 4;

fn parse_quorum(s: &str) -> Result<Quorum, String> {
    s.parse()
}

/// Connection and request options shared by the client commands.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnArgs {
    /// Any node of the cluster (it coordinates the request).
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub addr: String,
    /// Fail fast instead of using stand-in replicas when preferred ones are down.
    #[arg(long)]
    pub strict: bool,
    /// Node-side deadline for the request (0: the node's default).
    #[arg(long, default_value_t = 0)]
    pub timeout_ms: u32,
    /// Bound on connecting and the protocol hello.
    #[arg(long, default_value_t = 3000)]
    pub connect_timeout_ms: u64,
}

impl ConnArgs {
    fn config(&self, op: OpOptions) -> ClientConfig {
        let base = ClientConfig::default();
        // Wait for the answer a little longer than the node's own deadline, so the node's
        // typed timeout (with replica counts) arrives before ours.
        let response = if self.timeout_ms == 0 {
            base.response_timeout
        } else {
            Duration::from_millis(u64::from(self.timeout_ms) + 2000)
        };
        ClientConfig {
            connect_timeout: Duration::from_millis(self.connect_timeout_ms.max(1)),
            response_timeout: response,
            op: OpOptions {
                strict: self.strict,
                timeout_ms: self.timeout_ms,
                ..op
            },
            ..base
        }
    }
}

/// `tern get KEY`: print every version of KEY and the causal context.
#[derive(clap::Args, Debug, Clone)]
pub struct GetArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Read quorum: a number, or one|quorum|all (default: the node's).
    #[arg(long, value_parser = parse_quorum, default_value = "default")]
    pub r: Quorum,
    /// Write the value's raw bytes to stdout (only when exactly one live version exists).
    #[arg(long)]
    pub raw: bool,
    /// The key (UTF-8 text).
    pub key: String,
}

/// `tern put KEY [VALUE]`: write a value (from VALUE, `--value-file`, or stdin).
#[derive(clap::Args, Debug, Clone)]
pub struct PutArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Write quorum: a number, or one|quorum|all (default: the node's).
    #[arg(long, value_parser = parse_quorum, default_value = "default")]
    pub w: Quorum,
    /// Causal context printed by `get` (hex or base64); omit for a blind write.
    #[arg(long)]
    pub context: Option<String>,
    /// Read the value from this file (`-` for stdin).
    #[arg(long, conflicts_with = "value")]
    pub value_file: Option<PathBuf>,
    /// The key (UTF-8 text).
    pub key: String,
    /// The value; without it and without `--value-file`, stdin is read.
    pub value: Option<String>,
}

/// `tern delete KEY`: write a tombstone.
#[derive(clap::Args, Debug, Clone)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Write quorum: a number, or one|quorum|all (default: the node's).
    #[arg(long, value_parser = parse_quorum, default_value = "default")]
    pub w: Quorum,
    /// Causal context printed by `get` (hex or base64).
    #[arg(long)]
    pub context: Option<String>,
    /// The key (UTF-8 text).
    pub key: String,
}

pub fn run_get(args: GetArgs) -> ExitCode {
    ExitCode::from(exec_get(
        &args,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    ))
}

pub fn run_put(args: PutArgs) -> ExitCode {
    let stdin = std::io::stdin();
    ExitCode::from(exec_put(
        &args,
        &mut stdin.lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    ))
}

pub fn run_delete(args: DeleteArgs) -> ExitCode {
    ExitCode::from(exec_delete(
        &args,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    ))
}

/// The exit code for a failed request.
pub fn exit_code(e: &ClientError) -> u8 {
    match e {
        ClientError::NotFound(_) => EXIT_NOT_FOUND,
        e if e.is_bad_input() => EXIT_BAD_INPUT,
        ClientError::QuorumFailed { .. }
        | ClientError::Timeout { .. }
        | ClientError::ResponseTimeout { .. }
        | ClientError::Unavailable(_)
        | ClientError::Overloaded(_)
        | ClientError::Connect { .. }
        | ClientError::Closed(_) => EXIT_UNAVAILABLE,
        _ => EXIT_OTHER,
    }
}

fn fail(err: &mut dyn Write, e: &ClientError) -> u8 {
    let _ = writeln!(err, "error: {e}");
    exit_code(e)
}

/// `get` with explicit output streams (for tests); returns the exit code.
pub fn exec_get(args: &GetArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let cfg = args.conn.config(OpOptions {
        r: args.r,
        ..OpOptions::default()
    });
    let result =
        Client::connect(&args.conn.addr, cfg).and_then(|mut c| c.get(args.key.as_bytes().to_vec()));
    match result {
        Err(e) => fail(err, &e),
        Ok(None) => {
            let _ = writeln!(err, "not found: {:?}", args.key);
            EXIT_NOT_FOUND
        }
        Ok(Some(g)) if args.raw => {
            let live: Vec<_> = g.live().collect();
            match live.as_slice() {
                [one] => {
                    let _ = out.write_all(&one.value);
                    EXIT_OK
                }
                [] => {
                    let _ = writeln!(err, "not found: {:?} is deleted", args.key);
                    EXIT_NOT_FOUND
                }
                many => {
                    let _ = writeln!(
                        err,
                        "{} concurrent versions: run without --raw to see them all",
                        many.len()
                    );
                    EXIT_OTHER
                }
            }
        }
        Ok(Some(g)) => {
            let _ = write_get(out, &g);
            if g.is_deleted() {
                let _ = writeln!(
                    err,
                    "not found: {:?} is deleted (context printed for a later put)",
                    args.key
                );
                EXIT_NOT_FOUND
            } else {
                EXIT_OK
            }
        }
    }
}

/// Prints siblings and context in the documented text format.
pub fn write_get(out: &mut dyn Write, g: &GetResult) -> std::io::Result<()> {
    writeln!(out, "siblings: {}", g.siblings.len())?;
    for (i, s) in g.siblings.iter().enumerate() {
        let vv: Vec<String> =
            s.vv.iter()
                .map(|e| format!("{}:{}", e.node, e.counter))
                .collect();
        writeln!(
            out,
            "sibling {}: dot={}:{} vv={{{}}}{}",
            i + 1,
            s.dot.node,
            s.dot.counter,
            vv.join(", "),
            if s.tombstone { " tombstone" } else { "" }
        )?;
        if !s.tombstone {
            writeln!(
                out,
                "  value ({} bytes): {}",
                s.value.len(),
                render_value(&s.value)
            )?;
        }
    }
    writeln!(out, "context: {}", g.context.to_hex())
}

/// Printable UTF-8 as is, anything else as `hex:...`.
pub fn render_value(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\t') => s.to_owned(),
        _ => format!("hex:{}", Context::from_bytes(v.to_vec()).to_hex()),
    }
}

fn parse_context(text: Option<&str>, err: &mut dyn Write) -> Result<Option<Context>, u8> {
    match text.map(Context::parse) {
        None => Ok(None),
        Some(Ok(c)) => Ok(Some(c)),
        Some(Err(e)) => {
            let _ = writeln!(err, "error: --context: {e}");
            Err(EXIT_BAD_INPUT)
        }
    }
}

/// Reads at most `max + 1` bytes so an oversize value is detected without reading it all.
/// The value to put: `--value`, or up to `max` bytes of `--value-file` / stdin. A longer input is
/// refused without reading it all (and without claiming a size it did not measure).
fn read_value(args: &PutArgs, stdin: &mut dyn Read, max: usize) -> Result<Vec<u8>, String> {
    let too_large = || {
        format!(
            "value is larger than {max} bytes, the largest frame the node accepts; \
             start the nodes with a larger --max-value-bytes to store larger values"
        )
    };
    if let Some(v) = &args.value {
        if v.len() > max {
            return Err(too_large());
        }
        return Ok(v.as_bytes().to_vec());
    }
    let mut buf = Vec::new();
    let limit = (max as u64).saturating_add(1);
    match &args.value_file {
        Some(p) if p.as_os_str() != "-" => {
            let f =
                std::fs::File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
            f.take(limit)
                .read_to_end(&mut buf)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        }
        _ => {
            stdin
                .take(limit)
                .read_to_end(&mut buf)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
        }
    }
    if buf.len() > max {
        return Err(too_large());
    }
    Ok(buf)
}

/// `put` with explicit streams (for tests); returns the exit code.
pub fn exec_put(
    args: &PutArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let cfg = args.conn.config(OpOptions {
        w: args.w,
        ..OpOptions::default()
    });
    let ctx = match parse_context(args.context.as_deref(), err) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Connect first: how large a value may be is the node's to say (its hello), not ours.
    let mut client = match Client::connect(&args.conn.addr, cfg) {
        Ok(c) => c,
        Err(e) => return fail(err, &e),
    };
    let max = client.limits().max_value_len;
    let value = match read_value(args, stdin, max) {
        Ok(v) => v,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    match client.put(args.key.as_bytes().to_vec(), value, ctx.as_ref()) {
        Ok(ctx) => {
            let _ = writeln!(out, "context: {}", ctx.to_hex());
            EXIT_OK
        }
        Err(e) => fail(err, &e),
    }
}

/// `delete` with explicit streams (for tests); returns the exit code.
pub fn exec_delete(args: &DeleteArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let cfg = args.conn.config(OpOptions {
        w: args.w,
        ..OpOptions::default()
    });
    let ctx = match parse_context(args.context.as_deref(), err) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let r = Client::connect(&args.conn.addr, cfg)
        .and_then(|mut c| c.delete(args.key.as_bytes().to_vec(), ctx.as_ref()));
    match r {
        Ok(ctx) => {
            let _ = writeln!(out, "context: {}", ctx.to_hex());
            EXIT_OK
        }
        Err(e) => fail(err, &e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    enum Cmd {
        Get(GetArgs),
        Put(PutArgs),
        Delete(DeleteArgs),
    }

    #[test]
    fn parses_quorums_and_defaults() {
        let Cmd::Get(g) =
            Cmd::try_parse_from(["t", "get", "--r", "QUORUM", "--strict", "k"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(g.r, Quorum::Majority);
        assert!(g.conn.strict);
        assert_eq!(g.conn.addr, "127.0.0.1:7700");
        let Cmd::Put(p) = Cmd::try_parse_from(["t", "put", "--w", "2", "k", "v"]).unwrap() else {
            panic!()
        };
        assert_eq!(p.w, Quorum::N(2));
        assert_eq!(p.value.as_deref(), Some("v"));
        let Cmd::Delete(d) = Cmd::try_parse_from(["t", "delete", "k"]).unwrap() else {
            panic!()
        };
        assert_eq!(d.w, Quorum::Default);
        assert!(Cmd::try_parse_from(["t", "get", "--r", "most", "k"]).is_err());
        assert!(Cmd::try_parse_from(["t", "put", "--value-file", "f", "k", "v"]).is_err());
    }

    #[test]
    fn exit_codes_follow_the_documented_table() {
        assert_eq!(
            exit_code(&ClientError::NotFound(String::new())),
            EXIT_NOT_FOUND
        );
        assert_eq!(
            exit_code(&ClientError::KeyTooLarge(String::new())),
            EXIT_BAD_INPUT
        );
        let q = ClientError::QuorumFailed {
            message: String::new(),
            acked: 1,
            needed: 2,
            failed: vec![],
        };
        assert_eq!(exit_code(&q), EXIT_UNAVAILABLE);
        assert_eq!(
            exit_code(&ClientError::ResponseTimeout { timeout_ms: 1 }),
            EXIT_UNAVAILABLE
        );
        assert_eq!(exit_code(&ClientError::Internal(String::new())), EXIT_OTHER);
    }

    #[test]
    fn values_render_as_text_or_hex() {
        assert_eq!(render_value(b"hello"), "hello");
        assert_eq!(render_value(&[0, 255]), "hex:00ff");
        assert_eq!(render_value(b"a\nb"), "hex:610a62");
    }
}
