//! Damage at rest: every way a disk or a cable spoils a block, made on the raw device after a
//! clean sync, is refused on read with the right diagnosis, and no undamaged block is.

use std::sync::Arc;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Block, Damage, Disk, DiskError, SimDisk};
use txdisk_integrity::format::{Superblock, MAGIC};
use txdisk_integrity::{IntegrityDisk, IntegrityError};

const RAW_BLOCKS: u64 = 600;

fn pattern(addr: u64, round: u8) -> Block {
    let mut block = Block::zeroed();
    let mut rng = SplitMix64::new(addr.wrapping_mul(31) ^ u64::from(round) << 40);
    rng.fill_bytes(block.as_bytes_mut());
    block
}

/// A formatted disk with every data block written once (round 1) and synced.
fn written() -> (Arc<SimDisk>, IntegrityDisk<Arc<SimDisk>>) {
    let sim = Arc::new(SimDisk::new(RAW_BLOCKS));
    let disk = IntegrityDisk::format(sim.clone()).expect("format");
    for addr in 0..disk.size_blocks() {
        disk.write(addr, &pattern(addr, 1)).expect("write");
    }
    disk.sync().expect("sync");
    (sim, disk)
}

fn reopen(sim: &Arc<SimDisk>) -> IntegrityDisk<Arc<SimDisk>> {
    IntegrityDisk::open(sim.clone()).expect("reopen")
}

fn raw_data(disk: &IntegrityDisk<Arc<SimDisk>>, addr: u64) -> u64 {
    disk.superblock().data_start + addr
}

/// Every block reads right except those in `damaged`, which fail with the damage given.
fn check_all(
    disk: &IntegrityDisk<Arc<SimDisk>>,
    damaged: &[(u64, Damage)],
    round_of: impl Fn(u64) -> u8,
) {
    for addr in 0..disk.size_blocks() {
        match (disk.read(addr), damaged.iter().find(|(a, _)| *a == addr)) {
            (Ok(block), None) => assert_eq!(block, pattern(addr, round_of(addr)), "block {addr}"),
            (Err(DiskError::Corrupt { addr: at, damage }), Some((_, expected))) => {
                assert_eq!(at, addr, "the error names the block");
                assert_eq!(damage, *expected, "block {addr}");
            }
            (result, expected) => panic!("block {addr}: {result:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn flipped_bits_at_random_offsets_are_refused_and_nothing_else_is() {
    let (sim, disk) = written();
    let mut rng = SplitMix64::new(15);
    let mut damaged = Vec::new();
    while damaged.len() < 40 {
        let addr = rng.below(disk.size_blocks());
        if damaged.iter().any(|(a, _)| *a == addr) {
            continue;
        }
        let raw = raw_data(&disk, addr);
        let mut block = sim.read(raw).expect("raw read");
        let bit = rng.below(4096 * 8) as usize;
        block.as_bytes_mut()[bit / 8] ^= 1 << (bit % 8);
        sim.write(raw, &block).expect("raw write");
        damaged.push((addr, Damage::Flipped));
    }
    sim.sync().expect("sync");
    check_all(&reopen(&sim), &damaged, |_| 1);
}

#[test]
fn a_misdirected_block_names_where_it_belongs() {
    let (sim, disk) = written();
    let mut damaged = Vec::new();
    for (from, to) in [(3u64, 200u64), (17, 18), (400, 2)] {
        let block = sim.read(raw_data(&disk, from)).expect("raw read");
        sim.write(raw_data(&disk, to), &block).expect("raw write");
        damaged.push((to, Damage::Misdirected { belongs_at: from }));
    }
    sim.sync().expect("sync");
    check_all(&reopen(&sim), &damaged, |_| 1);
}

#[test]
fn a_lost_write_is_caught_as_the_previous_contents() {
    let (sim, disk) = written();
    let lost = [5u64, 6, 77, 300];
    let before: Vec<Block> = lost
        .iter()
        .map(|addr| sim.read(raw_data(&disk, *addr)).expect("raw read"))
        .collect();
    for addr in 0..disk.size_blocks() {
        if addr % 2 == 1 || lost.contains(&addr) {
            disk.write(addr, &pattern(addr, 2)).expect("write");
        }
    }
    disk.sync().expect("sync");
    // The device acknowledged the writes but kept the old contents of these blocks.
    for (addr, old) in lost.iter().zip(&before) {
        sim.write(raw_data(&disk, *addr), old).expect("raw write");
    }
    sim.sync().expect("sync");
    let damaged: Vec<(u64, Damage)> = lost.iter().map(|a| (*a, Damage::Stale)).collect();
    check_all(&reopen(&sim), &damaged, |addr| {
        if addr % 2 == 1 || lost.contains(&addr) {
            2
        } else {
            1
        }
    });
}

#[test]
fn a_damaged_tag_fails_its_block_only() {
    let (sim, disk) = written();
    let sb = *disk.superblock();
    // Entry 10 of tag block 1 covers data block 256 + 10.
    let mut tags = sim.read(sb.tag_start + 1).expect("raw read");
    tags.as_bytes_mut()[10 * 16 + 2] ^= 0x40;
    sim.write(sb.tag_start + 1, &tags).expect("raw write");
    sim.sync().expect("sync");
    check_all(&reopen(&sim), &[(266, Damage::Flipped)], |_| 1);
}

#[test]
fn a_tag_block_written_in_the_wrong_place_fails_every_block_it_lands_on() {
    let (sim, disk) = written();
    let sb = *disk.superblock();
    let tags = sim.read(sb.tag_start).expect("raw read");
    sim.write(sb.tag_start + 1, &tags).expect("raw write");
    sim.sync().expect("sync");
    let disk = reopen(&sim);
    let covered = 256..(512.min(disk.size_blocks()));
    let damaged: Vec<(u64, Damage)> = covered.map(|a| (a, Damage::Flipped)).collect();
    check_all(&disk, &damaged, |_| 1);
}

#[test]
fn a_block_never_written_reads_as_zeros_and_anything_else_there_is_refused() {
    let sim = Arc::new(SimDisk::new(RAW_BLOCKS));
    let disk = IntegrityDisk::format(sim.clone()).expect("format");
    assert!(disk.read(9).expect("read").is_zero());
    sim.write(raw_data(&disk, 9), &Block::filled(7))
        .expect("raw write");
    assert!(matches!(
        disk.read(9),
        Err(DiskError::Corrupt {
            addr: 9,
            damage: Damage::Flipped
        })
    ));
}

#[test]
fn one_damaged_superblock_copy_is_survived_and_repaired() {
    let (sim, _) = written();
    let mut copy = sim.read(0).expect("raw read");
    copy.as_bytes_mut()[20] ^= 1;
    sim.write(0, &copy).expect("raw write");
    let disk = reopen(&sim);
    assert_eq!(disk.damaged_superblocks(), vec![0]);
    check_all(&disk, &[], |_| 1);
    assert_eq!(disk.repair_superblocks().expect("repair"), 1);
    assert_eq!(reopen(&sim).damaged_superblocks(), Vec::<u64>::new());
    // Both damaged: refused, with the reason.
    let mut other = sim.read(1).expect("raw read");
    other.as_bytes_mut()[20] ^= 1;
    sim.write(0, &other).expect("raw write");
    sim.write(1, &other).expect("raw write");
    assert!(matches!(
        IntegrityDisk::open(sim.clone()),
        Err(IntegrityError::SuperblockChecksum { .. })
    ));
}

#[test]
fn blank_first_format_and_foreign_devices_are_refused_by_name() {
    let sim = Arc::new(SimDisk::new(RAW_BLOCKS));
    assert!(IntegrityDisk::is_blank(&sim).expect("read"));
    assert!(matches!(
        IntegrityDisk::open(sim.clone()),
        Err(IntegrityError::Blank)
    ));
    for (magic, what) in [
        (&b"TXDSUPER"[..], "single image"),
        (&b"txdPAIR\0"[..], "pair member"),
    ] {
        sim.write(0, &Block::with_prefix(magic).expect("block"))
            .expect("raw write");
        let error = IntegrityDisk::open(sim.clone()).err().expect("refused");
        assert!(
            matches!(error, IntegrityError::Unchecksummed { .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.contains(what) && message.contains("format 1"),
            "{message}"
        );
    }
    sim.write(0, &Block::filled(0x55)).expect("raw write");
    assert!(matches!(
        IntegrityDisk::open(sim.clone()),
        Err(IntegrityError::NotAnImage)
    ));
    assert!(!IntegrityDisk::is_blank(&sim).expect("read"));
}

#[test]
fn the_superblock_encoder_matches_the_documented_layout() {
    // docs/FORMAT-integrity.md, byte by byte.
    let sb = Superblock::layout(600, 0x0102_0304_0506_0708).expect("layout");
    assert_eq!(
        (sb.tag_start, sb.tag_blocks, sb.data_start, sb.data_blocks),
        (2, 3, 5, 595)
    );
    let block = sb.encode();
    let bytes = block.as_bytes();
    assert_eq!(&bytes[0..8], &MAGIC);
    assert_eq!(&bytes[0..8], b"TXDINTEG");
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    assert_eq!(u32_at(8), 1, "version");
    assert_eq!(u32_at(12), 4096, "block size");
    assert_eq!(u64_at(16), 600, "raw blocks");
    assert_eq!(u64_at(24), 2, "tag start");
    assert_eq!(u64_at(32), 3, "tag blocks");
    assert_eq!(u64_at(40), 5, "data start");
    assert_eq!(u64_at(48), 595, "data blocks");
    assert_eq!(u64_at(56), 0x0102_0304_0506_0708, "salt");
    assert_eq!(u32_at(64), crc32c::crc32c(&bytes[0..64]), "crc");
    assert!(bytes[68..].iter().all(|b| *b == 0), "the rest is zeros");
    assert_eq!(Superblock::decode(&block, 600).expect("decode"), sb);
}

#[test]
fn a_tag_entry_matches_the_documented_layout() {
    let sim = Arc::new(SimDisk::new(RAW_BLOCKS));
    let disk = IntegrityDisk::format(sim.clone()).expect("format");
    let salt_of_disk = disk.superblock().salt;
    let data = pattern(300, 1);
    disk.write(300, &data).expect("write");
    disk.sync().expect("sync");
    let sb = *disk.superblock();
    let tags = sim.read(sb.tag_start + 1).expect("raw read");
    let entry = &tags.as_bytes()[(300 - 256) * 16..(300 - 256) * 16 + 16];
    let u32_at = |at: usize| u32::from_le_bytes(entry[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!(
        u32_at(0),
        txdisk_integrity::format::data_hash(&data),
        "data crc"
    );
    assert_eq!(
        u32_at(4),
        txdisk_integrity::format::data_hash(&Block::zeroed()),
        "previous: the zeros of a new block"
    );
    assert_eq!(u32_at(8), 1, "generation");
    let mut covered = Vec::new();
    covered.extend_from_slice(&salt_of_disk.to_le_bytes());
    covered.extend_from_slice(&300u64.to_le_bytes());
    covered.extend_from_slice(&entry[0..12]);
    assert_eq!(u32_at(12), crc32c::crc32c(&covered), "entry crc");
    assert_eq!(disk.generation(300).expect("generation"), Some(1));
}

#[test]
fn a_copy_carries_the_generation_of_its_origin() {
    let (sim, disk) = written();
    for _ in 0..4 {
        disk.write(40, &pattern(40, 2)).expect("write");
    }
    assert_eq!(disk.generation(40).expect("generation"), Some(5));
    // A copy of another disk's version 9 of the block is version 9 here too, up or down.
    disk.write_copy(40, &pattern(40, 3), Some(9)).expect("copy");
    assert_eq!(disk.generation(40).expect("generation"), Some(9));
    disk.write_copy(40, &pattern(40, 4), Some(2)).expect("copy");
    assert_eq!(disk.generation(40).expect("generation"), Some(2));
    // Without a version to carry, a copy is a plain write: the next one.
    disk.write_copy(40, &pattern(40, 5), None).expect("copy");
    assert_eq!(disk.generation(40).expect("generation"), Some(3));
    disk.sync().expect("sync");
    let disk = reopen(&sim);
    assert_eq!(disk.read(40).expect("verifies"), pattern(40, 5));
    assert_eq!(disk.generation(40).expect("generation"), Some(3));
}

/// The tests above can fail: with verification skipped, the damaged block's bytes come back.
#[test]
fn with_verification_skipped_a_flipped_block_is_served() {
    use txdisk_integrity::bugs::{self, Bug};
    let (sim, disk) = written();
    let raw = raw_data(&disk, 12);
    let mut block = sim.read(raw).expect("raw read");
    block.as_bytes_mut()[100] ^= 4;
    sim.write(raw, &block).expect("raw write");
    let disk = reopen(&sim);
    bugs::set(Some(Bug::SkipVerify));
    let served = disk.read(12);
    bugs::set(None);
    assert_eq!(
        served.expect("served"),
        block,
        "the variant returns the damaged bytes"
    );
    assert!(matches!(disk.read(12), Err(DiskError::Corrupt { .. })));
}

/// A tag block that cannot be read makes its blocks fail with a read error, and is not written
/// back with stand-in contents: once it reads again, every block it covers verifies.
#[test]
fn an_unreadable_tag_block_loses_nothing() {
    let (sim, disk) = written();
    let sb = *disk.superblock();
    drop(disk);
    sim.inject_read_error(sb.tag_start + 1);
    let disk = reopen(&sim);
    assert!(matches!(
        disk.read(300),
        Err(DiskError::ReadError { addr: 300 })
    ));
    assert!(matches!(
        disk.write(301, &pattern(301, 2)),
        Err(DiskError::ReadError { addr: 301 })
    ));
    assert_eq!(
        disk.read(3).expect("other tag blocks are fine"),
        pattern(3, 1)
    );
    disk.write(4, &pattern(4, 2)).expect("write elsewhere");
    disk.sync().expect("sync");
    let mut faults = txdisk_disk::FaultPlan::default();
    faults.read_errors.clear();
    sim.set_faults(faults);
    let disk = reopen(&sim);
    check_all(&disk, &[], |addr| if addr == 4 { 2 } else { 1 });
}

/// A failed sync is never followed by one that reports success.
#[test]
fn after_a_failed_sync_every_sync_fails() {
    let (sim, disk) = written();
    disk.write(7, &pattern(7, 2)).expect("write");
    // The sync is one tag block write, then the device's sync: fail the latter.
    sim.schedule_sync_failure(sim.ops() + 1);
    assert!(matches!(disk.sync(), Err(DiskError::SyncFailed)));
    disk.write(8, &pattern(8, 2)).expect("write");
    assert!(matches!(disk.sync(), Err(DiskError::SyncFailed)));
}

/// The block hash as docs/FORMAT-integrity.md states it, written out again here.
fn documented_hash(block: &Block) -> u32 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for word in block.as_bytes().chunks_exact(8) {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        h = ((h ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd)).rotate_left(31);
    }
    h ^= h >> 29;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    (h ^ (h >> 32)) as u32
}

#[test]
fn the_block_hash_is_the_documented_one() {
    for block in [
        Block::zeroed(),
        pattern(1, 1),
        pattern(2, 9),
        Block::filled(0xff),
    ] {
        assert_eq!(
            txdisk_integrity::format::data_hash(&block),
            documented_hash(&block)
        );
    }
}

/// Blocks laid out as fields, their CRC-32C, zeros (a log header) all have one CRC-32C: the
/// CRC's residue. Their hashes differ, so a lost write of such a block is caught.
#[test]
fn a_stale_self_checksummed_block_is_caught() {
    let header = |generation: u64| {
        let mut bytes = [0u8; 4096];
        bytes[0..8].copy_from_slice(b"TXDLOGHD");
        bytes[16..24].copy_from_slice(&generation.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[0..40]);
        bytes[40..44].copy_from_slice(&crc.to_le_bytes());
        Block::from_bytes(&bytes).expect("block")
    };
    let (old, new) = (header(6), header(8));
    assert_ne!(old, new);
    assert_eq!(
        crc32c::crc32c(old.as_bytes()),
        crc32c::crc32c(new.as_bytes()),
        "the residue: a CRC of the block could not tell them apart"
    );
    let (sim, disk) = written();
    disk.write(40, &old).expect("write");
    disk.sync().expect("sync");
    let before = sim.read(raw_data(&disk, 40)).expect("raw read");
    disk.write(40, &new).expect("write");
    disk.sync().expect("sync");
    sim.write(raw_data(&disk, 40), &before)
        .expect("raw write: the new write lost");
    sim.sync().expect("sync");
    assert!(matches!(
        reopen(&sim).read(40),
        Err(DiskError::Corrupt {
            addr: 40,
            damage: Damage::Stale
        })
    ));
}
