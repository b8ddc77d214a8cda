//! Test-only in-memory `Disk` and a `block_on` for its never-pending futures, so storage unit
//! tests run without an executor. Enforces the `Disk` alignment contract so tests catch
//! unaligned writes/reads the real O_DIRECT files would reject.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::runtime::disk::{Disk, DiskFile, ALIGN};

type Data = Rc<RefCell<Vec<u8>>>;

#[derive(Clone, Default)]
pub(crate) struct MemDisk {
    files: Rc<RefCell<HashMap<PathBuf, Data>>>,
}

pub(crate) struct MemFile {
    data: Data,
}

fn einval(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

impl MemDisk {
    pub(crate) fn bytes(&self, path: &Path) -> Option<Vec<u8>> {
        self.files.borrow().get(path).map(|d| d.borrow().clone())
    }
    pub(crate) fn flip_byte(&self, path: &Path, offset: usize) {
        if let Some(d) = self.files.borrow().get(path) {
            d.borrow_mut()[offset] ^= 0x5a;
        }
    }
}

impl Disk for MemDisk {
    type File = MemFile;
    async fn create(&self, path: &Path) -> io::Result<MemFile> {
        let data: Data = Rc::default();
        self.files
            .borrow_mut()
            .insert(path.to_path_buf(), data.clone());
        Ok(MemFile { data })
    }
    async fn open(&self, path: &Path) -> io::Result<MemFile> {
        match self.files.borrow().get(path) {
            Some(d) => Ok(MemFile { data: d.clone() }),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }
    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.files
            .borrow_mut()
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut f = self.files.borrow_mut();
        let d = f
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        f.insert(to.to_path_buf(), d);
        Ok(())
    }
    async fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(self
            .files
            .borrow()
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }
    async fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    async fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

impl DiskFile for MemFile {
    async fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if offset % ALIGN != 0 || buf.len() as u64 % ALIGN != 0 {
            return Err(einval("unaligned write"));
        }
        let mut d = self.data.borrow_mut();
        let end = offset as usize + buf.len();
        if d.len() < end {
            d.resize(end, 0);
        }
        d[offset as usize..end].copy_from_slice(buf);
        Ok(())
    }
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        if offset % ALIGN != 0 {
            return Err(einval("unaligned read"));
        }
        let d = self.data.borrow();
        let s = (offset as usize).min(d.len());
        let e = (s + len).min(d.len());
        Ok(d[s..e].to_vec())
    }
    async fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    async fn size(&self) -> io::Result<u64> {
        Ok(self.data.borrow().len() as u64)
    }
    async fn preallocate(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.data.borrow_mut().resize(len as usize, 0);
        Ok(())
    }
    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}

/// Run a future whose leaves are all `MemDisk` calls (which never return `Pending`).
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("MemDisk future returned Pending"),
    }
}
