//! The manifest: the durable list of one shard's live SSTables and how far the commit log is
//! covered by them.
//!
//! Owns the `MANIFEST` file in the shard directory. Replaced atomically: the new version is
//! written to `MANIFEST.tmp`, synced, renamed over `MANIFEST`, and the directory is synced, so a
//! crash leaves either the old or the new manifest, never a mix. A checksum guards the content;
//! a mismatch is `StorageError::Corrupt` (recovery must stop, not guess which tables are live).
//! Must not open SSTables or touch the commit log; it only records what the engine decided.
//!
//! Encoding (little-endian), padded with zeros to a multiple of `ALIGN`:
//! `magic u64 | format u32 | body_len u32 | body_crc u32 | body`, body =
//! `generation u64 | next_table_id u64 | flushed_upto u64 | log_segment_watermark u64 |
//! table_count u32 | (id u64 | tier u32 | name_len u16 | name | 7 x u64 meta)*`.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::error::{Result, StorageError};
use super::sstable::SstMeta;
use crate::runtime::disk::{Disk, DiskFile, ALIGN};

pub const MANIFEST_FILE: &str = "MANIFEST";
const MANIFEST_TMP: &str = "MANIFEST.tmp";
const MAGIC: u64 = u64::from_le_bytes(*b"TERNMAN\x01");
const FORMAT: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 4;
/// Bounds a decoded manifest so a corrupt count cannot ask for a huge allocation.
const MAX_TABLES: usize = 1 << 16;
const MAX_NAME: usize = 255;

/// One live table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableEntry {
    /// Unique within the shard, increasing in creation order.
    pub id: u64,
    /// Size tier at creation (see `compaction::tier_of`).
    pub tier: u32,
    /// File name inside the shard directory (relative, so a data directory can be moved).
    pub file_name: String,
    pub meta: SstMeta,
}

/// The canonical file name of table `id`.
pub fn sst_file_name(id: u64) -> String {
    format!("{id:020}.sst")
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Bumped on every store; helps spot a stale copy in logs.
    pub generation: u64,
    pub next_table_id: u64,
    /// Every write with `seqno <= flushed_upto` is in an SSTable; replay starts after it.
    pub flushed_upto: u64,
    /// Commit-log segments below this number are fully covered by SSTables and can be deleted.
    pub log_segment_watermark: u64,
    pub tables: Vec<TableEntry>,
}

impl Manifest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserve the id for a new table.
    pub fn alloc_table_id(&mut self) -> u64 {
        let id = self.next_table_id;
        self.next_table_id += 1;
        id
    }

    pub fn table_path(dir: &Path, t: &TableEntry) -> PathBuf {
        dir.join(&t.file_name)
    }

    /// Replace the tables `inputs` by `output` (if any): the in-memory half of a finished
    /// compaction; the caller then stores the manifest and afterwards removes the input files.
    pub fn apply_compaction(&mut self, inputs: &[u64], output: Option<TableEntry>) {
        self.tables.retain(|t| !inputs.contains(&t.id));
        if let Some(o) = output {
            self.tables.push(o);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(64 + self.tables.len() * 96);
        for x in [
            self.generation,
            self.next_table_id,
            self.flushed_upto,
            self.log_segment_watermark,
        ] {
            body.extend_from_slice(&x.to_le_bytes());
        }
        body.extend_from_slice(&(self.tables.len() as u32).to_le_bytes());
        for t in &self.tables {
            debug_assert!(t.file_name.len() <= MAX_NAME);
            body.extend_from_slice(&t.id.to_le_bytes());
            body.extend_from_slice(&t.tier.to_le_bytes());
            body.extend_from_slice(&(t.file_name.len() as u16).to_le_bytes());
            body.extend_from_slice(t.file_name.as_bytes());
            let m = &t.meta;
            for x in [
                m.file_size,
                m.entry_count,
                m.tombstone_count,
                m.min_token,
                m.max_token,
                m.min_seqno,
                m.max_seqno,
            ] {
                body.extend_from_slice(&x.to_le_bytes());
            }
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + ALIGN as usize);
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&FORMAT.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        let padded = (out.len() as u64).div_ceil(ALIGN) * ALIGN;
        out.resize(padded as usize, 0);
        out
    }

    pub fn decode(path: &Path, buf: &[u8]) -> Result<Manifest> {
        let bad = |at: usize, w: &str| StorageError::corrupt(path, at as u64, w.to_string());
        let buf = Bytes::copy_from_slice(buf);
        let mut c = super::sstable::Cursor::new(&buf);
        let trunc = |at| bad(at, "manifest truncated");
        if c.u64().ok_or_else(|| trunc(0))? != MAGIC {
            return Err(bad(0, "bad magic: not a tern manifest"));
        }
        let format = c.u32().ok_or_else(|| trunc(8))?;
        if format != FORMAT {
            return Err(bad(8, &format!("unsupported manifest format {format}")));
        }
        let body_len = c.u32().ok_or_else(|| trunc(12))? as usize;
        let crc = c.u32().ok_or_else(|| trunc(16))?;
        let body = c.bytes(body_len).ok_or_else(|| trunc(HEADER_LEN))?;
        if crc32fast::hash(&body) != crc {
            return Err(bad(HEADER_LEN, "manifest checksum mismatch"));
        }
        let mut c = super::sstable::Cursor::new(&body);
        let at = |c: &super::sstable::Cursor<'_>| HEADER_LEN + c.pos;
        let mut h = [0u64; 4];
        for x in &mut h {
            *x = c.u64().ok_or_else(|| trunc(at(&c)))?;
        }
        let n = c.u32().ok_or_else(|| trunc(at(&c)))? as usize;
        if n > MAX_TABLES {
            return Err(bad(at(&c), "manifest table count out of range"));
        }
        let mut tables = Vec::with_capacity(n);
        for _ in 0..n {
            let start = at(&c);
            let id = c.u64().ok_or_else(|| trunc(start))?;
            let tier = c.u32().ok_or_else(|| trunc(start))?;
            let nl = c.u16().ok_or_else(|| trunc(start))? as usize;
            let name = c.bytes(nl).ok_or_else(|| trunc(start))?;
            let file_name = std::str::from_utf8(&name)
                .map_err(|_| bad(start, "table file name is not UTF-8"))?
                .to_string();
            if nl > MAX_NAME || file_name.contains('/') || file_name.is_empty() {
                return Err(bad(start, "table file name is not a plain file name"));
            }
            let mut m = [0u64; 7];
            for x in &mut m {
                *x = c.u64().ok_or_else(|| trunc(start))?;
            }
            tables.push(TableEntry {
                id,
                tier,
                file_name,
                meta: SstMeta {
                    file_size: m[0],
                    entry_count: m[1],
                    tombstone_count: m[2],
                    min_token: m[3],
                    max_token: m[4],
                    min_seqno: m[5],
                    max_seqno: m[6],
                },
            });
        }
        if c.remaining() != 0 {
            return Err(bad(at(&c), "trailing bytes in manifest body"));
        }
        let m = Manifest {
            generation: h[0],
            next_table_id: h[1],
            flushed_upto: h[2],
            log_segment_watermark: h[3],
            tables,
        };
        if m.tables.iter().any(|t| t.id >= m.next_table_id) {
            return Err(bad(HEADER_LEN, "a table id is not below next_table_id"));
        }
        Ok(m)
    }

    /// Durably replace `dir/MANIFEST` with this manifest (bumping `generation`).
    pub async fn store<D: Disk>(&mut self, disk: &D, dir: &Path) -> Result<()> {
        self.generation += 1;
        let bytes = self.encode();
        let tmp = dir.join(MANIFEST_TMP);
        let dst = dir.join(MANIFEST_FILE);
        let f = disk
            .create(&tmp)
            .await
            .map_err(|e| StorageError::io(&tmp, "create", e))?;
        f.write_at(&bytes, 0)
            .await
            .map_err(|e| StorageError::io(&tmp, "write", e))?;
        f.sync()
            .await
            .map_err(|e| StorageError::io(&tmp, "sync", e))?;
        f.close()
            .await
            .map_err(|e| StorageError::io(&tmp, "close", e))?;
        disk.rename(&tmp, &dst)
            .await
            .map_err(|e| StorageError::io(&dst, "rename", e))?;
        disk.sync_dir(dir)
            .await
            .map_err(|e| StorageError::io(dir, "sync_dir", e))?;
        tracing::debug!(dir = %dir.display(), generation = self.generation,
            tables = self.tables.len(), "manifest stored");
        Ok(())
    }

    /// Load `dir/MANIFEST`; `Ok(None)` if there is none (a fresh shard).
    pub async fn load<D: Disk>(disk: &D, dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE);
        let f = match disk.open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(&path, "open", e)),
        };
        let size = f
            .size()
            .await
            .map_err(|e| StorageError::io(&path, "stat", e))?;
        // A manifest of MAX_TABLES entries is well under 32 MiB.
        if size > 32 << 20 {
            return Err(StorageError::corrupt(
                &path,
                0,
                "manifest is implausibly large",
            ));
        }
        let buf = f
            .read_at(0, size as usize)
            .await
            .map_err(|e| StorageError::io(&path, "read", e))?;
        f.close()
            .await
            .map_err(|e| StorageError::io(&path, "close", e))?;
        Manifest::decode(&path, &buf).map(Some)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::storage::testdisk::{block_on, MemDisk};

    fn sample() -> Manifest {
        let mut m = Manifest::new();
        for tier in 0..3 {
            let id = m.alloc_table_id();
            m.tables.push(TableEntry {
                id,
                tier,
                file_name: sst_file_name(id),
                meta: SstMeta {
                    file_size: 4096 * (id + 1),
                    entry_count: 10 + id,
                    tombstone_count: 1,
                    min_token: 5,
                    max_token: u64::MAX - id,
                    min_seqno: id * 100,
                    max_seqno: id * 100 + 99,
                },
            });
        }
        m.flushed_upto = 299;
        m.log_segment_watermark = 4;
        m
    }

    #[test]
    fn store_load_roundtrip_and_replace() {
        block_on(async {
            let disk = MemDisk::default();
            let dir = Path::new("/shard0");
            assert_eq!(Manifest::load(&disk, dir).await.unwrap(), None);
            let mut m = sample();
            m.store(&disk, dir).await.unwrap();
            assert_eq!(m.generation, 1);
            assert_eq!(Manifest::load(&disk, dir).await.unwrap(), Some(m.clone()));
            m.apply_compaction(&[0, 1], None);
            m.store(&disk, dir).await.unwrap();
            let back = Manifest::load(&disk, dir).await.unwrap().unwrap();
            assert_eq!(back.tables.len(), 1);
            assert_eq!(back.generation, 2);
            assert!(
                disk.bytes(&dir.join(MANIFEST_TMP)).is_none(),
                "tmp must be renamed away"
            );
        });
    }

    #[test]
    fn every_flipped_byte_is_corrupt() {
        let m = sample();
        let enc = m.encode();
        let p = Path::new("/s/MANIFEST");
        assert_eq!(Manifest::decode(p, &enc).unwrap(), m);
        let used = HEADER_LEN + u32::from_le_bytes([enc[12], enc[13], enc[14], enc[15]]) as usize;
        for i in 0..used {
            let mut b = enc.clone();
            b[i] ^= 0x10;
            let e = Manifest::decode(p, &b).unwrap_err();
            assert!(e.is_corrupt(), "byte {i}: {e}");
            assert!(e.to_string().contains("/s/MANIFEST"));
        }
        assert!(Manifest::decode(p, &enc[..30]).unwrap_err().is_corrupt());
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let p = Path::new("/s/MANIFEST");
            // Also with a valid header + crc around the random body, to reach the body parser.
            let mut framed = Vec::new();
            framed.extend_from_slice(&MAGIC.to_le_bytes());
            framed.extend_from_slice(&FORMAT.to_le_bytes());
            framed.extend_from_slice(&(data.len() as u32).to_le_bytes());
            framed.extend_from_slice(&crc32fast::hash(&data).to_le_bytes());
            framed.extend_from_slice(&data);
            let _ = Manifest::decode(p, &data);
            let _ = Manifest::decode(p, &framed);
        }
    }
}
