//! `GlommioDisk`: the production [`Disk`] over glommio `DmaFile`s (O_DIRECT, io_uring).
//!
//! Owns only the translation from the `Disk` contract to glommio calls: every write is copied
//! into a DMA buffer from the reactor's pool, `sync` is `fdatasync`, `preallocate` is
//! `fallocate(KEEP_SIZE)` and `sync_dir` fsyncs the directory. It must be used from inside a
//! glommio executor (every method awaits the reactor of the current thread). Knows no formats.
//!
//! Errors keep their `io::ErrorKind`; `ENOSPC` surfaces as `ErrorKind::StorageFull`, which
//! [`is_disk_full`] recognises so the storage engine can report `DiskFull`.

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::{Directory, DmaFile, OpenOptions};
use glommio::GlommioError;

use super::disk::{Disk, DiskFile, ALIGN};

/// True when `e` means the device has no space left (ENOSPC / EDQUOT).
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
}

/// Converts a glommio error to `io::Error`, keeping the OS error code (glommio's own
/// conversion keeps only the kind) so ENOSPC stays recognisable.
fn to_io<T>(e: GlommioError<T>) -> io::Error {
    match e {
        GlommioError::EnhancedIoError {
            source, op, path, ..
        } => {
            let msg = format!(
                "{op} {}: {source}",
                path.as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            match source.raw_os_error() {
                Some(code) => {
                    let base = io::Error::from_raw_os_error(code);
                    io::Error::new(base.kind(), msg)
                }
                None => io::Error::new(source.kind(), msg),
            }
        }
        other => io::Error::from(other),
    }
}

/// glommio probes io_uring IOPOLL support per device by reading the first block of the first
/// DMA file opened; when that file is empty (a fresh `create`) the read never reaches the device,
/// the probe wrongly reports support, and every later read fails with EOPNOTSUPP (seen on
/// virtio disks). So before the first open in this process we open a file that has one real
/// block, which makes the probe exercise the device. The result is cached by glommio per device.
static PROBED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

async fn ensure_iopoll_probed(path: &Path) -> io::Result<()> {
    use std::sync::atomic::Ordering;
    if PROBED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let probe = dir.join(format!(".tern-iopoll-probe-{}", std::process::id()));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&probe)?;
        f.write_all(&[0u8; ALIGN as usize])?;
        f.sync_all()?;
    }
    let opened = OpenOptions::new().read(true).dma_open(&probe).await;
    let _ = std::fs::remove_file(&probe);
    opened.map_err(to_io)?.close().await.map_err(to_io)?;
    PROBED.store(true, Ordering::Relaxed);
    Ok(())
}

/// The real disk: glommio DMA files. Zero-sized; cheap to create per shard.
#[derive(Debug, Default, Clone, Copy)]
pub struct GlommioDisk;

impl GlommioDisk {
    pub fn new() -> Self {
        GlommioDisk
    }
}

/// One open DMA file.
#[derive(Debug)]
pub struct GlommioFile {
    file: DmaFile,
}

impl Disk for GlommioDisk {
    type File = GlommioFile;

    async fn create(&self, path: &Path) -> io::Result<GlommioFile> {
        ensure_iopoll_probed(path).await?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(path)
            .await
            .map_err(to_io)?;
        Ok(GlommioFile { file })
    }

    async fn open(&self, path: &Path) -> io::Result<GlommioFile> {
        ensure_iopoll_probed(path).await?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(to_io)?;
        Ok(GlommioFile { file })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        glommio::io::remove(path).await.map_err(to_io)
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        glommio::io::rename(from, to).await.map_err(to_io)
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        // Directory listings are rare (start-up only), so the blocking std call is fine.
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            out.push(entry?.path());
        }
        Ok(out)
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // glommio 0.9 opens directories relative to fd -1, not AT_FDCWD: a relative path (the
        // default data dir is `./tern-data`) fails with EBADF. Resolve it first.
        let dir = std::path::absolute(dir)?;
        let d = Directory::open(&dir).await.map_err(to_io)?;
        d.sync().await.map_err(to_io)?;
        d.close().await.map_err(to_io)
    }
}

impl DiskFile for GlommioFile {
    async fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        debug_assert_eq!(offset % ALIGN, 0, "unaligned write offset");
        debug_assert_eq!(buf.len() as u64 % ALIGN, 0, "unaligned write length");
        let mut dma = self.file.alloc_dma_buffer(buf.len());
        dma.as_bytes_mut().copy_from_slice(buf);
        let mut written = self.file.write_at(dma, offset).await.map_err(to_io)?;
        // A short write on O_DIRECT is rare but legal: finish it rather than lose bytes.
        let mut rounds = 0;
        while written < buf.len() {
            rounds += 1;
            if rounds > 64 || written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!(
                        "short write at offset {offset}: {written} of {} bytes",
                        buf.len()
                    ),
                ));
            }
            let rest = &buf[written..];
            let mut dma = self.file.alloc_dma_buffer(rest.len());
            dma.as_bytes_mut().copy_from_slice(rest);
            written += self
                .file
                .write_at(dma, offset + written as u64)
                .await
                .map_err(to_io)?;
        }
        Ok(())
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        // Align by hand: glommio's unaligned `read_at` over-reports the length of a short read
        // at end of file (it forgets the skipped head), returning bytes past EOF.
        let start = offset - offset % ALIGN;
        let head = (offset - start) as usize;
        let span = (head + len).div_ceil(ALIGN as usize) * ALIGN as usize;
        let r = self
            .file
            .read_at_aligned(start, span)
            .await
            .map_err(to_io)?;
        if r.len() <= head {
            return Ok(Vec::new());
        }
        let end = r.len().min(head + len);
        Ok(r[head..end].to_vec())
    }

    async fn sync(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(to_io)
    }

    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(to_io)
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        self.file.pre_allocate(len, true).await.map_err(to_io)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len).await.map_err(to_io)
    }

    async fn close(self) -> io::Result<()> {
        self.file.close().await.map_err(to_io)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;

    fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        LocalExecutorBuilder::default()
            .spawn(move || async move { f().await })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn write_sync_read_rename_list() {
        let dir = std::env::temp_dir().join(format!("tern-gd-{}", std::process::id()));
        let d2 = dir.clone();
        run(move || async move {
            let disk = GlommioDisk::new();
            disk.create_dir_all(&d2).await.unwrap();
            let p = d2.join("a");
            let f = disk.create(&p).await.unwrap();
            f.preallocate(1 << 20).await.unwrap();
            let mut page = vec![0u8; 8192];
            page[..5].copy_from_slice(b"hello");
            page[4096..4101].copy_from_slice(b"world");
            f.write_at(&page, 4096).await.unwrap();
            f.sync().await.unwrap();
            assert_eq!(f.size().await.unwrap(), 12288);
            let r = f.read_at(4096, 5).await.unwrap();
            assert_eq!(&r, b"hello");
            let r = f.read_at(8192, 100).await.unwrap();
            assert_eq!(&r[..5], b"world");
            assert_eq!(r.len(), 100);
            // Short read at end of file.
            let r = f.read_at(12000, 1000).await.unwrap();
            assert_eq!(r.len(), 288);
            f.close().await.unwrap();
            let q = d2.join("b");
            disk.rename(&p, &q).await.unwrap();
            disk.sync_dir(&d2).await.unwrap();
            let names = disk.list(&d2).await.unwrap();
            assert_eq!(names, vec![q.clone()]);
            let f = disk.open(&q).await.unwrap();
            assert_eq!(&f.read_at(4096, 5).await.unwrap(), b"hello");
            f.truncate(4096).await.unwrap();
            assert_eq!(f.size().await.unwrap(), 4096);
            f.close().await.unwrap();
            disk.remove(&q).await.unwrap();
            assert!(disk.open(&q).await.is_err());
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sync_dir_takes_a_relative_path() {
        // The default data dir is relative (`./tern-data`); glommio resolves directories
        // against fd -1 unless the path is absolute.
        let rel = PathBuf::from(format!("target/tern-gd-rel-{}", std::process::id()));
        std::fs::create_dir_all(&rel).unwrap();
        let r2 = rel.clone();
        run(move || async move {
            GlommioDisk::new().sync_dir(&r2).await.unwrap();
        });
        let _ = std::fs::remove_dir_all(&rel);
    }

    #[test]
    fn enospc_is_recognised() {
        assert!(is_disk_full(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(!is_disk_full(&io::Error::from_raw_os_error(libc::ENOENT)));
    }
}
