//! Crash test of a sequence of transactions that wraps the circular log several times, with
//! deferred commits, flushes and installations: a crash at every disk operation, every crash
//! state (sampled past a cap), recovery crashed again at every operation (depth 2). The
//! recovered contents must be those after some prefix of the commit order that includes every
//! transaction whose durable commit or a later flush returned.

mod common;

use common::*;
use txdisk_disk::rng::SplitMix64;
use txdisk_log::tooling::record_len_blocks;

fn campaign_for(seed: u64, torn: bool) -> Tally {
    let mut rng = SplitMix64::new(seed);
    let steps = random_steps(&mut rng, 14, 6, 3);
    let logged_blocks: u64 = steps
        .iter()
        .map(|step| match step {
            Step::Commit { writes, .. } => record_len_blocks(writes.len()),
            _ => 0,
        })
        .sum();
    let log_blocks = 8;
    assert!(logged_blocks > log_blocks, "seed {seed}: workload of {logged_blocks} log blocks does not wrap a {log_blocks}-block log");
    let base = formatted(3 + log_blocks + 6, log_blocks, seed ^ 0xabcd);
    let campaign = Campaign {
        torn,
        state_cap: 256,
        samples: 64,
        depth2: true,
        depth2_states: 4,
        seed,
    };
    let tally = crash_everywhere(&base, &steps, campaign);
    println!("seed {seed} torn {torn}: {} log blocks written through a {log_blocks}-block log: {tally:?}", logged_blocks);
    tally
}

#[test]
fn wraparound_with_installation_every_crash_point() {
    let mut total = Tally::default();
    for seed in [11, 12, 13] {
        let tally = campaign_for(seed, false);
        total.states += tally.states;
        total.recoveries += tally.recoveries;
    }
    println!("total: {total:?}");
    assert!(total.states > 1000);
}

#[test]
fn wraparound_torn_sectors() {
    let tally = campaign_for(21, true);
    assert!(tally.states > tally.crash_points);
}

#[test]
fn stale_records_never_come_back() {
    let (first, second) = stale_group_steps();
    let checked = crash_then_continue(&formatted(20, 8, 0x77), &first, &second, 5);
    println!("two-epoch states checked: {checked}");
    assert!(checked > 10);
}
