//! The client's token-aware routing must agree with every node's view: the client crate computes
//! preference lists from the node list alone, so these tests hold it against the server's config
//! and membership (they live here because the client crate cannot see server modules).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::rc::Rc;

use proptest::prelude::*;

use super::{ClusterView, Membership, StaticMembership};
use crate::client::Topology;
use crate::config::{Config, ServeArgs};

fn list(shards: u16) -> Vec<String> {
    vec![
        format!("1@127.0.0.1:7700/{shards}#a"),
        format!("2@127.0.0.2:7700/{shards}#b"),
        format!("3@127.0.0.3:7700/{shards}#a"),
        format!("4@127.0.0.4:7800/{shards}"),
    ]
}

/// The view node `me` builds from `--nodes` (and `--replication`).
fn server_view(me: u32, nodes: &[String], n: usize) -> Rc<ClusterView> {
    let args = ServeArgs {
        node_id: Some(me),
        nodes: Some(nodes.to_vec()),
        replication: Some(n),
        ..ServeArgs::default()
    };
    let cfg = Config::from_args(&args).unwrap();
    StaticMembership::new(&cfg).unwrap().view()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// For any key, the client's replica list is every node's, and its route is that list's
    /// first replica, whose shard port is the one the owning node listens on.
    #[test]
    fn client_routes_like_the_servers(
        keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 1..32),
        shards in 1u16..5,
        n in 1usize..4,
    ) {
        let nodes = list(shards);
        let topo = Topology::from_node_list(&nodes, Some(n), None).unwrap();
        let views: Vec<_> = (1..=4).map(|me| server_view(me, &nodes, n)).collect();
        for key in &keys {
            let client = topo.replicas(key);
            for v in &views {
                prop_assert_eq!(&client, &v.preference_list(key));
            }
            let first = topo.route(key);
            prop_assert_eq!(first, client[0]);
            let owner = views[0].node(first.node).unwrap();
            prop_assert_eq!(topo.shard_addr(first), Some(owner.shard_addr(first.shard)));
        }
    }
}

#[test]
fn config_topology_matches_node_list_topology() {
    let nodes = list(2);
    let args = ServeArgs {
        node_id: Some(2),
        nodes: Some(nodes.clone()),
        ..ServeArgs::default()
    };
    let cfg = Config::from_args(&args).unwrap();
    let a = Topology::new(cfg.nodes.clone(), cfg.replication, cfg.vnodes).unwrap();
    let b = Topology::from_node_list(&nodes, None, None).unwrap();
    assert_eq!(a.nodes(), b.nodes());
    assert_eq!(a.replication(), 3);
    for i in 0..200u32 {
        let k = format!("key:{i}");
        assert_eq!(a.replicas(k.as_bytes()), b.replicas(k.as_bytes()));
    }
    // 4 nodes x 2 shards.
    assert_eq!(a.all_shards().count(), 8);
}

#[test]
fn static_view_matches_config() {
    let args = ServeArgs {
        node_id: Some(2),
        shards: Some(2),
        nodes: Some(vec![
            "1@127.0.0.1:7700#a".into(),
            "2@127.0.0.2:7700#b".into(),
            "3@127.0.0.3:7700#c".into(),
        ]),
        ..ServeArgs::default()
    };
    let cfg = Config::from_args(&args).unwrap();
    let m = StaticMembership::new(&cfg).unwrap();
    let v = m.view();
    assert_eq!(v.me(), 2);
    assert_eq!(v.replication(), 3);
    assert!(m.is_up(3) && !m.is_up(4));
    let p = v.preference_list(b"some key");
    let mut nodes: Vec<_> = p.iter().map(|r| r.node).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, vec![1, 2, 3]);
}
