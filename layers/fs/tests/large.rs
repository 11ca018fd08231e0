//! Scale: a 100 MiB file written in 1 MiB pieces (each split into several transactions), read
//! back and compared byte for byte; a directory of 10,000 entries created, listed, looked up
//! and half removed; the invariant checker passes after each.

use std::collections::BTreeSet;
use txdisk_fs::{check_invariants, Fs, FsError, MemStore, MkfsOptions, ROOT_INO};

const MIB: usize = 1 << 20;

/// The bytes of piece `index` of the large file: distinct per piece and per position.
fn piece(index: usize) -> Vec<u8> {
    (0..MIB)
        .map(|i| (i as u8) ^ (index as u8).wrapping_mul(97) ^ ((i >> 11) as u8))
        .collect()
}

#[test]
fn a_100_mib_file_reads_back_exactly() -> Result<(), Box<dyn std::error::Error>> {
    let fs = Fs::mkfs(
        MemStore::new(32 * 1024, 256),
        &MkfsOptions {
            inode_count: Some(64),
            ..MkfsOptions::default()
        },
    )?;
    let ino = fs.create(ROOT_INO, "big")?;
    assert!(
        fs.write_chunk_bytes() < MIB as u64,
        "each 1 MiB write must span chunks"
    );
    for index in 0..100 {
        fs.write(ino, (index * MIB) as u64, &piece(index))?;
    }
    fs.fsync()?;
    let stat = fs.stat(ino)?;
    assert_eq!(stat.size_bytes, 100 * MIB as u64);
    for index in 0..100 {
        let bytes = fs.read(ino, (index * MIB) as u64, MIB)?;
        assert!(
            bytes == piece(index),
            "piece {index} of the 100 MiB file differs"
        );
    }
    let report = check_invariants(fs.store())?;
    assert_eq!(report.file_bytes, 100 * MIB as u64);
    // The file: 25,600 data blocks, 1 indirect, 1 double-indirect root and 49 of its children (25,078 blocks past the first 522).
    assert_eq!(stat.blocks, 25_600 + 1 + 1 + 49);
    // Plus the root directory's one block.
    assert_eq!(report.blocks_used, stat.blocks + 1);
    fs.unlink(ROOT_INO, "big")?;
    let report = check_invariants(fs.store())?;
    // An empty directory owns no block: its tree went with its last entry.
    assert_eq!(report.blocks_used, 0);
    Ok(())
}

#[test]
fn a_directory_of_10000_entries() -> Result<(), Box<dyn std::error::Error>> {
    let fs = Fs::mkfs(
        MemStore::new(4096, 256),
        &MkfsOptions {
            inode_count: Some(10_240),
            ..MkfsOptions::default()
        },
    )?;
    let dir = fs.mkdir(ROOT_INO, "many")?;
    for i in 0..10_000 {
        fs.create(dir, format!("entry-{i:05}"))?;
    }
    let names: BTreeSet<String> = fs.readdir(dir)?.iter().map(|e| e.name_lossy()).collect();
    let expected: BTreeSet<String> = (0..10_000).map(|i| format!("entry-{i:05}")).collect();
    assert_eq!(names, expected);
    for i in (0..10_000).step_by(97) {
        let ino = fs.lookup(dir, format!("entry-{i:05}"))?;
        assert_eq!(fs.stat(ino)?.nlink, 1);
    }
    assert!(matches!(
        fs.create(dir, "entry-04242"),
        Err(FsError::Exists)
    ));
    let report = check_invariants(fs.store())?;
    assert_eq!(report.files, 10_000);
    for i in (0..10_000).step_by(2) {
        fs.unlink(dir, format!("entry-{i:05}"))?;
    }
    assert_eq!(fs.readdir(dir)?.len(), 5_000);
    assert!(matches!(
        fs.lookup(dir, "entry-00000"),
        Err(FsError::NotFound)
    ));
    let report = check_invariants(fs.store())?;
    assert_eq!(report.files, 5_000);
    Ok(())
}
