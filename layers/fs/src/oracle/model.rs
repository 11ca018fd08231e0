//! The oracle's model: the operations it generates ([`Op`]), what they return ([`Out`]), and
//! an in-memory tree ([`Model`]) that applies them as POSIX says, to compare a file system with.

use crate::errno;
use crate::format::Kind;
use std::collections::BTreeMap;

/// Component names the generated operations use.
pub const NAMES: [&[u8]; 3] = [b"a", b"b", b"c"];

/// A path as component indices into [`NAMES`]; empty is the root.
pub type Path = Vec<u8>;

#[derive(Clone, Debug)]
/// One generated file-system operation, on paths of [`NAMES`].
pub enum Op {
    /// Create an empty file.
    Create(Path),
    /// Make a directory.
    Mkdir(Path),
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
    /// Set a file's size in bytes.
    Truncate(Path, u64),
    /// Remove a file.
    Unlink(Path),
    /// Remove an empty directory.
    Rmdir(Path),
    /// Rename the first path to the second.
    Rename(Path, Path),
    /// List a directory.
    Readdir(Path),
    /// Kind, size and link count.
    Stat(Path),
    /// Make every completed operation durable.
    Fsync,
}

/// What an operation returned (directory sizes are not modelled, so a directory's is 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// Done, nothing returned.
    Unit,
    /// The bytes read.
    Data(Vec<u8>),
    /// What `stat` reports.
    Stat {
        /// File or directory.
        kind: Kind,
        /// Length in bytes (0 for a directory: not modelled).
        size_bytes: u64,
        /// Link count.
        nlink: u32,
    },
    /// A directory's entries, sorted by name.
    Entries(Vec<(Vec<u8>, Kind)>),
}

/// An operation's result, an error as its errno.
pub type Outcome = Result<Out, i32>;

/// Deepest directory the oracle walks (the generator builds at most three levels).
pub const MAX_DEPTH: u32 = 64;

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

#[derive(Clone, Debug, PartialEq, Eq)]
/// A tree node of the model.
pub enum Node {
    /// A file and its bytes.
    File(Vec<u8>),
    /// A directory and its entries by name.
    Dir(BTreeMap<Vec<u8>, Node>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
/// The file-system tree the operations should produce.
pub struct Model {
    /// The root directory.
    pub root: Node,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            root: Node::Dir(BTreeMap::new()),
        }
    }
}

fn walk<'n>(mut node: &'n Node, comps: &[Vec<u8>]) -> Result<&'n Node, i32> {
    for c in comps {
        match node {
            Node::File(_) => return Err(errno::ENOTDIR),
            Node::Dir(map) => node = map.get(c).ok_or(errno::ENOENT)?,
        }
    }
    Ok(node)
}

fn walk_mut<'n>(mut node: &'n mut Node, comps: &[Vec<u8>]) -> &'n mut Node {
    for c in comps {
        match node {
            Node::Dir(map) => {
                node = map
                    .get_mut(c)
                    .expect("oracle model invariant: the path was resolved above")
            }
            Node::File(_) => panic!("model: path checked"),
        }
    }
    node
}

fn dir_map(node: &mut Node) -> &mut BTreeMap<Vec<u8>, Node> {
    match node {
        Node::Dir(map) => map,
        Node::File(_) => panic!("model: directory checked"),
    }
}

fn subdirs(map: &BTreeMap<Vec<u8>, Node>) -> u32 {
    map.values().filter(|n| matches!(n, Node::Dir(_))).count() as u32
}

impl Model {
    /// Applies `op` as the file system should, and returns what it should return.
    pub fn apply(&mut self, op: &Op) -> Outcome {
        self.apply_cut(op, None)
    }

    /// Applies `op`, a write only up to `cut` bytes when given (as a crash between chunks
    /// leaves it).
    pub fn apply_cut(&mut self, op: &Op, cut: Option<usize>) -> Outcome {
        match op {
            Op::Create(p) => self.make(p, Node::File(Vec::new())),
            Op::Mkdir(p) => self.make(p, Node::Dir(BTreeMap::new())),
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
                self.write(path, *offset, &data)
            }
            Op::Read { path, offset, len } => match walk(&self.root, &comps(path))? {
                Node::Dir(_) => Err(errno::EISDIR),
                Node::File(bytes) => {
                    let start = (*offset as usize).min(bytes.len());
                    let end = (start + *len as usize).min(bytes.len());
                    Ok(Out::Data(bytes[start..end].to_vec()))
                }
            },
            Op::Truncate(path, size) => {
                let c = comps(path);
                match walk(&self.root, &c)? {
                    Node::Dir(_) => Err(errno::EISDIR),
                    Node::File(_) => {
                        if let Node::File(bytes) = walk_mut(&mut self.root, &c) {
                            bytes.resize(*size as usize, 0);
                        }
                        Ok(Out::Unit)
                    }
                }
            }
            Op::Unlink(p) => self.remove(p, false),
            Op::Rmdir(p) => self.remove(p, true),
            Op::Rename(src, dst) => self.rename(src, dst),
            Op::Readdir(p) => match walk(&self.root, &comps(p))? {
                Node::File(_) => Err(errno::ENOTDIR),
                Node::Dir(map) => Ok(Out::Entries(
                    map.iter()
                        .map(|(name, n)| {
                            (
                                name.clone(),
                                if matches!(n, Node::Dir(_)) {
                                    Kind::Dir
                                } else {
                                    Kind::File
                                },
                            )
                        })
                        .collect(),
                )),
            },
            Op::Stat(p) => Ok(match walk(&self.root, &comps(p))? {
                Node::File(bytes) => Out::Stat {
                    kind: Kind::File,
                    size_bytes: bytes.len() as u64,
                    nlink: 1,
                },
                Node::Dir(map) => Out::Stat {
                    kind: Kind::Dir,
                    size_bytes: 0,
                    nlink: 2 + subdirs(map),
                },
            }),
            Op::Fsync => Ok(Out::Unit),
        }
    }

    fn parent_dir(&self, c: &[Vec<u8>]) -> Result<(), i32> {
        match walk(&self.root, &c[..c.len() - 1])? {
            Node::File(_) => Err(errno::ENOTDIR),
            Node::Dir(_) => Ok(()),
        }
    }

    fn make(&mut self, p: &Path, node: Node) -> Outcome {
        if p.is_empty() {
            return Err(errno::EINVAL);
        }
        let c = comps(p);
        self.parent_dir(&c)?;
        let map = dir_map(walk_mut(&mut self.root, &c[..c.len() - 1]));
        if map.contains_key(&c[c.len() - 1]) {
            return Err(errno::EEXIST);
        }
        map.insert(c[c.len() - 1].clone(), node);
        Ok(Out::Unit)
    }

    fn write(&mut self, p: &Path, offset: u64, data: &[u8]) -> Outcome {
        let c = comps(p);
        if let Node::Dir(_) = walk(&self.root, &c)? {
            return Err(errno::EISDIR);
        }
        if let Node::File(bytes) = walk_mut(&mut self.root, &c) {
            if !data.is_empty() {
                let end = offset as usize + data.len();
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[offset as usize..end].copy_from_slice(data);
            }
        }
        Ok(Out::Unit)
    }

    fn remove(&mut self, p: &Path, dir: bool) -> Outcome {
        if p.is_empty() {
            return Err(errno::EINVAL);
        }
        let c = comps(p);
        self.parent_dir(&c)?;
        let map = dir_map(walk_mut(&mut self.root, &c[..c.len() - 1]));
        let name = &c[c.len() - 1];
        match (map.get(name), dir) {
            (None, _) => return Err(errno::ENOENT),
            (Some(Node::Dir(_)), false) => return Err(errno::EISDIR),
            (Some(Node::File(_)), true) => return Err(errno::ENOTDIR),
            (Some(Node::Dir(m)), true) if !m.is_empty() => return Err(errno::ENOTEMPTY),
            _ => {}
        }
        map.remove(name);
        Ok(Out::Unit)
    }

    fn rename(&mut self, src: &Path, dst: &Path) -> Outcome {
        if src.is_empty() || dst.is_empty() {
            return Err(errno::EINVAL);
        }
        let (s, d) = (comps(src), comps(dst));
        walk(&self.root, &s[..s.len() - 1])?;
        walk(&self.root, &d[..d.len() - 1])?;
        self.parent_dir(&s)?;
        let src_node = match walk(&self.root, &s[..s.len() - 1])? {
            Node::Dir(map) => map.get(&s[s.len() - 1]).ok_or(errno::ENOENT)?.clone(),
            Node::File(_) => unreachable!(),
        };
        self.parent_dir(&d)?;
        let dst_node = match walk(&self.root, &d[..d.len() - 1])? {
            Node::Dir(map) => map.get(&d[d.len() - 1]).cloned(),
            Node::File(_) => unreachable!(),
        };
        if dst_node.is_some() && s == d {
            return Ok(Out::Unit);
        }
        match (&src_node, &dst_node) {
            (Node::Dir(_), Some(Node::File(_))) => return Err(errno::ENOTDIR),
            (Node::File(_), Some(Node::Dir(_))) => return Err(errno::EISDIR),
            (Node::Dir(_), Some(Node::Dir(m))) if !m.is_empty() => return Err(errno::ENOTEMPTY),
            _ => {}
        }
        let (sp, dp) = (&s[..s.len() - 1], &d[..d.len() - 1]);
        if matches!(src_node, Node::Dir(_)) && sp != dp && dp.starts_with(&s) {
            return Err(errno::EINVAL);
        }
        dir_map(walk_mut(&mut self.root, sp)).remove(&s[s.len() - 1]);
        dir_map(walk_mut(&mut self.root, dp)).insert(d[d.len() - 1].clone(), src_node);
        Ok(Out::Unit)
    }
}

/// The states a write split into chunks passes through between its chunks (none for any
/// other operation, or a write that fits one transaction).
pub fn chunk_states(model: &Model, op: &Op, chunk_bytes: u64) -> Vec<Node> {
    let mut states = Vec::new();
    if let Op::Write { offset, len, .. } = op {
        let end = offset + u64::from(*len);
        let mut cut_at = (offset / chunk_bytes + 1) * chunk_bytes;
        while cut_at < end {
            let mut partial = model.clone();
            if partial
                .apply_cut(op, Some((cut_at - offset) as usize))
                .is_ok()
            {
                states.push(partial.root);
            }
            cut_at += chunk_bytes;
        }
    }
    states
}

/// The states the in-flight operation may leave: unchanged, complete, or (a write) any prefix
/// of its chunks.
pub fn in_flight_states(model: &Model, op: &Op, chunk_bytes: u64) -> Vec<Node> {
    let mut states = vec![model.root.clone()];
    states.extend(chunk_states(model, op, chunk_bytes));
    let mut full = model.clone();
    if full.apply(op).is_ok() {
        states.push(full.root);
    }
    states
}

/// A short description of a tree: each path with its kind, size and a checksum of its bytes.
pub fn summary(node: &Node) -> String {
    fn walk(node: &Node, prefix: &str, out: &mut Vec<String>) {
        match node {
            Node::File(bytes) => {
                let sum = bytes.iter().fold(0u64, |acc, &b| {
                    acc.wrapping_mul(31).wrapping_add(u64::from(b))
                });
                out.push(format!("{prefix}:{}:{sum:x}", bytes.len()));
            }
            Node::Dir(map) => {
                out.push(format!("{prefix}/"));
                for (name, child) in map {
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
