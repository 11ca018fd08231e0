//! What an export serves: the [`ExportBackend`] trait and two plain backends.
//!
//! [`MemBackend`] keeps the export in memory (for tests: every write is atomic against
//! concurrent reads, nothing survives the process). [`FileBackend`] is a plain file written in
//! place with `pwrite` and made durable with `fdatasync`: the same guarantees as a raw disk, so
//! a write cut by a crash can be torn. It is the non-atomic reference the transactional
//! logical disk is compared against.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::error::BackendError;

/// What an NBD export serves. The server checks every range against `size_bytes` before it
/// calls in, but implementations check again (they are also called directly).
///
/// The server calls these methods from several threads at once (pipelined requests and
/// several connections share one backend).
pub trait ExportBackend: Send + Sync + 'static {
    /// Size of the export in bytes; constant while it is served.
    fn size_bytes(&self) -> u64;

    /// Read `buf.len()` bytes at `offset` (any alignment).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError>;

    /// Write `data` at `offset` (any alignment). A transactional backend applies it as one
    /// atomic transaction. If `fua`, the write is durable before this returns.
    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError>;

    /// Make every write that has returned Ok durable.
    fn flush(&self) -> Result<(), BackendError>;

    /// Discard `len` bytes at `offset`: the client may not assume anything about their
    /// contents until it writes them again. The default does nothing (a valid discard).
    fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), BackendError> {
        let _ = (fua, len, offset);
        Ok(())
    }
}

/// Err unless `[offset, offset + len)` lies inside an export of `size_bytes`.
pub fn check_range(offset: u64, len: u64, size_bytes: u64) -> Result<(), BackendError> {
    match offset.checked_add(len) {
        Some(end) if end <= size_bytes => Ok(()),
        _ => Err(BackendError::OutOfRange {
            offset_bytes: offset,
            len_bytes: len,
            size_bytes,
        }),
    }
}

/// An export held in memory. Writes and trims take an exclusive lock, so each is atomic
/// with respect to concurrent reads. `flush` only counts calls (memory is as durable as it
/// gets); trim writes zeroes, so tests can see it arrive.
pub struct MemBackend {
    data: RwLock<Vec<u8>>,
    size_bytes: u64,
    flushes: AtomicU64,
    fua_writes: AtomicU64,
}

impl MemBackend {
    /// An all-zero export of `size_bytes`.
    pub fn new(size_bytes: usize) -> MemBackend {
        MemBackend::from_bytes(vec![0u8; size_bytes])
    }

    /// An export holding exactly `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> MemBackend {
        let size_bytes = bytes.len() as u64;
        MemBackend {
            data: RwLock::new(bytes),
            size_bytes,
            flushes: AtomicU64::new(0),
            fua_writes: AtomicU64::new(0),
        }
    }

    /// A copy of the whole export.
    pub fn snapshot(&self) -> Vec<u8> {
        self.data.read().clone()
    }

    /// How many times `flush` was called.
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }

    /// How many writes asked for FUA.
    pub fn fua_write_count(&self) -> u64 {
        self.fua_writes.load(Ordering::SeqCst)
    }

    /// The rep invariant: the buffer never changes size.
    pub fn check_rep(&self) {
        let len = self.data.read().len() as u64;
        assert_eq!(
            len, self.size_bytes,
            "nbd MemBackend: buffer is {len} bytes, export is {} bytes",
            self.size_bytes
        );
    }

    fn range(&self, offset: u64, len: usize) -> Result<std::ops::Range<usize>, BackendError> {
        check_range(offset, len as u64, self.size_bytes)?;
        // In range of a Vec's length, so both fit in usize.
        let start = offset as usize;
        Ok(start..start + len)
    }
}

impl ExportBackend for MemBackend {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let range = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.data.read()[range]);
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        let range = self.range(offset, data.len())?;
        self.data.write()[range].copy_from_slice(data);
        if fua {
            self.fua_writes.fetch_add(1, Ordering::SeqCst);
        }
        #[cfg(debug_assertions)]
        self.check_rep();
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn trim(&self, offset: u64, len: u64, _fua: bool) -> Result<(), BackendError> {
        let len = usize::try_from(len).map_err(|_| BackendError::OutOfRange {
            offset_bytes: offset,
            len_bytes: len,
            size_bytes: self.size_bytes,
        })?;
        let range = self.range(offset, len)?;
        self.data.write()[range].fill(0);
        #[cfg(debug_assertions)]
        self.check_rep();
        Ok(())
    }
}

/// A plain file served in place: `pwrite` for writes, `fdatasync` for FLUSH and FUA, and
/// TRIM ignored (a valid discard). Not atomic: a crash during a write may leave part of it.
/// After a process kill every completed write is in the page cache; after a power loss only
/// what a flush or FUA covered is.
pub struct FileBackend {
    file: File,
    size_bytes: u64,
}

impl FileBackend {
    /// Serves an existing file; the export is the file's current size.
    pub fn open(path: &Path) -> Result<FileBackend, BackendError> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let size_bytes = file.metadata()?.len();
        Ok(FileBackend { file, size_bytes })
    }

    /// Creates (or truncates) a zero-filled file of `size_bytes` and serves it.
    pub fn create(path: &Path, size_bytes: u64) -> Result<FileBackend, BackendError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(size_bytes)?;
        file.sync_all()?;
        Ok(FileBackend { file, size_bytes })
    }
}

impl ExportBackend for FileBackend {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        check_range(offset, buf.len() as u64, self.size_bytes)?;
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        check_range(offset, data.len() as u64, self.size_bytes)?;
        self.file.write_all_at(data, offset)?;
        if fua {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.file.sync_data()?;
        Ok(())
    }

    fn trim(&self, offset: u64, len: u64, _fua: bool) -> Result<(), BackendError> {
        check_range(offset, len, self.size_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_backend_reads_back_writes_and_refuses_out_of_range() {
        let b = MemBackend::new(1000);
        b.write_at(998, b"ab", true).unwrap();
        let mut buf = [0u8; 3];
        b.read_at(997, &mut buf).unwrap();
        assert_eq!(&buf, b"\0ab");
        assert!(matches!(
            b.write_at(999, b"ab", false),
            Err(BackendError::OutOfRange { .. })
        ));
        assert!(b.read_at(u64::MAX, &mut buf).is_err());
        b.trim(998, 2, false).unwrap();
        assert_eq!(b.snapshot()[998..], [0, 0]);
        assert_eq!(b.fua_write_count(), 1);
    }

    #[test]
    fn file_backend_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let b = FileBackend::create(&path, 8192).unwrap();
        b.write_at(4095, b"xyz", false).unwrap();
        b.flush().unwrap();
        assert!(b.write_at(8190, b"xyz", false).is_err());
        drop(b);
        let b = FileBackend::open(&path).unwrap();
        assert_eq!(b.size_bytes(), 8192);
        let mut buf = [0u8; 3];
        b.read_at(4095, &mut buf).unwrap();
        assert_eq!(&buf, b"xyz");
    }

    #[test]
    fn io_errors_map_to_protocol_values() {
        let e = BackendError::Io(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.nbd_errno(), crate::proto::ENOSPC);
        let e = BackendError::Io(std::io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(e.nbd_errno(), crate::proto::EIO);
        assert_eq!(BackendError::ReadOnly.nbd_errno(), crate::proto::EPERM);
    }
}
