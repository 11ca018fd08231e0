//! Exclusive access through the library: a second `txdisk::open` of an image or pair that is
//! open — in this process or in another (this test binary re-executed as the holder) — is
//! refused with `Locked`, the first handle's durable commits all survive a crash (SIGKILL of
//! the holder), and the next open after it succeeds. `txdisk::format` refuses a geometry that
//! cannot fit before it creates any file.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use txdisk::disk::DiskError;
use txdisk::{Block, Disk, Error, FormatOptions, OpenOptions};

const HOLDER_ENV: &str = "TXDISK_TEST_STACK_HOLDER";
const COMMITS: u64 = 20;

fn geometry() -> FormatOptions {
    FormatOptions {
        size_blocks: 1024,
        log_blocks: 64,
    }
}

fn images(dir: &Path, count: usize) -> Vec<PathBuf> {
    let images: Vec<PathBuf> = ["a.img", "b.img"][..count]
        .iter()
        .map(|name| dir.join(name))
        .collect();
    txdisk::format(&images, &geometry()).unwrap();
    images
}

fn assert_locked(result: Result<txdisk::Stack, Error>, what: &str) {
    match result {
        Err(Error::Disk(DiskError::Locked { .. })) => {}
        Err(other) => panic!("{what}: refused for the wrong reason: {other}"),
        Ok(_) => panic!("{what}: a second handle was let in"),
    }
}

#[test]
fn a_second_open_in_this_process_is_refused_and_the_first_keeps_its_commits() {
    for count in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let images = images(dir.path(), count);
        let first = txdisk::open(&images, OpenOptions::default()).unwrap();
        first.write(3, &Block::filled(1)).unwrap();
        assert_locked(txdisk::open(&images, OpenOptions::default()), "second open");
        first.write(4, &Block::filled(2)).unwrap(); // durable on return
        drop(first); // a crash as far as the images know
        let again = txdisk::open(&images, OpenOptions::default()).unwrap();
        assert_eq!(again.read(3).unwrap(), Block::filled(1), "{count} image(s)");
        assert_eq!(again.read(4).unwrap(), Block::filled(2), "{count} image(s)");
        again.close().unwrap();
    }
}

/// Not a test on its own: the body of the holder process (does nothing without the variable).
#[test]
fn holder_process() {
    let Some(list) = std::env::var_os(HOLDER_ENV) else {
        return;
    };
    let images: Vec<PathBuf> = std::env::split_paths(&list).collect();
    let stack = txdisk::open(&images, OpenOptions::default()).unwrap();
    for addr in 0..COMMITS {
        stack.write(addr, &Block::filled(addr as u8 + 1)).unwrap();
    }
    println!("committed");
    std::io::stdout().flush().unwrap();
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink); // until killed
}

#[test]
fn another_process_is_refused_and_its_commits_survive_its_sigkill() {
    for count in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let images = images(dir.path(), count);
        let mut holder = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "holder_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOLDER_ENV, std::env::join_paths(&images).unwrap())
            .stdout(Stdio::piped())
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(holder.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("committed") {
            line.clear();
            assert_ne!(
                out.read_line(&mut line).unwrap(),
                0,
                "the holder exited early"
            );
        }
        assert_locked(
            txdisk::open(&images, OpenOptions::default()),
            "open beside a process",
        );
        holder.kill().unwrap();
        holder.wait().unwrap();
        let stack = txdisk::open(&images, OpenOptions::default()).expect("no stale lock");
        for addr in 0..COMMITS {
            assert_eq!(
                stack.read(addr).unwrap(),
                Block::filled(addr as u8 + 1),
                "{count} image(s): acknowledged commit at {addr} lost"
            );
        }
        stack.close().unwrap();
    }
}

#[test]
fn format_refuses_a_geometry_before_creating_files() {
    let dir = tempfile::tempdir().unwrap();
    let bad = FormatOptions {
        size_blocks: 40,
        log_blocks: 100,
    };
    for count in [1, 2] {
        let images: Vec<PathBuf> = ["a.img", "b.img"][..count]
            .iter()
            .map(|name| dir.path().join(name))
            .collect();
        assert!(txdisk::format(&images, &bad).is_err());
        for image in &images {
            assert!(!image.exists(), "a refused format left {}", image.display());
        }
        txdisk::format(&images, &geometry()).expect("the retry works");
        for image in &images {
            std::fs::remove_file(image).unwrap();
        }
    }
}

#[test]
fn the_same_image_twice_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("a.img");
    let twice = [image.clone(), dir.path().join(".").join("a.img")];
    match txdisk::format(&twice, &geometry()) {
        Err(Error::SameImageTwice { .. }) => {}
        other => panic!("format of one path twice: {:?}", other.err()),
    }
    assert!(!image.exists(), "a refused format left the image behind");
    let pair = images(dir.path(), 2);
    let same = [pair[0].clone(), pair[0].clone()];
    match txdisk::open(&same, OpenOptions::default()) {
        Err(Error::SameImageTwice { path }) => assert!(path.ends_with("a.img"), "{path}"),
        Err(other) => panic!("open of one image twice: {other}"),
        Ok(_) => panic!("open of one image twice succeeded"),
    }
}
