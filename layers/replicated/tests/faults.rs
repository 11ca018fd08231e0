//! Fault handling of the pair on `SimDisk`s, one scenario per test: bad blocks served from the
//! other replica and repaired, a stale replica never used as a source, both replicas lost, pairs
//! that do not belong together refused, clean close, blank replacements and online rebuild.

use std::sync::Arc;
use txdisk_disk::{Block, Disk, DiskError, DiskImage, SimDisk};
use txdisk_replicated::{
    recovered_from, replicas_agree, FormatOptions, Phase, ReplicaStatus, ReplicatedDisk,
    ReplicatedError, Role, WriteHistory, RESERVED_BLOCKS,
};

const DATA_BLOCKS: u64 = 16;

/// Blocks of each member for `DATA_BLOCKS` with the default bitmap chunk.
fn member_blocks() -> u64 {
    txdisk_replicated::member_blocks_for(DATA_BLOCKS, txdisk_replicated::DEFAULT_CHUNK_BLOCKS)
        .expect("the default chunk size is valid")
}

type Pair = ReplicatedDisk<Arc<SimDisk>>;

fn formatted(pair_id: u64) -> (Arc<SimDisk>, Arc<SimDisk>) {
    let size = member_blocks();
    let (d1, d2) = (Arc::new(SimDisk::new(size)), Arc::new(SimDisk::new(size)));
    let options = FormatOptions {
        pair_id: Some(pair_id),
        assume_equal: true,
        ..Default::default()
    };
    ReplicatedDisk::format(&d1, &d2, &options).expect("format");
    (d1, d2)
}

fn open(d1: &Arc<SimDisk>, d2: &Arc<SimDisk>) -> Pair {
    ReplicatedDisk::open(Arc::clone(d1), Arc::clone(d2), &mut |_| {}).expect("open")
}

/// A running disk whose durable contents are what `disk` held when the machine crashed, with
/// every pending write lost.
fn reboot(disk: &SimDisk) -> Arc<SimDisk> {
    disk.crash_now();
    Arc::new(SimDisk::from_image(&disk.durable_image()))
}

#[test]
fn bad_block_on_d1_is_served_from_d2_and_repaired() {
    let (d1, d2) = formatted(1);
    let pair = open(&d1, &d2);
    pair.write(5, &Block::filled(0x55)).unwrap();
    pair.sync().unwrap();
    d1.inject_read_error(5 + RESERVED_BLOCKS);
    let writes_before = d1.stats().writes;
    assert_eq!(
        pair.read(5).unwrap(),
        Block::filled(0x55),
        "the read must come from d2"
    );
    assert_eq!(
        d1.stats().writes,
        writes_before + 1,
        "d1 must be repaired by one write"
    );
    assert_eq!(
        pair.read_replica(Role::D1, 5).unwrap(),
        Block::filled(0x55),
        "d1 repaired"
    );
    assert_eq!(
        pair.status().replicas,
        [ReplicaStatus::Active; 2],
        "a bad block fails no replica"
    );
    // The same bad block on both: an error value for that block, and the pair lives on.
    d1.inject_read_error(6 + RESERVED_BLOCKS);
    d2.inject_read_error(6 + RESERVED_BLOCKS);
    assert!(matches!(
        pair.read(6),
        Err(DiskError::ReadError { addr: 6 })
    ));
    assert_eq!(pair.read(5).unwrap(), Block::filled(0x55));
}

#[test]
fn stale_replica_is_never_a_source_and_degraded_writes_survive() {
    let (d1, d2) = formatted(2);
    let pair = open(&d1, &d2);
    let mut history = WriteHistory::new();
    for addr in 0..4 {
        history.write(addr, &Block::filled(1));
        pair.write(addr, &Block::filled(1)).unwrap();
    }
    pair.sync().unwrap();
    history.sync_ok();
    // d1 stops; the pair runs degraded on d2 and takes writes d1 never sees.
    d1.fail_now();
    for addr in 0..4 {
        history.write(addr, &Block::filled(2));
        pair.write(addr, &Block::filled(2)).unwrap();
    }
    assert_eq!(
        pair.status().replicas,
        [ReplicaStatus::Failed, ReplicaStatus::Active]
    );
    pair.sync().unwrap();
    history.sync_ok();
    history.write(9, &Block::filled(3));
    pair.write(9, &Block::filled(3)).unwrap();
    drop(pair);
    // Crash; d1 comes back with its old, equal-looking contents.
    let (d1, d2) = (
        Arc::new(SimDisk::from_image(&d1.durable_image())),
        reboot(&d2),
    );
    let mut phases = Vec::new();
    let pair = ReplicatedDisk::open(Arc::clone(&d1), Arc::clone(&d2), &mut |p| {
        phases.push(p.phase)
    })
    .unwrap();
    assert!(
        phases.contains(&Phase::Rebuild),
        "the stale d1 must be rebuilt from d2, phases {phases:?}"
    );
    assert_eq!(pair.status().replicas, [ReplicaStatus::Active; 2]);
    for addr in 0..4 {
        assert_eq!(
            pair.read(addr).unwrap(),
            Block::filled(2),
            "block {addr} written while degraded was lost"
        );
        assert_eq!(
            pair.read_replica(Role::D1, addr).unwrap(),
            Block::filled(2),
            "d1 block {addr} not rebuilt"
        );
    }
    recovered_from(&pair, &history).unwrap();
}

#[test]
fn losing_both_replicas_is_an_error_value() {
    let (d1, d2) = formatted(3);
    let pair = open(&d1, &d2);
    pair.write(0, &Block::filled(1)).unwrap();
    d1.fail_now();
    pair.write(1, &Block::filled(1)).unwrap();
    d2.fail_now();
    assert!(matches!(
        pair.write(2, &Block::filled(1)),
        Err(DiskError::Failed)
    ));
    assert!(matches!(pair.read(0), Err(DiskError::Failed)));
    assert!(matches!(pair.sync(), Err(DiskError::Failed)));
    assert_eq!(pair.status().replicas, [ReplicaStatus::Failed; 2]);
    assert!(pair.close().is_err());
    let error = ReplicatedDisk::open(Arc::clone(&d1), Arc::clone(&d2), &mut |_| {})
        .err()
        .unwrap();
    assert!(
        matches!(error, ReplicatedError::AllReplicasFailed { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("both replicas have failed"),
        "{error}"
    );
}

#[test]
fn sync_failure_fails_that_replica_and_the_pair_sync_succeeds() {
    let (d1, d2) = formatted(4);
    let pair = open(&d1, &d2);
    pair.write(0, &Block::filled(1)).unwrap();
    d2.schedule_sync_failure(d2.ops());
    pair.sync().unwrap();
    assert_eq!(
        pair.status().replicas,
        [ReplicaStatus::Active, ReplicaStatus::Failed]
    );
    assert!(
        pair.status().events > 1,
        "the survivor's event counter must be bumped"
    );
}

fn foreign_copy() -> Arc<SimDisk> {
    let foreign = Arc::new(SimDisk::new(member_blocks()));
    foreign.write(1, &Block::filled(0x11)).unwrap();
    foreign
}

#[test]
fn disks_of_different_pairs_or_no_pair_are_refused() {
    let (a1, _a2) = formatted(10);
    let (_b1, b2) = formatted(11);
    let mismatch = ReplicatedDisk::open(Arc::clone(&a1), Arc::clone(&b2), &mut |_| {})
        .err()
        .unwrap();
    assert!(
        matches!(
            mismatch,
            ReplicatedError::PairMismatch {
                d1_pair_id: 10,
                d2_pair_id: 11
            }
        ),
        "{mismatch}"
    );
    let (c1, c2) = formatted(12);
    let swapped = ReplicatedDisk::open(Arc::clone(&c2), Arc::clone(&c1), &mut |_| {})
        .err()
        .unwrap();
    assert!(
        matches!(
            swapped,
            ReplicatedError::WrongRole {
                replica: Role::D1,
                found: Role::D2,
                ..
            }
        ),
        "{swapped}"
    );
    let foreign = Arc::new(SimDisk::new(member_blocks()));
    foreign.write(0, &Block::filled(0xee)).unwrap();
    let not_ours = ReplicatedDisk::open(Arc::clone(&a1), foreign, &mut |_| {})
        .err()
        .unwrap();
    assert!(
        matches!(
            not_ours,
            ReplicatedError::NotAPairMember { replica: Role::D2 }
        ),
        "{not_ours}"
    );
    let meta = txdisk_replicated::inspect_member(&*c2).unwrap().unwrap();
    assert_eq!((meta.pair_id, meta.role), (12, Role::D2));
    assert!(txdisk_replicated::inspect_member(&*foreign_copy()).is_err());
    let blank = || Arc::new(SimDisk::new(member_blocks()));
    assert!(txdisk_replicated::inspect_member(&*blank())
        .unwrap()
        .is_none());
    let unformatted = ReplicatedDisk::open(blank(), blank(), &mut |_| {})
        .err()
        .unwrap();
    assert!(
        matches!(unformatted, ReplicatedError::NotFormatted),
        "{unformatted}"
    );
}

#[test]
fn clean_close_copies_nothing_and_a_crash_resyncs() {
    let (d1, d2) = formatted(5);
    let pair = open(&d1, &d2);
    pair.write(3, &Block::filled(3)).unwrap();
    pair.close().unwrap();
    let writes = (d1.stats().writes, d2.stats().writes);
    let mut phases = Vec::new();
    let pair = ReplicatedDisk::open(Arc::clone(&d1), Arc::clone(&d2), &mut |p| {
        phases.push(p.phase)
    })
    .unwrap();
    assert!(
        phases.is_empty(),
        "a clean pair must open without copying, got {phases:?}"
    );
    assert_eq!(
        (d1.stats().writes, d2.stats().writes),
        writes,
        "opening a clean pair wrote"
    );
    assert!(pair.status().clean_on_disk);
    pair.write(3, &Block::filled(4)).unwrap();
    assert!(
        !pair.status().clean_on_disk,
        "a write must mark the pair dirty first"
    );
    drop(pair);
    let (d1, d2) = (reboot(&d1), reboot(&d2));
    let mut phases = Vec::new();
    let pair = ReplicatedDisk::open(d1, d2, &mut |p| phases.push(p.phase)).unwrap();
    assert_eq!(
        phases.last(),
        Some(&Phase::Resync),
        "a crashed pair must resync"
    );
    assert!(pair.status().clean_on_disk, "recovery ends clean");
    replicas_agree(&pair).unwrap();
}

#[test]
fn blank_replacement_is_rebuilt_at_open() {
    let (d1, d2) = formatted(6);
    let pair = open(&d1, &d2);
    for addr in 0..DATA_BLOCKS {
        pair.write(addr, &Block::filled(addr as u8 + 1)).unwrap();
    }
    pair.close().unwrap();
    // d1's image is lost; a fresh blank disk takes its place.
    let fresh = Arc::new(SimDisk::new(member_blocks()));
    let pair = ReplicatedDisk::open(Arc::clone(&fresh), Arc::clone(&d2), &mut |_| {}).unwrap();
    assert_eq!(pair.status().replicas, [ReplicaStatus::Active; 2]);
    for addr in 0..DATA_BLOCKS {
        assert_eq!(
            pair.read_replica(Role::D1, addr).unwrap(),
            Block::filled(addr as u8 + 1)
        );
    }
    replicas_agree(&pair).unwrap();
}

#[test]
fn open_degraded_then_online_rebuild() {
    let (d1, d2) = formatted(7);
    let pair = open(&d1, &d2);
    pair.write(1, &Block::filled(1)).unwrap();
    pair.close().unwrap();
    let pair = ReplicatedDisk::open_degraded(Arc::clone(&d2), &mut |_| {}).unwrap();
    assert_eq!(
        pair.status().replicas,
        [ReplicaStatus::Missing, ReplicaStatus::Active]
    );
    pair.write(2, &Block::filled(2)).unwrap();
    let replacement = Arc::new(SimDisk::new(member_blocks()));
    let report = pair.rebuild(Arc::clone(&replacement), &mut |_| {}).unwrap();
    assert_eq!(report.scanned_blocks, DATA_BLOCKS);
    assert_eq!(pair.status().replicas, [ReplicaStatus::Active; 2]);
    assert!(matches!(
        pair.rebuild(Arc::new(SimDisk::new(member_blocks())), &mut |_| {}),
        Err(ReplicatedError::NotDegraded)
    ));
    replicas_agree(&pair).unwrap();
    pair.close().unwrap();
    // The old d1 (events behind) and the rebuilt one: the old one is not of this pair any more
    // as far as currency goes — opening with the rebuilt d1 copies nothing.
    let pair = ReplicatedDisk::open(replacement, Arc::clone(&d2), &mut |_| {}).unwrap();
    assert_eq!(pair.read(2).unwrap(), Block::filled(2));
    drop(pair);
    let stale = ReplicatedDisk::open(Arc::clone(&d1), Arc::clone(&d2), &mut |_| {}).unwrap();
    assert_eq!(
        stale.read_replica(Role::D1, 2).unwrap(),
        Block::filled(2),
        "the old d1 must be rebuilt"
    );
}

#[test]
fn a_torn_metadata_slot_falls_back_to_the_other() {
    let (d1, d2) = formatted(8);
    let pair = open(&d1, &d2);
    pair.write(0, &Block::filled(9)).unwrap();
    pair.close().unwrap();
    let mut image: DiskImage = d1.durable_image();
    // Damage the newest slot of d1: the older one (Dirty, same events) is used instead.
    let newest = (0..RESERVED_BLOCKS).max_by_key(|addr| {
        match txdisk_replicated::Slot::decode(image.block(*addr).unwrap()) {
            txdisk_replicated::Slot::Valid(meta) => meta.seq,
            _ => 0,
        }
    });
    let newest = newest.unwrap();
    let mut torn = image.block(newest).unwrap().clone();
    torn.as_bytes_mut()[20] ^= 0xff;
    image.set_block(newest, torn).unwrap();
    let d1 = Arc::new(SimDisk::from_image(&image));
    let pair = ReplicatedDisk::open(d1, Arc::clone(&d2), &mut |_| {}).unwrap();
    assert_eq!(pair.read(0).unwrap(), Block::filled(9));
    replicas_agree(&pair).unwrap();
}

#[test]
fn bad_block_on_d1_during_resync_keeps_d2_value_and_repairs_d1() {
    let (d1, d2) = formatted(20);
    let pair = open(&d1, &d2);
    pair.write(4, &Block::filled(4)).unwrap();
    pair.sync().unwrap();
    drop(pair);
    let (d1, d2) = (reboot(&d1), reboot(&d2));
    d1.inject_read_error(4 + RESERVED_BLOCKS);
    let pair = ReplicatedDisk::open(Arc::clone(&d1), Arc::clone(&d2), &mut |_| {}).unwrap();
    assert_eq!(pair.status().replicas, [ReplicaStatus::Active; 2]);
    assert_eq!(
        pair.read_replica(Role::D1, 4).unwrap(),
        Block::filled(4),
        "d1 repaired from d2"
    );
    replicas_agree(&pair).unwrap();
}

#[test]
fn a_replacement_that_fails_mid_rebuild_leaves_the_pair_degraded() {
    let (d1, d2) = formatted(21);
    let pair = open(&d1, &d2);
    for addr in 0..DATA_BLOCKS {
        pair.write(addr, &Block::filled(7)).unwrap();
    }
    d2.fail_now();
    pair.sync().unwrap();
    let replacement = Arc::new(SimDisk::new(member_blocks()));
    // Its marker (2 writes, 1 sync) and a few copied blocks succeed, then it dies.
    replacement.schedule_fail_stop(12);
    let error = pair
        .rebuild(Arc::clone(&replacement), &mut |_| {})
        .err()
        .unwrap();
    assert!(
        matches!(
            error,
            ReplicatedError::RebuildAborted {
                replica: Role::D2,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        pair.status().replicas,
        [ReplicaStatus::Active, ReplicaStatus::Failed]
    );
    pair.write(0, &Block::filled(8)).unwrap();
    assert_eq!(pair.read(0).unwrap(), Block::filled(8));
    // A second replacement completes.
    let second = Arc::new(SimDisk::new(member_blocks()));
    pair.rebuild(second, &mut |_| {}).unwrap();
    replicas_agree(&pair).unwrap();
}

#[test]
fn losing_the_source_during_a_rebuild_is_an_error_not_a_stale_source() {
    let (d1, d2) = formatted(22);
    let pair = open(&d1, &d2);
    pair.write(0, &Block::filled(1)).unwrap();
    d2.fail_now();
    pair.sync().unwrap();
    d1.schedule_fail_stop(d1.ops() + 3);
    let replacement = Arc::new(SimDisk::new(member_blocks()));
    let error = pair
        .rebuild(Arc::clone(&replacement), &mut |_| {})
        .err()
        .unwrap();
    assert!(
        matches!(error, ReplicatedError::AllReplicasFailed { .. }),
        "{error}"
    );
    assert_eq!(pair.status().replicas, [ReplicaStatus::Failed; 2]);
    // The half-rebuilt replacement alone is refused: it says Rebuilding.
    let alone = ReplicatedDisk::open_degraded(replacement, &mut |_| {})
        .err()
        .unwrap();
    assert!(
        matches!(alone, ReplicatedError::NoCurrentReplica { .. }),
        "{alone}"
    );
}

#[test]
fn rebuilding_onto_the_current_member_itself_is_refused() {
    let (d1, d2) = formatted(23);
    open(&d1, &d2).close().unwrap();
    let pair = ReplicatedDisk::open_degraded(Arc::clone(&d2), &mut |_| {}).unwrap();
    let error = pair.rebuild(Arc::clone(&d2), &mut |_| {}).err().unwrap();
    assert!(
        matches!(
            error,
            ReplicatedError::WrongRole {
                replica: Role::D1,
                found: Role::D2,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        pair.status().replicas,
        [ReplicaStatus::Missing, ReplicaStatus::Active]
    );
    pair.rebuild(Arc::clone(&d1), &mut |_| {}).unwrap();
    replicas_agree(&pair).unwrap();
}
