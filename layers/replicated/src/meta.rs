//! The pair metadata: two slots at the start of each replica (format in `docs/FORMAT-replicated.md`).
//!
//! Every metadata update writes the slot the older copy occupies (`seq % 2`) and is followed by a
//! `sync` before anything else is written to that replica, so at most one slot is ever in
//! flight: a crash (or a torn write) can damage only that one, and the other still holds the
//! previous, complete metadata.

use crate::error::{ReplicatedError, Result};
use crate::member::{MemberBlock, MemberDisk};
use byteorder::{ByteOrder, LittleEndian as LE};
use txdisk_disk::{Addr, Block, Disk, DiskError, BLOCK_SIZE};

/// Blocks reserved at the start of each replica for the metadata slots. Data address `a` of
/// the pair lives at block `a + RESERVED_BLOCKS` of each replica.
pub const RESERVED_BLOCKS: u64 = 2;
/// The format version this crate writes and reads. Version 3 added the write-intent bitmap
/// (`chunk_blocks` in the slot, the bitmap region after the data); members of versions 1 and
/// 2 have no room for it and are refused by name.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format version this crate reads.
pub const OLDEST_READABLE_VERSION: u32 = 3;
/// The first 8 bytes of a metadata slot.
pub const MAGIC: [u8; 8] = *b"txdPAIR\0";

// Byte offsets in a slot, little-endian throughout.
const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
const ROLE_OFFSET: usize = VERSION_OFFSET + 4;
const STATE_OFFSET: usize = ROLE_OFFSET + 1;
const PEER_OFFSET: usize = STATE_OFFSET + 1;
const PAD_OFFSET: usize = PEER_OFFSET + 1;
const PAIR_ID_OFFSET: usize = PAD_OFFSET + 1;
const SEQ_OFFSET: usize = PAIR_ID_OFFSET + 8;
const EVENTS_OFFSET: usize = SEQ_OFFSET + 8;
const DATA_SIZE_OFFSET: usize = EVENTS_OFFSET + 8;
const PEER_EVENTS_OFFSET: usize = DATA_SIZE_OFFSET + 8;
const CHUNK_BLOCKS_OFFSET: usize = PEER_EVENTS_OFFSET + 8;
const CRC_OFFSET: usize = CHUNK_BLOCKS_OFFSET + 4;
const END_OFFSET: usize = CRC_OFFSET + 4;

const _: () = assert!(END_OFFSET == 64);
const _: () = assert!(END_OFFSET <= BLOCK_SIZE);
const _: () = assert!(RESERVED_BLOCKS == 2);

/// Which member of the pair a replica is: the first (`D1`, the preferred source when both are
/// current) or the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The first member.
    D1,
    /// The second member.
    D2,
}

impl Role {
    /// 0 for d1, 1 for d2: the member's index in per-member arrays and its on-disk code.
    pub fn index(self) -> usize {
        match self {
            Role::D1 => 0,
            Role::D2 => 1,
        }
    }

    /// The member of index `index` (0 is d1, anything else d2).
    pub fn from_index(index: usize) -> Role {
        if index == 0 {
            Role::D1
        } else {
            Role::D2
        }
    }

    /// The peer member.
    pub fn other(self) -> Role {
        Role::from_index(1 - self.index())
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::D1 => write!(f, "d1"),
            Role::D2 => write!(f, "d2"),
        }
    }
}

/// What a replica's metadata says about its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetaState {
    /// The pair was closed cleanly (or recovery finished): both current replicas hold the same
    /// durable data.
    Clean,
    /// Writes may have been in flight: after a crash the replicas may differ.
    Dirty,
    /// A copy onto this replica started and has not finished: never a source.
    Rebuilding,
}

impl MetaState {
    fn code(self) -> u8 {
        match self {
            MetaState::Clean => 1,
            MetaState::Dirty => 2,
            MetaState::Rebuilding => 3,
        }
    }

    fn from_code(code: u8) -> Option<MetaState> {
        match code {
            1 => Some(MetaState::Clean),
            2 => Some(MetaState::Dirty),
            3 => Some(MetaState::Rebuilding),
            _ => None,
        }
    }
}

/// The decoded contents of one metadata slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaMeta {
    /// Identifies the pair; both replicas carry the same.
    pub pair_id: u64,
    /// Which member this replica is.
    pub role: Role,
    /// Clean, Dirty or Rebuilding.
    pub state: MetaState,
    /// True when this replica ran on while its peer was failed or missing (diagnostic only).
    pub peer_failed: bool,
    /// Counts this replica's metadata writes; the slot it went to is `seq % 2`.
    pub seq: u64,
    /// The event counter: bumped at every transition a member must have seen — the first
    /// write after open (Dirty), a clean close or the end of a resync (Clean), losing a member,
    /// opening without one, the end of a rebuild — so that a replica that missed any of them
    /// (it failed, or is an older copy of itself put back) has fewer events than a current one.
    pub events: u64,
    /// Data blocks of the pair (the replica holds `RESERVED_BLOCKS` more).
    pub data_size_blocks: u64,
    /// The event count at which this member last ran with its peer current: equal to `events`
    /// while both are active, frozen when the member goes on alone. Two members that each ran
    /// alone past what the other saw are a split brain ([`choose_source`](crate::choose_source)).
    pub peer_events: u64,
    /// Data blocks per bit of the write-intent bitmap (a power of two); the bitmap follows the
    /// data (see [`BitmapLayout`](crate::BitmapLayout)).
    pub chunk_blocks: u32,
}

impl ReplicaMeta {
    /// Where this member's bitmap lives and what its bits cover.
    pub fn bitmap_layout(&self) -> crate::BitmapLayout {
        match crate::BitmapLayout::new(self.data_size_blocks, u64::from(self.chunk_blocks)) {
            Some(layout) => layout,
            // `Slot::decode` refuses any other chunk size, and `format` never writes one.
            None => panic!(
                "replicated: metadata with chunk size {} blocks, not a power of two up to {}",
                self.chunk_blocks,
                crate::MAX_CHUNK_BLOCKS
            ),
        }
    }
}

/// What one slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Valid metadata of this format.
    Valid(ReplicaMeta),
    /// All zeros: never written.
    Blank,
    /// Neither zeros nor our magic: something else's data.
    Foreign,
    /// Our magic, but a version this crate does not read.
    BadVersion {
        /// The version the slot records.
        found: u32,
    },
    /// Our magic, a bad checksum or a field out of range (a torn or damaged write).
    Corrupt {
        /// The checksum computed over the slot's contents.
        expected_crc: u32,
        /// The checksum the slot records.
        found_crc: u32,
    },
    /// The slot's block returned a read error.
    Unreadable,
}

/// The slot's checksum: over every byte of the block but the checksum field itself.
fn slot_crc(bytes: &[u8; BLOCK_SIZE]) -> u32 {
    let head = crc32c::crc32c(&bytes[..CRC_OFFSET]);
    crc32c::crc32c_append(head, &bytes[CRC_OFFSET + 4..])
}

impl ReplicaMeta {
    /// The slot this metadata goes to.
    pub fn slot_addr(&self) -> Addr {
        self.slot_block().index()
    }

    /// The slot this metadata goes to, as a block of the member.
    pub(crate) fn slot_block(&self) -> MemberBlock {
        MemberBlock::slot(self.seq % RESERVED_BLOCKS)
    }

    /// The slot's block: the byte layout of `docs/FORMAT-replicated.md`, checksum last.
    pub fn encode(&self) -> Block {
        let mut block = Block::zeroed();
        let bytes = block.as_bytes_mut();
        bytes[MAGIC_OFFSET..MAGIC_OFFSET + 8].copy_from_slice(&MAGIC);
        LE::write_u32(&mut bytes[VERSION_OFFSET..], FORMAT_VERSION);
        bytes[ROLE_OFFSET] = self.role.index() as u8;
        bytes[STATE_OFFSET] = self.state.code();
        bytes[PEER_OFFSET] = u8::from(self.peer_failed);
        LE::write_u64(&mut bytes[PAIR_ID_OFFSET..], self.pair_id);
        LE::write_u64(&mut bytes[SEQ_OFFSET..], self.seq);
        LE::write_u64(&mut bytes[EVENTS_OFFSET..], self.events);
        LE::write_u64(&mut bytes[DATA_SIZE_OFFSET..], self.data_size_blocks);
        LE::write_u64(&mut bytes[PEER_EVENTS_OFFSET..], self.peer_events);
        LE::write_u32(&mut bytes[CHUNK_BLOCKS_OFFSET..], self.chunk_blocks);
        let crc = slot_crc(bytes);
        LE::write_u32(&mut bytes[CRC_OFFSET..], crc);
        // Pair assertion: what we are about to write must read back as itself.
        debug_assert_eq!(
            Slot::decode(&block),
            Slot::Valid(*self),
            "replicated: slot encoding does not round-trip"
        );
        block
    }
}

impl Slot {
    /// What one slot's block holds; never fails (a bad block is a [`Slot`] variant).
    pub fn decode(block: &Block) -> Slot {
        let bytes = block.as_bytes();
        if bytes[MAGIC_OFFSET..MAGIC_OFFSET + 8] != MAGIC {
            return if block.is_zero() {
                Slot::Blank
            } else {
                Slot::Foreign
            };
        }
        let version = LE::read_u32(&bytes[VERSION_OFFSET..]);
        if version != FORMAT_VERSION {
            return Slot::BadVersion { found: version };
        }
        let expected_crc = slot_crc(bytes);
        let found_crc = LE::read_u32(&bytes[CRC_OFFSET..]);
        let corrupt = Slot::Corrupt {
            expected_crc,
            found_crc,
        };
        if expected_crc != found_crc {
            return corrupt;
        }
        let role = match bytes[ROLE_OFFSET] {
            0 => Role::D1,
            1 => Role::D2,
            _ => return corrupt,
        };
        let Some(state) = MetaState::from_code(bytes[STATE_OFFSET]) else {
            return corrupt;
        };
        let peer_failed = match bytes[PEER_OFFSET] {
            0 => false,
            1 => true,
            _ => return corrupt,
        };
        if bytes[PAD_OFFSET] != 0 {
            return corrupt;
        }
        let events = LE::read_u64(&bytes[EVENTS_OFFSET..]);
        let peer_events = LE::read_u64(&bytes[PEER_EVENTS_OFFSET..]);
        if peer_events > events {
            return corrupt;
        }
        let chunk_blocks = LE::read_u32(&bytes[CHUNK_BLOCKS_OFFSET..]);
        if !chunk_blocks.is_power_of_two() || chunk_blocks > crate::MAX_CHUNK_BLOCKS {
            return corrupt;
        }
        Slot::Valid(ReplicaMeta {
            pair_id: LE::read_u64(&bytes[PAIR_ID_OFFSET..]),
            role,
            state,
            peer_failed,
            seq: LE::read_u64(&bytes[SEQ_OFFSET..]),
            events,
            data_size_blocks: LE::read_u64(&bytes[DATA_SIZE_OFFSET..]),
            peer_events,
            chunk_blocks,
        })
    }
}

/// What the metadata region of one replica holds, both slots taken together.
#[derive(Debug)]
pub(crate) enum Found {
    /// The newest valid slot.
    Meta(ReplicaMeta),
    /// Both slots all zeros: a fresh disk, never part of a pair.
    Blank,
    /// Not ours, or ours but unreadable: the reason, ready to report.
    Unusable(ReplicatedError),
    /// The replica failed (fail-stop) while its metadata was read.
    Dead(DiskError),
}

/// Reads and combines both slots of `disk`. `Err` only for a machine crash.
pub(crate) fn read_meta<D: Disk + ?Sized>(disk: MemberDisk<'_, D>, role: Role) -> Result<Found> {
    let mut slots = [Slot::Blank; 2];
    for (index, slot) in (0..RESERVED_BLOCKS).zip(slots.iter_mut()) {
        match disk.read(MemberBlock::slot(index)) {
            Ok(block) => *slot = Slot::decode(&block),
            Err(DiskError::Crashed) => return Err(ReplicatedError::Disk(DiskError::Crashed)),
            // A bad sector under one slot, or a slot that fails the member's verification, is a
            // damaged slot; the other may still be good.
            Err(error) if error.is_bad_block() => *slot = Slot::Unreadable,
            Err(error) => return Ok(Found::Dead(error)),
        }
    }
    // Neither slot can be read (bad sectors, or both failing the member's verification, as a
    // misdirected write over its tags leaves them): the member is failed for this run, like
    // one that stops answering, and the pair runs on the other. Refusing would stop the pair
    // for one member's damage.
    if slots.iter().all(|slot| *slot == Slot::Unreadable) {
        return Ok(Found::Dead(DiskError::ReadError {
            addr: MemberBlock::slot(0).index(),
        }));
    }
    Ok(combine(slots, role))
}

fn combine(slots: [Slot; 2], role: Role) -> Found {
    let newest = slots
        .iter()
        .filter_map(|slot| match slot {
            Slot::Valid(meta) => Some(*meta),
            _ => None,
        })
        .max_by_key(|meta| meta.seq);
    if let Some(meta) = newest {
        return Found::Meta(meta);
    }
    if slots.iter().all(|slot| *slot == Slot::Blank) {
        return Found::Blank;
    }
    // One slot blank and the other damaged: the first metadata write of a new member (format,
    // a rebuild's marker) cut short. A member that ever had metadata has both slots written,
    // so this is still a blank disk.
    let damaged = |slot: &Slot| matches!(slot, Slot::Unreadable | Slot::Corrupt { .. });
    if slots.contains(&Slot::Blank) && slots.iter().any(damaged) {
        return Found::Blank;
    }
    for (index, slot) in slots.iter().enumerate() {
        if let Slot::BadVersion { found } = slot {
            let found = *found;
            return Found::Unusable(ReplicatedError::UnsupportedVersion {
                replica: role,
                expected: FORMAT_VERSION,
                found,
                slot: index as u64,
            });
        }
    }
    for (index, slot) in slots.iter().enumerate() {
        if let Slot::Corrupt {
            expected_crc,
            found_crc,
        } = slot
        {
            return Found::Unusable(ReplicatedError::MetadataCorrupt {
                replica: role,
                slot: index as u64,
                expected_crc: *expected_crc,
                found_crc: *found_crc,
            });
        }
    }
    if let Some(index) = slots.iter().position(|slot| *slot == Slot::Unreadable) {
        return Found::Unusable(ReplicatedError::MetadataUnreadable {
            replica: role,
            slot: index as u64,
        });
    }
    Found::Unusable(ReplicatedError::NotAPairMember { replica: role })
}

/// Reads a member's metadata without opening the pair (for inspection tools): `Ok(Some(meta))`
/// for the newest valid slot, `Ok(None)` for a blank disk, `Err` with the reason otherwise
/// (not a member, corrupt, unsupported version, or the disk's own error).
pub fn inspect_member(disk: &dyn Disk) -> Result<Option<ReplicaMeta>> {
    match read_meta(MemberDisk::new(disk), Role::D1)? {
        Found::Meta(meta) => Ok(Some(meta)),
        Found::Blank => Ok(None),
        Found::Unusable(error) => Err(error),
        Found::Dead(error) => Err(ReplicatedError::Disk(error)),
    }
}

/// Writes `meta` to its slot and syncs, so that it is durable before the caller writes anything
/// else to this replica.
pub(crate) fn write_meta<D: Disk + ?Sized>(
    disk: MemberDisk<'_, D>,
    meta: &ReplicaMeta,
) -> txdisk_disk::Result<()> {
    disk.write(meta.slot_block(), &meta.encode())?;
    disk.sync()
}

/// Writes `meta` to both slots (seq and seq + 1), each synced before the next: nothing of a
/// previous owner of the disk survives in the other slot. A crash leaves at most one slot
/// damaged — the first (the other still as it was: blank on a new disk, read as blank), or
/// the second (the first, synced, outranks it). Returns the metadata as last written.
pub(crate) fn write_both_slots<D: Disk + ?Sized>(
    disk: MemberDisk<'_, D>,
    meta: &ReplicaMeta,
) -> txdisk_disk::Result<ReplicaMeta> {
    let mut meta = *meta;
    disk.write(meta.slot_block(), &meta.encode())?;
    disk.sync()?;
    meta.seq += 1;
    disk.write(meta.slot_block(), &meta.encode())?;
    disk.sync()?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ReplicaMeta {
        ReplicaMeta {
            pair_id: 0x1234_5678_9abc_def0,
            role: Role::D2,
            state: MetaState::Dirty,
            peer_failed: true,
            seq: 7,
            events: 42,
            data_size_blocks: 1000,
            peer_events: 40,
            chunk_blocks: 16,
        }
    }

    #[test]
    fn slot_round_trips() {
        let meta = sample();
        assert_eq!(Slot::decode(&meta.encode()), Slot::Valid(meta));
        assert_eq!(meta.slot_addr(), 1);
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let block = sample().encode();
        for offset in [
            0, 9, 12, 13, 14, 15, 16, 30, 48, 51, 52, 56, 59, 60, 63, 64, 4095,
        ] {
            let mut bad = block.clone();
            bad.as_bytes_mut()[offset] ^= 0x40;
            assert!(
                !matches!(Slot::decode(&bad), Slot::Valid(_)),
                "flip at byte {offset} went unnoticed"
            );
        }
    }

    #[test]
    fn older_versions_and_bad_chunk_sizes_are_refused() {
        let mut v2 = sample().encode();
        LE::write_u32(&mut v2.as_bytes_mut()[VERSION_OFFSET..], 2);
        assert_eq!(Slot::decode(&v2), Slot::BadVersion { found: 2 });
        for chunk_blocks in [0, 3, crate::MAX_CHUNK_BLOCKS * 2] {
            let mut bad = sample().encode();
            let bytes = bad.as_bytes_mut();
            LE::write_u32(&mut bytes[CHUNK_BLOCKS_OFFSET..], chunk_blocks);
            let crc = slot_crc(bytes);
            LE::write_u32(&mut bytes[CRC_OFFSET..], crc);
            assert!(
                matches!(Slot::decode(&bad), Slot::Corrupt { .. }),
                "chunk size {chunk_blocks} accepted"
            );
        }
    }

    #[test]
    fn blank_and_foreign_are_told_apart() {
        assert_eq!(Slot::decode(&Block::zeroed()), Slot::Blank);
        assert_eq!(Slot::decode(&Block::filled(7)), Slot::Foreign);
        let mut other_version = sample().encode();
        other_version.as_bytes_mut()[VERSION_OFFSET] = 9;
        assert_eq!(Slot::decode(&other_version), Slot::BadVersion { found: 9 });
    }

    #[test]
    fn newest_valid_slot_wins_and_a_torn_one_is_ignored() {
        let old = ReplicaMeta {
            seq: 4,
            events: 1,
            ..sample()
        };
        let new = ReplicaMeta {
            seq: 5,
            events: 2,
            ..sample()
        };
        let found = combine([Slot::Valid(old), Slot::Valid(new)], Role::D2);
        assert!(matches!(found, Found::Meta(meta) if meta == new));
        let torn = Slot::Corrupt {
            expected_crc: 1,
            found_crc: 2,
        };
        let found = combine([Slot::Valid(old), torn], Role::D2);
        assert!(matches!(found, Found::Meta(meta) if meta == old));
    }
}
