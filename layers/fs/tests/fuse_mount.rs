//! The FUSE mount against real programs: a file system on a MemStore is mounted with the
//! `fuse` feature and driven with `ls`, `cp` of a large file in and out with `cmp`, `mv`, `rm`,
//! `mkdir -p`, `ln`, `df`, `find` and `tar` of this crate's source tree in and out (compared with
//! `diff -r`); after unmounting, every operation is flushed and the invariant checker passes.
//! Skipped, with the reason printed, where `/dev/fuse` is absent.

#![cfg(feature = "fuse")]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use txdisk_fs::{check_invariants, Fs, MemStore, MkfsOptions, ROOT_INO};

/// Runs a bash script with `M` (mount point), `T` (scratch dir) and `S` (this crate's
/// directory) set; panics with its output if it fails.
fn sh(mount: &Path, scratch: &Path, script: &str) -> String {
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .env("M", mount)
        .env("T", scratch)
        .env("S", env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "script failed ({}):\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn real_programs_against_the_mount() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: /dev/fuse is absent on this machine");
        return;
    }
    // 64 MiB of store, 256 blocks per transaction.
    let store = Arc::new(MemStore::new(16 * 1024, 256));
    let fs = Arc::new(Fs::mkfs(Arc::clone(&store), &MkfsOptions::default()).expect("mkfs"));
    let mount = tempfile::tempdir().expect("mount dir");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let (m, t) = (mount.path(), scratch.path());
    let session = txdisk_fs::fuse::spawn_mount(Arc::clone(&fs), m).expect("mount");

    sh(m, t, "mkdir -p \"$M/a/b/c\" && test -d \"$M/a/b/c\"");
    // A 24 MiB file, not a whole number of blocks, copied in and out.
    sh(
        m,
        t,
        "head -c 25165831 /dev/urandom > \"$T/big\"
        cp \"$T/big\" \"$M/a/big\"
        cmp \"$T/big\" \"$M/a/big\"
        cp \"$M/a/big\" \"$T/big.out\"
        cmp \"$T/big\" \"$T/big.out\"",
    );
    sh(
        m,
        t,
        "mv \"$M/a/big\" \"$M/a/b/moved\"
        test ! -e \"$M/a/big\"
        cmp \"$T/big\" \"$M/a/b/moved\"",
    );
    let listing = sh(m, t, "ls -la \"$M/a/b\"");
    assert!(
        listing.contains("moved") && listing.contains("25165831"),
        "{listing}"
    );
    // tar of this crate's source tree in and out.
    sh(
        m,
        t,
        "tar -C \"$S\" -cf \"$T/tree.tar\" src tests Cargo.toml FORMAT.md
        tar -C \"$M\" -xf \"$T/tree.tar\"
        diff -r \"$S/src\" \"$M/src\"
        diff -r \"$S/tests\" \"$M/tests\"
        mkdir \"$T/back\"
        tar -C \"$M\" -cf - src tests | tar -C \"$T/back\" -xf -
        diff -r \"$S/src\" \"$T/back/src\"
        diff -r \"$S/tests\" \"$T/back/tests\"",
    );
    let found = sh(m, t, "cd \"$M\" && find src tests | sort");
    let expected = sh(m, t, "cd \"$S\" && find src tests | sort");
    assert_eq!(found, expected);
    sh(
        m,
        t,
        "echo hello > \"$M/h\" && test \"$(cat \"$M/h\")\" = hello
        ln \"$M/h\" \"$M/a/h2\"
        test \"$(stat -c %h \"$M/h\")\" = 2
        rm \"$M/a/h2\"
        df \"$M\" > /dev/null
        rm \"$M/h\" \"$M/a/b/moved\"
        rm -r \"$M/tests\"
        test ! -e \"$M/tests\"
        rmdir \"$M/a/b/c\"
        ! rmdir \"$M/a\" 2>/dev/null
        sync",
    );
    session.umount_and_join().expect("unmount");

    assert_eq!(
        store.pending_commits(),
        0,
        "unmounting flushes every operation"
    );
    let report = check_invariants(&store).expect("consistent after the mount");
    assert!(report.files > 5);
    let names: Vec<String> = fs
        .readdir(ROOT_INO)
        .expect("readdir")
        .iter()
        .map(|e| e.name_lossy())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["Cargo.toml", "FORMAT.md", "a", "src"]);
}

fn mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let dir = dir.to_string_lossy();
    mounts
        .lines()
        .any(|line| line.split(' ').nth(1) == Some(&*dir))
}

#[test]
fn serve_until_unmounts_and_flushes_on_the_stop_cue() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: /dev/fuse is absent on this machine");
        return;
    }
    let store = Arc::new(MemStore::new(4096, 256));
    let fs = Arc::new(Fs::mkfs(Arc::clone(&store), &MkfsOptions::default()).expect("mkfs"));
    let mount = tempfile::tempdir().expect("mount dir");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let dir = mount.path().to_path_buf();
    let (stop, cue) = std::sync::mpsc::channel();
    let server = {
        let (fs, dir) = (Arc::clone(&fs), dir.clone());
        std::thread::spawn(move || {
            txdisk_fs::fuse::serve_until(fs, &dir, &Default::default(), &cue)
        })
    };
    // Wait (bounded) for the mount to appear; a server that failed to mount ends its thread.
    for _ in 0..600 {
        if mounted(&dir) || server.is_finished() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        mounted(&dir),
        "the file system did not appear at {}",
        dir.display()
    );
    sh(&dir, scratch.path(), "printf durable > \"$M/note\"");
    stop.send(()).expect("server listening");
    server.join().expect("server thread").expect("serve_until");
    assert!(!mounted(&dir), "still mounted after the stop cue");
    assert_eq!(store.pending_commits(), 0, "every operation flushed");
    let ino = fs
        .lookup(ROOT_INO, "note")
        .expect("the file written through the mount");
    assert_eq!(fs.read(ino, 0, 100).expect("read"), b"durable");
}

/// The background flusher makes completed operations durable while the mount stays up, and
/// without it they wait for an fsync or the unmount.
#[test]
fn the_background_flusher_bounds_what_a_crash_can_take() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: /dev/fuse is absent on this machine");
        return;
    }
    let pending_after_a_write = |flush_interval: Option<std::time::Duration>| {
        let store = Arc::new(MemStore::new(4096, 256));
        let fs = Arc::new(Fs::mkfs(Arc::clone(&store), &MkfsOptions::default()).expect("mkfs"));
        let mount = tempfile::tempdir().expect("mount dir");
        let scratch = tempfile::tempdir().expect("scratch dir");
        let options = txdisk_fs::fuse::MountOptions { flush_interval };
        let session = txdisk_fs::fuse::spawn_mount_with(Arc::clone(&fs), mount.path(), &options)
            .expect("mount");
        sh(mount.path(), scratch.path(), "printf x > \"$M/f\"");
        // Many flush intervals of 50 ms: the flusher has run whatever the scheduler did.
        std::thread::sleep(std::time::Duration::from_millis(1_000));
        let pending = store.pending_commits();
        session.umount_and_join().expect("unmount");
        assert_eq!(store.pending_commits(), 0, "unmounting flushes");
        pending
    };
    let with = pending_after_a_write(Some(std::time::Duration::from_millis(50)));
    assert_eq!(with, 0, "the flusher left {with} commits unflushed");
    let without = pending_after_a_write(None);
    assert!(
        without > 0,
        "with no flusher the write should wait for fsync or unmount"
    );
}
