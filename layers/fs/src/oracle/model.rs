//! The oracle's model: the operations it generates ([`Op`]), what they return ([`Out`]), and
//! an in-memory file system ([`Model`]: inodes, hard links, modes, owners and times) that
//! applies them as POSIX says, to compare a file system with. States are compared as trees
//! ([`Node`]) in which the names of one inode carry the same link group.

use crate::errno;
use crate::format::{Kind, Timestamp};
use crate::fs::RenameMode;
use std::collections::{BTreeMap, HashMap};

/// Component names the generated operations use.
pub const NAMES: [&[u8]; 3] = [b"a", b"b", b"c"];

/// Targets the generated symbolic links hold (relative, absolute, long; most dangle).
pub const SYMLINK_TARGETS: [&[u8]; 4] = [
    b"a",
    b"../b/c",
    b"/etc/hostname",
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/y",
];

/// A path as component indices into [`NAMES`]; empty is the root.
pub type Path = Vec<u8>;

#[derive(Clone, Debug)]
/// One generated file-system operation, on paths of [`NAMES`].
pub enum Op {
    /// Create an empty file (mode 0644, root's).
    Create(Path),
    /// Make a directory (mode 0755, root's).
    Mkdir(Path),
    /// Make a FIFO (mode 0644, root's).
    Mkfifo(Path),
    /// Make a symbolic link to [`SYMLINK_TARGETS`]`[target]` (root's).
    Symlink(Path, u8),
    /// Add a second name (the second path) for the first.
    Link(Path, Path),
    /// Write `len` bytes of [`pattern`] at `offset`.
    Write {
        /// The file.
        path: Path,
        /// Byte offset in the file.
        offset: u64,
        /// Bytes.
        len: u32,
        /// Seed of the written pattern.
        seed: u8,
    },
    /// Read up to `len` bytes at `offset`.
    Read {
        /// The file.
        path: Path,
        /// Byte offset in the file.
        offset: u64,
        /// Bytes.
        len: u32,
    },
    /// Read a symbolic link's target.
    Readlink(Path),
    /// Set a file's size in bytes.
    Truncate(Path, u64),
    /// Set the permission bits.
    Chmod(Path, u32),
    /// Set owner and group.
    Chown(Path, u32, u32),
    /// Set access and modification times (whole seconds).
    Utimens(Path, i64, i64),
    /// Remove a name of anything but a directory.
    Unlink(Path),
    /// Remove an empty directory.
    Rmdir(Path),
    /// Rename the first path to the second.
    Rename(Path, Path),
    /// Rename with `RENAME_NOREPLACE` or `RENAME_EXCHANGE`.
    RenameWith(Path, Path, RenameMode),
    /// List a directory.
    Readdir(Path),
    /// Kind, size, link count, mode, owner and times.
    Stat(Path),
    /// Make every completed operation durable.
    Fsync,
}

/// What an operation returned (directory sizes are not modelled, so a directory's is 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// Done, nothing returned.
    Unit,
    /// The bytes read (or a link's target).
    Data(Vec<u8>),
    /// What `stat` reports.
    Stat {
        /// What the inode is.
        kind: Kind,
        /// Length in bytes (0 for a directory: not modelled).
        size_bytes: u64,
        /// Link count.
        nlink: u32,
        /// Permission bits, owner, group and times.
        meta: Meta,
    },
    /// A directory's entries, sorted by name.
    Entries(Vec<(Vec<u8>, Kind)>),
}

/// An operation's result, an error as its errno.
pub type Outcome = Result<Out, i32>;

/// Deepest directory the oracle walks (the generator builds at most three levels).
pub const MAX_DEPTH: u32 = 64;

/// The time the oracle runs operation `step` at (nanoseconds vary, so they are checked too).
pub fn op_time(step: u64) -> Timestamp {
    Timestamp::new(
        1_000_000_000 + step as i64,
        (step.wrapping_mul(7_919) % 1_000_000_000) as u32,
    )
}

/// The bytes a generated write writes.
pub fn pattern(len: u32, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed)
                .wrapping_add((i >> 12) as u8)
                | 1
        })
        .collect()
}

/// The component names of a generated path.
pub(super) fn comps(path: &[u8]) -> Vec<Vec<u8>> {
    path.iter()
        .map(|&i| NAMES[usize::from(i) % NAMES.len()].to_vec())
        .collect()
}

/// Permission bits, owner, group and times of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits.
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access.
    pub atime: Timestamp,
    /// Last change of the contents.
    pub mtime: Timestamp,
    /// Last change of the inode.
    pub ctime: Timestamp,
}

impl Meta {
    fn new(perm: u32, now: Timestamp) -> Meta {
        Meta {
            perm,
            uid: 0,
            gid: 0,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }
}

/// How many names an inode other than a directory has, and which inode it is: 0 when it has
/// one name, else the order in which a walk by sorted names first meets it (from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Links {
    /// Its link count.
    pub nlink: u32,
    /// Its link group (0: its only name).
    pub group: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
/// A tree node of a state: what a walk from the root sees.
pub enum Node {
    /// A regular file and its bytes.
    File {
        /// Contents.
        bytes: Vec<u8>,
        /// Mode, owner, times.
        meta: Meta,
        /// Hard links.
        links: Links,
    },
    /// A symbolic link.
    Symlink {
        /// Target.
        target: Vec<u8>,
        /// Mode, owner, times.
        meta: Meta,
        /// Hard links.
        links: Links,
    },
    /// A FIFO.
    Fifo {
        /// Mode, owner, times.
        meta: Meta,
        /// Hard links.
        links: Links,
    },
    /// A directory and its entries by name.
    Dir {
        /// Entries.
        entries: BTreeMap<Vec<u8>, Node>,
        /// Mode, owner, times.
        meta: Meta,
    },
}

/// What a model inode holds.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Body {
    File(Vec<u8>),
    Symlink(Vec<u8>),
    Fifo,
    Dir(BTreeMap<Vec<u8>, u64>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MInode {
    body: Body,
    meta: Meta,
    nlink: u32,
}

impl MInode {
    fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Symlink(_) => Kind::Symlink,
            Body::Fifo => Kind::Fifo,
            Body::Dir(_) => Kind::Dir,
        }
    }

    fn is_dir(&self) -> bool {
        matches!(self.body, Body::Dir(_))
    }
}

/// The model's root inode.
const ROOT: u64 = 0;

#[derive(Clone, Debug)]
/// The file system the operations should produce: inodes by number, the root first.
pub struct Model {
    inodes: BTreeMap<u64, MInode>,
    next_id: u64,
}

impl Default for Model {
    /// An empty root (mode 0755, root's, every time 0: what mkfs with a manual clock at 0
    /// makes).
    fn default() -> Self {
        Model::with_root_meta(Meta::new(0o755, Timestamp::default()))
    }
}

impl PartialEq for Model {
    /// Equal trees (inode numbers are the model's own and do not count).
    fn eq(&self, other: &Model) -> bool {
        self.tree() == other.tree()
    }
}

impl Eq for Model {}

fn dir_nlink(entries: &BTreeMap<Vec<u8>, Node>) -> u32 {
    2 + entries
        .values()
        .filter(|node| matches!(node, Node::Dir { .. }))
        .count() as u32
}

impl Model {
    fn with_root_meta(meta: Meta) -> Model {
        let root = MInode {
            body: Body::Dir(BTreeMap::new()),
            meta,
            nlink: 2,
        };
        Model {
            inodes: BTreeMap::from([(ROOT, root)]),
            next_id: 1,
        }
    }

    /// The state as a tree.
    pub fn tree(&self) -> Node {
        let mut groups = HashMap::new();
        self.node(ROOT, &mut groups)
    }

    fn node(&self, id: u64, groups: &mut HashMap<u64, u32>) -> Node {
        let inode = &self.inodes[&id];
        let mut links = || {
            let group = if inode.nlink > 1 {
                let next = groups.len() as u32 + 1;
                *groups.entry(id).or_insert(next)
            } else {
                0
            };
            Links {
                nlink: inode.nlink,
                group,
            }
        };
        match &inode.body {
            Body::File(bytes) => Node::File {
                bytes: bytes.clone(),
                meta: inode.meta,
                links: links(),
            },
            Body::Symlink(target) => Node::Symlink {
                target: target.clone(),
                meta: inode.meta,
                links: links(),
            },
            Body::Fifo => Node::Fifo {
                meta: inode.meta,
                links: links(),
            },
            Body::Dir(entries) => Node::Dir {
                entries: entries
                    .iter()
                    .map(|(name, &child)| (name.clone(), self.node(child, groups)))
                    .collect(),
                meta: inode.meta,
            },
        }
    }

    /// The model of a state seen as a tree (names of one link group become one inode).
    pub fn from_tree(tree: &Node) -> Model {
        let Node::Dir { meta, .. } = tree else {
            panic!("oracle: a tree's root is a directory");
        };
        let mut model = Model::with_root_meta(*meta);
        let mut groups = HashMap::new();
        model.fill(ROOT, tree, &mut groups);
        model
    }

    fn fill(&mut self, dir: u64, tree: &Node, groups: &mut HashMap<u32, u64>) {
        let Node::Dir { entries, .. } = tree else {
            return;
        };
        for (name, node) in entries {
            let (body, meta, links) = match node {
                Node::File { bytes, meta, links } => (Body::File(bytes.clone()), *meta, *links),
                Node::Symlink {
                    target,
                    meta,
                    links,
                } => (Body::Symlink(target.clone()), *meta, *links),
                Node::Fifo { meta, links } => (Body::Fifo, *meta, *links),
                Node::Dir { entries, meta } => (
                    Body::Dir(BTreeMap::new()),
                    *meta,
                    Links {
                        nlink: dir_nlink(entries),
                        group: 0,
                    },
                ),
            };
            let id = match groups.get(&links.group) {
                Some(&id) if links.group != 0 => id,
                _ => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let inode = MInode {
                        body,
                        meta,
                        nlink: links.nlink,
                    };
                    self.inodes.insert(id, inode);
                    if links.group != 0 {
                        groups.insert(links.group, id);
                    }
                    id
                }
            };
            self.entries_mut(dir).insert(name.clone(), id);
            if matches!(node, Node::Dir { .. }) {
                self.fill(id, node, groups);
            }
        }
    }

    fn inode(&self, id: u64) -> &MInode {
        &self.inodes[&id]
    }

    fn inode_mut(&mut self, id: u64) -> &mut MInode {
        self.inodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("oracle model: inode {id} vanished"))
    }

    fn entries(&self, dir: u64) -> &BTreeMap<Vec<u8>, u64> {
        match &self.inode(dir).body {
            Body::Dir(entries) => entries,
            _ => panic!("oracle model: inode {dir} is not a directory"),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> &mut BTreeMap<Vec<u8>, u64> {
        match &mut self.inode_mut(dir).body {
            Body::Dir(entries) => entries,
            _ => panic!("oracle model: inode {dir} is not a directory"),
        }
    }

    /// The inode a path names: a component through anything but a directory is `ENOTDIR`.
    fn walk(&self, comps: &[Vec<u8>]) -> Result<u64, i32> {
        let mut id = ROOT;
        for c in comps {
            match &self.inode(id).body {
                Body::Dir(entries) => id = *entries.get(c).ok_or(errno::ENOENT)?,
                _ => return Err(errno::ENOTDIR),
            }
        }
        Ok(id)
    }

    /// The directory a path's last component is in (the path is not the root), and the name.
    fn parent(&self, path: &Path) -> Result<(u64, Vec<u8>), i32> {
        let c = comps(path);
        let (name, parent) = c.split_last().ok_or(errno::EINVAL)?;
        Ok((self.walk(parent)?, name.clone()))
    }

    /// `parent` as a directory (the check the file system makes when it reads the entries).
    fn dir(&self, id: u64) -> Result<u64, i32> {
        if self.inode(id).is_dir() {
            Ok(id)
        } else {
            Err(errno::ENOTDIR)
        }
    }

    fn touch_dir(&mut self, dir: u64, now: Timestamp) {
        let meta = &mut self.inode_mut(dir).meta;
        meta.mtime = now;
        meta.ctime = now;
    }

    fn touch(&mut self, id: u64, now: Timestamp) {
        self.inode_mut(id).meta.ctime = now;
    }

    /// Drops a name of a non-directory: one link less, the inode gone with the last.
    fn drop_link(&mut self, id: u64, now: Timestamp) {
        let inode = self.inode_mut(id);
        inode.nlink -= 1;
        inode.meta.ctime = now;
        if inode.nlink == 0 {
            self.inodes.remove(&id);
        }
    }

    /// Applies `op` at time `now` as the file system should, and returns what it should
    /// return.
    pub fn apply(&mut self, op: &Op, now: Timestamp) -> Outcome {
        self.apply_cut(op, now, None)
    }

    /// Applies `op`, a write only up to `cut` bytes when given (as a crash between chunks
    /// leaves it).
    pub fn apply_cut(&mut self, op: &Op, now: Timestamp, cut: Option<usize>) -> Outcome {
        match op {
            Op::Create(p) => self.make(p, Body::File(Vec::new()), 0o644, now),
            Op::Mkdir(p) => self.make(p, Body::Dir(BTreeMap::new()), 0o755, now),
            Op::Mkfifo(p) => self.make(p, Body::Fifo, 0o644, now),
            Op::Symlink(p, target) => {
                let target = SYMLINK_TARGETS[usize::from(*target) % SYMLINK_TARGETS.len()];
                self.make(p, Body::Symlink(target.to_vec()), 0o777, now)
            }
            Op::Link(src, dst) => self.link(src, dst, now),
            Op::Write {
                path,
                offset,
                len,
                seed,
            } => {
                let mut data = pattern(*len, *seed);
                if let Some(cut) = cut {
                    data.truncate(cut);
                }
                self.write(path, *offset, &data, now)
            }
            Op::Read { path, offset, len } => {
                let id = self.walk(&comps(path))?;
                let bytes = self.file_bytes(id)?;
                let start = (*offset as usize).min(bytes.len());
                let end = (start + *len as usize).min(bytes.len());
                Ok(Out::Data(bytes[start..end].to_vec()))
            }
            Op::Readlink(path) => match &self.inode(self.walk(&comps(path))?).body {
                Body::Symlink(target) => Ok(Out::Data(target.clone())),
                _ => Err(errno::EINVAL),
            },
            Op::Truncate(path, size) => {
                let id = self.walk(&comps(path))?;
                self.file_bytes(id)?;
                let inode = self.inode_mut(id);
                if let Body::File(bytes) = &mut inode.body {
                    bytes.resize(*size as usize, 0);
                }
                inode.meta.mtime = now;
                inode.meta.ctime = now;
                Ok(Out::Unit)
            }
            Op::Chmod(path, perm) => self.set_meta(path, now, |meta| meta.perm = *perm),
            Op::Chown(path, uid, gid) => self.set_meta(path, now, |meta| {
                meta.uid = *uid;
                meta.gid = *gid;
            }),
            Op::Utimens(path, atime, mtime) => self.set_meta(path, now, |meta| {
                meta.atime = Timestamp::new(*atime, 0);
                meta.mtime = Timestamp::new(*mtime, 0);
            }),
            Op::Unlink(p) => self.remove(p, false, now),
            Op::Rmdir(p) => self.remove(p, true, now),
            Op::Rename(src, dst) => self.rename(src, dst, RenameMode::Replace, now),
            Op::RenameWith(src, dst, mode) => self.rename(src, dst, *mode, now),
            Op::Readdir(p) => {
                let id = self.dir(self.walk(&comps(p))?)?;
                Ok(Out::Entries(
                    self.entries(id)
                        .iter()
                        .map(|(name, &child)| (name.clone(), self.inode(child).kind()))
                        .collect(),
                ))
            }
            Op::Stat(p) => {
                let inode = self.inode(self.walk(&comps(p))?);
                let size_bytes = match &inode.body {
                    Body::File(bytes) => bytes.len() as u64,
                    Body::Symlink(target) => target.len() as u64,
                    Body::Fifo | Body::Dir(_) => 0,
                };
                Ok(Out::Stat {
                    kind: inode.kind(),
                    size_bytes,
                    nlink: inode.nlink,
                    meta: inode.meta,
                })
            }
            Op::Fsync => Ok(Out::Unit),
        }
    }

    /// A regular file's bytes: a directory is `EISDIR`, anything else `EINVAL`.
    fn file_bytes(&self, id: u64) -> Result<&Vec<u8>, i32> {
        match &self.inode(id).body {
            Body::File(bytes) => Ok(bytes),
            Body::Dir(_) => Err(errno::EISDIR),
            _ => Err(errno::EINVAL),
        }
    }

    fn set_meta(&mut self, path: &Path, now: Timestamp, change: impl FnOnce(&mut Meta)) -> Outcome {
        let id = self.walk(&comps(path))?;
        let meta = &mut self.inode_mut(id).meta;
        change(meta);
        meta.ctime = now;
        Ok(Out::Unit)
    }

    fn make(&mut self, p: &Path, body: Body, perm: u32, now: Timestamp) -> Outcome {
        let (parent, name) = self.parent(p)?;
        let parent = self.dir(parent)?;
        if self.entries(parent).contains_key(&name) {
            return Err(errno::EEXIST);
        }
        let is_dir = matches!(body, Body::Dir(_));
        let id = self.next_id;
        self.next_id += 1;
        let nlink = if is_dir { 2 } else { 1 };
        let inode = MInode {
            body,
            meta: Meta::new(perm, now),
            nlink,
        };
        self.inodes.insert(id, inode);
        self.entries_mut(parent).insert(name, id);
        if is_dir {
            self.inode_mut(parent).nlink += 1;
        }
        self.touch_dir(parent, now);
        Ok(Out::Unit)
    }

    fn link(&mut self, src: &Path, dst: &Path, now: Timestamp) -> Outcome {
        let id = self.walk(&comps(src))?;
        let (parent, name) = self.parent(dst)?;
        if self.inode(id).is_dir() {
            return Err(errno::EISDIR);
        }
        let parent = self.dir(parent)?;
        if self.entries(parent).contains_key(&name) {
            return Err(errno::EEXIST);
        }
        let inode = self.inode_mut(id);
        inode.nlink += 1;
        inode.meta.ctime = now;
        self.entries_mut(parent).insert(name, id);
        self.touch_dir(parent, now);
        Ok(Out::Unit)
    }

    fn write(&mut self, p: &Path, offset: u64, data: &[u8], now: Timestamp) -> Outcome {
        let id = self.walk(&comps(p))?;
        self.file_bytes(id)?;
        if data.is_empty() {
            return Ok(Out::Unit);
        }
        let inode = self.inode_mut(id);
        if let Body::File(bytes) = &mut inode.body {
            let end = offset as usize + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[offset as usize..end].copy_from_slice(data);
        }
        inode.meta.mtime = now;
        inode.meta.ctime = now;
        Ok(Out::Unit)
    }

    fn remove(&mut self, p: &Path, dir: bool, now: Timestamp) -> Outcome {
        let (parent, name) = self.parent(p)?;
        let parent = self.dir(parent)?;
        let id = *self.entries(parent).get(&name).ok_or(errno::ENOENT)?;
        let target = self.inode(id);
        match (&target.body, dir) {
            (Body::Dir(_), false) => return Err(errno::EISDIR),
            (Body::Dir(entries), true) if !entries.is_empty() => return Err(errno::ENOTEMPTY),
            (Body::Dir(_), true) => {}
            (_, true) => return Err(errno::ENOTDIR),
            (_, false) => {}
        }
        self.entries_mut(parent).remove(&name);
        if dir {
            self.inodes.remove(&id);
            self.inode_mut(parent).nlink -= 1;
        } else {
            self.drop_link(id, now);
        }
        self.touch_dir(parent, now);
        Ok(Out::Unit)
    }

    /// Whether directory `ancestor` is `dir` or above it.
    fn is_ancestor(&self, ancestor: u64, dir: u64) -> bool {
        let mut stack = vec![ancestor];
        while let Some(id) = stack.pop() {
            if id == dir {
                return true;
            }
            if let Body::Dir(entries) = &self.inode(id).body {
                stack.extend(entries.values().filter(|&&c| self.inode(c).is_dir()));
            }
        }
        false
    }

    /// A directory moved from `from` to `to`: both link counts.
    fn move_dir(&mut self, from: u64, to: u64) {
        self.inode_mut(from).nlink -= 1;
        self.inode_mut(to).nlink += 1;
    }

    fn rename(&mut self, src: &Path, dst: &Path, mode: RenameMode, now: Timestamp) -> Outcome {
        let (sp, sn) = self.parent(src)?;
        let (dp, dn) = self.parent(dst)?;
        let sp = self.dir(sp)?;
        let s = *self.entries(sp).get(&sn).ok_or(errno::ENOENT)?;
        let dp = self.dir(dp)?;
        let d = self.entries(dp).get(&dn).copied();
        if mode == RenameMode::Exchange {
            return self.exchange((sp, sn, s), (dp, dn, d.ok_or(errno::ENOENT)?), now);
        }
        if let Some(d) = d {
            if mode == RenameMode::NoReplace {
                return Err(errno::EEXIST);
            }
            if d == s {
                return Ok(Out::Unit);
            }
            match (&self.inode(s).body, &self.inode(d).body) {
                (Body::Dir(_), Body::Dir(entries)) if !entries.is_empty() => {
                    return Err(errno::ENOTEMPTY)
                }
                (Body::Dir(_), Body::Dir(_)) => {}
                (Body::Dir(_), _) => return Err(errno::ENOTDIR),
                (_, Body::Dir(_)) => return Err(errno::EISDIR),
                _ => {}
            }
        }
        let moves_dir = self.inode(s).is_dir();
        if moves_dir && sp != dp && self.is_ancestor(s, dp) {
            return Err(errno::EINVAL);
        }
        self.entries_mut(sp).remove(&sn);
        self.entries_mut(dp).insert(dn, s);
        if let Some(d) = d {
            if self.inode(d).is_dir() {
                self.inodes.remove(&d);
                self.inode_mut(dp).nlink -= 1;
            } else {
                self.drop_link(d, now);
            }
        }
        if moves_dir && sp != dp {
            self.move_dir(sp, dp);
        }
        self.touch(s, now);
        self.touch_dir(sp, now);
        self.touch_dir(dp, now);
        Ok(Out::Unit)
    }

    fn exchange(
        &mut self,
        (sp, sn, a): (u64, Vec<u8>, u64),
        (dp, dn, b): (u64, Vec<u8>, u64),
        now: Timestamp,
    ) -> Outcome {
        if a == b {
            return Ok(Out::Unit);
        }
        if sp != dp {
            let (a_dir, b_dir) = (self.inode(a).is_dir(), self.inode(b).is_dir());
            if (a_dir && self.is_ancestor(a, dp)) || (b_dir && self.is_ancestor(b, sp)) {
                return Err(errno::EINVAL);
            }
            if a_dir {
                self.move_dir(sp, dp);
            }
            if b_dir {
                self.move_dir(dp, sp);
            }
        }
        self.entries_mut(sp).insert(sn, b);
        self.entries_mut(dp).insert(dn, a);
        self.touch(a, now);
        self.touch(b, now);
        self.touch_dir(sp, now);
        self.touch_dir(dp, now);
        Ok(Out::Unit)
    }
}

/// The states a write split into chunks passes through between its chunks (none for any
/// other operation, or a write that fits one transaction).
pub fn chunk_states(model: &Model, op: &Op, now: Timestamp, chunk_bytes: u64) -> Vec<Node> {
    let mut states = Vec::new();
    if let Op::Write { offset, len, .. } = op {
        let end = offset + u64::from(*len);
        let mut cut_at = (offset / chunk_bytes + 1) * chunk_bytes;
        while cut_at < end {
            let mut partial = model.clone();
            if partial
                .apply_cut(op, now, Some((cut_at - offset) as usize))
                .is_ok()
            {
                states.push(partial.tree());
            }
            cut_at += chunk_bytes;
        }
    }
    states
}

/// The states the in-flight operation may leave: unchanged, complete, or (a write) any prefix
/// of its chunks.
pub fn in_flight_states(model: &Model, op: &Op, now: Timestamp, chunk_bytes: u64) -> Vec<Node> {
    let mut states = vec![model.tree()];
    states.extend(chunk_states(model, op, now, chunk_bytes));
    let mut full = model.clone();
    if full.apply(op, now).is_ok() {
        states.push(full.tree());
    }
    states
}

/// A short description of a tree: each path with its kind, size, a checksum of its bytes,
/// its link group and its mode and times.
pub fn summary(node: &Node) -> String {
    fn meta_of(meta: &Meta) -> String {
        format!(
            "{:o},{}:{},m{}.{},c{}.{}",
            meta.perm,
            meta.uid,
            meta.gid,
            meta.mtime.secs,
            meta.mtime.nanos,
            meta.ctime.secs,
            meta.ctime.nanos
        )
    }
    fn walk(node: &Node, prefix: &str, out: &mut Vec<String>) {
        match node {
            Node::File { bytes, meta, links } => {
                let sum = bytes.iter().fold(0u64, |acc, &b| {
                    acc.wrapping_mul(31).wrapping_add(u64::from(b))
                });
                out.push(format!(
                    "{prefix}:{}:{sum:x}:l{}g{}:{}",
                    bytes.len(),
                    links.nlink,
                    links.group,
                    meta_of(meta)
                ));
            }
            Node::Symlink {
                target,
                meta,
                links,
            } => out.push(format!(
                "{prefix}->{}:l{}g{}:{}",
                target.len(),
                links.nlink,
                links.group,
                meta_of(meta)
            )),
            Node::Fifo { meta, links } => out.push(format!(
                "{prefix}|:l{}g{}:{}",
                links.nlink,
                links.group,
                meta_of(meta)
            )),
            Node::Dir { entries, meta } => {
                out.push(format!("{prefix}/:{}", meta_of(meta)));
                for (name, child) in entries {
                    walk(
                        child,
                        &format!("{prefix}/{}", String::from_utf8_lossy(name)),
                        out,
                    );
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(node, "", &mut out);
    out.join(" ")
}
