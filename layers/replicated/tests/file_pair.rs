//! The pair over two image files (`FileDisk`), as `txdisk::open` uses it: format, write, close,
//! reopen without copying; lose one image file and replace it by a fresh blank one, which
//! `open` rebuilds; open with one image only.

use txdisk_disk::{Block, Disk, FileDisk};
use txdisk_replicated::{
    replicas_agree, FormatOptions, Phase, ReplicaStatus, ReplicatedDisk, Role,
};

const DATA_BLOCKS: u64 = 64;

/// Blocks of each member for `DATA_BLOCKS` with the default bitmap chunk.
fn member_blocks() -> u64 {
    txdisk_replicated::member_blocks_for(DATA_BLOCKS, txdisk_replicated::DEFAULT_CHUNK_BLOCKS)
        .expect("the default chunk size is valid")
}

#[test]
fn image_files_survive_losing_either_one() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (dir.path().join("a.img"), dir.path().join("b.img"));
    let size = member_blocks();
    let (d1, d2) = (
        FileDisk::create(&p1, size).unwrap(),
        FileDisk::create(&p2, size).unwrap(),
    );
    ReplicatedDisk::format(
        &d1,
        &d2,
        &FormatOptions {
            pair_id: None,
            assume_equal: true,
            ..Default::default()
        },
    )
    .unwrap();
    let pair = ReplicatedDisk::open(d1, d2, &mut |_| {}).unwrap();
    assert_eq!(pair.size_blocks(), DATA_BLOCKS);
    for addr in 0..DATA_BLOCKS {
        pair.write(addr, &Block::filled(addr as u8 ^ 0x5a)).unwrap();
    }
    pair.close().unwrap();

    let mut phases = Vec::new();
    let pair = ReplicatedDisk::open(
        FileDisk::open(&p1).unwrap(),
        FileDisk::open(&p2).unwrap(),
        &mut |p| phases.push(p.phase),
    )
    .unwrap();
    assert!(
        phases.is_empty(),
        "a cleanly closed pair copied: {phases:?}"
    );
    pair.close().unwrap();

    for lost in [&p1, &p2] {
        std::fs::remove_file(lost).unwrap();
        FileDisk::create(lost, size).unwrap();
        let mut phases = Vec::new();
        let pair = ReplicatedDisk::open(
            FileDisk::open(&p1).unwrap(),
            FileDisk::open(&p2).unwrap(),
            &mut |p| phases.push(p.phase),
        )
        .unwrap();
        assert_eq!(
            phases.last(),
            Some(&Phase::Rebuild),
            "the blank image must be rebuilt"
        );
        assert_eq!(pair.status().replicas, [ReplicaStatus::Active; 2]);
        replicas_agree(&pair).unwrap();
        for addr in 0..DATA_BLOCKS {
            assert_eq!(pair.read(addr).unwrap(), Block::filled(addr as u8 ^ 0x5a));
        }
        pair.close().unwrap();
    }

    let pair = ReplicatedDisk::open_degraded(FileDisk::open(&p2).unwrap(), &mut |_| {}).unwrap();
    assert_eq!(
        pair.status().replicas,
        [ReplicaStatus::Missing, ReplicaStatus::Active]
    );
    assert_eq!(pair.read(3).unwrap(), Block::filled(3 ^ 0x5a));
    pair.close().unwrap();
    // Opened alone and only read: a.img missed nothing, and is not copied over.
    let mut phases = Vec::new();
    let pair = ReplicatedDisk::open(
        FileDisk::open(&p1).unwrap(),
        FileDisk::open(&p2).unwrap(),
        &mut |p| phases.push(p.phase),
    )
    .unwrap();
    assert!(phases.is_empty(), "nothing to copy: {phases:?}");
    pair.close().unwrap();

    let pair = ReplicatedDisk::open_degraded(FileDisk::open(&p2).unwrap(), &mut |_| {}).unwrap();
    pair.write(3, &Block::filled(0x33)).unwrap();
    pair.close().unwrap();
    // a.img missed the write b.img made alone: it is stale now and is rebuilt, not trusted.
    let mut phases = Vec::new();
    let pair = ReplicatedDisk::open(
        FileDisk::open(&p1).unwrap(),
        FileDisk::open(&p2).unwrap(),
        &mut |p| phases.push(p.phase),
    )
    .unwrap();
    assert_eq!(phases.last(), Some(&Phase::Rebuild));
    assert_eq!(pair.read_replica(Role::D1, 3).unwrap(), Block::filled(0x33));
    pair.close().unwrap();
}
