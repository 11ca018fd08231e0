//! The file system's errors: the POSIX conditions a user recognises, plus damaged images and
//! failures of the store below.

use crate::store::StoreError;

/// The file system's result: [`FsError`] unless said otherwise.
pub type Result<T, E = FsError> = std::result::Result<T, E>;

/// Linux errno values, so that a FUSE front end or a shell tool can report the usual codes.
pub mod errno {
    /// No such file or directory.
    pub const ENOENT: i32 = 2;
    /// Input/output error.
    pub const EIO: i32 = 5;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// File exists.
    pub const EEXIST: i32 = 17;
    /// Not a directory.
    pub const ENOTDIR: i32 = 20;
    /// Is a directory.
    pub const EISDIR: i32 = 21;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// File too large.
    pub const EFBIG: i32 = 27;
    /// No space left on device.
    pub const ENOSPC: i32 = 28;
    /// Too many links.
    pub const EMLINK: i32 = 31;
    /// File name too long.
    pub const ENAMETOOLONG: i32 = 36;
    /// Directory not empty.
    pub const ENOTEMPTY: i32 = 39;
    /// Structure needs cleaning: a damaged image.
    pub const EUCLEAN: i32 = 117;
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
/// Why a file-system operation failed.
pub enum FsError {
    #[error("no such file or directory")]
    /// No entry of that name, or an inode number that names no inode.
    NotFound,
    #[error("file exists")]
    /// The name is taken.
    Exists,
    #[error("not a directory")]
    /// A directory operation on a file, or a path through one.
    NotADirectory,
    #[error("is a directory")]
    /// A file operation on a directory.
    IsADirectory,
    #[error("directory not empty")]
    /// Removing, or replacing by rename, a directory that has entries.
    NotEmpty,
    /// No free data block or no free inode.
    #[error("no space left on device ({what})")]
    NoSpace {
        /// What ran out.
        what: &'static str,
    },
    #[error("file name too long ({len} bytes, at most {max})")]
    /// A name longer than [`NAME_MAX`](crate::format::NAME_MAX) bytes.
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
        /// The longest name allowed, in bytes.
        max: usize,
    },
    #[error("file too large ({size_bytes} bytes, at most {max_bytes})")]
    /// A write or truncation past the largest file.
    FileTooLarge {
        /// The size the operation would reach.
        size_bytes: u64,
        /// The largest file, in bytes.
        max_bytes: u64,
    },
    #[error("too many links")]
    /// A link count that would overflow.
    TooManyLinks,
    /// An empty name, `.`, `..`, a name with `/` or NUL, or a directory moved into itself.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The operation kept conflicting with concurrent transactions.
    #[error("operation still conflicting after {attempts} attempts")]
    Busy {
        /// Attempts made.
        attempts: u32,
    },
    #[error("not a txdisk file system (bad magic)")]
    /// Block 0 does not hold this file system's magic.
    NotAFileSystem,
    #[error("unsupported file system version {found}")]
    /// A format version this build does not read.
    UnsupportedVersion {
        /// The version recorded.
        found: u32,
    },
    /// The image is damaged: a value on disk is impossible.
    #[error("file system corrupt: {what}: expected {expected}, found {found}")]
    Corrupt {
        /// What is damaged.
        what: &'static str,
        /// The value the format requires.
        expected: u64,
        /// The value found.
        found: u64,
    },
    /// The store's transactions are too small for this file system's geometry.
    #[error("store allows {max_blocks} blocks per transaction, the file system needs {needed}")]
    TxTooSmall {
        /// The most blocks one transaction of the store may write.
        max_blocks: usize,
        /// The blocks the largest operation may write.
        needed: usize,
    },
    #[error(transparent)]
    /// The store below failed.
    Store(#[from] StoreError),
}

impl FsError {
    pub(crate) fn corrupt(
        what: &'static str,
        expected: impl Into<u64>,
        found: impl Into<u64>,
    ) -> FsError {
        FsError::Corrupt {
            what,
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// The errno a POSIX program expects for this error.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => errno::ENOENT,
            FsError::Exists => errno::EEXIST,
            FsError::NotADirectory => errno::ENOTDIR,
            FsError::IsADirectory => errno::EISDIR,
            FsError::NotEmpty => errno::ENOTEMPTY,
            FsError::NoSpace { .. } => errno::ENOSPC,
            FsError::NameTooLong { .. } => errno::ENAMETOOLONG,
            FsError::FileTooLarge { .. } => errno::EFBIG,
            FsError::TooManyLinks => errno::EMLINK,
            FsError::InvalidArgument(_) => errno::EINVAL,
            FsError::Busy { .. } => errno::EBUSY,
            FsError::Corrupt { .. }
            | FsError::NotAFileSystem
            | FsError::UnsupportedVersion { .. } => errno::EUCLEAN,
            FsError::TxTooSmall { .. } | FsError::Store(_) => errno::EIO,
        }
    }

    pub(crate) fn is_conflict(&self) -> bool {
        matches!(self, FsError::Store(StoreError::Conflict))
    }
}
