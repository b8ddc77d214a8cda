//! Token-aware clients against a real 3-node cluster (2 shards per node): the node the client
//! routes a key to is the node that holds it (N=1, so exactly one node does), and both routed
//! clients read back what they wrote.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::rc::Rc;

use common::*;
use tern::client::{AsyncRoutedClient, ClientConfig, RoutedClient, Topology};

fn node_list(c: &Cluster) -> Vec<String> {
    c.nodes
        .iter()
        .map(|n| format!("{}@{}:{}/{}", n.id, n.ip, n.port, n.shards))
        .collect()
}

/// Which node `tern debug-read` finds `key` on (others answer "holds no replica").
fn holder(c: &Cluster, key: &str) -> u32 {
    let mut holders = Vec::new();
    for n in &c.nodes {
        let o = tern(&["debug-read", "--node", &n.addr(), "--key", key]);
        match o.status.code() {
            Some(0) => holders.push(n.id),
            Some(1) => {}
            _ => assert!(stderr(&o).contains("holds no replica"), "{}", stderr(&o)),
        }
    }
    assert_eq!(holders.len(), 1, "{key} held by {holders:?}");
    holders[0]
}

#[test]
fn routed_clients_reach_the_owning_node() {
    let c = Cluster::start("routing", 3, 2, 0, &["--replication=1"]);
    let topo = Topology::from_node_list(&node_list(&c), Some(1), None).unwrap();

    let mut rc = RoutedClient::new(topo.clone(), ClientConfig::default());
    let mut routed_to = std::collections::HashSet::new();
    for i in 0..40 {
        let key = format!("rk-{i}");
        rc.put(key.clone(), format!("v-{i}"), None).unwrap();
        let g = rc.get(key.clone()).unwrap().unwrap();
        assert_eq!(&g.siblings[0].value[..], format!("v-{i}").as_bytes());
        routed_to.insert(topo.route(key.as_bytes()));
    }
    // 40 keys over 3 nodes x 2 shards: every shard gets some (a skewed route would show here).
    assert_eq!(routed_to.len(), 6, "{routed_to:?}");
    for i in [0, 7, 19, 33] {
        let key = format!("rk-{i}");
        assert_eq!(holder(&c, &key), topo.route(key.as_bytes()).node, "{key}");
    }

    // The async wrapper: same routes, inside a glommio executor.
    let ex = glommio::LocalExecutorBuilder::default().make().unwrap();
    ex.run(async move {
        let ac = AsyncRoutedClient::connect(Rc::new(topo), ClientConfig::default())
            .await
            .unwrap();
        for i in 0..40 {
            let key = format!("ak-{i}");
            ac.put(key.clone(), format!("a-{i}"), None).await.unwrap();
            let g = ac.get(key.clone()).await.unwrap().unwrap();
            assert_eq!(g.siblings.len(), 1);
            assert_eq!(&g.siblings[0].value[..], format!("a-{i}").as_bytes());
            ac.delete(key.clone(), Some(&g.context)).await.unwrap();
            let gone = ac.get(key).await.unwrap();
            assert!(gone.is_none_or(|g| g.is_deleted()));
        }
    });
    assert_eq!(holder(&c, "ak-3"), {
        let t = Topology::from_node_list(&node_list(&c), Some(1), None).unwrap();
        t.route(b"ak-3").node
    });
}
