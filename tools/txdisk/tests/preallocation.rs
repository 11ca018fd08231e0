//! What `txdisk format` leaves on the host file system: every block a commit overwrites and
//! syncs — the superblock, the header slots, the whole log region, and a pair's metadata slots —
//! is a *written* extent, so no commit's `fdatasync` depends on converting an unwritten extent
//! (`filefrag -v` reports the flags; skipped where it is absent or reports nothing).

use std::path::Path;
use std::process::Command;

/// Block ranges `filefrag -v` flags as unwritten, as `(first, last)` file blocks.
fn unwritten_ranges(path: &Path) -> Option<Vec<(u64, u64)>> {
    let output = Command::new("filefrag").arg("-v").arg(path).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !text.contains("logical_offset") {
        return None;
    }
    let mut ranges = Vec::new();
    for line in text.lines().filter(|line| line.contains("unwritten")) {
        // "   1:      259..    2047:   27535619..  27537407:   1789:   last,unwritten,eof"
        let fields: Vec<&str> = line.split(':').collect();
        let (first, last) = fields.get(1)?.trim().split_once("..")?;
        ranges.push((first.trim().parse().ok()?, last.trim().parse().ok()?));
    }
    Some(ranges)
}

fn format(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_txdisk"))
        .arg("format")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn assert_written(path: &Path, blocks: u64) -> bool {
    let Some(unwritten) = unwritten_ranges(path) else {
        println!("SKIP: filefrag reports no extents here");
        return false;
    };
    for (first, last) in unwritten {
        assert!(
            first >= blocks,
            "{}: blocks {first}..={last} are unwritten, but the first {blocks} must be written",
            path.display()
        );
    }
    true
}

#[test]
fn metadata_and_log_are_written_extents() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single.img");
    format(&[single.to_str().unwrap(), "--size", "8M", "--log", "1M"]);
    // Superblock, two header slots, 256 log blocks.
    if !assert_written(&single, 3 + 256) {
        return;
    }
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    format(&[
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--size",
        "8M",
        "--log",
        "1M",
    ]);
    // Two pair metadata slots, then the log's superblock, header slots and log region.
    for member in [&a, &b] {
        assert_written(member, 2 + 3 + 256);
    }
}
