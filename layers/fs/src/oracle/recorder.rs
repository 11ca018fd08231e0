//! A crash oracle for the file system, for tests and the crash-point fuzzer: a random
//! workload generator, an in-memory model of the tree ([`Model`]), the same operations run on
//! an [`Fs`] ([`run_op`]), and a [`Recorder`] that runs a workload on a file system whose store
//! may crash at any call, remembers every state recovery may legally produce, and checks a
//! recovered file system against them ([`Recorder::check_recovered`]).
//!
//! The allowed states after a crash are the model after some prefix of the completed
//! operations that includes every one before the last successful fsync (every completed one
//! with `sync_every_op`), plus what the operation in flight may leave: nothing, all of it, or
//! (a write split into chunks) a prefix of its chunks. A completed split write that was not yet
//! flushed may likewise be cut between chunks.

use crate::error::FsError;
use crate::format::{Ino, Kind, ROOT_INO};
use crate::fs::Fs;
use crate::store::TxStore;
use crate::{check_invariants, errno};
use std::collections::BTreeMap;
use txdisk_disk::rng::SplitMix64;

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

fn resolve<S: TxStore>(fs: &Fs<S>, c: &[Vec<u8>]) -> Result<Ino, FsError> {
    let mut ino = ROOT_INO;
    for name in c {
        ino = fs.lookup(ino, name)?;
    }
    Ok(ino)
}

/// Runs `op` on the file system, with the model's path conventions.
pub fn run_op<S: TxStore>(fs: &Fs<S>, op: &Op) -> Result<Out, FsError> {
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

/// Like [`run_op`], errors as errno values.
pub fn run_op_errno<S: TxStore>(fs: &Fs<S>, op: &Op) -> Outcome {
    run_op(fs, op).map_err(|error| error.errno())
}

/// The whole tree of the file system as a model node (depth bounded by [`MAX_DEPTH`]).
pub fn dump<S: TxStore>(fs: &Fs<S>) -> Result<Node, FsError> {
    dump_dir(fs, ROOT_INO, 0)
}

fn dump_dir<S: TxStore>(fs: &Fs<S>, dir: Ino, depth: u32) -> Result<Node, FsError> {
    if depth >= MAX_DEPTH {
        // Deeper than any workload builds: a cycle in a damaged tree.
        return Err(FsError::corrupt(
            "directory depth within the oracle's bound",
            MAX_DEPTH,
            depth,
        ));
    }
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

/// Generates operations, naming paths created earlier in the sequence most of the time so
/// that most operations act on something (and mostly short paths otherwise).
struct Gen {
    rng: SplitMix64,
    known: Vec<Path>,
    dirs: Vec<Path>,
}

impl Gen {
    fn path(&mut self) -> Path {
        if !self.known.is_empty() && self.rng.chance(2, 3) {
            return self.known[self.rng.below(self.known.len() as u64) as usize].clone();
        }
        let len = match self.rng.below(20) {
            0..=10 => 1,
            11..=17 => 2,
            _ => 3,
        };
        (0..len).map(|_| self.rng.below(3) as u8).collect()
    }

    /// A name in a directory made earlier (or the root).
    fn new_path(&mut self, is_dir: bool) -> Path {
        let mut path = self.dirs[self.rng.below(self.dirs.len() as u64) as usize].clone();
        path.push(self.rng.below(3) as u8);
        if is_dir && path.len() < 3 {
            self.dirs.push(path.clone());
        }
        self.known.push(path.clone());
        path
    }

    fn op(&mut self) -> Op {
        match self.rng.below(13) {
            0 | 1 => Op::Create(self.new_path(false)),
            2 => Op::Mkdir(self.new_path(true)),
            3..=5 => Op::Write {
                path: self.path(),
                offset: self.rng.below(30_000),
                len: if self.rng.chance(1, 5) {
                    100_000
                } else {
                    self.rng.below(9_000) as u32
                },
                seed: self.rng.below(256) as u8,
            },
            6 => Op::Truncate(self.path(), self.rng.below(20_000)),
            7 => Op::Unlink(self.path()),
            8 => Op::Rmdir(self.path()),
            9 | 10 => {
                let from = self.path();
                Op::Rename(from, self.new_path(false))
            }
            _ => Op::Fsync,
        }
    }
}

/// A workload of `len` operations, deterministic from `seed`.
pub fn workload(seed: u64, len: usize) -> Vec<Op> {
    let mut gen = Gen {
        rng: SplitMix64::new(seed),
        known: Vec::new(),
        dirs: vec![Vec::new()],
    };
    (0..len).map(|_| gen.op()).collect()
}

/// One random operation on the state `model` describes (naming its files and directories
/// most of the time), that runs as at most one transaction: a write never crosses a multiple
/// of `write_chunk_bytes` ([`Fs::write_chunk_bytes`]). For a fuzzer that generates one
/// operation at a time from its model; `rng` advances by one draw.
pub fn random_op(rng: &mut SplitMix64, model: &Model, write_chunk_bytes: u64) -> Op {
    let mut gen = Gen {
        rng: rng.fork(),
        known: Vec::new(),
        dirs: vec![Vec::new()],
    };
    collect_paths(&model.root, &mut Vec::new(), &mut gen);
    let mut op = gen.op();
    if let Op::Write { offset, len, .. } = &mut op {
        let room = write_chunk_bytes - *offset % write_chunk_bytes;
        *len = (u64::from(*len).min(room)) as u32;
    }
    op
}

/// Adds every path under `node` to the generator's known paths (directories also as places
/// for new names).
fn collect_paths(node: &Node, prefix: &mut Path, gen: &mut Gen) {
    let Node::Dir(map) = node else { return };
    for (name, child) in map {
        let Some(index) = NAMES.iter().position(|known| *known == name.as_slice()) else {
            continue;
        };
        prefix.push(index as u8);
        gen.known.push(prefix.clone());
        if matches!(child, Node::Dir(_)) {
            if prefix.len() < 3 {
                gen.dirs.push(prefix.clone());
            }
            collect_paths(child, prefix, gen);
        }
        prefix.pop();
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

/// Runs a workload on a file system whose store may crash, and remembers the states a
/// recovery may produce.
pub struct Recorder {
    model: Model,
    /// States from the last durable one on, in order.
    allowed: Vec<Node>,
    in_flight: Vec<Node>,
    chunk_bytes: u64,
    sync_every_op: bool,
    completed: usize,
    stopped: bool,
}

/// Why [`Recorder::run`] stopped or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OracleError {
    /// The store failed (a crash): the operation is in flight; recover and check.
    #[error("the store failed during operation {step}: {source}")]
    StoreFailed {
        step: usize,
        #[source]
        source: FsError,
    },
    /// The file system and the model disagree (a bug).
    #[error("operation {step} {op}: model {expected}, file system {found}")]
    Mismatch {
        step: usize,
        op: String,
        expected: String,
        found: String,
    },
    /// A recovered file system is in none of the allowed states, or fails its checker.
    #[error("after recovery: {0}")]
    Recovery(String),
}

impl Recorder {
    /// For a file system `fs` freshly made (its empty state durable).
    pub fn new<S: TxStore>(fs: &Fs<S>, sync_every_op: bool) -> Recorder {
        let model = Model::default();
        Recorder {
            allowed: vec![model.root.clone()],
            model,
            in_flight: Vec::new(),
            chunk_bytes: fs.write_chunk_bytes(),
            sync_every_op,
            completed: 0,
            stopped: false,
        }
    }

    /// Operations completed so far.
    pub fn completed(&self) -> usize {
        self.completed
    }

    /// Runs one operation and checks its result against the model. A store failure stops
    /// the recorder (the operation is in flight); no operation may run after it.
    pub fn run<S: TxStore>(&mut self, fs: &Fs<S>, op: &Op) -> Result<(), OracleError> {
        assert!(
            !self.stopped,
            "oracle: operation run after the store failed"
        );
        let step = self.completed;
        let found = run_op(fs, op);
        if let Err(error @ FsError::Store(_)) = found {
            self.in_flight = in_flight_states(&self.model, op, self.chunk_bytes);
            self.stopped = true;
            return Err(OracleError::StoreFailed {
                step,
                source: error,
            });
        }
        self.allowed
            .extend(chunk_states(&self.model, op, self.chunk_bytes));
        let expected = self.model.apply(op);
        let found = found.map_err(|error| error.errno());
        if expected != found {
            return Err(OracleError::Mismatch {
                step,
                op: format!("{op:?}"),
                expected: format!("{expected:?}"),
                found: format!("{found:?}"),
            });
        }
        if self.sync_every_op || matches!(op, Op::Fsync) {
            // Everything before is durable: earlier states are no longer allowed.
            self.allowed.clear();
        }
        self.allowed.push(self.model.root.clone());
        self.completed += 1;
        Ok(())
    }

    /// Checks a file system recovered after the store failed (or after the workload ended):
    /// the invariant checker passes and the tree is one of the allowed states.
    pub fn check_recovered<S: TxStore>(&self, fs: &Fs<S>) -> Result<(), OracleError> {
        check_invariants(fs.store()).map_err(|v| OracleError::Recovery(v.to_string()))?;
        let tree = dump(fs).map_err(|e| OracleError::Recovery(format!("reading the tree: {e}")))?;
        if self.allowed.contains(&tree) || self.in_flight.contains(&tree) {
            return Ok(());
        }
        let listed: Vec<String> = self
            .allowed
            .iter()
            .chain(&self.in_flight)
            .map(summary)
            .collect();
        Err(OracleError::Recovery(format!(
            "tree {} is none of the {} allowed states after {} completed operations: {listed:?}",
            summary(&tree),
            listed.len(),
            self.completed
        )))
    }
}
