//! Group commit on a real file: 8 threads each make 300 durable one-block commits through one
//! log on a `FileDisk` in a temporary directory, with the background installer on. Committers
//! must share flushes (fewer log flushes than commits; the figure is printed), every commit must
//! be readable at once, and after dropping the log without closing it and reopening the image
//! (recovery) every committed block must be there.

use std::sync::Arc;
use txdisk_disk::{Block, FileDisk};
use txdisk_log::tooling::LOG_START;
use txdisk_log::{Log, LogOptions};

const THREADS: u64 = 8;
const COMMITS_PER_THREAD: u64 = 300;
const LOG_BLOCKS: u64 = 1024;

/// The block thread `thread` commits in its commit number `index`, at its own address.
fn payload(thread: u64, index: u64) -> (u64, Block) {
    let mut block = Block::filled(thread as u8 + 1);
    block.as_bytes_mut()[..16]
        .copy_from_slice(&[thread.to_le_bytes(), index.to_le_bytes()].concat());
    (thread * COMMITS_PER_THREAD + index, block)
}

fn commit_all(log: &Log) {
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            scope.spawn(move || {
                for index in 0..COMMITS_PER_THREAD {
                    let (addr, block) = payload(thread, index);
                    let mut tx = log.begin();
                    tx.write(addr, &block).expect("in range");
                    let seq = tx
                        .commit()
                        .unwrap_or_else(|e| panic!("thread {thread} commit {index}: {e}"));
                    assert!(
                        seq.is_some(),
                        "a one-block transaction got no sequence number"
                    );
                    let read = log
                        .read(addr)
                        .unwrap_or_else(|e| panic!("read {addr}: {e}"));
                    assert!(
                        read == block,
                        "thread {thread} commit {index}: not visible at address {addr}"
                    );
                }
            });
        }
    });
}

fn check_every_block(log: &Log, when: &str) {
    for thread in 0..THREADS {
        for index in 0..COMMITS_PER_THREAD {
            let (addr, block) = payload(thread, index);
            let found = log
                .read(addr)
                .unwrap_or_else(|e| panic!("{when}: read {addr}: {e}"));
            assert!(
                found == block,
                "{when}: thread {thread} commit {index} missing at address {addr}"
            );
        }
    }
}

#[test]
fn concurrent_durable_commits_share_flushes() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("group.img");
    let data_blocks = THREADS * COMMITS_PER_THREAD;
    let disk = Arc::new(
        FileDisk::create(&path, LOG_START + LOG_BLOCKS + data_blocks).expect("create image"),
    );
    Log::format(&*disk, LOG_BLOCKS, 0x6c0c).expect("format");
    let log = Log::open(disk.clone(), LogOptions::default()).expect("open");
    let syncs_before = disk.sync_count();
    let start = std::time::Instant::now();
    commit_all(&log);
    let elapsed = start.elapsed();
    let stats = log.stats();
    let commits = THREADS * COMMITS_PER_THREAD;
    assert_eq!(stats.commits, commits);
    let per_commit = stats.flushes as f64 / stats.commits as f64;
    println!(
        "{commits} durable commits from {THREADS} threads: {} log flushes ({per_commit:.3} per commit, {:.1} commits per flush), \
         {} records written, {} installations, {} fdatasyncs in all, {:.0} commits/s",
        stats.flushes,
        stats.commits as f64 / stats.flushes as f64,
        stats.records_written,
        stats.installs,
        disk.sync_count() - syncs_before,
        commits as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(
        stats.records_written, commits,
        "every record written exactly once"
    );
    assert!(
        stats.flushes < stats.commits,
        "no flush was shared: {} flushes for {} commits",
        stats.flushes,
        stats.commits
    );
    assert!(
        stats.installs > 0,
        "the log of {LOG_BLOCKS} blocks took {commits} records without installing"
    );
    check_every_block(&log, "before reopening");
    // Drop without `close`: what is not installed yet stays in the log for recovery. Every
    // handle goes, as in a crash (the image is locked while one is open).
    drop(log);
    drop(disk);
    let disk = Arc::new(FileDisk::open(&path).expect("reopen image"));
    let log = Log::open(disk, LogOptions::default()).expect("recover");
    println!(
        "recovery replayed {} records",
        log.recovery_report().replayed.len()
    );
    check_every_block(&log, "after recovery");
    log.close().expect("close");
}
