//! Every failure the log can meet is an error value, never a panic, a hang or a partial write:
//! transactions too large for the log, addresses outside the data region, a disk that fails
//! for good at every possible operation, a flush that fails at every possible sync (the log is
//! then poisoned and reopening recovers exactly what was durable), and disks that are not images
//! (zeros, random bytes, wrong magic, bad checksum, future version, truncated, no header).
//! Each run is on a `SimDisk`, under a watchdog that turns a hang into a failure.

mod common;

use common::*;
use std::sync::{mpsc, Arc};
use std::time::Duration;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Block, Disk, DiskError, DiskImage, SimDisk};
use txdisk_log::tooling::{matches_prefix, Contents, Superblock, FORMAT_VERSION, LOG_START};
use txdisk_log::{log_recover, Log, LogError, LogOptions};

fn options() -> LogOptions {
    LogOptions {
        background_installer: false,
        ..LogOptions::default()
    }
}

/// Runs `f` on its own thread and fails the test if it has not returned after a minute: the
/// limit is not a performance bound, only a way to report a hang instead of blocking the suite.
fn within_watchdog<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, wait) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = done.send(f());
    });
    match wait.recv_timeout(Duration::from_secs(60)) {
        Ok(value) => {
            worker
                .join()
                .expect("the worker sent its value before returning");
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("{what}: the worker ended without a value"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after 60 s (a hang)"),
    }
}

fn open_fresh(size_blocks: u64, log_blocks: u64) -> (Arc<SimDisk>, Log) {
    let sim = Arc::new(SimDisk::from_image(&formatted(
        size_blocks,
        log_blocks,
        0x00e7_7035,
    )));
    let log = Log::open(sim.clone(), options()).expect("open a fresh image");
    (sim, log)
}

// ---- transactions that cannot be logged ----

#[test]
fn transaction_larger_than_the_log() {
    for (log_blocks, max_blocks) in [(8u64, 7usize), (600, 598)] {
        let (sim, log) = open_fresh(LOG_START + log_blocks + 700, log_blocks);
        assert_eq!(
            log.max_tx_blocks(),
            max_blocks,
            "log of {log_blocks} blocks"
        );
        let writes_before = sim.stats().writes;
        let mut tx = log.begin();
        for addr in 0..=max_blocks as u64 {
            tx.write(addr, &value(addr, 0x51)).expect("buffered write");
        }
        match tx.commit() {
            Err(LogError::TransactionTooLarge {
                blocks,
                max_blocks: max,
            }) => {
                assert_eq!(blocks, max_blocks + 1);
                assert_eq!(max, max_blocks);
            }
            other => panic!("log of {log_blocks}: expected TransactionTooLarge, got {other:?}"),
        }
        let mut tx = log.begin();
        for addr in 0..=max_blocks as u64 {
            tx.write(addr, &value(addr, 0x52)).expect("buffered write");
        }
        assert!(matches!(
            tx.commit_nosync(),
            Err(LogError::TransactionTooLarge { .. })
        ));
        assert_eq!(
            sim.stats().writes,
            writes_before,
            "a refused transaction wrote to the disk"
        );
        assert!(
            log.read(0).expect("read").is_zero(),
            "a refused transaction is visible"
        );
        // The log is still usable, and the largest transaction that fits commits whole.
        let mut tx = log.begin();
        for addr in 0..max_blocks as u64 {
            tx.write(addr, &value(addr, 0x53)).expect("buffered write");
        }
        tx.commit().expect("the largest transaction that fits");
        drop(log);
        let contents = recovered_contents(&sim.durable_image());
        assert_eq!(contents.len(), max_blocks, "log of {log_blocks}");
        assert!(contents
            .iter()
            .all(|(addr, block)| *block == value(*addr, 0x53)));
    }
}

#[test]
fn address_outside_the_data_region() {
    let (sim, log) = open_fresh(LOG_START + 8 + 16, 8);
    let data_blocks = log.data_blocks();
    assert_eq!(data_blocks, 16);
    for addr in [data_blocks, data_blocks + 1, u64::MAX] {
        let mut tx = log.begin();
        match tx.write(addr, &Block::filled(1)) {
            Err(LogError::AddressOutOfRange {
                addr: found,
                data_blocks: limit,
            }) => {
                assert_eq!(found, addr);
                assert_eq!(limit, data_blocks);
            }
            other => panic!("write at {addr}: expected AddressOutOfRange, got {other:?}"),
        }
        assert!(
            matches!(log.read(addr), Err(LogError::AddressOutOfRange { .. })),
            "read at {addr}"
        );
        assert!(
            matches!(tx.read(addr), Err(LogError::AddressOutOfRange { .. })),
            "tx read at {addr}"
        );
        // A record with one good and one bad address is refused whole: no partial write.
        let result = log.append(vec![(0, Block::filled(2)), (addr, Block::filled(3))]);
        assert!(
            matches!(result, Err(LogError::AddressOutOfRange { .. })),
            "append with {addr}: {result:?}"
        );
    }
    assert!(
        log.read(0).expect("read").is_zero(),
        "the refused record's good address changed"
    );
    assert_eq!(
        log.seqs().0,
        log.seqs().1,
        "a refused record was given a sequence number"
    );
    let last = data_blocks - 1;
    log.atomic_two_write(0, &value(0, 9), last, &value(last, 9))
        .expect("in range");
    drop(log);
    let contents = recovered_contents(&sim.durable_image());
    assert_eq!(contents.len(), 2);
}

// ---- a disk that fails for good ----

/// What happened to one call of the workload.
#[derive(Debug)]
enum Outcome {
    Ok,
    Err(LogError),
}

fn workload() -> Vec<Step> {
    vec![
        Step::Commit {
            writes: vec![(0, 1), (1, 1)],
            durable: true,
        },
        Step::Commit {
            writes: vec![(2, 2)],
            durable: false,
        },
        Step::Commit {
            writes: vec![(0, 3)],
            durable: false,
        },
        Step::Flush,
        Step::Install,
        Step::Commit {
            writes: vec![(3, 4), (4, 4), (5, 4)],
            durable: true,
        },
        Step::Commit {
            writes: vec![(1, 5)],
            durable: true,
        },
        Step::Commit {
            writes: vec![(6, 6), (7, 6)],
            durable: true,
        },
        Step::Install,
        Step::Commit {
            writes: vec![(2, 7)],
            durable: true,
        },
    ]
}

/// Runs every step even after a failure (unlike `run_steps`), returning each step's outcome
/// and the progress made; `None` if the log did not open.
fn run_all(disk: Arc<dyn Disk>, steps: &[Step]) -> (Option<Vec<Outcome>>, Progress) {
    let mut progress = Progress::default();
    let Ok(log) = Log::open(disk, options()) else {
        return (None, progress);
    };
    let mut outcomes = Vec::new();
    for step in steps {
        let result = run_step(&log, step, &mut progress);
        outcomes.push(match result {
            Ok(()) => Outcome::Ok,
            Err(error) => Outcome::Err(error),
        });
    }
    (Some(outcomes), progress)
}

/// After the first failed step, no step that promises durability (durable commit, flush,
/// installation) may return Ok.
fn assert_no_ok_after_failure(steps: &[Step], outcomes: &[Outcome], context: &str) {
    let Some(first) = outcomes.iter().position(|o| matches!(o, Outcome::Err(_))) else {
        panic!("{context}: no step failed");
    };
    for (index, (step, outcome)) in steps.iter().zip(outcomes).enumerate().skip(first + 1) {
        let promises_durability = !matches!(step, Step::Commit { durable: false, .. });
        if promises_durability {
            assert!(
                matches!(outcome, Outcome::Err(_)),
                "{context}: step {index} ({step:?}) returned Ok after step {first} failed"
            );
        }
    }
}

#[test]
fn fail_stop_at_every_operation() {
    let base = formatted(LOG_START + 8 + 10, 8, 0xfa11);
    let steps = workload();
    let states = prefix_states(&Contents::new(), &steps);
    let total_ops = {
        let sim = Arc::new(SimDisk::from_image(&base));
        let (outcomes, _) = run_all(sim.clone(), &steps);
        assert!(
            outcomes
                .expect("opens")
                .iter()
                .all(|o| matches!(o, Outcome::Ok)),
            "the clean run failed"
        );
        sim.ops()
    };
    for fail_op in 0..total_ops {
        let context = format!("fail-stop at op {fail_op} of {total_ops}");
        let sim = Arc::new(SimDisk::from_image(&base));
        sim.schedule_fail_stop(fail_op);
        let (steps_run, sim_run) = (steps.clone(), sim.clone());
        let (outcomes, progress) = within_watchdog(&context, move || run_all(sim_run, &steps_run));
        assert!(sim.is_failed(), "{context}: the disk did not fail");
        if let Some(outcomes) = outcomes {
            assert_no_ok_after_failure(&steps, &outcomes, &context);
        }
        // What a failed disk leaves is one of the states a crash may leave: recover it.
        let image = sim.durable_image();
        check_recovery(
            &image,
            &states[..=progress.commits_called],
            progress.durable_commits,
            &context,
        );
    }
}

#[test]
fn fail_stop_under_concurrent_committers() {
    let sim = Arc::new(SimDisk::from_image(&formatted(
        LOG_START + 64 + 256,
        64,
        0xfa12,
    )));
    let log = Arc::new(Log::open(sim.clone(), LogOptions::default()).expect("open"));
    let (sim_run, log_run) = (sim.clone(), log.clone());
    let errors = within_watchdog("concurrent fail-stop", move || {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4u64)
                .map(|thread| {
                    let log = &log_run;
                    scope.spawn(move || {
                        let mut errors = 0;
                        for i in 0..200u64 {
                            let addr = thread * 64 + i % 64;
                            let mut tx = log.begin();
                            tx.write(addr, &value(addr, i as u8)).expect("in range");
                            if tx.commit().is_err() {
                                errors += 1;
                            }
                        }
                        errors
                    })
                })
                .collect();
            while sim_run.ops() < 300 {
                std::thread::yield_now();
            }
            sim_run.fail_now();
            workers
                .into_iter()
                .map(|w| w.join().expect("a committer panicked"))
                .sum::<u64>()
        })
    });
    assert!(sim.is_failed());
    assert!(errors > 0, "no commit saw the failure");
    let mut tx = log.begin();
    tx.write(0, &Block::filled(1)).expect("in range");
    assert!(
        tx.commit().is_err(),
        "a commit after the failure returned Ok"
    );
    assert!(
        log.flush().is_err(),
        "a flush after the failure returned Ok"
    );
    let log = Arc::try_unwrap(log).unwrap_or_else(|_| panic!("the log is still shared"));
    within_watchdog("drop after fail-stop", move || drop(log));
}

// ---- a flush that fails ----

/// The operation numbers of every `sync` in a clean run of `steps`.
fn sync_ops(base: &DiskImage, steps: &[Step]) -> Vec<u64> {
    let sim = Arc::new(SimDisk::from_image(base));
    let (outcomes, _) = run_all(sim.clone(), steps);
    assert!(outcomes
        .expect("opens")
        .iter()
        .all(|o| matches!(o, Outcome::Ok)));
    let trace = sim.trace();
    (0..trace.len() as u64)
        .filter(|&op| trace[op as usize] == txdisk_disk::OpKind::Sync)
        .collect()
}

#[test]
fn failed_flush_poisons_and_loses_only_the_unflushed() {
    let base = formatted(LOG_START + 8 + 10, 8, 0x5f1d);
    let steps = workload();
    let states = prefix_states(&Contents::new(), &steps);
    let syncs = sync_ops(&base, &steps);
    assert!(syncs.len() > 8, "too few syncs to sweep: {syncs:?}");
    let mut poisoned_runs = 0;
    for &sync_op in &syncs {
        let context = format!("sync failure at op {sync_op}");
        let sim = Arc::new(SimDisk::from_image(&base));
        sim.schedule_sync_failure(sync_op);
        let (steps_run, sim_run) = (steps.clone(), sim.clone());
        let (outcomes, progress) = within_watchdog(&context, move || run_all(sim_run, &steps_run));
        assert_eq!(
            sim.stats().failed_syncs,
            1,
            "{context}: the scheduled sync did not run"
        );
        let Some(outcomes) = outcomes else { continue };
        assert_no_ok_after_failure(&steps, &outcomes, &context);
        let first = outcomes
            .iter()
            .position(|o| matches!(o, Outcome::Err(_)))
            .expect("checked above");
        for outcome in &outcomes[first + 1..] {
            if let Outcome::Err(error) = outcome {
                assert!(
                    matches!(error, LogError::Poisoned { .. }),
                    "{context}: after the failure: {error}"
                );
            }
        }
        poisoned_runs += 1;
        // The disk still works: reopening it recovers exactly the last durable state.
        let reopened =
            Log::open(sim.clone(), options()).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
        drop(reopened);
        let contents = read_contents(&*sim);
        if let Err(violation) = matches_prefix(
            &contents,
            &states[progress.durable_commits..=progress.durable_commits],
            0,
        ) {
            panic!(
                "{context} (durable commits {}): {violation}",
                progress.durable_commits
            );
        }
    }
    assert!(
        poisoned_runs > 6,
        "only {poisoned_runs} runs reached the failing sync after open"
    );
}

#[test]
fn failed_commit_flush_leaves_the_transaction_out() {
    let (sim, log) = open_fresh(LOG_START + 8 + 10, 8);
    log.atomic_two_write(0, &value(0, 0xa), 1, &value(1, 0xa))
        .expect("first commit");
    // The next commit writes its descriptor and data block, then syncs: fail that sync.
    sim.schedule_sync_failure(sim.ops() + 2);
    let mut tx = log.begin();
    tx.write(2, &value(2, 0xb)).expect("in range");
    match tx.commit() {
        Err(LogError::Poisoned { cause }) => {
            assert!(cause.contains("sync failed"), "cause: {cause}")
        }
        other => panic!("expected Poisoned from the failed flush, got {other:?}"),
    }
    assert_eq!(sim.stats().failed_syncs, 1);
    let mut tx = log.begin();
    tx.write(3, &value(3, 0xc)).expect("buffered");
    assert!(matches!(tx.commit(), Err(LogError::Poisoned { .. })));
    assert!(
        matches!(log.begin().commit(), Err(LogError::Poisoned { .. })),
        "a durable commit, even of a read-only transaction, claims nothing on a poisoned log"
    );
    let mut tx = log.begin();
    tx.write(3, &value(3, 0xd)).expect("buffered");
    assert!(matches!(tx.commit_nosync(), Err(LogError::Poisoned { .. })));
    assert!(matches!(log.flush(), Err(LogError::Poisoned { .. })));
    assert!(matches!(log.install(), Err(LogError::Poisoned { .. })));
    assert!(matches!(log.read(0), Err(LogError::Poisoned { .. })));
    assert!(matches!(log.close(), Err(LogError::Poisoned { .. })));
    let log = Log::open(sim.clone(), options()).expect("reopen");
    assert_eq!(log.read(0).expect("read"), value(0, 0xa));
    assert_eq!(log.read(1).expect("read"), value(1, 0xa));
    assert!(
        log.read(2).expect("read").is_zero(),
        "the transaction whose flush failed is present"
    );
    assert!(log.read(3).expect("read").is_zero());
}

// ---- disks that are not images ----

/// Opens `image` and returns the error, checking that nothing was written to it.
fn open_error(image: &DiskImage) -> LogError {
    let sim = Arc::new(SimDisk::from_image(image));
    match Log::open(sim.clone(), options()) {
        Ok(_) => panic!("a damaged image opened"),
        Err(error) => {
            assert_eq!(
                sim.stats().writes,
                0,
                "opening a bad image wrote to it ({error})"
            );
            assert!(
                log_recover(&*sim).is_err(),
                "log_recover accepted what open refused"
            );
            error
        }
    }
}

#[test]
fn zeros_and_random_bytes_are_not_images() {
    let error = open_error(&DiskImage::zeroed(64));
    assert!(matches!(error, LogError::NotAnImage { .. }), "{error}");
    assert!(error.to_string().contains("magic"), "{error}");
    let seed = 0x7a4d;
    let mut rng = SplitMix64::new(seed);
    let mut image = DiskImage::zeroed(64);
    for addr in 0..64 {
        let bytes: Vec<u8> = (0..4096).map(|_| rng.below(256) as u8).collect();
        image
            .set_block(addr, Block::from_bytes(&bytes).expect("4096 bytes"))
            .expect("in range");
    }
    let error = open_error(&image);
    assert!(
        matches!(error, LogError::NotAnImage { .. }),
        "seed {seed:#x}: {error}"
    );
    let error = open_error(&DiskImage::zeroed(2));
    assert!(matches!(error, LogError::NotAnImage { .. }), "{error}");
}

fn with_block0(image: &DiskImage, edit: impl FnOnce(&mut [u8; 4096])) -> DiskImage {
    let mut block = image.block(0).expect("block 0").clone();
    edit(block.as_bytes_mut());
    let mut image = image.clone();
    image.set_block(0, block).expect("block 0");
    image
}

#[test]
fn damaged_superblocks_are_refused() {
    let good = formatted(64, 16, 0x600d);
    let error = open_error(&with_block0(&good, |b| b[0] ^= 0x20));
    assert!(
        matches!(error, LogError::NotAnImage { .. }),
        "wrong magic: {error}"
    );
    let error = open_error(&with_block0(&good, |b| b[56] ^= 1));
    match error {
        LogError::SuperblockChecksum { expected, found } => assert_ne!(expected, found),
        other => panic!("flipped salt bit: expected SuperblockChecksum, got {other}"),
    }
    let sb = Superblock::layout(64, 16, 0x600d).expect("layout");
    let future = Superblock {
        version: FORMAT_VERSION + 1,
        ..sb
    };
    let error = open_error(&with_block0(&good, |b| {
        b.copy_from_slice(future.encode().as_bytes())
    }));
    match error {
        LogError::UnsupportedVersion { found, supported } => {
            assert_eq!(found, FORMAT_VERSION + 1);
            assert_eq!(supported, FORMAT_VERSION);
        }
        other => panic!("future version: expected UnsupportedVersion, got {other}"),
    }
    let skewed = Superblock {
        data_start: sb.data_start + 1,
        ..sb
    };
    let error = open_error(&with_block0(&good, |b| {
        b.copy_from_slice(skewed.encode().as_bytes())
    }));
    assert!(
        matches!(error, LogError::BadGeometry { .. }),
        "inconsistent geometry: {error}"
    );
}

#[test]
fn truncated_image_is_refused() {
    let good = formatted(64, 16, 0x7c);
    let mut truncated = DiskImage::zeroed(40);
    for addr in 0..40 {
        truncated
            .set_block(addr, good.block(addr).expect("in range").clone())
            .expect("in range");
    }
    let error = open_error(&truncated);
    match &error {
        LogError::BadGeometry { reason } => {
            assert!(reason.contains("64 blocks"), "{reason}");
            assert!(reason.contains("40"), "{reason}");
        }
        other => panic!("truncated: expected BadGeometry, got {other}"),
    }
}

#[test]
fn image_without_a_valid_header_is_refused() {
    let mut image = formatted(64, 16, 0x4ead);
    image.set_block(1, Block::filled(0x11)).expect("slot 1");
    image.set_block(2, Block::zeroed()).expect("slot 2");
    let error = open_error(&image);
    assert!(matches!(error, LogError::NoValidHeader), "{error}");
    // A header of another image (another salt) does not validate here either.
    let other = formatted(64, 16, 0x4eae);
    image
        .set_block(1, other.block(1).expect("slot 1").clone())
        .expect("slot 1");
    assert!(matches!(open_error(&image), LogError::NoValidHeader));
}

#[test]
fn bad_geometry_at_format() {
    let sim = SimDisk::new(20);
    assert!(
        matches!(Log::format(&sim, 3, 1), Err(LogError::BadGeometry { .. })),
        "log below the minimum"
    );
    assert!(
        matches!(Log::format(&sim, 17, 1), Err(LogError::BadGeometry { .. })),
        "no data region left"
    );
    assert_eq!(sim.stats().writes, 0, "a refused format wrote to the disk");
    let failed = SimDisk::new(20);
    failed.fail_now();
    assert!(matches!(
        Log::format(&failed, 8, 1),
        Err(LogError::Disk(DiskError::Failed))
    ));
}
