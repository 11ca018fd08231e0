//! The file system's invariant checker (its crash invariant): walks the tree from the root and
//! compares what it reaches with the bitmaps and the counts stored in the inodes.
//!
//! Invariants checked, each a [`Violation`] variant naming the inode or block:
//! * the superblock is valid (magic, version, crc32c, geometry);
//! * every block an inode points to is in the data region, marked in the block bitmap and owned
//!   by exactly one inode (once); every marked block is owned (no leak); no bit past the region;
//! * every reachable inode is allocated, of a known kind, marked in the inode bitmap; every
//!   marked inode is reachable (no orphan); inode 0 is reserved;
//! * every directory entry has a valid, unique name and names an allocated inode of the kind the
//!   entry says; a directory is named once and its parent field names the directory holding it;
//! * link counts: a file's equals the entries naming it, a directory's is 2 + its subdirectories;
//! * sizes: no file block mapped past the end of file, bytes past the end in the last block are
//!   zero, size at most the largest file; a directory's size is whole blocks with no hole; the
//!   inode's block count equals the data and index blocks it owns.

use crate::error::FsError;
use crate::format::{
    bit, Ino, Inode, Kind, RawDirent, Superblock, BITS_PER_BLOCK, DIRECT_POINTERS,
    DIRENTS_PER_BLOCK, MAX_FILE_BYTES, NAME_MAX, POINTERS_PER_BLOCK, ROOT_INO, SUPERBLOCK_ADDR,
};
use crate::store::{StoreError, TxHandle, TxStore};
use byteorder::{ByteOrder, LittleEndian as LE};
use std::collections::{HashMap, HashSet, VecDeque};
use txdisk_disk::{Addr, Block, BLOCK_SIZE};

/// Counts from a clean check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Regular files reached from the root.
    pub files: u64,
    /// Directories reached, the root included.
    pub directories: u64,
    /// Data and index blocks in use.
    pub blocks_used: u64,
    /// Data blocks not in use.
    pub blocks_free: u64,
    /// Sum of regular file sizes.
    pub file_bytes: u64,
}

/// The first broken invariant found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    #[error("fs: superblock: {0}")]
    /// Block 0 is not a valid superblock.
    Superblock(#[source] FsError),
    #[error("fs: reading the store: {0}")]
    /// The store failed while the checker read it: an I/O error, not damage.
    Store(#[from] StoreError),
    #[error("fs: root inode {ino} is not an allocated directory (kind code {kind_code})")]
    /// The root inode is free or not a directory.
    RootNotDirectory {
        /// The inode.
        ino: Ino,
        /// The kind code it holds.
        kind_code: u32,
    },
    #[error("fs: inode {ino} has unknown kind code {kind_code}")]
    /// An inode of an unknown kind.
    BadKind {
        /// The inode.
        ino: Ino,
        /// The kind code it holds.
        kind_code: u32,
    },
    #[error("fs: inode {ino} points at block {addr}, outside the data region")]
    /// A block pointer outside the data region.
    PointerOutOfRange {
        /// The inode.
        ino: Ino,
        /// The block.
        addr: Addr,
    },
    #[error("fs: block {addr} owned by inode {ino} is not marked in the block bitmap")]
    /// A block in use that the block bitmap calls free.
    BlockNotMarked {
        /// The inode.
        ino: Ino,
        /// The block.
        addr: Addr,
    },
    #[error("fs: block {addr} is owned by inode {first} and again by inode {second}")]
    /// A block two inodes (or one inode twice) point to.
    BlockOwnedTwice {
        /// The block.
        addr: Addr,
        /// The inode owning it first.
        first: Ino,
        /// The inode owning it again.
        second: Ino,
    },
    #[error("fs: block {addr} is marked in the bitmap but owned by no inode")]
    /// A block the bitmap marks that no inode owns.
    BlockLeaked {
        /// The block.
        addr: Addr,
    },
    #[error("fs: block bitmap bit {bit} past the data region is set")]
    /// A block bitmap bit past the data region is set.
    BitmapTail {
        /// The bit index.
        bit: u64,
    },
    #[error("fs: inode {ino} is reachable but not marked in the inode bitmap")]
    /// A reachable inode the inode bitmap calls free.
    InodeNotMarked {
        /// The inode.
        ino: Ino,
    },
    #[error("fs: inode {ino} is marked in the inode bitmap but not reachable")]
    /// An inode the bitmap marks that no directory reaches.
    InodeLeaked {
        /// The inode.
        ino: Ino,
    },
    #[error("fs: inode bitmap bit {ino} is wrong for a reserved or out-of-range inode")]
    /// The bitmap bit of inode 0 or of an inode past the count is wrong.
    InodeBitmapReserved {
        /// The inode.
        ino: Ino,
    },
    #[error("fs: directory {dir} entry {name:?} names inode {ino}, which is free")]
    /// A directory entry naming a free inode.
    DanglingEntry {
        /// The directory.
        dir: Ino,
        /// The entry's name (lossy UTF-8).
        name: String,
        /// The inode.
        ino: Ino,
    },
    #[error(
        "fs: directory {dir} entry {name:?} says kind {expected}, inode {ino} has kind {found}"
    )]
    /// A directory entry whose kind is not its inode's.
    EntryKind {
        /// The directory.
        dir: Ino,
        /// The entry's name (lossy UTF-8).
        name: String,
        /// The inode.
        ino: Ino,
        /// What the invariant requires.
        expected: u32,
        /// What the image holds.
        found: u32,
    },
    #[error("fs: directory {dir} slot {slot} has an invalid name {name:?} (length {len})")]
    /// A directory entry with an empty, too long or reserved name.
    BadName {
        /// The directory.
        dir: Ino,
        /// The entry's slot in the directory.
        slot: u64,
        /// The entry's name (lossy UTF-8).
        name: String,
        /// The name length recorded.
        len: usize,
    },
    #[error("fs: directory {dir} holds the name {name:?} twice")]
    /// Two entries of one directory with the same name.
    DuplicateName {
        /// The directory.
        dir: Ino,
        /// The entry's name (lossy UTF-8).
        name: String,
    },
    #[error("fs: directory {ino} is named by more than one entry (second in directory {dir})")]
    /// A directory named by more than one entry.
    DirectoryLinkedTwice {
        /// The inode.
        ino: Ino,
        /// The directory.
        dir: Ino,
    },
    #[error("fs: directory {ino} is in directory {expected} but its parent field says {found}")]
    /// A directory whose parent field is not the directory holding it.
    WrongParent {
        /// The inode.
        ino: Ino,
        /// What the invariant requires.
        expected: Ino,
        /// What the image holds.
        found: Ino,
    },
    #[error("fs: inode {ino} link count: expected {expected}, found {found}")]
    /// A link count that is not the number of entries naming the inode.
    LinkCount {
        /// The inode.
        ino: Ino,
        /// What the invariant requires.
        expected: u64,
        /// What the image holds.
        found: u32,
    },
    #[error("fs: inode {ino} size {size_bytes} is past the largest file {max_bytes}")]
    /// A size past the largest file.
    SizeTooLarge {
        /// The inode.
        ino: Ino,
        /// The size recorded, in bytes.
        size_bytes: u64,
        /// The largest file, in bytes.
        max_bytes: u64,
    },
    #[error("fs: inode {ino} maps block index {index} past its size {size_bytes}")]
    /// A file block mapped past the end of the file.
    BlockPastEof {
        /// The inode.
        ino: Ino,
        /// The file block index.
        index: u64,
        /// The size recorded, in bytes.
        size_bytes: u64,
    },
    #[error("fs: inode {ino} has non-zero bytes past its size {size_bytes} in its last block")]
    /// Bytes past the end of a file, in its last block, that are not zero.
    TailNotZero {
        /// The inode.
        ino: Ino,
        /// The size recorded, in bytes.
        size_bytes: u64,
    },
    #[error("fs: directory {ino} size {size_bytes} is not a whole number of blocks")]
    /// A directory size that is not whole blocks.
    DirectorySize {
        /// The inode.
        ino: Ino,
        /// The size recorded, in bytes.
        size_bytes: u64,
    },
    #[error("fs: directory {ino} has a hole at block index {index}")]
    /// A directory with an unmapped block below its size.
    DirectoryHole {
        /// The inode.
        ino: Ino,
        /// The file block index.
        index: u64,
    },
    #[error("fs: inode {ino} block count: expected {expected}, found {found}")]
    /// An inode block count that is not the blocks it owns.
    BlockCount {
        /// The inode.
        ino: Ino,
        /// What the invariant requires.
        expected: u64,
        /// What the image holds.
        found: u64,
    },
}

/// Checks every invariant of the file system on `store` (in one read-only transaction).
pub fn check_invariants<S: TxStore>(store: &S) -> Result<FsckReport, Violation> {
    let mut tx = store.begin();
    let result = Checker::new(&mut tx, store.size_blocks()).and_then(|checker| checker.run());
    tx.abort();
    result
}

struct Checker<'t, T: TxHandle> {
    tx: &'t mut T,
    sb: Superblock,
    cache: HashMap<Addr, Block>,
    /// Owner of each reached data block.
    owner: HashMap<Addr, Ino>,
    /// Entries naming each reached inode (directories: once).
    names: HashMap<Ino, u64>,
    subdirs: HashMap<Ino, u64>,
    report: FsckReport,
}

type Checked<T = ()> = Result<T, Violation>;

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl<'t, T: TxHandle> Checker<'t, T> {
    fn new(tx: &'t mut T, store_blocks: u64) -> Checked<Self> {
        let block = tx.read(SUPERBLOCK_ADDR)?;
        let sb = Superblock::decode(&block, store_blocks).map_err(Violation::Superblock)?;
        Ok(Checker {
            tx,
            sb,
            cache: HashMap::new(),
            owner: HashMap::new(),
            names: HashMap::new(),
            subdirs: HashMap::new(),
            report: FsckReport::default(),
        })
    }

    fn get(&mut self, addr: Addr) -> Checked<&Block> {
        if !self.cache.contains_key(&addr) {
            let block = self.tx.read(addr)?;
            self.cache.insert(addr, block);
        }
        Ok(&self.cache[&addr])
    }

    fn inode(&mut self, ino: Ino) -> Checked<Inode> {
        let (addr, slot) = self.sb.inode_location(ino);
        Ok(Inode::decode(self.get(addr)?, slot))
    }

    fn inode_marked(&mut self, ino: Ino) -> Checked<bool> {
        let addr = self.sb.inode_bitmap_start + ino / BITS_PER_BLOCK;
        Ok(bit(self.get(addr)?, ino % BITS_PER_BLOCK))
    }

    fn block_marked(&mut self, index: u64) -> Checked<bool> {
        let addr = self.sb.block_bitmap_start + index / BITS_PER_BLOCK;
        Ok(bit(self.get(addr)?, index % BITS_PER_BLOCK))
    }

    fn run(mut self) -> Checked<FsckReport> {
        let root = self.inode(ROOT_INO)?;
        if root.kind() != Some(Kind::Dir) || !self.inode_marked(ROOT_INO)? {
            return Err(Violation::RootNotDirectory {
                ino: ROOT_INO,
                kind_code: root.kind_code,
            });
        }
        if root.parent != ROOT_INO {
            return Err(Violation::WrongParent {
                ino: ROOT_INO,
                expected: ROOT_INO,
                found: root.parent,
            });
        }
        self.walk_tree()?;
        self.check_link_counts()?;
        self.check_inode_bitmap()?;
        self.check_block_bitmap()?;
        Ok(self.report)
    }

    /// Breadth-first from the root; each directory is expanded once, so the walk is bounded
    /// by the inode count.
    fn walk_tree(&mut self) -> Checked {
        let mut queue = VecDeque::from([ROOT_INO]);
        self.names.insert(ROOT_INO, 0);
        self.check_inode_blocks(ROOT_INO)?;
        while let Some(dir) = queue.pop_front() {
            for child in self.dir_entries(dir)? {
                let inode = self.inode(child)?;
                let first_time = !self.names.contains_key(&child);
                *self.names.entry(child).or_insert(0) += 1;
                if inode.kind() == Some(Kind::Dir) {
                    *self.subdirs.entry(dir).or_insert(0) += 1;
                    if !first_time || child == ROOT_INO {
                        return Err(Violation::DirectoryLinkedTwice { ino: child, dir });
                    }
                    if inode.parent != dir {
                        return Err(Violation::WrongParent {
                            ino: child,
                            expected: dir,
                            found: inode.parent,
                        });
                    }
                    queue.push_back(child);
                }
                if first_time {
                    self.check_inode_blocks(child)?;
                }
            }
        }
        Ok(())
    }

    /// The entries of directory `dir`, each checked for name, uniqueness, target and kind.
    fn dir_entries(&mut self, dir: Ino) -> Checked<Vec<Ino>> {
        let inode = self.inode(dir)?;
        let mut seen = HashSet::new();
        let mut entries = Vec::new();
        for index in 0..inode.size_bytes / BLOCK_SIZE as u64 {
            let addr = self.map(&inode, index)?;
            let block = self.get(addr)?.clone();
            for slot in 0..DIRENTS_PER_BLOCK {
                let (entry, name_len) = RawDirent::decode(&block, slot);
                if entry.ino == 0 {
                    continue;
                }
                let name = entry.name.clone();
                let bad = name_len > NAME_MAX
                    || name.is_empty()
                    || name == b"."
                    || name == b".."
                    || name.iter().any(|&b| b == b'/' || b == 0);
                if bad {
                    return Err(Violation::BadName {
                        dir,
                        slot: index * DIRENTS_PER_BLOCK as u64 + slot as u64,
                        name: lossy(&name),
                        len: name_len,
                    });
                }
                if !seen.insert(name.clone()) {
                    return Err(Violation::DuplicateName {
                        dir,
                        name: lossy(&name),
                    });
                }
                self.check_target(dir, &entry)?;
                entries.push(entry.ino);
            }
        }
        Ok(entries)
    }

    fn check_target(&mut self, dir: Ino, entry: &RawDirent) -> Checked {
        let dangling = || Violation::DanglingEntry {
            dir,
            name: lossy(&entry.name),
            ino: entry.ino,
        };
        if entry.ino >= self.sb.inode_count {
            return Err(dangling());
        }
        let target = self.inode(entry.ino)?;
        if target.kind_code == 0 {
            return Err(dangling());
        }
        if !self.inode_marked(entry.ino)? {
            return Err(Violation::InodeNotMarked { ino: entry.ino });
        }
        if target.kind().is_none() {
            return Err(Violation::BadKind {
                ino: entry.ino,
                kind_code: target.kind_code,
            });
        }
        if target.kind_code != u32::from(entry.kind_code) {
            return Err(Violation::EntryKind {
                dir,
                name: lossy(&entry.name),
                ino: entry.ino,
                expected: u32::from(entry.kind_code),
                found: target.kind_code,
            });
        }
        Ok(())
    }

    /// The block at file index `index` of a directory (which has no holes).
    fn map(&mut self, inode: &Inode, index: u64) -> Checked<Addr> {
        let direct = DIRECT_POINTERS as u64;
        let pointer = if index < direct {
            inode.direct[index as usize]
        } else if index < direct + POINTERS_PER_BLOCK {
            self.pointer(inode.indirect, index - direct)?
        } else {
            let rest = index - direct - POINTERS_PER_BLOCK;
            let child = self.pointer(inode.double_indirect, rest / POINTERS_PER_BLOCK)?;
            self.pointer(child, rest % POINTERS_PER_BLOCK)?
        };
        Ok(pointer)
    }

    /// Slot `index` of pointer table `table` (0 when the table is absent).
    fn pointer(&mut self, table: Addr, index: u64) -> Checked<Addr> {
        if table == 0 {
            return Ok(0);
        }
        Ok(LE::read_u64(
            &self.get(table)?.as_bytes()[(index * 8) as usize..],
        ))
    }

    /// Claims a block for `ino`: in range, marked, and not claimed before.
    fn claim(&mut self, ino: Ino, addr: Addr) -> Checked {
        if !self.sb.is_data(addr) {
            return Err(Violation::PointerOutOfRange { ino, addr });
        }
        if !self.block_marked(addr - self.sb.data_start)? {
            return Err(Violation::BlockNotMarked { ino, addr });
        }
        if let Some(&first) = self.owner.get(&addr) {
            return Err(Violation::BlockOwnedTwice {
                addr,
                first,
                second: ino,
            });
        }
        self.owner.insert(addr, ino);
        Ok(())
    }

    /// Claims every block of inode `ino` and checks its size against them.
    fn check_inode_blocks(&mut self, ino: Ino) -> Checked {
        let inode = self.inode(ino)?;
        let kind = inode.kind().ok_or(Violation::BadKind {
            ino,
            kind_code: inode.kind_code,
        })?;
        if inode.size_bytes > MAX_FILE_BYTES {
            return Err(Violation::SizeTooLarge {
                ino,
                size_bytes: inode.size_bytes,
                max_bytes: MAX_FILE_BYTES,
            });
        }
        let mapped = self.claim_all(ino, &inode)?;
        let size_blocks = inode.size_bytes.div_ceil(BLOCK_SIZE as u64);
        if let Some(&index) = mapped.iter().find(|&&index| index >= size_blocks) {
            return Err(Violation::BlockPastEof {
                ino,
                index,
                size_bytes: inode.size_bytes,
            });
        }
        match kind {
            Kind::Dir => self.check_dir_shape(ino, &inode, &mapped)?,
            Kind::File => {
                self.report.files += 1;
                self.report.file_bytes += inode.size_bytes;
                self.check_tail(ino, &inode)?;
            }
        }
        Ok(())
    }

    fn check_dir_shape(&mut self, ino: Ino, inode: &Inode, mapped: &[u64]) -> Checked {
        self.report.directories += 1;
        if inode.size_bytes % BLOCK_SIZE as u64 != 0 {
            return Err(Violation::DirectorySize {
                ino,
                size_bytes: inode.size_bytes,
            });
        }
        let present: HashSet<u64> = mapped.iter().copied().collect();
        let size_blocks = inode.size_bytes / BLOCK_SIZE as u64;
        if let Some(index) = (0..size_blocks).find(|index| !present.contains(index)) {
            return Err(Violation::DirectoryHole { ino, index });
        }
        Ok(())
    }

    fn check_tail(&mut self, ino: Ino, inode: &Inode) -> Checked {
        let within = (inode.size_bytes % BLOCK_SIZE as u64) as usize;
        if within == 0 {
            return Ok(());
        }
        let addr = self.map(inode, inode.size_bytes / BLOCK_SIZE as u64)?;
        if addr == 0 {
            return Ok(());
        }
        let block = self.tx.read(addr)?;
        if block.as_bytes()[within..].iter().any(|&b| b != 0) {
            return Err(Violation::TailNotZero {
                ino,
                size_bytes: inode.size_bytes,
            });
        }
        Ok(())
    }

    /// Claims the data and index blocks of an inode; returns the file indices mapped.
    fn claim_all(&mut self, ino: Ino, inode: &Inode) -> Checked<Vec<u64>> {
        let mut mapped = Vec::new();
        let mut owned = 0u64;
        for (index, &addr) in inode.direct.iter().enumerate() {
            if addr != 0 {
                self.claim(ino, addr)?;
                owned += 1;
                mapped.push(index as u64);
            }
        }
        let direct = DIRECT_POINTERS as u64;
        if inode.indirect != 0 {
            owned += self.claim_table(ino, inode.indirect, direct, &mut mapped)?;
        }
        if inode.double_indirect != 0 {
            let root = inode.double_indirect;
            self.claim(ino, root)?;
            owned += 1;
            for i in 0..POINTERS_PER_BLOCK {
                let child = self.pointer(root, i)?;
                if child != 0 {
                    let first = direct + POINTERS_PER_BLOCK + i * POINTERS_PER_BLOCK;
                    owned += self.claim_table(ino, child, first, &mut mapped)?;
                }
            }
        }
        self.report.blocks_used += owned;
        if owned != inode.blocks {
            return Err(Violation::BlockCount {
                ino,
                expected: owned,
                found: inode.blocks,
            });
        }
        Ok(mapped)
    }

    /// Claims a pointer table and the blocks it names (file indices from `first`).
    fn claim_table(
        &mut self,
        ino: Ino,
        table: Addr,
        first: u64,
        mapped: &mut Vec<u64>,
    ) -> Checked<u64> {
        self.claim(ino, table)?;
        let mut owned = 1;
        for i in 0..POINTERS_PER_BLOCK {
            let addr = self.pointer(table, i)?;
            if addr != 0 {
                self.claim(ino, addr)?;
                owned += 1;
                mapped.push(first + i);
            }
        }
        Ok(owned)
    }

    fn check_link_counts(&mut self) -> Checked {
        let mut reached: Vec<Ino> = self.names.keys().copied().collect();
        reached.sort_unstable();
        for ino in reached {
            let inode = self.inode(ino)?;
            let expected = match inode.kind() {
                Some(Kind::Dir) => 2 + self.subdirs.get(&ino).copied().unwrap_or(0),
                _ => self.names[&ino],
            };
            if u64::from(inode.nlink) != expected {
                return Err(Violation::LinkCount {
                    ino,
                    expected,
                    found: inode.nlink,
                });
            }
        }
        Ok(())
    }

    /// Every set bit of a bitmap region, in order (each block read once).
    fn set_bits(&mut self, start: Addr, blocks: u64) -> Checked<Vec<u64>> {
        let mut set = Vec::new();
        for i in 0..blocks {
            let block = self.get(start + i)?;
            for (byte_index, &byte) in block.as_bytes().iter().enumerate() {
                for b in (0..8).filter(|b| byte & (1 << b) != 0) {
                    set.push(i * BITS_PER_BLOCK + byte_index as u64 * 8 + b);
                }
            }
        }
        Ok(set)
    }

    fn check_inode_bitmap(&mut self) -> Checked {
        let marked = self.set_bits(self.sb.inode_bitmap_start, self.sb.inode_bitmap_blocks)?;
        if marked.first() != Some(&0) {
            return Err(Violation::InodeBitmapReserved { ino: 0 });
        }
        let marked_set: HashSet<u64> = marked.iter().copied().collect();
        let mut reached: Vec<Ino> = self.names.keys().copied().collect();
        reached.sort_unstable();
        if let Some(&ino) = reached.iter().find(|ino| !marked_set.contains(ino)) {
            return Err(Violation::InodeNotMarked { ino });
        }
        for &ino in &marked[1..] {
            if ino >= self.sb.inode_count {
                return Err(Violation::InodeBitmapReserved { ino });
            }
            if !self.names.contains_key(&ino) {
                return Err(Violation::InodeLeaked { ino });
            }
        }
        Ok(())
    }

    fn check_block_bitmap(&mut self) -> Checked {
        let data_blocks = self.sb.data_blocks;
        let marked = self.set_bits(self.sb.block_bitmap_start, self.sb.block_bitmap_blocks)?;
        for &index in &marked {
            if index >= data_blocks {
                return Err(Violation::BitmapTail { bit: index });
            }
            let addr = self.sb.data_start + index;
            if !self.owner.contains_key(&addr) {
                return Err(Violation::BlockLeaked { addr });
            }
        }
        let used = marked.len() as u64;
        self.report.blocks_free = data_blocks - used;
        Ok(())
    }
}
