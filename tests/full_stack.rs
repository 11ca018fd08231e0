//! The whole stack through `txdisk::format` / `txdisk::open` on image files: a single image
//! round trip, and a replicated pair that loses either image file (deleted and replaced by a
//! fresh one) with nothing lost — the replacement is rebuilt and the replicas end equal.

use txdisk::integrity::IntegrityDisk;
use txdisk::{Block, Disk, FileDisk, FormatOptions, OpenOptions};

const OPTIONS: FormatOptions = FormatOptions {
    size_blocks: 2048,
    log_blocks: 256,
};

fn value(addr: u64, round: u8) -> Block {
    let mut block = Block::filled(round);
    block.as_bytes_mut()[..8].copy_from_slice(&addr.to_le_bytes());
    block
}

/// Writes `count` transactions of 3 blocks each; returns the addresses written.
fn write_round(stack: &txdisk::Stack, round: u8, count: u64) -> Vec<u64> {
    let mut written = Vec::new();
    for index in 0..count {
        let addrs = [
            index * 3,
            index * 3 + 1,
            (index * 7 + u64::from(round)) % 1500,
        ];
        stack
            .transaction(|tx| {
                for &addr in &addrs {
                    tx.write(addr, &value(addr, round))?;
                }
                Ok::<_, txdisk::LogicalError>(())
            })
            .expect("commit");
        written.extend(addrs);
    }
    written
}

fn expected_after(writes: &[(u64, u8)]) -> std::collections::BTreeMap<u64, Block> {
    writes
        .iter()
        .map(|&(addr, round)| (addr, value(addr, round)))
        .collect()
}

fn check(stack: &txdisk::Stack, expected: &std::collections::BTreeMap<u64, Block>) {
    for (addr, block) in expected {
        assert_eq!(
            &stack.read(*addr).expect("read"),
            block,
            "address {addr} lost"
        );
    }
}

#[test]
fn single_image_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let image = [dir.path().join("one.img")];
    txdisk::format(&image, &OPTIONS).unwrap();
    let stack = txdisk::open(&image, OpenOptions::default()).unwrap();
    let writes: Vec<(u64, u8)> = write_round(&stack, 1, 40)
        .into_iter()
        .map(|a| (a, 1))
        .collect();
    drop(stack); // no close: recovery must bring everything back
    let stack = txdisk::open(&image, OpenOptions::default()).unwrap();
    check(&stack, &expected_after(&writes));
    stack.close().unwrap();
    assert!(
        txdisk::format(&image, &OPTIONS).is_err(),
        "format over an existing image must refuse"
    );
}

fn lose_one_replica(lost: usize) {
    let dir = tempfile::tempdir().unwrap();
    let images = [dir.path().join("d1.img"), dir.path().join("d2.img")];
    txdisk::format(&images, &OPTIONS).unwrap();
    let stack = txdisk::open(&images, OpenOptions::default()).unwrap();
    let mut writes: Vec<(u64, u8)> = write_round(&stack, 1, 60)
        .into_iter()
        .map(|a| (a, 1))
        .collect();
    stack.close().unwrap();

    std::fs::remove_file(&images[lost]).unwrap();
    FileDisk::create(&images[lost], OPTIONS.size_blocks).unwrap();
    let stack = txdisk::open(&images, OpenOptions::default()).unwrap();
    check(&stack, &expected_after(&writes));
    writes.extend(write_round(&stack, 2, 30).into_iter().map(|a| (a, 2)));
    drop(stack); // a crash: the next open resyncs and recovers the log

    let stack = txdisk::open(&images, OpenOptions::default()).unwrap();
    check(&stack, &expected_after(&writes));
    stack.close().unwrap();
    let member = |path| IntegrityDisk::open(FileDisk::open(path).unwrap()).unwrap();
    let (d1, d2) = (member(&images[0]), member(&images[1]));
    // Every block verifies on both (each image keeps its own checksums, with its own salt);
    // the reserved metadata blocks name each replica's role and differ by design.
    for addr in txdisk::replicated::RESERVED_BLOCKS..d1.size_blocks() {
        assert_eq!(
            d1.read(addr).unwrap(),
            d2.read(addr).unwrap(),
            "replicas differ at block {addr} after losing d{}",
            lost + 1
        );
    }
}

#[test]
fn pair_survives_losing_d1() {
    lose_one_replica(0);
}

#[test]
fn pair_survives_losing_d2() {
    lose_one_replica(1);
}

#[test]
fn wrong_image_counts_are_refused() {
    let none: [&str; 0] = [];
    assert!(matches!(
        txdisk::open(&none, OpenOptions::default()),
        Err(txdisk::Error::ImageCount { count: 0 })
    ));
    assert!(matches!(
        txdisk::open(&["a", "b", "c"], OpenOptions::default()),
        Err(txdisk::Error::ImageCount { count: 3 })
    ));
}
