//! The oracle's recorder: runs operations on a real [`Fs`] and on the model side by side,
//! remembers every state a crash may legally leave, and checks a recovered file system against
//! them.

use super::model::{
    chunk_states, comps, in_flight_states, op_time, pattern, summary, Links, Meta, Model, Node, Op,
    Out, Outcome, Path, MAX_DEPTH, SYMLINK_TARGETS,
};
use crate::check_invariants;
use crate::error::FsError;
use crate::format::{Ino, Kind, Timestamp, ROOT_INO};
use crate::fs::{Fs, NewInode, SetAttr, Stat};
use crate::store::TxStore;
use std::collections::{BTreeMap, HashMap};

fn resolve<S: TxStore>(fs: &Fs<S>, c: &[Vec<u8>]) -> Result<Ino, FsError> {
    let mut ino = ROOT_INO;
    for name in c {
        ino = fs.lookup(ino, name)?;
    }
    Ok(ino)
}

fn meta_of(stat: &Stat) -> Meta {
    Meta {
        perm: stat.perm,
        uid: stat.uid,
        gid: stat.gid,
        atime: stat.atime,
        mtime: stat.mtime,
        ctime: stat.ctime,
    }
}

/// Runs `op` on the file system at time `now` (its clock must be manual: the model stores
/// the same times), with the model's path conventions.
pub fn run_op<S: TxStore>(fs: &Fs<S>, op: &Op, now: Timestamp) -> Result<Out, FsError> {
    assert!(
        fs.clock().is_manual(),
        "oracle: the file system's clock must be manual for its times to be predictable"
    );
    fs.clock().set_time(now);
    let set = |path: &Path, change: SetAttr| -> Result<Out, FsError> {
        fs.setattr(resolve(fs, &comps(path))?, &change)?;
        Ok(Out::Unit)
    };
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
        Op::Mkfifo(p) => split(p)
            .and_then(|(dir, name)| fs.make_node(dir, name, &NewInode::new(Kind::Fifo, 0o644)))
            .map(|_| Out::Unit)?,
        Op::Symlink(p, target) => {
            let target = SYMLINK_TARGETS[usize::from(*target) % SYMLINK_TARGETS.len()];
            split(p)
                .and_then(|(dir, name)| fs.symlink(dir, name, target, 0, 0))
                .map(|_| Out::Unit)?
        }
        Op::Link(src, dst) => {
            let ino = resolve(fs, &comps(src))?;
            let (dir, name) = split(dst)?;
            fs.link(ino, dir, name)?;
            Out::Unit
        }
        Op::Readlink(path) => Out::Data(fs.readlink(resolve(fs, &comps(path))?)?),
        Op::Chmod(path, perm) => set(
            path,
            SetAttr {
                perm: Some(*perm),
                ..SetAttr::default()
            },
        )?,
        Op::Chown(path, uid, gid) => set(
            path,
            SetAttr {
                uid: Some(*uid),
                gid: Some(*gid),
                ..SetAttr::default()
            },
        )?,
        Op::Utimens(path, atime, mtime) => set(
            path,
            SetAttr {
                atime: Some(Timestamp::new(*atime, 0)),
                mtime: Some(Timestamp::new(*mtime, 0)),
                ..SetAttr::default()
            },
        )?,
        Op::RenameWith(src, dst, mode) => {
            let (sp, sn) = split(src)?;
            let (dp, dn) = split(dst)?;
            fs.rename_with(sp, sn, dp, dn, *mode)?;
            Out::Unit
        }
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
                meta: meta_of(&stat),
            }
        }
        Op::Fsync => {
            fs.fsync()?;
            Out::Unit
        }
    })
}

/// Like [`run_op`], errors as errno values.
pub fn run_op_errno<S: TxStore>(fs: &Fs<S>, op: &Op, now: Timestamp) -> Outcome {
    run_op(fs, op, now).map_err(|error| error.errno())
}

/// The whole tree of the file system as a model node (depth bounded by [`MAX_DEPTH`]); the
/// names of one inode get one link group, numbered as a walk by sorted names meets them.
pub fn dump<S: TxStore>(fs: &Fs<S>) -> Result<Node, FsError> {
    dump_dir(fs, ROOT_INO, 0, &mut HashMap::new())
}

fn dump_dir<S: TxStore>(
    fs: &Fs<S>,
    dir: Ino,
    depth: u32,
    groups: &mut HashMap<Ino, u32>,
) -> Result<Node, FsError> {
    if depth >= MAX_DEPTH {
        // Deeper than any workload builds: a cycle in a damaged tree.
        return Err(FsError::corrupt(
            "directory depth within the oracle's bound",
            MAX_DEPTH,
            depth,
        ));
    }
    let mut listed = fs.readdir(dir)?;
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let mut entries = BTreeMap::new();
    for entry in listed {
        let stat = fs.stat(entry.ino)?;
        let mut links = || {
            let group = if stat.nlink > 1 {
                let next = groups.len() as u32 + 1;
                *groups.entry(entry.ino).or_insert(next)
            } else {
                0
            };
            Links {
                nlink: stat.nlink,
                group,
            }
        };
        let meta = meta_of(&stat);
        let node = match stat.kind {
            Kind::Dir => dump_dir(fs, entry.ino, depth + 1, groups)?,
            Kind::File => Node::File {
                bytes: fs.read(entry.ino, 0, stat.size_bytes as usize)?,
                meta,
                links: links(),
            },
            Kind::Symlink => Node::Symlink {
                target: fs.readlink(entry.ino)?,
                meta,
                links: links(),
            },
            Kind::Fifo => Node::Fifo {
                meta,
                links: links(),
            },
            _ => {
                return Err(FsError::InvalidArgument(
                    "the oracle models no sockets or device nodes",
                ))
            }
        };
        entries.insert(entry.name, node);
    }
    let meta = meta_of(&fs.stat(dir)?);
    Ok(Node::Dir { entries, meta })
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

impl Recorder {
    /// The time operation `step` of the workload runs at.
    fn now(step: usize) -> Timestamp {
        op_time(step as u64)
    }
}

/// Why [`Recorder::run`] stopped or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OracleError {
    /// The store failed (a crash): the operation is in flight; recover and check.
    #[error("the store failed during operation {step}: {source}")]
    StoreFailed {
        /// The operation's number in the workload.
        step: usize,
        #[source]
        /// The store's error.
        source: FsError,
    },
    /// The file system and the model disagree (a bug).
    #[error("operation {step} {op}: model {expected}, file system {found}")]
    Mismatch {
        /// The operation's number in the workload.
        step: usize,
        /// The operation.
        op: String,
        /// What the model returned.
        expected: String,
        /// What the file system returned.
        found: String,
    },
    /// A recovered file system is in none of the allowed states, or fails its checker.
    #[error("after recovery: {0}")]
    Recovery(String),
}

impl Recorder {
    /// For a file system `fs` freshly made (its empty state durable; its clock manual).
    pub fn new<S: TxStore>(fs: &Fs<S>, sync_every_op: bool) -> Result<Recorder, OracleError> {
        let tree = dump(fs).map_err(|e| OracleError::Recovery(format!("reading the tree: {e}")))?;
        let model = Model::from_tree(&tree);
        Ok(Recorder {
            allowed: vec![tree],
            model,
            in_flight: Vec::new(),
            chunk_bytes: fs.write_chunk_bytes(),
            sync_every_op,
            completed: 0,
            stopped: false,
        })
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
        let now = Recorder::now(step);
        let found = run_op(fs, op, now);
        if let Err(error @ FsError::Store(_)) = found {
            self.in_flight = in_flight_states(&self.model, op, now, self.chunk_bytes);
            self.stopped = true;
            return Err(OracleError::StoreFailed {
                step,
                source: error,
            });
        }
        self.allowed
            .extend(chunk_states(&self.model, op, now, self.chunk_bytes));
        let expected = self.model.apply(op, now);
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
        self.allowed.push(self.model.tree());
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
