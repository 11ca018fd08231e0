//! [`DiskImage`]: the contents of a whole disk, one value per block, as a crash leaves them.

use super::model::State;
use crate::block::{Addr, Block};
use crate::error::{DiskError, Result};
use std::sync::Arc;

/// A whole-disk image: one value per block. Cheap to clone (blocks are shared).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DiskImage {
    pub(super) blocks: Vec<Arc<Block>>,
}

impl DiskImage {
    /// An image of `size_blocks` zero blocks.
    pub fn zeroed(size_blocks: u64) -> DiskImage {
        let zero = Arc::new(Block::zeroed());
        DiskImage {
            blocks: vec![zero; size_blocks as usize],
        }
    }

    /// Number of blocks in the image.
    pub fn size_blocks(&self) -> u64 {
        self.blocks.len() as u64
    }

    /// The block at `addr`; `None` past the end.
    pub fn block(&self, addr: Addr) -> Option<&Block> {
        self.blocks.get(usize::try_from(addr).ok()?).map(|b| &**b)
    }

    /// Replaces the block at `addr` (a test or fuzzer building a damaged image).
    pub fn set_block(&mut self, addr: Addr, block: Block) -> Result<()> {
        let size_blocks = self.size_blocks();
        let slot = usize::try_from(addr)
            .ok()
            .and_then(|index| self.blocks.get_mut(index))
            .ok_or(DiskError::OutOfRange { addr, size_blocks })?;
        *slot = Arc::new(block);
        Ok(())
    }

    /// Addresses at which the two images differ (both must have the same size).
    pub fn diff(&self, other: &DiskImage) -> Vec<Addr> {
        assert_eq!(
            self.size_blocks(),
            other.size_blocks(),
            "disk: diff of images of different sizes"
        );
        let pairs = self.blocks.iter().zip(other.blocks.iter());
        pairs
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(addr, _)| addr as Addr)
            .collect()
    }
}

/// The durable value of every block, read under the caller's lock.
pub(super) fn durable_of(state: &State) -> DiskImage {
    DiskImage {
        blocks: state.slots.iter().map(|s| Arc::clone(&s.durable)).collect(),
    }
}
