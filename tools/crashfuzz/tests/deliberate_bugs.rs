//! The oracle catches real bugs: each deliberately wrong variant of the stack (four in the log,
//! two in the replicated pair, two in the checksummed disk) is found by the default
//! configuration and budget — reads that skip verification with damage faults, on a single
//! disk and on a pair — and the violation's replay token reproduces the same violation and
//! shrinks it.

use txdisk_crashfuzz::{fuzz, replay, Bug, FuzzConfig, IntegrityBug, LogBug, ReplicatedBug};

fn caught(bug: Bug) {
    caught_with(FuzzConfig {
        bug: Some(bug),
        replicated: bug == Bug::ReplicatedSkipsD2,
        ..FuzzConfig::default()
    });
}

/// `config` (with its `bug`) finds a violation whose token replays it and shrinks.
fn caught_with(config: FuzzConfig) {
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
}

#[test]
fn commit_without_flush_is_caught() {
    caught(Bug::Log(LogBug::CommitWithoutFlush));
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
