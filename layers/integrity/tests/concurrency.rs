//! Reads racing writes of the same blocks, and syncs racing both, on a real file: a read sees a
//! block and its tag from the same write (old or new, never a failed verification), and after
//! the last sync every block verifies on reopen.

use std::sync::Arc;
use txdisk_disk::{Block, Disk, FileDisk};
use txdisk_integrity::IntegrityDisk;

const BLOCKS: u64 = 40;
const ROUNDS: u8 = 60;

#[test]
fn racing_reads_writes_and_syncs_never_fail_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("racing.img");
    let disk = Arc::new(
        IntegrityDisk::format(FileDisk::create(&path, 300).expect("create")).expect("format"),
    );
    std::thread::scope(|scope| {
        for writer in 0..2u8 {
            let disk = disk.clone();
            scope.spawn(move || {
                for round in 1..=ROUNDS {
                    for addr in (u64::from(writer)..BLOCKS).step_by(2) {
                        disk.write(addr, &Block::filled(round)).expect("write");
                    }
                    if round % 7 == 0 {
                        disk.sync().expect("sync");
                    }
                }
            });
        }
        for _ in 0..2 {
            let disk = disk.clone();
            scope.spawn(move || {
                for _ in 0..(u64::from(ROUNDS) * 4) {
                    for addr in 0..BLOCKS {
                        let block = disk.read(addr).expect("a racing read verifies");
                        let byte = block.as_bytes()[0];
                        assert!(
                            block.as_bytes().iter().all(|b| *b == byte),
                            "block {addr} is torn"
                        );
                    }
                }
            });
        }
    });
    disk.sync().expect("sync");
    drop(disk);
    let reopened = IntegrityDisk::open(FileDisk::open(&path).expect("open")).expect("reopen");
    for addr in 0..BLOCKS {
        assert_eq!(
            reopened.read(addr).expect("verifies"),
            Block::filled(ROUNDS)
        );
    }
}
