//! `tern cluster`: starts K node processes (`tern serve`) on 127.0.0.1, 127.0.0.2, ... with data
//! under `<dir>/node<i>`, prints how to reach them, and stops them all (by PID, SIGTERM, then
//! SIGKILL after a grace period) on SIGINT/SIGTERM or when any of them exits.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u8,
    /// Client port of every node (each node has its own 127.0.0.x address).
    #[arg(long, default_value_t = crate::config::DEFAULT_PORT)]
    pub port: u16,
    /// Shards per node.
    #[arg(long, default_value_t = 1)]
    pub shards: u16,
    /// Replication factor N [default: min(3, nodes)].
    #[arg(long)]
    pub replication: Option<usize>,
    /// Put node i in zone `z<i % zones>` (0: no zones).
    #[arg(long, default_value_t = 0)]
    pub zones: u8,
    /// Parent directory of the nodes' data directories.
    #[arg(long, default_value = "./tern-cluster")]
    pub dir: PathBuf,
    /// Extra flags passed to every `tern serve` (e.g. `--extra=--sync=periodic:10`).
    #[arg(long, allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

/// The `--nodes` list of a local cluster.
pub fn node_list(a: &ClusterArgs) -> Vec<String> {
    (1..=a.nodes)
        .map(|i| {
            let mut e = format!("{i}@127.0.0.{i}:{}/{}", a.port, a.shards);
            if a.zones > 0 {
                e.push_str(&format!("#z{}", (i - 1) % a.zones));
            }
            e
        })
        .collect()
}

#[expect(
    clippy::print_stdout,
    reason = "an interactive command telling the user how to connect"
)]
pub fn run(a: ClusterArgs) -> ExitCode {
    if a.nodes == 0 || a.nodes > 254 {
        eprintln!("error: --nodes must be 1..=254");
        return ExitCode::from(2);
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find the tern binary: {e}");
            return ExitCode::from(1);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("error: cannot install signal handler: {e}");
            return ExitCode::from(1);
        }
    }
    let list = node_list(&a).join(",");
    let mut children: Vec<(u8, Child)> = Vec::new();
    for i in 1..=a.nodes {
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .arg(format!("--node-id={i}"))
            .arg(format!("--nodes={list}"))
            .arg(format!(
                "--data-dir={}",
                a.dir.join(format!("node{i}")).display()
            ))
            .arg(format!("--shards={}", a.shards))
            // Several nodes share this host's CPUs: do not pin them on top of each other.
            .arg("--pin-cpus=false");
        if let Some(n) = a.replication {
            cmd.arg(format!("--replication={n}"));
        }
        cmd.args(&a.extra);
        // Own process group: a terminal's Ctrl-C reaches only this command, which then stops
        // the nodes one signal each (a second SIGINT would make a node exit without draining).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        match cmd.spawn() {
            Ok(c) => children.push((i, c)),
            Err(e) => {
                eprintln!("error: cannot start node {i}: {e}");
                stop_all(&mut children);
                return ExitCode::from(1);
            }
        }
    }
    println!("started {} nodes:", a.nodes);
    for (i, c) in &children {
        println!("  node {i}: 127.0.0.{i}:{} (pid {})", a.port, c.id());
    }
    println!("try: tern put --addr 127.0.0.1:{} hello world", a.port);
    println!("     tern get --addr 127.0.0.2:{} hello", a.port);
    println!("node list (for token-aware clients and loadgen):");
    let rep = a
        .replication
        .map(|n| format!(" --replication {n}"))
        .unwrap_or_default();
    println!("     --nodes {list}{rep}");
    println!("     e.g. loadgen --nodes {list}{rep} --workload a --load --duration 10");
    println!("stop with Ctrl-C (stops every node)");
    let mut failed = false;
    'wait: while !stop.load(Ordering::Acquire) {
        for (i, c) in children.iter_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                eprintln!("node {i} exited ({status}); stopping the cluster");
                failed = !status.success();
                break 'wait;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_all(&mut children);
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// SIGTERM every child by PID, wait up to 10 s, then SIGKILL the rest.
fn stop_all(children: &mut [(u8, Child)]) {
    for (_, c) in children.iter() {
        if let Ok(pid) = i32::try_from(c.id()) {
            // SAFETY: signalling a child process we spawned and have not reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, c) in children.iter_mut() {
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    eprintln!("node {i} did not stop within 10 s; killing it");
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
