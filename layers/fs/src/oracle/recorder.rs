//! The oracle's recorder: runs operations on a real [`Fs`] and on the model side by side,
//! remembers every state a crash may legally leave, and checks a recovered file system against
//! them.

use super::model::{
    chunk_states, comps, in_flight_states, pattern, summary, Model, Node, Op, Out, Outcome, Path,
    MAX_DEPTH,
};
use crate::check_invariants;
use crate::error::FsError;
use crate::format::{Ino, Kind, ROOT_INO};
use crate::fs::Fs;
use crate::store::TxStore;
use std::collections::BTreeMap;

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
