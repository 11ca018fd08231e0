//! Keeps `docs/FORMAT.md` true: encodes a superblock, a header and real log records (one and
//! several descriptor blocks) with the log, then checks every documented field at its documented
//! offset, the zero padding, and each checksum recomputed by hand from the documented rule.

mod forge;

use byteorder::{ByteOrder, LittleEndian as LE};
use std::sync::Arc;
use txdisk_disk::{Block, Disk, SimDisk};
use txdisk_log::tooling::{scan_log, Header, Superblock, FORMAT_VERSION, HEADER_SLOTS, LOG_START};
use txdisk_log::{Log, LogOptions};

fn salted_crc(salt: u64, parts: &[&[u8]]) -> u32 {
    let mut crc = crc32c::crc32c(&salt.to_le_bytes());
    for part in parts {
        crc = crc32c::crc32c_append(crc, part);
    }
    crc
}

#[test]
fn superblock_bytes() {
    let salt = 0x0102_0304_0506_0708;
    let sb = Superblock::layout(100, 16, salt).expect("layout");
    let block = sb.encode();
    let b = block.as_bytes();
    assert_eq!(&b[0..8], b"TXDSUPER");
    assert_eq!(LE::read_u32(&b[8..]), FORMAT_VERSION);
    assert_eq!(FORMAT_VERSION, 1);
    assert_eq!(LE::read_u32(&b[12..]), 4096, "block size");
    assert_eq!(LE::read_u64(&b[16..]), 100, "size_blocks");
    assert_eq!(LE::read_u64(&b[24..]), LOG_START, "log_start");
    assert_eq!(LOG_START, 3);
    assert_eq!(LE::read_u64(&b[32..]), 16, "log_blocks");
    assert_eq!(LE::read_u64(&b[40..]), 3 + 16, "data_start");
    assert_eq!(LE::read_u64(&b[48..]), 100 - 19, "data_blocks");
    assert_eq!(LE::read_u64(&b[56..]), salt, "salt");
    assert_eq!(
        LE::read_u32(&b[64..]),
        crc32c::crc32c(&b[..64]),
        "superblock crc: plain CRC-32C of bytes 0..64"
    );
    assert!(
        b[68..].iter().all(|&x| x == 0),
        "superblock padding after byte 68 must be zero"
    );
}

#[test]
fn header_bytes_and_slots() {
    let salt = 0xfeed_beef_0000_0001;
    let sb = Superblock::layout(100, 16, salt).expect("layout");
    for generation in [0u64, 1, 2, 7] {
        let header = Header {
            generation,
            tail_pos: 40 + generation,
            tail_seq: 9,
        };
        let block = header.encode(&sb);
        let b = block.as_bytes();
        assert_eq!(&b[0..8], b"TXDLOGHD");
        assert_eq!(LE::read_u32(&b[8..]), FORMAT_VERSION);
        assert_eq!(LE::read_u32(&b[12..]), 0, "reserved");
        assert_eq!(LE::read_u64(&b[16..]), generation);
        assert_eq!(LE::read_u64(&b[24..]), 40 + generation, "tail_pos");
        assert_eq!(LE::read_u64(&b[32..]), 9, "tail_seq");
        assert_eq!(
            LE::read_u32(&b[40..]),
            salted_crc(salt, &[&b[..40]]),
            "header crc: salted CRC-32C of bytes 0..40"
        );
        assert!(
            b[44..].iter().all(|&x| x == 0),
            "header padding after byte 44 must be zero"
        );
        let slot = if generation % 2 == 0 { 1 } else { 2 };
        assert_eq!(
            header.slot_addr(),
            slot,
            "generation {generation} goes to block {slot}"
        );
    }
    assert_eq!(HEADER_SLOTS, [1, 2]);
}

/// A log on a `SimDisk` with one committed, not installed, record of `blocks` data blocks.
fn one_record(
    log_blocks: u64,
    data_blocks: u64,
    blocks: u64,
    salt: u64,
) -> (Arc<SimDisk>, Vec<(u64, Block)>) {
    let sim = Arc::new(SimDisk::new(LOG_START + log_blocks + data_blocks));
    Log::format(&*sim, log_blocks, salt).expect("format");
    let log = Log::open(
        sim.clone(),
        LogOptions {
            background_installer: false,
            ..LogOptions::default()
        },
    )
    .expect("open");
    let writes: Vec<(u64, Block)> = (0..blocks)
        .map(|i| (data_blocks - 1 - i, forge::tagged("data", i as u8)))
        .collect();
    let mut tx = log.begin();
    for (addr, block) in &writes {
        tx.write(*addr, block).expect("write");
    }
    tx.commit().expect("commit");
    drop(log);
    (sim, writes)
}

#[test]
fn one_descriptor_record_matches_the_hand_encoding() {
    let salt = 0x5a17_5a17_5a17_5a17;
    let (sim, mut writes) = one_record(16, 32, 3, salt);
    let scan = scan_log(&*sim, true).expect("scan");
    assert_eq!(
        scan.records.len(),
        1,
        "one record expected: {:?}",
        scan.stop
    );
    let record = &scan.records[0];
    let sb = scan.superblock;
    // Data blocks are stored in ascending address order.
    writes.sort_by_key(|(addr, _)| *addr);
    let addrs: Vec<u64> = writes.iter().map(|(a, _)| *a).collect();
    let data: Vec<&Block> = writes.iter().map(|(_, b)| b).collect();
    assert_eq!(record.addrs, addrs);
    let on_disk = sim.read(sb.log_addr(record.pos)).expect("read descriptor");
    let by_hand = forge::record_descriptor(
        forge::Seed::Salt(salt),
        record.seq,
        record.durable_seq,
        &addrs,
        &data,
    );
    assert!(
        on_disk == by_hand,
        "descriptor differs from the documented layout:\n{on_disk:?}\n{by_hand:?}"
    );
    for (index, block) in data.iter().enumerate() {
        let found = sim
            .read(sb.log_addr(record.pos + 1 + index as u64))
            .expect("read data");
        assert!(
            found == **block,
            "data block {index} not right after the descriptor"
        );
    }
}

#[test]
fn continuation_descriptors_hold_addresses_from_offset_zero() {
    let salt = 77;
    let blocks = 600u64;
    let (sim, mut writes) = one_record(1100, 700, blocks, salt);
    writes.sort_by_key(|(addr, _)| *addr);
    let scan = scan_log(&*sim, false).expect("scan");
    let record = &scan.records[0];
    let sb = scan.superblock;
    assert_eq!(
        record.len_blocks,
        2 + blocks,
        "507 addresses in the first descriptor, the rest in one continuation"
    );
    let first = sim.read(sb.log_addr(record.pos)).expect("read");
    let second = sim.read(sb.log_addr(record.pos + 1)).expect("read");
    let (f, s) = (first.as_bytes(), second.as_bytes());
    assert_eq!(LE::read_u32(&f[24..]), blocks as u32, "data_blocks");
    assert_eq!(LE::read_u32(&f[28..]), 2, "desc_blocks");
    assert_eq!(LE::read_u32(&f[36..]), 0, "reserved");
    for (index, (addr, _)) in writes.iter().enumerate() {
        let found = if index < 507 {
            LE::read_u64(&f[40 + index * 8..])
        } else {
            LE::read_u64(&s[(index - 507) * 8..])
        };
        assert_eq!(found, *addr, "address number {index}");
    }
    assert!(
        s[(blocks as usize - 507) * 8..].iter().all(|&x| x == 0),
        "unused address slots must be zero"
    );
    // The checksum: salt, first descriptor with its crc field as zero, continuation, data.
    let mut crc = salted_crc(salt, &[&f[..32], &[0; 4], &f[36..], s]);
    for index in 0..blocks {
        let data = sim
            .read(sb.log_addr(record.pos + 2 + index))
            .expect("read data");
        assert!(
            data == writes[index as usize].1,
            "data block {index} out of place"
        );
        crc = crc32c::crc32c_append(crc, data.as_bytes());
    }
    assert_eq!(LE::read_u32(&f[32..]), crc, "record crc");
}
