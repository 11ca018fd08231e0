//! The unit of I/O: a 4096-byte block.

use crate::error::{DiskError, Result};
use std::fmt;

/// A block address: the index of a block on a disk.
pub type Addr = u64;

/// Bytes in a block.
pub const BLOCK_SIZE: usize = 4096;
/// Bytes in a sector: the granularity at which a simulated torn write tears a block.
pub const SECTOR_SIZE: usize = 512;
/// Sectors in a block.
pub const SECTORS_PER_BLOCK: usize = BLOCK_SIZE / SECTOR_SIZE;

const _: () = assert!(SECTORS_PER_BLOCK * SECTOR_SIZE == BLOCK_SIZE);

/// A 4096-byte block, heap-allocated so that moving one is cheap.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Block(Box<[u8; BLOCK_SIZE]>);

impl Block {
    /// A block of zeros.
    pub fn zeroed() -> Block {
        Block(Box::new([0u8; BLOCK_SIZE]))
    }

    /// A block with every byte equal to `byte`.
    pub fn filled(byte: u8) -> Block {
        Block(Box::new([byte; BLOCK_SIZE]))
    }

    /// A block holding a copy of `bytes`, which must be exactly [`BLOCK_SIZE`] long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Block> {
        if bytes.len() != BLOCK_SIZE {
            return Err(DiskError::BadBlockLength { len: bytes.len() });
        }
        let mut block = Block::zeroed();
        block.0.copy_from_slice(bytes);
        Ok(block)
    }

    /// A block whose first bytes are `prefix` and the rest zeros; `prefix` at most one block.
    pub fn with_prefix(prefix: &[u8]) -> Result<Block> {
        if prefix.len() > BLOCK_SIZE {
            return Err(DiskError::BadBlockLength { len: prefix.len() });
        }
        let mut block = Block::zeroed();
        block.0[..prefix.len()].copy_from_slice(prefix);
        Ok(block)
    }

    /// The block's bytes.
    pub fn as_bytes(&self) -> &[u8; BLOCK_SIZE] {
        &self.0
    }

    /// The block's bytes, to change in place.
    pub fn as_bytes_mut(&mut self) -> &mut [u8; BLOCK_SIZE] {
        &mut self.0
    }

    /// Whether every byte is zero.
    pub fn is_zero(&self) -> bool {
        // Word by word: a byte loop is the hot spot of the checksummed disk's reads in the
        // lightly optimised test builds the crash tests run in.
        self.0.chunks_exact(8).all(|word| {
            u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]) == 0
        })
    }

    /// Sector `index` (0..8) of the block.
    pub fn sector(&self, index: usize) -> &[u8] {
        assert!(
            index < SECTORS_PER_BLOCK,
            "disk: sector index {index} out of range"
        );
        &self.0[index * SECTOR_SIZE..(index + 1) * SECTOR_SIZE]
    }

    /// A short fingerprint for logs and diagnostics (FNV-1a of the contents).
    pub fn fingerprint(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &byte in self.0.iter() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }
}

impl Default for Block {
    fn default() -> Self {
        Block::zeroed()
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return write!(f, "Block(zeros)");
        }
        write!(
            f,
            "Block({:02x?}.. fp={:016x})",
            &self.0[..8],
            self.fingerprint()
        )
    }
}

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        &self.0[..]
    }
}
