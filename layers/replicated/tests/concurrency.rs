//! Concurrency stress of the pair on `SimDisk`s with every debug invariant on (the per-write
//! check that both replicas hold the same value, `check_rep` after every operation): 8 threads
//! write, read and sync overlapping addresses; then the same with d2 failing mid-run and an
//! online rebuild racing the writers. Deterministic per-thread seeds; the final replicas must
//! agree and hold values that were written.

use std::collections::HashSet;
use std::sync::Arc;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Block, Disk, SimDisk};
use txdisk_replicated::{replicas_agree, FormatOptions, ReplicaStatus, ReplicatedDisk, Role};

const THREADS: u64 = 8;
const OPS_PER_THREAD: u64 = 400;
const DATA_BLOCKS: u64 = 24;

/// Blocks of each member for `DATA_BLOCKS` with the default bitmap chunk.
fn member_blocks() -> u64 {
    txdisk_replicated::member_blocks_for(DATA_BLOCKS, txdisk_replicated::DEFAULT_CHUNK_BLOCKS)
        .expect("the default chunk size is valid")
}
const SEED: u64 = 0x5eed_0001;

type Pair = ReplicatedDisk<Arc<SimDisk>>;

fn tagged(thread: u64, step: u64) -> Block {
    let mut prefix = [0u8; 16];
    prefix[..8].copy_from_slice(&thread.to_le_bytes());
    prefix[8..].copy_from_slice(&(step + 1).to_le_bytes());
    Block::with_prefix(&prefix).unwrap()
}

fn pair() -> (Pair, Arc<SimDisk>, Arc<SimDisk>) {
    let size = member_blocks();
    let (d1, d2) = (Arc::new(SimDisk::new(size)), Arc::new(SimDisk::new(size)));
    let options = FormatOptions {
        pair_id: Some(42),
        assume_equal: true,
        ..Default::default()
    };
    ReplicatedDisk::format(&d1, &d2, &options).unwrap();
    let pair = ReplicatedDisk::open(Arc::clone(&d1), Arc::clone(&d2), &mut |_| {}).unwrap();
    (pair, d1, d2)
}

/// One thread's work: writes of its own tagged values to random addresses (all threads share
/// them), reads that must return some thread's tagged value or zeros, and occasional syncs.
fn worker(pair: &Pair, thread: u64) {
    let mut rng = SplitMix64::new(SEED ^ thread);
    for step in 0..OPS_PER_THREAD {
        let addr = rng.below(DATA_BLOCKS);
        match rng.below(10) {
            0..=3 => pair
                .write(addr, &tagged(thread, step))
                .unwrap_or_else(|e| panic!("seed {SEED:x} thread {thread}: {e}")),
            // Batches of runs that overlap other threads' writes and runs: every stripe of a
            // run is held at once, so their lock order must be one order.
            4..=5 => {
                let value = tagged(thread, step);
                let first = (rng.below(6) + 1).min(DATA_BLOCKS - addr) as usize;
                let other = rng.below(DATA_BLOCKS);
                let second = (rng.below(6) + 1).min(DATA_BLOCKS - other) as usize;
                let (a, b) = (vec![&value; first], vec![&value; second]);
                pair.write_runs(&[(addr, a.as_slice()), (other, b.as_slice())])
                    .unwrap_or_else(|e| panic!("seed {SEED:x} thread {thread}: {e}"))
            }
            6..=8 => {
                let block = pair
                    .read(addr)
                    .unwrap_or_else(|e| panic!("seed {SEED:x} thread {thread}: {e}"));
                let bytes = block.as_bytes();
                let (writer, written_step) = (
                    u64::from_le_bytes(bytes[..8].try_into().unwrap()),
                    u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
                );
                if !block.is_zero() {
                    assert!(
                        writer < THREADS,
                        "seed {SEED:x}: block {addr} holds a value no thread wrote"
                    );
                    assert!(
                        (1..=OPS_PER_THREAD).contains(&written_step),
                        "seed {SEED:x}: block {addr} bad step {written_step}"
                    );
                }
            }
            _ => pair
                .sync()
                .unwrap_or_else(|e| panic!("seed {SEED:x} thread {thread}: {e}")),
        }
    }
}

#[test]
fn eight_threads_on_overlapping_addresses_keep_the_replicas_equal() {
    let (pair, d1, d2) = pair();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let pair = &pair;
            scope.spawn(move || worker(pair, thread));
        }
    });
    pair.sync().unwrap();
    replicas_agree(&pair).unwrap();
    assert_eq!(pair.status().replicas, [ReplicaStatus::Active; 2]);
    assert!(
        d1.stats().writes > THREADS * OPS_PER_THREAD / 2,
        "the writers did not run"
    );
    // d1 carries one metadata write more than d2: the Dirty mark's event is written to d1,
    // then d2, then confirmed on d1 again.
    assert_eq!(
        d1.stats().writes,
        d2.stats().writes + 1,
        "every data write must reach both replicas"
    );
}

/// Each thread owns the addresses congruent to its number, so the last value of every address
/// is known; d2 fails partway and a rebuild onto a new disk runs while the writers go on.
#[test]
fn online_rebuild_races_writers_and_loses_nothing() {
    let (pair, _d1, d2) = pair();
    let replacement = Arc::new(SimDisk::new(member_blocks()));
    let last: Vec<Vec<(u64, Block)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let pair = &pair;
                scope.spawn(move || {
                    let mut rng = SplitMix64::new(SEED ^ (thread << 8));
                    let mut mine = Vec::new();
                    for step in 0..OPS_PER_THREAD {
                        let addr = thread + THREADS * rng.below(DATA_BLOCKS / THREADS);
                        pair.write(addr, &tagged(thread, step)).unwrap();
                        mine.push((addr, tagged(thread, step)));
                        if step % 50 == 0 {
                            pair.sync().unwrap();
                        }
                    }
                    mine
                })
            })
            .collect();
        let pair = &pair;
        let replacement = Arc::clone(&replacement);
        scope.spawn(move || {
            while d2.stats().writes < 500 {
                std::thread::yield_now();
            }
            d2.fail_now();
            // The pair learns of the failure at its next touch of d2; a sync touches it now.
            pair.sync().unwrap();
            assert_eq!(pair.status().replicas[1], ReplicaStatus::Failed);
            pair.rebuild(replacement, &mut |_| {}).unwrap();
        });
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(pair.status().replicas, [ReplicaStatus::Active; 2]);
    replicas_agree(&pair).unwrap();
    let mut checked = HashSet::new();
    for writes in &last {
        for (addr, value) in writes.iter().rev() {
            if checked.insert(*addr) {
                assert_eq!(
                    &pair.read_replica(Role::D2, *addr).unwrap(),
                    value,
                    "seed {SEED:x}: rebuilt block {addr} lost its last write"
                );
            }
        }
    }
    assert!(replacement.stats().writes > 0);
}
