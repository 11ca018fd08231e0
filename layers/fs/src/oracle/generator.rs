//! The oracle's workload generator: random operations, deterministic from a seed, naming paths
//! made earlier most of the time so that most operations act on something.

use super::model::{Model, Node, Op, Path, NAMES, SYMLINK_TARGETS};
use crate::fs::RenameMode;
use txdisk_disk::rng::SplitMix64;

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
        match self.rng.below(22) {
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
            11 => Op::Symlink(
                self.new_path(false),
                self.rng.below(SYMLINK_TARGETS.len() as u64) as u8,
            ),
            12 => {
                let from = self.path();
                Op::Link(from, self.new_path(false))
            }
            13 => Op::Mkfifo(self.new_path(false)),
            14 => Op::Chmod(
                self.path(),
                [0o600, 0o640, 0o4755, 0o1777][self.rng.below(4) as usize],
            ),
            15 => Op::Chown(
                self.path(),
                self.rng.below(3) as u32 * 1000,
                self.rng.below(3) as u32,
            ),
            16 => Op::Utimens(
                self.path(),
                self.rng.below(2_000_000_000) as i64 - 100,
                self.rng.below(2_000_000_000) as i64,
            ),
            17 => {
                let mode = if self.rng.chance(1, 2) {
                    RenameMode::Exchange
                } else {
                    RenameMode::NoReplace
                };
                let (from, to) = (self.path(), self.path());
                Op::RenameWith(from, to, mode)
            }
            18 => Op::Stat(self.path()),
            19 => Op::Readlink(self.path()),
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
/// of `write_chunk_bytes` ([`Fs::write_chunk_bytes`](crate::Fs::write_chunk_bytes)). For a fuzzer that generates one
/// operation at a time from its model; `rng` advances by one draw.
pub fn random_op(rng: &mut SplitMix64, model: &Model, write_chunk_bytes: u64) -> Op {
    let mut gen = Gen {
        rng: rng.fork(),
        known: Vec::new(),
        dirs: vec![Vec::new()],
    };
    collect_paths(&model.tree(), &mut Vec::new(), &mut gen);
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
    let Node::Dir { entries, .. } = node else {
        return;
    };
    for (name, child) in entries {
        let Some(index) = NAMES.iter().position(|known| *known == name.as_slice()) else {
            continue;
        };
        prefix.push(index as u8);
        gen.known.push(prefix.clone());
        if matches!(child, Node::Dir { .. }) {
            if prefix.len() < 3 {
                gen.dirs.push(prefix.clone());
            }
            collect_paths(child, prefix, gen);
        }
        prefix.pop();
    }
}
