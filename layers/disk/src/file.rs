//! `FileDisk`: an image file or a block device, with positional I/O and `fdatasync`, locked
//! for the lifetime of the handle (see `lock.rs`).

use crate::block::{Addr, Block, BLOCK_SIZE};
use crate::error::{DiskError, LockMode, Result};
use crate::lock::lock_image;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::Disk;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A disk backed by a file or block device. `read`/`write` are `pread`/`pwrite` of one block,
/// `sync` is `fdatasync`. Safe to share between threads: positional I/O needs no seek lock.
///
/// A handle opened for writing holds an exclusive lock on its image, a read-only one a shared
/// lock, until it is dropped: a second writer, or a reader beside a writer, in this process or
/// any other, gets [`DiskError::Locked`] at once.
#[derive(Debug)]
pub struct FileDisk {
    file: File,
    path: PathBuf,
    size_blocks: u64,
    read_only: bool,
    syncs: AtomicU64,
    /// `bugs::Bug::SyncWithoutFdatasync` was on for this path when it was opened.
    #[cfg(feature = "deliberate-bugs")]
    skip_fdatasync: bool,
}

impl FileDisk {
    /// Creates a new image of `size_blocks` zero blocks, locked exclusively; fails if `path`
    /// exists.
    pub fn create(path: impl AsRef<Path>, size_blocks: u64) -> Result<FileDisk> {
        let path = path.as_ref();
        if size_blocks == 0 {
            return Err(DiskError::Empty { path: show(path) });
        }
        let open_err = |source| DiskError::Open {
            path: show(path),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(open_err)?;
        lock_image(&file, &show(path), LockMode::Exclusive)?;
        let size_bytes = size_blocks
            .checked_mul(BLOCK_SIZE as u64)
            .ok_or_else(|| open_err(std::io::Error::other("size overflows")))?;
        preallocate(&file, size_bytes).map_err(open_err)?;
        // The new size and the directory entry must survive a crash before anyone relies on them.
        file.sync_all().map_err(open_err)?;
        Ok(FileDisk::from_parts(file, path, size_blocks, false))
    }

    /// Opens an existing image or block device for reading and writing, locked exclusively (a
    /// block device also with `O_EXCL`).
    pub fn open(path: impl AsRef<Path>) -> Result<FileDisk> {
        FileDisk::open_with(path.as_ref(), false)
    }

    /// Opens an existing image read-only, with a shared lock: every `write` fails (the inspector
    /// uses this), and an image a writer holds is refused.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<FileDisk> {
        FileDisk::open_with(path.as_ref(), true)
    }

    fn open_with(path: &Path, read_only: bool) -> Result<FileDisk> {
        let open_err = |source| DiskError::Open {
            path: show(path),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).write(!read_only);
        let exclusive_device = !read_only && is_block_device(path);
        if exclusive_device {
            // The kernel refuses a device that is mounted or that another program holds
            // exclusively, which a file lock alone would not see.
            options.custom_flags(libc::O_EXCL);
        }
        let mut file = options.open(path).map_err(|source| {
            if exclusive_device && source.raw_os_error() == Some(libc::EBUSY) {
                let source = std::io::Error::new(
                    source.kind(),
                    "device busy: mounted, or held exclusively by another program",
                );
                return DiskError::Open {
                    path: show(path),
                    source,
                };
            }
            open_err(source)
        })?;
        let mode = if read_only {
            LockMode::Shared
        } else {
            LockMode::Exclusive
        };
        lock_image(&file, &show(path), mode)?;
        // Seeking to the end works for block devices, whose metadata length is 0.
        let size_bytes = file.seek(SeekFrom::End(0)).map_err(open_err)?;
        if size_bytes % BLOCK_SIZE as u64 != 0 {
            return Err(DiskError::BadSize {
                path: show(path),
                size_bytes,
            });
        }
        let size_blocks = size_bytes / BLOCK_SIZE as u64;
        if size_blocks == 0 {
            return Err(DiskError::Empty { path: show(path) });
        }
        Ok(FileDisk::from_parts(file, path, size_blocks, read_only))
    }

    fn from_parts(file: File, path: &Path, size_blocks: u64, read_only: bool) -> FileDisk {
        FileDisk {
            file,
            path: path.to_path_buf(),
            size_blocks,
            read_only,
            syncs: AtomicU64::new(0),
            #[cfg(feature = "deliberate-bugs")]
            skip_fdatasync: crate::bugs::active_for(crate::bugs::Bug::SyncWithoutFdatasync, path),
        }
    }

    /// The image file or device this disk was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of successful `sync` calls so far (how group commit is observed).
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    fn offset(&self, addr: Addr) -> Result<u64> {
        self.check_addr(addr)?;
        Ok(addr * BLOCK_SIZE as u64)
    }
}

/// Reserves every block of a new image up front, so that writing it later cannot fail for lack
/// of space. `posix_fallocate` leaves *unwritten* extents: the first overwrite of such a block
/// still needs a file-system metadata update (the extent's conversion to written), which the
/// following `fdatasync` carries. A region that must be overwritten and synced on the commit
/// path without that dependency is written for real by its layer's `format` (the log region
/// and every metadata block are: see `docs/FORMAT.md`). Falls back to a sparse file where the
/// file system cannot preallocate.
fn preallocate(file: &File, size_bytes: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let length = libc::off_t::try_from(size_bytes)
        .map_err(|_| std::io::Error::other("size overflows off_t"))?;
    // SAFETY: the descriptor is open for writing and owned by `file` for the whole call.
    let status = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, length) };
    match status {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(size_bytes),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// Blocks per `pwritev` call (the kernel's `IOV_MAX`).
const MAX_IOVECS: usize = 1024;

impl FileDisk {
    /// One `pwritev` of `blocks` at `start`, finishing a short write block by block.
    fn pwritev_all(&self, start: Addr, blocks: &[&Block]) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let iovecs: Vec<libc::iovec> = blocks
            .iter()
            .map(|block| libc::iovec {
                iov_base: block.as_bytes().as_ptr() as *mut libc::c_void,
                iov_len: BLOCK_SIZE,
            })
            .collect();
        let offset = libc::off_t::try_from(start * BLOCK_SIZE as u64)
            .map_err(|_| std::io::Error::other("offset overflows off_t"))?;
        // SAFETY: every iovec points at a live block of BLOCK_SIZE bytes borrowed for the call,
        // the count is at most IOV_MAX, and the descriptor is owned by `self.file`.
        let written = unsafe {
            libc::pwritev(
                self.file.as_raw_fd(),
                iovecs.as_ptr(),
                iovecs.len() as libc::c_int,
                offset,
            )
        };
        let written = usize::try_from(written).map_err(|_| std::io::Error::last_os_error())?;
        // A short write (rare on files): write what is left with plain positional writes.
        let (done_blocks, done_bytes) = (written / BLOCK_SIZE, written % BLOCK_SIZE);
        for (index, block) in blocks.iter().enumerate().skip(done_blocks) {
            let skip = if index == done_blocks { done_bytes } else { 0 };
            let at = (start + index as u64) * BLOCK_SIZE as u64 + skip as u64;
            self.file.write_all_at(&block.as_bytes()[skip..], at)?;
        }
        Ok(())
    }
}

fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|metadata| metadata.file_type().is_block_device())
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

impl Disk for FileDisk {
    fn size_blocks(&self) -> u64 {
        self.size_blocks
    }

    fn read(&self, addr: Addr) -> Result<Block> {
        let offset = self.offset(addr)?;
        let mut block = Block::zeroed();
        self.file
            .read_exact_at(block.as_bytes_mut(), offset)
            .map_err(|source| DiskError::Io {
                op: "read",
                addr,
                source,
            })?;
        Ok(block)
    }

    fn write(&self, addr: Addr, block: &Block) -> Result<()> {
        let offset = self.offset(addr)?;
        if self.read_only {
            let source = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "read-only");
            return Err(DiskError::Io {
                op: "write",
                addr,
                source,
            });
        }
        self.file
            .write_all_at(block.as_bytes(), offset)
            .map_err(|source| DiskError::Io {
                op: "write",
                addr,
                source,
            })
    }

    fn write_run(&self, start: Addr, blocks: &[&Block]) -> Result<()> {
        let Some(last) = (blocks.len() as u64).checked_sub(1) else {
            return Ok(());
        };
        self.check_addr(start)?;
        self.check_addr(start.saturating_add(last))?;
        if self.read_only {
            let source = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "read-only");
            return Err(DiskError::Io {
                op: "write",
                addr: start,
                source,
            });
        }
        for (index, chunk) in blocks.chunks(MAX_IOVECS).enumerate() {
            let chunk_start = start + (index * MAX_IOVECS) as u64;
            self.pwritev_all(chunk_start, chunk)
                .map_err(|source| DiskError::Io {
                    op: "write",
                    addr: chunk_start,
                    source,
                })?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        #[cfg(feature = "deliberate-bugs")]
        if self.skip_fdatasync {
            self.syncs.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        match self.file.sync_data() {
            Ok(()) => {
                self.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                // The kernel may have dropped the dirty pages: what was written since the last
                // good sync is gone, and a later sync could falsely succeed. Report it as such.
                tracing::error!(path = %self.path.display(), %error, "fdatasync failed");
                Err(DiskError::SyncFailed)
            }
        }
    }
}
