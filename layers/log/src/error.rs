//! The log layer's errors.

use txdisk_disk::{Addr, DiskError};

pub type Result<T, E = LogError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error(transparent)]
    Disk(#[from] DiskError),

    #[error("not a txdisk image: {reason}")]
    NotAnImage { reason: String },

    #[error(
        "on-disk format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion { found: u32, supported: u32 },

    #[error("superblock checksum mismatch: expected {expected:#010x}, found {found:#010x}")]
    SuperblockChecksum { expected: u32, found: u32 },

    #[error("bad geometry: {reason}")]
    BadGeometry { reason: String },

    #[error("no valid log header in either header slot (blocks 1 and 2)")]
    NoValidHeader,

    #[error(
        "transaction writes {blocks} blocks; the log holds at most {max_blocks} per transaction"
    )]
    TransactionTooLarge { blocks: usize, max_blocks: usize },

    #[error("address {addr} is outside the data region ({data_blocks} blocks)")]
    AddressOutOfRange { addr: Addr, data_blocks: u64 },

    /// A disk write or flush failed: nothing committed since the last good flush may be durable,
    /// and the log refuses to claim otherwise. Reopen the image to recover what is durable.
    #[error("the log stopped after an I/O failure ({cause}); reopen to recover")]
    Poisoned { cause: String },

    /// A record that must have been durable (a later valid record says so) fails its checks.
    #[error("log corruption at position {pos} (sequence {seq}): {detail}")]
    Corruption { pos: u64, seq: u64, detail: String },

    #[error("the log is closed")]
    Closed,
}

impl LogError {
    pub(crate) fn not_image(reason: impl Into<String>) -> LogError {
        LogError::NotAnImage {
            reason: reason.into(),
        }
    }
}
