//! Model test: `SimDisk` against the plain reference model in `common`, on random sequences of
//! reads, writes, syncs and failing syncs with a crash at a random operation (quickcheck, which
//! prints the shrunk failing case with its seed, and a fixed-seed sweep); every result must match
//! the model, and the states a crash leaves — a random one, a random torn one, and, when few,
//! every enumerated one — must be exactly those the model allows.

mod common;

use common::{blocks_of, tagged, SeedGuard, ValueSets};
use quickcheck::{Arbitrary, Gen, QuickCheck};
use std::collections::HashSet;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Disk, DiskError, SimDisk};

const SIZE_BLOCKS: u64 = 4;
/// Enumerate every crash state when there are at most this many.
const ENUMERATE_MAX: u128 = 512;

#[derive(Clone, Debug)]
enum Op {
    /// Addresses run to `SIZE_BLOCKS` inclusive, so out-of-range calls are numbered too.
    Read(u64),
    Write(u64, u8),
    Sync,
    FailingSync,
}

#[derive(Clone, Debug)]
struct Case {
    ops: Vec<Op>,
    /// Operation number at which the crash is scheduled (may lie past the end: then the run
    /// crashes after its last operation).
    crash_at_op: u64,
    seed: u64,
}

impl Op {
    fn from_rng(rng: &mut SplitMix64) -> Op {
        let addr = rng.below(SIZE_BLOCKS + 1);
        match rng.below(10) {
            0..=2 => Op::Read(addr),
            3..=7 => Op::Write(addr, rng.below(6) as u8),
            8 => Op::Sync,
            _ => Op::FailingSync,
        }
    }
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        Op::from_rng(&mut SplitMix64::new(u64::arbitrary(g)))
    }
}

impl Arbitrary for Case {
    fn arbitrary(g: &mut Gen) -> Case {
        let ops = Vec::<Op>::arbitrary(g);
        let crash_at_op = u64::arbitrary(g) % (ops.len() as u64 + 2);
        Case {
            ops,
            crash_at_op,
            seed: u64::arbitrary(g),
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Case>> {
        let (crash_at_op, seed) = (self.crash_at_op, self.seed);
        Box::new(self.ops.shrink().map(move |ops| Case {
            ops,
            crash_at_op,
            seed,
        }))
    }
}

impl Case {
    fn from_seed(seed: u64) -> Case {
        let mut rng = SplitMix64::new(seed);
        let len = rng.below(40);
        let ops = (0..len).map(|_| Op::from_rng(&mut rng)).collect();
        Case {
            ops,
            crash_at_op: rng.below(len + 2),
            seed,
        }
    }
}

/// Runs one case against both the disk and the model, asserting as it goes.
fn check_case(case: &Case) {
    let disk = SimDisk::new(SIZE_BLOCKS);
    let mut model = ValueSets::new(SIZE_BLOCKS);
    disk.schedule_crash(case.crash_at_op);
    let mut model_ops = 0u64;
    for op in &case.ops {
        let crashed = model_ops >= case.crash_at_op;
        apply(&disk, &mut model, op, crashed);
        if !crashed {
            model_ops += 1;
        }
        assert_eq!(disk.ops(), model_ops, "operation count after {op:?}");
    }
    disk.crash_now();
    assert!(disk.is_crashed());
    assert!(matches!(disk.read(0), Err(DiskError::Crashed)));
    assert_eq!(disk.ops(), model_ops, "a refused call must not be numbered");
    check_crash_states(&disk, &model, case.seed);
}

fn apply(disk: &SimDisk, model: &mut ValueSets, op: &Op, crashed: bool) {
    let in_range = |addr: u64| addr < SIZE_BLOCKS;
    match *op {
        Op::Read(addr) => match disk.read(addr) {
            Err(DiskError::Crashed) => assert!(crashed),
            Err(DiskError::OutOfRange {
                addr: a,
                size_blocks,
            }) => {
                assert!(!crashed && !in_range(addr) && a == addr && size_blocks == SIZE_BLOCKS)
            }
            Ok(block) => {
                assert!(!crashed && in_range(addr));
                assert_eq!(&block, model.newest(addr), "read of block {addr}");
            }
            Err(other) => panic!("read {addr}: unexpected {other}"),
        },
        Op::Write(addr, value) => {
            let block = tagged(u64::from(value));
            match disk.write(addr, &block) {
                Err(DiskError::Crashed) => assert!(crashed),
                Err(DiskError::OutOfRange { .. }) => assert!(!crashed && !in_range(addr)),
                Ok(()) => {
                    assert!(!crashed && in_range(addr));
                    model.write(addr, &block);
                }
                Err(other) => panic!("write {addr}: unexpected {other}"),
            }
        }
        Op::Sync | Op::FailingSync => {
            apply_sync(disk, model, matches!(op, Op::FailingSync), crashed)
        }
    }
}

fn apply_sync(disk: &SimDisk, model: &mut ValueSets, failing: bool, crashed: bool) {
    if failing {
        disk.schedule_sync_failure(disk.ops());
    }
    match disk.sync() {
        Err(DiskError::Crashed) => assert!(crashed),
        Err(DiskError::SyncFailed) => {
            assert!(!crashed && failing);
            model.lose_pending();
        }
        Ok(()) => {
            assert!(!crashed && !failing);
            model.sync();
        }
        Err(other) => panic!("sync: unexpected {other}"),
    }
}

fn check_crash_states(disk: &SimDisk, model: &ValueSets, seed: u64) {
    assert_eq!(
        blocks_of(&disk.durable_image()),
        model.durable,
        "durable image"
    );
    let mut rng = SplitMix64::new(seed);
    let state = disk.random_crash_state(&mut rng, false);
    model
        .allows(&state)
        .unwrap_or_else(|e| panic!("random crash state: {e}"));
    let torn = disk.random_crash_state(&mut rng, true);
    model
        .allows_torn(&torn)
        .unwrap_or_else(|e| panic!("random torn crash state: {e}"));
    // A stack restarts on a crash state: the new disk reads it back, all durable.
    let restarted = SimDisk::from_image(&state);
    for addr in 0..SIZE_BLOCKS {
        assert_eq!(
            restarted.read(addr).ok().as_ref(),
            state.block(addr),
            "restart, block {addr}"
        );
    }
    assert_eq!(restarted.crash_state_count(false), 1);

    let count = disk.crash_state_count(false);
    assert_eq!(count, model.state_count(), "crash-state count");
    assert_eq!(
        disk.crash_state_count(true),
        model.torn_state_count(),
        "torn count"
    );
    if count <= ENUMERATE_MAX {
        let states: Vec<Vec<_>> = disk.crash_states(false).map(|s| blocks_of(&s)).collect();
        assert_eq!(states.len() as u128, count, "enumeration length");
        let distinct: HashSet<_> = states.into_iter().collect();
        assert_eq!(distinct.len() as u128, count, "an enumerated state repeats");
        assert_eq!(
            distinct,
            model.all_states(),
            "enumerated states != the model's states"
        );
    }
}

#[test]
fn quickcheck_sim_disk_matches_model() {
    fn property(case: Case) -> bool {
        check_case(&case);
        true
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(property as fn(Case) -> bool);
}

#[test]
fn fixed_seeds_sim_disk_matches_model() {
    for seed in 0..300 {
        let _guard = SeedGuard(seed);
        check_case(&Case::from_seed(seed));
    }
}
