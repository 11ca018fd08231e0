//! Opening images for inspection: each through the checksummed disk over its file (every
//! block verified as it is read), what it is (a log image, or a member of a replicated pair),
//! and a window onto the address space the log lives in.

use crate::error::{InspectError, Result};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use txdisk_disk::{Addr, Block, Disk, FileDisk};
use txdisk_integrity::format::Superblock;
use txdisk_integrity::{IntegrityDisk, IntegrityError};
use txdisk_nbd_disk::{nbd_options, nbd_target, Member, NbdDisk};
use txdisk_replicated::{ReplicaMeta, Slot, FORMAT_VERSION as PAIR_VERSION, RESERVED_BLOCKS};

/// Blocks `[offset, offset + size_blocks)` of a disk, as a disk of its own. A replica holds the
/// pair's address space at `RESERVED_BLOCKS` onwards: this is how the inspector reads the log
/// inside one replica without the pair (and so without writing anything).
pub struct Window<D> {
    inner: D,
    offset_blocks: u64,
    size_blocks: u64,
}

impl<D: Disk> Window<D> {
    /// Panics if the window does not fit the disk: callers size it from the disk itself.
    pub fn new(inner: D, offset_blocks: u64, size_blocks: u64) -> Window<D> {
        let end = offset_blocks.checked_add(size_blocks);
        assert!(
            end.is_some_and(|end| end <= inner.size_blocks()),
            "inspect: window {offset_blocks}+{size_blocks} beyond a disk of {} blocks",
            inner.size_blocks()
        );
        Window {
            inner,
            offset_blocks,
            size_blocks,
        }
    }

    /// Where the window starts in the underlying disk, in blocks.
    pub fn offset_blocks(&self) -> u64 {
        self.offset_blocks
    }
}

impl<D: Disk> Disk for Window<D> {
    fn size_blocks(&self) -> u64 {
        self.size_blocks
    }
    fn read(&self, addr: Addr) -> txdisk_disk::Result<Block> {
        self.check_addr(addr)?;
        self.inner.read(addr + self.offset_blocks)
    }
    fn write(&self, addr: Addr, block: &Block) -> txdisk_disk::Result<()> {
        self.check_addr(addr)?;
        self.inner.write(addr + self.offset_blocks, block)
    }
    fn sync(&self) -> txdisk_disk::Result<()> {
        self.inner.sync()
    }
    fn generation(&self, addr: Addr) -> txdisk_disk::Result<Option<u32>> {
        self.check_addr(addr)?;
        self.inner.generation(addr + self.offset_blocks)
    }
    fn check_rep(&self) {
        self.inner.check_rep()
    }
}

/// What an image file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageKind {
    /// The log's superblock at block 0 (or nothing of ours at all: the log check tells).
    Single,
    /// A member of a replicated pair: two metadata slots, then the pair's address space.
    Member {
        /// Both metadata slots, as read.
        slots: [Slot; 2],
        /// The newest valid slot's metadata, if any.
        meta: Option<ReplicaMeta>,
    },
}

/// One image as the stack reads it: the checksummed disk over the file.
pub type CheckedImage = IntegrityDisk<Member>;

/// An image opened read-only, classified.
pub struct OpenedImage {
    /// The image file.
    pub path: PathBuf,
    /// The checksummed disk over the file (read-only); `None` for a blank file beside a pair
    /// member (a replacement, which holds nothing yet).
    pub disk: Option<CheckedImage>,
    /// What it holds.
    pub kind: ImageKind,
}

impl OpenedImage {
    /// A blank file given as a member of a pair: a replacement to be rebuilt.
    pub fn blank_member(path: &Path) -> OpenedImage {
        OpenedImage {
            path: path.to_path_buf(),
            disk: None,
            kind: ImageKind::Member {
                slots: [Slot::Blank; 2],
                meta: None,
            },
        }
    }

    /// Blocks of the checked disk after the pair metadata: what a member's pair address space
    /// can hold (0 for a blank file).
    pub fn member_blocks(&self) -> u64 {
        self.disk
            .as_ref()
            .map_or(0, |disk| disk.size_blocks().saturating_sub(RESERVED_BLOCKS))
    }

    /// The address space the log lives in: the whole checked disk, or a member's pair address
    /// space (as large as its metadata says, or as the disk allows if it is smaller). `None`
    /// for a blank file.
    pub fn log_view(&self) -> Option<Window<&CheckedImage>> {
        let disk = self.disk.as_ref()?;
        Some(match &self.kind {
            ImageKind::Single => Window::new(disk, 0, disk.size_blocks()),
            ImageKind::Member { meta, .. } => {
                let available = self.member_blocks();
                let size = meta.map_or(available, |m| m.data_size_blocks.min(available));
                Window::new(disk, RESERVED_BLOCKS.min(disk.size_blocks()), size)
            }
        })
    }
}

/// Opens `path` read-only, as the checksummed disk over it, and tells what it is. Errors are
/// operational (cannot open, a directory, an image of a format this build does not read, a
/// blank file: [`InspectError::Blank`]) or, for checksum superblocks that are both damaged,
/// [`InspectError::Superblocks`], which the check reports as damage.
pub fn open_image(path: &Path) -> Result<OpenedImage> {
    if let Some(target) = nbd_target(path) {
        // An NBD export (the URI is parsed where every image argument is: `Member`).
        let open_error = |e: txdisk_nbd_disk::NbdError| InspectError::NotAnImage {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let target = target.map_err(open_error)?;
        let disk = NbdDisk::connect(&target, &nbd_options()).map_err(open_error)?;
        return finish_open(path, Member::Nbd(Box::new(disk)));
    }
    if path.is_dir() {
        return Err(InspectError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    // Opening a fifo would wait for a writer forever, and a character device or a socket has
    // no blocks to check: refuse anything but a file or a block device up front.
    if let Ok(metadata) = std::fs::metadata(path) {
        let kind = metadata.file_type();
        if !kind.is_file() && !kind.is_block_device() {
            let reason = "not a regular file or a block device".to_string();
            return Err(InspectError::NotAnImage {
                path: path.to_path_buf(),
                reason,
            });
        }
    }
    let file = FileDisk::open_read_only(path).map_err(|source| InspectError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    finish_open(path, Member::File(file))
}

fn finish_open(path: &Path, file: Member) -> Result<OpenedImage> {
    let disk = open_checked(path, file)?;
    let kind = classify(path, &disk)?;
    Ok(OpenedImage {
        path: path.to_path_buf(),
        disk: Some(disk),
        kind,
    })
}

/// The checksummed disk over `file`, or why there is none: blank, of another format (both
/// operational), or damaged checksum superblocks (reported by the check as damage).
fn open_checked(path: &Path, file: Member) -> Result<CheckedImage> {
    let path = path.to_path_buf();
    let file_blocks = file.size_blocks();
    // A copy that is right but for the file's size: the file was cut short.
    let formatted_blocks = (0..2.min(file_blocks))
        .filter_map(|copy| file.read(copy).ok())
        .filter_map(|block| Superblock::decode(&block, u64::MAX).ok())
        .map(|sb| sb.raw_blocks)
        .max();
    match IntegrityDisk::open(file) {
        Err(IntegrityError::BadGeometry { .. })
            if formatted_blocks.is_some_and(|blocks| blocks > file_blocks) =>
        {
            Err(InspectError::Truncated {
                path,
                formatted_blocks: formatted_blocks.unwrap_or_default(),
                file_blocks,
            })
        }
        Ok(disk) => Ok(disk),
        Err(IntegrityError::Blank) => Err(InspectError::Blank { path }),
        Err(IntegrityError::Disk(source)) => Err(InspectError::Io { path, source }),
        Err(
            source @ (IntegrityError::SuperblockChecksum { .. }
            | IntegrityError::BadGeometry { .. }
            | IntegrityError::TooSmall { .. }),
        ) => Err(InspectError::Superblocks { path, source }),
        Err(IntegrityError::NotAnImage) => Err(InspectError::NotAnImage {
            path,
            reason: "no checksum superblock (bad superblock magic in blocks 0 and 1)".into(),
        }),
        Err(source) => Err(InspectError::Format { path, source }),
    }
}

fn classify(path: &Path, disk: &CheckedImage) -> Result<ImageKind> {
    if disk.size_blocks() <= RESERVED_BLOCKS {
        return Ok(ImageKind::Single);
    }
    let mut slots = [Slot::Blank; 2];
    for (addr, slot) in slots.iter_mut().enumerate() {
        *slot = match disk.read(addr as Addr) {
            Ok(block) => Slot::decode(&block),
            // A slot that fails verification: the other may still be good (and if neither
            // block says what the image is, the log check tells).
            Err(error) if error.is_bad_block() => Slot::Unreadable,
            Err(source) => {
                return Err(InspectError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
    }
    let meta = slots
        .iter()
        .filter_map(|slot| {
            if let Slot::Valid(meta) = slot {
                Some(*meta)
            } else {
                None
            }
        })
        .max_by_key(|meta| meta.seq);
    let ours = slots.iter().any(|slot| {
        matches!(
            slot,
            Slot::Valid(_) | Slot::Corrupt { .. } | Slot::BadVersion { .. }
        )
    });
    if !ours {
        return Ok(ImageKind::Single);
    }
    if meta.is_none() {
        if let Some(found) = slots.iter().find_map(|slot| {
            if let Slot::BadVersion { found } = slot {
                Some(*found)
            } else {
                None
            }
        }) {
            return Err(InspectError::UnsupportedVersion {
                path: path.to_path_buf(),
                what: "replicated pair",
                found,
                supported: PAIR_VERSION,
            });
        }
    }
    Ok(ImageKind::Member { slots, meta })
}

#[cfg(test)]
mod tests {
    use super::*;
    use txdisk_disk::SimDisk;

    #[test]
    fn window_maps_and_bounds_addresses() {
        let sim = SimDisk::new(10);
        sim.write(7, &Block::filled(7)).unwrap();
        let window = Window::new(&sim, 2, 6);
        assert_eq!(window.size_blocks(), 6);
        assert_eq!(window.read(5).unwrap(), Block::filled(7));
        assert!(window.read(6).is_err(), "address past the window");
        window.write(0, &Block::filled(1)).unwrap();
        assert_eq!(sim.read(2).unwrap(), Block::filled(1));
    }

    #[test]
    #[should_panic(expected = "beyond a disk of 10 blocks")]
    fn window_must_fit() {
        let sim = SimDisk::new(10);
        let _ = Window::new(&sim, 5, 6);
    }
}
