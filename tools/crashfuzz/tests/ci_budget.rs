//! The correct stack passes: fixed-seed campaigns over a single checksummed disk (sampled,
//! exhaustive, torn sectors, deep recovery crashes) and over a replicated pair of them (with
//! fail-stops and bad blocks) find no violation and check as many states as their budgets ask
//! for. (Budgets are sized for about 20 s each in the dev profile: every block is verified on
//! every read, and a pair resyncs both members at each recovery.)

use txdisk_crashfuzz::{fuzz, Budget, FuzzConfig, FuzzReport};

fn clean_run(config: FuzzConfig) -> FuzzReport {
    let report = fuzz(&config, &mut |_| {}).unwrap_or_else(|e| panic!("seed {}: {e}", config.seed));
    println!("{report}");
    let seed = config.seed;
    assert!(
        report.violations.is_empty(),
        "seed {seed}: the correct stack failed:\n{report}"
    );
    let Budget::States(states) = config.budget else {
        unreachable!("the CI budget counts states")
    };
    assert!(
        report.crash_states >= states,
        "seed {seed}: stopped at {} of {states} states",
        report.crash_states
    );
    assert!(
        report.recovery_crashes > 0,
        "seed {seed}: no recovery was crashed"
    );
    assert!(report.workloads > 1, "seed {seed}: one workload only");
    report
}

#[test]
fn single_disk_ci_budget() {
    let config = FuzzConfig {
        seed: 0x5eed_0001,
        budget: Budget::States(100_000),
        ..FuzzConfig::default()
    };
    let report = clean_run(config);
    assert!(
        report.sampled_points < report.crash_points,
        "every crash point was sampled: {report}"
    );
    assert!(
        report.sync_failure_workloads > 0,
        "no workload had a failing sync: {report}"
    );
}

#[test]
fn single_disk_exhaustive() {
    let config = FuzzConfig {
        seed: 0x5eed_0002,
        budget: Budget::States(40_000),
        exhaustive: true,
        workload_len: 3,
        ..FuzzConfig::default()
    };
    let _ = clean_run(config);
}

#[test]
fn single_disk_torn_sectors() {
    let config = FuzzConfig {
        seed: 0x5eed_0004,
        budget: Budget::States(20_000),
        torn: true,
        ..FuzzConfig::default()
    };
    let _ = clean_run(config);
}

#[test]
fn deep_recovery_crashes() {
    let config = FuzzConfig {
        seed: 0x5eed_0005,
        budget: Budget::States(10_000),
        depth: 4,
        ..FuzzConfig::default()
    };
    let _ = clean_run(config);
}

#[test]
fn replicated_pair_ci_budget() {
    let config = FuzzConfig {
        seed: 0x5eed_0003,
        budget: Budget::States(10_000),
        replicated: true,
        ..FuzzConfig::default()
    };
    let report = clean_run(config);
    assert!(
        report.fail_stop_workloads > 0,
        "no workload failed a disk: {report}"
    );
    assert!(
        report.read_error_workloads > 0,
        "no workload had bad blocks: {report}"
    );
    assert!(
        report.recovery_fail_stops > 0,
        "no disk failed during recovery: {report}"
    );
}
