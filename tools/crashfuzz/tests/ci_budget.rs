//! The correct stack passes: a fixed-seed campaign over a single disk and over a replicated
//! pair (with fail-stop and bad blocks) finds no violation, and checks as many states as its
//! budget asks for, at every depth.

use txdisk_crashfuzz::{fuzz, Budget, FuzzConfig};

fn clean_run(config: FuzzConfig) {
    let report = fuzz(&config, &mut |_| {}).unwrap_or_else(|e| panic!("seed {}: {e}", config.seed));
    println!("{report}");
    assert!(
        report.violations.is_empty(),
        "seed {}: the correct stack failed:\n{report}",
        config.seed
    );
    let Budget::States(states) = config.budget else {
        unreachable!("the CI budget counts states")
    };
    assert!(
        report.crash_states >= states,
        "seed {}: stopped at {} of {states} states",
        config.seed,
        report.crash_states
    );
    assert!(
        report.recovery_crashes > 0,
        "seed {}: no recovery was crashed",
        config.seed
    );
    assert!(
        report.workloads > 1,
        "seed {}: one workload only",
        config.seed
    );
}

#[test]
fn single_disk_ci_budget() {
    clean_run(FuzzConfig {
        seed: 0x5eed_0001,
        budget: Budget::States(60_000),
        ..FuzzConfig::default()
    });
}

#[test]
fn single_disk_exhaustive() {
    let config = FuzzConfig {
        seed: 0x5eed_0002,
        budget: Budget::States(20_000),
        exhaustive: true,
        workload_len: 4,
        ..FuzzConfig::default()
    };
    clean_run(config);
}

#[test]
fn single_disk_torn_sectors() {
    clean_run(FuzzConfig {
        seed: 0x5eed_0004,
        budget: Budget::States(20_000),
        torn: true,
        ..FuzzConfig::default()
    });
}

#[test]
fn replicated_pair_ci_budget() {
    clean_run(FuzzConfig {
        seed: 0x5eed_0003,
        budget: Budget::States(15_000),
        replicated: true,
        ..FuzzConfig::default()
    });
}
