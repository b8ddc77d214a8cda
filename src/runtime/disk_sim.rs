//! `SimDisk`: an in-memory [`Disk`] for tests that records every write and sync barrier and
//! produces crash states (power loss) deterministically from a seed.
//!
//! Model (what a real disk with O_DIRECT may do on power loss):
//! - a file's bytes written before its last completed `sync` survive;
//! - each write after that is dropped, kept, or torn: every 512-byte sector of it lands or not
//!   independently, and surviving writes land in a random order (so an older rewrite of the same
//!   page may win over a newer one);
//! - creations, renames and removals survive only if `sync_dir` ran on their directory after
//!   them; `truncate` and file size changes are treated as durable at once (simplification: the
//!   storage code never relies on an unsynced truncate).
//!
//! Every future it returns is ready at once unless `yield_every` asks it to yield, so it runs
//! under glommio or under the tiny [`block_on`] here. Single-threaded (`Rc`). Test-only in spirit
//! but compiled always so integration tests can use it; it knows no file formats.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::disk::{Disk, DiskFile, ALIGN};

/// Granularity at which an unsynced write may be torn.
pub const SECTOR: usize = 512;

#[derive(Debug, Default)]
struct Inode {
    /// Content as the running process sees it.
    current: Vec<u8>,
    /// Content guaranteed to survive a crash.
    durable: Vec<u8>,
    /// Writes since the last completed sync, oldest first.
    pending: Vec<(u64, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// The namespace the running process sees: path -> inode.
    names: BTreeMap<PathBuf, u64>,
    /// The namespace that survives a crash.
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: Vec<PathBuf>,
    /// Total bytes allowed across all files (ENOSPC beyond), if set.
    space_limit: Option<u64>,
    writes: u64,
    syncs: u64,
    /// Yield once every N operations (0 = never), to interleave tasks.
    yield_every: u64,
    ops: u64,
    /// Take a crash snapshot when `ops` reaches this (with this seed).
    armed: Option<(u64, u64)>,
    snapshot: Option<Rc<RefCell<State>>>,
}

impl State {
    fn used(&self) -> u64 {
        self.inodes.values().map(|i| i.current.len() as u64).sum()
    }
}

/// The simulated disk. Cloning gives another handle on the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    st: Rc<RefCell<State>>,
}

/// An open simulated file (refers to an inode, so renames do not affect it).
#[derive(Debug)]
pub struct SimFile {
    st: Rc<RefCell<State>>,
    ino: u64,
    path: PathBuf,
}

/// Counters for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    pub writes: u64,
    pub syncs: u64,
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", p.display()),
    )
}

/// A future that is pending once (waking itself), so other tasks get to run.
struct YieldOnce(bool);
impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

async fn maybe_yield(st: &Rc<RefCell<State>>) {
    let (y, fire) = {
        let mut s = st.borrow_mut();
        s.ops += 1;
        let fire = match s.armed {
            Some((at, seed)) if s.ops >= at => {
                s.armed = None;
                Some(seed)
            }
            _ => None,
        };
        (s.yield_every != 0 && s.ops % s.yield_every == 0, fire)
    };
    if let Some(seed) = fire {
        // Power fails just before this operation.
        let snap = crash_state(&st.borrow(), seed);
        st.borrow_mut().snapshot = Some(Rc::new(RefCell::new(snap)));
    }
    if y {
        YieldOnce(false).await;
    }
}

impl SimDisk {
    pub fn new() -> Self {
        Self::default()
    }

    /// Make every `n`-th operation yield to the executor once (0 disables).
    pub fn set_yield_every(&self, n: u64) {
        self.st.borrow_mut().yield_every = n;
    }

    /// Limit the total bytes of all files; writes growing past it fail with `StorageFull`.
    pub fn set_space_limit(&self, limit: Option<u64>) {
        self.st.borrow_mut().space_limit = limit;
    }

    pub fn stats(&self) -> SimStats {
        let s = self.st.borrow();
        SimStats {
            writes: s.writes,
            syncs: s.syncs,
        }
    }

    /// The current (not crash) content of `path`, for corruption tests.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.st.borrow();
        let ino = s.names.get(path)?;
        s.inodes.get(ino).map(|i| i.current.clone())
    }

    /// XOR one byte of `path` with `mask`, durably (simulates media corruption).
    pub fn corrupt(&self, path: &Path, offset: usize, mask: u8) -> bool {
        let mut s = self.st.borrow_mut();
        let Some(&ino) = s.names.get(path) else {
            return false;
        };
        let Some(i) = s.inodes.get_mut(&ino) else {
            return false;
        };
        if offset >= i.current.len() {
            return false;
        }
        i.current[offset] ^= mask;
        if offset < i.durable.len() {
            i.durable[offset] ^= mask;
        }
        true
    }

    /// Paths currently visible.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.st.borrow().names.keys().cloned().collect()
    }

    /// A new disk holding one possible state after a power loss now, chosen by `seed`.
    /// This disk is unchanged (it can produce more crash states).
    pub fn crash(&self, seed: u64) -> SimDisk {
        SimDisk {
            st: Rc::new(RefCell::new(crash_state(&self.st.borrow(), seed))),
        }
    }

    /// Arm a power failure just before the `n`-th disk operation from now (counting creates,
    /// opens, writes, syncs and dir syncs); [`Self::crashed`] then returns the crash state.
    pub fn arm_crash(&self, n: u64, seed: u64) {
        let mut s = self.st.borrow_mut();
        s.armed = Some((s.ops + n.max(1), seed));
        s.snapshot = None;
    }

    /// The crash state taken by [`Self::arm_crash`], once it fired.
    pub fn crashed(&self) -> Option<SimDisk> {
        self.st
            .borrow()
            .snapshot
            .as_ref()
            .map(|st| SimDisk { st: st.clone() })
    }
}

fn crash_state(s: &State, seed: u64) -> State {
    {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = State {
            dirs: s.dirs.clone(),
            ..State::default()
        };
        // Inodes reachable from the durable namespace survive, with their durable bytes plus a
        // random subset of pending writes, torn per sector, in a random order.
        let mut map: HashMap<u64, u64> = HashMap::new();
        for (path, ino) in &s.durable_names {
            let new_ino = *map.entry(*ino).or_insert_with(|| {
                let n = out.next_inode;
                out.next_inode += 1;
                n
            });
            out.names.insert(path.clone(), new_ino);
            out.durable_names.insert(path.clone(), new_ino);
        }
        let mut inos: Vec<(&u64, &u64)> = map.iter().collect();
        inos.sort();
        for (old, new) in inos {
            let Some(i) = s.inodes.get(old) else { continue };
            let mut content = i.durable.clone();
            let mut order: Vec<usize> = (0..i.pending.len()).collect();
            // Fisher-Yates with our seeded rng (deterministic).
            for k in (1..order.len()).rev() {
                let j = rng.gen_range(0..=k);
                order.swap(k, j);
            }
            let mode: u32 = rng.gen_range(0..4);
            for idx in order {
                let (off, data) = &i.pending[idx];
                // mode 0: drop all pending, 1: keep all, 2/3: random per write and sector.
                let keep_write = match mode {
                    0 => false,
                    1 => true,
                    _ => rng.gen_bool(0.6),
                };
                if !keep_write {
                    continue;
                }
                let torn = mode >= 2 && rng.gen_bool(0.3);
                for (si, chunk) in data.chunks(SECTOR).enumerate() {
                    if torn && !rng.gen_bool(0.5) {
                        continue;
                    }
                    let at = *off as usize + si * SECTOR;
                    if content.len() < at + chunk.len() {
                        content.resize(at + chunk.len(), 0);
                    }
                    content[at..at + chunk.len()].copy_from_slice(chunk);
                }
            }
            // The file size is durable at once in this model (see module doc).
            if content.len() < i.current.len() {
                content.resize(i.current.len(), 0);
            }
            content.truncate(i.current.len().max(i.durable.len()).min(content.len()));
            out.inodes.insert(
                *new,
                Inode {
                    current: content.clone(),
                    durable: content,
                    pending: Vec::new(),
                },
            );
        }
        out
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    async fn create(&self, path: &Path) -> io::Result<SimFile> {
        maybe_yield(&self.st).await;
        let mut s = self.st.borrow_mut();
        let ino = s.next_inode;
        s.next_inode += 1;
        s.inodes.insert(ino, Inode::default());
        s.names.insert(path.to_path_buf(), ino);
        Ok(SimFile {
            st: self.st.clone(),
            ino,
            path: path.to_path_buf(),
        })
    }

    async fn open(&self, path: &Path) -> io::Result<SimFile> {
        maybe_yield(&self.st).await;
        let s = self.st.borrow();
        let ino = *s.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(SimFile {
            st: self.st.clone(),
            ino,
            path: path.to_path_buf(),
        })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.st.borrow_mut();
        s.names.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.st.borrow_mut();
        let ino = s.names.remove(from).ok_or_else(|| not_found(from))?;
        s.names.insert(to.to_path_buf(), ino);
        Ok(())
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let s = self.st.borrow();
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.st.borrow_mut();
        if !s.dirs.iter().any(|d| d == dir) {
            s.dirs.push(dir.to_path_buf());
        }
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        maybe_yield(&self.st).await;
        let mut s = self.st.borrow_mut();
        s.syncs += 1;
        let s = &mut *s;
        s.durable_names.retain(|p, _| p.parent() != Some(dir));
        for (p, ino) in &s.names {
            if p.parent() == Some(dir) {
                s.durable_names.insert(p.clone(), *ino);
            }
        }
        Ok(())
    }
}

impl SimFile {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> io::Result<R>) -> io::Result<R> {
        let mut s = self.st.borrow_mut();
        if !s.inodes.contains_key(&self.ino) {
            return Err(not_found(&self.path));
        }
        f(&mut s)
    }
}

impl DiskFile for SimFile {
    async fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if offset % ALIGN != 0 || buf.len() as u64 % ALIGN != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: unaligned write offset {offset} len {}",
                    self.path.display(),
                    buf.len()
                ),
            ));
        }
        maybe_yield(&self.st).await;
        let ino = self.ino;
        self.with(|s| {
            let end = offset as usize + buf.len();
            let cur_len = s.inodes.get(&ino).map_or(0, |i| i.current.len());
            if let Some(limit) = s.space_limit {
                let grow = end.saturating_sub(cur_len) as u64;
                if grow > 0 && s.used() + grow > limit {
                    return Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        "simulated disk full (ENOSPC)",
                    ));
                }
            }
            s.writes += 1;
            let i = s.inodes.entry(ino).or_default();
            if i.current.len() < end {
                i.current.resize(end, 0);
            }
            i.current[offset as usize..end].copy_from_slice(buf);
            i.pending.push((offset, buf.to_vec()));
            Ok(())
        })
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let ino = self.ino;
        self.with(|s| {
            let i = s.inodes.entry(ino).or_default();
            let start = (offset as usize).min(i.current.len());
            let end = (offset as usize).saturating_add(len).min(i.current.len());
            Ok(i.current[start..end].to_vec())
        })
    }

    async fn sync(&self) -> io::Result<()> {
        maybe_yield(&self.st).await;
        let ino = self.ino;
        self.with(|s| {
            s.syncs += 1;
            let i = s.inodes.entry(ino).or_default();
            i.durable = i.current.clone();
            i.pending.clear();
            Ok(())
        })
    }

    async fn size(&self) -> io::Result<u64> {
        let ino = self.ino;
        self.with(|s| Ok(s.inodes.entry(ino).or_default().current.len() as u64))
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        // KEEP_SIZE semantics: reserves space, does not change the visible size.
        let ino = self.ino;
        self.with(|s| {
            if let Some(limit) = s.space_limit {
                let cur = s.inodes.get(&ino).map_or(0, |i| i.current.len() as u64);
                if len > cur && s.used() + (len - cur) > limit {
                    return Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        "simulated disk full (ENOSPC) on preallocate",
                    ));
                }
            }
            Ok(())
        })
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let ino = self.ino;
        self.with(|s| {
            let i = s.inodes.entry(ino).or_default();
            i.current.resize(len as usize, 0);
            i.durable.resize(len as usize, 0);
            for (off, data) in i.pending.iter_mut() {
                let end = (*off as usize + data.len()).min(len as usize);
                data.truncate(end.saturating_sub(*off as usize));
            }
            Ok(())
        })
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}

fn noop_waker() -> Waker {
    fn clone(_: *const ()) -> RawWaker {
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    // SAFETY: every vtable function ignores the data pointer, so a null pointer is valid.
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
}

/// Runs a future that only waits on `SimDisk` (always ready or self-waking) to completion.
/// Gives up after a bounded number of polls so a lost wake-up fails a test instead of hanging.
pub fn block_on<F: Future>(f: F) -> io::Result<F::Output> {
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    for _ in 0..10_000_000u64 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Ok(v);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "block_on: future did not complete (lost wake-up?)",
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn page(b: u8) -> Vec<u8> {
        vec![b; ALIGN as usize]
    }

    #[test]
    fn synced_writes_survive_every_crash() {
        let d = SimDisk::new();
        let dir = Path::new("/d");
        let p = dir.join("f");
        block_on(async {
            d.create_dir_all(dir).await.unwrap();
            let f = d.create(&p).await.unwrap();
            d.sync_dir(dir).await.unwrap();
            f.write_at(&page(1), 0).await.unwrap();
            f.sync().await.unwrap();
            f.write_at(&page(2), 0).await.unwrap();
            f.write_at(&page(3), 4096).await.unwrap();
        })
        .unwrap();
        let mut saw_torn = false;
        let mut saw_new = false;
        for seed in 0..200 {
            let c = d.crash(seed);
            let data = c.read_file(&p).unwrap();
            // Every sector of page 0 is either the synced 1 or the unsynced 2.
            for s in data[..4096].chunks(SECTOR) {
                assert!(s.iter().all(|&b| b == s[0]) && (s[0] == 1 || s[0] == 2));
            }
            if data[..4096].contains(&1) && data[..4096].contains(&2) {
                saw_torn = true;
            }
            if data.len() > 4096 && data[4096] == 3 {
                saw_new = true;
            }
        }
        assert!(saw_torn && saw_new);
    }

    #[test]
    fn unsynced_dir_ops_are_lost() {
        let d = SimDisk::new();
        let dir = Path::new("/d");
        block_on(async {
            let f = d.create(&dir.join("a")).await.unwrap();
            f.write_at(&page(7), 0).await.unwrap();
            f.sync().await.unwrap();
            d.sync_dir(dir).await.unwrap();
            d.rename(&dir.join("a"), &dir.join("b")).await.unwrap();
            d.create(&dir.join("c")).await.unwrap();
        })
        .unwrap();
        let c = d.crash(1);
        assert_eq!(c.paths(), vec![dir.join("a")]);
        assert_eq!(c.read_file(&dir.join("a")).unwrap(), page(7));
        block_on(d.sync_dir(dir)).unwrap().unwrap();
        let c = d.crash(1);
        assert_eq!(c.paths(), vec![dir.join("b"), dir.join("c")]);
    }

    #[test]
    fn crash_is_deterministic_and_space_limit_errors() {
        let d = SimDisk::new();
        let p = Path::new("/d/f");
        block_on(async {
            let f = d.create(p).await.unwrap();
            d.sync_dir(Path::new("/d")).await.unwrap();
            for i in 0..8u8 {
                f.write_at(&page(i), u64::from(i) * 4096).await.unwrap();
            }
        })
        .unwrap();
        for seed in 0..20 {
            assert_eq!(d.crash(seed).read_file(p), d.crash(seed).read_file(p));
        }
        d.set_space_limit(Some(8 * 4096));
        let err = block_on(async {
            let f = d.open(p).await.unwrap();
            f.write_at(&page(9), 8 * 4096).await
        })
        .unwrap()
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(block_on(async {
            d.create(Path::new("/x"))
                .await
                .unwrap()
                .write_at(&[0u8; 5], 0)
                .await
        })
        .unwrap()
        .is_err());
    }
}
