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
//! * every directory's B-tree is well formed (the index agrees with the entries): nodes decode,
//!   each level one below its parent, no empty node, records sorted by (key, name), each key
//!   the hash of its name and inside the key range its parents give it; its nodes are its
//!   blocks and its size;
//! * link counts: every inode's equals the entries naming it (hard links included), a
//!   directory's is 2 + its subdirectories;
//! * sizes: no file block mapped past the end of file, bytes past the end in the last block are
//!   zero, size at most the largest file; the inode's block count equals the data and index
//!   blocks it owns; every symbolic link has a target (1..=4095 bytes, no NUL, in its one
//!   block); FIFOs, sockets and device nodes own no block;
//! * metadata: mode bits only the file type and 07777, nanoseconds below a second, `rdev` only
//!   on device nodes, the parent field only on directories, the reserved inode bytes zero.

use crate::error::FsError;
use crate::format::{
    bit, name_key, DirNode, Ino, Inode, Kind, Record, Superblock, BITS_PER_BLOCK, BLOCK_SIZE_BYTES,
    DIRECT_POINTERS, MAX_FILE_BYTES, NAME_MAX, PERM_MASK, POINTERS_PER_BLOCK, ROOT_INO,
    SUPERBLOCK_ADDR, SYMLINK_MAX, TYPE_MASK,
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
    /// Symbolic links reached.
    pub symlinks: u64,
    /// FIFOs, sockets and device nodes reached.
    pub special_files: u64,
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
    #[error("fs: root inode {ino} is not an allocated directory (mode {mode:#o})")]
    /// The root inode is free or not a directory.
    RootNotDirectory {
        /// The inode.
        ino: Ino,
        /// The mode it holds.
        mode: u32,
    },
    #[error("fs: inode {ino} has mode {mode:#o}: no known file type, or bits past 07777")]
    /// An inode of an unknown kind, or with mode bits the format does not define.
    BadKind {
        /// The inode.
        ino: Ino,
        /// The mode it holds.
        mode: u32,
    },
    #[error("fs: inode {ino}: {what}")]
    /// Metadata the format forbids: nanoseconds of a second or more, `rdev` on anything but a
    /// device node, a parent on anything but a directory, reserved bytes not zero.
    BadMetadata {
        /// The inode.
        ino: Ino,
        /// What is wrong.
        what: &'static str,
    },
    #[error("fs: symbolic link {ino}: {what}")]
    /// A symbolic link without a valid target.
    BadSymlink {
        /// The inode.
        ino: Ino,
        /// What is wrong.
        what: &'static str,
    },
    #[error("fs: directory {dir} tree, node {addr}: {what}")]
    /// A directory's B-tree is malformed: its index and its entries disagree.
    DirectoryTree {
        /// The directory.
        dir: Ino,
        /// The node.
        addr: Addr,
        /// What is wrong.
        what: String,
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
    #[error("fs: directory {ino} size {size_bytes}: expected {expected} (its nodes)")]
    /// A directory whose size is not its B-tree nodes' bytes.
    DirectorySize {
        /// The inode.
        ino: Ino,
        /// The size recorded, in bytes.
        size_bytes: u64,
        /// What the invariant requires.
        expected: u64,
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
                mode: root.mode,
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

    /// The entries of directory `dir`, from a walk of its whole B-tree that claims its nodes
    /// and checks the tree's shape, each entry's name, uniqueness, target and kind.
    fn dir_entries(&mut self, dir: Ino) -> Checked<Vec<Ino>> {
        let inode = self.inode(dir)?;
        let mut records = Vec::new();
        let mut nodes = 0u64;
        if inode.direct[0] != 0 {
            let mut stack = vec![(inode.direct[0], None, 0u64, u64::MAX)];
            // Bounded: every node is claimed once (a second claim is a violation).
            while let Some((addr, level, low, high)) = stack.pop() {
                nodes += 1;
                self.dir_node(dir, addr, level, (low, high), &mut stack, &mut records)?;
            }
        }
        let expected_size = nodes * BLOCK_SIZE_BYTES;
        if inode.size_bytes != expected_size {
            return Err(Violation::DirectorySize {
                ino: dir,
                size_bytes: inode.size_bytes,
                expected: expected_size,
            });
        }
        self.report.blocks_used += nodes;
        if inode.blocks != nodes {
            return Err(Violation::BlockCount {
                ino: dir,
                expected: nodes,
                found: inode.blocks,
            });
        }
        let mut seen = HashSet::new();
        let mut entries = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            self.check_record(dir, index as u64, record)?;
            if !seen.insert(record.name.clone()) {
                return Err(Violation::DuplicateName {
                    dir,
                    name: lossy(&record.name),
                });
            }
            entries.push(record.ino);
        }
        Ok(entries)
    }

    /// Claims and checks one node of `dir`'s tree, whose keys must lie in `low..high`: a leaf
    /// adds its records, an interior node pushes its children with their key ranges.
    fn dir_node(
        &mut self,
        dir: Ino,
        addr: Addr,
        level: Option<u8>,
        (low, high): (u64, u64),
        stack: &mut Vec<(Addr, Option<u8>, u64, u64)>,
        records: &mut Vec<Record>,
    ) -> Checked {
        let broken = |what: String| Violation::DirectoryTree { dir, addr, what };
        self.claim(dir, addr)?;
        let node = DirNode::decode(self.get(addr)?).map_err(|error| broken(error.to_string()))?;
        if level.is_some_and(|level| node.level() != level) {
            return Err(broken(format!(
                "level {}, expected {level:?} (one below its parent)",
                node.level()
            )));
        }
        match node {
            DirNode::Leaf(leaf) => {
                if leaf.is_empty() {
                    return Err(broken("empty leaf".into()));
                }
                for pair in leaf.windows(2) {
                    // Equal records are left to the duplicate-name check.
                    if (pair[0].key, &pair[0].name) > (pair[1].key, &pair[1].name) {
                        return Err(broken("records out of (key, name) order".into()));
                    }
                }
                for record in &leaf {
                    if record.key < low || record.key >= high {
                        return Err(broken(format!(
                            "key {} outside its range {low}..{high}",
                            record.key
                        )));
                    }
                    if record.key != name_key(self.sb.hash_seed, &record.name) {
                        return Err(broken(format!(
                            "key {} is not the hash of {:?}",
                            record.key,
                            lossy(&record.name)
                        )));
                    }
                }
                records.extend(leaf);
            }
            DirNode::Interior { level, children } => {
                for pair in children.windows(2) {
                    if pair[0].0 >= pair[1].0 {
                        return Err(broken("children out of key order".into()));
                    }
                }
                for (i, &(key, child)) in children.iter().enumerate() {
                    let child_low = if i == 0 { low } else { key };
                    let child_high = children.get(i + 1).map_or(high, |next| next.0);
                    if i > 0 && (key < low || key >= high) {
                        return Err(broken(format!("child key {key} outside {low}..{high}")));
                    }
                    stack.push((child, Some(level - 1), child_low, child_high));
                }
            }
        }
        Ok(())
    }

    /// One directory record: a valid name, an allocated target of the kind it says.
    fn check_record(&mut self, dir: Ino, index: u64, record: &Record) -> Checked {
        let name = &record.name;
        let bad = name.len() > NAME_MAX
            || name.is_empty()
            || name == b"."
            || name == b".."
            || name.iter().any(|&b| b == b'/' || b == 0);
        if bad {
            return Err(Violation::BadName {
                dir,
                slot: index,
                name: lossy(name),
                len: name.len(),
            });
        }
        self.check_target(dir, record)
    }

    fn check_target(&mut self, dir: Ino, entry: &Record) -> Checked {
        let dangling = || Violation::DanglingEntry {
            dir,
            name: lossy(&entry.name),
            ino: entry.ino,
        };
        if entry.ino == 0 || entry.ino >= self.sb.inode_count {
            return Err(dangling());
        }
        let target = self.inode(entry.ino)?;
        if target.is_free() {
            return Err(dangling());
        }
        if !self.inode_marked(entry.ino)? {
            return Err(Violation::InodeNotMarked { ino: entry.ino });
        }
        let Some(kind) = target.kind() else {
            return Err(Violation::BadKind {
                ino: entry.ino,
                mode: target.mode,
            });
        };
        if kind.code() != entry.kind_code {
            return Err(Violation::EntryKind {
                dir,
                name: lossy(&entry.name),
                ino: entry.ino,
                expected: u32::from(entry.kind_code),
                found: u32::from(kind.code()),
            });
        }
        Ok(())
    }

    /// The block at file index `index` of an inode (0 for a hole).
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

    /// The metadata every inode must have right, whatever its kind.
    fn check_metadata(&mut self, ino: Ino, inode: &Inode, kind: Kind) -> Checked {
        let bad = |what| Violation::BadMetadata { ino, what };
        if inode.mode & !(TYPE_MASK | PERM_MASK) != 0 {
            return Err(Violation::BadKind {
                ino,
                mode: inode.mode,
            });
        }
        if [inode.atime, inode.mtime, inode.ctime]
            .iter()
            .any(|time| time.nanos >= 1_000_000_000)
        {
            return Err(bad("a time with a second or more of nanoseconds"));
        }
        if inode.rdev != 0 && !matches!(kind, Kind::CharDevice | Kind::BlockDevice) {
            return Err(bad("a device number on an inode that is no device node"));
        }
        if kind != Kind::Dir && inode.parent != 0 {
            return Err(bad("a parent on an inode that is no directory"));
        }
        let (addr, slot) = self.sb.inode_location(ino);
        if !Inode::reserved_zero(self.get(addr)?, slot) {
            return Err(bad("reserved inode bytes are not zero"));
        }
        Ok(())
    }

    /// Claims every block of inode `ino` (a directory's are claimed by its tree walk) and
    /// checks its size and metadata against them.
    fn check_inode_blocks(&mut self, ino: Ino) -> Checked {
        let inode = self.inode(ino)?;
        let kind = inode.kind().ok_or(Violation::BadKind {
            ino,
            mode: inode.mode,
        })?;
        self.check_metadata(ino, &inode, kind)?;
        if inode.size_bytes > MAX_FILE_BYTES {
            return Err(Violation::SizeTooLarge {
                ino,
                size_bytes: inode.size_bytes,
                max_bytes: MAX_FILE_BYTES,
            });
        }
        if kind == Kind::Dir {
            self.report.directories += 1;
            let file_map_used = inode.direct[1..].iter().any(|&addr| addr != 0)
                || inode.indirect != 0
                || inode.double_indirect != 0;
            if file_map_used {
                return Err(Violation::DirectoryTree {
                    dir: ino,
                    addr: 0,
                    what: "block pointers other than the root are set".into(),
                });
            }
            return Ok(());
        }
        let mapped = self.claim_all(ino, &inode)?;
        if kind == Kind::Symlink {
            // Before the size checks: a link's size is its target's length.
            self.check_symlink(ino, &inode, &mapped)?;
        }
        let size_blocks = inode.size_bytes.div_ceil(BLOCK_SIZE as u64);
        if let Some(&index) = mapped.iter().find(|&&index| index >= size_blocks) {
            return Err(Violation::BlockPastEof {
                ino,
                index,
                size_bytes: inode.size_bytes,
            });
        }
        match kind {
            Kind::File => {
                self.report.files += 1;
                self.report.file_bytes += inode.size_bytes;
                self.check_tail(ino, &inode)
            }
            Kind::Symlink => {
                self.report.symlinks += 1;
                Ok(())
            }
            _ => {
                self.report.special_files += 1;
                if inode.size_bytes != 0 || !mapped.is_empty() {
                    return Err(Violation::BadMetadata {
                        ino,
                        what: "a FIFO, socket or device node with a size or blocks",
                    });
                }
                Ok(())
            }
        }
    }

    fn check_symlink(&mut self, ino: Ino, inode: &Inode, mapped: &[u64]) -> Checked {
        let bad = |what| Violation::BadSymlink { ino, what };
        let len = inode.size_bytes as usize;
        if len == 0 || len > SYMLINK_MAX {
            return Err(bad("target length outside 1..=4095 bytes"));
        }
        if mapped != [0] {
            return Err(bad("target not in exactly one block, the first"));
        }
        let addr = self.map(inode, 0)?;
        let block = self.tx.read(addr)?;
        if block.as_bytes()[..len].contains(&0) {
            return Err(bad("target contains NUL"));
        }
        self.check_tail(ino, inode)
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
