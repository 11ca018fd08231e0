//! A pair of members that verify their blocks: a copy that fails verification is read from the
//! other member and written back; a block failing on both is an error naming the pair's
//! address, never bytes; a rebuild whose source block fails records the copy as lost rather
//! than leaving the target's old bytes to be served.

use std::sync::Arc;
use txdisk_disk::{Block, Damage, Disk, DiskError, SimDisk};
use txdisk_integrity::IntegrityDisk;
use txdisk_replicated::{FormatOptions, ReplicatedDisk, ReplicatedError, Role, RESERVED_BLOCKS};

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
