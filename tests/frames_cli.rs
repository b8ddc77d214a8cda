//! The client CLI commands against an in-process fake node: output format, context round trip
//! through its printed text, value sources and the documented exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clap::Parser;
use support::fake_node::{start, HelloMode};
use tern::cli::client_cmds::*;

#[derive(Parser, Debug)]
enum Cmd {
    Get(GetArgs),
    Put(PutArgs),
    Delete(DeleteArgs),
}

struct Run {
    code: u8,
    out: String,
    err: String,
}

fn run(args: &[&str], stdin: &[u8]) -> Run {
    let mut argv = vec!["tern"];
    argv.extend_from_slice(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = match Cmd::try_parse_from(argv).unwrap() {
        Cmd::Get(a) => exec_get(&a, &mut out, &mut err),
        Cmd::Put(a) => exec_put(&a, &mut &stdin[..], &mut out, &mut err),
        Cmd::Delete(a) => exec_delete(&a, &mut out, &mut err),
    };
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn context_of(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("context: "))
        .unwrap()
        .to_owned()
}

#[test]
fn put_get_delete_through_the_cli() {
    let addr = start(HelloMode::Normal);
    let a = ["--addr", addr.as_str()];

    let r = run(&["get", a[0], a[1], "k"], b"");
    assert_eq!(r.code, EXIT_NOT_FOUND, "{}", r.err);

    let r = run(&["put", a[0], a[1], "--w", "quorum", "k", "hello"], b"");
    assert_eq!(r.code, EXIT_OK, "{}", r.err);

    let r = run(&["get", a[0], a[1], "--r", "one", "k"], b"");
    assert_eq!(r.code, EXIT_OK, "{}", r.err);
    assert!(r.out.contains("siblings: 1"), "{}", r.out);
    assert!(r.out.contains("sibling 1: dot=1:1 vv={1:1}"), "{}", r.out);
    assert!(r.out.contains("value (5 bytes): hello"), "{}", r.out);
    let ctx = context_of(&r.out);

    // The printed context is accepted back, and the value can come from stdin.
    let r = run(
        &["put", a[0], a[1], "--context", &ctx, "k"],
        b"\x00\x01binary",
    );
    assert_eq!(r.code, EXIT_OK, "{}", r.err);
    let r = run(&["get", a[0], a[1], "k"], b"");
    assert!(r.out.contains("hex:000162696e617279"), "{}", r.out);

    let r = run(&["delete", a[0], a[1], "--context", &ctx, "k"], b"");
    assert_eq!(r.code, EXIT_OK, "{}", r.err);
    assert_eq!(run(&["get", a[0], a[1], "k"], b"").code, EXIT_NOT_FOUND);
}

#[test]
fn value_file_and_raw_output() {
    let addr = start(HelloMode::Normal);
    let path = std::env::temp_dir().join(format!("tern-cli-value-{}", std::process::id()));
    std::fs::write(&path, b"from a file").unwrap();
    let r = run(
        &[
            "put",
            "--addr",
            &addr,
            "--value-file",
            path.to_str().unwrap(),
            "f",
        ],
        b"",
    );
    assert_eq!(r.code, EXIT_OK, "{}", r.err);
    let r = run(&["get", "--addr", &addr, "--raw", "f"], b"");
    assert_eq!(r.out, "from a file");
    let _ = std::fs::remove_file(&path);

    let r = run(
        &[
            "put",
            "--addr",
            &addr,
            "--value-file",
            "/nonexistent/x",
            "f",
        ],
        b"",
    );
    assert_eq!(r.code, EXIT_BAD_INPUT);
    assert!(r.err.contains("/nonexistent/x"), "{}", r.err);
}

#[test]
fn exit_codes_for_failures() {
    let addr = start(HelloMode::Normal);
    let r = run(&["put", "--addr", &addr, "quorum-fail", "v"], b"");
    assert_eq!(r.code, EXIT_UNAVAILABLE);
    assert!(r.err.contains("1 of 2 replicas"), "{}", r.err);

    let big = vec![b'x'; (1 << 20) + 1];
    let r = run(&["put", "--addr", &addr, "k"], &big);
    assert_eq!(r.code, EXIT_BAD_INPUT, "{}", r.err);
    assert!(r.err.contains("exceeds the limit"), "{}", r.err);

    let r = run(&["put", "--addr", &addr, "--context", "zz!", "k", "v"], b"");
    assert_eq!(r.code, EXIT_BAD_INPUT);

    let refuse = start(HelloMode::RefuseVersion);
    let r = run(&["get", "--addr", &refuse, "k"], b"");
    assert_eq!(r.code, EXIT_OTHER, "{}", r.err);
    assert!(r.err.contains("unsupported protocol version"), "{}", r.err);
}
