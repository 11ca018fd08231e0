//! Crash safety on a MemStore: random operation sequences with fsyncs, a crash scheduled at a
//! store call (every call for some seeds, a spread of calls for the rest), recovery keeping a
//! random prefix of the unflushed commits; then the invariant checker must pass and the tree
//! must equal the model after some prefix of the completed operations that includes every one
//! before the last fsync (or, for a write cut between chunks, a prefix of its chunks).

mod common;

use common::{dump, run_fs_errno, Model, Node, Op, Path};
use std::sync::Arc;
use txdisk_disk::rng::SplitMix64;
use txdisk_fs::{check_invariants, Fs, FsOptions, MemStore, MkfsOptions, ROOT_INO};

/// 24 blocks per transaction: writes of more than 18 blocks are split into chunks.
const MAX_TX_BLOCKS: usize = 24;

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

fn workload(seed: u64, len: usize) -> Vec<Op> {
    let mut gen = Gen {
        rng: SplitMix64::new(seed),
        known: Vec::new(),
        dirs: vec![Vec::new()],
    };
    (0..len).map(|_| gen.op()).collect()
}

/// The states a write split into chunks passes through between its chunks (none for any
/// other operation, or a write that fits one transaction).
fn chunk_states(model: &Model, op: &Op, chunk_bytes: u64) -> Vec<Node> {
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
fn in_flight_states(model: &Model, op: &Op, chunk_bytes: u64) -> Vec<Node> {
    let mut states = vec![model.root.clone()];
    states.extend(chunk_states(model, op, chunk_bytes));
    let mut full = model.clone();
    if full.apply(op).is_ok() {
        states.push(full.root);
    }
    states
}

/// A short description of a tree: each path with its kind, size and a checksum of its bytes.
fn summary(node: &Node) -> String {
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

struct Run {
    /// Store calls the workload made (when it did not crash).
    calls: u64,
}

/// Runs `ops` with a crash at store call `crash_at` (counted from after mkfs), recovers with a
/// random prefix of the unflushed commits, and checks the oracle.
fn run(seed: u64, ops: &[Op], crash_at: Option<u64>, sync_every_op: bool) -> Result<Run, String> {
    let store = Arc::new(MemStore::new(1024, MAX_TX_BLOCKS));
    let options = MkfsOptions {
        inode_count: Some(64),
    };
    drop(Fs::mkfs(Arc::clone(&store), &options).map_err(|e| format!("mkfs: {e}"))?);
    let fs = Fs::open(Arc::clone(&store), FsOptions { sync_every_op })
        .map_err(|e| format!("open: {e}"))?;
    let chunk_bytes = fs.write_chunk_bytes();
    let start_calls = store.ops();
    if let Some(k) = crash_at {
        store.crash_after_ops(k);
    }
    let mut model = Model::default();
    let mut snapshots = vec![model.root.clone()];
    let mut durable_from = 0;
    let mut in_flight = None;
    for (step, op) in ops.iter().enumerate() {
        let found = run_fs_errno(&fs, op);
        if store.is_crashed() {
            in_flight = Some(in_flight_states(&model, op, chunk_bytes));
            break;
        }
        // A completed write that was split may still be cut between its chunks by a crash
        // before the next flush: those states sit between this snapshot and the next.
        snapshots.extend(chunk_states(&model, op, chunk_bytes));
        let expected = model.apply(op);
        if expected != found {
            return Err(format!(
                "step {step} {op:?}: model {expected:?}, file system {found:?}"
            ));
        }
        snapshots.push(model.root.clone());
        if sync_every_op || matches!(op, Op::Fsync) {
            durable_from = snapshots.len() - 1;
        }
    }
    let calls = store.ops() - start_calls;
    drop(fs);
    let pending = store.pending_commits() as u64;
    let mut rng = SplitMix64::new(seed ^ crash_at.unwrap_or(u64::MAX));
    store.restart(rng.below(pending + 1) as usize);
    let fs =
        Fs::open(Arc::clone(&store), FsOptions::default()).map_err(|e| format!("reopen: {e}"))?;
    check_invariants(&store).map_err(|v| format!("after recovery: {v}"))?;
    let tree = dump(&fs).map_err(|e| format!("dump: {e}"))?;
    let mut allowed: Vec<Node> = snapshots[durable_from..].to_vec();
    allowed.extend(in_flight.unwrap_or_default());
    if !allowed.contains(&tree) {
        let listed: Vec<String> = allowed.iter().map(summary).collect();
        return Err(format!(
            "recovered tree {} is none of the {} allowed states (durable from operation {durable_from}): {listed:?}",
            summary(&tree),
            allowed.len()
        ));
    }
    // The recovered file system keeps working.
    let dir = fs
        .mkdir(ROOT_INO, "after-crash")
        .map_err(|e| format!("mkdir after recovery: {e}"))?;
    let file = fs
        .create(dir, "f")
        .map_err(|e| format!("create after recovery: {e}"))?;
    fs.write(file, 5000, &[1; 70_000])
        .map_err(|e| format!("write after recovery: {e}"))?;
    check_invariants(&store).map_err(|v| format!("after using the recovered fs: {v}"))?;
    Ok(Run { calls })
}

fn check(seed: u64, ops: &[Op], crash_at: Option<u64>, sync_every_op: bool) -> Run {
    match run(seed, ops, crash_at, sync_every_op) {
        Ok(run) => run,
        Err(message) => panic!(
            "seed {seed}, crash at store call {crash_at:?}, sync_every_op {sync_every_op}: {message}\nops: {ops:?}"
        ),
    }
}

#[test]
fn every_crash_point_of_a_few_workloads_recovers_to_a_prefix() {
    let mut crashes = 0;
    for seed in 0..4 {
        let ops = workload(seed, 30);
        let total = check(seed, &ops, None, false).calls;
        for k in 0..=total {
            check(seed, &ops, Some(k), false);
            crashes += 1;
        }
    }
    eprintln!("{crashes} crash points checked");
    assert!(
        crashes > 400,
        "the workloads make too few store calls to mean much: {crashes}"
    );
}

#[test]
fn sampled_crash_points_of_many_workloads_recover_to_a_prefix() {
    for seed in 100..160 {
        let ops = workload(seed, 40);
        let total = check(seed, &ops, None, false).calls;
        let mut rng = SplitMix64::new(seed);
        for _ in 0..20 {
            check(seed, &ops, Some(rng.below(total + 1)), false);
        }
    }
}

#[test]
fn with_durable_operations_every_completed_operation_survives() {
    for seed in 200..230 {
        let ops = workload(seed, 30);
        let total = check(seed, &ops, None, true).calls;
        let mut rng = SplitMix64::new(seed);
        for _ in 0..20 {
            check(seed, &ops, Some(rng.below(total + 1)), true);
        }
    }
}

#[test]
fn a_crash_drops_unflushed_operations_and_keeps_fsynced_ones() {
    let store = Arc::new(MemStore::new(1024, MAX_TX_BLOCKS));
    let fs = Fs::mkfs(
        Arc::clone(&store),
        &MkfsOptions {
            inode_count: Some(64),
        },
    )
    .expect("mkfs");
    fs.create(ROOT_INO, "kept").expect("create");
    fs.fsync().expect("fsync");
    fs.create(ROOT_INO, "maybe").expect("create");
    drop(fs);
    store.restart(0);
    let fs = Fs::open(Arc::clone(&store), FsOptions::default()).expect("reopen");
    let names: Vec<String> = fs
        .readdir(ROOT_INO)
        .expect("readdir")
        .iter()
        .map(|e| e.name_lossy())
        .collect();
    assert_eq!(
        names,
        vec!["kept".to_string()],
        "the unflushed create is dropped, the fsynced one kept"
    );
    check_invariants(&store).expect("clean");
}
