//! The file system's errors: the POSIX conditions a user recognises, plus damaged images and
//! failures of the store below.

use crate::store::StoreError;

pub type Result<T, E = FsError> = std::result::Result<T, E>;

/// Linux errno values, so that a FUSE front end or a shell tool can report the usual codes.
pub mod errno {
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
    pub const EINVAL: i32 = 22;
    pub const EFBIG: i32 = 27;
    pub const ENOSPC: i32 = 28;
    pub const EMLINK: i32 = 31;
    pub const ENAMETOOLONG: i32 = 36;
    pub const ENOTEMPTY: i32 = 39;
    pub const EUCLEAN: i32 = 117;
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotADirectory,
    #[error("is a directory")]
    IsADirectory,
    #[error("directory not empty")]
    NotEmpty,
    /// No free data block or no free inode.
    #[error("no space left on device ({what})")]
    NoSpace { what: &'static str },
    #[error("file name too long ({len} bytes, at most {max})")]
    NameTooLong { len: usize, max: usize },
    #[error("file too large ({size_bytes} bytes, at most {max_bytes})")]
    FileTooLarge { size_bytes: u64, max_bytes: u64 },
    #[error("too many links")]
    TooManyLinks,
    /// An empty name, `.`, `..`, a name with `/` or NUL, or a directory moved into itself.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The operation kept conflicting with concurrent transactions.
    #[error("operation still conflicting after {attempts} attempts")]
    Busy { attempts: u32 },
    #[error("not a txdisk file system (bad magic)")]
    NotAFileSystem,
    #[error("unsupported file system version {found}")]
    UnsupportedVersion { found: u32 },
    /// The image is damaged: a value on disk is impossible.
    #[error("file system corrupt: {what}: expected {expected}, found {found}")]
    Corrupt {
        what: &'static str,
        expected: u64,
        found: u64,
    },
    /// The store's transactions are too small for this file system's geometry.
    #[error("store allows {max_blocks} blocks per transaction, the file system needs {needed}")]
    TxTooSmall { max_blocks: usize, needed: usize },
    #[error(transparent)]
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
