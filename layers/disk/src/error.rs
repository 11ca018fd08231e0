//! The disk layer's errors: every failure an input, a device or a crash can cause.

use crate::block::Addr;

pub type Result<T, E = DiskError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskError {
    #[error("address {addr} is out of range (disk has {size_blocks} blocks)")]
    OutOfRange { addr: Addr, size_blocks: u64 },

    #[error("a block must be exactly 4096 bytes, got {len}")]
    BadBlockLength { len: usize },

    #[error("{path}: size {size_bytes} bytes is not a whole number of 4096-byte blocks")]
    BadSize { path: String, size_bytes: u64 },

    #[error("{path}: a disk must have at least one block")]
    Empty { path: String },

    /// The (simulated) machine crashed: nothing more reaches this disk until it is restarted.
    #[error("the disk crashed")]
    Crashed,

    /// The device failed for good (fail-stop): every call errs from now on.
    #[error("the disk has failed")]
    Failed,

    /// One block cannot be read (a bad sector); the device is otherwise alive.
    #[error("read error at block {addr}")]
    ReadError { addr: Addr },

    /// A flush failed: writes since the last good sync may be lost. Never retry and report success.
    #[error("sync failed: writes since the last successful sync may be lost")]
    SyncFailed,

    #[error("{op} of block {addr} failed: {source}")]
    Io {
        op: &'static str,
        addr: Addr,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl DiskError {
    /// True for errors after which this disk cannot be used any more (crash or fail-stop).
    pub fn is_fatal(&self) -> bool {
        matches!(self, DiskError::Crashed | DiskError::Failed)
    }
}
