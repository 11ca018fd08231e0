//! One file-system operation's view of the store: a transaction plus a write-back cache of the
//! blocks it touches, and the allocation, inode and block-map primitives every operation uses.
//!
//! Every write goes through the cache, so the set of dirty blocks is exactly the transaction's
//! write set: it is handed to the store in one go at commit, and its size can be checked against
//! the store's limit first. A block that is freed is dropped from the cache, so a stale copy can
//! never be written over the block's next owner.

use crate::error::{FsError, Result};
use crate::format::{
    bit, set_bit, Ino, Inode, Kind, Superblock, BITS_PER_BLOCK, DIRECT_POINTERS, MAX_FILE_BLOCKS,
    MAX_FILE_BYTES, POINTERS_PER_BLOCK,
};
use crate::store::TxHandle;
use byteorder::{ByteOrder, LittleEndian as LE};
use std::collections::{BTreeSet, HashMap};
use txdisk_disk::{Addr, Block};

/// Where the next allocations start looking (next fit). Only a hint: the bitmaps decide.
#[derive(Debug, Default, Clone)]
pub(crate) struct Hints {
    pub next_data_bit: u64,
    pub next_ino: u64,
}

pub(crate) struct Ctx<'h, T: TxHandle> {
    tx: T,
    pub sb: Superblock,
    hints: &'h mut Hints,
    cache: HashMap<Addr, Block>,
    dirty: BTreeSet<Addr>,
}

/// Where a logical block's pointer lives.
enum Slot {
    Direct(usize),
    /// Single indirect block, index in it.
    Indirect(u64),
    /// Double indirect: index in the root, index in the child.
    Double(u64, u64),
}

fn slot_of(index: u64) -> Slot {
    assert!(
        index < MAX_FILE_BLOCKS,
        "fs: file block index {index} past the largest file"
    );
    let direct = DIRECT_POINTERS as u64;
    if index < direct {
        Slot::Direct(index as usize)
    } else if index < direct + POINTERS_PER_BLOCK {
        Slot::Indirect(index - direct)
    } else {
        let rest = index - direct - POINTERS_PER_BLOCK;
        Slot::Double(rest / POINTERS_PER_BLOCK, rest % POINTERS_PER_BLOCK)
    }
}

impl<'h, T: TxHandle> Ctx<'h, T> {
    pub fn new(tx: T, sb: Superblock, hints: &'h mut Hints) -> Self {
        Ctx {
            tx,
            sb,
            hints,
            cache: HashMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// Writes every dirty block and commits (durably when `durable`).
    pub fn commit(mut self, durable: bool) -> Result<()> {
        for addr in std::mem::take(&mut self.dirty) {
            let block = self.cache.get(&addr).unwrap_or_else(|| {
                panic!("fs: dirty block {addr} missing from the transaction cache")
            });
            self.tx.write(addr, block)?;
        }
        if durable {
            self.tx.commit()?;
        } else {
            self.tx.commit_nosync()?;
        }
        Ok(())
    }

    pub fn abort(self) {
        self.tx.abort();
    }

    /// Distinct blocks this operation would write.
    pub fn dirty_blocks(&self) -> usize {
        self.dirty.len()
    }

    fn load(&mut self, addr: Addr) -> Result<()> {
        if !self.cache.contains_key(&addr) {
            let block = self.tx.read(addr)?;
            self.cache.insert(addr, block);
        }
        Ok(())
    }

    /// A block through the cache.
    pub fn get(&mut self, addr: Addr) -> Result<&Block> {
        self.load(addr)?;
        Ok(&self.cache[&addr])
    }

    /// A block through the cache, marked dirty.
    pub fn get_mut(&mut self, addr: Addr) -> Result<&mut Block> {
        self.load(addr)?;
        self.dirty.insert(addr);
        Ok(self
            .cache
            .get_mut(&addr)
            .unwrap_or_else(|| panic!("fs: block {addr} vanished from the transaction cache")))
    }

    /// Replaces a block's contents.
    pub fn put(&mut self, addr: Addr, block: Block) {
        self.cache.insert(addr, block);
        self.dirty.insert(addr);
    }

    /// Reads a file data block without caching it (large reads would otherwise fill memory).
    pub fn peek(&mut self, addr: Addr) -> Result<Block> {
        match self.cache.get(&addr) {
            Some(block) => Ok(block.clone()),
            None => Ok(self.tx.read(addr)?),
        }
    }

    // ---- inodes -------------------------------------------------------------------------

    fn check_ino(&self, ino: Ino) -> Result<()> {
        if ino == 0 || ino >= self.sb.inode_count {
            return Err(FsError::corrupt(
                "inode number in range",
                self.sb.inode_count - 1,
                ino,
            ));
        }
        Ok(())
    }

    /// Reads an allocated inode. An inode number that names no inode (0, out of range, or
    /// free) is `NotFound`, as for a stale handle; an unknown kind is corruption.
    pub fn inode(&mut self, ino: Ino) -> Result<Inode> {
        if ino == 0 || ino >= self.sb.inode_count {
            return Err(FsError::NotFound);
        }
        let (addr, slot) = self.sb.inode_location(ino);
        let inode = Inode::decode(self.get(addr)?, slot);
        if inode.is_free() {
            return Err(FsError::NotFound);
        }
        if inode.kind().is_none() {
            return Err(FsError::corrupt(
                "inode file type (S_IFREG, S_IFDIR, ...)",
                Kind::File.type_bits(),
                inode.mode,
            ));
        }
        // Every loop over a file's blocks is bounded by its size: hold the size to the format.
        if inode.size_bytes > MAX_FILE_BYTES {
            return Err(FsError::corrupt(
                "inode size at most the largest file",
                MAX_FILE_BYTES,
                inode.size_bytes,
            ));
        }
        Ok(inode)
    }

    pub fn put_inode(&mut self, ino: Ino, inode: &Inode) -> Result<()> {
        self.check_ino(ino)?;
        let (addr, slot) = self.sb.inode_location(ino);
        let block = self.get_mut(addr)?;
        inode.encode_into(block, slot);
        // Pair check: the bytes about to be written decode to the inode meant.
        debug_assert_eq!(
            Inode::decode(block, slot),
            *inode,
            "fs: inode {ino} at block {addr} slot {slot} does not decode to what was encoded"
        );
        Ok(())
    }

    /// Finds a free inode (next fit, bounded by the inode count), marks it and writes `inode`.
    pub fn alloc_inode(&mut self, inode: &Inode) -> Result<Ino> {
        let count = self.sb.inode_count;
        // Precondition: the geometry promises inode 0 (reserved), the root and more.
        assert!(
            count >= 2,
            "fs: inode allocation with {count} inodes: expected at least 2"
        );
        let start = self.hints.next_ino.clamp(1, count - 1);
        for step in 0..count {
            let ino = (start + step) % count;
            if ino == 0 {
                continue;
            }
            let addr = self.sb.inode_bitmap_start + ino / BITS_PER_BLOCK;
            if bit(self.get(addr)?, ino % BITS_PER_BLOCK) {
                continue;
            }
            set_bit(self.get_mut(addr)?, ino % BITS_PER_BLOCK, true);
            self.put_inode(ino, inode)?;
            // Postconditions: a usable inode number, now marked in the inode bitmap.
            assert_ne!(ino, 0, "fs: inode allocation returned the reserved inode 0");
            assert!(
                ino < count,
                "fs: inode allocation returned inode {ino}: expected below the count {count}"
            );
            assert!(
                bit(self.get(addr)?, ino % BITS_PER_BLOCK),
                "fs: allocated inode {ino} not marked in inode bitmap block {addr}"
            );
            self.hints.next_ino = ino + 1;
            return Ok(ino);
        }
        Err(FsError::NoSpace {
            what: "no free inode",
        })
    }

    /// Clears an inode and its bitmap bit (its blocks must already be freed).
    pub fn free_inode(&mut self, ino: Ino) -> Result<()> {
        self.check_ino(ino)?;
        let addr = self.sb.inode_bitmap_start + ino / BITS_PER_BLOCK;
        if !bit(self.get(addr)?, ino % BITS_PER_BLOCK) {
            return Err(FsError::corrupt(
                "inode bitmap bit of a live inode",
                1u32,
                0u32,
            ));
        }
        set_bit(self.get_mut(addr)?, ino % BITS_PER_BLOCK, false);
        self.put_inode(ino, &Inode::default())
    }

    // ---- data blocks --------------------------------------------------------------------

    /// Allocates a data block (next fit, bounded by the data region) holding zeros.
    pub fn alloc_block(&mut self) -> Result<Addr> {
        let total = self.sb.data_blocks;
        // Precondition: the geometry promises a data region (`Superblock::layout`).
        assert!(
            total > 0,
            "fs: block allocation with 0 data blocks: expected at least 1"
        );
        let mut index = self.hints.next_data_bit % total;
        let mut scanned = 0;
        while scanned < total {
            let bitmap_addr = self.sb.block_bitmap_start + index / BITS_PER_BLOCK;
            let within = index % BITS_PER_BLOCK;
            // Search the rest of this bitmap block in one pass.
            let span = (BITS_PER_BLOCK - within).min(total - index);
            let found = {
                let bitmap = self.get(bitmap_addr)?;
                (within..within + span).find(|&b| !bit(bitmap, b))
            };
            if let Some(b) = found {
                set_bit(self.get_mut(bitmap_addr)?, b, true);
                let bit_index = index - within + b;
                let addr = self.sb.data_start + bit_index;
                // Postcondition: the block handed out is a data block, marked in the bitmap.
                assert!(
                    self.sb.is_data(addr),
                    "fs: block allocation returned block {addr}: expected in the data region {}..{}",
                    self.sb.data_start,
                    self.sb.data_start + total
                );
                assert!(
                    bit(self.get(bitmap_addr)?, b),
                    "fs: allocated block {addr} not marked in block bitmap block {bitmap_addr}"
                );
                self.hints.next_data_bit = bit_index + 1;
                self.put(addr, Block::zeroed());
                return Ok(addr);
            }
            scanned += span;
            index = (index + span) % total;
        }
        Err(FsError::NoSpace {
            what: "no free data block",
        })
    }

    /// Frees a data block; freeing a free block or an address outside the data region is
    /// corruption.
    pub fn free_block(&mut self, addr: Addr) -> Result<()> {
        self.check_pointer(addr)?;
        let index = addr - self.sb.data_start;
        let bitmap_addr = self.sb.block_bitmap_start + index / BITS_PER_BLOCK;
        if !bit(self.get(bitmap_addr)?, index % BITS_PER_BLOCK) {
            return Err(FsError::corrupt("bitmap bit of an owned block", 1u32, 0u32));
        }
        set_bit(self.get_mut(bitmap_addr)?, index % BITS_PER_BLOCK, false);
        // Postcondition: the block is free in the bitmap.
        assert!(
            !bit(self.get(bitmap_addr)?, index % BITS_PER_BLOCK),
            "fs: freed block {addr} still marked in block bitmap block {bitmap_addr}"
        );
        // The block's contents no longer matter: never write them over its next owner.
        self.cache.remove(&addr);
        self.dirty.remove(&addr);
        Ok(())
    }

    fn check_pointer(&self, addr: Addr) -> Result<()> {
        if !self.sb.is_data(addr) {
            return Err(FsError::corrupt(
                "block pointer in the data region",
                self.sb.data_start,
                addr,
            ));
        }
        Ok(())
    }

    fn pointer_in(&mut self, block_addr: Addr, index: u64) -> Result<Addr> {
        assert!(
            index < POINTERS_PER_BLOCK,
            "fs: pointer slot {index} of index block {block_addr}: expected below {POINTERS_PER_BLOCK}"
        );
        self.check_pointer(block_addr)?;
        let pointer = LE::read_u64(&self.get(block_addr)?.as_bytes()[(index * 8) as usize..]);
        if pointer != 0 {
            self.check_pointer(pointer)?;
        }
        Ok(pointer)
    }

    fn set_pointer_in(&mut self, block_addr: Addr, index: u64, pointer: Addr) -> Result<()> {
        // Preconditions: a slot of the table, and a hole or a data block to store in it.
        assert!(
            index < POINTERS_PER_BLOCK,
            "fs: pointer slot {index} of index block {block_addr}: expected below {POINTERS_PER_BLOCK}"
        );
        assert!(
            pointer == 0 || self.sb.is_data(pointer),
            "fs: pointer {pointer} stored in index block {block_addr}: expected 0 or a data block"
        );
        LE::write_u64(
            &mut self.get_mut(block_addr)?.as_bytes_mut()[(index * 8) as usize..],
            pointer,
        );
        Ok(())
    }

    /// The block holding file block `index`, or 0 for a hole.
    pub fn map(&mut self, inode: &Inode, index: u64) -> Result<Addr> {
        let pointer = match slot_of(index) {
            Slot::Direct(i) => inode.direct[i],
            Slot::Indirect(i) => match inode.indirect {
                0 => 0,
                table => self.pointer_in(table, i)?,
            },
            Slot::Double(i, j) => match inode.double_indirect {
                0 => 0,
                root => match self.pointer_in(root, i)? {
                    0 => 0,
                    child => self.pointer_in(child, j)?,
                },
            },
        };
        if pointer != 0 {
            self.check_pointer(pointer)?;
        }
        Ok(pointer)
    }

    /// Allocates an index block if `pointer` is a hole; counts it in `inode.blocks`.
    fn ensure(&mut self, inode: &mut Inode, pointer: Addr) -> Result<(Addr, bool)> {
        if pointer != 0 {
            self.check_pointer(pointer)?;
            return Ok((pointer, false));
        }
        inode.blocks += 1;
        Ok((self.alloc_block()?, true))
    }

    /// The block holding file block `index`, allocating it (and index blocks) if it is a hole.
    /// Returns the address and whether it is new (zeroed).
    pub fn map_alloc(&mut self, inode: &mut Inode, index: u64) -> Result<(Addr, bool)> {
        let (addr, fresh) = self.map_alloc_slot(inode, index)?;
        // Postcondition: file block `index` now lives in the data region.
        assert!(
            self.sb.is_data(addr),
            "fs: file block {index} mapped to block {addr}: expected a data block"
        );
        Ok((addr, fresh))
    }

    fn map_alloc_slot(&mut self, inode: &mut Inode, index: u64) -> Result<(Addr, bool)> {
        match slot_of(index) {
            Slot::Direct(i) => {
                let (addr, fresh) = self.ensure(inode, inode.direct[i])?;
                inode.direct[i] = addr;
                Ok((addr, fresh))
            }
            Slot::Indirect(i) => {
                let (table, _) = self.ensure(inode, inode.indirect)?;
                inode.indirect = table;
                self.map_alloc_in(inode, table, i)
            }
            Slot::Double(i, j) => {
                let (root, _) = self.ensure(inode, inode.double_indirect)?;
                inode.double_indirect = root;
                let (child, _) = self.map_alloc_in(inode, root, i)?;
                self.map_alloc_in(inode, child, j)
            }
        }
    }

    fn map_alloc_in(&mut self, inode: &mut Inode, table: Addr, index: u64) -> Result<(Addr, bool)> {
        let current = self.pointer_in(table, index)?;
        let (addr, fresh) = self.ensure(inode, current)?;
        if fresh {
            self.set_pointer_in(table, index, addr)?;
        }
        Ok((addr, fresh))
    }

    /// Frees every block of `inode` at file index `keep_blocks` or beyond, index blocks
    /// included once they hold nothing. Bounded by the pointer tables (at most 512 × 512 slots).
    pub fn free_from(&mut self, inode: &mut Inode, keep_blocks: u64) -> Result<()> {
        let direct = DIRECT_POINTERS as u64;
        for i in keep_blocks.min(direct)..direct {
            let pointer = std::mem::take(&mut inode.direct[i as usize]);
            self.release(inode, pointer)?;
        }
        if inode.indirect != 0 {
            let start = keep_blocks.saturating_sub(direct);
            if self.free_table_from(inode, inode.indirect, start)? {
                let table = std::mem::take(&mut inode.indirect);
                self.release(inode, table)?;
            }
        }
        if inode.double_indirect != 0 {
            let start = keep_blocks.saturating_sub(direct + POINTERS_PER_BLOCK);
            let root = inode.double_indirect;
            for i in 0..POINTERS_PER_BLOCK {
                let child = self.pointer_in(root, i)?;
                let child_start = start.saturating_sub(i * POINTERS_PER_BLOCK);
                if child == 0 || child_start >= POINTERS_PER_BLOCK {
                    continue;
                }
                if self.free_table_from(inode, child, child_start)? {
                    self.set_pointer_in(root, i, 0)?;
                    self.release(inode, child)?;
                }
            }
            if start == 0 {
                inode.double_indirect = 0;
                self.release(inode, root)?;
            }
        }
        Ok(())
    }

    /// Frees the blocks a pointer table names from `start` on; true when `start == 0` (the
    /// table itself is then the caller's to free, and is not rewritten).
    fn free_table_from(&mut self, inode: &mut Inode, table: Addr, start: u64) -> Result<bool> {
        for i in start.min(POINTERS_PER_BLOCK)..POINTERS_PER_BLOCK {
            let pointer = self.pointer_in(table, i)?;
            if pointer == 0 {
                continue;
            }
            if start > 0 {
                self.set_pointer_in(table, i, 0)?;
            }
            self.release(inode, pointer)?;
        }
        Ok(start == 0)
    }

    fn release(&mut self, inode: &mut Inode, pointer: Addr) -> Result<()> {
        if pointer == 0 {
            return Ok(());
        }
        inode.blocks = inode
            .blocks
            .checked_sub(1)
            .ok_or_else(|| FsError::corrupt("inode block count covers its blocks", 1u32, 0u32))?;
        self.free_block(pointer)
    }

    /// The kind of an allocated inode (shorthand).
    pub fn kind(&mut self, ino: Ino) -> Result<Kind> {
        let inode = self.inode(ino)?;
        inode
            .kind()
            .ok_or_else(|| FsError::corrupt("inode kind", 8u32, inode.mode))
    }
}
