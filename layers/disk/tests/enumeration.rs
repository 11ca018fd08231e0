//! Exhaustive crash-state enumeration: with distinct pending writes on several blocks, the
//! number of states equals the product of (1 + pending writes) over blocks, the iterator yields
//! each allowed state exactly once (collected into a set), `nth_crash_state` agrees with it
//! index by index, the cap refuses only when exceeded, and seeded sampling is reproducible.

mod common;

use common::{blocks_of, tagged, SeedGuard, ValueSets};
use std::collections::HashSet;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Disk, DiskError, SimDisk, TooManyStates};

/// Pending writes per block in the main scenario; the state count is Π (1 + n) = 240.
const PENDING_PER_BLOCK: [u64; 6] = [0, 1, 2, 3, 1, 4];
const EXPECTED_STATES: u128 = 240;

/// A crashed disk whose blocks first get a synced value, then `pending[a]` distinct unsynced
/// writes each; returns the disk and the reference model of its value sets.
fn crashed_disk(pending: &[u64]) -> (SimDisk, ValueSets) {
    let size_blocks = pending.len() as u64;
    let disk = SimDisk::new(size_blocks);
    let mut model = ValueSets::new(size_blocks);
    let mut tag = 1;
    for addr in 0..size_blocks {
        write_both(&disk, &mut model, addr, &tagged(tag));
        tag += 1;
    }
    disk.sync().expect("sync of a running disk");
    model.sync();
    for (addr, &count) in pending.iter().enumerate() {
        for _ in 0..count {
            write_both(&disk, &mut model, addr as u64, &tagged(tag));
            tag += 1;
        }
    }
    disk.schedule_crash(disk.ops());
    assert!(matches!(disk.sync(), Err(DiskError::Crashed)));
    (disk, model)
}

fn write_both(disk: &SimDisk, model: &mut ValueSets, addr: u64, block: &txdisk_disk::Block) {
    disk.write(addr, block).expect("write to a running disk");
    model.write(addr, block);
}

#[test]
fn every_crash_state_is_produced_exactly_once() {
    let (disk, model) = crashed_disk(&PENDING_PER_BLOCK);
    let product: u128 = PENDING_PER_BLOCK
        .iter()
        .map(|&n| u128::from(1 + n))
        .product();
    assert_eq!(product, EXPECTED_STATES);
    assert_eq!(disk.crash_state_count(false), EXPECTED_STATES);
    let mut states = disk
        .crash_states_capped(false, EXPECTED_STATES)
        .expect("state count");
    assert_eq!(
        states.total(),
        EXPECTED_STATES,
        "count known before iterating"
    );
    let mut seen = HashSet::new();
    for state in states.by_ref() {
        model
            .allows(&state)
            .unwrap_or_else(|e| panic!("enumerated state not allowed: {e}"));
        assert!(seen.insert(state.clone()), "state yielded twice: {state:?}");
    }
    assert_eq!(states.produced(), EXPECTED_STATES);
    assert_eq!(seen.len() as u128, EXPECTED_STATES);
    assert!(
        seen.contains(&disk.durable_image()),
        "nothing-survived state missing"
    );
    assert!(
        seen.contains(&disk.current_image()),
        "everything-survived state missing"
    );
    let as_blocks: HashSet<_> = seen.iter().map(blocks_of).collect();
    assert_eq!(
        as_blocks,
        model.all_states(),
        "enumeration != the model's states"
    );
}

#[test]
fn wide_enumeration_counts_and_covers() {
    // Three distinct pending writes on each of six blocks: 4^6 states.
    let (disk, model) = crashed_disk(&[3; 6]);
    assert_eq!(disk.crash_state_count(false), 4096);
    let seen: HashSet<_> = disk
        .crash_states_capped(false, 4096)
        .expect("count")
        .collect();
    assert_eq!(seen.len(), 4096);
    for state in &seen {
        model.allows(state).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn nth_crash_state_agrees_with_iterator() {
    let (disk, _) = crashed_disk(&PENDING_PER_BLOCK);
    for torn in [false, true] {
        let states = disk
            .crash_states_capped(torn, EXPECTED_STATES)
            .expect("state count");
        let total = states.total();
        for (index, state) in states.enumerate() {
            let nth = disk.nth_crash_state(torn, index as u128);
            assert_eq!(nth.as_ref(), Some(&state), "torn={torn}, index {index}");
        }
        assert_eq!(
            disk.nth_crash_state(torn, total),
            None,
            "index == total must be None"
        );
        assert!(disk.nth_crash_state(torn, total - 1).is_some());
    }
}

#[test]
fn cap_refuses_only_when_exceeded() {
    let (disk, _) = crashed_disk(&PENDING_PER_BLOCK);
    let refused = disk.crash_states_capped(false, EXPECTED_STATES - 1);
    assert_eq!(
        refused.err(),
        Some(TooManyStates {
            count: EXPECTED_STATES,
            cap: EXPECTED_STATES - 1
        })
    );
    let allowed = disk
        .crash_states_capped(false, EXPECTED_STATES)
        .expect("count == cap is allowed");
    assert_eq!(allowed.count(), EXPECTED_STATES as usize);
    // Tagged values differ only in their first sector, so tearing adds no states here.
    assert!(disk.crash_states_capped(true, EXPECTED_STATES).is_ok());
    assert!(disk.crash_states_capped(true, EXPECTED_STATES - 1).is_err());
}

#[test]
fn repeated_values_count_once() {
    let disk = SimDisk::new(3);
    let (a, b) = (tagged(1), tagged(2));
    // Block 0: durable zeros, pending zeros, a, a, b -> {zeros, a, b}.
    for block in [&txdisk_disk::Block::zeroed(), &a, &a, &b] {
        disk.write(0, block).unwrap();
    }
    // Block 1: the same value written three times -> {zeros, a}.
    for _ in 0..3 {
        disk.write(1, &a).unwrap();
    }
    assert_eq!(disk.pending_writes(), 7);
    assert_eq!(disk.crash_state_count(false), 3 * 2);
    let seen: HashSet<_> = disk.crash_states(false).collect();
    assert_eq!(seen.len(), 6);
}

#[test]
fn synced_disk_has_exactly_one_state() {
    let disk = SimDisk::new(4);
    disk.write(2, &tagged(7)).unwrap();
    disk.sync().unwrap();
    assert_eq!(disk.crash_state_count(false), 1);
    assert_eq!(disk.crash_state_count(true), 1);
    let states: Vec<_> = disk.crash_states(false).collect();
    assert_eq!(states, vec![disk.durable_image()]);
    assert_eq!(states[0].block(2), Some(&tagged(7)));
}

#[test]
fn seeded_crash_state_is_reproducible_and_covers_every_value() {
    let (disk, model) = crashed_disk(&PENDING_PER_BLOCK);
    let mut per_block: Vec<HashSet<txdisk_disk::Block>> = vec![HashSet::new(); 6];
    for seed in 0..400 {
        let _guard = SeedGuard(seed);
        let state = disk.random_crash_state(&mut SplitMix64::new(seed), false);
        let again = disk.random_crash_state(&mut SplitMix64::new(seed), false);
        assert_eq!(state, again, "same seed, different state");
        model.allows(&state).unwrap_or_else(|e| panic!("{e}"));
        for (addr, block) in blocks_of(&state).into_iter().enumerate() {
            per_block[addr].insert(block);
        }
    }
    // 400 fixed seeds pick every candidate of every block at least once (at most 5 per block).
    for (addr, seen) in per_block.iter().enumerate() {
        assert_eq!(
            seen.len(),
            model.candidates(addr as u64).len(),
            "block {addr} coverage"
        );
    }
}
