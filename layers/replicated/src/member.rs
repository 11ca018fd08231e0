//! Blocks of a member disk, as a type of their own.
//!
//! Two kinds of block number meet in this crate: a data address of the pair (an [`Addr`], what
//! users of the pair see) and a block of a member disk, where data address `a` is block
//! `a + RESERVED_BLOCKS` and the metadata slots are blocks `0..RESERVED_BLOCKS`. Mixing them up
//! would read metadata as data or write data over the metadata, so a member disk is addressed
//! only through a [`MemberBlock`], by way of [`MemberDisk`].

use crate::meta::RESERVED_BLOCKS;
use txdisk_disk::{Addr, Block, Disk};

/// A block of a member disk (not a data address of the pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct MemberBlock(u64);

impl MemberBlock {
    /// Metadata slot `slot` (`0..RESERVED_BLOCKS`).
    pub(crate) fn slot(slot: u64) -> MemberBlock {
        assert!(
            slot < RESERVED_BLOCKS,
            "replicated: metadata slot {slot} out of range: expected below {RESERVED_BLOCKS}"
        );
        MemberBlock(slot)
    }

    /// The member block holding data address `addr` of the pair. The caller has checked `addr`
    /// against the pair's size, so the sum cannot overflow a disk's block count.
    pub(crate) fn of_data(addr: Addr) -> MemberBlock {
        match addr.checked_add(RESERVED_BLOCKS) {
            Some(block) => MemberBlock(block),
            None => panic!("replicated: data address {addr} has no member block"),
        }
    }

    /// Member block `block` of the bitmap region (the caller, `BitmapLayout::member_block`,
    /// has checked it against the layout).
    pub(crate) fn of_bitmap(block: u64) -> MemberBlock {
        assert!(
            block >= RESERVED_BLOCKS,
            "replicated: bitmap block {block} over the metadata slots"
        );
        MemberBlock(block)
    }

    /// The block number on the member disk.
    pub(crate) fn index(self) -> u64 {
        self.0
    }
}

/// A member disk, addressed only by [`MemberBlock`].
pub(crate) struct MemberDisk<'a, D: ?Sized> {
    disk: &'a D,
}

impl<'a, D: Disk + ?Sized> MemberDisk<'a, D> {
    /// Views `disk` as a member of a pair.
    pub(crate) fn new(disk: &'a D) -> MemberDisk<'a, D> {
        MemberDisk { disk }
    }

    /// Reads member block `block`.
    pub(crate) fn read(&self, block: MemberBlock) -> txdisk_disk::Result<Block> {
        self.disk.read(block.index())
    }

    /// Writes `value` at member block `block`.
    pub(crate) fn write(&self, block: MemberBlock, value: &Block) -> txdisk_disk::Result<()> {
        self.disk.write(block.index(), value)
    }

    /// Writes `values` at consecutive member blocks from `start`, in one call to the disk.
    pub(crate) fn write_run(
        &self,
        start: MemberBlock,
        values: &[&Block],
    ) -> txdisk_disk::Result<()> {
        self.disk.write_run(start.index(), values)
    }

    /// Writes `value` at member block `block` as a copy of a block of version `generation` of
    /// the other member (see [`Disk::write_copy`]).
    pub(crate) fn write_copy(
        &self,
        block: MemberBlock,
        value: &Block,
        generation: Option<u32>,
    ) -> txdisk_disk::Result<()> {
        self.disk.write_copy(block.index(), value, generation)
    }

    /// Records member block `block` as holding no good value (see [`Disk::invalidate`]).
    pub(crate) fn invalidate(&self, block: MemberBlock) -> txdisk_disk::Result<()> {
        self.disk.invalidate(block.index())
    }

    /// The write generation of member block `block` (see [`Disk::generation`]).
    pub(crate) fn generation(&self, block: MemberBlock) -> txdisk_disk::Result<Option<u32>> {
        self.disk.generation(block.index())
    }

    /// Syncs the member disk.
    pub(crate) fn sync(&self) -> txdisk_disk::Result<()> {
        self.disk.sync()
    }
}
