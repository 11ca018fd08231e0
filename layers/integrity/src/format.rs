//! The on-disk format (docs/FORMAT-integrity.md): the superblock, its geometry, and the
//! 16-byte tag entries. Pure encoding and decoding; nothing here does I/O.

use crate::error::{IntegrityError, Result};
use byteorder::{ByteOrder, LittleEndian};
use txdisk_disk::{Addr, Block, BLOCK_SIZE};

/// `"TXDINTEG"`: the first bytes of both superblock copies.
pub const MAGIC: [u8; 8] = *b"TXDINTEG";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Blocks before the tag region: two identical superblock copies.
pub const SUPERBLOCK_COPIES: u64 = 2;
/// Bytes of one tag entry.
pub const ENTRY_BYTES: usize = 16;
/// Tag entries in one tag block.
pub const ENTRIES_PER_BLOCK: u64 = (BLOCK_SIZE / ENTRY_BYTES) as u64;
/// Bytes of the superblock that its checksum covers.
const SUPERBLOCK_COVERED: usize = 64;
/// The flag in an entry's generation word that marks the block as holding no good value.
const LOST_FLAG: u32 = 1 << 31;

/// Magic values of the formats that came before this layer existed, so that an older image is
/// refused by name rather than as "not an image".
const OLDER_MAGICS: [(&[u8; 8], &str); 2] = [
    (b"TXDSUPER", "a single image"),
    (b"txdPAIR\0", "a replicated pair member"),
];

/// The superblock: where the tags and the data are, and the salt the tags are bound with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Blocks of the device the geometry was computed for.
    pub raw_blocks: u64,
    /// First tag block (always [`SUPERBLOCK_COPIES`]).
    pub tag_start: u64,
    /// Tag blocks: one entry per data block, [`ENTRIES_PER_BLOCK`] to a block.
    pub tag_blocks: u64,
    /// First data block on the device.
    pub data_start: u64,
    /// Data blocks: the size of the disk this layer offers.
    pub data_blocks: u64,
    /// A random value chosen at format; every entry checksum starts with it.
    pub salt: u64,
}

impl Superblock {
    /// The largest layout that fits `raw_blocks`: two superblocks, then as many data blocks as
    /// there is room for with one tag entry each.
    pub fn layout(raw_blocks: u64, salt: u64) -> Result<Superblock> {
        let room = raw_blocks.saturating_sub(SUPERBLOCK_COPIES);
        // T tag blocks cover 256·T data blocks, so T + D ≤ room with D ≤ 256·T at
        // T = ceil(room / 257).
        let tag_blocks = room.div_ceil(ENTRIES_PER_BLOCK + 1);
        let data_blocks = room - tag_blocks;
        if data_blocks == 0 {
            return Err(IntegrityError::TooSmall { raw_blocks });
        }
        let sb = Superblock {
            raw_blocks,
            tag_start: SUPERBLOCK_COPIES,
            tag_blocks,
            data_start: SUPERBLOCK_COPIES + tag_blocks,
            data_blocks,
            salt,
        };
        assert!(
            sb.data_blocks.div_ceil(ENTRIES_PER_BLOCK) <= sb.tag_blocks
                && sb.data_start + sb.data_blocks <= raw_blocks,
            "integrity: layout {sb:?} does not fit {raw_blocks} blocks"
        );
        Ok(sb)
    }

    /// The smallest device whose layout offers at least `data_blocks` data blocks (the
    /// inverse of [`Superblock::layout`]).
    pub fn raw_blocks_for(data_blocks: u64) -> u64 {
        SUPERBLOCK_COPIES + data_blocks + data_blocks.div_ceil(ENTRIES_PER_BLOCK)
    }

    /// The tag block holding data block `addr`'s entry, and the entry's index in it.
    pub fn tag_of(&self, addr: Addr) -> (u64, usize) {
        assert!(
            addr < self.data_blocks,
            "integrity: tag of block {addr}, expected below {}",
            self.data_blocks
        );
        (
            addr / ENTRIES_PER_BLOCK,
            (addr % ENTRIES_PER_BLOCK) as usize,
        )
    }

    /// Encodes the superblock (both copies are this block).
    pub fn encode(&self) -> Block {
        let mut block = Block::zeroed();
        let bytes = block.as_bytes_mut();
        bytes[0..8].copy_from_slice(&MAGIC);
        LittleEndian::write_u32(&mut bytes[8..12], FORMAT_VERSION);
        LittleEndian::write_u32(&mut bytes[12..16], BLOCK_SIZE as u32);
        LittleEndian::write_u64(&mut bytes[16..24], self.raw_blocks);
        LittleEndian::write_u64(&mut bytes[24..32], self.tag_start);
        LittleEndian::write_u64(&mut bytes[32..40], self.tag_blocks);
        LittleEndian::write_u64(&mut bytes[40..48], self.data_start);
        LittleEndian::write_u64(&mut bytes[48..56], self.data_blocks);
        LittleEndian::write_u64(&mut bytes[56..64], self.salt);
        let crc = crc32c::crc32c(&bytes[..SUPERBLOCK_COVERED]);
        LittleEndian::write_u32(&mut bytes[64..68], crc);
        block
    }

    /// Decodes and checks one superblock copy read from a device of `device_blocks` blocks.
    pub fn decode(block: &Block, device_blocks: u64) -> Result<Superblock> {
        let bytes = block.as_bytes();
        if bytes[0..8] != MAGIC {
            return Err(refusal_of(block));
        }
        let found = LittleEndian::read_u32(&bytes[64..68]);
        let expected = crc32c::crc32c(&bytes[..SUPERBLOCK_COVERED]);
        if found != expected {
            return Err(IntegrityError::SuperblockChecksum { expected, found });
        }
        let version = LittleEndian::read_u32(&bytes[8..12]);
        if version != FORMAT_VERSION {
            return Err(IntegrityError::UnsupportedVersion { found: version });
        }
        let field = |at: usize| LittleEndian::read_u64(&bytes[at..at + 8]);
        let (raw_blocks, salt) = (field(16), field(56));
        let layout = Superblock::layout(raw_blocks, salt)?;
        let stored = Superblock {
            raw_blocks,
            tag_start: field(24),
            tag_blocks: field(32),
            data_start: field(40),
            data_blocks: field(48),
            salt,
        };
        if LittleEndian::read_u32(&bytes[12..16]) != BLOCK_SIZE as u32 || stored != layout {
            return Err(IntegrityError::BadGeometry {
                reason: format!("superblock says {stored:?}, the layout is {layout:?}"),
            });
        }
        if raw_blocks > device_blocks {
            return Err(IntegrityError::BadGeometry {
                reason: format!(
                    "formatted for {raw_blocks} blocks, the device has {device_blocks} (truncated image?)"
                ),
            });
        }
        Ok(stored)
    }
}

/// Why a block without this layer's magic is refused: blank, an older txdisk format, or
/// something else.
fn refusal_of(block: &Block) -> IntegrityError {
    if block.is_zero() {
        return IntegrityError::Blank;
    }
    for (magic, what) in OLDER_MAGICS {
        if block.as_bytes()[0..8] == *magic {
            return IntegrityError::Unchecksummed { what };
        }
    }
    IntegrityError::NotAnImage
}

/// One tag entry: what the block at its address must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Never written: the block must read as zeros.
    Blank,
    /// The block was written.
    Written(Tag),
    /// The entry fails its own checksum: bit rot in the tag, or a tag block written in the
    /// wrong place. Nothing can be verified against it.
    Damaged,
}

/// The checksums of a written block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    /// [`data_hash`] of the block's current contents.
    pub data_hash: u32,
    /// [`data_hash`] of the contents the block held at the last sync before the current ones.
    pub prev_hash: u32,
    /// Writes of this block, modulo 2³¹ (the newer of two copies has the higher one).
    pub generation: u32,
    /// The block holds no good value (copied from a copy that failed verification).
    pub lost: bool,
}

impl Tag {
    /// Decodes the 16 bytes of the entry for data block `addr`.
    pub fn decode(bytes: &[u8], addr: Addr, salt: u64) -> Entry {
        assert_eq!(bytes.len(), ENTRY_BYTES, "integrity: entry length");
        if bytes.iter().all(|byte| *byte == 0) {
            return Entry::Blank;
        }
        if LittleEndian::read_u32(&bytes[12..16]) != entry_crc(&bytes[..12], addr, salt) {
            return Entry::Damaged;
        }
        let word = LittleEndian::read_u32(&bytes[8..12]);
        Entry::Written(Tag {
            data_hash: LittleEndian::read_u32(&bytes[0..4]),
            prev_hash: LittleEndian::read_u32(&bytes[4..8]),
            generation: word & !LOST_FLAG,
            lost: word & LOST_FLAG != 0,
        })
    }

    /// Encodes this tag as the entry of data block `addr`.
    pub fn encode(&self, bytes: &mut [u8], addr: Addr, salt: u64) {
        assert_eq!(bytes.len(), ENTRY_BYTES, "integrity: entry length");
        assert_eq!(
            self.generation & LOST_FLAG,
            0,
            "integrity: generation overflows into the lost flag"
        );
        LittleEndian::write_u32(&mut bytes[0..4], self.data_hash);
        LittleEndian::write_u32(&mut bytes[4..8], self.prev_hash);
        let flag = if self.lost { LOST_FLAG } else { 0 };
        LittleEndian::write_u32(&mut bytes[8..12], self.generation | flag);
        let crc = entry_crc(&bytes[..12], addr, salt);
        LittleEndian::write_u32(&mut bytes[12..16], crc);
    }

    /// The bits of the generation word that count writes (the top one is the lost flag).
    pub const GENERATION_MASK: u32 = !LOST_FLAG;

    /// The generation after `generation`, skipping the lost flag's bit.
    pub fn next_generation(generation: u32) -> u32 {
        generation.wrapping_add(1) & !LOST_FLAG
    }
}

/// The checksum that binds an entry to its address and the image: CRC-32C of the salt, the
/// address (both little-endian `u64`) and the entry's first 12 bytes.
pub fn entry_crc(covered: &[u8], addr: Addr, salt: u64) -> u32 {
    let mut seed = [0u8; 16];
    LittleEndian::write_u64(&mut seed[0..8], salt);
    LittleEndian::write_u64(&mut seed[8..16], addr);
    crc32c::crc32c_append(crc32c::crc32c(&seed), covered)
}

/// The hash of a block's contents that an entry records: a 64-bit multiply-rotate hash of its
/// 512 little-endian words, folded to 32 bits (docs/FORMAT-integrity.md gives the constants).
///
/// Not a CRC, on purpose: a CRC is linear over GF(2), so every block laid out as *fields,
/// their CRC, zeros* (a log header, and any user block that ends in its own CRC) has the same
/// CRC whatever its fields — a stale copy of such a block would verify as the current one.
/// Each step here is a bijection of the state for a fixed word (xor, multiplication by an
/// odd constant, rotation), so a change confined to one word always changes the hash.
pub fn data_hash(block: &Block) -> u32 {
    let mut state = HASH_SEED;
    for word in block.as_bytes().chunks_exact(8) {
        state = (state ^ LittleEndian::read_u64(word))
            .wrapping_mul(HASH_MULTIPLIER)
            .rotate_left(HASH_ROTATION);
    }
    state ^= state >> 29;
    state = state.wrapping_mul(HASH_MULTIPLIER);
    (state ^ (state >> 32)) as u32
}

/// The hash's starting state.
pub const HASH_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
/// The hash's odd multiplier.
pub const HASH_MULTIPLIER: u64 = 0xff51_afd7_ed55_8ccd;
/// The hash's rotation, in bits, after each word.
pub const HASH_ROTATION: u32 = 31;
