//! The bench's errors: a device, a peer or a system under test failing, or a result that is wrong.

use std::path::PathBuf;
use txdisk_disk::{Addr, DiskError};

/// The crate's result type: a [`BenchError`] unless said otherwise.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
/// Why a run (or one cell of it) could not be measured.
pub enum BenchError {
    #[error("{op} {path}: {source}")]
    /// A file operation of the harness failed.
    Io {
        /// What was being done ("create", "read", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        #[source]
        /// The operating system's error.
        source: std::io::Error,
    },

    #[error(transparent)]
    /// The disk layer under a txdisk system failed.
    Disk(#[from] DiskError),

    #[error("sqlite: {0}")]
    /// SQLite failed.
    Sqlite(#[from] rusqlite::Error),

    #[error("redb: {0}")]
    /// redb failed.
    Redb(#[from] Box<redb::Error>),

    /// A read returned something other than what was written: the run is void.
    #[error("{system}: block {addr} read back wrong: expected fingerprint {expected:#018x}, found {found:#018x}")]
    WrongData {
        /// The system under test.
        system: String,
        /// The block read.
        addr: Addr,
        /// Fingerprint of the data written.
        expected: u64,
        /// Fingerprint of the data read.
        found: u64,
    },

    /// A read found no value at all where one was written.
    #[error("{system}: block {addr} is missing")]
    Missing {
        /// The system under test.
        system: String,
        /// The block read.
        addr: Addr,
    },

    #[error("{system} cannot run workload {workload}")]
    /// The system has no way to run the workload (a resync of a system without replicas).
    Unsupported {
        /// The system.
        system: String,
        /// The workload's name.
        workload: String,
    },

    /// Timing a page cache in memory would say nothing about durable writes.
    #[error("{path} is on {fs_type}, not on a disk file system (pass a directory on a real disk)")]
    NotADiskFileSystem {
        /// The bench directory.
        path: PathBuf,
        /// The file system it is on (`tmpfs`, ...).
        fs_type: String,
    },

    #[error("bad configuration: {0}")]
    /// The configuration cannot be run (no workloads, a zero duration, ...).
    Config(String),

    /// A failure inside a system under test that has no variant of its own (used by adapters).
    #[error("{system}: {message}")]
    System {
        /// The system.
        system: String,
        /// What failed.
        message: String,
    },

    /// A cell's child process failed or answered something unreadable.
    #[error("{system} {workload} in a child process: {message}")]
    Child {
        /// The system measured.
        system: String,
        /// The workload's name.
        workload: String,
        /// What went wrong.
        message: String,
    },

    /// A chart could not be drawn or written.
    #[error("plot {path}: {message}")]
    Plot {
        /// The chart's file.
        path: PathBuf,
        /// What failed.
        message: String,
    },

    /// A saved run could not be read or written, or is not a bench run's JSON.
    #[error("saved run {path}: {message}")]
    SavedRun {
        /// The saved run's file.
        path: PathBuf,
        /// What failed.
        message: String,
    },

    #[error("a worker thread of {system} panicked during {workload}")]
    /// A worker thread panicked: the cell's figures are void.
    WorkerPanicked {
        /// The system measured.
        system: String,
        /// The workload's name.
        workload: String,
    },
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
