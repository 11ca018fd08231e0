//! The on-disk format, version 1 (documented byte by byte in `docs/FORMAT.md`).
//!
//! All integers are little-endian. Every checksum is CRC-32C; record and header checksums are
//! seeded with the image's random salt, so user data can never pass for log metadata.

use crate::error::{LogError, Result};
use byteorder::{ByteOrder, LittleEndian as LE};
use txdisk_disk::{Addr, Block, BLOCK_SIZE};

/// The on-disk format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Where the superblock lives.
pub const SUPERBLOCK_ADDR: Addr = 0;
/// The two header slots; a header write goes to the slot the newest valid header is not in.
pub const HEADER_SLOTS: [Addr; 2] = [1, 2];
/// First block of the circular log region.
pub const LOG_START: Addr = 3;
/// Smallest log region accepted: a record needs at least a descriptor and one data block.
pub const MIN_LOG_BLOCKS: u64 = 4;
/// Positions and sequence numbers above this are corruption: at one block per nanosecond a
/// log takes 146 years to get there, and arithmetic on them can never overflow.
pub const MAX_POSITION: u64 = 1 << 62;

// ---- superblock (block 0) ----
pub const SUPER_MAGIC: [u8; 8] = *b"TXDSUPER";
const SB_MAGIC_OFFSET: usize = 0;
const SB_VERSION_OFFSET: usize = SB_MAGIC_OFFSET + 8;
const SB_BLOCK_SIZE_OFFSET: usize = SB_VERSION_OFFSET + 4;
const SB_SIZE_BLOCKS_OFFSET: usize = SB_BLOCK_SIZE_OFFSET + 4;
const SB_LOG_START_OFFSET: usize = SB_SIZE_BLOCKS_OFFSET + 8;
const SB_LOG_BLOCKS_OFFSET: usize = SB_LOG_START_OFFSET + 8;
const SB_DATA_START_OFFSET: usize = SB_LOG_BLOCKS_OFFSET + 8;
const SB_DATA_BLOCKS_OFFSET: usize = SB_DATA_START_OFFSET + 8;
const SB_SALT_OFFSET: usize = SB_DATA_BLOCKS_OFFSET + 8;
const SB_CRC_OFFSET: usize = SB_SALT_OFFSET + 8;
pub const SB_LEN: usize = SB_CRC_OFFSET + 4;

// ---- log header (blocks 1 and 2) ----
pub const HEADER_MAGIC: [u8; 8] = *b"TXDLOGHD";
const HD_MAGIC_OFFSET: usize = 0;
const HD_VERSION_OFFSET: usize = HD_MAGIC_OFFSET + 8;
const HD_RESERVED_OFFSET: usize = HD_VERSION_OFFSET + 4;
const HD_GENERATION_OFFSET: usize = HD_RESERVED_OFFSET + 4;
const HD_TAIL_POS_OFFSET: usize = HD_GENERATION_OFFSET + 8;
const HD_TAIL_SEQ_OFFSET: usize = HD_TAIL_POS_OFFSET + 8;
const HD_CRC_OFFSET: usize = HD_TAIL_SEQ_OFFSET + 8;
pub const HEADER_LEN: usize = HD_CRC_OFFSET + 4;

// ---- record descriptor (first block of every transaction record) ----
pub const RECORD_MAGIC: [u8; 8] = *b"TXDRECRD";
const RD_MAGIC_OFFSET: usize = 0;
const RD_SEQ_OFFSET: usize = RD_MAGIC_OFFSET + 8;
const RD_DURABLE_SEQ_OFFSET: usize = RD_SEQ_OFFSET + 8;
const RD_DATA_BLOCKS_OFFSET: usize = RD_DURABLE_SEQ_OFFSET + 8;
const RD_DESC_BLOCKS_OFFSET: usize = RD_DATA_BLOCKS_OFFSET + 4;
const RD_CRC_OFFSET: usize = RD_DESC_BLOCKS_OFFSET + 4;
const RD_RESERVED_OFFSET: usize = RD_CRC_OFFSET + 4;
const RD_ADDRS_OFFSET: usize = RD_RESERVED_OFFSET + 4;
/// Home addresses that fit in the first descriptor block.
pub const ADDRS_IN_FIRST_DESC: usize = (BLOCK_SIZE - RD_ADDRS_OFFSET) / 8;
/// Home addresses per continuation descriptor block.
pub const ADDRS_PER_DESC: usize = BLOCK_SIZE / 8;

const _: () = assert!(SB_LEN <= 512, "superblock must fit one sector");
const _: () = assert!(HEADER_LEN <= 512, "header must fit one sector");
const _: () = assert!(RD_ADDRS_OFFSET % 8 == 0);
const _: () = assert!(ADDRS_IN_FIRST_DESC == 507);

/// The superblock: where everything is, and the salt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// The format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// Blocks of the whole image.
    pub size_blocks: u64,
    /// First block of the circular log region ([`LOG_START`]).
    pub log_start: Addr,
    /// Blocks of the log region.
    pub log_blocks: u64,
    /// First block of the data region: the home of address 0.
    pub data_start: Addr,
    /// Blocks of the data region: the address space the log offers.
    pub data_blocks: u64,
    /// Seeds every record and header checksum, so user data cannot pass for log metadata.
    pub salt: u64,
}

impl Superblock {
    /// The layout for a disk of `size_blocks` with a log region of `log_blocks`.
    pub fn layout(size_blocks: u64, log_blocks: u64, salt: u64) -> Result<Superblock> {
        if log_blocks < MIN_LOG_BLOCKS {
            return Err(LogError::BadGeometry {
                reason: format!("log of {log_blocks} blocks; at least {MIN_LOG_BLOCKS} needed"),
            });
        }
        let too_big = || LogError::BadGeometry {
            reason: format!("log of {log_blocks} blocks is larger than any disk"),
        };
        let data_start = LOG_START
            .checked_add(log_blocks)
            .filter(|&start| start < MAX_POSITION)
            .ok_or_else(too_big)?;
        if size_blocks <= data_start {
            return Err(LogError::BadGeometry {
                reason: format!(
                    "disk of {size_blocks} blocks leaves no data region after {data_start} blocks of metadata and log"
                ),
            });
        }
        Ok(Superblock {
            version: FORMAT_VERSION,
            size_blocks,
            log_start: LOG_START,
            log_blocks,
            data_start,
            data_blocks: size_blocks - data_start,
            salt,
        })
    }

    /// The superblock as block 0 holds it, checksum filled in.
    pub fn encode(&self) -> Block {
        let mut block = Block::zeroed();
        let b = block.as_bytes_mut();
        b[SB_MAGIC_OFFSET..SB_MAGIC_OFFSET + 8].copy_from_slice(&SUPER_MAGIC);
        LE::write_u32(&mut b[SB_VERSION_OFFSET..], self.version);
        LE::write_u32(&mut b[SB_BLOCK_SIZE_OFFSET..], BLOCK_SIZE as u32);
        LE::write_u64(&mut b[SB_SIZE_BLOCKS_OFFSET..], self.size_blocks);
        LE::write_u64(&mut b[SB_LOG_START_OFFSET..], self.log_start);
        LE::write_u64(&mut b[SB_LOG_BLOCKS_OFFSET..], self.log_blocks);
        LE::write_u64(&mut b[SB_DATA_START_OFFSET..], self.data_start);
        LE::write_u64(&mut b[SB_DATA_BLOCKS_OFFSET..], self.data_blocks);
        LE::write_u64(&mut b[SB_SALT_OFFSET..], self.salt);
        let crc = crc32c::crc32c(&b[..SB_CRC_OFFSET]);
        LE::write_u32(&mut b[SB_CRC_OFFSET..], crc);
        block
    }

    /// Decodes and validates block 0 of a disk of `disk_blocks` blocks.
    pub fn decode(block: &Block, disk_blocks: u64) -> Result<Superblock> {
        let b = block.as_bytes();
        if b[SB_MAGIC_OFFSET..SB_MAGIC_OFFSET + 8] != SUPER_MAGIC {
            return Err(LogError::not_image(format!(
                "bad superblock magic {:02x?} (expected {:02x?})",
                &b[..8],
                SUPER_MAGIC
            )));
        }
        let found = LE::read_u32(&b[SB_CRC_OFFSET..]);
        let expected = crc32c::crc32c(&b[..SB_CRC_OFFSET]);
        if found != expected {
            return Err(LogError::SuperblockChecksum { expected, found });
        }
        let version = LE::read_u32(&b[SB_VERSION_OFFSET..]);
        if version != FORMAT_VERSION {
            return Err(LogError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let block_size = LE::read_u32(&b[SB_BLOCK_SIZE_OFFSET..]);
        if block_size as usize != BLOCK_SIZE {
            return Err(LogError::BadGeometry {
                reason: format!("block size {block_size}, expected {BLOCK_SIZE}"),
            });
        }
        let sb = Superblock {
            version,
            size_blocks: LE::read_u64(&b[SB_SIZE_BLOCKS_OFFSET..]),
            log_start: LE::read_u64(&b[SB_LOG_START_OFFSET..]),
            log_blocks: LE::read_u64(&b[SB_LOG_BLOCKS_OFFSET..]),
            data_start: LE::read_u64(&b[SB_DATA_START_OFFSET..]),
            data_blocks: LE::read_u64(&b[SB_DATA_BLOCKS_OFFSET..]),
            salt: LE::read_u64(&b[SB_SALT_OFFSET..]),
        };
        sb.validate(disk_blocks)?;
        Ok(sb)
    }

    /// The geometry must be the one `layout` computes and fit the disk it is on.
    pub fn validate(&self, disk_blocks: u64) -> Result<()> {
        let expected = Superblock::layout(self.size_blocks, self.log_blocks, self.salt)?;
        if *self != expected {
            return Err(LogError::BadGeometry {
                reason: format!("inconsistent superblock {self:?}; expected {expected:?}"),
            });
        }
        if self.size_blocks > disk_blocks {
            return Err(LogError::BadGeometry {
                reason: format!(
                    "superblock says {} blocks but the disk has {disk_blocks} (truncated image?)",
                    self.size_blocks
                ),
            });
        }
        Ok(())
    }

    /// The CRC seed of every salted checksum on this image.
    pub fn crc_seed(&self) -> u32 {
        crc32c::crc32c(&self.salt.to_le_bytes())
    }

    /// The disk address of absolute log position `pos`.
    pub fn log_addr(&self, pos: u64) -> Addr {
        self.log_start + pos % self.log_blocks
    }

    /// Most data blocks one record can carry: descriptors plus data must fit in the log.
    pub fn max_tx_blocks(&self) -> usize {
        let mut data_blocks = self.log_blocks.saturating_sub(1) as usize;
        while data_blocks > 0 && record_len_blocks(data_blocks) > self.log_blocks {
            data_blocks -= 1;
        }
        data_blocks
    }
}

/// The log header: where the live log starts. Rewritten only after installation is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Increases by one at every header write; the valid slot with the largest one wins.
    pub generation: u64,
    /// Absolute log position of the first live record (physical block = log_start + pos % log_blocks).
    pub tail_pos: u64,
    /// Sequence number the record at `tail_pos` must carry.
    pub tail_seq: u64,
}

impl Header {
    /// The slot this header is written to: generations alternate between the two.
    pub fn slot_addr(&self) -> Addr {
        HEADER_SLOTS[(self.generation % 2) as usize]
    }

    /// The header as a header slot holds it, checksum seeded with `sb`'s salt.
    pub fn encode(&self, sb: &Superblock) -> Block {
        let mut block = Block::zeroed();
        let b = block.as_bytes_mut();
        b[HD_MAGIC_OFFSET..HD_MAGIC_OFFSET + 8].copy_from_slice(&HEADER_MAGIC);
        LE::write_u32(&mut b[HD_VERSION_OFFSET..], FORMAT_VERSION);
        LE::write_u64(&mut b[HD_GENERATION_OFFSET..], self.generation);
        LE::write_u64(&mut b[HD_TAIL_POS_OFFSET..], self.tail_pos);
        LE::write_u64(&mut b[HD_TAIL_SEQ_OFFSET..], self.tail_seq);
        let crc = crc32c::crc32c_append(sb.crc_seed(), &b[..HD_CRC_OFFSET]);
        LE::write_u32(&mut b[HD_CRC_OFFSET..], crc);
        block
    }

    /// Decodes one header slot; `Err` says why the slot is not valid.
    pub fn decode(block: &Block, sb: &Superblock) -> Result<Header, String> {
        let b = block.as_bytes();
        if b[HD_MAGIC_OFFSET..HD_MAGIC_OFFSET + 8] != HEADER_MAGIC {
            return Err("bad magic".into());
        }
        let found = LE::read_u32(&b[HD_CRC_OFFSET..]);
        let expected = crc32c::crc32c_append(sb.crc_seed(), &b[..HD_CRC_OFFSET]);
        if found != expected {
            return Err(format!(
                "checksum mismatch: expected {expected:#010x}, found {found:#010x}"
            ));
        }
        let version = LE::read_u32(&b[HD_VERSION_OFFSET..]);
        if version != FORMAT_VERSION {
            return Err(format!("version {version}, expected {FORMAT_VERSION}"));
        }
        let header = Header {
            generation: LE::read_u64(&b[HD_GENERATION_OFFSET..]),
            tail_pos: LE::read_u64(&b[HD_TAIL_POS_OFFSET..]),
            tail_seq: LE::read_u64(&b[HD_TAIL_SEQ_OFFSET..]),
        };
        if header.tail_seq == 0 {
            return Err("tail sequence 0 (sequences start at 1)".into());
        }
        if header.tail_pos > MAX_POSITION
            || header.tail_seq > MAX_POSITION
            || header.generation > MAX_POSITION
        {
            return Err(format!(
                "tail position {} / sequence {} beyond {MAX_POSITION}",
                header.tail_pos, header.tail_seq
            ));
        }
        Ok(header)
    }
}

/// Blocks a record of `data_blocks` data blocks occupies: its descriptors, then its data.
pub fn record_len_blocks(data_blocks: usize) -> u64 {
    desc_blocks(data_blocks) as u64 + data_blocks as u64
}

/// Descriptor blocks needed for `data_blocks` home addresses.
pub fn desc_blocks(data_blocks: usize) -> usize {
    let extra = data_blocks.saturating_sub(ADDRS_IN_FIRST_DESC);
    1 + extra.div_ceil(ADDRS_PER_DESC)
}

/// The fixed fields of a record's first descriptor block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHead {
    pub seq: u64,
    /// The highest sequence known durable when this record was written: if this record is
    /// valid, every record up to `durable_seq` was acknowledged, so a bad one is corruption.
    pub durable_seq: u64,
    pub data_blocks: u32,
    pub desc_blocks: u32,
    pub crc: u32,
}

/// Encodes a record's descriptor blocks (checksum filled in) for `addrs` and `data`.
pub fn encode_record(
    sb: &Superblock,
    seq: u64,
    durable_seq: u64,
    addrs: &[Addr],
    data: &[&Block],
) -> Vec<Block> {
    assert_eq!(
        addrs.len(),
        data.len(),
        "log: record with {} addresses and {} blocks",
        addrs.len(),
        data.len()
    );
    assert!(!addrs.is_empty(), "log: empty record");
    assert!(
        durable_seq < seq,
        "log: record {seq} claims durable_seq {durable_seq}"
    );
    let desc_count = desc_blocks(addrs.len());
    let mut descs = vec![Block::zeroed(); desc_count];
    {
        let b = descs[0].as_bytes_mut();
        b[RD_MAGIC_OFFSET..RD_MAGIC_OFFSET + 8].copy_from_slice(&RECORD_MAGIC);
        LE::write_u64(&mut b[RD_SEQ_OFFSET..], seq);
        LE::write_u64(&mut b[RD_DURABLE_SEQ_OFFSET..], durable_seq);
        LE::write_u32(&mut b[RD_DATA_BLOCKS_OFFSET..], addrs.len() as u32);
        LE::write_u32(&mut b[RD_DESC_BLOCKS_OFFSET..], desc_count as u32);
    }
    for (index, &addr) in addrs.iter().enumerate() {
        let (desc, offset) = addr_slot(index);
        LE::write_u64(&mut descs[desc].as_bytes_mut()[offset..], addr);
    }
    let crc = record_crc(sb, &descs, data.iter().copied());
    LE::write_u32(&mut descs[0].as_bytes_mut()[RD_CRC_OFFSET..], crc);
    descs
}

/// Debug builds, before a header is written: the block decodes back to the same header.
#[cfg(debug_assertions)]
pub(crate) fn check_header_round_trip(header: &Header, block: &Block, sb: &Superblock) {
    let decoded = Header::decode(block, sb);
    assert_eq!(
        decoded.as_ref(),
        Ok(header),
        "log: header for slot {} does not decode back (expected left, found right)",
        header.slot_addr()
    );
}

/// Debug builds, before the superblock is written: the block decodes back to the same one.
#[cfg(debug_assertions)]
pub(crate) fn check_superblock_round_trip(sb: &Superblock, block: &Block) {
    let decoded = Superblock::decode(block, sb.size_blocks);
    assert!(
        decoded.as_ref().is_ok_and(|found| found == sb),
        "log: superblock at block {SUPERBLOCK_ADDR} does not decode back: expected {sb:?}, found {decoded:?}"
    );
}

/// Debug builds, before a record is written: its descriptors decode back to the sequence
/// numbers, addresses and checksum it was encoded from.
#[cfg(debug_assertions)]
pub(crate) fn check_record_round_trip(
    sb: &Superblock,
    seq: u64,
    durable_seq: u64,
    addrs: &[Addr],
    descs: &[Block],
    data: &[&Block],
) {
    let head = match decode_record_head(&descs[0]) {
        Ok(head) => head,
        Err(reason) => panic!("log: record {seq} does not decode back: {reason}"),
    };
    assert_eq!(
        head.seq, seq,
        "log: record {seq} decodes as record {}",
        head.seq
    );
    assert_eq!(
        head.durable_seq, durable_seq,
        "log: record {seq} encoded durable_seq {durable_seq}, decodes {}",
        head.durable_seq
    );
    assert_eq!(
        head.desc_blocks as usize,
        descs.len(),
        "log: record {seq}: {} descriptor blocks encoded, {} decoded",
        descs.len(),
        head.desc_blocks
    );
    assert!(
        decode_record_addrs(descs, head.data_blocks as usize) == addrs,
        "log: record {seq}: home addresses do not decode back ({} encoded, {} decoded)",
        addrs.len(),
        head.data_blocks
    );
    let crc = record_crc(sb, descs, data.iter().copied());
    assert_eq!(
        crc, head.crc,
        "log: record {seq}: stored checksum {:#010x}, recomputed {crc:#010x}",
        head.crc
    );
}

/// Where home address number `index` is stored: (descriptor block, byte offset).
fn addr_slot(index: usize) -> (usize, usize) {
    if index < ADDRS_IN_FIRST_DESC {
        return (0, RD_ADDRS_OFFSET + index * 8);
    }
    let rest = index - ADDRS_IN_FIRST_DESC;
    (1 + rest / ADDRS_PER_DESC, (rest % ADDRS_PER_DESC) * 8)
}

/// The salted CRC-32C of a record: its descriptors (with the crc field read as zero) and data.
pub fn record_crc<'a>(
    sb: &Superblock,
    descs: &[Block],
    data: impl Iterator<Item = &'a Block>,
) -> u32 {
    let first = descs[0].as_bytes();
    let mut crc = crc32c::crc32c_append(sb.crc_seed(), &first[..RD_CRC_OFFSET]);
    crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc = crc32c::crc32c_append(crc, &first[RD_CRC_OFFSET + 4..]);
    for desc in &descs[1..] {
        crc = crc32c::crc32c_append(crc, desc.as_bytes());
    }
    for block in data {
        crc = crc32c::crc32c_append(crc, block.as_bytes());
    }
    crc
}

/// Parses a record's first descriptor block; `Err` says why it is not a record head.
pub fn decode_record_head(block: &Block) -> Result<RecordHead, String> {
    let b = block.as_bytes();
    if b[RD_MAGIC_OFFSET..RD_MAGIC_OFFSET + 8] != RECORD_MAGIC {
        return Err("no record magic".into());
    }
    let head = RecordHead {
        seq: LE::read_u64(&b[RD_SEQ_OFFSET..]),
        durable_seq: LE::read_u64(&b[RD_DURABLE_SEQ_OFFSET..]),
        data_blocks: LE::read_u32(&b[RD_DATA_BLOCKS_OFFSET..]),
        desc_blocks: LE::read_u32(&b[RD_DESC_BLOCKS_OFFSET..]),
        crc: LE::read_u32(&b[RD_CRC_OFFSET..]),
    };
    if head.data_blocks == 0 {
        return Err("record with no data blocks".into());
    }
    if head.desc_blocks as usize != desc_blocks(head.data_blocks as usize) {
        return Err(format!(
            "{} descriptor blocks for {} data blocks (expected {})",
            head.desc_blocks,
            head.data_blocks,
            desc_blocks(head.data_blocks as usize)
        ));
    }
    if head.durable_seq >= head.seq {
        return Err(format!(
            "durable sequence {} not below sequence {}",
            head.durable_seq, head.seq
        ));
    }
    Ok(head)
}

/// The home addresses listed in a record's descriptors.
pub fn decode_record_addrs(descs: &[Block], data_blocks: usize) -> Vec<Addr> {
    (0..data_blocks)
        .map(|index| {
            let (desc, offset) = addr_slot(index);
            LE::read_u64(&descs[desc].as_bytes()[offset..])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_round_trips_and_rejects_flips() {
        let sb = Superblock::layout(100, 16, 0x1234).unwrap();
        let block = sb.encode();
        assert_eq!(Superblock::decode(&block, 100).unwrap(), sb);
        for byte in 0..SB_LEN {
            let mut bad = block.clone();
            bad.as_bytes_mut()[byte] ^= 0x40;
            assert!(
                Superblock::decode(&bad, 100).is_err(),
                "flip at byte {byte} accepted"
            );
        }
        assert!(
            Superblock::decode(&block, 99).is_err(),
            "truncated disk accepted"
        );
    }

    #[test]
    fn header_checksum_depends_on_salt() {
        let sb = Superblock::layout(100, 16, 7).unwrap();
        let other = Superblock::layout(100, 16, 8).unwrap();
        let header = Header {
            generation: 3,
            tail_pos: 40,
            tail_seq: 9,
        };
        let block = header.encode(&sb);
        assert_eq!(Header::decode(&block, &sb).unwrap(), header);
        assert!(Header::decode(&block, &other).is_err());
    }

    #[test]
    fn record_descriptors_hold_many_addresses() {
        let sb = Superblock::layout(5000, 2000, 1).unwrap();
        let data = Block::filled(3);
        let addrs: Vec<Addr> = (0..1200).collect();
        let refs: Vec<&Block> = addrs.iter().map(|_| &data).collect();
        let descs = encode_record(&sb, 5, 4, &addrs, &refs);
        assert_eq!(descs.len(), 3);
        let head = decode_record_head(&descs[0]).unwrap();
        assert_eq!(head.data_blocks, 1200);
        assert_eq!(decode_record_addrs(&descs, 1200), addrs);
        assert_eq!(record_crc(&sb, &descs, refs.iter().copied()), head.crc);
    }

    #[test]
    fn max_tx_blocks_fits_the_log() {
        for log_blocks in [4u64, 5, 100, 508, 509, 510, 1100] {
            let sb = Superblock::layout(log_blocks + 10, log_blocks, 0).unwrap();
            let max = sb.max_tx_blocks();
            assert!(record_len_blocks(max) <= log_blocks);
            assert!(record_len_blocks(max + 1) > log_blocks);
        }
    }
}
