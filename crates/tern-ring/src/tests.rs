use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

fn ids(count: usize, seed: u32) -> Vec<NodeId> {
    // Distinct, scattered ids.
    (0..count as u32)
        .map(|i| seed.wrapping_mul(7919).wrapping_add(i * 104_729) | 1)
        .collect()
}

fn node(id: NodeId, shards: u16, weight: u32, zone: Option<&str>) -> NodeSpec {
    NodeSpec {
        id,
        shards,
        weight,
        zone: zone.map(str::to_owned),
    }
}

#[test]
fn rejects_bad_node_lists() {
    assert_eq!(Ring::new(&[]).unwrap_err(), RingError::NoNodes);
    let dup = [NodeSpec::new(1, 1), NodeSpec::new(1, 2)];
    assert_eq!(Ring::new(&dup).unwrap_err(), RingError::DuplicateNode(1));
    assert_eq!(
        Ring::new(&[NodeSpec::new(3, 0)]).unwrap_err(),
        RingError::NoShards(3)
    );
    let zero = [node(4, 1, 0, None)];
    assert!(matches!(
        Ring::new(&zero).unwrap_err(),
        RingError::BadWeight { id: 4, .. }
    ));
}

#[test]
fn single_node_owns_everything_and_spreads_over_its_shards() {
    let ring = Ring::new(&[NodeSpec::new(9, 4)]).unwrap();
    let mut shards = HashSet::new();
    for k in 0..2000u32 {
        let p = ring.preference_list(&k.to_le_bytes(), 3);
        assert_eq!(p.len(), 1, "N is capped by the node count");
        assert_eq!(p[0].node, 9);
        assert!(p[0].shard < 4);
        shards.insert(p[0].shard);
    }
    assert_eq!(shards.len(), 4, "every shard owns some keys");
    let own = ring.ownership();
    assert!((own[0].1 - 1.0).abs() < 1e-9);
}

#[test]
fn node_order_in_the_list_does_not_matter() {
    let a: Vec<NodeSpec> = ids(5, 3).into_iter().map(|i| NodeSpec::new(i, 2)).collect();
    let mut b = a.clone();
    b.reverse();
    let (ra, rb) = (Ring::new(&a).unwrap(), Ring::new(&b).unwrap());
    for k in 0..500u32 {
        let key = k.to_be_bytes();
        assert_eq!(ra.preference_list(&key, 3), rb.preference_list(&key, 3));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The bucket index finds the same position as a binary search over all vnodes, for any
    /// token (including both ends of the token space and exact vnode tokens).
    #[test]
    fn bucket_index_agrees_with_binary_search(
        count in 1usize..6,
        seed in any::<u32>(),
        weight in 1u32..300,
        toks in prop::collection::vec(any::<u64>(), 1..200),
    ) {
        let nodes: Vec<NodeSpec> =
            ids(count, seed).into_iter().map(|id| node(id, 2, weight, None)).collect();
        let ring = Ring::new(&nodes).unwrap();
        let exact = ring.vnodes.iter().take(50).map(|v| v.token);
        for tok in toks.into_iter().chain([0, u64::MAX]).chain(exact) {
            let want = ring.vnodes.partition_point(|v| v.token < tok);
            prop_assert_eq!(ring.first_at_or_after(tok), want);
        }
    }

    #[test]
    fn preference_list_has_n_distinct_nodes(
        count in 1usize..8,
        seed in any::<u32>(),
        shards in prop::collection::vec(1u16..5, 8),
        n in 1usize..7,
        keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..50),
    ) {
        let nodes: Vec<NodeSpec> = ids(count, seed)
            .into_iter()
            .zip(&shards)
            .map(|(id, &s)| node(id, s, 32, None))
            .collect();
        let ring = Ring::new(&nodes).unwrap();
        for key in &keys {
            let p = ring.preference_list(key, n);
            prop_assert_eq!(p.len(), n.min(count));
            let distinct: HashSet<_> = p.iter().map(|r| r.node).collect();
            prop_assert_eq!(distinct.len(), p.len());
            for r in &p {
                let spec = ring.node(r.node).unwrap();
                prop_assert!(r.shard < spec.shards);
            }
            // The first replica is the primary, and it owns the key's token.
            prop_assert_eq!(p[0], ring.primary(token(key)));
        }
    }

    #[test]
    fn share_follows_weight_within_ten_percent(
        count in 2usize..7,
        seed in any::<u32>(),
        doubles in prop::collection::vec(any::<bool>(), 7),
    ) {
        let nodes: Vec<NodeSpec> = ids(count, seed)
            .into_iter()
            .zip(&doubles)
            .map(|(id, &d)| node(id, 2, if d { 2 * DEFAULT_WEIGHT } else { DEFAULT_WEIGHT }, None))
            .collect();
        let total: u32 = nodes.iter().map(|n| n.weight).sum();
        let ring = Ring::new(&nodes).unwrap();
        let own = ring.ownership();
        let sum: f64 = own.iter().map(|o| o.1).sum();
        prop_assert!((sum - 1.0).abs() < 1e-9, "shares sum to {}", sum);
        for (spec, (id, share)) in nodes.iter().zip(own) {
            let expect = f64::from(spec.weight) / f64::from(total);
            prop_assert!(
                (share / expect - 1.0).abs() <= 0.10,
                "node {} owns {:.4}, weight share {:.4}", id, share, expect
            );
        }
    }

    #[test]
    fn adding_a_node_moves_about_its_share_and_only_to_it(
        count in 1usize..6,
        seed in any::<u32>(),
    ) {
        let all: Vec<NodeSpec> = ids(count + 1, seed).into_iter().map(|i| NodeSpec::new(i, 2)).collect();
        let before = Ring::new(&all[..count]).unwrap();
        let after = Ring::new(&all).unwrap();
        let new_id = all[count].id;
        let samples = 4000u32;
        let mut moved = 0u32;
        for k in 0..samples {
            let key = (u64::from(k) ^ u64::from(seed) << 20).to_le_bytes();
            let (b, a) = (before.preference_list(&key, 3), after.preference_list(&key, 3));
            if b[0] != a[0] {
                moved += 1;
                prop_assert_eq!(a[0].node, new_id, "a key moved to an old node");
            }
            // Without zones the new list is the old one with the new node inserted.
            let without_new: Vec<Replica> = a.iter().copied().filter(|r| r.node != new_id).collect();
            prop_assert_eq!(&without_new[..], &b[..without_new.len()]);
        }
        let frac = f64::from(moved) / f64::from(samples);
        let expect = 1.0 / (count as f64 + 1.0);
        // Sampling noise (4000 keys) plus the ring's own ~2% deviation.
        prop_assert!((frac / expect - 1.0).abs() < 0.15, "moved {:.3}, expected ~{:.3}", frac, expect);
    }

    #[test]
    fn replicas_span_zones(
        per_zone in prop::collection::vec(1usize..4, 1..5),
        seed in any::<u32>(),
        n in 1usize..6,
        keys in prop::collection::vec(any::<u64>(), 1..60),
    ) {
        let zone_names = ["a", "b", "c", "d"];
        let idv = ids(per_zone.iter().sum(), seed);
        let mut nodes = Vec::new();
        let mut it = idv.into_iter();
        for (z, &k) in per_zone.iter().enumerate() {
            for _ in 0..k {
                nodes.push(node(it.next().unwrap(), 1, 16, Some(zone_names[z])));
            }
        }
        let ring = Ring::new(&nodes).unwrap();
        prop_assert_eq!(ring.zone_count(), per_zone.len());
        for key in &keys {
            let p = ring.preference_list(&key.to_le_bytes(), n);
            prop_assert_eq!(p.len(), n.min(nodes.len()));
            let zones: HashSet<_> = p.iter().map(|r| ring.node(r.node).unwrap().zone.clone()).collect();
            prop_assert_eq!(zones.len(), p.len().min(per_zone.len()));
        }
    }
}
