//! The replicated layer's errors.

use crate::meta::Role;
use txdisk_disk::DiskError;

pub type Result<T, E = ReplicatedError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicatedError {
    /// An error of the disks below that the pair cannot absorb (a crash, an address out of range).
    #[error(transparent)]
    Disk(#[from] DiskError),

    /// Neither replica can serve: the pair has lost all its data paths.
    #[error("both replicas have failed (d1: {d1}; d2: {d2})")]
    AllReplicasFailed { d1: String, d2: String },

    /// The only replica left is one that is known not to hold current data.
    #[error("no current replica: {reason}")]
    NoCurrentReplica { reason: String },

    /// Each member ran alone past the last event at which it saw the other: both hold writes
    /// the other never saw, and neither may be copied over the other.
    #[error("split brain: d1 ran alone from event {d1_alone_since} to {d1_events}, d2 from {d2_alone_since} to {d2_events}; each holds writes the other never saw, so neither is copied over the other (to keep one, put a blank disk in place of the other: the pair rebuilds it from the one kept)")]
    SplitBrain {
        d1_events: u64,
        d1_alone_since: u64,
        d2_events: u64,
        d2_alone_since: u64,
    },

    #[error("the two disks belong to different pairs (d1 is in pair {d1_pair_id:016x}, d2 in pair {d2_pair_id:016x})")]
    PairMismatch { d1_pair_id: u64, d2_pair_id: u64 },

    #[error("{replica} carries the metadata of member {found} of pair {pair_id:016x}, not of member {replica}")]
    WrongRole {
        replica: Role,
        found: Role,
        pair_id: u64,
    },

    #[error(
        "{replica} is not a member of a replicated pair (its metadata region holds other data)"
    )]
    NotAPairMember { replica: Role },

    #[error("neither disk has been formatted as a replicated pair")]
    NotFormatted,

    #[error("{replica}: metadata slot {slot} has format version {found}, this build reads versions up to {expected}")]
    UnsupportedVersion {
        replica: Role,
        slot: u64,
        expected: u32,
        found: u32,
    },

    #[error("{replica}: metadata slot {slot} is corrupt (checksum expected {expected_crc:08x}, found {found_crc:08x})")]
    MetadataCorrupt {
        replica: Role,
        slot: u64,
        expected_crc: u32,
        found_crc: u32,
    },

    #[error("{replica}: metadata slot {slot} cannot be read")]
    MetadataUnreadable { replica: Role, slot: u64 },

    #[error("the replicas record different sizes (d1: {d1_data_blocks} data blocks, d2: {d2_data_blocks})")]
    GeometryMismatch {
        d1_data_blocks: u64,
        d2_data_blocks: u64,
    },

    #[error("{replica} has {size_blocks} blocks, the pair needs at least {needed_blocks}")]
    TooSmall {
        replica: Role,
        size_blocks: u64,
        needed_blocks: u64,
    },

    #[error("the disks differ in size (d1: {d1_blocks} blocks, d2: {d2_blocks} blocks)")]
    SizeMismatch { d1_blocks: u64, d2_blocks: u64 },

    /// A rebuild stopped before the copy was complete; the target stays out of the pair.
    #[error("rebuild of {replica} aborted: {reason}")]
    RebuildAborted { replica: Role, reason: String },

    /// `rebuild` needs a failed or missing replica to replace.
    #[error("the pair is not degraded: both replicas are active")]
    NotDegraded,
}

impl From<ReplicatedError> for DiskError {
    /// The pair as a `Disk` speaks `DiskError`: losing both replicas is the pair failing.
    fn from(error: ReplicatedError) -> DiskError {
        match error {
            ReplicatedError::Disk(inner) => inner,
            other => {
                tracing::error!(error = %other, "replicated pair failed");
                DiskError::Failed
            }
        }
    }
}
