//! # txdisk-replicated: one crash-safe `Disk` over two unreliable ones
//!
//! (Full documentation below is completed in a following change.)

mod error;
mod invariant;
mod meta;
mod open;
mod pair;
mod resync;

pub use error::{ReplicatedError, Result};
pub use invariant::{recovered_from, replicas_agree, CrashViolation, WriteHistory};
pub use meta::{MetaState, ReplicaMeta, Role, Slot, FORMAT_VERSION, MAGIC, RESERVED_BLOCKS};
pub use open::FormatOptions;
pub use pair::{PairStatus, ReplicaStatus, ReplicatedDisk, LOCK_STRIPES};
pub use resync::{CopyReport, Phase, Progress, PROGRESS_INTERVAL_BLOCKS};
