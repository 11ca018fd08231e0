//! Chooses the write-intent bitmap's chunk size by measuring both of its costs, on two
//! `FileDisk`s in a temporary directory, for each chunk size:
//!
//! * **while running**: durable writes shaped like the log's — one block appended to a 16 MiB
//!   circular log area and synced, and every 64 of them an installation of 64 random home
//!   blocks across the pair, in one batch — as writes per second (a chunk whose bit is not set
//!   costs a bitmap flush: two more concurrent syncs);
//! * **after a crash**: the pair dropped without `close`, then opened again: the blocks the
//!   resync had to copy (the marked chunks) and the time to open.
//!
//! Run: `cargo run --release -p txdisk-replicated --example bitmap_chunks [-- --mib 1024 --ops 3008]`
//! (`TMPDIR` chooses the file system).

use std::time::Instant;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Block, Disk, FileDisk, BLOCK_SIZE};
use txdisk_replicated::{member_blocks_for, FormatOptions, Phase, ReplicatedDisk};

const LOG_BLOCKS: u64 = 4096;
const INSTALL_EVERY: u64 = 64;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib = arg("--mib", 1024);
    // A multiple of INSTALL_EVERY: the crash comes right after an installation, its chunks marked.
    let ops = arg("--ops", 3008);
    let data_blocks = mib * 1024 * 1024 / BLOCK_SIZE as u64;
    println!(
        "chunk KiB | durable writes/s | marked at the crash | blocks copied at open | open ms"
    );
    for chunk_blocks in [16u32, 64, 256, 1024, 4096] {
        let dir = tempfile::tempdir()?;
        let member_blocks =
            member_blocks_for(data_blocks, chunk_blocks).ok_or("no layout for that chunk")?;
        let (p1, p2) = (dir.path().join("d1.img"), dir.path().join("d2.img"));
        let (d1, d2) = (
            FileDisk::create(&p1, member_blocks)?,
            FileDisk::create(&p2, member_blocks)?,
        );
        let options = FormatOptions {
            pair_id: Some(u64::from(chunk_blocks)),
            assume_equal: true,
            chunk_blocks: Some(chunk_blocks),
        };
        ReplicatedDisk::format(&d1, &d2, &options)?;
        let pair = ReplicatedDisk::open(d1, d2, &mut |_| {})?;
        let started = Instant::now();
        run(&pair, data_blocks, ops)?;
        let per_s = ops as f64 / started.elapsed().as_secs_f64();
        let marked = pair.marked_chunks().len();
        drop(pair); // a crash, as far as the members know
        let started = Instant::now();
        let mut copied = 0;
        let reopened =
            ReplicatedDisk::open(FileDisk::open(&p1)?, FileDisk::open(&p2)?, &mut |p| {
                if p.phase == Phase::Resync {
                    copied = p.total_blocks;
                }
            })?;
        let open_ms = started.elapsed().as_secs_f64() * 1e3;
        reopened.close()?;
        println!(
            "{:>9} | {per_s:>16.0} | {marked:>19} | {copied:>21} | {open_ms:>7.1}",
            u64::from(chunk_blocks) * BLOCK_SIZE as u64 / 1024
        );
    }
    Ok(())
}

/// `ops` durable log appends, with an installation of random home blocks every
/// `INSTALL_EVERY` of them.
fn run(
    pair: &ReplicatedDisk<FileDisk>,
    data_blocks: u64,
    ops: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = SplitMix64::new(0xb17);
    let block = Block::filled(0x5a);
    for op in 0..ops {
        pair.write(op % LOG_BLOCKS, &block)?;
        pair.sync()?;
        if op % INSTALL_EVERY == INSTALL_EVERY - 1 {
            let homes: Vec<u64> = (0..INSTALL_EVERY)
                .map(|_| LOG_BLOCKS + rng.below(data_blocks - LOG_BLOCKS))
                .collect();
            let one = [&block];
            let runs: Vec<(u64, &[&Block])> =
                homes.iter().map(|addr| (*addr, one.as_slice())).collect();
            pair.write_runs(&runs)?;
            pair.sync()?;
        }
    }
    Ok(())
}
