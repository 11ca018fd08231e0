//! # txdisk — a crash-safe transactional logical disk
//!
//! The façade crate: it re-exports the layers of the stack, bottom to top, and assembles them.
//!
//! * [`disk`] — the `Disk` trait, `FileDisk` and the simulated asynchronous `SimDisk`.
//! * [`replicated`] — one disk over two unreliable ones.
//! * [`log`] — the write-ahead log: atomic transactions, group commit, idempotent recovery.
//! * [`logical`] — the logical disk: serializable transactions for many threads.
//!
//! [`format()`] makes an image (or a replicated pair of images); [`open`] gives a ready
//! [`Stack`] — a [`LogicalDisk`] after replica recovery and then log recovery.
//!
//! ```no_run
//! # fn main() -> Result<(), txdisk::Error> {
//! use txdisk::{Block, FormatOptions};
//! let images = ["a.img", "b.img"];
//! txdisk::format(&images, &FormatOptions { size_blocks: 16_384, log_blocks: 1024 })?;
//! let stack = txdisk::open(&images, txdisk::OpenOptions::default())?;
//! stack.transaction(|tx| {
//!     tx.write(7, &Block::filled(1))?;
//!     tx.write(8, &Block::filled(2))
//! })?;
//! stack.close()?;
//! # Ok(()) }
//! ```

pub use txdisk_disk as disk;
pub use txdisk_log as log;
pub use txdisk_logical as logical;
pub use txdisk_replicated as replicated;

pub use txdisk_disk::{Addr, Block, Disk, FileDisk, BLOCK_SIZE};
pub use txdisk_log::LogOptions;
pub use txdisk_logical::{LogicalDisk, LogicalError, Transaction};

use std::path::Path;
use std::sync::Arc;
use txdisk_replicated::{ReplicatedDisk, ReplicatedError};

/// Errors of assembling the stack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Disk(#[from] txdisk_disk::DiskError),
    #[error(transparent)]
    Replicated(#[from] ReplicatedError),
    #[error(transparent)]
    Log(#[from] txdisk_log::LogError),
    #[error(transparent)]
    Logical(#[from] LogicalError),
    #[error("give one image, or two for a replicated pair (got {count})")]
    ImageCount { count: usize },
    #[error("the replicated pair is still in use and cannot be closed cleanly")]
    PairInUse,
}

/// Geometry of a new image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormatOptions {
    /// Size of each image file, in 4096-byte blocks.
    pub size_blocks: u64,
    /// Blocks of the circular log (the rest, less a few metadata blocks, is the data region).
    pub log_blocks: u64,
}

/// How to open a stack.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    pub log: LogOptions,
}

/// The assembled stack: a logical disk, and the replicated pair under it when there is one.
pub struct Stack {
    logical: LogicalDisk,
    pair: Option<Arc<ReplicatedDisk<FileDisk>>>,
}

impl std::ops::Deref for Stack {
    type Target = LogicalDisk;
    fn deref(&self) -> &LogicalDisk {
        &self.logical
    }
}

impl Stack {
    /// The replicated pair under the log, if the stack was opened on two images.
    pub fn pair(&self) -> Option<&ReplicatedDisk<FileDisk>> {
        self.pair.as_deref()
    }

    /// Flushes and installs everything, and marks a replicated pair clean (so the next open
    /// copies nothing).
    pub fn close(self) -> Result<(), Error> {
        self.logical.close()?;
        if let Some(pair) = self.pair {
            let pair = Arc::try_unwrap(pair).map_err(|_| Error::PairInUse)?;
            pair.close()?;
        }
        Ok(())
    }
}

/// Creates new image files (one, or two for a replicated pair) and formats them.
pub fn format(images: &[impl AsRef<Path>], options: &FormatOptions) -> Result<(), Error> {
    match images {
        [single] => {
            let disk = FileDisk::create(single, options.size_blocks)?;
            LogicalDisk::format(&disk, options.log_blocks)?;
        }
        [first, second] => {
            let d1 = FileDisk::create(first, options.size_blocks)?;
            let d2 = FileDisk::create(second, options.size_blocks)?;
            // Both files are new and read as zeros: they are equal without a copy.
            let pair_options = txdisk_replicated::FormatOptions {
                pair_id: None,
                assume_equal: true,
            };
            ReplicatedDisk::format(&d1, &d2, &pair_options)?;
            let pair = ReplicatedDisk::open(d1, d2, &mut |_| {})?;
            LogicalDisk::format(&pair, options.log_blocks)?;
            pair.close()?;
        }
        _ => {
            return Err(Error::ImageCount {
                count: images.len(),
            })
        }
    }
    Ok(())
}

/// Opens one image, or a replicated pair (running replica recovery, or rebuilding a blank
/// replacement file), then the log (running log recovery): a ready logical disk.
pub fn open(images: &[impl AsRef<Path>], options: OpenOptions) -> Result<Stack, Error> {
    open_with_progress(images, options, &mut |_| {})
}

/// As [`open`], reporting the progress of a replica resync or rebuild.
pub fn open_with_progress(
    images: &[impl AsRef<Path>],
    options: OpenOptions,
    progress: &mut dyn FnMut(txdisk_replicated::Progress),
) -> Result<Stack, Error> {
    let (disk, pair): (Arc<dyn Disk>, _) = match images {
        [single] => (Arc::new(FileDisk::open(single)?), None),
        [first, second] => {
            let pair = Arc::new(ReplicatedDisk::open(
                FileDisk::open(first)?,
                FileDisk::open(second)?,
                progress,
            )?);
            (pair.clone(), Some(pair))
        }
        _ => {
            return Err(Error::ImageCount {
                count: images.len(),
            })
        }
    };
    let logical = LogicalDisk::open(disk, options.log)?;
    Ok(Stack { logical, pair })
}
