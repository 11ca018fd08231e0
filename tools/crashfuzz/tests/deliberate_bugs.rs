//! The oracle catches real bugs: each deliberately wrong variant of the stack (four in the log,
//! one in the replicated pair) is found by the default configuration and budget, and the
//! violation's replay token reproduces the same violation and shrinks it.

use txdisk_crashfuzz::{fuzz, replay, Bug, FuzzConfig, LogBug};

fn caught(bug: Bug) {
    let config = FuzzConfig {
        bug: Some(bug),
        replicated: bug == Bug::ReplicatedSkipsD2,
        max_violations: 1,
        ..FuzzConfig::default()
    };
    let report = fuzz(&config, &mut |_| {}).unwrap_or_else(|e| panic!("{bug:?}: {e}"));
    println!("{bug:?}: {report}");
    let Some(violation) = report.violations.first() else {
        panic!(
            "seed {}: the default budget did not catch {bug:?}: {report}",
            config.seed
        );
    };
    let replayed = replay(&violation.token)
        .unwrap_or_else(|e| panic!("{bug:?}: replay of {}: {e}", violation.token));
    println!("{replayed}");
    let Some((kind, message)) = &replayed.violation else {
        panic!(
            "{bug:?}: the token {} does not reproduce the violation",
            violation.token
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
