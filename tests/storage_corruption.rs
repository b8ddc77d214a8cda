//! SSTable corruption on real files: write a table through the `Disk` trait onto the local file
//! system, flip one byte with plain `std::fs` in a data block, the index, the filter and the
//! footer, and check that each is reported as `StorageError::Corrupt` naming the file and the
//! offset of the damaged region, never served as data.
//!
//! The `Disk` here is a small synchronous `std::fs` implementation (pread/pwrite): the test is
//! about the on-disk format and its checks, not about io_uring.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tern::runtime::disk::{Disk, DiskFile, ALIGN};
use tern::storage::entry::{InternalKey, Stored};
use tern::storage::error::StorageError;
use tern::storage::sstable::{SstOptions, SstReader, SstWriter};

struct FsDisk;
struct FsFile(File);

impl Disk for FsDisk {
    type File = FsFile;
    async fn create(&self, path: &Path) -> io::Result<FsFile> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(FsFile(f))
    }
    async fn open(&self, path: &Path) -> io::Result<FsFile> {
        Ok(FsFile(
            OpenOptions::new().read(true).write(true).open(path)?,
        ))
    }
    async fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    async fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl DiskFile for FsFile {
    async fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        assert!(
            offset % ALIGN == 0 && buf.len() as u64 % ALIGN == 0,
            "unaligned write"
        );
        self.0.write_all_at(buf, offset)
    }
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        assert!(offset % ALIGN == 0, "unaligned read");
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = self.0.read_at(&mut buf[got..], offset + got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(buf)
    }
    async fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    async fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    async fn preallocate(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}

/// `FsDisk` never suspends, so one poll completes any of these futures.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("FsDisk future pended"),
    }
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn entries() -> Vec<(InternalKey, Stored)> {
    let mut v: Vec<_> = (0..2000u64)
        .map(|i| {
            (
                InternalKey::new(format!("user:{i:06}").into_bytes()).unwrap(),
                Stored {
                    seqno: i + 1,
                    tombstone_at_ms: None,
                    payload: Bytes::from(vec![b'v'; 50 + (i % 30) as usize]),
                },
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn write_table(path: &Path, rows: &[(InternalKey, Stored)]) {
    block_on(async {
        let opts = SstOptions::default();
        let mut w = SstWriter::create(&FsDisk, path, rows.len(), &opts)
            .await
            .unwrap();
        for (k, v) in rows {
            w.add(k, v).await.unwrap();
        }
        w.finish().await.unwrap();
    });
}

fn flip(path: &Path, offset: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, offset).unwrap();
    f.sync_all().unwrap();
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn expect_corrupt(e: StorageError, file: &Path, want_offset: u64) {
    match e {
        StorageError::Corrupt { path, offset, what } => {
            assert_eq!(path, file, "{what}");
            assert_eq!(offset, want_offset, "{what}");
            let msg = StorageError::Corrupt { path, offset, what }.to_string();
            assert!(msg.contains(&file.display().to_string()) && msg.contains(&offset.to_string()));
        }
        other => panic!("expected Corrupt at {want_offset}, got {other}"),
    }
}

#[test]
fn flipped_bytes_in_sstable_are_reported_never_served() {
    let dir = TempDir(std::env::temp_dir().join(format!("tern-sstcorrupt-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let rows = entries();
    let opts = SstOptions::default();

    // The footer is the last 128 bytes: magic u64, version u32, data_len u64, index_off u64,
    // index_len u64, filter_off u64, ... (see sstable::format).
    let clean = dir.0.join("clean.sst");
    write_table(&clean, &rows);
    let bytes = std::fs::read(&clean).unwrap();
    let size = bytes.len() as u64;
    assert_eq!(size % ALIGN, 0);
    let footer = bytes.len() - 128;
    let index_off = u64_at(&bytes, footer + 20);
    let filter_off = u64_at(&bytes, footer + 36);
    assert!(index_off > 8192 && filter_off > index_off && filter_off < footer as u64);

    // Sanity: the clean table serves everything.
    block_on(async {
        let r = SstReader::open(&FsDisk, &clean, &opts).await.unwrap();
        for (k, v) in rows.iter().step_by(97) {
            assert_eq!(r.get(k).await.unwrap().as_ref(), Some(v));
        }
    });

    // 1. A data block: the first block starts at offset 0 and holds the smallest keys. Open
    //    succeeds (blocks are verified when read); the read of that block fails, naming it.
    let p = dir.0.join("data.sst");
    write_table(&p, &rows);
    flip(&p, 100);
    block_on(async {
        let r = SstReader::open(&FsDisk, &p, &opts).await.unwrap();
        expect_corrupt(r.get(&rows[0].0).await.unwrap_err(), &p, 0);
        let mut s = r.iter();
        expect_corrupt(s.next().await.unwrap_err(), &p, 0);
        // Blocks elsewhere in the file are still served: damage is contained.
        let last = rows.last().unwrap();
        assert_eq!(r.get(&last.0).await.unwrap().as_ref(), Some(&last.1));
    });

    // 2. Index, 3. Bloom filter, 4. footer: the table refuses to open.
    for (name, at, want) in [
        ("index.sst", index_off + 7, index_off),
        ("filter.sst", filter_off + 40, filter_off),
        ("footer.sst", size - 60, size - 128),
    ] {
        let p = dir.0.join(name);
        write_table(&p, &rows);
        flip(&p, at);
        let e = block_on(SstReader::open(&FsDisk, &p, &opts))
            .err()
            .expect(name);
        expect_corrupt(e, &p, want);
    }

    // 5. A table cut short by one page (lost tail) is corrupt, not empty.
    let p = dir.0.join("short.sst");
    write_table(&p, &rows);
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(size - ALIGN)
        .unwrap();
    let e = block_on(SstReader::open(&FsDisk, &p, &opts))
        .err()
        .expect("short");
    assert!(e.is_corrupt(), "{e}");
}
