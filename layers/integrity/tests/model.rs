//! Property: any sequence of writes, runs, syncs and reads through the checksummed disk reads
//! back what a plain array of blocks would, and the raw device holds every written block at
//! `data_start + addr`.

use quickcheck::{Arbitrary, Gen, QuickCheck};
use std::sync::Arc;
use txdisk_disk::{Block, Disk, SimDisk};
use txdisk_integrity::IntegrityDisk;

const RAW_BLOCKS: u64 = 300;

#[derive(Clone, Debug)]
enum Op {
    Write(u64, u8),
    Run(u64, Vec<u8>),
    Sync,
    Read(u64),
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        let addr = u64::arbitrary(g) % 400; // some out of range
        match u8::arbitrary(g) % 4 {
            0 => Op::Write(addr, u8::arbitrary(g)),
            1 => Op::Run(
                addr,
                (0..u8::arbitrary(g) % 6)
                    .map(|_| u8::arbitrary(g))
                    .collect(),
            ),
            2 => Op::Sync,
            _ => Op::Read(addr),
        }
    }
}

fn agrees_with_an_array(ops: Vec<Op>) -> bool {
    let sim = Arc::new(SimDisk::new(RAW_BLOCKS));
    let disk = IntegrityDisk::format(sim.clone()).expect("format");
    let size = disk.size_blocks();
    let mut model = vec![Block::zeroed(); size as usize];
    for op in &ops {
        match op {
            Op::Write(addr, byte) => {
                let result = disk.write(*addr, &Block::filled(*byte));
                if *addr < size {
                    result.expect("write in range");
                    model[*addr as usize] = Block::filled(*byte);
                } else if result.is_ok() {
                    return false;
                }
            }
            Op::Run(start, bytes) => {
                let blocks: Vec<Block> = bytes.iter().map(|b| Block::filled(*b)).collect();
                let refs: Vec<&Block> = blocks.iter().collect();
                let result = disk.write_run(*start, &refs);
                if bytes.is_empty() || start + bytes.len() as u64 <= size {
                    result.expect("run in range");
                    for (offset, block) in blocks.into_iter().enumerate() {
                        model[*start as usize + offset] = block;
                    }
                } else if result.is_ok() {
                    return false;
                }
            }
            Op::Sync => disk.sync().expect("sync"),
            Op::Read(addr) => match disk.read(*addr) {
                Ok(block) if *addr < size => {
                    if block != model[*addr as usize] {
                        return false;
                    }
                }
                Err(_) if *addr >= size => {}
                _ => return false,
            },
        }
    }
    disk.sync().expect("sync");
    let data_start = disk.superblock().data_start;
    let reopened = IntegrityDisk::open(sim.clone()).expect("reopen");
    (0..size).all(|addr| {
        reopened.read(addr).ok().as_ref() == Some(&model[addr as usize])
            && sim.read(data_start + addr).ok().as_ref() == Some(&model[addr as usize])
    })
}

#[test]
fn reads_agree_with_a_plain_array_before_and_after_reopen() {
    QuickCheck::new()
        .tests(200)
        .quickcheck(agrees_with_an_array as fn(Vec<Op>) -> bool);
}
