//! Criterion micro-benchmarks of the logical disk's CPU paths: transactions and reads over an
//! in-memory disk whose writes are memory copies and whose sync costs nothing, so what is
//! measured is the processor's share of a transaction (records, checksums, version stripes,
//! installation when the log fills), apart from the device.
//!
//! `cargo bench -p txdisk-bench --bench cpu_paths`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use txdisk_disk::{Addr, Block, Disk};
use txdisk_log::LogOptions;
use txdisk_logical::LogicalDisk;

const LOG_BLOCKS: u64 = 1024;
const DATA_BLOCKS: u64 = 8192;
/// Deferred-durability commits between flushes, as in the `nosync-1blk-1thr` workload.
const FLUSH_EVERY: u64 = 64;

/// Blocks in memory; `sync` does nothing.
struct MemDisk {
    blocks: Mutex<Vec<Block>>,
}

impl MemDisk {
    fn new(size_blocks: u64) -> MemDisk {
        MemDisk {
            blocks: Mutex::new(vec![Block::zeroed(); size_blocks as usize]),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Block>> {
        self.blocks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Disk for MemDisk {
    fn size_blocks(&self) -> u64 {
        self.lock().len() as u64
    }

    fn read(&self, addr: Addr) -> txdisk_disk::Result<Block> {
        self.check_addr(addr)?;
        Ok(self.lock()[addr as usize].clone())
    }

    fn write(&self, addr: Addr, block: &Block) -> txdisk_disk::Result<()> {
        self.check_addr(addr)?;
        self.lock()[addr as usize] = block.clone();
        Ok(())
    }

    fn sync(&self) -> txdisk_disk::Result<()> {
        Ok(())
    }
}

/// A formatted, opened logical disk on a fresh in-memory disk; installation only when the log
/// fills (no background thread), so every run does the same work.
fn logical_disk() -> LogicalDisk {
    let disk = MemDisk::new(LOG_BLOCKS + DATA_BLOCKS + 64);
    LogicalDisk::format(&disk, LOG_BLOCKS).expect("format an in-memory disk");
    let options = LogOptions {
        background_installer: false,
        ..LogOptions::default()
    };
    LogicalDisk::open(Arc::new(disk) as Arc<dyn Disk>, options).expect("open an in-memory disk")
}

fn block_for(i: u64) -> Block {
    let mut block = Block::filled((i % 251) as u8);
    block.as_bytes_mut()[..8].copy_from_slice(&i.to_le_bytes());
    block
}

fn commits(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit");
    for blocks in [1u64, 16] {
        group.throughput(Throughput::Elements(1));
        let data: Vec<Block> = (0..blocks).map(block_for).collect();
        for durable in [false, true] {
            let name = format!("{}-{blocks}blk", if durable { "durable" } else { "nosync" });
            let disk = logical_disk();
            let size_blocks = disk.size_blocks();
            let mut i = 0u64;
            group.bench_function(name, |b| {
                b.iter(|| {
                    let mut tx = disk.begin();
                    for (k, block) in data.iter().enumerate() {
                        let addr = (i * blocks + k as u64) % size_blocks;
                        tx.write(addr, block).expect("write");
                    }
                    if durable {
                        tx.commit().expect("commit");
                    } else {
                        tx.commit_nosync().expect("commit_nosync");
                        if i % FLUSH_EVERY == FLUSH_EVERY - 1 {
                            disk.flush().expect("flush");
                        }
                    }
                    i += 1;
                })
            });
        }
    }
    group.finish();
}

fn reads(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(1));
    const SET_BLOCKS: u64 = 256;
    for installed in [true, false] {
        let disk = logical_disk();
        for addr in 0..SET_BLOCKS {
            let mut tx = disk.begin();
            tx.write(addr, &block_for(addr)).expect("write");
            tx.commit_nosync().expect("commit_nosync");
        }
        disk.flush().expect("flush");
        if installed {
            disk.install().expect("install");
        }
        let name = if installed { "installed" } else { "logged" };
        let mut i = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                let addr = (i * 7919) % SET_BLOCKS;
                i += 1;
                black_box(disk.read_committed(addr).expect("read"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, commits, reads);
criterion_main!(benches);
