//! CPU cost of a deferred (`commit_nosync`) 1-block transaction on the logical disk over an
//! in-memory disk whose writes and syncs cost nothing but a copy, with a flush every 64.
//! `cargo run --release -p txdisk-logical --example nosync_cpu -- [COMMITS]`

use std::sync::Arc;
use std::time::Instant;
use txdisk_disk::{Addr, Block, Disk, Result};
use txdisk_log::LogOptions;
use txdisk_logical::LogicalDisk;

/// Blocks in memory; `sync` does nothing.
struct MemDisk(txdisk_disk::sync::RwLock<Vec<Block>>);

impl Disk for MemDisk {
    fn size_blocks(&self) -> u64 {
        self.0.read().len() as u64
    }
    fn read(&self, addr: Addr) -> Result<Block> {
        self.check_addr(addr)?;
        Ok(self.0.read()[addr as usize].clone())
    }
    fn write(&self, addr: Addr, block: &Block) -> Result<()> {
        self.check_addr(addr)?;
        self.0.write()[addr as usize] = block.clone();
        Ok(())
    }
    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let commits: u64 = std::env::args().nth(1).map_or(Ok(200_000), |s| s.parse())?;
    let disk = Arc::new(MemDisk(txdisk_disk::sync::RwLock::new(vec![
        Block::zeroed();
        3 + 4096 + 8192
    ])));
    LogicalDisk::format(&*disk, 4096)?;
    let logical = LogicalDisk::open(disk, LogOptions::default())?;
    let block = Block::filled(9);
    let start = Instant::now();
    for index in 0..commits {
        let mut tx = logical.begin();
        tx.write(index % 8192, &block)?;
        tx.commit_nosync()?;
        if index % 64 == 63 {
            logical.flush()?;
        }
    }
    let per_commit_us = start.elapsed().as_secs_f64() * 1e6 / commits as f64;
    println!(
        "{per_commit_us:.2} µs per deferred 1-block commit (flush every 64), {commits} commits"
    );
    Ok(())
}
