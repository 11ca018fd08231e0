//! Torn tail versus corruption: builds logs of three durable records on a `SimDisk`, damages
//! one record of the durable image with `DiskImage::set_block`, and checks that recovery refuses
//! (`LogError::Corruption`, writing nothing) exactly when a later valid record's `durable_seq`
//! says the damaged one had been acknowledged, and otherwise ends the log there and recovers the
//! prefix before it. Also checks the `ScanStop` each case reports and its message.

mod common;
mod forge;

use common::*;
use std::sync::Arc;
use txdisk_disk::{Block, DiskImage, SimDisk};
use txdisk_log::tooling::{read_superblock, scan_log, Contents, ScanStop, Superblock};
use txdisk_log::{log_recover, Log, LogError, LogOptions};

fn options() -> LogOptions {
    LogOptions {
        background_installer: false,
        ..LogOptions::default()
    }
}

/// Three one-block records at addresses 0, 1, 2, each made durable by its own flush (so each
/// record's durable_seq covers the one before), or the last two in one group flush.
fn three_records(one_group: bool) -> (DiskImage, Superblock, Vec<u64>) {
    let sim = Arc::new(SimDisk::from_image(&formatted(3 + 16 + 8, 16, 0xc0ff)));
    let log = Log::open(sim.clone(), options()).expect("open");
    let mut seqs = Vec::new();
    for addr in 0..3u64 {
        let mut tx = log.begin();
        tx.write(addr, &value(addr, 0x40 + addr as u8))
            .expect("in range");
        let seq = if one_group && addr > 0 {
            tx.commit_nosync()
        } else {
            tx.commit()
        };
        seqs.push(seq.expect("commit").expect("non-empty"));
    }
    log.flush().expect("flush");
    drop(log);
    let image = sim.durable_image();
    let sb = read_superblock(&SimDisk::from_image(&image)).expect("superblock");
    (image, sb, seqs)
}

fn contents_of(addrs: &[u64]) -> Contents {
    addrs
        .iter()
        .map(|&a| (a, value(a, 0x40 + a as u8)))
        .collect()
}

/// Record `index` (0-based) of the chain: (position, sequence).
fn record_at(image: &DiskImage, index: usize) -> (u64, u64) {
    let scan = scan_log(&SimDisk::from_image(image), false).expect("scan");
    assert_eq!(
        scan.records.len(),
        3,
        "three records expected, scan stopped at {}",
        scan.stop
    );
    (scan.records[index].pos, scan.records[index].seq)
}

fn damaged(image: &DiskImage, sb: &Superblock, pos: u64, block: Block) -> DiskImage {
    let mut image = image.clone();
    image.set_block(sb.log_addr(pos), block).expect("in range");
    image
}

#[test]
fn durable_seq_chain_as_written() {
    let (image, _, seqs) = three_records(false);
    let scan = scan_log(&SimDisk::from_image(&image), false).expect("scan");
    let durable: Vec<u64> = scan.records.iter().map(|r| r.durable_seq).collect();
    assert_eq!(
        durable,
        vec![seqs[0] - 1, seqs[0], seqs[1]],
        "each flush's records carry the previous durable seq"
    );
    let (image, _, seqs) = three_records(true);
    let scan = scan_log(&SimDisk::from_image(&image), false).expect("scan");
    let durable: Vec<u64> = scan.records.iter().map(|r| r.durable_seq).collect();
    assert_eq!(
        durable,
        vec![seqs[0] - 1, seqs[0], seqs[0]],
        "one group flush: one durable seq for the group"
    );
}

/// Recovery of `image` must refuse, naming the damaged record, and write nothing.
fn assert_refused(image: &DiskImage, pos: u64, seq: u64, witness_seq: u64, what: &str) {
    let sim = SimDisk::from_image(image);
    match log_recover(&sim) {
        Err(LogError::Corruption {
            pos: found_pos,
            seq: found_seq,
            detail,
        }) => {
            assert_eq!(found_pos, pos, "{what}: position");
            assert_eq!(found_seq, seq, "{what}: sequence");
            assert!(
                detail.contains(&format!("record {witness_seq}")),
                "{what}: detail names no witness: {detail}"
            );
            assert!(detail.contains("durable"), "{what}: {detail}");
        }
        other => panic!("{what}: expected Corruption, got {other:?}"),
    }
    assert_eq!(
        sim.stats().writes,
        0,
        "{what}: a refused recovery wrote to the disk"
    );
    let sim = Arc::new(SimDisk::from_image(image));
    assert!(
        matches!(Log::open(sim, options()), Err(LogError::Corruption { .. })),
        "{what}: open accepted it"
    );
}

#[test]
fn damaged_middle_record_is_corruption() {
    let (image, sb, _) = three_records(false);
    let (pos, seq) = record_at(&image, 1);
    let (_, witness) = record_at(&image, 2);
    let data = damaged(&image, &sb, pos + 1, Block::filled(0xee));
    assert_refused(&data, pos, seq, witness, "damaged data block");
    let scan = scan_log(&SimDisk::from_image(&data), false).expect("scan");
    assert!(
        matches!(scan.stop, ScanStop::ChecksumMismatch { pos: p, seq: s, .. } if p == pos && s == seq),
        "{}",
        scan.stop
    );
    assert_eq!(
        scan.beyond_stop.len(),
        1,
        "the later record is found past the stop"
    );
    assert!(scan.corruption().is_some());
    let desc = damaged(&image, &sb, pos, Block::zeroed());
    assert_refused(&desc, pos, seq, witness, "zeroed descriptor");
    let mut bit_flip = image.block(sb.log_addr(pos)).expect("in range").clone();
    bit_flip.as_bytes_mut()[4095] ^= 1;
    assert_refused(
        &damaged(&image, &sb, pos, bit_flip),
        pos,
        seq,
        witness,
        "one bit of a descriptor",
    );
}

#[test]
fn damaged_last_record_is_a_torn_tail() {
    let (image, sb, seqs) = three_records(false);
    let (pos, seq) = record_at(&image, 2);
    for (what, block_pos) in [("data", pos + 1), ("descriptor", pos)] {
        let image = damaged(&image, &sb, block_pos, Block::filled(0x5a));
        let sim = SimDisk::from_image(&image);
        let report = log_recover(&sim).unwrap_or_else(|e| panic!("damaged last {what}: {e}"));
        let replayed: Vec<u64> = report.replayed.iter().map(|(s, _)| *s).collect();
        assert_eq!(replayed, seqs[..2].to_vec(), "damaged last {what}");
        assert_eq!(
            read_contents(&sim),
            contents_of(&[0, 1]),
            "damaged last {what}: not the prefix of two"
        );
        match (what, &report.stop) {
            ("data", ScanStop::ChecksumMismatch { pos: p, seq: s, .. }) => {
                assert_eq!((*p, *s), (pos, seq))
            }
            (
                "descriptor",
                ScanStop::NotARecord {
                    pos: p,
                    expected_seq,
                    ..
                },
            ) => assert_eq!((*p, *expected_seq), (pos, seq)),
            _ => panic!("damaged last {what}: unexpected stop {}", report.stop),
        }
    }
}

/// Records of one group flush cannot vouch for each other: a damaged record followed by a valid
/// one of the same group looks exactly like a crash during that flush, and ends the log.
#[test]
fn damaged_record_inside_one_group_is_a_torn_tail() {
    let (image, sb, seqs) = three_records(true);
    let (pos, _) = record_at(&image, 1);
    let image = damaged(&image, &sb, pos + 1, Block::filled(0xee));
    let sim = SimDisk::from_image(&image);
    let report = log_recover(&sim).expect("a torn group is not corruption");
    assert_eq!(
        report.replayed.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![seqs[0]]
    );
    assert_eq!(
        read_contents(&sim),
        contents_of(&[0]),
        "the record after the hole was replayed"
    );
}

#[test]
fn checksummed_record_with_an_address_outside_the_data_region_is_corruption() {
    let (image, sb, seqs) = three_records(false);
    let (pos, _) = record_at(&image, 2);
    let end = pos + 2;
    let data = Block::filled(0x77);
    let bad_addr = sb.data_blocks;
    let desc = forge::record_descriptor(
        forge::Seed::Salt(sb.salt),
        seqs[2] + 1,
        seqs[2],
        &[bad_addr],
        &[&data],
    );
    let image = damaged(&damaged(&image, &sb, end, desc), &sb, end + 1, data);
    let sim = SimDisk::from_image(&image);
    match log_recover(&sim) {
        Err(LogError::Corruption { pos, detail, .. }) => {
            assert_eq!(pos, end);
            assert!(detail.contains("outside the data region"), "{detail}");
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    assert_eq!(sim.stats().writes, 0);
}

#[test]
fn stale_record_stop_says_expected_and_found() {
    // A log of 8 blocks: four one-block records fill it, installation frees it, a fifth record
    // lands on the first one's place, and the next position holds the stale second record.
    let sim = Arc::new(SimDisk::from_image(&formatted(3 + 8 + 8, 8, 0x57a1e)));
    let log = Log::open(sim.clone(), options()).expect("open");
    let fresh = scan_log(&*sim, false).expect("scan");
    let first_seq = fresh.next_seq;
    assert_eq!(
        fresh.stop.to_string(),
        format!("position 0: expected record {first_seq}, found no record (no record magic)")
    );
    for addr in 0..4u64 {
        let mut tx = log.begin();
        tx.write(addr, &value(addr, 1)).expect("in range");
        tx.commit().expect("commit");
    }
    log.install().expect("install");
    let mut tx = log.begin();
    tx.write(0, &value(0, 2)).expect("in range");
    let fifth = tx.commit().expect("commit").expect("non-empty");
    drop(log);
    let scan = scan_log(&*sim, false).expect("scan");
    assert_eq!(scan.records.len(), 1);
    assert_eq!(
        scan.records[0].pos, 8,
        "the fifth record starts a second lap"
    );
    let stale = first_seq + 1;
    assert_eq!(
        scan.stop,
        ScanStop::WrongSequence {
            pos: 10,
            expected_seq: fifth + 1,
            found_seq: stale
        }
    );
    assert_eq!(
        scan.stop.to_string(),
        format!(
            "position 10: expected sequence {}, found {stale}",
            fifth + 1
        )
    );
    assert!(
        scan.corruption().is_none(),
        "a stale record is not corruption"
    );
    let report = log_recover(&*sim).expect("recover");
    assert_eq!(report.replayed, vec![(fifth, 1)]);
    let mut expected: Contents = (0..4).map(|a| (a, value(a, 1))).collect();
    expected.insert(0, value(0, 2));
    assert_eq!(read_contents(&*sim), expected);
}
