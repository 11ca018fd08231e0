//! The integrity layer's errors.

use txdisk_disk::DiskError;

/// The integrity layer's result type.
pub type Result<T, E = IntegrityError> = std::result::Result<T, E>;

/// Why a device could not be formatted or opened as a checksummed disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    /// The device below failed.
    #[error(transparent)]
    Disk(#[from] DiskError),

    /// Both superblock copies are zeros: a new or wiped device, never formatted.
    #[error("blank device: no txdisk superblock (never formatted)")]
    Blank,

    /// An image of an earlier txdisk format, which kept no block checksums.
    #[error(
        "{what} of txdisk format 1, which keeps no block checksums; this version opens format 2 \
         only: copy the data out with the txdisk that wrote it and into a new image"
    )]
    Unchecksummed {
        /// What the image is.
        what: &'static str,
    },

    /// Neither superblock copy is this layer's, nor an older txdisk format.
    #[error("not a txdisk image (no superblock magic in block 0 or 1)")]
    NotAnImage,

    /// A superblock copy that fails its checksum.
    #[error("superblock checksum mismatch: expected {expected:#010x}, found {found:#010x}")]
    SuperblockChecksum {
        /// The checksum of the superblock's contents.
        expected: u32,
        /// The checksum stored in it.
        found: u32,
    },

    /// A format version this build does not read.
    #[error("checksum format version {found} is not supported (this build reads version 1)")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },

    /// A superblock whose layout is impossible or does not fit the device.
    #[error("bad geometry: {reason}")]
    BadGeometry {
        /// What does not fit.
        reason: String,
    },

    /// A device too small for one data block and its tag.
    #[error("a device of {raw_blocks} blocks has no room for data after its checksums (4 blocks at least)")]
    TooSmall {
        /// The device's size.
        raw_blocks: u64,
    },
}
