//! The oracle catches real bugs: each deliberately wrong variant of the stack (seven in the
//! log, three in the replicated pair, two in the checksummed disk, one in the logical disk) is
//! found by the default configuration and budget — reads that skip verification with damage
//! faults, on a single disk and on a pair — and the violation's replay token reproduces the
//! same violation and shrinks it. The variants only a live check can see (a stale read while
//! the log runs, a commit that skips validation, a failed sync taken for a good one, a repair
//! written to the wrong member) are caught by the check that sees them, named in the message;
//! the last block of the region mishandled is caught because workloads reach it.

use txdisk_crashfuzz::{
    fuzz, replay, Bug, FuzzConfig, IntegrityBug, LogBug, LogicalBug, ReplicatedBug, Violation,
};

fn caught(bug: Bug) -> Violation {
    caught_with(FuzzConfig {
        bug: Some(bug),
        replicated: bug == Bug::ReplicatedSkipsD2,
        ..FuzzConfig::default()
    })
}

/// `config` (with its `bug`) finds a violation whose token replays it and shrinks; returns it.
fn caught_with(config: FuzzConfig) -> Violation {
    let config = FuzzConfig {
        max_violations: 1,
        ..config
    };
    let Some(bug) = config.bug else {
        unreachable!("a variant to catch")
    };
    let report =
        fuzz(&config, &mut |_| {}).unwrap_or_else(|e| panic!("{bug:?} seed {}: {e}", config.seed));
    println!("{bug:?}: {report}");
    let Some(violation) = report.violations.first() else {
        panic!(
            "seed {}: the default budget did not catch {bug:?}: {report}",
            config.seed
        );
    };
    let replayed = replay(&violation.token).unwrap_or_else(|e| {
        panic!(
            "{bug:?} seed {}: replay of {}: {e}",
            config.seed, violation.token
        )
    });
    println!("{replayed}");
    let Some((kind, message)) = &replayed.violation else {
        panic!(
            "{bug:?} seed {}: the token {} does not reproduce the violation",
            config.seed, violation.token
        );
    };
    assert_eq!(
        *kind, violation.kind,
        "{bug:?}: replayed a different kind of violation"
    );
    assert_eq!(
        *message, violation.message,
        "{bug:?}: replayed a different violation"
    );
    let shrunk = replayed.shrunk_violation.as_ref().map(|(kind, _)| *kind);
    assert_eq!(
        shrunk,
        Some(violation.kind),
        "{bug:?}: the shrunk trace fails otherwise"
    );
    assert!(
        replayed.shrunk_ops <= replayed.original_ops,
        "{bug:?}: shrinking grew the trace"
    );
    println!(
        "{bug:?} caught after {} crash states, in workload {}: {}",
        report.crash_states, violation.workload, violation.token
    );
    violation.clone()
}

/// The violation is the one the named check reports.
fn found_by(violation: &Violation, check: &str) {
    assert!(
        violation.message.contains(check),
        "expected a violation of {check:?}, found: {violation}"
    );
}

#[test]
fn commit_without_flush_is_caught() {
    caught(Bug::Log(LogBug::CommitWithoutFlush));
}

#[test]
fn a_stale_live_read_is_caught_by_the_live_oracle() {
    let violation = caught(Bug::Log(LogBug::StaleLiveRead));
    found_by(&violation, "read of data block");
}

#[test]
fn a_commit_that_skips_validation_is_caught_by_the_live_oracle() {
    let violation = caught(Bug::Logical(LogicalBug::ValidationSkipped));
    found_by(&violation, "expected a conflict");
}

#[test]
fn the_last_block_dropped_by_installation_is_caught() {
    let _ = caught(Bug::Log(LogBug::LastBlockDropped));
}

#[test]
fn a_failed_sync_taken_for_a_good_one_is_caught_by_the_fsync_gate() {
    let violation = caught(Bug::Log(LogBug::FailedSyncIgnored));
    found_by(&violation, "fsync gate");
}

#[test]
fn replay_without_checksum_is_caught() {
    caught(Bug::Log(LogBug::ReplayWithoutChecksum));
}

#[test]
fn header_before_install_durable_is_caught() {
    caught(Bug::Log(LogBug::HeaderBeforeInstallDurable));
}

#[test]
fn no_sequence_jump_is_caught() {
    caught(Bug::Log(LogBug::NoSequenceJump));
}

#[test]
fn replicated_write_skipping_d2_is_caught() {
    caught(Bug::ReplicatedSkipsD2);
}

#[test]
fn a_bitmap_bit_cleared_before_its_sync_is_caught() {
    caught_with(FuzzConfig {
        bug: Some(Bug::Replicated(ReplicatedBug::ClearBeforeSync)),
        replicated: true,
        ..FuzzConfig::default()
    });
}

#[test]
fn integrity_skip_verify_is_caught_with_damage_on_a_single_disk() {
    caught_with(FuzzConfig {
        bug: Some(Bug::Integrity(IntegrityBug::SkipVerify)),
        bit_rot: true,
        misdirect: true,
        lost_writes: true,
        ..FuzzConfig::default()
    });
}

#[test]
fn integrity_skip_verify_is_caught_with_bit_rot_on_a_pair() {
    caught_with(FuzzConfig {
        bug: Some(Bug::Integrity(IntegrityBug::SkipVerify)),
        replicated: true,
        bit_rot: true,
        crash_points: 4,
        samples: 2,
        state_cap: 4,
        ..FuzzConfig::default()
    });
}

#[test]
fn integrity_tags_after_sync_is_caught() {
    caught(Bug::Integrity(IntegrityBug::TagsAfterSync));
}

#[test]
fn a_repair_written_to_the_wrong_member_is_caught_by_the_repair_check() {
    let violation = caught_with(FuzzConfig {
        bug: Some(Bug::Replicated(ReplicatedBug::RepairWritesWrongMember)),
        replicated: true,
        // Many short workloads: the variant needs one whose bad block a read meets.
        crash_points: 2,
        samples: 1,
        state_cap: 2,
        depth: 1,
        ..FuzzConfig::default()
    });
    found_by(&violation, "repair:");
}
