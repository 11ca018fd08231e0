//! The log layer's errors.

use txdisk_disk::{Addr, DiskError};

/// The log's result type.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The disk below failed a read, write or sync.
    #[error(transparent)]
    Disk(#[from] DiskError),

    /// The home block of a data address failed verification below: its bytes are not the ones
    /// last written, and are not returned.
    #[error("data block {addr} is damaged: {source}")]
    DamagedBlock {
        /// The address of the log's address space.
        addr: Addr,
        /// What the disk below found.
        #[source]
        source: DiskError,
    },

    /// Block 0 is not a txdisk superblock.
    #[error("not a txdisk image: {reason}")]
    NotAnImage {
        /// What was found instead.
        reason: String,
    },

    /// The superblock names a format version this build does not read.
    #[error(
        "on-disk format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The version the superblock names.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// The superblock's checksum does not match its contents.
    #[error("superblock checksum mismatch: expected {expected:#010x}, found {found:#010x}")]
    SuperblockChecksum {
        /// The checksum of the superblock's contents.
        expected: u32,
        /// The checksum stored in the superblock.
        found: u32,
    },

    /// The layout is impossible, or does not fit the disk it is on.
    #[error("bad geometry: {reason}")]
    BadGeometry {
        /// Which bound was broken.
        reason: String,
    },

    /// Neither header slot holds a valid header: nothing says where the log starts.
    #[error("no valid log header in either header slot (blocks 1 and 2)")]
    NoValidHeader,

    /// A transaction writes more blocks than one record can hold.
    #[error(
        "transaction writes {blocks} blocks; the log holds at most {max_blocks} per transaction"
    )]
    TransactionTooLarge {
        /// Distinct blocks the transaction writes.
        blocks: usize,
        /// [`Log::max_tx_blocks`](crate::Log::max_tx_blocks) of this log.
        max_blocks: usize,
    },

    /// An address past the end of the data region.
    #[error("address {addr} is outside the data region ({data_blocks} blocks)")]
    AddressOutOfRange {
        /// The address asked for.
        addr: Addr,
        /// Blocks in the data region: valid addresses are below this.
        data_blocks: u64,
    },

    /// A disk write or flush failed: nothing committed since the last good flush may be durable,
    /// and the log refuses to claim otherwise. Reopen the image to recover what is durable.
    #[error("the log stopped after an I/O failure ({cause}); reopen to recover")]
    Poisoned {
        /// The failure that stopped the log.
        cause: String,
    },

    /// A record that must have been durable (a later valid record says so) fails its checks.
    #[error("log corruption at position {pos} (sequence {seq}): {detail}")]
    Corruption {
        /// Absolute log position where the chain breaks.
        pos: u64,
        /// Sequence number the record there should carry.
        seq: u64,
        /// What is wrong, and which later record says it had been durable.
        detail: String,
    },

    /// [`Log::close`](crate::Log::close) has run.
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
