#![deny(missing_docs)]
//! # txdisk — a crash-safe transactional logical disk
//!
//! The façade crate: it re-exports the layers of the stack, bottom to top, and assembles them.
//!
//! * [`disk`] — the `Disk` trait, `FileDisk` and the simulated asynchronous `SimDisk`.
//! * [`integrity`] — every block verified on read against a checksum bound to its address and
//!   version: each image (each member of a pair) is one.
//! * [`replicated`] — one disk over two unreliable ones.
//! * [`log`] — the write-ahead log: atomic transactions, group commit, idempotent recovery.
//! * [`logical`] — the logical disk: serializable transactions for many threads.
//!
//! An image is a file, a block device, or an export of an NBD server named by a URI
//! (`nbd://host[:port]/export`, `nbd+unix:///export?socket=PATH`; see [`nbd`]), so that a
//! pair's member can live on another machine.
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
pub use txdisk_integrity as integrity;
pub use txdisk_log as log;
pub use txdisk_logical as logical;
pub use txdisk_replicated as replicated;

pub use txdisk_disk::{Addr, Block, Disk, FileDisk, BLOCK_SIZE};
pub use txdisk_log::LogOptions;
pub use txdisk_logical::{LogicalDisk, LogicalError, Transaction};

mod scrub;
pub use scrub::{scrub, Scrubbed};
pub use txdisk_nbd_disk as nbd;
pub use txdisk_nbd_disk::{nbd_options, nbd_target, Member, NBD_TIMEOUT_ENV};
pub use txdisk_nbd_disk::{NbdDisk, NbdOptions};

use std::path::Path;
use std::sync::Arc;
use txdisk_integrity::{IntegrityDisk, IntegrityError};
use txdisk_replicated::{ReplicatedDisk, ReplicatedError};

/// One image as the stack uses it: a file, a device or an NBD export, whose blocks are
/// checksummed.
pub type Image = IntegrityDisk<Member>;

/// A replicated pair of images, as the stack uses it.
pub type Pair = ReplicatedDisk<Image>;

/// The disk under the log, as [`open_disk`] assembles it.
pub struct OpenedDisk {
    /// The image, or the pair, as one disk.
    pub disk: Arc<dyn Disk>,
    /// The pair, when there are two images.
    pub pair: Option<Arc<Pair>>,
}

/// Errors of assembling the stack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image file could not be opened, created or used as a disk.
    #[error(transparent)]
    Disk(#[from] txdisk_disk::DiskError),
    /// An image is not a checksummed txdisk image (blank, of an older format, damaged
    /// superblocks).
    #[error("{path}: {source}")]
    Image {
        /// The image.
        path: String,
        /// Why it was refused.
        #[source]
        source: IntegrityError,
    },
    /// The replicated pair refused to format, open or close.
    #[error(transparent)]
    Replicated(#[from] ReplicatedError),
    /// The log refused to format or open the image.
    #[error(transparent)]
    Log(#[from] txdisk_log::LogError),
    /// The logical disk failed.
    #[error(transparent)]
    Logical(#[from] LogicalError),
    /// An NBD export could not be opened as a member.
    #[error(transparent)]
    Nbd(#[from] txdisk_nbd_disk::NbdError),
    /// An NBD export given to `format` that cannot be formatted as asked.
    #[error("{target}: {reason}")]
    NbdFormat {
        /// The export.
        target: String,
        /// Why not.
        reason: String,
    },
    /// Neither one image nor two were given.
    #[error("give one image, or two for a replicated pair (got {count})")]
    ImageCount {
        /// Images given.
        count: usize,
    },
    /// `close` found the pair still shared with another owner.
    #[error("the replicated pair is still in use and cannot be closed cleanly")]
    PairInUse,
    /// One image given as both members of a pair.
    #[error("{path} is given twice: a replicated pair needs two different images")]
    SameImageTwice {
        /// The image given twice.
        path: String,
    },
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
    /// Options of the log (group commit, background installation).
    pub log: LogOptions,
    /// Never write to the images: each is opened read-only (a file with a shared lock) under
    /// an in-memory overlay, so recovery runs and the stack reads as a writable one would,
    /// but nothing written through it — recovery's own writes included — reaches an image.
    pub read_only: bool,
}

/// The assembled stack: a logical disk, and the replicated pair under it when there is one.
pub struct Stack {
    logical: LogicalDisk,
    pair: Option<Arc<ReplicatedDisk<Image>>>,
}

impl std::ops::Deref for Stack {
    type Target = LogicalDisk;
    fn deref(&self) -> &LogicalDisk {
        &self.logical
    }
}

impl Stack {
    /// The replicated pair under the log, if the stack was opened on two images.
    pub fn pair(&self) -> Option<&ReplicatedDisk<Image>> {
        self.pair.as_deref()
    }

    /// A shared handle of the pair, for a thread that manages it while the stack serves (a
    /// control socket's rebuild). Drop it before [`Stack::close`], which needs the pair alone.
    pub fn pair_handle(&self) -> Option<Arc<Pair>> {
        self.pair.clone()
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

/// Creates new image files (one, or two for a replicated pair) and formats them. The geometry
/// is checked before any file is created, and a format that fails part-way removes the files
/// it created: a refusal leaves nothing behind, and the same command can be run again.
pub fn format(images: &[impl AsRef<Path>], options: &FormatOptions) -> Result<(), Error> {
    check_geometry(images.len(), options)?;
    if let [first, second] = images {
        let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.into());
        if absolute(first.as_ref()) == absolute(second.as_ref()) {
            return Err(Error::SameImageTwice {
                path: first.as_ref().display().to_string(),
            });
        }
    }
    for image in images {
        refuse_existing(image.as_ref())?;
    }
    let result = match images {
        [single] => format_single(single.as_ref(), options),
        [first, second] => format_pair(first.as_ref(), second.as_ref(), options),
        _ => unreachable!("txdisk: image count checked above"),
    };
    if result.is_err() {
        for image in images {
            remove_if_created(image.as_ref(), &result);
        }
    }
    result
}

/// The image size (in blocks, of each image) that gives a logical disk of at least
/// `data_blocks` blocks with a log of `log_blocks`, on one image or a pair of `image_count`:
/// the log's metadata, the pair's and the checksums' added to the data.
pub fn image_blocks_for(data_blocks: u64, log_blocks: u64, image_count: usize) -> u64 {
    let log_space = data_blocks + txdisk_log::tooling::LOG_START + log_blocks;
    let member_blocks = if image_count == 2 {
        pair_layout(log_space).map_or(log_space, |layout| layout.member_blocks())
    } else {
        log_space
    };
    txdisk_integrity::format::Superblock::raw_blocks_for(member_blocks)
}

/// The layout of a pair of `data_blocks` as `format` makes it (the default bitmap chunk).
fn pair_layout(data_blocks: u64) -> Option<txdisk_replicated::BitmapLayout> {
    let chunk_blocks = u64::from(txdisk_replicated::DEFAULT_CHUNK_BLOCKS);
    txdisk_replicated::BitmapLayout::new(data_blocks, chunk_blocks)
}

/// The checks `format` makes before it creates anything.
fn check_geometry(image_count: usize, options: &FormatOptions) -> Result<(), Error> {
    let checked_blocks = txdisk_integrity::format::Superblock::layout(options.size_blocks, 0)
        .map_err(|source| Error::Image {
            path: "(new image)".into(),
            source,
        })?
        .data_blocks;
    let log_space_blocks = match image_count {
        1 => checked_blocks,
        2 => txdisk_replicated::data_blocks_for(
            checked_blocks,
            txdisk_replicated::DEFAULT_CHUNK_BLOCKS,
        )
        .unwrap_or(0),
        count => return Err(Error::ImageCount { count }),
    };
    txdisk_log::tooling::Superblock::layout(log_space_blocks, options.log_blocks, 0)?;
    Ok(())
}

/// Two names of one file (or device) would lock against each other with a confusing message:
/// say what is wrong instead.
fn refuse_same_file(first: &Path, second: &Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    if let (Some(Ok(a)), Some(Ok(b))) = (nbd_target(first), nbd_target(second)) {
        if a == b {
            return Err(Error::SameImageTwice {
                path: second.display().to_string(),
            });
        }
    }
    let identity = |path: &Path| {
        std::fs::metadata(path).map(|m| {
            let device = if m.rdev() != 0 { m.rdev() } else { m.dev() };
            (device, if m.rdev() != 0 { 0 } else { m.ino() })
        })
    };
    if let (Ok(a), Ok(b)) = (identity(first), identity(second)) {
        if a == b {
            return Err(Error::SameImageTwice {
                path: second.display().to_string(),
            });
        }
    }
    Ok(())
}

/// `format` makes new images only: an existing file (or device) is refused before anything is
/// created, so that cleaning up after a failure removes only what this call made.
fn refuse_existing(path: &Path) -> Result<(), Error> {
    if nbd_target(path).is_some() {
        return Ok(()); // an export exists already: `create_image` refuses one that is not blank
    }
    if std::fs::symlink_metadata(path).is_ok() {
        let source = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "File exists");
        return Err(txdisk_disk::DiskError::Open {
            path: path.display().to_string(),
            source,
        }
        .into());
    }
    Ok(())
}

/// Creates `path` and formats its checksums; an NBD export (which exists already) must be
/// blank and of exactly `size_blocks`, so that format never overwrites somebody's data.
fn create_image(path: &Path, size_blocks: u64) -> Result<Image, Error> {
    let raw = match nbd_target(path) {
        Some(target) => {
            let target = target?;
            let disk = NbdDisk::connect(&target, &nbd_options())?;
            let refuse = |reason: String| Error::NbdFormat {
                target: target.to_string(),
                reason,
            };
            if disk.size_blocks() != size_blocks {
                return Err(refuse(format!(
                    "the export has {} blocks of 4096 bytes; format it with a size of exactly that",
                    disk.size_blocks()
                )));
            }
            if !IntegrityDisk::is_blank(&disk)? {
                return Err(refuse(
                    "the export is not blank (its first two blocks are not zeros): format writes \
                     only to a new, zeroed export"
                        .into(),
                ));
            }
            Member::Nbd(Box::new(disk))
        }
        None => Member::File(FileDisk::create(path, size_blocks)?),
    };
    IntegrityDisk::format(raw).map_err(|source| image_error(path, source))
}

/// Opens `path` as a checksummed image; with `blank_is_replacement`, a blank file (a new
/// replacement member of a pair) is formatted first.
fn open_image(path: &Path, blank_is_replacement: bool) -> Result<Image, Error> {
    open_image_as(path, blank_is_replacement, false)
}

fn open_image_as(path: &Path, blank_is_replacement: bool, read_only: bool) -> Result<Image, Error> {
    let opened = if read_only {
        Member::open_unwritten(path, &nbd_options())
    } else {
        Member::open(path, &nbd_options())
    };
    let file = opened.map_err(|e| match e {
        txdisk_nbd_disk::OpenError::Disk(e) => Error::Disk(e),
        txdisk_nbd_disk::OpenError::Nbd(e) => Error::Nbd(e),
        other => Error::Nbd(txdisk_nbd_disk::NbdError::BadOptions(other.to_string())),
    })?;
    if blank_is_replacement && IntegrityDisk::is_blank(&file)? {
        tracing::info!(path = %path.display(), "blank image: formatted as a replacement member");
        return IntegrityDisk::format(file).map_err(|source| image_error(path, source));
    }
    IntegrityDisk::open(file).map_err(|source| image_error(path, source))
}

/// Opens `path` (a file, a device or an NBD URI) as a member to give a running pair's
/// [`ReplicatedDisk::rebuild`]: a blank one is formatted first, and whatever it held is
/// overwritten by the rebuild (a member that comes back after a failure is never trusted).
pub fn open_member(path: &Path) -> Result<Image, Error> {
    open_image(path, true)
}

fn image_error(path: &Path, source: IntegrityError) -> Error {
    match source {
        IntegrityError::Disk(error) => Error::Disk(error),
        source => Error::Image {
            path: path.display().to_string(),
            source,
        },
    }
}

fn format_single(path: &Path, options: &FormatOptions) -> Result<(), Error> {
    let disk = create_image(path, options.size_blocks)?;
    LogicalDisk::format(&disk, options.log_blocks)?;
    Ok(())
}

fn format_pair(first: &Path, second: &Path, options: &FormatOptions) -> Result<(), Error> {
    let d1 = create_image(first, options.size_blocks)?;
    let d2 = create_image(second, options.size_blocks)?;
    // Both files are new and read as zeros: they are equal without a copy.
    let pair_options = txdisk_replicated::FormatOptions {
        pair_id: None,
        assume_equal: true,
        ..txdisk_replicated::FormatOptions::default()
    };
    ReplicatedDisk::format(&d1, &d2, &pair_options)?;
    let pair = ReplicatedDisk::open(d1, d2, &mut |_| {})?;
    LogicalDisk::format(&pair, options.log_blocks)?;
    pair.close()?;
    Ok(())
}

/// Removes `path` after a failed format, unless the failure was that it already existed (then
/// it is somebody else's file).
fn remove_if_created(path: &Path, result: &Result<(), Error>) {
    if nbd_target(path).is_some() {
        return; // an export is the server's, never removed
    }
    let existed = matches!(
        result,
        Err(Error::Disk(txdisk_disk::DiskError::Open { path: failed, source }))
            if failed == &path.display().to_string()
                && source.kind() == std::io::ErrorKind::AlreadyExists
    );
    if existed {
        return;
    }
    if let Err(error) = std::fs::remove_file(path) {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %error, "could not remove a half-formatted image");
        }
    }
}

/// The disk the log runs on, assembled from `images` as [`open`] does (each image checksummed;
/// two of them a replicated pair, recovered — resynced or rebuilt — before this returns), and
/// the pair when there is one. For callers that put a layer of their own between the stack and
/// the log (a benchmark counting operations, a test injecting faults).
pub fn open_disk(
    images: &[impl AsRef<Path>],
    progress: &mut dyn FnMut(txdisk_replicated::Progress),
) -> Result<OpenedDisk, Error> {
    open_disk_as(images, false, progress)
}

/// As [`open_disk`]; with `read_only`, as [`OpenOptions::read_only`] says (a blank member is
/// then refused rather than formatted as a replacement).
pub fn open_disk_as(
    images: &[impl AsRef<Path>],
    read_only: bool,
    progress: &mut dyn FnMut(txdisk_replicated::Progress),
) -> Result<OpenedDisk, Error> {
    let replacement = !read_only;
    match images {
        [single] => Ok(OpenedDisk {
            disk: Arc::new(open_image_as(single.as_ref(), false, read_only)?),
            pair: None,
        }),
        [first, second] => {
            refuse_same_file(first.as_ref(), second.as_ref())?;
            let pair = Arc::new(ReplicatedDisk::open(
                open_image_as(first.as_ref(), replacement, read_only)?,
                open_image_as(second.as_ref(), replacement, read_only)?,
                progress,
            )?);
            Ok(OpenedDisk {
                disk: pair.clone(),
                pair: Some(pair),
            })
        }
        _ => Err(Error::ImageCount {
            count: images.len(),
        }),
    }
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
    let OpenedDisk { disk, pair } = open_disk_as(images, options.read_only, progress)?;
    let logical = LogicalDisk::open(disk, options.log)?;
    Ok(Stack { logical, pair })
}
