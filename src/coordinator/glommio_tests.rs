//! The coordinator on the real glommio clock and spawner (the simulation covers the same logic
//! on virtual time): deadlines hold in wall time, and requests for the coordinator's own shard
//! skip the transport without losing their deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{
    CoordError, Coordinator, CoordinatorConfig, FailureReason, MemStore, Replica, ReplicaRequest,
    ReplicaResponse, ReplicaStore, RequestOptions, StoreError, Transport, TransportError,
};
use crate::runtime::clock_glommio::{GlommioClock, GlommioSpawner};
use crate::version::{Record, VersionError};

/// A replica that never answers.
struct Silent;

impl Transport for Silent {
    type Addr = Replica;
    type Request = ReplicaRequest;
    type Response = ReplicaResponse;

    async fn call(
        &self,
        _to: Replica,
        _req: ReplicaRequest,
    ) -> Result<ReplicaResponse, TransportError> {
        std::future::pending().await
    }
}

#[test]
fn a_write_to_a_silent_replica_fails_at_its_deadline_on_this_clock() {
    glommio::LocalExecutor::default().run(async {
        let me = Replica { node: 1, shard: 0 };
        let far = Replica { node: 2, shard: 0 };
        let coord = Coordinator::new(
            me,
            CoordinatorConfig::new(1, 2),
            Rc::new(Silent),
            Rc::new(GlommioClock::new()),
            Rc::new(MemStore::new()),
            Rc::new(GlommioSpawner),
        )
        .unwrap();
        let opts = RequestOptions {
            timeout_ms: Some(50),
            ..RequestOptions::default()
        };
        let started = Instant::now();
        let key = bytes::Bytes::from_static(b"k");
        let value = Some(bytes::Bytes::from_static(b"v"));
        let err = coord
            .put(key.clone(), value, Default::default(), &[far], &opts)
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(50), "failed early: {took:?}");
        assert!(took < Duration::from_secs(2), "deadline late: {took:?}");
        match err {
            CoordError::Quorum(q) => {
                assert_eq!(q.failures, vec![(far, FailureReason::TimedOut)]);
            }
            other => panic!("expected a quorum timeout, got {other:?}"),
        }
        let err = coord.get(key, &[far], &opts).await.unwrap_err();
        assert!(matches!(err, CoordError::Quorum(_)), "{err:?}");
    });
}

/// A transport whose calls to the own shard would only run the local handler, and that
/// must never be used for them (nor for anything else here).
struct LocalOnly;

impl Transport for LocalOnly {
    type Addr = Replica;
    type Request = ReplicaRequest;
    type Response = ReplicaResponse;

    fn self_calls_are_local(&self) -> bool {
        true
    }

    async fn call(
        &self,
        to: Replica,
        _req: ReplicaRequest,
    ) -> Result<ReplicaResponse, TransportError> {
        panic!("the coordinator sent a request for {to} through the transport")
    }
}

/// A store whose operations never complete (a disk that stopped answering).
struct Stuck;

impl ReplicaStore for Stuck {
    async fn get(&self, _key: &[u8]) -> Result<Option<Record>, StoreError> {
        std::future::pending().await
    }

    async fn update<F>(&self, _key: &[u8], _f: F) -> Result<Option<Record>, StoreError>
    where
        F: FnOnce(Option<&Record>) -> Result<Option<Record>, VersionError>,
    {
        std::future::pending().await
    }
}

#[test]
fn n1_requests_to_this_shard_bypass_the_transport_and_keep_their_deadline() {
    glommio::LocalExecutor::default().run(async {
        let me = Replica { node: 1, shard: 0 };
        let opts = RequestOptions {
            timeout_ms: Some(50),
            ..RequestOptions::default()
        };
        let key = bytes::Bytes::from_static(b"k");
        let value = Some(bytes::Bytes::from_static(b"v"));
        let coord = Coordinator::new(
            me,
            CoordinatorConfig::new(1, 1),
            Rc::new(LocalOnly),
            Rc::new(GlommioClock::new()),
            Rc::new(MemStore::new()),
            Rc::new(GlommioSpawner),
        )
        .unwrap();
        let ack = coord
            .put(key.clone(), value.clone(), Default::default(), &[me], &opts)
            .await
            .unwrap();
        assert_eq!(ack.acked, 1);
        let got = coord.get(key.clone(), &[me], &opts).await.unwrap();
        assert_eq!(got.replied, 1);
        assert_eq!(got.record.values().count(), 1);
        assert_eq!(got.record.context(), ack.context);

        let stuck = Coordinator::new(
            me,
            CoordinatorConfig::new(1, 1),
            Rc::new(LocalOnly),
            Rc::new(GlommioClock::new()),
            Rc::new(Stuck),
            Rc::new(GlommioSpawner),
        )
        .unwrap();
        for write in [true, false] {
            let started = Instant::now();
            let err = if write {
                stuck
                    .put(key.clone(), value.clone(), Default::default(), &[me], &opts)
                    .await
                    .map(|_| ())
                    .unwrap_err()
            } else {
                stuck
                    .get(key.clone(), &[me], &opts)
                    .await
                    .map(|_| ())
                    .unwrap_err()
            };
            let took = started.elapsed();
            assert!(took >= Duration::from_millis(50), "failed early: {took:?}");
            assert!(took < Duration::from_secs(2), "deadline late: {took:?}");
            match err {
                CoordError::Quorum(q) => {
                    assert_eq!(q.failures, vec![(me, FailureReason::TimedOut)]);
                }
                other => panic!("expected a quorum timeout, got {other:?}"),
            }
        }
    });
}
