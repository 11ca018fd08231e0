//! Epochs: a member put back from an older copy of itself — taken one or more clean
//! open/write/close cycles ago — is stale (fewer events), is rebuilt from the current member and
//! never served; two members that each ran alone (a split brain) are refused, never merged.
//! Each scenario on `SimDisk`s, for either member restored.

use std::sync::Arc;
use txdisk_disk::{Block, Disk, DiskImage, SimDisk};
use txdisk_replicated::{
    replicas_agree, FormatOptions, ReplicaStatus, ReplicatedDisk, ReplicatedError, Role,
};

const DATA_BLOCKS: u64 = 16;

/// Blocks of each member for `DATA_BLOCKS` with the default bitmap chunk.
fn member_blocks() -> u64 {
    txdisk_replicated::member_blocks_for(DATA_BLOCKS, txdisk_replicated::DEFAULT_CHUNK_BLOCKS)
        .expect("the default chunk size is valid")
}

type Pair = ReplicatedDisk<Arc<SimDisk>>;

fn formatted() -> [DiskImage; 2] {
    let size = member_blocks();
    let (d1, d2) = (SimDisk::new(size), SimDisk::new(size));
    let options = FormatOptions {
        pair_id: Some(0xe90c),
        assume_equal: true,
        ..Default::default()
    };
    ReplicatedDisk::format(&d1, &d2, &options).unwrap();
    [d1.durable_image(), d2.durable_image()]
}

fn open(images: &[DiskImage; 2]) -> (Pair, [Arc<SimDisk>; 2]) {
    let disks = images
        .clone()
        .map(|image| Arc::new(SimDisk::from_image(&image)));
    let pair = ReplicatedDisk::open(Arc::clone(&disks[0]), Arc::clone(&disks[1]), &mut |_| {})
        .expect("open");
    (pair, disks)
}

/// Opens the pair, writes `value` at every address, closes it cleanly: the images after.
fn cycle(images: &[DiskImage; 2], value: u8) -> [DiskImage; 2] {
    let (pair, disks) = open(images);
    for addr in 0..DATA_BLOCKS {
        pair.write(addr, &Block::filled(value)).unwrap();
    }
    pair.close().unwrap();
    disks.map(|disk| disk.durable_image())
}

fn restored_copy_is_rebuilt(restored: Role, cycles: u8) {
    let mut images = cycle(&formatted(), 1);
    let old_copy = images[restored.index()].clone();
    for value in 2..2 + cycles {
        images = cycle(&images, value);
    }
    let newest = Block::filled(1 + cycles);
    images[restored.index()] = old_copy;
    let (pair, _disks) = open(&images);
    for addr in 0..DATA_BLOCKS {
        assert_eq!(
            pair.read(addr).unwrap(),
            newest,
            "{restored} restored {cycles} cycle(s) back: block {addr} served stale"
        );
        for role in [Role::D1, Role::D2] {
            assert_eq!(
                pair.read_replica(role, addr).unwrap(),
                newest,
                "{restored} restored {cycles} cycle(s) back: {role} not rebuilt at {addr}"
            );
        }
    }
    assert_eq!(pair.status().replicas, [ReplicaStatus::Active; 2]);
    replicas_agree(&pair).expect("both members equal after the rebuild");
}

#[test]
fn an_older_copy_of_d2_put_back_is_rebuilt() {
    for cycles in 1..=3 {
        restored_copy_is_rebuilt(Role::D2, cycles);
    }
}

#[test]
fn an_older_copy_of_d1_put_back_is_never_served() {
    for cycles in 1..=3 {
        restored_copy_is_rebuilt(Role::D1, cycles);
    }
}

/// Opens one member alone, writes `value` everywhere, closes it: that member's image after.
fn run_alone(image: &DiskImage, value: u8) -> DiskImage {
    let disk = Arc::new(SimDisk::from_image(image));
    let pair = ReplicatedDisk::open_degraded(Arc::clone(&disk), &mut |_| {}).unwrap();
    for addr in 0..DATA_BLOCKS {
        pair.write(addr, &Block::filled(value)).unwrap();
    }
    pair.close().unwrap();
    disk.durable_image()
}

#[test]
fn two_members_that_each_ran_alone_are_refused() {
    let images = cycle(&formatted(), 1);
    let split = [run_alone(&images[0], 2), run_alone(&images[1], 3)];
    let disks = split
        .clone()
        .map(|image| Arc::new(SimDisk::from_image(&image)));
    match ReplicatedDisk::open(Arc::clone(&disks[0]), Arc::clone(&disks[1]), &mut |_| {}) {
        Err(error @ ReplicatedError::SplitBrain { .. }) => {
            let text = error.to_string();
            assert!(text.contains("d1") && text.contains("d2"), "{text}");
        }
        Err(other) => panic!("split brain refused for the wrong reason: {other}"),
        Ok(_) => panic!("a split brain was opened"),
    }
    // Refusal wrote nothing: each member still holds its own writes.
    for (index, disk) in disks.iter().enumerate() {
        assert_eq!(disk.durable_image().diff(&split[index]), Vec::<u64>::new());
    }
    // Running alone twice on the same side, the other untouched, is no split brain.
    let ahead = run_alone(&run_alone(&images[0], 4), 5);
    let (pair, _disks) = open(&[ahead, images[1].clone()]);
    assert_eq!(pair.read_replica(Role::D2, 0).unwrap(), Block::filled(5));
}

/// The clean close reached d1 but not d2 (a crash between the two Clean marks), then d2 ran
/// alone and acknowledged writes: d2 holds them, and d1's extra event (a Clean mark, no data)
/// must not outrank it.
#[test]
fn a_member_that_ran_alone_outranks_one_that_only_marked_clean_first() {
    let images = cycle(&formatted(), 1);
    let (pair, disks) = open(&images);
    pair.write(0, &Block::filled(2)).unwrap();
    pair.sync().unwrap();
    let d2_before_close = disks[1].durable_image();
    pair.close().unwrap();
    let torn_close = [disks[0].durable_image(), d2_before_close];
    // d1 is gone for a while: d2 runs alone, acknowledges a write, and crashes.
    let d2 = Arc::new(SimDisk::from_image(&torn_close[1]));
    let alone = ReplicatedDisk::open_degraded(Arc::clone(&d2), &mut |_| {}).unwrap();
    alone.write(0, &Block::filled(3)).unwrap();
    alone.sync().unwrap();
    drop(alone);
    let (pair, _disks) = open(&[torn_close[0].clone(), d2.durable_image()]);
    for role in [Role::D1, Role::D2] {
        assert_eq!(
            pair.read_replica(role, 0).unwrap(),
            Block::filled(3),
            "{role}: the write d2 acknowledged alone was lost"
        );
    }
}

/// d2 was opened alone once and closed without writing, while d1 ran on alone with writes:
/// no split brain (d2 wrote nothing), d1 is the source.
#[test]
fn a_member_opened_alone_without_writing_is_no_split_brain() {
    let images = cycle(&formatted(), 1);
    let d1_ahead = run_alone(&images[0], 2);
    let d2 = Arc::new(SimDisk::from_image(&images[1]));
    let idle = ReplicatedDisk::open_degraded(Arc::clone(&d2), &mut |_| {}).unwrap();
    assert_eq!(idle.read(0).unwrap(), Block::filled(1));
    idle.close().unwrap();
    let (pair, _disks) = open(&[d1_ahead, d2.durable_image()]);
    for role in [Role::D1, Role::D2] {
        assert_eq!(
            pair.read_replica(role, 5).unwrap(),
            Block::filled(2),
            "{role}"
        );
    }
}
