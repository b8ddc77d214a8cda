//! One connection's request plan and bookkeeping, independent of the wire protocol.
//!
//! A [`ConnState`] decides what the connection sends next (op type, key, value, intended start
//! time), when it must stop, and records each completion into its core's stats. Protocol
//! drivers (`driver::*`) only move bytes: they ask [`ConnState::next`], send, and hand the
//! outcome to [`ConnState::complete`].
//!
//! Invariants: the plan is bounded (a request quota and/or a deadline; after the deadline no new
//! request starts); a request counts as measured iff its INTENDED start is at or after the end of
//! warm-up; latency is `completion - intended`; nothing here allocates per request (keys and
//! values are written into reused buffers). Under `--verify` every key is written by exactly one
//! connection (key index `% connections == connection id`), so that connection knows the last
//! value acknowledged for each of its keys without any cross-core sharing.

use crate::dist::KeyDist;
use crate::schedule::OpenSchedule;
use crate::stats::{record_ns, OpKind, OpStats};
use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, Rng};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

/// Keys are `key:` + 12 zero-padded decimal digits, like redis-benchmark's.
pub const KEY_LEN: usize = 16;
/// Error kind of open-loop requests that were due before the deadline but never sent.
pub const UNSENT: &str = "unsent: due before the end but the connection was still busy";
/// Draws of a key not already in flight on the connection, under `--verify`.
const VERIFY_REDRAWS: usize = 16;
/// Stamp flag marking a delete in the verify map.
const DELETED: u64 = 1 << 63;
/// Bytes of the value that carry the write's stamp.
pub const STAMP_LEN: usize = 8;

/// Formats key index `k` (must be < 10^12).
pub fn format_key(k: u64) -> [u8; KEY_LEN] {
    let mut out = *b"key:000000000000";
    let mut n = k;
    let mut i = KEY_LEN;
    while n > 0 && i > 4 {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    debug_assert_eq!(n, 0, "key index {k} does not fit 12 digits");
    out
}

/// Deterministic values: the first 8 bytes are the write's stamp (little endian), the rest is a
/// printable filler slice chosen by (key, stamp), so a read can be checked without storing the
/// value. The length is drawn from `[min, max]` by a hash of the stamp.
#[derive(Debug, Clone)]
pub struct ValueGen {
    min: usize,
    max: usize,
    filler: Rc<[u8]>,
}

const FILLER_SHIFT: usize = 61;

impl ValueGen {
    pub fn new(min: usize, max: usize) -> Self {
        debug_assert!(min <= max);
        let filler: Vec<u8> = (0..max + FILLER_SHIFT)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        ValueGen {
            min,
            max,
            filler: filler.into(),
        }
    }

    pub fn len_for(&self, stamp: u64) -> usize {
        if self.min == self.max {
            return self.min;
        }
        let span = (self.max - self.min + 1) as u64;
        self.min + (crate::dist::fnv1a64(stamp) % span) as usize
    }

    /// Writes the value of `(key, stamp)` into `out` (cleared first).
    pub fn write(&self, key: u64, stamp: u64, out: &mut Vec<u8>) {
        out.clear();
        let len = self.len_for(stamp);
        let s = stamp.to_le_bytes();
        if len <= STAMP_LEN {
            out.extend_from_slice(&s[..len]);
            return;
        }
        out.extend_from_slice(&s);
        let off = ((key ^ stamp) % FILLER_SHIFT as u64) as usize;
        out.extend_from_slice(&self.filler[off..off + len - STAMP_LEN]);
    }

    /// True iff `got` is exactly the value of `(key, stamp)`.
    pub fn matches(&self, key: u64, stamp: u64, got: &[u8]) -> bool {
        let len = self.len_for(stamp);
        if got.len() != len {
            return false;
        }
        let s = stamp.to_le_bytes();
        if len <= STAMP_LEN {
            return got == &s[..len];
        }
        let off = ((key ^ stamp) % FILLER_SHIFT as u64) as usize;
        got[..STAMP_LEN] == s && got[STAMP_LEN..] == self.filler[off..off + len - STAMP_LEN]
    }

    /// The stamp carried by a value written by this tool, if long enough to carry one.
    #[cfg(test)]
    pub fn stamp_of(got: &[u8]) -> Option<u64> {
        let b: [u8; STAMP_LEN] = got.get(..STAMP_LEN)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    }
}

/// Per-core stats shared by every connection task on that core (single-threaded: `RefCell`).
#[derive(Debug)]
pub struct CoreStats {
    /// Measured requests, by op type.
    pub ops: [OpStats; 3],
    /// Load-phase writes.
    pub load: OpStats,
    /// Since the last progress tick: all measured and warm-up requests.
    pub tick_hist: Histogram<u64>,
    pub tick_ops: u64,
    pub tick_errors: u64,
    /// Completion time of the last measured request.
    pub last_completion: Option<Instant>,
    /// Open loop: how late each measured request was handed to the driver after its intended
    /// start (the generator's own lag: a busy connection, or a late timer wake-up).
    pub send_lag: Histogram<u64>,
}

impl Default for CoreStats {
    fn default() -> Self {
        CoreStats {
            ops: Default::default(),
            load: OpStats::default(),
            tick_hist: crate::stats::new_hist(),
            tick_ops: 0,
            tick_errors: 0,
            last_completion: None,
            send_lag: crate::stats::new_hist(),
        }
    }
}

impl CoreStats {
    /// Starts a fresh progress interval (at a phase change, so phases do not mix).
    pub fn reset_tick(&mut self) {
        self.tick_hist.reset();
        self.tick_ops = 0;
        self.tick_errors = 0;
    }
}

/// What a request returned, as far as the plan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// A write or delete was acknowledged.
    Done,
    /// A read answered: `Some(value)` or not found.
    Value(Option<&'a [u8]>),
    /// A read answered with several concurrent versions (tern siblings); under `--verify` it
    /// passes if any of them is what this connection last wrote.
    Siblings(&'a [bytes::Bytes]),
    /// The request failed; the text is its error kind for the report.
    Failed(&'a str),
}

/// How a connection spaces its requests.
#[derive(Debug, Clone)]
pub enum Pacing {
    /// Next request as soon as a pipeline slot frees up.
    Closed,
    /// Fixed arrival schedule.
    Open(OpenSchedule),
}

/// The phase a connection is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Writing every key of this connection's share once (not measured in the main stats).
    Load,
    /// The measured run.
    Run,
}

/// Op mix of the run.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Fraction of reads in `[0, 1]`.
    pub read_ratio: f64,
    /// Fraction of deletes in `[0, 1 - read_ratio]`; the rest are puts.
    pub delete_ratio: f64,
}

/// Bounds of one phase.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub warmup_end: Instant,
    pub deadline: Instant,
    /// Measured requests this connection may start (None: only the deadline bounds it).
    pub quota: Option<u64>,
}

/// Verification expectation captured when a read is sent: the last acknowledged and the last
/// issued write of the key at that moment (0 = none seen in this run). Either is accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expect {
    pub acked: u64,
    pub issued: u64,
}

/// One request on its way.
#[derive(Debug, Clone, Copy)]
pub struct PlannedOp {
    pub kind: OpKind,
    pub key_idx: u64,
    pub key: [u8; KEY_LEN],
    pub stamp: u64,
    pub intended: Instant,
    pub measured: bool,
    pub expect: Expect,
}

/// The answer of [`ConnState::next`].
#[derive(Debug, Clone, Copy)]
pub enum Next {
    Op(PlannedOp),
    /// Nothing is due before this time (open loop).
    Wait(Instant),
    /// The phase is over for this connection.
    Done,
}

/// Per-key verify state: last issued and last acknowledged stamp (`DELETED` bit for deletes).
#[derive(Debug, Clone, Copy, Default)]
struct KeyState {
    issued: u64,
    acked: u64,
}

/// One connection's plan and bookkeeping.
pub struct ConnState {
    pub conn: u64,
    pub conns: u64,
    keys: u64,
    rng: SmallRng,
    dist: KeyDist,
    mix: Mix,
    values: ValueGen,
    vbuf: Vec<u8>,
    stamp_counter: u64,
    stats: Rc<RefCell<CoreStats>>,
    phase: Phase,
    pacing: Pacing,
    limits: Limits,
    started_measured: u64,
    load_next: u64,
    verify: Option<Vec<KeyState>>,
    /// Added to key indexes when formatting keys, so runs can use disjoint key ranges.
    pub key_offset: u64,
    /// Under verify: keys of the requests in flight (at most the pipeline depth).
    in_flight_keys: Vec<u64>,
}

impl ConnState {
    /// `conn` is the global connection index among `conns`; with `verify`, `keys >= conns`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        conn: u64,
        conns: u64,
        keys: u64,
        rng: SmallRng,
        dist: KeyDist,
        mix: Mix,
        values: ValueGen,
        stats: Rc<RefCell<CoreStats>>,
        verify: bool,
        limits: Limits,
    ) -> Self {
        let verify = verify.then(|| vec![KeyState::default(); keys.div_ceil(conns) as usize]);
        ConnState {
            conn,
            conns,
            keys,
            rng,
            dist,
            mix,
            values,
            vbuf: Vec::new(),
            stamp_counter: 0,
            stats,
            phase: Phase::Run,
            pacing: Pacing::Closed,
            limits,
            started_measured: 0,
            load_next: conn,
            verify,
            key_offset: 0,
            in_flight_keys: Vec::new(),
        }
    }

    /// Switches to a new phase with its pacing and bounds.
    pub fn start_phase(&mut self, phase: Phase, pacing: Pacing, limits: Limits) {
        self.phase = phase;
        self.pacing = pacing;
        self.limits = limits;
        self.started_measured = 0;
        self.load_next = self.conn;
    }

    /// The value of the last planned put (valid until the next call to `next`).
    pub fn value(&self) -> &[u8] {
        &self.vbuf
    }

    fn next_stamp(&mut self) -> u64 {
        self.stamp_counter += 1;
        // Unique across connections, never 0, never with the DELETED bit.
        ((self.conn & 0xf_ffff) << 40) | (self.stamp_counter & 0xff_ffff_ffff)
    }

    /// Under verify, moves `k` into this connection's key partition.
    fn own_key(&self, k: u64) -> u64 {
        if self.verify.is_none() {
            return k;
        }
        let own = k - k % self.conns + self.conn;
        if own >= self.keys {
            own - self.conns
        } else {
            own
        }
    }

    fn slot(&mut self, key_idx: u64) -> Option<&mut KeyState> {
        let conns = self.conns;
        self.verify
            .as_mut()
            .and_then(|v| v.get_mut((key_idx / conns) as usize))
    }

    /// Plans the next request, or says when to ask again, or that the phase is over.
    pub fn next(&mut self, now: Instant) -> Next {
        if self.phase == Phase::Load {
            if self.load_next >= self.keys || now >= self.limits.deadline {
                return Next::Done;
            }
            let k = self.load_next;
            self.load_next += self.conns;
            return Next::Op(self.plan(OpKind::Put, k, now, false));
        }
        if let Some(q) = self.limits.quota {
            if self.started_measured >= q {
                return Next::Done;
            }
        }
        let intended = match &mut self.pacing {
            Pacing::Closed => {
                if now >= self.limits.deadline {
                    return Next::Done;
                }
                now
            }
            Pacing::Open(s) => {
                let t = s.peek();
                if t >= self.limits.deadline {
                    return Next::Done;
                }
                if now >= self.limits.deadline {
                    self.give_up_backlog(now);
                    return Next::Done;
                }
                if t > now {
                    return Next::Wait(t);
                }
                let t = s.take();
                if t >= self.limits.warmup_end {
                    let lag = now.saturating_duration_since(t).as_nanos() as u64;
                    record_ns(&mut self.stats.borrow_mut().send_lag, lag);
                }
                t
            }
        };
        self.plan_run_op(intended)
    }

    /// Open loop past the deadline: the slots that were due but never sent (the server, or
    /// this generator, could not keep up with the rate) are not sent late, which would stretch
    /// the run without bound; each is recorded as failed "unsent" with its latency so far, so
    /// the tail still shows them.
    fn give_up_backlog(&mut self, now: Instant) {
        loop {
            let Pacing::Open(s) = &mut self.pacing else {
                return;
            };
            if s.peek() >= self.limits.deadline {
                return;
            }
            if let Some(q) = self.limits.quota {
                if self.started_measured >= q {
                    return;
                }
            }
            let intended = s.take();
            let op = self.plan_run_op(intended);
            if let Next::Op(op) = op {
                self.complete(&op, Outcome::Failed(UNSENT), now);
            }
        }
    }

    fn plan_run_op(&mut self, intended: Instant) -> Next {
        let measured = intended >= self.limits.warmup_end;
        if measured {
            self.started_measured += 1;
        }
        let r: f64 = self.rng.gen();
        let kind = if r < self.mix.read_ratio {
            OpKind::Get
        } else if r < self.mix.read_ratio + self.mix.delete_ratio {
            OpKind::Delete
        } else {
            OpKind::Put
        };
        // Under verify, two requests of one connection in flight on the same key would be
        // concurrent writes (siblings, a write surviving a delete that did not see it), which a
        // single expected value cannot judge: draw again, a bounded number of times.
        let mut k = 0;
        for _ in 0..VERIFY_REDRAWS {
            k = match kind {
                OpKind::Get => self.dist.next_read(&mut self.rng),
                _ => self.dist.next_write(&mut self.rng),
            };
            k = self.own_key(k);
            if !self.in_flight_keys.contains(&k) {
                break;
            }
        }
        Next::Op(self.plan(kind, k, intended, measured))
    }

    fn plan(&mut self, kind: OpKind, key_idx: u64, intended: Instant, measured: bool) -> PlannedOp {
        let mut op = PlannedOp {
            kind,
            key_idx,
            key: format_key(key_idx + self.key_offset),
            stamp: 0,
            intended,
            measured,
            expect: Expect::default(),
        };
        if self.verify.is_some() {
            self.in_flight_keys.push(key_idx);
        }
        match kind {
            OpKind::Get => {
                if let Some(s) = self.slot(key_idx) {
                    op.expect = Expect {
                        acked: s.acked,
                        issued: s.issued,
                    };
                }
            }
            OpKind::Put | OpKind::Delete => {
                op.stamp = self.next_stamp();
                if kind == OpKind::Put {
                    self.values.write(key_idx, op.stamp, &mut self.vbuf);
                }
                let mark = if kind == OpKind::Delete {
                    op.stamp | DELETED
                } else {
                    op.stamp
                };
                if let Some(s) = self.slot(key_idx) {
                    s.issued = mark;
                }
            }
        }
        op
    }

    /// True iff a read answer is consistent with what this connection wrote.
    fn check_read(&self, op: &PlannedOp, got: Option<&[u8]>) -> bool {
        let Expect { acked, issued } = op.expect;
        if acked == 0 && issued == 0 {
            return true; // Never written in this run: anything (or nothing) is fine.
        }
        let ok_for = |mark: u64| -> bool {
            if mark == 0 {
                return false;
            }
            match got {
                None => mark & DELETED != 0,
                Some(v) => mark & DELETED == 0 && self.values.matches(op.key_idx, mark, v),
            }
        };
        // An unacknowledged first write may not have landed yet: "not found" is then fine.
        (acked == 0 && got.is_none()) || ok_for(acked) || ok_for(issued)
    }

    /// Records the completion of `op` at `now`.
    pub fn complete(&mut self, op: &PlannedOp, outcome: Outcome<'_>, now: Instant) {
        let ns = now.saturating_duration_since(op.intended).as_nanos() as u64;
        let mut mismatch = false;
        if let Some(i) = self.in_flight_keys.iter().position(|&k| k == op.key_idx) {
            self.in_flight_keys.swap_remove(i);
        }
        match outcome {
            Outcome::Done if op.kind != OpKind::Get => {
                let mark = if op.kind == OpKind::Delete {
                    op.stamp | DELETED
                } else {
                    op.stamp
                };
                // Stamps grow per connection: never let a late ack of an older write win.
                if let Some(s) = self.slot(op.key_idx) {
                    if s.acked & !DELETED <= op.stamp {
                        s.acked = mark;
                    }
                }
            }
            Outcome::Value(got) if op.kind == OpKind::Get => {
                mismatch = self.verify.is_some() && !self.check_read(op, got);
            }
            Outcome::Siblings(vs) if op.kind == OpKind::Get => {
                mismatch =
                    self.verify.is_some() && !vs.iter().any(|v| self.check_read(op, Some(v)));
            }
            _ => {}
        }
        let mut st = self.stats.borrow_mut();
        let st = &mut *st;
        let failed = matches!(outcome, Outcome::Failed(_));
        st.tick_ops += 1;
        if failed {
            st.tick_errors += 1;
        }
        record_ns(&mut st.tick_hist, ns);
        let target = match self.phase {
            Phase::Load => &mut st.load,
            Phase::Run if op.measured => {
                st.last_completion = Some(now);
                &mut st.ops[op.kind.index()]
            }
            Phase::Run => return,
        };
        record_ns(&mut target.hist, ns);
        match outcome {
            Outcome::Failed(kind) => target.add_error(kind),
            Outcome::Value(None) => {
                target.ok += 1;
                target.misses += 1;
            }
            Outcome::Value(Some(_)) | Outcome::Done => target.ok += 1,
            Outcome::Siblings(_) => {
                target.ok += 1;
                target.sibling_reads += 1;
            }
        }
        if mismatch {
            // Keys are ASCII by construction.
            target.add_mismatch(std::str::from_utf8(&op.key).unwrap_or("<non-utf8 key>"));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::time::Duration;

    #[test]
    fn keys_are_fixed_width() {
        assert_eq!(&format_key(0), b"key:000000000000");
        assert_eq!(&format_key(42), b"key:000000000042");
        assert_eq!(&format_key(999_999_999_999), b"key:999999999999");
    }

    #[test]
    fn values_roundtrip_and_detect_changes() {
        let g = ValueGen::new(100, 1000);
        let mut v = Vec::new();
        for stamp in 1..200u64 {
            g.write(7, stamp, &mut v);
            assert!((100..=1000).contains(&v.len()));
            assert_eq!(ValueGen::stamp_of(&v), Some(stamp));
            assert!(g.matches(7, stamp, &v));
            assert!(!g.matches(7, stamp + 1, &v), "another stamp must not match");
            let mut bad = v.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(!g.matches(7, stamp, &bad));
        }
        let tiny = ValueGen::new(3, 3);
        tiny.write(1, 5, &mut v);
        assert_eq!(v, vec![5, 0, 0]);
        assert!(tiny.matches(1, 5, &v));
    }

    fn state(verify: bool, limits: Limits) -> ConnState {
        ConnState::new(
            1,
            4,
            40,
            SmallRng::seed_from_u64(1),
            KeyDist::Uniform { n: 40 },
            Mix {
                read_ratio: 0.5,
                delete_ratio: 0.1,
            },
            ValueGen::new(16, 16),
            Rc::new(RefCell::new(CoreStats::default())),
            verify,
            limits,
        )
    }

    fn far_limits(now: Instant, quota: Option<u64>) -> Limits {
        Limits {
            warmup_end: now,
            deadline: now + Duration::from_secs(3600),
            quota,
        }
    }

    #[test]
    fn quota_bounds_the_closed_loop_and_verify_keeps_keys_in_partition() {
        let now = Instant::now();
        let mut s = state(true, far_limits(now, Some(500)));
        let mut n = 0;
        while let Next::Op(op) = s.next(now) {
            assert_eq!(op.key_idx % 4, 1, "verify partition");
            assert!(op.key_idx < 40);
            s.complete(&op, Outcome::Failed("x"), now);
            n += 1;
        }
        assert_eq!(n, 500);
        let st = s.stats.borrow();
        let total: u64 = st.ops.iter().map(|o| o.hist.len()).sum();
        assert_eq!(total, 500);
    }

    #[test]
    fn load_phase_writes_each_owned_key_once() {
        let now = Instant::now();
        let mut s = state(false, far_limits(now, None));
        s.start_phase(Phase::Load, Pacing::Closed, far_limits(now, None));
        let mut keys = Vec::new();
        while let Next::Op(op) = s.next(now) {
            assert_eq!(op.kind, OpKind::Put);
            keys.push(op.key_idx);
            s.complete(&op, Outcome::Done, now);
        }
        assert_eq!(keys, (0..10).map(|i| 1 + 4 * i).collect::<Vec<_>>());
        assert_eq!(s.stats.borrow().load.ok, 10);
    }

    #[test]
    fn verify_flags_stale_and_accepts_fresh_reads() {
        let now = Instant::now();
        let mut s = state(true, far_limits(now, None));
        s.start_phase(Phase::Load, Pacing::Closed, far_limits(now, None));
        let mut written = Vec::new();
        while let Next::Op(op) = s.next(now) {
            s.complete(&op, Outcome::Done, now);
            let mut v = Vec::new();
            s.values.write(op.key_idx, op.stamp, &mut v);
            written.push((op.key_idx, v));
        }
        s.start_phase(Phase::Run, Pacing::Closed, far_limits(now, None));
        let (k, v) = written[2].clone();
        let get = s.plan(OpKind::Get, k, now, true);
        s.complete(&get, Outcome::Value(Some(&v)), now);
        assert_eq!(s.stats.borrow().ops[0].mismatches, 0);
        // Overwrite, ack, then a read that returns the old value is a mismatch.
        let put = s.plan(OpKind::Put, k, now, true);
        s.complete(&put, Outcome::Done, now);
        let get = s.plan(OpKind::Get, k, now, true);
        s.complete(&get, Outcome::Value(Some(&v)), now);
        s.complete(&get, Outcome::Value(None), now);
        let st = s.stats.borrow();
        assert_eq!(st.ops[0].mismatches, 2);
        assert_eq!(
            st.ops[0].mismatch_keys[0],
            String::from_utf8(format_key(k).to_vec()).unwrap()
        );
        drop(st);
        // After a delete is acked, "not found" is right.
        let del = s.plan(OpKind::Delete, k, now, true);
        s.complete(&del, Outcome::Done, now);
        let get = s.plan(OpKind::Get, k, now, true);
        s.complete(&get, Outcome::Value(None), now);
        assert_eq!(s.stats.borrow().ops[0].mismatches, 2);
        // Siblings pass when one of them is the last acknowledged write, and are counted.
        let put = s.plan(OpKind::Put, k, now, true);
        s.complete(&put, Outcome::Done, now);
        let mut fresh = Vec::new();
        s.values.write(k, put.stamp, &mut fresh);
        let get = s.plan(OpKind::Get, k, now, true);
        let both = [bytes::Bytes::from(v.clone()), bytes::Bytes::from(fresh)];
        s.complete(&get, Outcome::Siblings(&both), now);
        assert_eq!(s.stats.borrow().ops[0].mismatches, 2);
        let stale = [bytes::Bytes::from(v.clone()), bytes::Bytes::from(v)];
        s.complete(&get, Outcome::Siblings(&stale), now);
        let st = s.stats.borrow();
        assert_eq!(st.ops[0].mismatches, 3);
        assert_eq!(st.ops[0].sibling_reads, 2);
    }

    #[test]
    fn open_loop_waits_for_its_slot_and_measures_from_intended_time() {
        let t0 = Instant::now();
        let limits = Limits {
            warmup_end: t0,
            deadline: t0 + Duration::from_secs(1),
            quota: None,
        };
        let mut s = state(false, limits);
        // 4 conns at 40 ops/s: conn 1's slots are at 25 ms, 125 ms, ...
        s.start_phase(
            Phase::Run,
            Pacing::Open(OpenSchedule::new(t0, 40.0, 4, 1)),
            limits,
        );
        match s.next(t0) {
            Next::Wait(t) => assert_eq!(t - t0, Duration::from_millis(25)),
            other => panic!("expected Wait, got {other:?}"),
        }
        // Way behind schedule: the op is handed out with its original intended time.
        let late = t0 + Duration::from_millis(500);
        let Next::Op(op) = s.next(late) else {
            panic!("expected an op")
        };
        assert_eq!(op.intended - t0, Duration::from_millis(25));
        s.complete(&op, Outcome::Done, late);
        let st = s.stats.borrow();
        let h = &st.ops[op.kind.index()].hist;
        assert!(
            h.max() >= 474_000_000,
            "latency includes the schedule delay: {}",
            h.max()
        );
        drop(st);
        // Past the deadline nothing more is sent: the 9 remaining due slots are recorded as
        // unsent failures, with their latency so far.
        let end = t0 + Duration::from_secs(5);
        assert!(matches!(s.next(end), Next::Done));
        let st = s.stats.borrow();
        let unsent: u64 = st
            .ops
            .iter()
            .map(|o| o.errors.get(UNSENT).copied().unwrap_or(0))
            .sum();
        assert_eq!(unsent, 9, "1 s at 10 ops/s per connection, 1 sent");
        let recorded: u64 = st.ops.iter().map(|o| o.hist.len()).sum();
        assert_eq!(recorded, 10);
        let max = st.ops.iter().map(|o| o.hist.max()).max().unwrap();
        assert!(
            max >= 4_000_000_000,
            "unsent latency runs to the give-up time: {max}"
        );
    }
}
