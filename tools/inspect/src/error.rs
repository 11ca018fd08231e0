//! The inspector's errors: everything that stops a check before it can judge an image. Each
//! is an *operational* error (e2fsck's exit code 8); damage found on an image we recognise is
//! not an error but a finding in the report.

use std::path::PathBuf;
use txdisk_disk::DiskError;
use txdisk_integrity::IntegrityError;

/// The crate's result type: an [`InspectError`] unless said otherwise.
pub type Result<T, E = InspectError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
/// Why a check or a dump could not run at all (exit code 8, [`crate::EXIT_OPERATIONAL`]).
/// Damage found in an image is a [`crate::Finding`], not an error.
pub enum InspectError {
    #[error("give one image, or the two members of a replicated pair (got {count})")]
    /// Neither one image nor two were given.
    ImageCount {
        /// How many were given.
        count: usize,
    },

    #[error("{path}: is a directory, not an image")]
    /// A path given as an image is a directory.
    IsDirectory {
        /// The path given.
        path: PathBuf,
    },

    /// Every open error of the disk layer names the path already.
    #[error("cannot open {source}")]
    Open {
        /// The image that could not be opened.
        path: PathBuf,
        #[source]
        /// The disk layer's error.
        source: DiskError,
    },

    #[error("{path}: not a txdisk image: {reason}")]
    /// The file holds neither a log superblock nor pair metadata.
    NotAnImage {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },

    #[error("{path}: blank (all zeros where the checksum superblocks belong): never formatted")]
    /// A blank file: beside a pair member, a replacement to rebuild; alone, nothing to check.
    Blank {
        /// The file.
        path: PathBuf,
    },

    #[error("{path}: {source}")]
    /// An image of a format this build does not open: txdisk's first, unchecksummed format,
    /// or a checksum format version from the future.
    Format {
        /// The image.
        path: PathBuf,
        #[source]
        /// Why the checksummed disk refused it.
        source: IntegrityError,
    },

    #[error("{path}: formatted for {formatted_blocks} blocks, the file has {file_blocks} (truncated image?)")]
    /// The checksum superblocks describe a larger file than this one: cut short. The check
    /// reports it as damage (exit 4).
    Truncated {
        /// The image.
        path: PathBuf,
        /// The file's size when it was formatted, in blocks.
        formatted_blocks: u64,
        /// Its size now.
        file_blocks: u64,
    },

    #[error("{path}: both checksum superblock copies are damaged: {source}")]
    /// Both checksum superblock copies are damaged: nothing in the image can be verified. The
    /// check reports it as damage (exit 4), `logdump` as an operational error.
    Superblocks {
        /// The image.
        path: PathBuf,
        #[source]
        /// What the better of the two copies showed.
        source: IntegrityError,
    },

    #[error("{path}: {what} format version {found} is not supported (this build reads version {supported})")]
    /// The image was written by a format version this build does not read.
    UnsupportedVersion {
        /// The image.
        path: PathBuf,
        /// Which format: "log" or "replicated pair".
        what: &'static str,
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },

    #[error("the images belong to different pairs ({first} is in pair {first_pair_id:016x}, {second} in pair {second_pair_id:016x})")]
    /// Two pair members that do not belong to the same pair.
    DifferentPairs {
        /// The first member given.
        first: PathBuf,
        /// The second member given.
        second: PathBuf,
        /// The first member's pair id.
        first_pair_id: u64,
        /// The second member's pair id.
        second_pair_id: u64,
    },

    #[error("{path} is member {found} of its pair, expected member {expected} here (give d1 first, then d2)")]
    /// The pair members were given in the wrong order.
    WrongOrder {
        /// The member out of place.
        path: PathBuf,
        /// The member expected at that place (d1 or d2).
        expected: String,
        /// The member the file is.
        found: String,
    },

    #[error("{path}: not a member of a replicated pair, but two images were given")]
    /// Two images were given but one is not a pair member.
    NotAPairMember {
        /// That image.
        path: PathBuf,
    },

    #[error("{path}: {source}")]
    /// Reading or writing an image failed.
    Io {
        /// The image.
        path: PathBuf,
        #[source]
        /// The disk layer's error.
        source: DiskError,
    },

    /// The log cannot be read at all (logdump needs at least a superblock and a header).
    #[error("{path}: {detail}")]
    Unreadable {
        /// The image.
        path: PathBuf,
        /// Why, on one line.
        detail: String,
    },

    #[error("{path}: {source}")]
    /// Creating a file at `path` failed.
    Create {
        /// The file.
        path: PathBuf,
        #[source]
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
