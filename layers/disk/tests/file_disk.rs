//! `FileDisk` on temporary files — contents survive close and reopen, bad images are refused
//! with the right error (size not a multiple of 4096, empty), a read-only open refuses writes —
//! and the argument errors both disks share (out-of-range addresses, wrong block lengths).

mod common;

use common::tagged;
use std::fs::File;
use std::io::Write;
use txdisk_disk::{Block, Disk, DiskError, FileDisk, SimDisk, BLOCK_SIZE};

const SIZE_BLOCKS: u64 = 8;

#[test]
fn round_trip_across_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image");
    {
        let disk = FileDisk::create(&path, SIZE_BLOCKS).unwrap();
        assert_eq!(disk.size_blocks(), SIZE_BLOCKS);
        assert!(
            disk.read(5).unwrap().is_zero(),
            "a new image reads as zeros"
        );
        for addr in 0..SIZE_BLOCKS {
            disk.write(addr, &tagged(100 + addr)).unwrap();
        }
        disk.sync().unwrap();
        assert_eq!(disk.sync_count(), 1);
        assert_eq!(disk.read(3).unwrap(), tagged(103), "read before close");
    }
    let disk = FileDisk::open(&path).unwrap();
    assert_eq!(disk.size_blocks(), SIZE_BLOCKS);
    assert_eq!(disk.path(), path.as_path());
    for addr in 0..SIZE_BLOCKS {
        assert_eq!(
            disk.read(addr).unwrap(),
            tagged(100 + addr),
            "block {addr} after reopen"
        );
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        SIZE_BLOCKS * BLOCK_SIZE as u64
    );
}

#[test]
fn create_refuses_existing_file_and_zero_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image");
    FileDisk::create(&path, 1).unwrap();
    assert!(matches!(
        FileDisk::create(&path, 1),
        Err(DiskError::Open { .. })
    ));
    let other = dir.path().join("zero");
    assert!(matches!(
        FileDisk::create(&other, 0),
        Err(DiskError::Empty { .. })
    ));
    assert!(!other.exists(), "a refused create must not leave a file");
    let missing = dir.path().join("missing");
    assert!(matches!(
        FileDisk::open(&missing),
        Err(DiskError::Open { .. })
    ));
}

#[test]
fn out_of_range_addresses_err_on_both_disks() {
    let dir = tempfile::tempdir().unwrap();
    let file_disk = FileDisk::create(dir.path().join("image"), SIZE_BLOCKS).unwrap();
    let sim_disk = SimDisk::new(SIZE_BLOCKS);
    let disks: [&dyn Disk; 2] = [&file_disk, &sim_disk];
    for disk in disks {
        for addr in [SIZE_BLOCKS, SIZE_BLOCKS + 1, u64::MAX] {
            let expected = (addr, SIZE_BLOCKS);
            match disk.read(addr) {
                Err(DiskError::OutOfRange { addr, size_blocks }) => {
                    assert_eq!((addr, size_blocks), expected)
                }
                other => panic!("read {addr}: expected OutOfRange, got {other:?}"),
            }
            match disk.write(addr, &tagged(1)) {
                Err(DiskError::OutOfRange { addr, size_blocks }) => {
                    assert_eq!((addr, size_blocks), expected)
                }
                other => panic!("write {addr}: expected OutOfRange, got {other:?}"),
            }
        }
        // The last block is in range, and the refused write changed nothing.
        assert!(disk.read(SIZE_BLOCKS - 1).unwrap().is_zero());
    }
    assert_eq!(sim_disk.pending_writes(), 0);
}

#[test]
fn image_not_a_multiple_of_block_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd");
    let mut file = File::create(&path).unwrap();
    file.write_all(&vec![0u8; BLOCK_SIZE + 1]).unwrap();
    drop(file);
    match FileDisk::open(&path) {
        Err(DiskError::BadSize { size_bytes, .. }) => assert_eq!(size_bytes, BLOCK_SIZE as u64 + 1),
        other => panic!("expected BadSize, got {other:?}"),
    }
    assert!(matches!(
        FileDisk::open_read_only(&path),
        Err(DiskError::BadSize { .. })
    ));
}

#[test]
fn empty_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty");
    File::create(&path).unwrap();
    assert!(matches!(
        FileDisk::open(&path),
        Err(DiskError::Empty { .. })
    ));
    assert!(matches!(
        FileDisk::open_read_only(&path),
        Err(DiskError::Empty { .. })
    ));
}

#[test]
fn block_from_wrong_length_is_refused() {
    for len in [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE + 1, 2 * BLOCK_SIZE] {
        match Block::from_bytes(&vec![7u8; len]) {
            Err(DiskError::BadBlockLength { len: found }) => assert_eq!(found, len),
            other => panic!("from_bytes of {len} bytes: expected BadBlockLength, got {other:?}"),
        }
    }
    assert_eq!(
        Block::from_bytes(&[7u8; BLOCK_SIZE]).unwrap(),
        Block::filled(7)
    );
    assert!(matches!(
        Block::with_prefix(&vec![1u8; BLOCK_SIZE + 1]),
        Err(DiskError::BadBlockLength { len }) if len == BLOCK_SIZE + 1
    ));
    let prefixed = Block::with_prefix(b"txdisk").unwrap();
    assert_eq!(&prefixed.as_bytes()[..6], b"txdisk");
    assert!(prefixed.as_bytes()[6..].iter().all(|&b| b == 0));
}

#[test]
fn read_only_open_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image");
    {
        let disk = FileDisk::create(&path, SIZE_BLOCKS).unwrap();
        disk.write(2, &tagged(42)).unwrap();
        disk.sync().unwrap();
    }
    let disk = FileDisk::open_read_only(&path).unwrap();
    assert_eq!(disk.read(2).unwrap(), tagged(42));
    match disk.write(2, &tagged(43)) {
        Err(DiskError::Io { op, addr, source }) => {
            assert_eq!((op, addr), ("write", 2));
            assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied);
        }
        other => panic!("expected a refused write, got {other:?}"),
    }
    disk.sync().unwrap();
    drop(disk);
    let reopened = FileDisk::open(&path).unwrap();
    assert_eq!(
        reopened.read(2).unwrap(),
        tagged(42),
        "the refused write reached the file"
    );
}

/// `write_run` (one vectored write) lands every block where a `write` of each would, refuses a
/// run that ends past the disk without writing any of it, and agrees with the default
/// block-by-block implementation of `SimDisk`.
#[test]
fn write_run_matches_block_writes() {
    use txdisk_disk::{Block, Disk, FileDisk, SimDisk};
    let dir = tempfile::tempdir().unwrap();
    let file = FileDisk::create(dir.path().join("run.img"), 2100).unwrap();
    let sim = SimDisk::new(2100);
    let blocks: Vec<Block> = (0..1500u32)
        .map(|i| Block::filled((i % 251) as u8 + 1))
        .collect();
    let refs: Vec<&Block> = blocks.iter().collect();
    for disk in [&file as &dyn Disk, &sim as &dyn Disk] {
        disk.write_run(300, &refs).unwrap();
        disk.write_run(7, &refs[..1]).unwrap();
        disk.write_run(0, &[]).unwrap();
        assert!(
            disk.write_run(2000, &refs[..101]).is_err(),
            "a run past the end must be refused"
        );
    }
    for addr in 0..2100u64 {
        let expected = match addr {
            7 => blocks[0].clone(),
            300..=1799 => blocks[(addr - 300) as usize].clone(),
            _ => Block::zeroed(),
        };
        assert_eq!(file.read(addr).unwrap(), expected, "file block {addr}");
        assert_eq!(sim.read(addr).unwrap(), expected, "sim block {addr}");
    }
}
