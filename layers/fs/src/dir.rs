//! Directories: a B+-tree per directory keyed by the hash of each name ([`name_key`]).
//!
//! Leaves hold the entries, sorted by (key, name); interior nodes hold (smallest key, child)
//! pairs. Lookup, insertion and removal read one node per level, so they cost O(log n) block
//! reads in a directory of n entries, and every change writes only the nodes on one path (a
//! split adds one node per level at most). Entries of one key (a hash collision) are never
//! split across two leaves, so a key is a position in the directory that stays valid while
//! other entries come and go: it is the `readdir` offset. A leaf left empty is freed and
//! dropped from its parent (nodes are not merged otherwise), an interior root with one child
//! gives way to it, and an empty directory owns no block at all (its inode's `direct[0]`, the
//! root, is 0). Every loop is bounded: descents by [`MAX_NODE_LEVEL`], scans by the leaves.

use crate::error::{FsError, Result};
use crate::format::{
    leaf_bytes, name_key, DirNode, Ino, Inode, Kind, Record, BLOCK_SIZE_BYTES, INTERIOR_FANOUT,
    LEAF_CAPACITY_BYTES, MAX_FILE_BYTES, MAX_NODE_LEVEL, NAME_MAX,
};
use crate::store::TxHandle;
use crate::txn::Ctx;
use txdisk_disk::Addr;

/// What a directory entry names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub ino: Ino,
    pub kind: Kind,
}

/// One interior node on the way down to a leaf, and the child taken.
struct Step {
    addr: Addr,
    level: u8,
    children: Vec<(u64, Addr)>,
    taken: usize,
}

/// The leaf a key leads to, and the interior nodes above it (root first).
struct Descent {
    path: Vec<Step>,
    leaf: Addr,
    records: Vec<Record>,
}

impl Descent {
    /// The smallest key of the next leaf to the right, if any: the key after the deepest
    /// child taken that has a right sibling.
    fn next_leaf_key(&self) -> Option<u64> {
        self.path
            .iter()
            .rev()
            .find_map(|step| step.children.get(step.taken + 1).map(|&(key, _)| key))
    }
}

/// Rejects names no directory may hold.
pub(crate) fn validate_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong {
            len: name.len(),
            max: NAME_MAX,
        });
    }
    if name.is_empty() || name == b"." || name == b".." {
        return Err(FsError::InvalidArgument("name is empty, '.' or '..'"));
    }
    if name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(FsError::InvalidArgument("name contains '/' or NUL"));
    }
    Ok(())
}

fn entry_of(record: &Record) -> Result<Entry> {
    let kind = Kind::from_code(record.kind_code)
        .ok_or_else(|| FsError::corrupt("directory entry kind", 8u8, record.kind_code))?;
    Ok(Entry {
        ino: record.ino,
        kind,
    })
}

/// Where `record`'s (key, name) goes among sorted `records`, and whether it is there.
fn position(records: &[Record], key: u64, name: &[u8]) -> (usize, bool) {
    let at = records.partition_point(|r| (r.key, r.name.as_slice()) < (key, name));
    let found = records
        .get(at)
        .is_some_and(|r| r.key == key && r.name == name);
    (at, found)
}

/// Where to split an overfull leaf: an index at a key boundary leaving both halves within a
/// block, as near the middle (in bytes) as possible; `None` when no such boundary exists (one
/// key's collisions fill the leaf).
fn split_point(records: &[Record]) -> Option<usize> {
    let total = leaf_bytes(records);
    let mut left = 0;
    let mut best: Option<(usize, usize)> = None;
    for i in 1..records.len() {
        left += records[i - 1].encoded_bytes();
        if records[i - 1].key == records[i].key
            || left > LEAF_CAPACITY_BYTES
            || total - left > LEAF_CAPACITY_BYTES
        {
            continue;
        }
        let distance = left.abs_diff(total / 2);
        if best.map_or(true, |(_, d)| distance < d) {
            best = Some((i, distance));
        }
    }
    best.map(|(i, _)| i)
}

impl<T: TxHandle> Ctx<'_, T> {
    /// Reads a directory inode; anything else is `NotADirectory`.
    pub fn dir_inode(&mut self, ino: Ino) -> Result<Inode> {
        let inode = self.inode(ino)?;
        if inode.kind() != Some(Kind::Dir) {
            return Err(FsError::NotADirectory);
        }
        Ok(inode)
    }

    fn read_node(&mut self, addr: Addr) -> Result<DirNode> {
        if !self.sb.is_data(addr) {
            return Err(FsError::corrupt(
                "directory node in the data region",
                self.sb.data_start,
                addr,
            ));
        }
        DirNode::decode(self.get(addr)?)
    }

    fn write_node(&mut self, addr: Addr, node: &DirNode) {
        let block = node.encode();
        // Pair check: the bytes about to be written decode to the node meant.
        debug_assert!(
            matches!(DirNode::decode(&block), Ok(ref decoded) if decoded == node),
            "fs: directory node {addr} does not decode to what was encoded"
        );
        self.put(addr, block);
    }

    fn alloc_node(&mut self, dir: &mut Inode) -> Result<Addr> {
        // A directory's size is its nodes' bytes, held to the largest file like any size.
        if dir.size_bytes + BLOCK_SIZE_BYTES > MAX_FILE_BYTES {
            return Err(FsError::NoSpace {
                what: "directory at the largest size an inode holds",
            });
        }
        let addr = self.alloc_block()?;
        dir.blocks += 1;
        dir.size_bytes += BLOCK_SIZE_BYTES;
        Ok(addr)
    }

    fn free_node(&mut self, dir: &mut Inode, addr: Addr) -> Result<()> {
        dir.blocks = dir.blocks.checked_sub(1).ok_or_else(|| {
            FsError::corrupt("directory block count covers its nodes", 1u32, 0u32)
        })?;
        dir.size_bytes = dir.size_bytes.saturating_sub(BLOCK_SIZE_BYTES);
        self.free_block(addr)
    }

    /// Walks from the root to the leaf where `key` belongs.
    fn descend(&mut self, root: Addr, key: u64) -> Result<Descent> {
        let mut path = Vec::new();
        let mut addr = root;
        let mut expected_level: Option<u8> = None;
        // Bounded: every step goes one level down, and levels are at most MAX_NODE_LEVEL.
        for _ in 0..=MAX_NODE_LEVEL {
            let node = self.read_node(addr)?;
            if let Some(level) = expected_level {
                if node.level() != level {
                    return Err(FsError::corrupt(
                        "directory child one level below its parent",
                        level,
                        node.level(),
                    ));
                }
            }
            match node {
                DirNode::Leaf(records) => {
                    return Ok(Descent {
                        path,
                        leaf: addr,
                        records,
                    })
                }
                DirNode::Interior { level, children } => {
                    let taken = children
                        .partition_point(|&(first, _)| first <= key)
                        .saturating_sub(1);
                    let child = children[taken].1;
                    path.push(Step {
                        addr,
                        level,
                        children,
                        taken,
                    });
                    addr = child;
                    expected_level = Some(level - 1);
                }
            }
        }
        Err(FsError::corrupt(
            "directory tree depth",
            MAX_NODE_LEVEL,
            MAX_NODE_LEVEL + 1,
        ))
    }

    /// The entry `name` in directory `dir`, if any.
    pub fn dir_lookup(&mut self, dir: Ino, name: &[u8]) -> Result<Option<Entry>> {
        let inode = self.dir_inode(dir)?;
        let root = inode.direct[0];
        if root == 0 {
            return Ok(None);
        }
        let key = name_key(self.sb.hash_seed, name);
        let descent = self.descend(root, key)?;
        match position(&descent.records, key, name) {
            (at, true) => entry_of(&descent.records[at]).map(Some),
            _ => Ok(None),
        }
    }

    /// Whether directory `dir` has no entries.
    pub fn dir_is_empty(&mut self, dir: Ino) -> Result<bool> {
        Ok(self.dir_inode(dir)?.direct[0] == 0)
    }

    /// Adds `name` → `ino` to directory `dir`; the name must not be there.
    pub fn dir_insert(&mut self, dir: Ino, name: &[u8], ino: Ino, kind: Kind) -> Result<()> {
        let mut inode = self.dir_inode(dir)?;
        let key = name_key(self.sb.hash_seed, name);
        let record = Record {
            key,
            ino,
            kind_code: kind.code(),
            name: name.to_vec(),
        };
        let root = inode.direct[0];
        if root == 0 {
            let leaf = self.alloc_node(&mut inode)?;
            self.write_node(leaf, &DirNode::Leaf(vec![record]));
            inode.direct[0] = leaf;
            return self.put_inode(dir, &inode);
        }
        let Descent {
            path,
            leaf,
            mut records,
        } = self.descend(root, key)?;
        let (at, found) = position(&records, key, name);
        assert!(
            !found,
            "fs: insertion of a name directory {dir} already holds"
        );
        records.insert(at, record);
        if leaf_bytes(&records) <= LEAF_CAPACITY_BYTES {
            self.write_node(leaf, &DirNode::Leaf(records));
            return Ok(());
        }
        let split = split_point(&records).ok_or(FsError::NoSpace {
            what: "directory leaf full of names of one hash",
        })?;
        let right = records.split_off(split);
        let separator = right[0].key;
        let new_leaf = self.alloc_node(&mut inode)?;
        self.write_node(leaf, &DirNode::Leaf(records));
        self.write_node(new_leaf, &DirNode::Leaf(right));
        self.add_child(&mut inode, path, separator, new_leaf)?;
        self.put_inode(dir, &inode)
    }

    /// Adds the node `child` (smallest key `key`) right of the child taken at the bottom of
    /// `path`, splitting full interior nodes upwards and growing a new root if the old one
    /// splits.
    fn add_child(
        &mut self,
        inode: &mut Inode,
        mut path: Vec<Step>,
        mut key: u64,
        mut child: Addr,
    ) -> Result<()> {
        let mut child_level = 0;
        while let Some(step) = path.pop() {
            let mut children = step.children;
            children.insert(step.taken + 1, (key, child));
            if children.len() <= INTERIOR_FANOUT {
                let node = DirNode::Interior {
                    level: step.level,
                    children,
                };
                self.write_node(step.addr, &node);
                return Ok(());
            }
            let right = children.split_off(children.len() / 2);
            key = right[0].0;
            child = self.alloc_node(inode)?;
            self.write_node(
                step.addr,
                &DirNode::Interior {
                    level: step.level,
                    children,
                },
            );
            self.write_node(
                child,
                &DirNode::Interior {
                    level: step.level,
                    children: right,
                },
            );
            child_level = step.level;
        }
        let level = child_level + 1;
        if level > MAX_NODE_LEVEL {
            return Err(FsError::NoSpace {
                what: "directory tree at its deepest",
            });
        }
        let root = self.alloc_node(inode)?;
        let children = vec![(0, inode.direct[0]), (key, child)];
        self.write_node(root, &DirNode::Interior { level, children });
        inode.direct[0] = root;
        Ok(())
    }

    /// Removes `name` from directory `dir` and returns what it named.
    pub fn dir_remove(&mut self, dir: Ino, name: &[u8]) -> Result<Entry> {
        let mut inode = self.dir_inode(dir)?;
        let root = inode.direct[0];
        if root == 0 {
            return Err(FsError::NotFound);
        }
        let key = name_key(self.sb.hash_seed, name);
        let Descent {
            mut path,
            leaf,
            mut records,
        } = self.descend(root, key)?;
        let (at, found) = position(&records, key, name);
        if !found {
            return Err(FsError::NotFound);
        }
        let removed = entry_of(&records.remove(at))?;
        if !records.is_empty() {
            self.write_node(leaf, &DirNode::Leaf(records));
            return Ok(removed);
        }
        // The leaf is empty: free it and drop it from its parent, and so on up.
        self.free_node(&mut inode, leaf)?;
        let mut emptied_root = true;
        while let Some(mut step) = path.pop() {
            let (removed_key, _) = step.children.remove(step.taken);
            if step.taken == 0 {
                if let Some(first) = step.children.first_mut() {
                    // The new first child takes every key the removed one did (the node's
                    // lower bound): keep the keys increasing and each child's key at most
                    // its smallest.
                    first.0 = removed_key;
                }
            }
            if step.children.is_empty() {
                self.free_node(&mut inode, step.addr)?;
                continue;
            }
            let node = DirNode::Interior {
                level: step.level,
                children: step.children,
            };
            self.write_node(step.addr, &node);
            emptied_root = false;
            break;
        }
        if emptied_root {
            inode.direct[0] = 0;
        } else {
            self.collapse_root(&mut inode)?;
        }
        self.put_inode(dir, &inode)?;
        Ok(removed)
    }

    /// While the root is an interior node with one child, makes the child the root.
    fn collapse_root(&mut self, inode: &mut Inode) -> Result<()> {
        for _ in 0..=MAX_NODE_LEVEL {
            let root = inode.direct[0];
            match self.read_node(root)? {
                DirNode::Interior { children, .. } if children.len() == 1 => {
                    inode.direct[0] = children[0].1;
                    self.free_node(inode, root)?;
                }
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// Points the existing entry `name` of directory `dir` at `ino` (a rename over it, or an
    /// exchange) and returns what it named before.
    pub fn dir_retarget(&mut self, dir: Ino, name: &[u8], ino: Ino, kind: Kind) -> Result<Entry> {
        let inode = self.dir_inode(dir)?;
        let root = inode.direct[0];
        if root == 0 {
            return Err(FsError::NotFound);
        }
        let key = name_key(self.sb.hash_seed, name);
        let Descent {
            leaf, mut records, ..
        } = self.descend(root, key)?;
        let (at, found) = position(&records, key, name);
        if !found {
            return Err(FsError::NotFound);
        }
        let before = entry_of(&records[at])?;
        records[at].ino = ino;
        records[at].kind_code = kind.code();
        self.write_node(leaf, &DirNode::Leaf(records));
        Ok(before)
    }

    /// Entries of directory `dir` whose key is `from_key` or more, in key order, leaf by leaf
    /// until at least `at_least` are gathered or the directory ends (whole leaves, so that one
    /// key's entries come together).
    pub fn dir_entries_from(
        &mut self,
        dir: Ino,
        from_key: u64,
        at_least: usize,
    ) -> Result<Vec<Record>> {
        let inode = self.dir_inode(dir)?;
        let root = inode.direct[0];
        let mut out = Vec::new();
        if root == 0 {
            return Ok(out);
        }
        let mut from = from_key;
        // Bounded by the directory's nodes: each round moves to the next leaf.
        for _ in 0..=inode.blocks {
            let descent = self.descend(root, from)?;
            let next = descent.next_leaf_key();
            out.extend(descent.records.into_iter().filter(|r| r.key >= from));
            match next {
                Some(key) if out.len() < at_least => {
                    debug_assert!(key > from, "fs: directory scan does not advance");
                    from = key;
                }
                _ => return Ok(out),
            }
        }
        Err(FsError::corrupt(
            "directory leaves within its block count",
            inode.blocks,
            inode.blocks + 1,
        ))
    }
}
