//! Every deliberately damaged image (`txdisk_inspect::damaged`) gives the fsck result it must:
//! the exit code read-only, the findings by code, and the exit code after `--repair` (on a
//! fresh copy), which must also leave a clean image when it claims to have corrected it. Damage
//! beneath the checksums is counted per member, and the copy that verifies is the one kept;
//! the write-intent bitmap tells a difference recovery copies from one it would leave, and a
//! damaged bitmap block is rewritten by the repair.

use std::path::PathBuf;
use txdisk_disk::FileDisk;
use txdisk_inspect::damaged::{make, patch_checked_block, patch_raw, Damage, Geometry, LOG_BLOCKS};
use txdisk_inspect::{check, CheckOptions, FsckReport, Severity};
use txdisk_integrity::IntegrityDisk;
use txdisk_logical::LogicalDisk;
use txdisk_replicated::{
    BlockFault, FormatOptions, ReplicatedDisk, BITMAP_HEADER_BYTES, CHUNKS_PER_BITMAP_BLOCK,
};

/// (damage, exit read-only, finding codes that must be present, exit with --repair).
/// Exit 8 means `check` returns an operational error.
const EXPECTED: &[(Damage, i32, &[&str], i32)] = &[
    (Damage::CleanSingle, 0, &[], 0),
    (Damage::CleanPair, 0, &[], 0),
    (Damage::PendingSingle, 4, &["log.recovery_needed"], 1),
    (
        Damage::PendingPair,
        4,
        &["log.recovery_needed", "replicated.dirty"],
        1,
    ),
    (Damage::TornTail, 4, &["log.recovery_needed", "log.torn"], 1),
    (Damage::TornOnly, 0, &["log.torn"], 0),
    (
        Damage::ReplicaDifference,
        4,
        &["replicated.differ", "replicated.unmarked_difference"],
        1,
    ),
    (
        Damage::MarkedDifference,
        4,
        &["replicated.differ", "replicated.dirty", "replicated.bitmap"],
        1,
    ),
    (Damage::DamagedBitmap, 4, &["replicated.bitmap_damaged"], 1),
    (Damage::BrokenChain, 4, &["log.corruption"], 4),
    (Damage::SuperblockChecksum, 4, &["log.superblock"], 4),
    (Damage::WrongMagic, 8, &[], 8),
    (Damage::FutureLogVersion, 8, &[], 8),
    (Damage::FuturePairVersion, 8, &[], 8),
    (Damage::NoValidHeader, 4, &["log.no_header"], 4),
    (Damage::TruncatedSingle, 4, &["disk.truncated"], 4),
    (Damage::TruncatedMember, 4, &["disk.truncated"], 4),
    (Damage::DifferentPairs, 8, &[], 8),
    (Damage::StaleMember, 4, &["replicated.stale"], 1),
    (
        Damage::UnfinishedRebuild,
        4,
        &["replicated.rebuild_unfinished"],
        1,
    ),
    (Damage::DamagedSlot, 4, &["replicated.slot_damaged"], 1),
    (Damage::EmptyFile, 8, &[], 8),
    (Damage::NotAnImage, 8, &[], 8),
    (Damage::Directory, 8, &[], 8),
    (Damage::RottenCopies, 4, &["integrity.repairable"], 1),
    (Damage::RottenSingle, 4, &["integrity.lost"], 4),
    (Damage::RottenLogSuperblock, 4, &["integrity.repairable"], 1),
    (Damage::RottenSlot, 4, &["replicated.slot_damaged"], 1),
    (
        Damage::ChecksumSuperblockCopy,
        4,
        &["integrity.superblock_copy"],
        1,
    ),
    (Damage::ChecksumSuperblocks, 4, &["integrity.superblock"], 4),
    (Damage::FormatOne, 8, &[], 8),
];

fn run(images: &[PathBuf], repair: bool) -> (i32, Option<FsckReport>, String) {
    match check(
        images,
        &CheckOptions {
            repair,
            ..CheckOptions::default()
        },
    ) {
        Ok(report) => (report.exit_code(), Some(report.clone()), report.summary()),
        Err(error) => (8, None, error.to_string()),
    }
}

#[test]
fn every_damaged_image_gives_its_result() {
    assert_eq!(
        EXPECTED.len(),
        Damage::ALL.len(),
        "every damage kind has an expected result"
    );
    for &(damage, read_only, codes, repaired) in EXPECTED {
        let dir = tempfile::tempdir().unwrap();
        let images = make(damage, dir.path()).unwrap();
        let (code, report, line) = run(&images, false);
        assert_eq!(code, read_only, "{damage:?} read-only: {line}");
        assert!(
            !line.contains('\n') && !line.is_empty(),
            "{damage:?}: diagnosis not one line: {line:?}"
        );
        if let Some(report) = &report {
            for want in codes {
                assert!(
                    report.findings.iter().any(|f| f.code == *want),
                    "{damage:?}: no {want} finding in {:?}",
                    report.findings
                );
            }
            if code == 0 {
                assert!(
                    report.findings.iter().all(|f| f.severity == Severity::Info),
                    "{damage:?}: {:?}",
                    report.findings
                );
            }
        }
        let (code, report, line) = run(&images, true);
        assert_eq!(code, repaired, "{damage:?} with --repair: {line}");
        if repaired == 1 {
            let report = report.as_ref().unwrap();
            assert!(
                report.is_clean(),
                "{damage:?}: claimed corrected but {:?}",
                report.findings
            );
            let (again, _, line) = run(&images, false);
            assert_eq!(again, 0, "{damage:?}: not clean after repair: {line}");
        }
        if repaired == 4 {
            let repair = report.unwrap().repair.unwrap();
            assert!(
                repair.skipped.is_some(),
                "{damage:?}: repair of an uncorrectable image wrote something"
            );
        }
    }
}

#[test]
fn a_read_only_check_writes_nothing() {
    for damage in [
        Damage::PendingPair,
        Damage::TornTail,
        Damage::ReplicaDifference,
        Damage::StaleMember,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let images = make(damage, dir.path()).unwrap();
        let before: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).unwrap()).collect();
        let report = check(&images, &CheckOptions::default()).unwrap();
        assert_eq!(report.exit_code(), 4, "{damage:?}");
        let after: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).unwrap()).collect();
        assert!(
            before == after,
            "{damage:?}: a read-only check changed the images"
        );
    }
}

#[test]
fn pending_transactions_are_listed_with_their_home_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let images = make(Damage::PendingPair, dir.path()).unwrap();
    let report = check(&images, &CheckOptions::default()).unwrap();
    let log = report.log.as_ref().unwrap();
    let homes: Vec<Vec<u64>> = log.records.iter().map(|r| r.addrs.clone()).collect();
    assert_eq!(homes, vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
    let seqs: Vec<u64> = log.records.iter().map(|r| r.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequences not consecutive: {seqs:?}"
    );
    assert_eq!(log.replay_home_blocks, 6);
    assert!(log.corruption.is_none());
    let replicas = report.replicas.as_ref().unwrap();
    assert_eq!(
        replicas.differing_blocks, 0,
        "a crash after durable commits leaves equal replicas"
    );
    let json = report.to_json();
    assert_eq!(json["exit_code"], 4);
    assert_eq!(json["log"]["replay"].as_array().unwrap().len(), 3);
}

#[test]
fn replica_differences_are_counted_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let images = make(Damage::ReplicaDifference, dir.path()).unwrap();
    let report = check(&images, &CheckOptions::default()).unwrap();
    let diff = report.replicas.unwrap();
    assert_eq!(diff.differing_blocks, 3);
    let data_start = report.log.unwrap().superblock.data_start;
    assert_eq!(
        diff.first_differences,
        vec![data_start + 5, data_start + 6, data_start + 40]
    );
    assert_eq!(
        (diff.d1_newer_blocks, diff.d2_newer_blocks),
        (0, 3),
        "d2's copies were written last: the higher generation"
    );
    assert!(report.verification.iter().all(|v| v.failing_blocks() == 0));
    // Closed clean, so the next open copies nothing: every difference is one recovery leaves.
    assert_eq!(diff.unmarked_blocks, 3);
    assert_eq!(diff.first_unmarked, diff.first_differences);
    let unmarked = report
        .findings
        .iter()
        .find(|f| f.code == "replicated.unmarked_difference")
        .unwrap();
    assert_eq!(unmarked.severity, Severity::Error);
    assert!(
        unmarked
            .message
            .contains(&format!("{} in chunk 0", data_start + 5)),
        "{}",
        unmarked.message
    );
}

#[test]
fn a_difference_in_a_marked_chunk_is_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let images = make(Damage::MarkedDifference, dir.path()).unwrap();
    let report = check(&images, &CheckOptions::default()).unwrap();
    assert_eq!(
        report.worst(),
        Some(Severity::Fixable),
        "{:?}",
        report.findings
    );
    let diff = report.replicas.as_ref().unwrap();
    assert_eq!((diff.differing_blocks, diff.unmarked_blocks), (1, 0));
    let bitmap = report.bitmap.as_ref().unwrap();
    assert_eq!(bitmap.marked_chunks, 1, "{bitmap:?}");
    assert_eq!(bitmap.resync_chunks, 1, "{bitmap:?}");
    assert_eq!(bitmap.first_marked_chunks, vec![0], "{bitmap:?}");
    assert!(bitmap.members.iter().all(|m| m.marked_chunks == 1));
    let json = report.to_json();
    assert_eq!(json["bitmap"]["marked_chunks"], 1);
    assert_eq!(json["replicas"]["unmarked_blocks"], 0);
}

/// A pair whose bitmap has two blocks (chunks of one block), clean, with bitmap block 1 damaged
/// on both members: through its checksums on d1, beneath them on d2. Block 1 records chunks no
/// log write touches; the repair's open starts from the marks on disk (every chunk of a block
/// neither member vouches for) and its clean close clears them, rewriting the block on both —
/// so the repair's own rewrite of unusable blocks finds nothing left to do.
#[test]
fn a_bitmap_block_damaged_on_both_members_is_rewritten_by_the_repair() {
    let dir = tempfile::tempdir().unwrap();
    let images = [dir.path().join("d1.img"), dir.path().join("d2.img")];
    let member_blocks = CHUNKS_PER_BITMAP_BLOCK + 1024;
    let raw_blocks = txdisk_integrity::format::Superblock::raw_blocks_for(member_blocks);
    let disks: Vec<_> = images
        .iter()
        .map(|path| IntegrityDisk::format(FileDisk::create(path, raw_blocks).unwrap()).unwrap())
        .collect();
    let options = FormatOptions {
        pair_id: Some(3),
        assume_equal: true,
        chunk_blocks: Some(1),
    };
    ReplicatedDisk::format(&disks[0], &disks[1], &options).unwrap();
    let [d1, d2]: [_; 2] = disks.try_into().unwrap_or_else(|_| panic!("two disks"));
    let pair = ReplicatedDisk::open(d1, d2, &mut |_| {}).unwrap();
    let layout = pair.bitmap_layout();
    assert_eq!(layout.bitmap_blocks(), 2, "{layout:?}");
    LogicalDisk::format(&pair, LOG_BLOCKS).unwrap();
    pair.close().unwrap();
    let block = layout.first_bitmap_block() + 1;
    patch_checked_block(&images[0], block, BITMAP_HEADER_BYTES, &[0x01]).unwrap();
    let raw = Geometry::of(&images[1]).unwrap().raw_of_checked(block);
    patch_raw(&images[1], raw, 100, &[0x55]).unwrap();

    let report = check(&images, &CheckOptions::default()).unwrap();
    assert_eq!(report.exit_code(), 4, "{}", report.render_text());
    assert_eq!(
        report.worst(),
        Some(Severity::Fixable),
        "{:?}",
        report.findings
    );
    let damaged: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.code == "replicated.bitmap_damaged")
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(damaged.len(), 2, "{damaged:?}");
    assert!(damaged[0].contains("block 1: bad checksum"), "{damaged:?}");
    assert!(damaged[1].contains("block 1: unreadable"), "{damaged:?}");
    assert!(
        damaged
            .iter()
            .all(|m| m.contains("counts their chunks as marked")),
        "{damaged:?}"
    );
    let bitmap = report.bitmap.as_ref().unwrap();
    let chunks = layout.chunks_of_block(1);
    assert_eq!(
        bitmap.marked_chunks,
        chunks.end - chunks.start,
        "{bitmap:?}"
    );
    assert_eq!(bitmap.first_marked_chunks[0], chunks.start, "{bitmap:?}");
    assert_eq!(
        bitmap.resync_chunks, 0,
        "closed clean: the next open copies nothing"
    );

    let repaired = check(
        &images,
        &CheckOptions {
            repair: true,
            ..CheckOptions::default()
        },
    )
    .unwrap();
    assert_eq!(repaired.exit_code(), 1, "{}", repaired.render_text());
    let actions = &repaired.repair.as_ref().unwrap().actions;
    let rewrites = actions
        .iter()
        .filter(|a| a.contains("rewrote 1 unusable bitmap block(s)"))
        .count();
    assert_eq!(
        rewrites, 0,
        "the pair's clean close rewrote them: {actions:?}"
    );
    let again = check(&images, &CheckOptions::default()).unwrap();
    assert_eq!(again.exit_code(), 0, "{}", again.render_text());
    let bitmap = again.bitmap.unwrap();
    assert_eq!(bitmap.marked_chunks, 0, "{bitmap:?}");
    assert!(bitmap.members.iter().all(|m| m.unusable_blocks == 0));
}

#[test]
fn failing_copies_are_counted_per_member_and_repaired_from_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let images = make(Damage::RottenCopies, dir.path()).unwrap();
    let report = check(&images, &CheckOptions::default()).unwrap();
    assert_eq!(report.exit_code(), 4, "{}", report.render_text());
    let [d1, d2] = &report.verification[..] else {
        panic!("both members verified: {:?}", report.verification)
    };
    assert_eq!(
        (
            d1.flipped_blocks,
            d1.misdirected_blocks,
            d1.stale_blocks,
            d1.repairable_blocks
        ),
        (2, 2, 1, 5),
        "{d1:?}"
    );
    assert_eq!(d2.failing_blocks(), 0, "{d2:?}");
    let data_start = report.log.as_ref().unwrap().superblock.data_start;
    let misdirected: Vec<_> = d1
        .first_failures
        .iter()
        .filter_map(|f| match f.fault {
            BlockFault::Misdirected { belongs_at } => Some((f.addr, belongs_at)),
            _ => None,
        })
        .collect();
    assert_eq!(
        misdirected,
        vec![
            (data_start + 12, data_start + 20),
            (data_start + 13, data_start + 21)
        ],
        "a misdirected block names where it belongs"
    );
    assert_eq!(report.replicas.as_ref().unwrap().differing_blocks, 0);
    let text = report.render_text();
    assert!(
        text.contains("5 fail (2 flipped, 2 misdirected, 1 stale"),
        "{text}"
    );
    let json = report.to_json();
    assert_eq!(json["verification"][0]["stale_blocks"], 1);
    assert_eq!(
        json["verification"][0]["first_failures"][2]["kind"],
        "misdirected"
    );
    let repaired = check(
        &images,
        &CheckOptions {
            repair: true,
            ..CheckOptions::default()
        },
    )
    .unwrap();
    assert_eq!(repaired.exit_code(), 1, "{}", repaired.render_text());
    assert!(repaired
        .verification
        .iter()
        .all(|v| v.failing_blocks() == 0));
}

#[test]
fn damage_on_one_member_only_is_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let images = make(Damage::CleanPair, dir.path()).unwrap();
    // Flip a byte of d1's log superblock through its checksums (the block verifies, and its
    // generation is the newer: only the log's own checksum shows the damage).
    txdisk_inspect::damaged::patch_checked(&images[0], 0, 20, &[0x55]).unwrap();
    let report = check(&images, &CheckOptions::default()).unwrap();
    assert_eq!(report.exit_code(), 4);
    let codes: Vec<&str> = report.findings.iter().map(|f| f.code).collect();
    assert!(codes.contains(&"log.superblock"), "{codes:?}");
    assert!(codes.contains(&"replicated.differ"), "{codes:?}");
    assert!(codes.contains(&"log.other_member_intact"), "{codes:?}");
    let before = std::fs::read(&images[1]).unwrap();
    let repaired = check(
        &images,
        &CheckOptions {
            repair: true,
            ..CheckOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        repaired.exit_code(),
        4,
        "a resync would copy the damage over the good copy"
    );
    assert_eq!(std::fs::read(&images[1]).unwrap(), before, "d2 untouched");
}
