//! Exclusive access: a `FileDisk` opened for writing locks its image against every other handle
//! — in this process and in another one (this test binary re-executed as the holder) — a
//! read-only handle shares with readers but not with a writer, the lock goes with the handle,
//! and a holder killed with SIGKILL leaves no stale lock.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use txdisk_disk::{Disk, DiskError, FileDisk, LockMode};

const SIZE_BLOCKS: u64 = 4;
const HOLDER_ENV: &str = "TXDISK_TEST_LOCK_HOLDER";

fn locked(result: txdisk_disk::Result<FileDisk>) -> (LockMode, Option<u32>, String) {
    match result {
        Err(error @ DiskError::Locked { .. }) => {
            let text = error.to_string();
            let DiskError::Locked {
                wanted, holder_pid, ..
            } = error
            else {
                unreachable!()
            };
            (wanted, holder_pid, text)
        }
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second handle was let in"),
    }
}

#[test]
fn a_second_writer_in_this_process_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image");
    let first = FileDisk::create(&path, SIZE_BLOCKS).unwrap();
    let (wanted, holder, text) = locked(FileDisk::open(&path));
    assert_eq!(wanted, LockMode::Exclusive);
    assert_eq!(holder, Some(std::process::id()), "{text}");
    assert!(text.contains("image"), "the error names the image: {text}");
    assert!(text.contains("in use"), "{text}");
    let (wanted, _, text) = locked(FileDisk::open_read_only(&path));
    assert_eq!(wanted, LockMode::Shared);
    assert!(text.contains("open for writing"), "{text}");
    // The first handle is unaffected.
    first.write(1, &txdisk_disk::Block::filled(9)).unwrap();
    first.sync().unwrap();
    drop(first);
    let second = FileDisk::open(&path).unwrap();
    assert_eq!(second.read(1).unwrap(), txdisk_disk::Block::filled(9));
}

#[test]
fn readers_share_but_keep_a_writer_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image");
    drop(FileDisk::create(&path, SIZE_BLOCKS).unwrap());
    let reader1 = FileDisk::open_read_only(&path).unwrap();
    let reader2 = FileDisk::open_read_only(&path).unwrap();
    let (wanted, _, _) = locked(FileDisk::open(&path));
    assert_eq!(wanted, LockMode::Exclusive);
    drop((reader1, reader2));
    FileDisk::open(&path).unwrap();
}

/// Starts this test binary as a process that opens `path` for writing and holds it until killed.
fn spawn_holder(path: &std::path::Path) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "holder_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_ENV, path)
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    while !line.contains("holding") {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "holder exited early");
    }
    child
}

/// Not a test on its own: the body of the holder process (does nothing without the variable).
#[test]
fn holder_process() {
    let Some(path) = std::env::var_os(HOLDER_ENV) else {
        return;
    };
    let disk = FileDisk::open(&path).unwrap();
    disk.write(0, &txdisk_disk::Block::filled(1)).unwrap();
    println!("holding");
    std::io::stdout().flush().unwrap();
    // Until the parent kills us (or closes stdin).
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
}

#[test]
fn another_process_is_refused_and_a_killed_holder_leaves_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image");
    drop(FileDisk::create(&path, SIZE_BLOCKS).unwrap());
    let mut holder = spawn_holder(&path);
    let (_, pid, text) = locked(FileDisk::open(&path));
    assert_eq!(pid, Some(holder.id()), "the holder's pid is named: {text}");
    assert!(text.contains(&format!("process {}", holder.id())), "{text}");
    locked(FileDisk::open_read_only(&path));
    holder.kill().unwrap(); // SIGKILL
    holder.wait().unwrap();
    let disk = FileDisk::open(&path).expect("no stale lock after SIGKILL");
    assert_eq!(disk.size_blocks(), SIZE_BLOCKS);
}

/// A block device opened for writing is opened `O_EXCL`: a second writer is refused by the
/// kernel, with a message that says the device is busy (skipped where no loop device can be set
/// up: not root, or no loop driver).
#[test]
fn a_block_device_is_opened_exclusively() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing.img");
    drop(FileDisk::create(&backing, 256).unwrap());
    let attach = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&backing)
        .output();
    let device = match attach {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        }
        _ => {
            println!("SKIP: no loop device could be set up");
            return;
        }
    };
    let result = std::panic::catch_unwind(|| {
        let first = FileDisk::open(&device).unwrap();
        assert_eq!(first.size_blocks(), 256);
        match FileDisk::open(&device) {
            Err(error) => {
                let text = error.to_string();
                assert!(text.contains(&device), "{text}");
                assert!(
                    text.contains("busy") || text.contains("in use"),
                    "the reason says the device is taken: {text}"
                );
            }
            Ok(_) => panic!("a second writer opened {device}"),
        }
    });
    let _ = Command::new("losetup").args(["-d", &device]).status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
