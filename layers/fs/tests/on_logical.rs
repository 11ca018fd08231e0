//! The file system on the real stack: a LogicalDisk over a SimDisk (the logical disk is a
//! `TxStore`). It works, splits writes to the log's transaction limit, and survives a
//! crash at sampled disk operations: recovery of the log, then the invariant checker and the
//! prefix oracle (`txdisk_fs::oracle`) on the recovered file system, torn writes included.

use std::sync::Arc;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Disk, SimDisk};
use txdisk_fs::oracle::{workload, OracleError, Recorder};
use txdisk_fs::{check_invariants, Clock, Fs, FsOptions, MkfsOptions, ROOT_INO};
use txdisk_log::LogOptions;
use txdisk_logical::LogicalDisk;

/// The logical disk is the store (`impl TxStore for LogicalDisk`).
type OnLogical = LogicalDisk;

const DISK_BLOCKS: u64 = 2048;
const LOG_BLOCKS: u64 = 128;

fn options() -> LogOptions {
    // No background installer: one seed, one run.
    LogOptions {
        background_installer: false,
        ..LogOptions::default()
    }
}

fn open(sim: &Arc<SimDisk>) -> Result<OnLogical, String> {
    let disk: Arc<dyn Disk> = Arc::clone(sim) as Arc<dyn Disk>;
    LogicalDisk::open(disk, options()).map_err(|e| format!("logical open: {e}"))
}

/// A formatted stack with an empty, durable file system.
fn fresh() -> (Arc<SimDisk>, Fs<OnLogical>) {
    let sim = Arc::new(SimDisk::new(DISK_BLOCKS));
    LogicalDisk::format(&*sim, LOG_BLOCKS).expect("format the log");
    let store = open(&sim).expect("open");
    let fs = Fs::mkfs(
        store,
        &MkfsOptions {
            inode_count: Some(64),
            ..MkfsOptions::default()
        },
    )
    .expect("mkfs");
    (sim, fs)
}

#[test]
fn works_on_the_logical_disk() {
    let (_sim, fs) = fresh();
    let dir = fs.mkdir(ROOT_INO, "d").expect("mkdir");
    let ino = fs.create(dir, "f").expect("create");
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
    assert!(
        fs.write_chunk_bytes() < data.len() as u64,
        "the write must be split: chunk {} bytes, log allows {} blocks",
        fs.write_chunk_bytes(),
        fs.store().max_tx_blocks()
    );
    fs.write(ino, 1234, &data).expect("write");
    fs.fsync().expect("fsync");
    assert!(fs.read(ino, 1234, data.len()).expect("read") == data);
    fs.rename(dir, "f", ROOT_INO, "g").expect("rename");
    let report = check_invariants(fs.store()).expect("consistent");
    assert_eq!(report.file_bytes, 1234 + 600_000);
}

/// How a run is set up: which workload, where the disk crashes (counted from after mkfs),
/// torn sector writes or not, and whether every operation is durable on return.
#[derive(Clone, Copy, Debug)]
struct Case {
    seed: u64,
    crash_at: Option<u64>,
    torn: bool,
    sync_every_op: bool,
}

/// Runs a case, then recovers a random crash state of the disk and checks the oracle.
/// Returns the disk operations the workload made.
fn run(case: Case) -> Result<u64, String> {
    let ops = workload(case.seed, 25);
    let (sim, fs) = fresh();
    let fs = Fs::open(
        fs.into_store(),
        FsOptions {
            sync_every_op: case.sync_every_op,
            clock: Clock::manual(0),
        },
    )
    .map_err(|e| format!("open: {e}"))?;
    let mut recorder = Recorder::new(&fs, case.sync_every_op).map_err(|e| e.to_string())?;
    let start = sim.ops();
    if let Some(k) = case.crash_at {
        sim.schedule_crash(start + k);
    }
    for op in &ops {
        match recorder.run(&fs, op) {
            Ok(()) => {}
            Err(OracleError::StoreFailed { .. }) if sim.is_crashed() => break,
            Err(error) => return Err(error.to_string()),
        }
    }
    let calls = sim.ops() - start;
    drop(fs);
    let mut rng = SplitMix64::new(case.seed ^ case.crash_at.unwrap_or(u64::MAX));
    let image = sim.random_crash_state(&mut rng, case.torn);
    let recovered = Arc::new(SimDisk::from_image(&image));
    let fs = Fs::open(open(&recovered)?, FsOptions::default())
        .map_err(|e| format!("fs open after recovery: {e}"))?;
    recorder.check_recovered(&fs).map_err(|e| e.to_string())?;
    Ok(calls)
}

fn check(case: Case) -> u64 {
    run(case).unwrap_or_else(|message| panic!("{case:?}: {message}"))
}

/// Crashes at every disk operation of each seed's workload.
fn every_crash_point(seeds: std::ops::Range<u64>, sync_every_op: bool) -> u64 {
    let mut crashes = 0;
    for seed in seeds {
        let base = Case {
            seed,
            crash_at: None,
            torn: seed % 2 == 1,
            sync_every_op,
        };
        let total = check(base);
        for k in 0..=total {
            check(Case {
                crash_at: Some(k),
                ..base
            });
            crashes += 1;
        }
    }
    crashes
}

#[test]
fn every_disk_crash_point_recovers_to_a_prefix() {
    let crashes = every_crash_point(0..16, false);
    eprintln!("{crashes} crash points on the logical disk checked");
    assert!(
        crashes > 200,
        "too few disk operations to mean much: {crashes}"
    );
}

#[test]
fn with_durable_operations_every_disk_crash_point_keeps_completed_ones() {
    let crashes = every_crash_point(100..110, true);
    eprintln!("{crashes} crash points on the logical disk checked (durable operations)");
    assert!(
        crashes > 200,
        "too few disk operations to mean much: {crashes}"
    );
}

/// The long run (`cargo test -p txdisk-fs --test on_logical -- --ignored`).
#[test]
#[ignore = "long run: a few hundred workloads, every disk crash point"]
fn long_run_every_disk_crash_point() {
    let deferred = every_crash_point(1_000..1_400, false);
    let durable = every_crash_point(2_000..2_100, true);
    eprintln!("{deferred} + {durable} crash points on the logical disk checked");
}
