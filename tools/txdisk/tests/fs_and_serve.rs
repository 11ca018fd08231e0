//! The `txdisk fs` and `txdisk serve` subcommands on real image files: the file system from the
//! shell (mkfs, mkdir -p, put/get of a multi-megabyte file compared byte for byte, ls, mv, rm,
//! stat, cat, errors); a FUSE mount used by real programs (ls, cp, cmp, mv, rm, mkdir -p, find,
//! tar) and stopped with SIGTERM with everything durable; and the NBD server driven by qemu-io
//! and nbdinfo, surviving SIGKILL and stopping cleanly on SIGTERM. Tests that need /dev/fuse or
//! an NBD client print SKIP and pass where it is absent.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use txdisk_nbd::testkit::{clients, ServerProcess, Start};

fn txdisk(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_txdisk"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = txdisk(args);
    assert_eq!(code, 0, "txdisk {args:?} failed: {stderr}");
    stdout
}

/// A formatted replicated pair with an empty file system; returns the `A,B` image argument.
fn pair_with_fs(dir: &Path) -> String {
    let (a, b) = (dir.join("a.img"), dir.join("b.img"));
    ok(&[
        "format",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--size",
        "64M",
        "--log",
        "4M",
    ]);
    let image = format!("{},{}", a.display(), b.display());
    ok(&["fs", "mkfs", &image]);
    image
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

#[test]
fn file_system_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let image = pair_with_fs(dir.path());
    ok(&["fs", "mkdir", &image, "/a/b/c", "-p"]);
    let source = dir.path().join("big.bin");
    let data = pattern(6 << 20, 7);
    std::fs::write(&source, &data).unwrap();
    ok(&[
        "fs",
        "put",
        &image,
        source.to_str().unwrap(),
        "/a/b/big.bin",
    ]);
    ok(&["fs", "mv", &image, "/a/b/big.bin", "/a/big.bin"]);
    let listing = ok(&["fs", "ls", &image, "/a"]);
    assert!(
        listing.contains("big.bin") && listing.contains('b'),
        "ls /a: {listing}"
    );
    let back = dir.path().join("back.bin");
    ok(&["fs", "get", &image, "/a/big.bin", back.to_str().unwrap()]);
    assert!(
        std::fs::read(&back).unwrap() == data,
        "the file read back differs"
    );
    let stat = ok(&["--json", "fs", "stat", &image, "/a/big.bin"]);
    assert!(
        stat.contains(&format!("\"size_bytes\":{}", data.len())),
        "stat: {stat}"
    );
    std::fs::write(dir.path().join("small.txt"), b"hello, disk\n").unwrap();
    ok(&[
        "fs",
        "put",
        &image,
        dir.path().join("small.txt").to_str().unwrap(),
        "/small.txt",
    ]);
    assert_eq!(ok(&["fs", "cat", &image, "/small.txt"]), "hello, disk\n");
    ok(&["fs", "rm", &image, "/small.txt"]);
    let (code, _, stderr) = txdisk(&["fs", "cat", &image, "/small.txt"]);
    assert_eq!(code, 8, "cat of a removed file: {stderr}");
    assert!(stderr.contains("no such file"), "{stderr}");
    let (code, _, stderr) = txdisk(&["fs", "rm", &image, "/a"]);
    assert_eq!(code, 8, "rm of a non-empty directory must fail: {stderr}");
    // The images are left closed cleanly: fsck finds nothing to do.
    let (a, b) = image.split_once(',').unwrap();
    let (code, stdout, _) = txdisk(&["fsck", a, b]);
    assert_eq!(code, 0, "fsck after the shell session: {stdout}");
}

fn run_in(dir: &Path, script: &str) {
    let status = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "script failed: {script}");
}

#[test]
fn fuse_mount_with_real_programs() {
    if !Path::new("/dev/fuse").exists() {
        println!("SKIP: /dev/fuse is absent");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = pair_with_fs(dir.path());
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let child = match common::mount(&image, &mountpoint) {
        Ok(child) => child,
        Err(stderr) if common::not_permitted(&stderr) => {
            println!("SKIP: FUSE mounts are not permitted here: {stderr}");
            return;
        }
        Err(stderr) => panic!("the mount did not come up: {stderr}"),
    };
    let mounted = || common::is_mounted(&mountpoint);
    let big = dir.path().join("big.bin");
    std::fs::write(&big, pattern(12 << 20, 3)).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("src/deep")).unwrap();
    for index in 0..20 {
        std::fs::write(
            tree.join(format!("src/deep/f{index}.txt")),
            format!("file {index}\n").repeat(index + 1),
        )
        .unwrap();
    }
    let m = mountpoint.display();
    let d = dir.path().display();
    run_in(dir.path(), &format!(
        "cp {d}/big.bin {m}/big.bin && cmp {d}/big.bin {m}/big.bin && \
         mkdir -p {m}/x/y/z && mv {m}/big.bin {m}/x/y/moved.bin && ls {m}/x/y | grep -q moved.bin && \
         cp {m}/x/y/moved.bin {d}/out.bin && cmp {d}/big.bin {d}/out.bin && \
         tar -C {d} -cf {m}/tree.tar tree && mkdir {m}/unpacked && tar -C {m}/unpacked -xf {m}/tree.tar && \
         diff -r {d}/tree {m}/unpacked/tree && test $(find {m}/unpacked -type f | wc -l) -eq 20 && \
         rm {m}/tree.tar && ls {m}"
    ));
    // SIGTERM: unmount, flush, close cleanly, exit 0.
    common::terminate(&child);
    let status = child.wait_with_output().unwrap().status;
    assert!(
        status.success(),
        "mount did not exit 0 on SIGTERM: {status:?}"
    );
    assert!(!mounted(), "still mounted after SIGTERM");
    let back = dir.path().join("after.bin");
    ok(&[
        "fs",
        "get",
        &image,
        "/x/y/moved.bin",
        back.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read(&back).unwrap() == std::fs::read(&big).unwrap(),
        "contents lost across the unmount"
    );
}

/// Spawns `txdisk serve` on one image in `dir`, formatting it on `Fresh`.
fn serve_spawner(dir: &Path) -> impl FnMut(Start) -> std::io::Result<ServerProcess> {
    let image: PathBuf = dir.join("served.img");
    move |start| {
        if let Start::Fresh { min_size_bytes } = start {
            let _ = std::fs::remove_file(&image);
            let blocks = min_size_bytes.div_ceil(4096) + 1024 + 16;
            let size = blocks.to_string();
            ok(&[
                "format",
                image.to_str().unwrap(),
                "--size",
                &size,
                "--log",
                "1024",
            ]);
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_txdisk"));
        cmd.args([
            "serve",
            image.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--export",
            "disk",
        ]);
        ServerProcess::spawn(cmd, Duration::from_secs(60))
    }
}

fn check(result: clients::CheckResult) {
    match result {
        Ok(clients::Outcome::Passed) => {}
        Ok(clients::Outcome::Skipped(why)) => println!("SKIP: {why}"),
        Err(error) => panic!("{error}"),
    }
}

#[test]
fn serve_with_qemu_io_and_nbdinfo() {
    let dir = tempfile::tempdir().unwrap();
    let mut spawn = serve_spawner(dir.path());
    check(clients::qemu_io_patterns_survive_kill(&mut spawn, "disk"));
    check(clients::nbdinfo_reports_size_and_flags(&mut spawn, "disk"));
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut spawn = serve_spawner(dir.path());
    let server = spawn(Start::Fresh {
        min_size_bytes: 1 << 20,
    })
    .unwrap();
    let status = server.terminate(Duration::from_secs(30)).unwrap();
    assert!(
        status.success(),
        "serve did not exit 0 on SIGTERM: {status:?}"
    );
    let (code, stdout, _) = txdisk(&["fsck", dir.path().join("served.img").to_str().unwrap()]);
    assert_eq!(
        code, 0,
        "the image must be clean after a graceful stop: {stdout}"
    );
}
