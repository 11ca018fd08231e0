//! Damage the checksums must catch, on the correct stack: bits flipped in a block (at rest and
//! mid-run), writes landing at the wrong block, writes acknowledged and never applied. On a
//! single disk a damaged home block must read as an error, never as other bytes; on a pair,
//! where the damage strikes anywhere on one member, every read must return the last value
//! written. Fixed seeds and budgets; each campaign must damage workloads and find no violation.

use txdisk_crashfuzz::{fuzz, Budget, FuzzConfig, FuzzReport};

fn clean_run(config: FuzzConfig) -> FuzzReport {
    let seed = config.seed;
    let report = fuzz(&config, &mut |_| {}).unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
    println!("{report}");
    assert!(
        report.violations.is_empty(),
        "seed {seed:#x}: the correct stack failed under damage:\n{report}"
    );
    let Budget::States(states) = config.budget else {
        unreachable!("the CI budget counts states")
    };
    assert!(
        report.crash_states >= states,
        "seed {seed:#x}: stopped at {} of {states} states",
        report.crash_states
    );
    let damaged =
        report.bit_rot_workloads + report.misdirect_workloads + report.lost_write_workloads;
    assert!(
        damaged >= 5,
        "seed {seed:#x}: only {damaged} damaged workloads:\n{report}"
    );
    report
}

/// A single disk: many workloads, few states each (damage is in the workload, not the crash).
fn single(seed: u64) -> FuzzConfig {
    FuzzConfig {
        seed,
        budget: Budget::States(20_000),
        ..FuzzConfig::default()
    }
}

/// A pair: fewer crash points and sampled states per workload than the default, so that the
/// budget spreads over many damaged workloads.
fn pair(seed: u64) -> FuzzConfig {
    FuzzConfig {
        seed,
        budget: Budget::States(6_000),
        replicated: true,
        crash_points: 4,
        samples: 2,
        state_cap: 4,
        ..FuzzConfig::default()
    }
}

#[test]
fn single_disk_bit_rot_reads_as_errors() {
    let report = clean_run(FuzzConfig {
        bit_rot: true,
        ..single(0xda_0001)
    });
    assert!(
        report.damage_found_states > 0,
        "no damaged block was ever read as an error: {report}"
    );
}

#[test]
fn single_disk_misdirected_writes_read_as_errors() {
    let report = clean_run(FuzzConfig {
        misdirect: true,
        ..single(0xda_0002)
    });
    assert!(report.damage_found_states > 0, "{report}");
}

#[test]
fn single_disk_lost_writes_read_as_errors() {
    let report = clean_run(FuzzConfig {
        lost_writes: true,
        ..single(0xda_0003)
    });
    assert!(report.damage_found_states > 0, "{report}");
}

#[test]
fn single_disk_every_damage_with_torn_sectors() {
    let report = clean_run(FuzzConfig {
        bit_rot: true,
        misdirect: true,
        lost_writes: true,
        torn: true,
        ..single(0xda_0004)
    });
    for (kind, count) in [
        ("bit rot", report.bit_rot_workloads),
        ("misdirected", report.misdirect_workloads),
        ("lost", report.lost_write_workloads),
    ] {
        assert!(count > 0, "no workload with {kind} damage: {report}");
    }
}

#[test]
fn pair_bit_rot_on_one_member_is_served_from_the_other() {
    let _ = clean_run(FuzzConfig {
        bit_rot: true,
        ..pair(0xda_0005)
    });
}

#[test]
fn pair_bit_rot_with_torn_sectors() {
    let _ = clean_run(FuzzConfig {
        bit_rot: true,
        torn: true,
        ..pair(0xda_0006)
    });
}

/// Misdirected and lost writes on one member of a pair: every read returns the last value
/// written. This campaign found two stack bugs, both fixed: a log header slot ends in its own
/// CRC-32C, so with a CRC as the block checksum every version of it verified (a lost header
/// write went unseen); and a misdirected write over a member's tag block made both its metadata
/// slots fail, which stopped the pair instead of failing that member.
#[test]
fn pair_misdirected_and_lost_writes_on_one_member() {
    let _ = clean_run(FuzzConfig {
        misdirect: true,
        lost_writes: true,
        ..pair(0xda_0007)
    });
}
