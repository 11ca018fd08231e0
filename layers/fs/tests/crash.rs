//! Crash safety on a MemStore: random operation sequences with fsyncs, a crash scheduled at a
//! store call (every call for some seeds, a spread of calls for the rest), recovery keeping a
//! random prefix of the unflushed commits; then the invariant checker must pass and the tree
//! must equal the model after some prefix of the completed operations that includes every one
//! before the last fsync (or, for a write cut between chunks, a prefix of its chunks). The
//! oracle is `txdisk_fs::oracle`, which the crash-point fuzzer uses too.

use std::sync::Arc;
use txdisk_disk::rng::SplitMix64;
use txdisk_fs::oracle::{workload, Op, OracleError, Recorder};
use txdisk_fs::{check_invariants, Clock, Fs, FsOptions, MemStore, MkfsOptions, ROOT_INO};

/// 36 blocks per transaction: writes of more than 30 blocks are split into chunks.
const MAX_TX_BLOCKS: usize = 36;

/// Runs `ops` with a crash at store call `crash_at` (counted from after mkfs), recovers with a
/// random prefix of the unflushed commits, and checks the oracle. Returns the store calls the
/// workload made.
fn run(seed: u64, ops: &[Op], crash_at: Option<u64>, sync_every_op: bool) -> Result<u64, String> {
    let store = Arc::new(MemStore::new(1024, MAX_TX_BLOCKS));
    let options = MkfsOptions {
        inode_count: Some(64),
        ..MkfsOptions::default()
    };
    drop(Fs::mkfs(Arc::clone(&store), &options).map_err(|e| format!("mkfs: {e}"))?);
    let fs = Fs::open(
        Arc::clone(&store),
        FsOptions {
            sync_every_op,
            clock: Clock::manual(0),
        },
    )
    .map_err(|e| format!("open: {e}"))?;
    let mut recorder = Recorder::new(&fs, sync_every_op).map_err(|e| e.to_string())?;
    let start_calls = store.ops();
    if let Some(k) = crash_at {
        store.crash_after_ops(k);
    }
    for op in ops {
        match recorder.run(&fs, op) {
            Ok(()) => {}
            Err(OracleError::StoreFailed { .. }) if store.is_crashed() => break,
            Err(error) => return Err(error.to_string()),
        }
    }
    let calls = store.ops() - start_calls;
    drop(fs);
    let pending = store.pending_commits() as u64;
    let mut rng = SplitMix64::new(seed ^ crash_at.unwrap_or(u64::MAX));
    store.restart(rng.below(pending + 1) as usize);
    let fs =
        Fs::open(Arc::clone(&store), FsOptions::default()).map_err(|e| format!("reopen: {e}"))?;
    recorder.check_recovered(&fs).map_err(|e| e.to_string())?;
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
    Ok(calls)
}

fn check(seed: u64, ops: &[Op], crash_at: Option<u64>, sync_every_op: bool) -> u64 {
    match run(seed, ops, crash_at, sync_every_op) {
        Ok(calls) => calls,
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
        let total = check(seed, &ops, None, false);
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
        let total = check(seed, &ops, None, false);
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
        let total = check(seed, &ops, None, true);
        let mut rng = SplitMix64::new(seed);
        for _ in 0..20 {
            check(seed, &ops, Some(rng.below(total + 1)), true);
        }
    }
}

#[test]
fn the_oracle_rejects_a_lost_fsync() {
    // A store that loses a flushed operation must be caught: run a create and an fsync, then
    // recover a store that never saw them.
    let store = Arc::new(MemStore::new(1024, MAX_TX_BLOCKS));
    let manual = FsOptions {
        clock: Clock::manual(0),
        ..FsOptions::default()
    };
    let fs =
        Fs::mkfs_with(Arc::clone(&store), &MkfsOptions::default(), manual.clone()).expect("mkfs");
    let mut recorder = Recorder::new(&fs, false).expect("recorder");
    recorder.run(&fs, &Op::Create(vec![0])).expect("create");
    recorder.run(&fs, &Op::Fsync).expect("fsync");
    let fresh = Fs::mkfs_with(
        MemStore::new(1024, MAX_TX_BLOCKS),
        &MkfsOptions::default(),
        manual,
    )
    .expect("mkfs");
    let error = recorder
        .check_recovered(&fresh)
        .expect_err("the fsynced create is missing");
    assert!(matches!(error, OracleError::Recovery(_)), "{error}");
    recorder
        .check_recovered(&fs)
        .expect("the real state is allowed");
}

#[test]
fn a_crash_drops_unflushed_operations_and_keeps_fsynced_ones() {
    let store = Arc::new(MemStore::new(1024, MAX_TX_BLOCKS));
    let fs = Fs::mkfs(Arc::clone(&store), &MkfsOptions::default()).expect("mkfs");
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
    assert_eq!(names, vec!["kept".to_string()]);
    check_invariants(&store).expect("clean");
}

#[test]
fn model_driven_operations_fit_one_transaction_and_recover() {
    // The generator a fuzzer uses one operation at a time: every write stays inside one chunk,
    // so each operation commits at most one transaction.
    let store = Arc::new(MemStore::new(1024, MAX_TX_BLOCKS));
    let fs = Fs::mkfs_with(
        Arc::clone(&store),
        &MkfsOptions {
            inode_count: Some(64),
            ..MkfsOptions::default()
        },
        FsOptions {
            clock: Clock::manual(0),
            ..FsOptions::default()
        },
    )
    .expect("mkfs");
    let chunk_bytes = fs.write_chunk_bytes();
    let mut recorder = Recorder::new(&fs, false).expect("recorder");
    let mut model = txdisk_fs::oracle::Model::default();
    let mut rng = SplitMix64::new(7);
    let mut writes = 0;
    for _ in 0..300 {
        let op = txdisk_fs::oracle::random_op(&mut rng, &model, chunk_bytes);
        if let Op::Write { offset, len, .. } = op {
            assert_eq!(
                offset / chunk_bytes,
                (offset + u64::from(len).max(1) - 1) / chunk_bytes
            );
            writes += 1;
        }
        let _ = model.apply(&op, txdisk_fs::oracle::op_time(recorder.completed() as u64));
        recorder
            .run(&fs, &op)
            .unwrap_or_else(|e| panic!("{op:?}: {e}"));
    }
    assert!(writes > 30);
    assert!(recorder.completed() == 300);
    drop(fs);
    store.restart(store.pending_commits() / 2);
    let fs = Fs::open(Arc::clone(&store), FsOptions::default()).expect("reopen");
    recorder.check_recovered(&fs).expect("a prefix");
}
