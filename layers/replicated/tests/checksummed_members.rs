//! A pair of members that verify their blocks: a copy that fails verification is read from the
//! other member and written back; a block failing on both is an error naming the pair's
//! address, never bytes; a rebuild whose source block fails records the copy as lost rather
//! than leaving the target's old bytes to be served; a scrub finds and repairs the copies reads
//! never reach, counts what is lost on both, rewrites a damaged metadata slot, and keeps the
//! newer of two copies that both verify.

use std::sync::Arc;
use txdisk_disk::{Block, Damage, Disk, DiskError, SimDisk};
use txdisk_integrity::IntegrityDisk;
use txdisk_replicated::{
    BlockFault, FormatOptions, Phase, ReplicatedDisk, ReplicatedError, Role, Slot, RESERVED_BLOCKS,
};

const RAW_BLOCKS: u64 = 64;
type Member = IntegrityDisk<Arc<SimDisk>>;

fn member(sim: &Arc<SimDisk>) -> Member {
    IntegrityDisk::open(sim.clone()).expect("member opens")
}

/// A clean pair with data block `a` holding `a + 1` everywhere, and its two devices.
fn written_pair() -> [Arc<SimDisk>; 2] {
    let sims = [
        Arc::new(SimDisk::new(RAW_BLOCKS)),
        Arc::new(SimDisk::new(RAW_BLOCKS)),
    ];
    let members = sims
        .clone()
        .map(|sim| IntegrityDisk::format_with_salt(sim, 7).expect("format"));
    let options = FormatOptions {
        pair_id: Some(0x51),
        assume_equal: true,
        ..Default::default()
    };
    ReplicatedDisk::format(&members[0], &members[1], &options).expect("pair format");
    let [d1, d2] = members;
    let pair = ReplicatedDisk::open(d1, d2, &mut |_| {}).expect("open");
    for addr in 0..pair.size_blocks() {
        pair.write(addr, &Block::filled(addr as u8 + 1))
            .expect("write");
    }
    pair.sync().expect("sync");
    pair.close().expect("close");
    sims
}

/// Flips one bit of the pair's data block `addr` on device `sim`, at rest.
fn rot(sim: &SimDisk, addr: u64) {
    let checked = IntegrityDisk::open(sim).expect("open");
    let raw = checked.superblock().data_start + RESERVED_BLOCKS + addr;
    let mut block = sim.read(raw).expect("raw read");
    block.as_bytes_mut()[77] ^= 0x10;
    sim.write(raw, &block).expect("raw write");
    sim.sync().expect("raw sync");
}

#[test]
fn a_rotten_copy_is_served_from_the_other_member_and_repaired() {
    let sims = written_pair();
    rot(&sims[0], 5);
    rot(&sims[1], 9);
    let pair = ReplicatedDisk::open(member(&sims[0]), member(&sims[1]), &mut |_| {}).expect("open");
    assert!(matches!(
        pair.read_replica(Role::D1, 5),
        Err(ReplicatedError::Disk(DiskError::Corrupt {
            damage: Damage::Flipped,
            ..
        }))
    ));
    for addr in 0..pair.size_blocks() {
        assert_eq!(
            pair.read(addr).expect("read"),
            Block::filled(addr as u8 + 1),
            "block {addr}"
        );
    }
    assert_eq!(
        pair.read_replica(Role::D1, 5).expect("repaired"),
        Block::filled(6)
    );
    // Reads go to d1 first: d2's rotten copy is found by a scrub, not by a read.
    assert!(pair.read_replica(Role::D2, 9).is_err());
    pair.close().expect("close");
    let pair = ReplicatedDisk::open(member(&sims[0]), member(&sims[1]), &mut |_| {}).expect("open");
    for role in [Role::D1, Role::D2] {
        for addr in 0..pair.size_blocks() {
            if (role, addr) != (Role::D2, 9) {
                pair.read_replica(role, addr)
                    .expect("every copy verifies after the repair");
            }
        }
    }
}

#[test]
fn a_block_rotten_on_both_members_is_an_error_never_bytes() {
    let sims = written_pair();
    rot(&sims[0], 3);
    rot(&sims[1], 3);
    let pair = ReplicatedDisk::open(member(&sims[0]), member(&sims[1]), &mut |_| {}).expect("open");
    match pair.read(3) {
        Err(DiskError::Corrupt { addr: 3, .. }) => {}
        other => panic!("expected a corrupt block 3 of the pair, got {other:?}"),
    }
    assert_eq!(pair.read(4).expect("read"), Block::filled(5));
    assert!(
        !pair.status().is_degraded(),
        "a bad block is not a failed member"
    );
}

#[test]
fn a_rebuild_from_a_rotten_source_block_records_the_copy_as_lost() {
    let sims = written_pair();
    rot(&sims[0], 6);
    // d2 is lost; a blank replacement is rebuilt from d1, whose block 6 fails.
    let pair = ReplicatedDisk::open_degraded(member(&sims[0]), &mut |_| {}).expect("degraded");
    let blank = Arc::new(SimDisk::new(RAW_BLOCKS));
    let replacement = IntegrityDisk::format_with_salt(blank.clone(), 8).expect("format");
    pair.rebuild(replacement, &mut |_| {})
        .expect("rebuild completes");
    assert!(!pair.status().is_degraded());
    assert!(
        matches!(pair.read(6), Err(DiskError::Corrupt { addr: 6, .. })),
        "the lost block must fail on both, not read as the replacement's zeros"
    );
    for addr in (0..pair.size_blocks()).filter(|a| *a != 6) {
        assert_eq!(
            pair.read(addr).expect("read"),
            Block::filled(addr as u8 + 1)
        );
    }
    // Every copied block carries its source's generation (a lost one is a write of its own).
    let (source, target) = (member(&sims[0]), member(&blank));
    for addr in (0..pair.size_blocks()).filter(|a| *a != 6) {
        let block = RESERVED_BLOCKS + addr;
        assert_eq!(
            source.generation(block).expect("d1"),
            target.generation(block).expect("d2"),
            "block {addr}"
        );
    }
    drop((source, target));
    // Writing the block makes it good again on both.
    pair.write(6, &Block::filled(0x66)).expect("write");
    pair.sync().expect("sync");
    assert_eq!(
        pair.read_replica(Role::D1, 6).expect("d1"),
        Block::filled(0x66)
    );
    assert_eq!(
        pair.read_replica(Role::D2, 6).expect("d2"),
        Block::filled(0x66)
    );
}

#[test]
fn a_damaged_metadata_slot_on_one_member_still_opens() {
    // Flip either metadata slot of d1 (member block 0 or 1): the other slot decides (one step
    // older if the newest was hit), and the pair opens (rebuilding d1 if that makes it stale).
    for slot in 0..RESERVED_BLOCKS {
        let sims = written_pair();
        let checked = IntegrityDisk::open(&*sims[0]).expect("open");
        let raw = checked.superblock().data_start + slot;
        let mut block = sims[0].read(raw).expect("raw read");
        block.as_bytes_mut()[30] ^= 1;
        sims[0].write(raw, &block).expect("raw write");
        sims[0].sync().expect("sync");
        let pair =
            ReplicatedDisk::open(member(&sims[0]), member(&sims[1]), &mut |_| {}).expect("opens");
        for addr in 0..pair.size_blocks() {
            assert_eq!(
                pair.read(addr).expect("read"),
                Block::filled(addr as u8 + 1)
            );
        }
        pair.close().expect("close");
    }
}

/// Overwrites the pair's data block `addr` on device `sim` with block `from`'s contents, at
/// rest, beneath the checksums (a misdirected write).
fn misdirect(sim: &SimDisk, addr: u64, from: u64) {
    let checked = IntegrityDisk::open(sim).expect("open");
    let start = checked.superblock().data_start + RESERVED_BLOCKS;
    let block = sim.read(start + from).expect("raw read");
    sim.write(start + addr, &block).expect("raw write");
    sim.sync().expect("raw sync");
}

#[test]
fn a_scrub_finds_and_repairs_the_copies_reads_never_reach() {
    let sims = written_pair();
    rot(&sims[1], 9);
    misdirect(&sims[1], 12, 20);
    rot(&sims[0], 4);
    rot(&sims[0], 30);
    rot(&sims[1], 30);
    let pair = ReplicatedDisk::open(member(&sims[0]), member(&sims[1]), &mut |_| {}).expect("open");
    let mut phases = Vec::new();
    let report = pair
        .scrub(&mut |p| phases.push(p.phase))
        .expect("scrub runs");
    assert_eq!(phases.last(), Some(&Phase::Scrub));
    assert_eq!(report.scanned_blocks, pair.size_blocks());
    let [d1, d2] = &report.members;
    assert_eq!((d1.flipped_blocks, d1.misdirected_blocks), (2, 0), "{d1:?}");
    assert_eq!((d2.flipped_blocks, d2.misdirected_blocks), (2, 1), "{d2:?}");
    assert_eq!(
        d2.first_faults[1],
        (12, Some(BlockFault::Misdirected { belongs_at: 20 })),
        "the origin is named by the pair's address"
    );
    assert_eq!(report.lost_blocks, 1, "block 30 is rotten on both");
    assert_eq!(report.first_lost, vec![30]);
    assert_eq!(report.repaired_blocks, 3);
    assert!(!report.is_clean());
    pair.close().expect("close");
    // Every copy but the lost one verifies now, and a second scrub finds only that one.
    let pair = ReplicatedDisk::open(member(&sims[0]), member(&sims[1]), &mut |_| {}).expect("open");
    for role in [Role::D1, Role::D2] {
        for addr in (0..pair.size_blocks()).filter(|a| *a != 30) {
            assert_eq!(
                pair.read_replica(role, addr).expect("verifies"),
                Block::filled(addr as u8 + 1),
                "{role} block {addr}"
            );
        }
    }
    let again = pair.scrub(&mut |_| {}).expect("scrub");
    assert_eq!(again.repaired_blocks, 0);
    assert_eq!(again.lost_blocks, 1);
    assert_eq!(again.members[0].failing_blocks(), 1);
    pair.close().expect("close");
    // A repaired copy carries its origin's generation: the two copies stay comparable.
    let [m1, m2] = [member(&sims[0]), member(&sims[1])];
    for addr in [4, 9, 12] {
        let block = RESERVED_BLOCKS + addr;
        assert_eq!(
            m1.generation(block).expect("d1"),
            m2.generation(block).expect("d2"),
            "block {addr}"
        );
    }
}

#[test]
fn a_scrub_of_a_clean_pair_writes_nothing() {
    let sims = written_pair();
    let pair = ReplicatedDisk::open(member(&sims[0]), member(&sims[1]), &mut |_| {}).expect("open");
    let writes_before = sims[0].stats().writes + sims[1].stats().writes;
    let report = pair.scrub(&mut |_| {}).expect("scrub");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.members[0].ok_blocks, pair.size_blocks());
    assert_eq!(report.members[1].ok_blocks, pair.size_blocks());
    assert_eq!(
        sims[0].stats().writes + sims[1].stats().writes,
        writes_before,
        "a scrub that finds nothing writes nothing (no Dirty mark either)"
    );
}

#[test]
fn a_scrub_rewrites_a_damaged_metadata_slot() {
    // The older slot of either member (the newer one damaged makes the member one step older,
    // which open itself deals with: `a_damaged_metadata_slot_on_one_member_still_opens`).
    for role in [Role::D1, Role::D2] {
        let sims = written_pair();
        let sim = &sims[role.index()];
        let checked = IntegrityDisk::open(&**sim).expect("open");
        let seq = |slot: u64| match Slot::decode(&checked.read(slot).expect("slot")) {
            Slot::Valid(meta) => meta.seq,
            other => panic!("slot {slot}: {other:?}"),
        };
        let slot = if seq(0) < seq(1) { 0 } else { 1 };
        let raw = checked.superblock().data_start + slot;
        let mut block = sim.read(raw).expect("raw read");
        block.as_bytes_mut()[30] ^= 1;
        sim.write(raw, &block).expect("raw write");
        sim.sync().expect("sync");
        drop(checked);
        let pair =
            ReplicatedDisk::open(member(&sims[0]), member(&sims[1]), &mut |_| {}).expect("opens");
        let report = pair.scrub(&mut |_| {}).expect("scrub");
        let (damaged, other) = (role.index(), role.other().index());
        assert_eq!(report.members[damaged].damaged_slots, vec![slot], "{role}");
        assert!(report.members[damaged].metadata_rewritten);
        assert!(report.members[other].damaged_slots.is_empty());
        let again = pair.scrub(&mut |_| {}).expect("scrub");
        assert!(again.is_clean(), "{role} slot {slot}: {again:?}");
        pair.close().expect("close");
    }
}

#[test]
fn of_two_copies_that_verify_the_newer_generation_is_kept() {
    let sims = written_pair();
    // d2 alone receives a newer value of block 7 (as if d1 lost that write, block and tag).
    {
        let d2 = member(&sims[1]);
        d2.write(RESERVED_BLOCKS + 7, &Block::filled(0x77))
            .expect("write");
        d2.sync().expect("sync");
    }
    let pair = ReplicatedDisk::open(member(&sims[0]), member(&sims[1]), &mut |_| {}).expect("open");
    assert_eq!(
        pair.read(7).expect("read"),
        Block::filled(8),
        "a read serves d1's copy, which verifies"
    );
    let report = pair.scrub(&mut |_| {}).expect("scrub");
    assert_eq!(report.members[0].older_blocks, 1, "{report:?}");
    assert_eq!(report.members[0].first_faults, vec![(7, None)]);
    assert_eq!(report.repaired_blocks, 1);
    assert_eq!(
        pair.read_replica(Role::D1, 7).expect("d1"),
        Block::filled(0x77)
    );
    pair.close().expect("close");

    // The resync after a crash keeps the newer copy too, whichever member holds it.
    let sims = written_pair();
    {
        let d2 = member(&sims[1]);
        d2.write(RESERVED_BLOCKS + 3, &Block::filled(0x33))
            .expect("write");
        d2.sync().expect("sync");
    }
    let pair = ReplicatedDisk::open(member(&sims[0]), member(&sims[1]), &mut |_| {}).expect("open");
    let copied = pair.recover(&mut |_| {}).expect("resync");
    assert_eq!(copied.copied_blocks, 1);
    for role in [Role::D1, Role::D2] {
        assert_eq!(
            pair.read_replica(role, 3).expect("verifies"),
            Block::filled(0x33)
        );
    }
}

#[test]
fn a_block_misdirected_on_both_members_names_its_origin_by_the_pairs_address() {
    let sims = written_pair();
    misdirect(&sims[0], 12, 20);
    misdirect(&sims[1], 12, 20);
    let pair = ReplicatedDisk::open(member(&sims[0]), member(&sims[1]), &mut |_| {}).expect("open");
    match pair.read(12) {
        Err(DiskError::Corrupt {
            addr: 12,
            damage: Damage::Misdirected { belongs_at: 20 },
        }) => {}
        other => panic!("expected block 12 misdirected from 20, got {other:?}"),
    }
}

/// A rebuild onto a checksummed replacement crashed at every operation of the replacement, in
/// every crash state of it: the pair opens again (rebuilding once more) and every block reads
/// right. Writing both metadata slots before one sync could leave both failing verification,
/// and the pair refused to open.
#[test]
fn a_rebuild_crashed_anywhere_opens_again() {
    let sims = written_pair();
    let survivor = sims[0].durable_image();
    let blank = Arc::new(SimDisk::new(RAW_BLOCKS));
    let formatted = {
        IntegrityDisk::format_with_salt(blank.clone(), 9).expect("format");
        blank.durable_image()
    };
    let mut crash_at = 0;
    let mut states = 0;
    let mut rng = txdisk_disk::rng::SplitMix64::new(0x7eb1);
    loop {
        let d1 = Arc::new(SimDisk::from_image(&survivor));
        let d2 = Arc::new(SimDisk::from_image(&formatted));
        let pair = ReplicatedDisk::open_degraded(member(&d1), &mut |_| {}).expect("degraded");
        let replacement = member(&d2);
        d2.schedule_crash(d2.ops() + crash_at);
        let finished = pair.rebuild(replacement, &mut |_| {}).is_ok() && !d2.is_crashed();
        d1.crash_now();
        d2.crash_now();
        drop(pair);
        let images: Vec<_> = match d2.crash_states_capped(false, 256) {
            Ok(all) => all.collect(),
            Err(_) => (0..64)
                .map(|_| d2.random_crash_state(&mut rng, false))
                .collect(),
        };
        for image in images {
            states += 1;
            let d1 = Arc::new(SimDisk::from_image(&d1.durable_image()));
            let d2 = Arc::new(SimDisk::from_image(&image));
            let pair = ReplicatedDisk::open(member(&d1), member(&d2), &mut |_| {})
                .unwrap_or_else(|e| panic!("crash at {crash_at}: the pair refuses to open: {e}"));
            for addr in 0..pair.size_blocks() {
                assert_eq!(
                    pair.read(addr).expect("read"),
                    Block::filled(addr as u8 + 1)
                );
            }
        }
        if finished {
            break;
        }
        crash_at += 1;
    }
    assert!(
        crash_at > 10 && states > crash_at,
        "{crash_at} crash points, {states} states"
    );
}
