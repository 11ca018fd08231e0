//! The replicated layer's errors.

use crate::meta::Role;
use txdisk_disk::DiskError;

/// The replicated layer's results.
pub type Result<T, E = ReplicatedError> = std::result::Result<T, E>;

/// What can go wrong with a replicated pair, in its own terms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicatedError {
    /// An error of the disks below that the pair cannot absorb (a crash, an address out of range).
    #[error(transparent)]
    Disk(#[from] DiskError),

    /// Neither replica can serve: the pair has lost all its data paths.
    #[error("both replicas have failed (d1: {d1}; d2: {d2})")]
    AllReplicasFailed {
        /// Why d1 cannot serve.
        d1: String,
        /// Why d2 cannot serve.
        d2: String,
    },

    /// The only replica left is one that is known not to hold current data.
    #[error("no current replica: {reason}")]
    NoCurrentReplica {
        /// Why the replica left is not current.
        reason: String,
    },

    /// Each member ran alone past the last event at which it saw the other: both hold writes
    /// the other never saw, and neither may be copied over the other.
    #[error("split brain: d1 ran alone from event {d1_alone_since} to {d1_events}, d2 from {d2_alone_since} to {d2_events}; each holds writes the other never saw, so neither is copied over the other (to keep one, put a blank disk in place of the other: the pair rebuilds it from the one kept)")]
    SplitBrain {
        /// d1's event counter.
        d1_events: u64,
        /// The last event at which d1 saw d2 (its `peer_events`).
        d1_alone_since: u64,
        /// d2's event counter.
        d2_events: u64,
        /// The last event at which d2 saw d1 (its `peer_events`).
        d2_alone_since: u64,
    },

    /// The two disks carry the metadata of two different pairs.
    #[error("the two disks belong to different pairs (d1 is in pair {d1_pair_id:016x}, d2 in pair {d2_pair_id:016x})")]
    PairMismatch {
        /// The pair id d1 records.
        d1_pair_id: u64,
        /// The pair id d2 records.
        d2_pair_id: u64,
    },

    /// A disk was given in the other member's place (swapped, or two copies of one member).
    #[error("{replica} carries the metadata of member {found} of pair {pair_id:016x}, not of member {replica}")]
    WrongRole {
        /// The position the disk was given in.
        replica: Role,
        /// The role its metadata records.
        found: Role,
        /// The pair it belongs to.
        pair_id: u64,
    },

    /// The disk's metadata region holds something other than pair metadata.
    #[error(
        "{replica} is not a member of a replicated pair (its metadata region holds other data)"
    )]
    NotAPairMember {
        /// The disk refused.
        replica: Role,
    },

    /// Neither disk carries pair metadata: format them first.
    #[error("neither disk has been formatted as a replicated pair")]
    NotFormatted,

    /// A metadata slot written by a newer (or unknown) format version.
    #[error("{replica}: metadata slot {slot} has format version {found}, this build reads versions up to {expected}")]
    UnsupportedVersion {
        /// The member whose slot it is.
        replica: Role,
        /// The metadata slot (block of the member).
        slot: u64,
        /// The newest format version this build reads.
        expected: u32,
        /// The version the slot records.
        found: u32,
    },

    /// A metadata slot whose checksum does not match its contents (torn or damaged).
    #[error("{replica}: metadata slot {slot} is corrupt (checksum expected {expected_crc:08x}, found {found_crc:08x})")]
    MetadataCorrupt {
        /// The member whose slot it is.
        replica: Role,
        /// The metadata slot (block of the member).
        slot: u64,
        /// The checksum computed over the slot's contents.
        expected_crc: u32,
        /// The checksum the slot records.
        found_crc: u32,
    },

    /// A metadata slot the member cannot read.
    #[error("{replica}: metadata slot {slot} cannot be read")]
    MetadataUnreadable {
        /// The member whose slot it is.
        replica: Role,
        /// The metadata slot (block of the member).
        slot: u64,
    },

    /// The two members' metadata record different data sizes.
    #[error("the replicas record different sizes (d1: {d1_data_blocks} data blocks, d2: {d2_data_blocks})")]
    GeometryMismatch {
        /// Data blocks recorded by d1.
        d1_data_blocks: u64,
        /// Data blocks recorded by d2.
        d2_data_blocks: u64,
    },

    /// The two members' metadata record different bitmap chunk sizes.
    #[error("the replicas record different bitmap chunks (d1: {d1_chunk_blocks} blocks, d2: {d2_chunk_blocks})")]
    ChunkMismatch {
        /// Chunk size recorded by d1.
        d1_chunk_blocks: u32,
        /// Chunk size recorded by d2.
        d2_chunk_blocks: u32,
    },

    /// A bitmap chunk size that is not a power of two up to [`crate::MAX_CHUNK_BLOCKS`].
    #[error("a bitmap chunk of {chunk_blocks} blocks: expected a power of two up to {max}", max = crate::MAX_CHUNK_BLOCKS)]
    BadChunkSize {
        /// The size asked for.
        chunk_blocks: u32,
    },

    /// A disk too small to hold the metadata and at least one data block.
    #[error("{replica} has {size_blocks} blocks, the pair needs at least {needed_blocks}")]
    TooSmall {
        /// The disk refused.
        replica: Role,
        /// Its size.
        size_blocks: u64,
        /// The smallest size a member may have.
        needed_blocks: u64,
    },

    /// The two disks are of different sizes.
    #[error("the disks differ in size (d1: {d1_blocks} blocks, d2: {d2_blocks} blocks)")]
    SizeMismatch {
        /// d1's size.
        d1_blocks: u64,
        /// d2's size.
        d2_blocks: u64,
    },

    /// A rebuild stopped before the copy was complete; the target stays out of the pair.
    #[error("rebuild of {replica} aborted: {reason}")]
    RebuildAborted {
        /// The member being rebuilt.
        replica: Role,
        /// Why the copy stopped.
        reason: String,
    },

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
