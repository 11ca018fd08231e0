//! One writer per image, through the real binary: a second `serve`, an `fsck --repair`, a
//! `scrub` or an `fs mount` beside a running `serve` (and a `serve` beside a mount) is refused
//! with exit 8 and a one-line reason, the first holder is unaffected and loses nothing to a
//! `kill -9`, after which the next open succeeds. Also: a refused format leaves no file
//! behind, and fsck finds and `--repair` rebuilds a blank replacement and an older copy of a
//! member put back.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use txdisk_nbd::client::Client;
use txdisk_nbd::testkit::ServerProcess;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn txdisk(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_txdisk"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn ok(args: &[&str]) -> String {
    let run = txdisk(args);
    assert_eq!(
        run.code, 0,
        "txdisk {args:?}: {} {}",
        run.stdout, run.stderr
    );
    run.stdout
}

/// The second holder's refusal: exit 8, one line on stderr naming the image as in use.
fn assert_refused(run: &Run, image: &Path, what: &str) {
    assert_eq!(run.code, 8, "{what}: {} {}", run.stdout, run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{what}: {}", run.stderr);
    assert!(
        run.stderr.contains(&image.display().to_string()),
        "{what}: the reason names the image: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("in use by process")
            || run.stderr.contains("open for writing by process"),
        "{what}: the reason names the holder: {}",
        run.stderr
    );
}

fn format_pair(dir: &Path) -> [PathBuf; 2] {
    let images = [dir.join("a.img"), dir.join("b.img")];
    ok(&[
        "format",
        images[0].to_str().unwrap(),
        images[1].to_str().unwrap(),
        "--size",
        "16M",
        "--log",
        "1M",
    ]);
    images
}

fn paths(images: &[PathBuf]) -> Vec<&str> {
    images.iter().map(|path| path.to_str().unwrap()).collect()
}

fn serve(images: &[PathBuf]) -> ServerProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_txdisk"));
    cmd.arg("serve")
        .args(images)
        .args(["--listen", "127.0.0.1:0", "--export", "disk"]);
    ServerProcess::spawn(cmd, Duration::from_secs(60)).unwrap()
}

fn block(tag: u8) -> Vec<u8> {
    vec![tag; 4096]
}

#[test]
fn a_second_writer_is_refused_and_the_first_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let images = format_pair(dir.path());
    let server = serve(&images);
    let mut client = Client::connect(server.addr(), "disk").unwrap();
    client.write(0, &block(1), true).unwrap();

    let mut second_serve = vec!["serve"];
    second_serve.extend(paths(&images));
    second_serve.extend(["--listen", "127.0.0.1:0"]);
    assert_refused(&txdisk(&second_serve), &images[0], "a second serve");
    let mut repair = vec!["fsck", "--repair"];
    repair.extend(paths(&images));
    assert_refused(&txdisk(&repair), &images[0], "fsck --repair beside serve");
    let mut scrub = vec!["scrub"];
    scrub.extend(paths(&images));
    assert_refused(&txdisk(&scrub), &images[0], "scrub beside serve");
    let mut check = vec!["fsck"];
    check.extend(paths(&images));
    assert_refused(
        &txdisk(&check),
        &images[0],
        "a read-only fsck of a live image",
    );
    assert_refused(
        &txdisk(&["logdump", images[1].to_str().unwrap()]),
        &images[1],
        "logdump of a live member",
    );
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let pair = format!("{},{}", images[0].display(), images[1].display());
    assert_refused(
        &txdisk(&["fs", "mount", &pair, mountpoint.to_str().unwrap()]),
        &images[0],
        "fs mount beside serve",
    );

    // The first server is unaffected: it serves and acknowledges, and keeps all of it.
    client.write(4096, &block(2), true).unwrap();
    assert_eq!(client.read(0, 4096).unwrap(), block(1));
    server.kill9().unwrap();
    let server = serve(&images); // no stale lock after SIGKILL
    let mut client = Client::connect(server.addr(), "disk").unwrap();
    assert_eq!(client.read(0, 4096).unwrap(), block(1));
    assert_eq!(client.read(4096, 4096).unwrap(), block(2));
    client.disconnect().unwrap();
    server.terminate(Duration::from_secs(30)).unwrap();
    let run = txdisk(&check);
    assert_eq!(run.code, 0, "clean after the stop: {}", run.stdout);
}

#[test]
fn serve_is_refused_beside_a_mount() {
    if !Path::new("/dev/fuse").exists() {
        println!("SKIP: /dev/fuse is absent");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let images = format_pair(dir.path());
    let pair = format!("{},{}", images[0].display(), images[1].display());
    ok(&["fs", "mkfs", &pair]);
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let mount = match common::mount(&pair, &mountpoint) {
        Ok(mount) => mount,
        Err(stderr) if common::not_permitted(&stderr) => {
            println!("SKIP: FUSE mounts are not permitted here: {stderr}");
            return;
        }
        Err(stderr) => panic!("the mount did not come up: {stderr}"),
    };
    std::fs::write(mountpoint.join("kept.txt"), b"kept\n").unwrap();
    let mut second = vec!["serve"];
    second.extend(paths(&images));
    second.extend(["--listen", "127.0.0.1:0"]);
    assert_refused(&txdisk(&second), &images[0], "serve beside a mount");
    // The mount is unaffected; unmount it (SIGTERM) and read the file back.
    assert_eq!(
        std::fs::read(mountpoint.join("kept.txt")).unwrap(),
        b"kept\n"
    );
    common::terminate(&mount);
    assert!(mount.wait_with_output().unwrap().status.success());
    assert_eq!(ok(&["fs", "cat", &pair, "/kept.txt"]), "kept\n");
}

#[test]
fn a_refused_format_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("x.img");
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    for args in [
        vec![
            "format",
            image.to_str().unwrap(),
            "--size",
            "40",
            "--log",
            "100",
        ],
        vec![
            "format",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--size",
            "8",
            "--log",
            "8",
        ],
    ] {
        let run = txdisk(&args);
        assert_eq!(run.code, 8, "{args:?}: {}", run.stderr);
        for path in [&image, &a, &b] {
            assert!(!path.exists(), "{args:?} left {} behind", path.display());
        }
    }
    ok(&[
        "format",
        image.to_str().unwrap(),
        "--size",
        "4M",
        "--log",
        "64",
    ]);
    // A second member that exists already is refused before the first is created.
    std::fs::write(&b, b"somebody's file").unwrap();
    let run = txdisk(&["format", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(run.code, 8, "{}", run.stderr);
    assert!(!a.exists(), "format created d1 beside an existing d2");
    assert_eq!(std::fs::read(&b).unwrap(), b"somebody's file");
}

/// A pair with a file in its file system, closed cleanly.
fn pair_with_file(dir: &Path) -> ([PathBuf; 2], String) {
    let images = format_pair(dir);
    let pair = format!("{},{}", images[0].display(), images[1].display());
    ok(&["fs", "mkfs", &pair]);
    (images, pair)
}

fn put(dir: &Path, pair: &str, name: &str, text: &str) {
    let source = dir.join("source.txt");
    std::fs::write(&source, text).unwrap();
    ok(&["fs", "put", pair, source.to_str().unwrap(), name]);
}

fn fsck_repairs_then_clean(images: &[PathBuf], finding: &str) {
    let mut check = vec!["fsck"];
    check.extend(paths(images));
    let run = txdisk(&check);
    assert_eq!(
        run.code, 4,
        "fsck before repair: {} {}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout.contains(finding),
        "fsck lacks {finding:?}: {}",
        run.stdout
    );
    let mut repair = vec!["fsck", "--repair"];
    repair.extend(paths(images));
    let run = txdisk(&repair);
    assert_eq!(run.code, 1, "fsck --repair: {} {}", run.stdout, run.stderr);
    let run = txdisk(&check);
    assert_eq!(
        run.code, 0,
        "fsck after repair: {} {}",
        run.stdout, run.stderr
    );
}

#[test]
fn fsck_repairs_a_blank_replacement_member() {
    let dir = tempfile::tempdir().unwrap();
    let (images, pair) = pair_with_file(dir.path());
    put(dir.path(), &pair, "/one.txt", "one\n");
    let size = std::fs::metadata(&images[1]).unwrap().len();
    std::fs::remove_file(&images[1]).unwrap();
    std::fs::File::create(&images[1])
        .unwrap()
        .set_len(size)
        .unwrap();
    fsck_repairs_then_clean(&images, "blank replacement");
    assert_eq!(ok(&["fs", "cat", &pair, "/one.txt"]), "one\n");
    // d2 holds the data itself now: d1 can go.
    std::fs::remove_file(&images[0]).unwrap();
    std::fs::File::create(&images[0])
        .unwrap()
        .set_len(size)
        .unwrap();
    fsck_repairs_then_clean(&images, "blank replacement");
    assert_eq!(ok(&["fs", "cat", &pair, "/one.txt"]), "one\n");
}

#[test]
fn an_older_copy_of_a_member_put_back_is_stale() {
    for restored in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let (images, pair) = pair_with_file(dir.path());
        let old_copy = dir.path().join("old.img");
        std::fs::copy(&images[restored], &old_copy).unwrap();
        put(dir.path(), &pair, "/one.txt", "one\n");
        put(dir.path(), &pair, "/two.txt", "two\n");
        std::fs::rename(&old_copy, &images[restored]).unwrap();
        fsck_repairs_then_clean(&images, "stale");
        assert_eq!(ok(&["fs", "cat", &pair, "/one.txt"]), "one\n");
        assert_eq!(ok(&["fs", "cat", &pair, "/two.txt"]), "two\n");
        // And through open alone (no fsck): restore once more, read, and both members agree.
        std::fs::copy(&images[restored], &old_copy).unwrap();
        put(dir.path(), &pair, "/three.txt", "three\n");
        std::fs::rename(&old_copy, &images[restored]).unwrap();
        assert_eq!(ok(&["fs", "cat", &pair, "/three.txt"]), "three\n");
        let mut check = vec!["fsck"];
        check.extend(paths(&images));
        let run = txdisk(&check);
        assert_eq!(run.code, 0, "open rebuilt the stale member: {}", run.stdout);
    }
}
