//! The write-intent bitmap (Linux md's idea): a region at the end of each member with one bit
//! per *chunk* of [`BitmapLayout::chunk_blocks`] data blocks. A set bit says the members may
//! differ inside that chunk; a clear bit says they are equal there. After a crash, `open`
//! copies only the chunks whose bit is set on either member, so recovery takes the time of the
//! writes that were in flight, not of the pair's size. Byte layout in `docs/FORMAT-replicated.md`.
//!
//! The rule the pair keeps (checked by [`crate::differences_marked`] in every crash state of
//! the exhaustive test): **a chunk's bit is durable on every member being written before the
//! first data write into it**, and it is cleared only once every write into the chunk has
//! ended, a pair `sync` that began after the last of them has returned `Ok`, and
//! [`CLEAR_AFTER_IDLE_SYNCS`] more syncs have found the chunk idle. A cleared bit is written
//! lazily (with no sync of its own: a lost clear only makes a later recovery copy the chunk
//! again); a set bit is written and synced on both members at once, and writers that need
//! bits at the same time share one such flush.
//!
//! This module is the bitmap's format and its in-memory state ([`IntentBitmap`]); the pair
//! (`pair.rs`) does the I/O.

use crate::member::MemberBlock;
use crate::meta::RESERVED_BLOCKS;
use byteorder::{ByteOrder, LittleEndian as LE};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Range, RangeInclusive};
use txdisk_disk::sync::Mutex;
use txdisk_disk::{Addr, Block, BLOCK_SIZE};

/// The first 8 bytes of a bitmap block.
pub const BITMAP_MAGIC: [u8; 8] = *b"txdBMAP\0";
/// Bytes before the bits in a bitmap block: magic, pair id, block index, checksum, reserved.
pub const BITMAP_HEADER_BYTES: usize = 32;
/// Chunks one bitmap block records.
pub const CHUNKS_PER_BITMAP_BLOCK: u64 = ((BLOCK_SIZE - BITMAP_HEADER_BYTES) * 8) as u64;
/// The chunk size `format` uses unless told otherwise: 256 KiB of data per bit. Measured by
/// `examples/bitmap_chunks.rs` (a crash right after an installation of 64 random blocks on a
/// 1 GiB pair): the open copies 1 040 blocks in 20 ms with 64 KiB chunks, 4 160 in 85 ms with
/// 256 KiB, 16 128 in 255 ms with 1 MiB, 62 464 in 700 ms with 4 MiB; durable writes per second
/// differ by less than the run-to-run noise. Smaller chunks cost a flush more often on
/// sequential writes (one per chunk) and a larger bitmap; 256 KiB keeps that under 2 % of a
/// log's appends.
pub const DEFAULT_CHUNK_BLOCKS: u32 = 64;
/// The largest chunk a pair may be formatted with (1 GiB of data per bit).
pub const MAX_CHUNK_BLOCKS: u32 = 1 << 18;
/// Chunks marked ahead of a sequential writer (see `IntentBitmap::mark_ahead`).
pub const MARK_AHEAD_CHUNKS: u64 = 8;
/// Pair syncs a chunk must stay idle through, after the sync that made its last write durable,
/// before its bit is cleared: a chunk written every few syncs (a log's head) keeps its bit
/// instead of paying a flush to set it again each time.
pub const CLEAR_AFTER_IDLE_SYNCS: u64 = 4;

const MAGIC_OFFSET: usize = 0;
const PAIR_ID_OFFSET: usize = 8;
const INDEX_OFFSET: usize = 16;
const CRC_OFFSET: usize = 20;
const RESERVED_OFFSET: usize = 24;
const _: () = assert!(RESERVED_OFFSET + 8 == BITMAP_HEADER_BYTES);

/// Where the bitmap of a pair lives and how it maps data addresses to bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitmapLayout {
    /// Data blocks of the pair.
    pub data_blocks: u64,
    /// Data blocks per chunk (per bit): a power of two.
    pub chunk_blocks: u64,
}

impl BitmapLayout {
    /// The layout of a pair of `data_blocks` with chunks of `chunk_blocks` (a power of two, at
    /// most [`MAX_CHUNK_BLOCKS`]); `None` otherwise.
    pub fn new(data_blocks: u64, chunk_blocks: u64) -> Option<BitmapLayout> {
        let valid = chunk_blocks.is_power_of_two() && chunk_blocks <= u64::from(MAX_CHUNK_BLOCKS);
        valid.then_some(BitmapLayout {
            data_blocks,
            chunk_blocks,
        })
    }

    /// The largest pair a member of `member_blocks` holds with chunks of `chunk_blocks`.
    pub fn for_member(member_blocks: u64, chunk_blocks: u64) -> Option<BitmapLayout> {
        let room = member_blocks.checked_sub(RESERVED_BLOCKS)?;
        // Every data block costs 1 block and 1/(chunk * CHUNKS_PER_BITMAP_BLOCK) of a bitmap
        // block: start from the estimate and step down to the largest that fits.
        let per_bitmap_block = chunk_blocks.checked_mul(CHUNKS_PER_BITMAP_BLOCK)?;
        let mut data_blocks = room - room.div_ceil(per_bitmap_block + 1);
        loop {
            let layout = BitmapLayout::new(data_blocks, chunk_blocks)?;
            if layout.member_blocks() <= member_blocks {
                return (data_blocks > 0).then_some(layout);
            }
            data_blocks = data_blocks.checked_sub(1)?;
        }
    }

    /// Chunks of the pair: the last may be partial.
    pub fn chunks(&self) -> u64 {
        self.data_blocks.div_ceil(self.chunk_blocks)
    }

    /// Blocks of the bitmap region on each member.
    pub fn bitmap_blocks(&self) -> u64 {
        self.chunks().div_ceil(CHUNKS_PER_BITMAP_BLOCK)
    }

    /// The member block of bitmap block 0: the bitmap follows the data.
    pub fn first_bitmap_block(&self) -> u64 {
        RESERVED_BLOCKS.saturating_add(self.data_blocks)
    }

    /// Blocks a member needs: the metadata slots, the data, the bitmap (saturating: a size
    /// read from a damaged or crafted slot compares as too large for any disk, never wraps).
    pub fn member_blocks(&self) -> u64 {
        self.first_bitmap_block()
            .saturating_add(self.bitmap_blocks())
    }

    /// The chunk of data address `addr`.
    pub fn chunk_of(&self, addr: Addr) -> u64 {
        addr / self.chunk_blocks
    }

    /// The chunks of data addresses `start..start + blocks` (`blocks ≥ 1`).
    pub fn chunks_of_run(&self, start: Addr, blocks: u64) -> RangeInclusive<u64> {
        assert!(blocks >= 1, "replicated: an empty run has no chunks");
        self.chunk_of(start)..=self.chunk_of(start + blocks - 1)
    }

    /// The data addresses of chunk `chunk`.
    pub fn addrs_of_chunk(&self, chunk: u64) -> Range<Addr> {
        let start = chunk * self.chunk_blocks;
        start..(start + self.chunk_blocks).min(self.data_blocks)
    }

    /// The bitmap block that records chunk `chunk`.
    pub fn block_of_chunk(&self, chunk: u64) -> u64 {
        chunk / CHUNKS_PER_BITMAP_BLOCK
    }

    /// The chunks bitmap block `index` records.
    pub fn chunks_of_block(&self, index: u64) -> Range<u64> {
        let start = index * CHUNKS_PER_BITMAP_BLOCK;
        start..(start + CHUNKS_PER_BITMAP_BLOCK).min(self.chunks())
    }

    /// Bitmap block `index` as a block of the member.
    pub(crate) fn member_block(&self, index: u64) -> MemberBlock {
        assert!(
            index < self.bitmap_blocks(),
            "replicated: bitmap block {index} out of range: expected below {}",
            self.bitmap_blocks()
        );
        MemberBlock::of_bitmap(self.first_bitmap_block().saturating_add(index))
    }

    /// Bitmap block `index` with the chunks of `marked` (absolute chunk numbers; those outside
    /// the block are ignored) set.
    pub fn encode_block(&self, pair_id: u64, index: u64, marked: &BTreeSet<u64>) -> Block {
        let range = self.chunks_of_block(index);
        let mut block = Block::zeroed();
        let bytes = block.as_bytes_mut();
        bytes[MAGIC_OFFSET..MAGIC_OFFSET + 8].copy_from_slice(&BITMAP_MAGIC);
        LE::write_u64(&mut bytes[PAIR_ID_OFFSET..], pair_id);
        LE::write_u32(&mut bytes[INDEX_OFFSET..], index as u32);
        for chunk in marked.range(range.clone()) {
            let bit = (chunk - range.start) as usize;
            bytes[BITMAP_HEADER_BYTES + bit / 8] |= 1 << (bit % 8);
        }
        let crc = bitmap_crc(bytes);
        LE::write_u32(&mut bytes[CRC_OFFSET..], crc);
        // Decode-after-encode: what goes to the disk must read back as what was meant.
        debug_assert_eq!(
            self.decode_block(&block, pair_id, index),
            BitmapBlock::Valid(marked.range(range).copied().collect()),
            "replicated: bitmap block {index} does not round-trip"
        );
        block
    }

    /// What bitmap block `index` of pair `pair_id` holds.
    pub fn decode_block(&self, block: &Block, pair_id: u64, index: u64) -> BitmapBlock {
        let bytes = block.as_bytes();
        if bytes[MAGIC_OFFSET..MAGIC_OFFSET + 8] != BITMAP_MAGIC {
            return if block.is_zero() {
                BitmapBlock::Blank
            } else {
                BitmapBlock::Invalid("not a bitmap block")
            };
        }
        if LE::read_u32(&bytes[CRC_OFFSET..]) != bitmap_crc(bytes) {
            return BitmapBlock::Invalid("bad checksum");
        }
        if LE::read_u64(&bytes[PAIR_ID_OFFSET..]) != pair_id {
            return BitmapBlock::Invalid("another pair's bitmap");
        }
        if u64::from(LE::read_u32(&bytes[INDEX_OFFSET..])) != index
            || bytes[RESERVED_OFFSET..BITMAP_HEADER_BYTES] != [0; 8]
        {
            return BitmapBlock::Invalid("misplaced or malformed bitmap block");
        }
        let range = self.chunks_of_block(index);
        let mut marked = BTreeSet::new();
        for (offset, byte) in bytes[BITMAP_HEADER_BYTES..].iter().enumerate() {
            for bit in (0..8).filter(|bit| byte & (1 << bit) != 0) {
                let chunk = range.start + (offset * 8 + bit) as u64;
                if chunk >= range.end {
                    return BitmapBlock::Invalid("a bit set past the last chunk");
                }
                marked.insert(chunk);
            }
        }
        BitmapBlock::Valid(marked)
    }
}

fn bitmap_crc(bytes: &[u8]) -> u32 {
    let head = crc32c::crc32c(&bytes[..CRC_OFFSET]);
    crc32c::crc32c_append(head, &bytes[CRC_OFFSET + 4..])
}

/// What one bitmap block of a member holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BitmapBlock {
    /// A valid block: the chunks it marks.
    Valid(BTreeSet<u64>),
    /// All zeros: never written.
    Blank,
    /// Unusable, and why (the block could not be read, or does not decode).
    Invalid(&'static str),
}

/// A member's bitmap, read whole: the chunks its valid blocks mark and the blocks that could
/// not be used (whose chunks recovery must treat as marked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberBitmap {
    /// Chunks marked by the valid blocks.
    pub marked: BTreeSet<u64>,
    /// Bitmap blocks that were unreadable, blank or invalid, with the reason.
    pub unusable: BTreeMap<u64, &'static str>,
}

/// The chunks recovery must copy, given each member's bitmap (`None` for a member that is not
/// being resynced): a chunk marked on either, and every chunk of a block neither can vouch
/// for. Either member's valid block alone is enough, since both receive every version of it
/// and a set bit is durable on both before any data write it covers.
pub fn chunks_to_resync(layout: &BitmapLayout, bitmaps: [&MemberBitmap; 2]) -> BTreeSet<u64> {
    let mut chunks: BTreeSet<u64> = bitmaps[0]
        .marked
        .union(&bitmaps[1].marked)
        .copied()
        .collect();
    for index in 0..layout.bitmap_blocks() {
        let vouched = bitmaps
            .iter()
            .any(|bitmap| !bitmap.unusable.contains_key(&index));
        if !vouched {
            chunks.extend(layout.chunks_of_block(index));
        }
    }
    chunks
}

/// How the pair is using one marked chunk.
#[derive(Clone, Copy, Debug, Default)]
struct ChunkUse {
    /// The bit is durable on every member being written (set flushes have returned).
    durable: bool,
    /// Writes into the chunk that have begun and not ended.
    in_flight: u32,
    /// The sync epoch when the last write into the chunk ended.
    last_write_epoch: u64,
}

#[derive(Debug, Default)]
struct BitmapState {
    /// Every chunk whose bit is set in memory (what bitmap blocks written from now on say).
    chunks: BTreeMap<u64, ChunkUse>,
    /// Bitmap blocks whose bits were cleared in memory and not yet written.
    unwritten: BTreeSet<u64>,
    /// Pair syncs begun: a write that ends records it, a sync increments it before it begins.
    epoch: u64,
}

/// Blocks to write (and then sync on every member) so that pending bits become durable.
#[derive(Debug)]
pub(crate) struct FlushPlan {
    pub(crate) blocks: Vec<(u64, Block)>,
    /// Chunks durable once the blocks are written and synced.
    chunks: Vec<u64>,
}

/// The pair's bitmap in memory: what is marked, what is durable, what is in flight.
#[derive(Debug)]
pub(crate) struct IntentBitmap {
    pub(crate) layout: BitmapLayout,
    pair_id: u64,
    state: Mutex<BitmapState>,
    /// Serialises writes of bitmap blocks, so that the last version written of a block is the
    /// newest state; taken after a stripe lock and before the metadata lock.
    pub(crate) flush: Mutex<()>,
}

impl IntentBitmap {
    /// A bitmap with nothing marked; the members' marks come in through [`Self::load`].
    pub(crate) fn new(layout: BitmapLayout, pair_id: u64) -> IntentBitmap {
        IntentBitmap {
            layout,
            pair_id,
            state: Mutex::new(BitmapState::default()),
            flush: Mutex::new(()),
        }
    }

    /// Chunks read as marked from the members: set, and durable.
    pub(crate) fn load(&self, marked: &BTreeSet<u64>) {
        let mut state = self.state.lock();
        for chunk in marked {
            state.chunks.entry(*chunk).or_default().durable = true;
        }
    }

    /// A write into `chunks` begins. True if every bit is durable already; otherwise the
    /// caller flushes ([`Self::plan_flush`]) before it writes. Pair with [`Self::end_write`].
    pub(crate) fn begin_write(&self, chunks: RangeInclusive<u64>) -> bool {
        let mut state = self.state.lock();
        let mut durable = true;
        for chunk in chunks {
            let used = state.chunks.entry(chunk).or_default();
            used.in_flight += 1;
            durable &= used.durable;
        }
        durable
    }

    /// A write into `chunks` has ended (done or failed).
    pub(crate) fn end_write(&self, chunks: RangeInclusive<u64>) {
        let mut state = self.state.lock();
        let epoch = state.epoch;
        for chunk in chunks {
            let Some(used) = state.chunks.get_mut(&chunk) else {
                panic!("replicated: a write into chunk {chunk} ended, but it is not marked");
            };
            assert!(
                used.in_flight > 0,
                "replicated: a write into chunk {chunk} ended, none in flight"
            );
            used.in_flight -= 1;
            used.last_write_epoch = epoch;
        }
    }

    /// What must be written to make every marked bit durable, with the cleared blocks not yet
    /// written; `None` if nothing is pending. Called under the flush lock.
    pub(crate) fn plan_flush(&self) -> Option<FlushPlan> {
        let mut state = self.state.lock();
        self.mark_ahead(&mut state);
        let chunks: Vec<u64> = state
            .chunks
            .iter()
            .filter(|(_, used)| !used.durable)
            .map(|(chunk, _)| *chunk)
            .collect();
        if chunks.is_empty() {
            return None;
        }
        let mut indexes: BTreeSet<u64> = state.unwritten.clone();
        indexes.extend(
            chunks
                .iter()
                .map(|chunk| self.layout.block_of_chunk(*chunk)),
        );
        Some(FlushPlan {
            blocks: self.encode(&state, &indexes),
            chunks,
        })
    }

    /// A writer entering chunk `c` right after `c - 1` is probably sequential (a log's head):
    /// the [`MARK_AHEAD_CHUNKS`] chunks after `c` are marked in the same flush, so that it
    /// pays one flush per that many chunks instead of one per chunk. They cost a recovery at
    /// most that many chunks more, and are cleared as any idle chunk is.
    fn mark_ahead(&self, state: &mut BitmapState) {
        let entering: Vec<u64> = state
            .chunks
            .iter()
            .filter(|(chunk, used)| {
                !used.durable && **chunk > 0 && state.chunks.contains_key(&(**chunk - 1))
            })
            .map(|(chunk, _)| *chunk)
            .collect();
        let last = self.layout.chunks();
        // As if written now: they stay marked through the idle syncs the writer needs to reach
        // them.
        let epoch = state.epoch;
        for chunk in entering {
            for ahead in (chunk + 1)..(chunk + 1 + MARK_AHEAD_CHUNKS).min(last) {
                state.chunks.entry(ahead).or_insert(ChunkUse {
                    last_write_epoch: epoch,
                    ..ChunkUse::default()
                });
            }
        }
    }

    /// The plan's blocks are written and synced on every member being written.
    pub(crate) fn flushed(&self, plan: &FlushPlan) {
        let mut state = self.state.lock();
        for chunk in &plan.chunks {
            if let Some(used) = state.chunks.get_mut(chunk) {
                used.durable = true;
            }
        }
        for (index, _) in &plan.blocks {
            state.unwritten.remove(index);
        }
    }

    /// A pair sync begins: returns its epoch. Writes that ended before this call are covered
    /// by the sync; writes that end after it record this epoch or a later one.
    pub(crate) fn begin_sync(&self) -> u64 {
        let mut state = self.state.lock();
        state.epoch += 1;
        state.epoch
    }

    /// The pair sync of `epoch` returned `Ok`: clears, in memory, every chunk with no write in
    /// flight whose last write ended more than [`CLEAR_AFTER_IDLE_SYNCS`] syncs before it, and
    /// returns the bitmap blocks to write (no sync needed). `idle_syncs` is
    /// `CLEAR_AFTER_IDLE_SYNCS`, or 0 to clear every chunk the sync covered (a clean close).
    pub(crate) fn clear_idle(&self, epoch: u64, idle_syncs: u64) -> Vec<(u64, Block)> {
        let mut state = self.state.lock();
        let covered =
            |used: &ChunkUse| used.in_flight == 0 && used.last_write_epoch + idle_syncs < epoch;
        let cleared: Vec<u64> = state
            .chunks
            .iter()
            .filter(|(_, used)| covered(used) || (used.in_flight == 0 && !used.durable))
            .map(|(chunk, _)| *chunk)
            .collect();
        for chunk in &cleared {
            state.chunks.remove(chunk);
            let index = self.layout.block_of_chunk(*chunk);
            state.unwritten.insert(index);
        }
        let indexes = std::mem::take(&mut state.unwritten);
        self.encode(&state, &indexes)
    }

    /// A deliberately wrong clear, for the tests that must catch it: every chunk with no write
    /// in flight, whether or not a sync has covered its writes.
    #[cfg(feature = "deliberate-bugs")]
    pub(crate) fn clear_unsynced(&self) -> Vec<(u64, Block)> {
        let epoch = self.state.lock().epoch + CLEAR_AFTER_IDLE_SYNCS + 2;
        self.clear_idle(epoch, 0)
    }

    /// Every bitmap block as it stands in memory (a rebuild target gets them all).
    pub(crate) fn all_blocks(&self) -> Vec<(u64, Block)> {
        let state = self.state.lock();
        let indexes: BTreeSet<u64> = (0..self.layout.bitmap_blocks()).collect();
        self.encode(&state, &indexes)
    }

    /// Chunks marked now, for status and tests.
    pub(crate) fn marked(&self) -> BTreeSet<u64> {
        self.state.lock().chunks.keys().copied().collect()
    }

    /// Bitmap blocks `indexes` as the state marks them.
    fn encode(&self, state: &BitmapState, indexes: &BTreeSet<u64>) -> Vec<(u64, Block)> {
        indexes
            .iter()
            .map(|index| {
                let range = self.layout.chunks_of_block(*index);
                let marked: BTreeSet<u64> = state.chunks.range(range).map(|(c, _)| *c).collect();
                (
                    *index,
                    self.layout.encode_block(self.pair_id, *index, &marked),
                )
            })
            .collect()
    }

    /// The bitmap's rep invariant: every marked chunk is inside the pair (a chunk with a write
    /// in flight is marked by construction), and every pending block is a bitmap block.
    pub(crate) fn check_rep(&self) {
        let state = self.state.lock();
        let chunks = self.layout.chunks();
        if let Some((last, _)) = state.chunks.last_key_value() {
            assert!(
                *last < chunks,
                "replicated: chunk {last} marked, the pair has {chunks}"
            );
        }
        if let Some(last) = state.unwritten.last() {
            assert!(
                *last < self.layout.bitmap_blocks(),
                "replicated: bitmap block {last} pending, the bitmap has {}",
                self.layout.bitmap_blocks()
            );
        }
    }
}

/// A write into some chunks, begun: ends (in the bitmap's bookkeeping) when dropped, whether
/// the write succeeded or not.
pub(crate) struct Intent<'a> {
    bitmap: &'a IntentBitmap,
    chunks: RangeInclusive<u64>,
}

impl<'a> Intent<'a> {
    /// Begins a write into `chunks`; true in the second field if every bit is durable already.
    pub(crate) fn begin(
        bitmap: &'a IntentBitmap,
        chunks: RangeInclusive<u64>,
    ) -> (Intent<'a>, bool) {
        let durable = bitmap.begin_write(chunks.clone());
        (Intent { bitmap, chunks }, durable)
    }
}

impl Drop for Intent<'_> {
    fn drop(&mut self) {
        self.bitmap.end_write(self.chunks.clone());
    }
}

/// Reads every bitmap block of a member (`Err` only for a machine crash): what a recovery and
/// the inspector need of it.
pub(crate) fn read_bitmap<D: txdisk_disk::Disk + ?Sized>(
    disk: crate::member::MemberDisk<'_, D>,
    layout: &BitmapLayout,
    pair_id: u64,
) -> txdisk_disk::Result<MemberBitmap> {
    let mut bitmap = MemberBitmap::default();
    for index in 0..layout.bitmap_blocks() {
        let found = match disk.read(layout.member_block(index)) {
            Ok(block) => layout.decode_block(&block, pair_id, index),
            Err(error) if error.is_bad_block() => BitmapBlock::Invalid("unreadable"),
            // A crash, or the member failing: the caller's business.
            Err(error) => return Err(error),
        };
        match found {
            BitmapBlock::Valid(marked) => bitmap.marked.extend(marked),
            BitmapBlock::Blank => {
                bitmap.unusable.insert(index, "blank (never written)");
            }
            BitmapBlock::Invalid(why) => {
                bitmap.unusable.insert(index, why);
            }
        }
    }
    Ok(bitmap)
}

/// A bitmap none of whose blocks is usable (a member not read).
pub(crate) fn unread(layout: &BitmapLayout) -> MemberBitmap {
    MemberBitmap {
        unusable: (0..layout.bitmap_blocks())
            .map(|i| (i, "not read"))
            .collect(),
        ..MemberBitmap::default()
    }
}

/// Reads a member's bitmap without opening the pair (for inspection tools), given the
/// member's metadata ([`crate::inspect_member`]).
pub fn inspect_bitmap(
    disk: &dyn txdisk_disk::Disk,
    meta: &crate::ReplicaMeta,
) -> txdisk_disk::Result<MemberBitmap> {
    let layout = meta.bitmap_layout();
    // A size from a damaged or crafted slot: refused before a block is read.
    if layout.member_blocks() > disk.size_blocks() {
        return Err(txdisk_disk::DiskError::OutOfRange {
            addr: layout.member_blocks().saturating_sub(1),
            size_blocks: disk.size_blocks(),
        });
    }
    read_bitmap(crate::member::MemberDisk::new(disk), &layout, meta.pair_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_damage_is_seen() {
        let layout = BitmapLayout::new(10_000_000, 8).unwrap_or_else(|| panic!("layout"));
        assert_eq!(layout.chunks(), 1_250_000);
        assert_eq!(
            layout.bitmap_blocks(),
            1_250_000u64.div_ceil(CHUNKS_PER_BITMAP_BLOCK)
        );
        let index = 3;
        let range = layout.chunks_of_block(index);
        let marked: BTreeSet<u64> = [range.start, range.start + 9, range.end - 1].into();
        let block = layout.encode_block(7, index, &marked);
        assert_eq!(
            layout.decode_block(&block, 7, index),
            BitmapBlock::Valid(marked)
        );
        assert!(matches!(
            layout.decode_block(&block, 8, index),
            BitmapBlock::Invalid(_)
        ));
        assert!(matches!(
            layout.decode_block(&block, 7, 4),
            BitmapBlock::Invalid(_)
        ));
        for offset in [0, 9, 17, 21, 25, 32, 100, 4095] {
            let mut bad = block.clone();
            bad.as_bytes_mut()[offset] ^= 0x10;
            assert!(
                matches!(layout.decode_block(&bad, 7, index), BitmapBlock::Invalid(_)),
                "flip at byte {offset} went unnoticed"
            );
        }
        assert_eq!(
            layout.decode_block(&Block::zeroed(), 7, index),
            BitmapBlock::Blank
        );
    }

    #[test]
    fn a_member_holds_the_largest_pair_that_fits() {
        for member_blocks in [4, 5, 100, 32_514, 32_515, 1 << 20, (1 << 22) + 17] {
            for chunk_blocks in [1, 16, 256] {
                let Some(layout) = BitmapLayout::for_member(member_blocks, chunk_blocks) else {
                    panic!("member of {member_blocks} blocks, chunks of {chunk_blocks}: no layout");
                };
                assert!(layout.member_blocks() <= member_blocks);
                let bigger = BitmapLayout::new(layout.data_blocks + 1, chunk_blocks)
                    .unwrap_or_else(|| panic!("layout"));
                assert!(
                    bigger.member_blocks() > member_blocks,
                    "{member_blocks}/{chunk_blocks}"
                );
            }
        }
        assert_eq!(BitmapLayout::for_member(3, 1), None);
    }

    #[test]
    fn a_sequential_writer_marks_ahead() {
        let layout = BitmapLayout::new(1024, 4).unwrap_or_else(|| panic!("layout"));
        let bitmap = IntentBitmap::new(layout, 1);
        // A first chunk alone marks nothing ahead.
        assert!(!bitmap.begin_write(10..=10));
        let plan = bitmap
            .plan_flush()
            .unwrap_or_else(|| panic!("a flush is due"));
        bitmap.flushed(&plan);
        assert_eq!(bitmap.marked(), [10].into());
        // Its successor does: the next MARK_AHEAD_CHUNKS are durable with it.
        assert!(!bitmap.begin_write(11..=11));
        let plan = bitmap
            .plan_flush()
            .unwrap_or_else(|| panic!("a flush is due"));
        bitmap.flushed(&plan);
        let expected: BTreeSet<u64> = (10..=11 + MARK_AHEAD_CHUNKS).collect();
        assert_eq!(bitmap.marked(), expected);
        for chunk in 12..=11 + MARK_AHEAD_CHUNKS {
            assert!(
                bitmap.begin_write(chunk..=chunk),
                "chunk {chunk} marked ahead"
            );
            bitmap.end_write(chunk..=chunk);
        }
        bitmap.end_write(10..=11);
    }

    #[test]
    fn bits_clear_only_after_a_covering_sync_and_the_idle_syncs() {
        let layout = BitmapLayout::new(64, 4).unwrap_or_else(|| panic!("layout"));
        let bitmap = IntentBitmap::new(layout, 1);
        assert!(!bitmap.begin_write(2..=2), "a fresh chunk is not durable");
        let plan = bitmap
            .plan_flush()
            .unwrap_or_else(|| panic!("a flush is due"));
        bitmap.flushed(&plan);
        assert!(bitmap.plan_flush().is_none());
        // In flight: no sync clears it.
        let epoch = bitmap.begin_sync();
        assert!(bitmap.clear_idle(epoch, 0).is_empty());
        bitmap.end_write(2..=2);
        // Ended after that sync began: the next one covers it, and then the idle syncs.
        for _ in 0..CLEAR_AFTER_IDLE_SYNCS {
            let epoch = bitmap.begin_sync();
            assert!(bitmap.clear_idle(epoch, CLEAR_AFTER_IDLE_SYNCS).is_empty());
            assert_eq!(bitmap.marked(), [2].into());
        }
        let epoch = bitmap.begin_sync();
        let cleared = bitmap.clear_idle(epoch, CLEAR_AFTER_IDLE_SYNCS);
        assert_eq!(cleared.len(), 1);
        assert_eq!(
            layout.decode_block(&cleared[0].1, 1, 0),
            BitmapBlock::Valid(BTreeSet::new())
        );
        assert!(bitmap.marked().is_empty());
        assert!(
            !bitmap.begin_write(2..=2),
            "a cleared chunk must be set again"
        );
        bitmap.end_write(2..=2);
    }
}
