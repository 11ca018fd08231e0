//! The bench's errors: a device, a peer or a system under test failing, or a result that is wrong.

use std::path::PathBuf;
use txdisk_disk::{Addr, DiskError};

pub type Result<T, E = BenchError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Disk(#[from] DiskError),

    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("redb: {0}")]
    Redb(#[from] Box<redb::Error>),

    /// A read returned something other than what was written: the run is void.
    #[error("{system}: block {addr} read back wrong: expected fingerprint {expected:#018x}, found {found:#018x}")]
    WrongData {
        system: String,
        addr: Addr,
        expected: u64,
        found: u64,
    },

    /// A read found no value at all where one was written.
    #[error("{system}: block {addr} is missing")]
    Missing { system: String, addr: Addr },

    #[error("{system} cannot run workload {workload}")]
    Unsupported { system: String, workload: String },

    /// Timing a page cache in memory would say nothing about durable writes.
    #[error("{path} is on {fs_type}, not on a disk file system (pass a directory on a real disk)")]
    NotADiskFileSystem { path: PathBuf, fs_type: String },

    #[error("bad configuration: {0}")]
    Config(String),

    /// A failure inside a system under test that has no variant of its own (used by adapters).
    #[error("{system}: {message}")]
    System { system: String, message: String },

    /// A cell's child process failed or answered something unreadable.
    #[error("{system} {workload} in a child process: {message}")]
    Child {
        system: String,
        workload: String,
        message: String,
    },

    /// A chart could not be drawn or written.
    #[error("plot {path}: {message}")]
    Plot { path: PathBuf, message: String },

    /// A saved run could not be read or written, or is not a bench run's JSON.
    #[error("saved run {path}: {message}")]
    SavedRun { path: PathBuf, message: String },

    #[error("a worker thread of {system} panicked during {workload}")]
    WorkerPanicked { system: String, workload: String },
}

impl BenchError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BenchError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

// redb has one error type per operation; all convert into `redb::Error`, boxed here because it
// is large and errors are rare.
macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for BenchError {
            fn from(error: $ty) -> Self {
                BenchError::Redb(Box::new(redb::Error::from(error)))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
