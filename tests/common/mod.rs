//! Process harness for multi-process tests: starts the real `tern` binary, waits for readiness
//! with a deadline (every port of the node accepts connections), picks free ports in the
//! 20000-29999 range, and kills its processes by PID on drop (SIGKILL).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tern");
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the cargo target's tmp dir (a real disk: DMA files need O_DIRECT).
pub fn temp_dir(name: &str) -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A base port such that `base..base+span` is free on every IP in `ips` right now. Starts from
/// a pid-dependent offset so concurrently running test binaries rarely probe the same ports.
pub fn free_ports(ips: &[IpAddr], span: u16) -> u16 {
    let start = 20_000 + (std::process::id() % 400) as u16 * 24;
    for attempt in 0..2_000u32 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = 20_000
            + ((u32::from(start - 20_000) + (n + attempt) * u32::from(span + 1)) % 9_000) as u16;
        let all_free = ips.iter().all(|ip| {
            (base..base + span).all(|p| TcpListener::bind(SocketAddr::new(*ip, p)).is_ok())
        });
        if all_free {
            return base;
        }
    }
    panic!("no free port range found");
}

pub fn ip(i: u8) -> IpAddr {
    format!("127.0.0.{i}").parse().unwrap()
}

/// Whether a tern node answers the protocol hello on `addr`. A bare TCP connect is not enough:
/// right after a SIGKILL the kernel may keep the dead process's listening sockets alive for a
/// moment (io_uring teardown is asynchronous), and they accept connections nobody serves.
pub fn hello_ok(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    use tern::net::handshake::{ClientHello, ServerHello, SERVER_HELLO_LEN};
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(&ClientHello::default().encode()).is_err() {
        return false;
    }
    let mut h = [0u8; SERVER_HELLO_LEN];
    s.read_exact(&mut h).is_ok()
        && ServerHello::decode(&h)
            .map(|h| h.check().is_ok())
            .unwrap_or(false)
}

/// One `tern serve` process.
pub struct Node {
    pub id: u32,
    pub ip: IpAddr,
    pub port: u16,
    pub shards: u16,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Node {
    /// Starts `tern serve` with `args` (plus data dir, address, shards) and waits until ready.
    pub fn start(
        id: u32,
        ip: IpAddr,
        port: u16,
        shards: u16,
        data_dir: &Path,
        args: &[String],
    ) -> Node {
        let mut n = Node {
            id,
            ip,
            port,
            shards,
            data_dir: data_dir.to_owned(),
            args: args.to_vec(),
            child: None,
            log: data_dir.with_extension("log"),
        };
        n.spawn();
        n.wait_ready();
        n
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("serve")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen={}", self.ip))
            .arg(format!("--port={}", self.port))
            .arg(format!("--shards={}", self.shards))
            .arg("--pin-cpus=false")
            .args(&self.args);
        c
    }

    /// Starts the process without waiting (logs appended to `<data_dir>.log`).
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env(
                "RUST_LOG",
                std::env::var("TERN_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until the client port and every shard port accept connections.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let ports: Vec<u16> = (0..=self.shards).map(|s| self.port + s).collect();
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "node {} exited during start-up ({st}); log:\n{}",
                        self.id,
                        self.read_log()
                    );
                }
            }
            let ready = ports.iter().all(|p| hello_ok(SocketAddr::new(self.ip, *p)));
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} not ready in time; log:\n{}",
                self.id,
                self.read_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn read_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: signalling our own child by PID.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// Sends SIGTERM without waiting (a second SIGTERM would make the node exit at once).
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits (at most 30 s) for the process to exit and reaps it.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("node not running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "node {} did not exit within 30 s; log:\n{}",
                    self.id,
                    self.read_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same data dir and waits until ready.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running node");
        self.spawn();
        self.wait_ready();
    }

    /// VmRSS in KiB from /proc.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        // A passing test leaves nothing behind (a cluster run writes hundreds of MB of
        // preallocated segments); a failing one keeps its data and log for the post-mortem.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Runs the `tern` binary with `args` (a client command), bounded in time by its own flags.
pub fn tern(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A cluster of `count` nodes on 127.0.0.1..=count, same port each, N as given.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub dir: PathBuf,
}

impl Cluster {
    pub fn start(name: &str, count: u8, shards: u16, zones: u8, extra: &[&str]) -> Cluster {
        let ips: Vec<IpAddr> = (1..=count).map(ip).collect();
        let port = free_ports(&ips, shards + 1);
        let list: Vec<String> = (1..=count)
            .map(|i| {
                let mut e = format!("{i}@127.0.0.{i}:{port}/{shards}");
                if zones > 0 {
                    e.push_str(&format!("#z{}", (i - 1) % zones));
                }
                e
            })
            .collect();
        let dir = temp_dir(name);
        let mut args = vec![format!("--nodes={}", list.join(","))];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut nodes = Vec::new();
        for i in 1..=count {
            let mut a = args.clone();
            a.push(format!("--node-id={i}"));
            let mut n = Node {
                id: u32::from(i),
                ip: ip(i),
                port,
                shards,
                data_dir: dir.join(format!("node{i}")),
                args: a,
                child: None,
                log: dir.join(format!("node{i}.log")),
            };
            n.spawn();
            nodes.push(n);
        }
        for n in &mut nodes {
            n.wait_ready();
        }
        Cluster { nodes, dir }
    }

    pub fn node(&mut self, id: u32) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }
}
