use std::io::Write;

use super::*;

fn args() -> ServeArgs {
    ServeArgs {
        shards: Some(2),
        ..ServeArgs::default()
    }
}

fn nodes(list: &str) -> Option<Vec<String>> {
    Some(list.split(',').map(str::to_owned).collect())
}

#[test]
fn defaults_make_a_single_node() {
    let c = Config::from_args(&args()).unwrap();
    assert_eq!(c.node_id, 1);
    assert_eq!(c.port, DEFAULT_PORT);
    assert_eq!(c.nodes.len(), 1);
    assert_eq!(c.replication, 1, "single node defaults to N=1");
    assert_eq!(c.max_value_bytes, 1 << 20);
    assert_eq!(c.sibling_cap, 64);
    assert_eq!(c.sync, SyncMode::Durable);
    assert_eq!(c.idle_poll_us, 0, "never spin unless asked");
    assert_eq!(c.data_dir, PathBuf::from("./tern-data"));
    assert_eq!(c.me().shard_addr(1).port(), DEFAULT_PORT + 2);
}

#[test]
fn parses_node_entries() {
    let e: NodeEntry = "7@127.0.0.3:9000/4#zone-b".parse().unwrap();
    assert_eq!(
        e,
        NodeEntry {
            id: 7,
            ip: "127.0.0.3".parse().unwrap(),
            port: 9000,
            shards: Some(4),
            zone: Some("zone-b".into())
        }
    );
    let e: NodeEntry = "1@127.0.0.1:7700".parse().unwrap();
    assert_eq!((e.shards, e.zone), (None, None));
    for bad in [
        "",
        "x@127.0.0.1:1",
        "1@nowhere",
        "1@127.0.0.1:1/0",
        "1@127.0.0.1:1#",
        "1127.0.0.1:1",
    ] {
        let err = bad.parse::<NodeEntry>().unwrap_err();
        assert!(err.to_string().contains("id@ip:port"), "{bad}: {err}");
    }
}

#[test]
fn cluster_node_takes_address_from_its_entry() {
    let a = ServeArgs {
        node_id: Some(2),
        nodes: nodes("1@127.0.0.1:7700,2@127.0.0.2:7700,3@127.0.0.3:7700"),
        ..args()
    };
    let c = Config::from_args(&a).unwrap();
    assert_eq!(c.listen, "127.0.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(c.replication, 3);
    assert!(c.nodes.iter().all(|n| n.shards == 2));
    // Found by address when --node-id is absent.
    let a = ServeArgs {
        listen: Some("127.0.0.3".parse().unwrap()),
        nodes: nodes("1@127.0.0.1:7700,2@127.0.0.2:7700,3@127.0.0.3:7700"),
        ..args()
    };
    assert_eq!(Config::from_args(&a).unwrap().node_id, 3);
}

#[test]
fn rejects_inconsistent_clusters() {
    let two = nodes("1@127.0.0.1:7700,2@127.0.0.2:7700");
    let err = Config::from_args(&ServeArgs {
        node_id: Some(1),
        nodes: two.clone(),
        replication: Some(3),
        ..args()
    })
    .unwrap_err();
    assert!(
        matches!(err, ConfigError::ReplicationTooLarge { n: 3, nodes: 2 }),
        "{err}"
    );
    let err = Config::from_args(&ServeArgs {
        node_id: Some(9),
        nodes: two.clone(),
        ..args()
    })
    .unwrap_err();
    assert!(matches!(err, ConfigError::SelfNotInNodes(_)), "{err}");
    let err = Config::from_args(&ServeArgs {
        node_id: Some(1),
        port: Some(7800),
        nodes: two,
        ..args()
    })
    .unwrap_err();
    assert!(
        matches!(err, ConfigError::AddressMismatch { id: 1, .. }),
        "{err}"
    );
    let err = Config::from_args(&ServeArgs {
        node_id: Some(1),
        nodes: nodes("1@127.0.0.1:7700,1@127.0.0.2:7700"),
        ..args()
    })
    .unwrap_err();
    assert!(matches!(err, ConfigError::DuplicateNodeId(1)), "{err}");
    // Shard ports 7701..=7702 of node 1 collide with node 2's client port.
    let err = Config::from_args(&ServeArgs {
        node_id: Some(1),
        nodes: nodes("1@127.0.0.1:7700,2@127.0.0.1:7702"),
        ..args()
    })
    .unwrap_err();
    assert!(matches!(err, ConfigError::DuplicateAddress(_)), "{err}");
}

#[test]
fn rejects_out_of_range_limits() {
    let cases: Vec<(ServeArgs, &str)> = vec![
        (
            ServeArgs {
                shards: Some(0),
                ..args()
            },
            "shards",
        ),
        (
            ServeArgs {
                port: Some(65_535),
                ..args()
            },
            "port",
        ),
        (
            ServeArgs {
                replication: Some(0),
                ..args()
            },
            "replication",
        ),
        (
            ServeArgs {
                max_frame_bytes: Some(1000),
                ..args()
            },
            "max_frame_bytes",
        ),
        (
            ServeArgs {
                sibling_cap: Some(0),
                ..args()
            },
            "sibling_cap",
        ),
        (
            ServeArgs {
                timeout_ms: Some(0),
                ..args()
            },
            "timeout_ms",
        ),
        (
            ServeArgs {
                slow_request_ms: Some(600_001),
                ..args()
            },
            "slow_request_ms",
        ),
        (
            ServeArgs {
                idle_poll_us: Some(10_001),
                ..args()
            },
            "idle_poll_us",
        ),
        (
            ServeArgs {
                sync: Some("sometimes".into()),
                ..args()
            },
            "sync mode",
        ),
    ];
    for (a, what) in cases {
        let err = Config::from_args(&a).unwrap_err().to_string();
        assert!(
            err.contains(what),
            "expected an error about {what}, got: {err}"
        );
    }
}

#[test]
fn sync_modes_parse() {
    assert_eq!("durable".parse::<SyncMode>().unwrap(), SyncMode::Durable);
    assert_eq!(
        "periodic:10".parse::<SyncMode>().unwrap(),
        SyncMode::Periodic { ms: 10 }
    );
    assert!("periodic:0".parse::<SyncMode>().is_err());
    assert!("periodic:x".parse::<SyncMode>().is_err());
}

fn write_toml(text: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::new(text)
}

/// A tiny temp-file helper (no extra dev-dependency).
mod tempfile_path {
    use super::*;
    pub struct TempPath(pub PathBuf);
    impl TempPath {
        pub fn new(text: &str) -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir()
                .join(format!("tern-config-test-{}-{n}.toml", std::process::id()));
            let mut f = std::fs::File::create(&p).unwrap();
            f.write_all(text.as_bytes()).unwrap();
            TempPath(p)
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn toml_file_fills_settings_and_flags_win() {
    let file = write_toml(
        "port = 9100\nshards = 3\nsibling_cap = 8\nidle_poll_us = 50\nsync = \"periodic:5\"\nnodes = [\"1@127.0.0.1:9100\", \"2@127.0.0.2:9100#b\"]\n",
    );
    let a = ServeArgs {
        config: Some(file.0.clone()),
        sibling_cap: Some(16),
        ..ServeArgs::default()
    };
    let c = Config::from_args(&a).unwrap();
    assert_eq!((c.port, c.shards, c.sibling_cap), (9100, 3, 16));
    assert_eq!(c.sync, SyncMode::Periodic { ms: 5 });
    assert_eq!(c.node_id, 1);
    assert_eq!(c.nodes[1].zone.as_deref(), Some("b"));
    assert_eq!(c.replication, 2);
    assert_eq!(c.idle_poll_us, 50);
}

#[test]
fn toml_unknown_key_is_an_error() {
    let file = write_toml("prot = 9100\n");
    let a = ServeArgs {
        config: Some(file.0.clone()),
        ..ServeArgs::default()
    };
    let err = Config::from_args(&a).unwrap_err().to_string();
    assert!(
        err.contains("prot") && err.contains("unknown field"),
        "{err}"
    );
    let missing = ServeArgs {
        config: Some(PathBuf::from("/nonexistent/tern.toml")),
        ..ServeArgs::default()
    };
    let err = Config::from_args(&missing).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/tern.toml"), "{err}");
}
