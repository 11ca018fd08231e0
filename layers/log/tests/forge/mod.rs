//! Blocks built by hand from the byte layout in `docs/FORMAT.md`, independently of the log's own
//! encoder: record descriptors with any sequence number and any CRC seed (a forger who knows the
//! format but not the image's salt), and the salted CRC written the way the document states it.

#![allow(dead_code)]

use byteorder::{ByteOrder, LittleEndian as LE};
use txdisk_disk::Block;

pub const RECORD_MAGIC: &[u8; 8] = b"TXDRECRD";
pub const SEQ_OFFSET: usize = 8;
pub const DURABLE_SEQ_OFFSET: usize = 16;
pub const DATA_BLOCKS_OFFSET: usize = 24;
pub const DESC_BLOCKS_OFFSET: usize = 28;
pub const CRC_OFFSET: usize = 32;
pub const ADDRS_OFFSET: usize = 40;

/// How the forger seeds the record checksum.
#[derive(Clone, Copy, Debug)]
pub enum Seed {
    /// The documented rule with this salt: CRC-32C of the salt's 8 little-endian bytes, then
    /// the covered bytes. With the image's own salt this is what the log writes.
    Salt(u64),
    /// A plain CRC-32C with no salt at all.
    Unsalted,
}

impl Seed {
    fn initial(self) -> u32 {
        match self {
            Seed::Salt(salt) => crc32c::crc32c(&salt.to_le_bytes()),
            Seed::Unsalted => 0,
        }
    }
}

/// A one-descriptor record head for `addrs` (at most 507) over `data`, its checksum computed
/// with `seed` over the descriptor (crc field as zero) and the data blocks, in that order.
pub fn record_descriptor(
    seed: Seed,
    seq: u64,
    durable_seq: u64,
    addrs: &[u64],
    data: &[&Block],
) -> Block {
    assert_eq!(
        addrs.len(),
        data.len(),
        "forge: {} addresses for {} data blocks",
        addrs.len(),
        data.len()
    );
    assert!(addrs.len() <= 507, "forge: only one-descriptor records");
    let mut desc = Block::zeroed();
    let bytes = desc.as_bytes_mut();
    bytes[..8].copy_from_slice(RECORD_MAGIC);
    LE::write_u64(&mut bytes[SEQ_OFFSET..], seq);
    LE::write_u64(&mut bytes[DURABLE_SEQ_OFFSET..], durable_seq);
    LE::write_u32(&mut bytes[DATA_BLOCKS_OFFSET..], addrs.len() as u32);
    LE::write_u32(&mut bytes[DESC_BLOCKS_OFFSET..], 1);
    for (index, addr) in addrs.iter().enumerate() {
        LE::write_u64(&mut bytes[ADDRS_OFFSET + index * 8..], *addr);
    }
    let mut crc = crc32c::crc32c_append(seed.initial(), bytes);
    for block in data {
        crc = crc32c::crc32c_append(crc, block.as_bytes());
    }
    LE::write_u32(&mut bytes[CRC_OFFSET..], crc);
    desc
}

/// A data block that says what it is in its first bytes, so a failure message shows it.
pub fn tagged(tag: &str, fill: u8) -> Block {
    let mut block = Block::filled(fill);
    block.as_bytes_mut()[..tag.len()].copy_from_slice(tag.as_bytes());
    block
}
