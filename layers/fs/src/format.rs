//! The on-disk format, byte by byte (see `FORMAT.md` for the diagrams). All integers are
//! little-endian. Offsets are chained constants so that a field moved is a compile error away
//! from every use.

use crate::error::{FsError, Result};
use byteorder::{ByteOrder, LittleEndian as LE};
use txdisk_disk::{Addr, Block, BLOCK_SIZE};

/// An inode number. 0 is never a valid inode (it marks a free directory slot).
pub type Ino = u64;

/// `b"TXDSKFS\0"`: the first eight bytes of block 0.
pub const MAGIC: [u8; 8] = *b"TXDSKFS\0";
/// The format version this crate writes and reads.
pub const VERSION: u32 = 1;
/// The superblock's address.
pub const SUPERBLOCK_ADDR: Addr = 0;
/// The root directory's inode number.
pub const ROOT_INO: Ino = 1;

/// Bytes per inode and inodes per inode-table block.
pub const INODE_BYTES: usize = 128;
/// Inodes in one inode-table block.
pub const INODES_PER_BLOCK: u64 = (BLOCK_SIZE / INODE_BYTES) as u64;
/// Direct block pointers in an inode.
pub const DIRECT_POINTERS: usize = 10;
/// Block pointers in an indirect block.
pub const POINTERS_PER_BLOCK: u64 = (BLOCK_SIZE / 8) as u64;
/// Bits in a bitmap block.
pub const BITS_PER_BLOCK: u64 = (BLOCK_SIZE * 8) as u64;
/// Largest file, in blocks: direct + single indirect + double indirect.
pub const MAX_FILE_BLOCKS: u64 =
    DIRECT_POINTERS as u64 + POINTERS_PER_BLOCK + POINTERS_PER_BLOCK * POINTERS_PER_BLOCK;
/// Largest file, in bytes (just over 1 GiB).
pub const MAX_FILE_BYTES: u64 = MAX_FILE_BLOCKS * BLOCK_SIZE as u64;

/// Bytes per directory entry and entries per directory block.
pub const DIRENT_BYTES: usize = 128;
/// Directory entries in one directory block.
pub const DIRENTS_PER_BLOCK: usize = BLOCK_SIZE / DIRENT_BYTES;
/// Longest file name, in bytes.
pub const NAME_MAX: usize = DIRENT_BYTES - DIRENT_NAME_OFFSET;

const _: () = assert!(MAX_FILE_BYTES >= 1 << 30);
const _: () = assert!(INODE_BYTES * INODES_PER_BLOCK as usize == BLOCK_SIZE);
const _: () = assert!(DIRENT_BYTES * DIRENTS_PER_BLOCK == BLOCK_SIZE);
const _: () = assert!(NAME_MAX <= u8::MAX as usize);

// Superblock fields.
const SB_MAGIC_OFFSET: usize = 0;
const SB_VERSION_OFFSET: usize = SB_MAGIC_OFFSET + 8;
const SB_BLOCK_SIZE_OFFSET: usize = SB_VERSION_OFFSET + 4;
const SB_TOTAL_BLOCKS_OFFSET: usize = SB_BLOCK_SIZE_OFFSET + 4;
const SB_INODE_COUNT_OFFSET: usize = SB_TOTAL_BLOCKS_OFFSET + 8;
const SB_INODE_BITMAP_START_OFFSET: usize = SB_INODE_COUNT_OFFSET + 8;
const SB_INODE_BITMAP_BLOCKS_OFFSET: usize = SB_INODE_BITMAP_START_OFFSET + 8;
const SB_BLOCK_BITMAP_START_OFFSET: usize = SB_INODE_BITMAP_BLOCKS_OFFSET + 8;
const SB_BLOCK_BITMAP_BLOCKS_OFFSET: usize = SB_BLOCK_BITMAP_START_OFFSET + 8;
const SB_INODE_TABLE_START_OFFSET: usize = SB_BLOCK_BITMAP_BLOCKS_OFFSET + 8;
const SB_INODE_TABLE_BLOCKS_OFFSET: usize = SB_INODE_TABLE_START_OFFSET + 8;
const SB_DATA_START_OFFSET: usize = SB_INODE_TABLE_BLOCKS_OFFSET + 8;
const SB_DATA_BLOCKS_OFFSET: usize = SB_DATA_START_OFFSET + 8;
const SB_ROOT_INO_OFFSET: usize = SB_DATA_BLOCKS_OFFSET + 8;
const SB_CRC_OFFSET: usize = SB_ROOT_INO_OFFSET + 8;
/// Bytes of the superblock covered by its crc32c (everything before the crc).
pub const SB_CRC_COVERED_BYTES: usize = SB_CRC_OFFSET;

// Inode fields.
const INODE_KIND_OFFSET: usize = 0;
const INODE_NLINK_OFFSET: usize = INODE_KIND_OFFSET + 4;
const INODE_SIZE_OFFSET: usize = INODE_NLINK_OFFSET + 4;
const INODE_BLOCKS_OFFSET: usize = INODE_SIZE_OFFSET + 8;
const INODE_PARENT_OFFSET: usize = INODE_BLOCKS_OFFSET + 8;
const INODE_DIRECT_OFFSET: usize = INODE_PARENT_OFFSET + 8;
const INODE_INDIRECT_OFFSET: usize = INODE_DIRECT_OFFSET + 8 * DIRECT_POINTERS;
const INODE_DINDIRECT_OFFSET: usize = INODE_INDIRECT_OFFSET + 8;
const _: () = assert!(INODE_DINDIRECT_OFFSET + 8 == INODE_BYTES);

// Directory entry fields.
const DIRENT_INO_OFFSET: usize = 0;
const DIRENT_KIND_OFFSET: usize = DIRENT_INO_OFFSET + 8;
const DIRENT_NAME_LEN_OFFSET: usize = DIRENT_KIND_OFFSET + 1;
const DIRENT_NAME_OFFSET: usize = DIRENT_NAME_LEN_OFFSET + 7;

/// Stores a little-endian `u64` at byte `offset` of a block (for tools and tests that patch
/// images).
pub fn put_u64_at(block: &mut Block, offset: usize, value: u64) {
    LE::write_u64(&mut block.as_bytes_mut()[offset..], value);
}

/// The geometry recorded in block 0: where each region starts and how long it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Blocks the file system spans, from block 0.
    pub total_blocks: u64,
    /// Inodes, inode 0 (reserved) included; a whole number of table blocks.
    pub inode_count: u64,
    /// First block of the inode bitmap.
    pub inode_bitmap_start: Addr,
    /// Blocks of the inode bitmap.
    pub inode_bitmap_blocks: u64,
    /// First block of the block bitmap.
    pub block_bitmap_start: Addr,
    /// Blocks of the block bitmap.
    pub block_bitmap_blocks: u64,
    /// First block of the inode table.
    pub inode_table_start: Addr,
    /// Blocks of the inode table.
    pub inode_table_blocks: u64,
    /// First data block.
    pub data_start: Addr,
    /// Data blocks (one block-bitmap bit each).
    pub data_blocks: u64,
    /// The root directory's inode.
    pub root_ino: Ino,
}

impl Superblock {
    /// The layout for a store of `total_blocks` holding `inode_count` inodes (rounded up to a
    /// whole inode-table block), or `None` when no data block would be left.
    pub fn layout(total_blocks: u64, inode_count: u64) -> Option<Superblock> {
        let inode_count = inode_count.max(2).div_ceil(INODES_PER_BLOCK) * INODES_PER_BLOCK;
        let inode_bitmap_blocks = inode_count.div_ceil(BITS_PER_BLOCK);
        let inode_table_blocks = inode_count / INODES_PER_BLOCK;
        let inode_bitmap_start = SUPERBLOCK_ADDR + 1;
        let block_bitmap_start = inode_bitmap_start + inode_bitmap_blocks;
        let rest = total_blocks.checked_sub(block_bitmap_start + inode_table_blocks)?;
        // Each bitmap block covers BITS_PER_BLOCK data blocks and costs one block itself.
        let block_bitmap_blocks = rest.div_ceil(BITS_PER_BLOCK + 1);
        let data_blocks = rest.checked_sub(block_bitmap_blocks)?;
        if data_blocks == 0 {
            return None;
        }
        let inode_table_start = block_bitmap_start + block_bitmap_blocks;
        Some(Superblock {
            total_blocks,
            inode_count,
            inode_bitmap_start,
            inode_bitmap_blocks,
            block_bitmap_start,
            block_bitmap_blocks,
            inode_table_start,
            inode_table_blocks,
            data_start: inode_table_start + inode_table_blocks,
            data_blocks,
            root_ino: ROOT_INO,
        })
    }

    /// Block 0 holding this geometry, with magic, version and crc32c.
    pub fn encode(&self) -> Block {
        let mut block = Block::zeroed();
        let bytes = block.as_bytes_mut();
        bytes[SB_MAGIC_OFFSET..SB_MAGIC_OFFSET + 8].copy_from_slice(&MAGIC);
        LE::write_u32(&mut bytes[SB_VERSION_OFFSET..], VERSION);
        LE::write_u32(&mut bytes[SB_BLOCK_SIZE_OFFSET..], BLOCK_SIZE as u32);
        LE::write_u64(&mut bytes[SB_TOTAL_BLOCKS_OFFSET..], self.total_blocks);
        LE::write_u64(&mut bytes[SB_INODE_COUNT_OFFSET..], self.inode_count);
        LE::write_u64(
            &mut bytes[SB_INODE_BITMAP_START_OFFSET..],
            self.inode_bitmap_start,
        );
        LE::write_u64(
            &mut bytes[SB_INODE_BITMAP_BLOCKS_OFFSET..],
            self.inode_bitmap_blocks,
        );
        LE::write_u64(
            &mut bytes[SB_BLOCK_BITMAP_START_OFFSET..],
            self.block_bitmap_start,
        );
        LE::write_u64(
            &mut bytes[SB_BLOCK_BITMAP_BLOCKS_OFFSET..],
            self.block_bitmap_blocks,
        );
        LE::write_u64(
            &mut bytes[SB_INODE_TABLE_START_OFFSET..],
            self.inode_table_start,
        );
        LE::write_u64(
            &mut bytes[SB_INODE_TABLE_BLOCKS_OFFSET..],
            self.inode_table_blocks,
        );
        LE::write_u64(&mut bytes[SB_DATA_START_OFFSET..], self.data_start);
        LE::write_u64(&mut bytes[SB_DATA_BLOCKS_OFFSET..], self.data_blocks);
        LE::write_u64(&mut bytes[SB_ROOT_INO_OFFSET..], self.root_ino);
        let crc = crc32c::crc32c(&bytes[..SB_CRC_COVERED_BYTES]);
        LE::write_u32(&mut bytes[SB_CRC_OFFSET..], crc);
        block
    }

    /// Decodes and validates block 0 of a store of `store_blocks` blocks.
    pub fn decode(block: &Block, store_blocks: u64) -> Result<Superblock> {
        let bytes = block.as_bytes();
        if bytes[SB_MAGIC_OFFSET..SB_MAGIC_OFFSET + 8] != MAGIC {
            return Err(FsError::NotAFileSystem);
        }
        let version = LE::read_u32(&bytes[SB_VERSION_OFFSET..]);
        if version != VERSION {
            return Err(FsError::UnsupportedVersion { found: version });
        }
        let expected = crc32c::crc32c(&bytes[..SB_CRC_COVERED_BYTES]);
        let found = LE::read_u32(&bytes[SB_CRC_OFFSET..]);
        if expected != found {
            return Err(FsError::corrupt("superblock crc32c", expected, found));
        }
        let total_blocks = LE::read_u64(&bytes[SB_TOTAL_BLOCKS_OFFSET..]);
        let inode_count = LE::read_u64(&bytes[SB_INODE_COUNT_OFFSET..]);
        // Only geometries that `layout` produces are valid, so every region check below is
        // one comparison with a layout recomputed from two numbers.
        let expected_layout = Superblock::layout(total_blocks, inode_count)
            .ok_or_else(|| FsError::corrupt("superblock geometry", 1u32, 0u32))?;
        let found_layout = Superblock {
            total_blocks,
            inode_count,
            inode_bitmap_start: LE::read_u64(&bytes[SB_INODE_BITMAP_START_OFFSET..]),
            inode_bitmap_blocks: LE::read_u64(&bytes[SB_INODE_BITMAP_BLOCKS_OFFSET..]),
            block_bitmap_start: LE::read_u64(&bytes[SB_BLOCK_BITMAP_START_OFFSET..]),
            block_bitmap_blocks: LE::read_u64(&bytes[SB_BLOCK_BITMAP_BLOCKS_OFFSET..]),
            inode_table_start: LE::read_u64(&bytes[SB_INODE_TABLE_START_OFFSET..]),
            inode_table_blocks: LE::read_u64(&bytes[SB_INODE_TABLE_BLOCKS_OFFSET..]),
            data_start: LE::read_u64(&bytes[SB_DATA_START_OFFSET..]),
            data_blocks: LE::read_u64(&bytes[SB_DATA_BLOCKS_OFFSET..]),
            root_ino: LE::read_u64(&bytes[SB_ROOT_INO_OFFSET..]),
        };
        if found_layout != expected_layout {
            return Err(FsError::corrupt(
                "superblock layout (data start)",
                expected_layout.data_start,
                found_layout.data_start,
            ));
        }
        if total_blocks > store_blocks {
            return Err(FsError::corrupt(
                "superblock total blocks <= store blocks",
                store_blocks,
                total_blocks,
            ));
        }
        Ok(found_layout)
    }

    /// Address of the inode-table block holding `ino`, and the slot in it.
    pub fn inode_location(&self, ino: Ino) -> (Addr, usize) {
        assert!(
            ino < self.inode_count,
            "fs: inode {ino} out of range (count {})",
            self.inode_count
        );
        (
            self.inode_table_start + ino / INODES_PER_BLOCK,
            (ino % INODES_PER_BLOCK) as usize,
        )
    }

    /// Whether `addr` lies in the data region.
    pub fn is_data(&self, addr: Addr) -> bool {
        addr >= self.data_start && addr < self.data_start + self.data_blocks
    }
}

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

impl Kind {
    /// The kind's code in inodes and directory entries.
    pub fn code(self) -> u8 {
        match self {
            Kind::File => 1,
            Kind::Dir => 2,
        }
    }

    /// The kind a code stands for; `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::File),
            2 => Some(Kind::Dir),
            _ => None,
        }
    }
}

/// One inode as stored (128 bytes). `kind == None` is a free slot, all zeros.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Inode {
    /// 0 free, 1 regular file, 2 directory (a u32 so that any other value is detectable).
    pub kind_code: u32,
    /// Directory entries naming it (a directory: 2 + its subdirectories).
    pub nlink: u32,
    /// Length in bytes (a directory: a whole number of blocks).
    pub size_bytes: u64,
    /// Data and index blocks it owns.
    pub blocks: u64,
    /// A directory's parent (the root's is itself); 0 for a file.
    pub parent: Ino,
    /// The first file blocks' addresses (0: a hole).
    pub direct: [Addr; DIRECT_POINTERS],
    /// A block of pointers to the next file blocks (0: none).
    pub indirect: Addr,
    /// A block of pointers to pointer blocks, for the rest (0: none).
    pub double_indirect: Addr,
}

impl Inode {
    /// A fresh inode of `kind`: no blocks, one link (a directory two, and `parent`).
    pub fn new(kind: Kind, parent: Ino) -> Inode {
        Inode {
            kind_code: u32::from(kind.code()),
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            parent: if kind == Kind::Dir { parent } else { 0 },
            ..Inode::default()
        }
    }

    /// The kind; `None` for a free slot or an unknown code.
    pub fn kind(&self) -> Option<Kind> {
        u8::try_from(self.kind_code).ok().and_then(Kind::from_code)
    }

    /// The inode in slot `slot` of an inode-table block.
    pub fn decode(block: &Block, slot: usize) -> Inode {
        let bytes = &block.as_bytes()[slot * INODE_BYTES..(slot + 1) * INODE_BYTES];
        let mut direct = [0; DIRECT_POINTERS];
        for (i, pointer) in direct.iter_mut().enumerate() {
            *pointer = LE::read_u64(&bytes[INODE_DIRECT_OFFSET + 8 * i..]);
        }
        Inode {
            kind_code: LE::read_u32(&bytes[INODE_KIND_OFFSET..]),
            nlink: LE::read_u32(&bytes[INODE_NLINK_OFFSET..]),
            size_bytes: LE::read_u64(&bytes[INODE_SIZE_OFFSET..]),
            blocks: LE::read_u64(&bytes[INODE_BLOCKS_OFFSET..]),
            parent: LE::read_u64(&bytes[INODE_PARENT_OFFSET..]),
            direct,
            indirect: LE::read_u64(&bytes[INODE_INDIRECT_OFFSET..]),
            double_indirect: LE::read_u64(&bytes[INODE_DINDIRECT_OFFSET..]),
        }
    }

    /// Stores the inode in slot `slot` of an inode-table block.
    pub fn encode_into(&self, block: &mut Block, slot: usize) {
        let bytes = &mut block.as_bytes_mut()[slot * INODE_BYTES..(slot + 1) * INODE_BYTES];
        LE::write_u32(&mut bytes[INODE_KIND_OFFSET..], self.kind_code);
        LE::write_u32(&mut bytes[INODE_NLINK_OFFSET..], self.nlink);
        LE::write_u64(&mut bytes[INODE_SIZE_OFFSET..], self.size_bytes);
        LE::write_u64(&mut bytes[INODE_BLOCKS_OFFSET..], self.blocks);
        LE::write_u64(&mut bytes[INODE_PARENT_OFFSET..], self.parent);
        for (i, pointer) in self.direct.iter().enumerate() {
            LE::write_u64(&mut bytes[INODE_DIRECT_OFFSET + 8 * i..], *pointer);
        }
        LE::write_u64(&mut bytes[INODE_INDIRECT_OFFSET..], self.indirect);
        LE::write_u64(&mut bytes[INODE_DINDIRECT_OFFSET..], self.double_indirect);
    }
}

/// One directory entry as stored (128 bytes); `ino == 0` is a free slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawDirent {
    /// The inode named; 0 in a free slot.
    pub ino: Ino,
    /// The kind's code ([`Kind::code`]).
    pub kind_code: u8,
    /// The name, at most [`NAME_MAX`] bytes.
    pub name: Vec<u8>,
}

impl RawDirent {
    /// Decodes slot `slot`; a name length past [`NAME_MAX`] is clamped (the checker reports it).
    pub fn decode(block: &Block, slot: usize) -> (RawDirent, usize) {
        let bytes = &block.as_bytes()[slot * DIRENT_BYTES..(slot + 1) * DIRENT_BYTES];
        let name_len = usize::from(bytes[DIRENT_NAME_LEN_OFFSET]);
        let clamped = name_len.min(NAME_MAX);
        let entry = RawDirent {
            ino: LE::read_u64(&bytes[DIRENT_INO_OFFSET..]),
            kind_code: bytes[DIRENT_KIND_OFFSET],
            name: bytes[DIRENT_NAME_OFFSET..DIRENT_NAME_OFFSET + clamped].to_vec(),
        };
        (entry, name_len)
    }

    /// The inode number in slot `slot`, without decoding the rest (directory scans).
    pub fn ino_at(block: &Block, slot: usize) -> Ino {
        LE::read_u64(&block.as_bytes()[slot * DIRENT_BYTES + DIRENT_INO_OFFSET..])
    }

    /// The name in slot `slot`, borrowed (length clamped to [`NAME_MAX`]).
    pub fn name_at(block: &Block, slot: usize) -> &[u8] {
        let bytes = &block.as_bytes()[slot * DIRENT_BYTES..(slot + 1) * DIRENT_BYTES];
        let len = usize::from(bytes[DIRENT_NAME_LEN_OFFSET]).min(NAME_MAX);
        &bytes[DIRENT_NAME_OFFSET..DIRENT_NAME_OFFSET + len]
    }

    /// Stores the entry in slot `slot` of a directory block.
    pub fn encode_into(&self, block: &mut Block, slot: usize) {
        assert!(
            self.name.len() <= NAME_MAX,
            "fs: directory entry name of {} bytes",
            self.name.len()
        );
        let bytes = &mut block.as_bytes_mut()[slot * DIRENT_BYTES..(slot + 1) * DIRENT_BYTES];
        bytes.fill(0);
        LE::write_u64(&mut bytes[DIRENT_INO_OFFSET..], self.ino);
        bytes[DIRENT_KIND_OFFSET] = self.kind_code;
        bytes[DIRENT_NAME_LEN_OFFSET] = self.name.len() as u8;
        bytes[DIRENT_NAME_OFFSET..DIRENT_NAME_OFFSET + self.name.len()].copy_from_slice(&self.name);
    }

    /// Zeroes slot `slot`.
    pub fn clear(block: &mut Block, slot: usize) {
        block.as_bytes_mut()[slot * DIRENT_BYTES..(slot + 1) * DIRENT_BYTES].fill(0);
    }
}

/// Whether bit `index` of a bitmap block is set.
pub fn bit(block: &Block, index: u64) -> bool {
    let byte = block.as_bytes()[(index / 8) as usize];
    byte & (1 << (index % 8)) != 0
}

/// Sets or clears bit `index` of a bitmap block.
pub fn set_bit(block: &mut Block, index: u64, value: bool) {
    let byte = &mut block.as_bytes_mut()[(index / 8) as usize];
    if value {
        *byte |= 1 << (index % 8);
    } else {
        *byte &= !(1 << (index % 8));
    }
}
