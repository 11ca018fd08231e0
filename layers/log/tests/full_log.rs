//! Recovery of a completely full log of realistic size: a 64 MiB log (16384 blocks) on a
//! `FileDisk` in a temporary directory is filled to the last block with committed, never
//! installed transactions (background installer off; deferred commits, a flush every 16),
//! the log is dropped without closing (a crash after the last flush), and `log_recover` is
//! timed over the image. The recovered data region must equal the model (the newest write of
//! every address); the throughput is printed, never asserted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use txdisk_disk::{Block, Disk, FileDisk, BLOCK_SIZE};
use txdisk_log::tooling::{record_len_blocks, scan_log, ScanStop, LOG_START};
use txdisk_log::{log_recover, Log, LogOptions};

const LOG_BLOCKS: u64 = 16384;
const DATA_BLOCKS: u64 = 1024;
/// 63 data blocks and one descriptor: 256 records fill the log exactly.
const TX_BLOCKS: u64 = 63;
const FLUSH_EVERY: u64 = 16;

/// The block transaction `tx` writes at `addr`.
fn payload(tx: u64, addr: u64) -> Block {
    let mut block = Block::filled((tx % 251) as u8);
    block.as_bytes_mut()[..16].copy_from_slice(&[tx.to_le_bytes(), addr.to_le_bytes()].concat());
    block
}

/// Fills the log with transactions until the next one would not fit; returns the model.
fn fill(log: &Log) -> BTreeMap<u64, Block> {
    let mut model = BTreeMap::new();
    let record_blocks = record_len_blocks(TX_BLOCKS as usize);
    let mut tx_index = 0u64;
    while log.used_log_blocks() + record_blocks <= LOG_BLOCKS {
        let first = (tx_index * 17) % DATA_BLOCKS;
        let writes: Vec<(u64, Block)> = (0..TX_BLOCKS)
            .map(|i| (first + i) % DATA_BLOCKS)
            .map(|a| (a, payload(tx_index, a)))
            .collect();
        model.extend(writes.iter().cloned());
        log.append(writes).expect("append").expect("non-empty");
        tx_index += 1;
        if tx_index % FLUSH_EVERY == 0 {
            log.flush().expect("flush");
        }
    }
    log.flush().expect("flush");
    model
}

#[test]
fn recover_a_full_64_mib_log() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("full.img");
    let disk = Arc::new(
        FileDisk::create(&path, LOG_START + LOG_BLOCKS + DATA_BLOCKS).expect("create image"),
    );
    Log::format(&*disk, LOG_BLOCKS, 0xf011).expect("format");
    let log = Log::open(
        disk.clone(),
        LogOptions {
            background_installer: false,
            ..LogOptions::default()
        },
    )
    .expect("open");
    let model = fill(&log);
    assert_eq!(
        log.used_log_blocks(),
        LOG_BLOCKS,
        "256 records of 64 blocks fill the log exactly"
    );
    let stats = log.stats();
    assert_eq!(
        stats.installs, 0,
        "nothing may be installed before the crash"
    );
    let (committed, durable) = log.seqs();
    assert_eq!(committed, durable);
    drop(log);
    drop(disk);

    let disk = FileDisk::open(&path).expect("reopen image");
    let before = scan_log(&disk, false).expect("scan");
    assert_eq!(before.records.len() as u64, stats.commits);
    assert!(
        matches!(before.stop, ScanStop::LogFull { .. }),
        "a full log must end at its own size: {}",
        before.stop
    );
    let start = Instant::now();
    let report = log_recover(&disk).expect("recover");
    let elapsed = start.elapsed();
    let mib = (LOG_BLOCKS * BLOCK_SIZE as u64) as f64 / (1024.0 * 1024.0);
    println!(
        "recovered a full log of {LOG_BLOCKS} blocks ({mib:.0} MiB, {} records, {} home blocks) in {:.3} s: \
         {:.0} blocks/s, {:.0} MB/s (page cache warm from the fill)",
        report.replayed.len(),
        report.home_blocks_written,
        elapsed.as_secs_f64(),
        LOG_BLOCKS as f64 / elapsed.as_secs_f64(),
        (LOG_BLOCKS * BLOCK_SIZE as u64) as f64 / 1e6 / elapsed.as_secs_f64()
    );
    assert_eq!(report.replayed.len() as u64, stats.commits);
    assert_eq!(report.home_blocks_written, model.len());
    assert_eq!(
        report.new_header.tail_pos,
        report.old_header.tail_pos + LOG_BLOCKS
    );
    let sb = txdisk_log::tooling::read_superblock(&disk).expect("superblock");
    for (addr, block) in &model {
        let found = disk.read(sb.data_start + addr).expect("read home block");
        assert!(
            found == *block,
            "address {addr} after recovery differs from the last committed write"
        );
    }
    let after = scan_log(&disk, false).expect("scan after recovery");
    assert!(
        after.records.is_empty(),
        "recovery left records in the log: {}",
        after.records.len()
    );
}
