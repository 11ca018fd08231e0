//! Images crafted with valid checksums but absurd fields (no random flip can make these): the
//! check still ends in a diagnosis, never a panic.

use txdisk_disk::{Disk, FileDisk};
use txdisk_inspect::damaged::{make, Damage};
use txdisk_inspect::{check, logdump, CheckOptions, DumpOptions};
use txdisk_integrity::IntegrityDisk;
use txdisk_log::tooling::{Header, Superblock};

fn verdict(images: &[std::path::PathBuf]) -> i32 {
    let fsck = match check(images, &CheckOptions::default()) {
        Ok(report) => report.exit_code(),
        Err(_) => 8,
    };
    let _ = logdump(
        &images[0],
        &DumpOptions {
            raw: true,
            ..DumpOptions::default()
        },
    );
    fsck
}

#[test]
fn superblock_with_huge_geometry() {
    for log_blocks in [u64::MAX, u64::MAX - 3, u64::MAX / 2, 1 << 40] {
        let dir = tempfile::tempdir().unwrap();
        let images = make(Damage::CleanSingle, dir.path()).unwrap();
        let disk = IntegrityDisk::open(FileDisk::open(&images[0]).unwrap()).unwrap();
        let mut sb = Superblock::decode(&disk.read(0).unwrap(), disk.size_blocks()).unwrap();
        sb.log_blocks = log_blocks;
        disk.write(0, &sb.encode()).unwrap();
        disk.sync().unwrap();
        drop(disk); // fsck inspects images at rest only
        let code = verdict(&images);
        assert_eq!(code, 4, "log_blocks {log_blocks}");
    }
}

#[test]
fn header_with_huge_positions() {
    for (tail_pos, tail_seq) in [
        (u64::MAX, 1),
        (u64::MAX - 40, u64::MAX),
        (1 << 62, 1 << 62),
        (5, u64::MAX),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let images = make(Damage::CleanSingle, dir.path()).unwrap();
        let disk = IntegrityDisk::open(FileDisk::open(&images[0]).unwrap()).unwrap();
        let sb = Superblock::decode(&disk.read(0).unwrap(), disk.size_blocks()).unwrap();
        let header = Header {
            generation: 1,
            tail_pos,
            tail_seq,
        };
        disk.write(header.slot_addr(), &header.encode(&sb)).unwrap();
        disk.sync().unwrap();
        drop(disk); // fsck inspects images at rest only
        let code = verdict(&images);
        assert!(
            code == 4 || code == 0,
            "tail {tail_pos} seq {tail_seq}: {code}"
        );
    }
}
