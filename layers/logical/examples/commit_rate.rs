//! Durable commit rate of the logical disk on an image file next to the raw floor
//! (pwrite + fdatasync of the same number of blocks), one thread, in one directory.
//! `cargo run --release -p txdisk-logical --example commit_rate -- [DIR] [COMMITS] [BLOCKS]`

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;
use txdisk_disk::{Block, FileDisk};
use txdisk_log::LogOptions;
use txdisk_logical::LogicalDisk;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = tempfile::tempdir_in(args.get(1).map_or(".", |s| s.as_str()))?;
    let commits: u64 = args.get(2).map_or(Ok(2000), |s| s.parse())?;
    let blocks: u64 = args.get(3).map_or(Ok(1), |s| s.parse())?;

    let floor_path = dir.path().join("floor.img");
    let floor = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&floor_path)?;
    floor.write_all_at(&vec![0u8; 4096 * 4096], 0)?;
    floor.sync_all()?;
    let block = Block::filled(7);
    let start = Instant::now();
    for index in 0..commits {
        for offset in 0..=blocks {
            floor.write_all_at(
                block.as_bytes(),
                ((index * (blocks + 1) + offset) % 4000) * 4096,
            )?;
        }
        floor.sync_data()?;
    }
    let floor_rate = commits as f64 / start.elapsed().as_secs_f64();

    let image = FileDisk::create(dir.path().join("txdisk.img"), 3 + 1024 + 4096)?;
    LogicalDisk::format(&image, 1024)?;
    let disk = LogicalDisk::open(Arc::new(image), LogOptions::default())?;
    let start = Instant::now();
    for index in 0..commits {
        let mut tx = disk.begin();
        for offset in 0..blocks {
            tx.write((index * blocks + offset) % 4096, &block)?;
        }
        tx.commit()?;
    }
    let rate = commits as f64 / start.elapsed().as_secs_f64();
    let stats = disk.stats();
    println!("floor   {floor_rate:>9.0} commits/s ({blocks} data blocks + 1 header block, fdatasync each)");
    println!(
        "txdisk  {rate:>9.0} commits/s  = {:.2} x floor; {} flushes, {} installs for {} commits",
        rate / floor_rate,
        stats.flushes,
        stats.installs,
        stats.commits
    );
    Ok(())
}
