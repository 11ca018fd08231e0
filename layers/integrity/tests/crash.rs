//! The checksums are crash-safe: at every crash point of a workload of writes and syncs, in
//! every crash state (torn sectors included, sampled where there are too many), a block synced
//! since its last write reads back exactly, and a block written since the last sync reads as
//! one of the values it held since then or fails verification — never as anything else.

use std::collections::BTreeMap;
use std::sync::Arc;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Block, Disk, DiskError, SimDisk};
use txdisk_integrity::IntegrityDisk;

/// Two superblocks, one tag block, eight data blocks.
const RAW_BLOCKS: u64 = 11;
/// Above this many states a crash point is sampled rather than enumerated.
const STATE_CAP: u128 = 4096;
const SAMPLES: usize = 512;

#[derive(Clone, Debug)]
enum Op {
    Write(u64, u8),
    Sync,
}

fn workload(seed: u64, data_blocks: u64) -> Vec<Op> {
    let mut rng = SplitMix64::new(seed);
    (0..14)
        .map(|_| {
            if rng.chance(1, 4) {
                Op::Sync
            } else {
                Op::Write(rng.below(data_blocks), rng.below(250) as u8 + 1)
            }
        })
        .collect()
}

/// For each address: the value after the last sync, and the values written since.
#[derive(Clone, Default)]
struct Model {
    synced: BTreeMap<u64, Block>,
    since_sync: BTreeMap<u64, Vec<Block>>,
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write(addr, byte) => self
                .since_sync
                .entry(*addr)
                .or_default()
                .push(Block::filled(*byte)),
            Op::Sync => {
                for (addr, values) in std::mem::take(&mut self.since_sync) {
                    if let Some(last) = values.last() {
                        self.synced.insert(addr, last.clone());
                    }
                }
            }
        }
    }

    fn check(&self, disk: &IntegrityDisk<SimDisk>, context: &str) {
        for addr in 0..disk.size_blocks() {
            let synced = self.synced.get(&addr).cloned().unwrap_or_default();
            let result = disk.read(addr);
            match self.since_sync.get(&addr) {
                None => match result {
                    Ok(block) => assert_eq!(block, synced, "{context}: synced block {addr}"),
                    Err(error) => panic!("{context}: synced block {addr} fails: {error}"),
                },
                Some(pending) => match result {
                    Ok(block) => assert!(
                        block == synced || pending.contains(&block),
                        "{context}: block {addr} reads as a value never written there"
                    ),
                    Err(DiskError::Corrupt { addr: at, .. }) => {
                        assert_eq!(at, addr, "{context}: the error names the block")
                    }
                    Err(error) => panic!("{context}: block {addr}: {error}"),
                },
            }
        }
    }
}

fn explore(seed: u64, torn: bool) -> u128 {
    let sim = Arc::new(SimDisk::new(RAW_BLOCKS));
    let disk = IntegrityDisk::format(sim.clone()).expect("format");
    let ops = workload(seed, disk.size_blocks());
    let mut model = Model::default();
    let mut rng = SplitMix64::new(seed ^ 0x5eed);
    let mut states = 0u128;
    // Crash points: after each operation, and (for a sync) between its tag writes and the
    // device's sync, which the crash states of the following point include as pending writes.
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Write(addr, byte) => disk.write(*addr, &Block::filled(*byte)).expect("write"),
            Op::Sync => disk.sync().expect("sync"),
        }
        model.apply(op);
        let images: Vec<_> = match sim.crash_states_capped(torn, STATE_CAP) {
            Ok(all) => all.collect(),
            Err(_) => (0..SAMPLES)
                .map(|_| sim.random_crash_state(&mut rng, torn))
                .collect(),
        };
        for image in images {
            states += 1;
            let after = IntegrityDisk::open(SimDisk::from_image(&image))
                .unwrap_or_else(|error| panic!("seed {seed} step {step}: open: {error}"));
            model.check(
                &after,
                &format!("seed {seed} step {step} ({op:?}) torn={torn}"),
            );
        }
    }
    states
}

#[test]
fn every_crash_state_verifies_or_fails_only_where_a_write_was_in_flight() {
    let mut states = 0;
    for seed in 0..24 {
        states += explore(seed, false);
    }
    assert!(states > 1000, "explored only {states} states");
}

#[test]
fn torn_sectors_never_make_a_block_read_wrong() {
    let mut states = 0;
    for seed in 100..112 {
        states += explore(seed, true);
    }
    assert!(states > 1000, "explored only {states} states");
}

/// The test can fail: with the tags written after the device's sync, a crash loses tags of
/// synced blocks, and the check above catches it.
#[test]
fn tags_written_after_the_sync_are_caught() {
    use txdisk_integrity::bugs::{self, Bug};
    bugs::set(Some(Bug::TagsAfterSync));
    let caught = (0..24).any(|seed| std::panic::catch_unwind(|| explore(seed, false)).is_err());
    bugs::set(None);
    assert!(
        caught,
        "no crash state showed the tags written after the sync"
    );
}

/// Crash in the middle of a sync: after the tag block write, before the device's sync. The
/// states of the point after the tag write are exactly those of a crash inside `sync`.
#[test]
fn a_crash_between_tag_and_device_sync_is_covered() {
    let sim = Arc::new(SimDisk::new(RAW_BLOCKS));
    let disk = IntegrityDisk::format(sim.clone()).expect("format");
    disk.write(2, &Block::filled(9)).expect("write");
    let ops_before = sim.ops();
    // The sync is: one tag block write, then the device's sync; crash at the second.
    sim.schedule_crash(ops_before + 1);
    assert!(matches!(disk.sync(), Err(DiskError::Crashed)));
    let mut seen = [false; 2];
    for image in sim.crash_states(true) {
        let after = IntegrityDisk::open(SimDisk::from_image(&image)).expect("open");
        match after.read(2) {
            Ok(block) if block == Block::filled(9) => seen[0] = true,
            Ok(block) => assert!(block.is_zero(), "block 2 reads as a value never written"),
            Err(DiskError::Corrupt { .. }) => seen[1] = true,
            Err(error) => panic!("block 2: {error}"),
        }
        for addr in (0..after.size_blocks()).filter(|a| *a != 2) {
            assert!(after.read(addr).expect("untouched block").is_zero());
        }
    }
    assert_eq!(
        seen,
        [true, true],
        "both the new value and a failed verification occur"
    );
}
