//! The inspector's errors: everything that stops a check before it can judge an image. Each
//! is an *operational* error (e2fsck's exit code 8); damage found on an image we recognise is
//! not an error but a finding in the report.

use std::path::PathBuf;
use txdisk_disk::DiskError;

pub type Result<T, E = InspectError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    #[error("give one image, or the two members of a replicated pair (got {count})")]
    ImageCount { count: usize },

    #[error("{path}: is a directory, not an image")]
    IsDirectory { path: PathBuf },

    /// Every open error of the disk layer names the path already.
    #[error("cannot open {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: DiskError,
    },

    #[error("{path}: not a txdisk image: {reason}")]
    NotAnImage { path: PathBuf, reason: String },

    #[error("{path}: {what} format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        path: PathBuf,
        what: &'static str,
        found: u32,
        supported: u32,
    },

    #[error("the images belong to different pairs ({first} is in pair {first_pair_id:016x}, {second} in pair {second_pair_id:016x})")]
    DifferentPairs {
        first: PathBuf,
        second: PathBuf,
        first_pair_id: u64,
        second_pair_id: u64,
    },

    #[error("{path} is member {found} of its pair, expected member {expected} here (give d1 first, then d2)")]
    WrongOrder {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error("{path}: not a member of a replicated pair, but two images were given")]
    NotAPairMember { path: PathBuf },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: DiskError,
    },

    /// The log cannot be read at all (logdump needs at least a superblock and a header).
    #[error("{path}: {detail}")]
    Unreadable { path: PathBuf, detail: String },

    #[error("{path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
