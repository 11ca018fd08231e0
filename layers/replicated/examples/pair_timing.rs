//! Measures, on two `FileDisk`s in a temporary directory:
//!
//! * the cost of a pair `sync` against one disk's `sync` (the pair flushes both concurrently),
//!   and against flushing the two one after the other;
//! * the full resync after a crash of a pair of `--mib` MiB (default 1024): once with d2 blank
//!   (every block copied), once with the replicas equal (every block compared, one copied).
//!
//! Run: `cargo run --release -p txdisk-replicated --example pair_timing [-- --mib 1024 --syncs 200]`
//! (`TMPDIR` chooses the file system).

use std::time::Instant;
use txdisk_disk::{Block, Disk, FileDisk, BLOCK_SIZE};
use txdisk_replicated::{
    member_blocks_for, FormatOptions, Phase, ReplicatedDisk, DEFAULT_CHUNK_BLOCKS, RESERVED_BLOCKS,
};

/// Blocks of each member for a pair of `data_blocks` (metadata, data, bitmap).
fn member_blocks(data_blocks: u64) -> Result<u64, Box<dyn std::error::Error>> {
    member_blocks_for(data_blocks, DEFAULT_CHUNK_BLOCKS).ok_or_else(|| "no such layout".into())
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let syncs = arg("--syncs", 200);
    let mib = arg("--mib", 1024);
    sync_cost(dir.path(), syncs)?;
    resync_time(dir.path(), mib)?;
    Ok(())
}

fn per_sync_us(started: Instant, count: u64) -> f64 {
    started.elapsed().as_secs_f64() * 1e6 / count as f64
}

/// Writes every block once and syncs, so that the timed syncs allocate nothing in the file.
fn preallocated(
    path: std::path::PathBuf,
    blocks: u64,
) -> Result<FileDisk, Box<dyn std::error::Error>> {
    let disk = FileDisk::create(path, blocks)?;
    for addr in 0..blocks {
        disk.write(addr, &Block::filled(0xff))?;
    }
    disk.sync()?;
    Ok(disk)
}

fn median_us(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// One block written, then a sync, `count` times, the three set-ups interleaved so that they
/// share the device's moods: one disk; two disks synced in turn; the pair (synced concurrently).
/// Reports the median latency of each.
fn sync_cost(dir: &std::path::Path, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let blocks = member_blocks(1024)?;
    let single = preallocated(dir.join("single.img"), blocks)?;
    let (s1, s2) = (
        preallocated(dir.join("s1.img"), blocks)?,
        preallocated(dir.join("s2.img"), blocks)?,
    );
    let (d1, d2) = (
        preallocated(dir.join("p1.img"), blocks)?,
        preallocated(dir.join("p2.img"), blocks)?,
    );
    let options = FormatOptions {
        pair_id: Some(1),
        assume_equal: false,
        ..Default::default()
    };
    ReplicatedDisk::format(&d1, &d2, &options)?;
    let pair = ReplicatedDisk::open(d1, d2, &mut |_| {})?;
    let (mut one, mut serial, mut paired) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..count {
        let block = Block::filled(i as u8);
        let started = Instant::now();
        single.write(i % 1024, &block)?;
        single.sync()?;
        one.push(per_sync_us(started, 1));
        let started = Instant::now();
        s1.write(i % 1024, &block)?;
        s2.write(i % 1024, &block)?;
        s1.sync()?;
        s2.sync()?;
        serial.push(per_sync_us(started, 1));
        let started = Instant::now();
        pair.write(i % 1024, &block)?;
        pair.sync()?;
        paired.push(per_sync_us(started, 1));
    }
    pair.close()?;
    let (one, serial, paired) = (median_us(one), median_us(serial), median_us(paired));
    println!(
        "write+sync of one block, median of {count}: one disk {one:.0} us, two disks synced in turn {serial:.0} us ({:.2}x), the pair {paired:.0} us ({:.2}x one disk)",
        serial / one,
        paired / one
    );
    Ok(())
}

fn resync_time(dir: &std::path::Path, mib: u64) -> Result<(), Box<dyn std::error::Error>> {
    let data_blocks = mib * 1024 * 1024 / BLOCK_SIZE as u64;
    let blocks = member_blocks(data_blocks)?;
    let (p1, p2) = (dir.join("r1.img"), dir.join("r2.img"));
    let d1 = FileDisk::create(&p1, blocks)?;
    let d2 = FileDisk::create(&p2, blocks)?;
    // d1 full of data, d2 blank, formatted Dirty: the first open copies every block.
    for addr in 0..data_blocks {
        let mut block = Block::filled((addr % 251) as u8 + 1);
        block.as_bytes_mut()[..8].copy_from_slice(&addr.to_le_bytes());
        d1.write(addr + RESERVED_BLOCKS, &block)?;
    }
    d1.sync()?;
    ReplicatedDisk::format(
        &d1,
        &d2,
        &FormatOptions {
            pair_id: Some(2),
            assume_equal: false,
            ..Default::default()
        },
    )?;
    let mut last = None;
    let started = Instant::now();
    let pair = ReplicatedDisk::open(d1, d2, &mut |p| last = Some(p))?;
    report(
        mib,
        "d2 blank, every block copied",
        started,
        last.map(|p| p.phase),
    );
    // A crash after one write: both replicas equal but the pair dirty.
    pair.write(7, &Block::filled(0xab))?;
    drop(pair);
    let started = Instant::now();
    let pair = ReplicatedDisk::open(FileDisk::open(&p1)?, FileDisk::open(&p2)?, &mut |p| {
        last = Some(p)
    })?;
    report(
        mib,
        "replicas equal, every block compared",
        started,
        last.map(|p| p.phase),
    );
    pair.close()?;
    let started = Instant::now();
    let pair = ReplicatedDisk::open(FileDisk::open(&p1)?, FileDisk::open(&p2)?, &mut |_| {})?;
    println!(
        "open after a clean close: {:.3} s",
        started.elapsed().as_secs_f64()
    );
    pair.close()?;
    Ok(())
}

fn report(mib: u64, what: &str, started: Instant, phase: Option<Phase>) {
    let seconds = started.elapsed().as_secs_f64();
    println!("resync of a {mib} MiB pair after a crash ({what}, phase {phase:?}): {seconds:.2} s, {:.0} MiB/s", mib as f64 / seconds);
}
