//! Exhaustive crash test of `atomic_two_write` on a `SimDisk`: a crash at every disk operation
//! of open + commit + installation, every crash state (torn sectors too, sampled past a cap),
//! and recovery crashed again at every one of its operations (depth 2) plus randomized chains of
//! five crashes. After the final recovery both blocks are new or both old, and nothing else
//! changed. Every run is under the write-ahead checker.

mod common;

use common::*;
use std::sync::Arc;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{DiskImage, SimDisk};

const A1: u64 = 1;
const A2: u64 = 3;

/// An image whose data region holds old values at A1 and A2, installed, with an empty log.
fn base_image() -> DiskImage {
    let image = formatted(16, 8, 0x5eed_0001);
    let sim = Arc::new(SimDisk::from_image(&image));
    let setup = [
        Step::Commit {
            writes: vec![(A1, 0x11), (A2, 0x22)],
            durable: true,
        },
        Step::Install,
    ];
    let (_, result) = run_steps(sim.clone(), &setup);
    result.expect("setup");
    sim.durable_image()
}

fn two_write_steps() -> Vec<Step> {
    vec![
        Step::Commit {
            writes: vec![(A1, 0xa1), (A2, 0xa2)],
            durable: true,
        },
        Step::Install,
    ]
}

#[test]
fn every_crash_state_depth_two() {
    let campaign = Campaign {
        torn: false,
        state_cap: 1 << 20,
        samples: 0,
        depth2: true,
        depth2_states: 1 << 10,
        seed: 1,
    };
    let tally = crash_everywhere(&base_image(), &two_write_steps(), campaign);
    println!("atomic_two_write, whole blocks: {tally:?}");
    assert_eq!(
        tally.sampled_points, 0,
        "every crash point must be enumerated exhaustively"
    );
    assert!(tally.crash_points >= 10, "too few crash points: {tally:?}");
}

#[test]
fn torn_sectors_depth_two() {
    let campaign = Campaign {
        torn: true,
        state_cap: 4096,
        samples: 512,
        depth2: true,
        depth2_states: 8,
        seed: 2,
    };
    let tally = crash_everywhere(&base_image(), &two_write_steps(), campaign);
    println!("atomic_two_write, torn sectors: {tally:?}");
    assert!(
        tally.states > tally.crash_points,
        "torn mode produced no extra states: {tally:?}"
    );
}

#[test]
fn random_chains_of_five_crashes() {
    let base = base_image();
    let steps = two_write_steps();
    let initial = recovered_contents(&base);
    let states = prefix_states(&initial, &steps);
    let total_ops = {
        let sim = Arc::new(SimDisk::from_image(&base));
        run_steps(sim.clone(), &steps).1.expect("clean run");
        sim.ops()
    };
    let seed = 0xdee9_0005;
    let mut rng = SplitMix64::new(seed);
    for chain in 0..2000 {
        let crash_op = rng.below(total_ops + 1);
        let sim = Arc::new(SimDisk::from_image(&base));
        sim.schedule_crash(crash_op);
        let (progress, _) = run_steps(sim.clone(), &steps);
        let torn = chain % 2 == 1;
        let state = sim.random_crash_state(&mut rng, torn);
        let context = format!("seed {seed:#x} chain {chain} crash at op {crash_op} torn {torn}");
        random_deep_crash(
            &state,
            &states[..=progress.commits_called],
            progress.durable_commits,
            5,
            torn,
            &mut rng,
            &context,
        );
    }
}

/// The same campaign must fail on each deliberately wrong variant of the log.
#[cfg(feature = "deliberate-bugs")]
#[test]
fn campaign_catches_each_deliberate_bug() {
    use txdisk_log::bugs::{self, Bug};
    for bug in Bug::ALL {
        let caught = std::panic::catch_unwind(|| {
            bugs::set(Some(bug));
            let torn = bug == Bug::ReplayWithoutChecksum;
            let campaign = Campaign {
                torn,
                state_cap: 4096,
                samples: 256,
                depth2: true,
                depth2_states: 8,
                seed: 3,
            };
            let mut rng = SplitMix64::new(99);
            let steps = random_steps(&mut rng, 14, 6, 3);
            crash_everywhere(&formatted(17, 8, 77), &steps, campaign);
            crash_everywhere(&base_image(), &two_write_steps(), campaign);
            let (first, second) = stale_group_steps();
            crash_then_continue(&formatted(20, 8, 0x77), &first, &second, 5);
        });
        bugs::set(None);
        assert!(caught.is_err(), "the crash campaign did not catch {bug:?}");
        println!("caught {bug:?}");
    }
}
