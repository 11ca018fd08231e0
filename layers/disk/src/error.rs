//! The disk layer's errors: every failure an input, a device or a crash can cause.

use crate::block::Addr;

/// The disk layer's result: [`DiskError`] unless said otherwise.
pub type Result<T, E = DiskError> = std::result::Result<T, E>;

/// Why a disk call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskError {
    /// An address past the end of the disk.
    #[error("address {addr} is out of range (disk has {size_blocks} blocks)")]
    OutOfRange {
        /// The address asked for.
        addr: Addr,
        /// The disk's size; valid addresses are below it.
        size_blocks: u64,
    },

    /// Bytes that do not make a block.
    #[error("a block must be exactly 4096 bytes, got {len}")]
    BadBlockLength {
        /// The length given, in bytes.
        len: usize,
    },

    /// An image whose size is not whole blocks.
    #[error("{path}: size {size_bytes} bytes is not a whole number of 4096-byte blocks")]
    BadSize {
        /// The image file or device.
        path: String,
        /// Its size.
        size_bytes: u64,
    },

    /// An image of zero blocks.
    #[error("{path}: a disk must have at least one block")]
    Empty {
        /// The image file or device.
        path: String,
    },

    /// The (simulated) machine crashed: nothing more reaches this disk until it is restarted.
    #[error("the disk crashed")]
    Crashed,

    /// The device failed for good (fail-stop): every call errs from now on.
    #[error("the disk has failed")]
    Failed,

    /// One block cannot be read (a bad sector); the device is otherwise alive.
    #[error("read error at block {addr}")]
    ReadError {
        /// The unreadable block.
        addr: Addr,
    },

    /// A block failed verification against the checksum a layer keeps for it: the bytes are
    /// not the ones last written there, and are never returned. Like [`DiskError::ReadError`],
    /// a per-block error: the device is otherwise alive, and a replicated disk reads the other
    /// copy and repairs this one.
    #[error("block {addr} failed verification: {damage}")]
    Corrupt {
        /// The damaged block (an address of the disk that reports it).
        addr: Addr,
        /// What the verification found.
        damage: Damage,
    },

    /// The disk cannot do what was asked (for example record a block as lost: only a disk that
    /// keeps checksums can).
    #[error("this disk does not support {op}")]
    Unsupported {
        /// The operation.
        op: &'static str,
    },

    /// A disk opened read-only ([`crate::OverlayDisk`]) was asked to hold more written blocks
    /// in memory than its limit: a rebuild of a whole stale pair member, say.
    #[error(
        "a read-only open would hold more than {limit_blocks} written blocks in memory (a stale \
         pair member is rebuilt in full): open it writable, or open the up-to-date member alone"
    )]
    OverlayFull {
        /// The limit.
        limit_blocks: u64,
    },

    /// A flush failed: writes since the last good sync may be lost. Never retry and report success.
    #[error("sync failed: writes since the last successful sync may be lost")]
    SyncFailed,

    /// A system call on an image failed.
    #[error("{op} of block {addr} failed: {source}")]
    Io {
        /// The call (`read`, `write`, `sync`, …).
        op: &'static str,
        /// The block it was for (the first, for a run).
        addr: Addr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// Another handle — in this process or another — holds the image: one writer at a time, and
    /// no reader while a writer runs (what it read would be changing under it).
    #[error("{path}: {}", locked_reason(*.wanted, *.holder_pid))]
    Locked {
        /// The image.
        path: String,
        /// What this open asked for.
        wanted: LockMode,
        /// The process holding the conflicting lock, where the OS tells (`/proc/locks`).
        holder_pid: Option<u32>,
    },

    /// An image could not be opened.
    #[error("{path}: {source}")]
    Open {
        /// The image.
        path: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// What a failed verification found in a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Damage {
    /// Bytes that match no version of any block: bit rot, a torn or garbled write, or a damaged
    /// checksum.
    Flipped,
    /// Bytes that belong at another address: a write that landed in the wrong place.
    Misdirected {
        /// The address whose current contents these are.
        belongs_at: Addr,
    },
    /// The block's previous contents: its last write never reached the medium (a lost write).
    Stale,
}

impl Damage {
    /// The same damage seen from a disk whose address 0 is block `offset` of the one that
    /// found it (a layer that offers a window of the disk below): a misdirected block's origin
    /// is renamed; an origin before `offset` (a block the window does not show) becomes 0.
    pub fn shifted(self, offset: u64) -> Damage {
        match self {
            Damage::Misdirected { belongs_at } => Damage::Misdirected {
                belongs_at: belongs_at.saturating_sub(offset),
            },
            other => other,
        }
    }

    /// The kind's name in reports: `flipped`, `misdirected`, `stale`.
    pub fn kind(self) -> &'static str {
        match self {
            Damage::Flipped => "flipped",
            Damage::Misdirected { .. } => "misdirected",
            Damage::Stale => "stale",
        }
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Flipped => write!(f, "checksum mismatch (bit rot or a damaged write)"),
            Damage::Misdirected { belongs_at } => {
                write!(
                    f,
                    "holds the contents of block {belongs_at} (a misdirected write)"
                )
            }
            Damage::Stale => write!(f, "holds its previous contents (a lost write)"),
        }
    }
}

/// The lock an open takes on an image for the lifetime of its handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// A writer: no other handle of any kind.
    Exclusive,
    /// A read-only inspection: other readers, but no writer.
    Shared,
}

fn locked_reason(wanted: LockMode, holder_pid: Option<u32>) -> String {
    let holder = match holder_pid {
        Some(pid) if pid == std::process::id() => "another handle in this process".to_string(),
        Some(pid) => format!("process {pid}"),
        None => "another process".to_string(),
    };
    match wanted {
        LockMode::Exclusive => format!(
            "in use by {holder}; an image has one user at a time (stop the other before opening it)"
        ),
        LockMode::Shared => format!(
            "open for writing by {holder}; a live image is changing and is not inspected (stop the writer first)"
        ),
    }
}

impl DiskError {
    /// True for errors after which this disk cannot be used any more (crash or fail-stop).
    pub fn is_fatal(&self) -> bool {
        matches!(self, DiskError::Crashed | DiskError::Failed)
    }

    /// True for an error of one block that leaves the device alive: a bad sector (a read error,
    /// or `EIO` from reading a file or device) or a block that failed verification. Another copy
    /// may hold the block, and a write of a good value repairs it.
    pub fn is_bad_block(&self) -> bool {
        matches!(
            self,
            DiskError::ReadError { .. }
                | DiskError::Io { op: "read", .. }
                | DiskError::Corrupt { .. }
        )
    }
}
