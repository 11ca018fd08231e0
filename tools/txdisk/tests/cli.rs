//! The real `txdisk` binary on real files: each bad input named in the requirements ends in a
//! one-line diagnosis and exit code 4 or 8 (never a panic's 101); damaged images give their
//! fsck results, `--repair` fixes what it can; logdump, format, `--json` and the demo work.

use std::path::{Path, PathBuf};
use std::process::Command;
use txdisk_inspect::damaged::{make, Damage};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn txdisk(args: &[&str], images: &[PathBuf]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_txdisk"))
        .args(args)
        .args(images)
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn damaged(damage: Damage) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let images = make(damage, dir.path()).unwrap();
    (dir, images)
}

#[test]
fn help_and_version() {
    let help = txdisk(&["--help"], &[]);
    assert_eq!(help.code, 0);
    for command in ["format", "fsck", "scrub", "logdump", "demo"] {
        assert!(
            help.stdout.contains(command),
            "--help lacks {command}: {}",
            help.stdout
        );
    }
    assert!(
        !help.stdout.contains("demo-writer"),
        "the internal subcommand is hidden"
    );
    for bad in [
        &["fsck"][..],
        &["fsck", "a", "b", "c"],
        &["scrub"],
        &["frobnicate"],
        &["logdump", "x", "-n", "many"],
    ] {
        let usage = txdisk(bad, &[]);
        assert_eq!(
            usage.code, 16,
            "{bad:?}: usage errors exit as e2fsck's: {}",
            usage.stderr
        );
        assert!(
            usage.stderr.starts_with("error:"),
            "{bad:?}: {}",
            usage.stderr
        );
    }
    let version = txdisk(&["--version"], &[]);
    assert_eq!(version.code, 0);
    assert!(
        version.stdout.starts_with("txdisk 0."),
        "{}",
        version.stdout
    );
}

/// Operational errors: exit 8 and exactly one line on stderr, nothing on stdout.
#[test]
fn unusable_inputs_exit_8_with_one_line() {
    let cases = [
        Damage::EmptyFile,
        Damage::Directory,
        Damage::NotAnImage,
        Damage::WrongMagic,
        Damage::FutureLogVersion,
        Damage::FuturePairVersion,
        Damage::DifferentPairs,
        Damage::FormatOne,
    ];
    for damage in cases {
        let (_dir, images) = damaged(damage);
        // Each member of two different pairs is fine on its own: only fsck and scrub see both.
        // The scrub works below the log: damage to the log's own fields is not its business.
        let commands: &[&str] = match damage {
            Damage::DifferentPairs => &["fsck", "scrub"],
            Damage::WrongMagic | Damage::FutureLogVersion => &["fsck", "logdump"],
            _ => &["fsck", "scrub", "logdump"],
        };
        for &command in commands {
            let images = if command == "logdump" {
                &images[..1]
            } else {
                &images[..]
            };
            let run = txdisk(&[command], images);
            assert_eq!(
                run.code, 8,
                "{command} {damage:?}: stdout {} stderr {}",
                run.stdout, run.stderr
            );
            assert_eq!(
                run.stderr.lines().count(),
                1,
                "{command} {damage:?}: {:?}",
                run.stderr
            );
            assert!(
                run.stderr.starts_with(&format!("txdisk: {command}: ")),
                "{command} {damage:?}: {}",
                run.stderr
            );
            assert!(
                run.stdout.is_empty(),
                "{command} {damage:?}: {}",
                run.stdout
            );
        }
    }
    let missing = txdisk(&["fsck", "/nonexistent/txdisk.img"], &[]);
    assert_eq!(missing.code, 8);
    assert!(
        missing.stderr.contains("No such file"),
        "{}",
        missing.stderr
    );
}

#[test]
fn diagnoses_name_the_trouble() {
    let expect = [
        (Damage::EmptyFile, "a disk must have at least one block"),
        (Damage::Directory, "is a directory"),
        (Damage::NotAnImage, "not a whole number of 4096-byte blocks"),
        (Damage::WrongMagic, "bad superblock magic"),
        (
            Damage::FutureLogVersion,
            "log format version 2 is not supported",
        ),
        (
            Damage::FuturePairVersion,
            "replicated pair format version 4 is not supported",
        ),
        (Damage::DifferentPairs, "belong to different pairs"),
        (
            Damage::FormatOne,
            "of txdisk format 1, which keeps no block checksums",
        ),
    ];
    for (damage, words) in expect {
        let (_dir, images) = damaged(damage);
        let run = txdisk(&["fsck"], &images);
        assert!(
            run.stderr.contains(words),
            "{damage:?}: {:?} lacks {words:?}",
            run.stderr
        );
    }
}

/// Damage on an image we recognise: exit 4, the last line of the report a one-line diagnosis,
/// and --repair refuses to write (still 4).
#[test]
fn damaged_images_exit_4_and_repair_writes_nothing() {
    let cases = [
        (Damage::TruncatedSingle, "truncated image?"),
        (Damage::TruncatedMember, "truncated image?"),
        (Damage::SuperblockChecksum, "superblock checksum mismatch"),
        (Damage::NoValidHeader, "no valid log header"),
        (Damage::BrokenChain, "log corruption"),
    ];
    for (damage, words) in cases {
        let (_dir, images) = damaged(damage);
        let run = txdisk(&["fsck"], &images);
        assert_eq!(run.code, 4, "{damage:?}: {}{}", run.stdout, run.stderr);
        let last = run.stdout.lines().last().unwrap_or_default();
        assert!(
            last.contains("problems left uncorrected") && last.contains(words),
            "{damage:?}: {last}"
        );
        let before: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).unwrap()).collect();
        let repair = txdisk(&["fsck", "--repair"], &images);
        assert_eq!(repair.code, 4, "{damage:?} --repair: {}", repair.stdout);
        assert!(
            repair.stdout.contains("repair: skipped"),
            "{damage:?}: {}",
            repair.stdout
        );
        let after: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).unwrap()).collect();
        assert!(
            before == after,
            "{damage:?}: repair wrote to an image it cannot correct"
        );
    }
}

/// The three states a crash can leave: recovery needed and a replica difference are found
/// and repaired (4, then 1, then 0); a torn transaction is reported.
#[test]
fn pending_torn_and_differing_images() {
    let (_dir, pending) = damaged(Damage::PendingPair);
    let run = txdisk(&["fsck"], &pending);
    assert_eq!(run.code, 4, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("recovery needed: 3 transaction(s) to replay"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("corruption"), "{}", run.stdout);
    let repaired = txdisk(&["fsck", "--repair"], &pending);
    assert_eq!(repaired.code, 1, "{}", repaired.stdout);
    assert!(
        repaired.stdout.contains("log: replayed 3 transaction(s)"),
        "{}",
        repaired.stdout
    );
    let last = repaired.stdout.lines().last().unwrap_or_default();
    assert!(
        last.contains("errors corrected, now clean (was: recovery needed: 3 transaction(s)"),
        "{last}"
    );
    assert_eq!(txdisk(&["fsck"], &pending).code, 0);

    let (_dir, torn) = damaged(Damage::TornTail);
    let run = txdisk(&["fsck"], &torn);
    assert_eq!(run.code, 4, "{}", run.stdout);
    assert!(
        run.stdout.contains("torn transaction at position"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("recovery needed: 1 transaction(s)"),
        "{}",
        run.stdout
    );

    let (_dir, differ) = damaged(Damage::ReplicaDifference);
    let run = txdisk(&["fsck"], &differ);
    assert_eq!(run.code, 4, "{}", run.stdout);
    assert!(
        run.stdout.contains("replicas differ at 3 of"),
        "{}",
        run.stdout
    );
    let repaired = txdisk(&["fsck", "--repair"], &differ);
    assert_eq!(repaired.code, 1, "{}", repaired.stdout);
    assert!(repaired.stdout.contains("3 of"), "{}", repaired.stdout);
    let clean = txdisk(&["fsck"], &differ);
    assert_eq!(clean.code, 0, "{}", clean.stdout);
    assert!(clean.stdout.contains("replicas: 0 of"), "{}", clean.stdout);
}

#[test]
fn json_output_carries_the_exit_code() {
    for damage in [Damage::CleanPair, Damage::PendingSingle, Damage::NotAnImage] {
        let (_dir, images) = damaged(damage);
        let run = txdisk(&["fsck", "--json"], &images);
        let value: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("{damage:?}: {e}: {}", run.stdout));
        assert_eq!(value["exit_code"], run.code, "{damage:?}: {}", run.stdout);
        assert!(
            run.stderr.is_empty(),
            "{damage:?}: no progress bar or log when piped: {}",
            run.stderr
        );
    }
    let (_dir, images) = damaged(Damage::PendingSingle);
    let run = txdisk(&["logdump", "--json"], &images);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(value["records"].as_array().unwrap().len(), 3);
}

#[test]
fn logdump_filters_and_raw() {
    let (_dir, images) = damaged(Damage::PendingSingle);
    let all = txdisk(&["logdump"], &images);
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert_eq!(
        all.stdout.matches("  sequence ").count(),
        3,
        "{}",
        all.stdout
    );
    assert!(all.stdout.contains("home blocks: 4 5"), "{}", all.stdout);
    assert!(
        all.stdout.contains("end of log: position"),
        "{}",
        all.stdout
    );
    let one = txdisk(&["logdump", "-n", "1"], &images);
    assert_eq!(
        one.stdout.matches("  sequence ").count(),
        1,
        "{}",
        one.stdout
    );
    let block = txdisk(&["logdump", "-b", "3"], &images);
    assert_eq!(
        block.stdout.matches("  sequence ").count(),
        1,
        "{}",
        block.stdout
    );
    assert!(
        block.stdout.contains("home blocks: 2 3"),
        "{}",
        block.stdout
    );
    let raw = txdisk(&["logdump", "--raw", "-n", "1"], &images);
    assert!(raw.stdout.contains("|TXDRECRD"), "{}", raw.stdout);
    let (_dir, broken) = damaged(Damage::BrokenChain);
    let run = txdisk(&["logdump"], &broken);
    assert_eq!(run.code, 4, "{}", run.stdout);
    assert!(run.stdout.contains("CORRUPTION"), "{}", run.stdout);
    assert!(
        run.stdout.contains("expected") && run.stdout.contains("checksum mismatch"),
        "{}",
        run.stdout
    );
}

#[test]
fn format_makes_clean_images() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let pair = [path("a.img"), path("b.img")];
    let run = txdisk(&["format", "--size", "2M", "--log", "64"], &pair);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(std::fs::metadata(&pair[0]).unwrap().len(), 2 << 20);
    assert_eq!(txdisk(&["fsck"], &pair).code, 0);
    let single = [path("s.img")];
    assert_eq!(
        txdisk(&["format", "--size", "512", "--log", "64K"], &single).code,
        0
    );
    assert_eq!(txdisk(&["fsck"], &single).code, 0);
    let again = txdisk(&["format", "--size", "512"], &single);
    assert_eq!(again.code, 8, "formatting over an existing file must fail");
    let bad_size = txdisk(&["format", "--size", "1001K"], &[path("odd.img")]);
    assert_eq!(bad_size.code, 8);
    assert!(
        bad_size.stderr.contains("whole number of 4096-byte blocks"),
        "{}",
        bad_size.stderr
    );
    assert!(!Path::new(&path("odd.img")).exists());
    let no_room = txdisk(
        &["format", "--size", "1000K", "--log", "4M"],
        &[path("small.img")],
    );
    assert_eq!(no_room.code, 8);
    assert!(
        no_room.stderr.contains("leaves no data region"),
        "{}",
        no_room.stderr
    );
    assert!(
        !Path::new(&path("small.img")).exists(),
        "a format that cannot fit leaves no file behind"
    );
}

#[test]
fn demo_tells_the_whole_story() {
    let run = txdisk(&["demo"], &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for words in [
        "Formatted a replicated pair",
        "exit code 4",
        "recovery needed",
        "exit code 1",
        "exit code 0",
        "every acknowledged transfer survived",
    ] {
        assert!(
            run.stdout.contains(words),
            "demo output lacks {words:?}: {}",
            run.stdout
        );
    }
    let json = txdisk(&["demo", "--json", "--transactions", "10"], &[]);
    assert_eq!(json.code, 0, "{}", json.stdout);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(value["steps"].as_array().unwrap().len() >= 7);
}

#[test]
fn crashfuzz_runs_and_rejects_bad_tokens() {
    let run = txdisk(&["crashfuzz", "--budget", "200", "--json"], &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        value["crash_states"].as_u64().unwrap() >= 200,
        "{}",
        run.stdout
    );
    assert_eq!(value["violations"].as_array().unwrap().len(), 0);
    let bad = txdisk(&["crashfuzz", "--replay", "not-a-token"], &[]);
    assert_eq!(bad.code, 8);
    assert_eq!(bad.stderr.lines().count(), 1, "{}", bad.stderr);
}

#[test]
fn verbose_logs_go_to_stderr() {
    let (_dir, images) = damaged(Damage::PendingSingle);
    let quiet = txdisk(&["fsck", "--repair"], &images);
    assert_eq!(quiet.code, 1, "{}", quiet.stdout);
    assert!(quiet.stderr.is_empty(), "{}", quiet.stderr);
    let (_dir, images) = damaged(Damage::PendingSingle);
    let loud = txdisk(&["-v", "fsck", "--repair"], &images);
    assert_eq!(loud.code, 1, "{}", loud.stdout);
    assert!(loud.stderr.contains("log recovered"), "{}", loud.stderr);
}

#[test]
fn special_files_are_refused_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for path in [fifo, PathBuf::from("/dev/null"), PathBuf::from("/dev/zero")] {
        for command in ["fsck", "logdump"] {
            let run = txdisk(&[command], std::slice::from_ref(&path));
            assert_eq!(run.code, 8, "{command} {}: {}", path.display(), run.stderr);
            assert!(
                run.stderr.contains("not a regular file or a block device"),
                "{command} {}: {}",
                path.display(),
                run.stderr
            );
        }
    }
}
