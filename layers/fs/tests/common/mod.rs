//! Shared by the tests: an in-memory model of the file system (a tree of byte vectors), a
//! path-level operation language, and the same operations run against [`Fs`].

#![allow(dead_code)]

use std::collections::BTreeMap;
use txdisk_fs::{errno, Fs, FsError, Ino, Kind, TxStore, ROOT_INO};

/// Component names the generated operations use.
pub const NAMES: [&[u8]; 3] = [b"a", b"b", b"c"];

/// A path as component indices into [`NAMES`]; empty is the root.
pub type Path = Vec<u8>;

#[derive(Clone, Debug)]
pub enum Op {
    Create(Path),
    Mkdir(Path),
    Write {
        path: Path,
        offset: u64,
        len: u32,
        seed: u8,
    },
    Read {
        path: Path,
        offset: u64,
        len: u32,
    },
    Truncate(Path, u64),
    Unlink(Path),
    Rmdir(Path),
    Rename(Path, Path),
    Readdir(Path),
    Stat(Path),
    Fsync,
}

/// What an operation returned (directory sizes are not modelled, so a directory's is 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    Unit,
    Data(Vec<u8>),
    Stat {
        kind: Kind,
        size_bytes: u64,
        nlink: u32,
    },
    Entries(Vec<(Vec<u8>, Kind)>),
}

pub type Outcome = Result<Out, i32>;

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

fn comps(path: &[u8]) -> Vec<Vec<u8>> {
    path.iter()
        .map(|&i| NAMES[usize::from(i) % NAMES.len()].to_vec())
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    Dir(BTreeMap<Vec<u8>, Node>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
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
            Node::Dir(map) => node = map.get_mut(c).expect("model: path checked"),
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
    /// Applies `op` (a write only up to `cut` bytes when given, as a crash between chunks
    /// leaves it).
    pub fn apply(&mut self, op: &Op) -> Outcome {
        self.apply_cut(op, None)
    }

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

fn code(error: FsError) -> i32 {
    error.errno()
}

fn resolve<S: TxStore>(fs: &Fs<S>, c: &[Vec<u8>]) -> Result<Ino, FsError> {
    let mut ino = ROOT_INO;
    for name in c {
        ino = fs.lookup(ino, name)?;
    }
    Ok(ino)
}

/// Runs `op` on the file system, with the model's path conventions.
pub fn run_fs<S: TxStore>(fs: &Fs<S>, op: &Op) -> Result<Out, FsError> {
    let split = |p: &Path| -> Result<(Ino, Vec<u8>), FsError> {
        let c = comps(p);
        let (last, parent) = c.split_last().ok_or(FsError::InvalidArgument("root"))?;
        Ok((resolve(fs, parent)?, last.clone()))
    };
    Ok(match op {
        Op::Create(p) => split(p)
            .and_then(|(dir, name)| fs.create(dir, name))
            .map(|_| Out::Unit)?,
        Op::Mkdir(p) => split(p)
            .and_then(|(dir, name)| fs.mkdir(dir, name))
            .map(|_| Out::Unit)?,
        Op::Write {
            path,
            offset,
            len,
            seed,
        } => {
            let ino = resolve(fs, &comps(path))?;
            fs.write(ino, *offset, &pattern(*len, *seed))?;
            Out::Unit
        }
        Op::Read { path, offset, len } => {
            let ino = resolve(fs, &comps(path))?;
            Out::Data(fs.read(ino, *offset, *len as usize)?)
        }
        Op::Truncate(path, size) => {
            fs.truncate(resolve(fs, &comps(path))?, *size)?;
            Out::Unit
        }
        Op::Unlink(p) => split(p)
            .and_then(|(dir, name)| fs.unlink(dir, name))
            .map(|_| Out::Unit)?,
        Op::Rmdir(p) => split(p)
            .and_then(|(dir, name)| fs.rmdir(dir, name))
            .map(|_| Out::Unit)?,
        Op::Rename(src, dst) => {
            let (sp, sn) = split(src)?;
            let (dp, dn) = split(dst)?;
            fs.rename(sp, sn, dp, dn)?;
            Out::Unit
        }
        Op::Readdir(p) => {
            let mut entries: Vec<_> = fs
                .readdir(resolve(fs, &comps(p))?)?
                .into_iter()
                .map(|e| (e.name, e.kind))
                .collect();
            entries.sort();
            Out::Entries(entries)
        }
        Op::Stat(p) => {
            let stat = fs.stat(resolve(fs, &comps(p))?)?;
            let size_bytes = if stat.kind == Kind::Dir {
                0
            } else {
                stat.size_bytes
            };
            Out::Stat {
                kind: stat.kind,
                size_bytes,
                nlink: stat.nlink,
            }
        }
        Op::Fsync => {
            fs.fsync()?;
            Out::Unit
        }
    })
}

/// Like [`run_fs`], errors as errno values.
pub fn run_fs_errno<S: TxStore>(fs: &Fs<S>, op: &Op) -> Outcome {
    run_fs(fs, op).map_err(code)
}

/// The whole tree of the file system as a model node (bounded by the inodes it holds).
pub fn dump<S: TxStore>(fs: &Fs<S>) -> Result<Node, FsError> {
    dump_dir(fs, ROOT_INO, 0)
}

fn dump_dir<S: TxStore>(fs: &Fs<S>, dir: Ino, depth: u32) -> Result<Node, FsError> {
    assert!(
        depth < 64,
        "test: directory tree deeper than any test builds"
    );
    let mut map = BTreeMap::new();
    for entry in fs.readdir(dir)? {
        let node = match entry.kind {
            Kind::Dir => dump_dir(fs, entry.ino, depth + 1)?,
            Kind::File => {
                let size = fs.stat(entry.ino)?.size_bytes;
                Node::File(fs.read(entry.ino, 0, size as usize)?)
            }
        };
        map.insert(entry.name, node);
    }
    Ok(Node::Dir(map))
}
