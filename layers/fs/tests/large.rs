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

/// The directory B-tree under churn, against a set of names: names removed in the order a
/// listing returns them (which empties the leftmost leaves first, as a spool drained by
/// `readdir` does), new names added meanwhile, and random removals; after every phase the
/// listing is exactly the set, every name is found, and the invariant checker passes (which
/// checks the tree's key order and ranges). Seeded; the seed is printed on failure.
#[test]
fn a_directory_under_churn_keeps_its_index_in_order() -> Result<(), Box<dyn std::error::Error>> {
    let seed = 0xb7ee_5eed;
    let mut rng = txdisk_disk::rng::SplitMix64::new(seed);
    let fs = Fs::mkfs(
        MemStore::new(8192, 256),
        &MkfsOptions {
            inode_count: Some(16_384),
            hash_seed: Some([seed, 1]),
        },
    )?;
    let dir = fs.mkdir(ROOT_INO, "spool")?;
    let mut names = BTreeSet::new();
    let mut next = 0u32;
    let mut add = |fs: &Fs<MemStore>, names: &mut BTreeSet<String>, count: u32| {
        for _ in 0..count {
            // Long names: fewer per leaf, so more leaves and interior nodes.
            let name = format!("{next:08}-{}", "m".repeat(60));
            next += 1;
            fs.create(dir, &name).expect("create");
            names.insert(name);
        }
    };
    let check = |fs: &Fs<MemStore>, names: &BTreeSet<String>, phase: &str| {
        let listed: BTreeSet<String> = fs
            .readdir(dir)
            .expect("readdir")
            .iter()
            .map(|e| e.name_lossy())
            .collect();
        assert!(listed == *names, "seed {seed:#x}, {phase}: listing differs");
        for name in names.iter().step_by(7) {
            fs.lookup(dir, name)
                .unwrap_or_else(|e| panic!("seed {seed:#x}, {phase}: {name}: {e}"));
        }
        check_invariants(fs.store()).unwrap_or_else(|v| panic!("seed {seed:#x}, {phase}: {v}"));
    };
    add(&fs, &mut names, 3_000);
    check(&fs, &names, "after 3000 creates");
    for round in 0..6 {
        // Drain the first entries in listing order, then refill.
        let drained: Vec<Vec<u8>> = fs
            .readdir(dir)?
            .into_iter()
            .take(900)
            .map(|e| e.name)
            .collect();
        for name in &drained {
            fs.unlink(dir, name)?;
            names.remove(&String::from_utf8_lossy(name).into_owned());
        }
        check(&fs, &names, &format!("round {round}, drained"));
        add(&fs, &mut names, 1_000);
        check(&fs, &names, &format!("round {round}, refilled"));
        // Random removals anywhere.
        let all: Vec<String> = names.iter().cloned().collect();
        for _ in 0..200 {
            let name = &all[rng.below(all.len() as u64) as usize];
            if names.remove(name) {
                fs.unlink(dir, name)?;
            }
        }
        check(&fs, &names, &format!("round {round}, random removals"));
    }
    for name in std::mem::take(&mut names) {
        fs.unlink(dir, &name)?;
    }
    check(&fs, &names, "emptied");
    assert!(fs.readdir(dir)?.is_empty());
    assert_eq!(fs.stat(dir)?.blocks, 0, "an empty directory owns no block");
    fs.rmdir(ROOT_INO, "spool")?;
    Ok(())
}
