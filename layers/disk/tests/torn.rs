//! Torn-write mode: with values that overlap in some 512-byte sectors and differ in others, every
//! torn crash state is a sector-by-sector mix of allowed values (each sector of each block equals
//! that sector of the durable value or of one pending write), each appears once, and their count
//! is the product over sectors of the distinct candidate sector values.

mod common;

use common::{sectored, SeedGuard, ValueSets};
use std::collections::HashSet;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Block, Disk, DiskError, SimDisk};

/// Per block: the synced value, then the pending writes.
fn scenario() -> Vec<(Block, Vec<Block>)> {
    vec![
        // Distinct sector values: 3, 3, 2, 2, 1, 1, 1, 2 -> 72.
        (
            sectored([0; 8]),
            vec![
                sectored([1, 1, 1, 1, 0, 0, 0, 0]),
                sectored([2, 2, 1, 1, 0, 0, 0, 3]),
            ],
        ),
        // Differs from the durable value in three sectors -> 2^3 = 8.
        (sectored([5; 8]), vec![sectored([6, 5, 6, 5, 5, 5, 5, 6])]),
        // Rewritten with its own durable value -> 1.
        (sectored([9; 8]), vec![sectored([9; 8])]),
        // Untouched since the sync -> 1.
        (sectored([4; 8]), vec![]),
    ]
}
const EXPECTED_TORN_STATES: u128 = 72 * 8;
const EXPECTED_WHOLE_STATES: u128 = 3 * 2;

fn crashed_disk() -> (SimDisk, ValueSets) {
    let blocks = scenario();
    let disk = SimDisk::new(blocks.len() as u64);
    let mut model = ValueSets::new(blocks.len() as u64);
    for (addr, (durable, _)) in blocks.iter().enumerate() {
        disk.write(addr as u64, durable).unwrap();
        model.write(addr as u64, durable);
    }
    disk.sync().unwrap();
    model.sync();
    for (addr, (_, pending)) in blocks.iter().enumerate() {
        for block in pending {
            disk.write(addr as u64, block).unwrap();
            model.write(addr as u64, block);
        }
    }
    disk.crash_now();
    assert!(matches!(
        disk.write(0, &Block::zeroed()),
        Err(DiskError::Crashed)
    ));
    (disk, model)
}

#[test]
fn torn_count_is_product_of_distinct_sector_values() {
    let (disk, model) = crashed_disk();
    assert_eq!(
        model.torn_state_count(),
        EXPECTED_TORN_STATES,
        "the test's own arithmetic"
    );
    assert_eq!(disk.crash_state_count(true), EXPECTED_TORN_STATES);
    assert_eq!(disk.crash_state_count(false), EXPECTED_WHOLE_STATES);
}

#[test]
fn torn_states_are_sector_mixes_each_once() {
    let (disk, model) = crashed_disk();
    let mut seen = HashSet::new();
    // Capped: a wrong count fails here at once instead of enumerating millions of states.
    let states = disk
        .crash_states_capped(true, EXPECTED_TORN_STATES)
        .expect("torn count");
    for state in states {
        model
            .allows_torn(&state)
            .unwrap_or_else(|e| panic!("torn state not allowed: {e}"));
        assert!(seen.insert(state), "torn state yielded twice");
    }
    assert_eq!(seen.len() as u128, EXPECTED_TORN_STATES);
    // Tearing only adds states: every whole-block state is among them.
    for state in disk.crash_states(false) {
        assert!(
            seen.contains(&state),
            "whole-block state missing from torn states"
        );
    }
    // And some torn states are not whole-block states (the mode really tears).
    let mixed = seen.iter().filter(|s| model.allows(s).is_err()).count() as u128;
    assert_eq!(mixed, EXPECTED_TORN_STATES - EXPECTED_WHOLE_STATES);
}

#[test]
fn random_torn_states_are_allowed_and_reproducible() {
    let (disk, model) = crashed_disk();
    let mut seen = HashSet::new();
    for seed in 0..300 {
        let _guard = SeedGuard(seed);
        let state = disk.random_crash_state(&mut SplitMix64::new(seed), true);
        assert_eq!(
            state,
            disk.random_crash_state(&mut SplitMix64::new(seed), true)
        );
        model.allows_torn(&state).unwrap_or_else(|e| panic!("{e}"));
        seen.insert(state);
    }
    // 300 samples of 576 equally likely states: far more than the 6 whole-block ones.
    assert!(
        seen.len() > EXPECTED_WHOLE_STATES as usize,
        "sampling never tore a block"
    );
}

#[test]
fn nth_torn_state_agrees_with_iterator() {
    let (disk, _) = crashed_disk();
    let states = disk
        .crash_states_capped(true, EXPECTED_TORN_STATES)
        .expect("torn count");
    for (index, state) in states.enumerate() {
        assert_eq!(
            disk.nth_crash_state(true, index as u128),
            Some(state),
            "index {index}"
        );
    }
    assert_eq!(disk.nth_crash_state(true, EXPECTED_TORN_STATES), None);
}
