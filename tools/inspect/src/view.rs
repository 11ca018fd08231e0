//! Opening images for inspection: what each file is (a log image, or a member of a replicated
//! pair), and a window onto the address space the log lives in.

use crate::error::{InspectError, Result};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use txdisk_disk::{Addr, Block, Disk, FileDisk};
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

/// An image opened read-only, classified.
pub struct OpenedImage {
    /// The image file.
    pub path: PathBuf,
    /// The file, read-only.
    pub disk: FileDisk,
    /// What it holds.
    pub kind: ImageKind,
}

impl OpenedImage {
    /// Blocks of the file available to the pair's address space (0 for a single image).
    pub fn member_blocks(&self) -> u64 {
        self.disk.size_blocks().saturating_sub(RESERVED_BLOCKS)
    }

    /// The address space the log lives in: the whole file, or a member's pair address space
    /// (as large as its metadata says, or as the file allows if it is shorter).
    pub fn log_view(&self) -> Window<&FileDisk> {
        match &self.kind {
            ImageKind::Single => Window::new(&self.disk, 0, self.disk.size_blocks()),
            ImageKind::Member { meta, .. } => {
                let available = self.member_blocks();
                let size = meta.map_or(available, |m| m.data_size_blocks.min(available));
                Window::new(&self.disk, RESERVED_BLOCKS, size)
            }
        }
    }
}

/// Opens `path` read-only and tells what it is. Errors are operational (cannot open, a
/// directory, a pair member of a format version this build does not read).
pub fn open_image(path: &Path) -> Result<OpenedImage> {
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
    let disk = FileDisk::open_read_only(path).map_err(|source| InspectError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let kind = classify(path, &disk)?;
    Ok(OpenedImage {
        path: path.to_path_buf(),
        disk,
        kind,
    })
}

fn classify(path: &Path, disk: &FileDisk) -> Result<ImageKind> {
    if disk.size_blocks() <= RESERVED_BLOCKS {
        return Ok(ImageKind::Single);
    }
    let mut slots = [Slot::Blank; 2];
    for (addr, slot) in slots.iter_mut().enumerate() {
        let block = disk.read(addr as Addr).map_err(|source| InspectError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        *slot = Slot::decode(&block);
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
