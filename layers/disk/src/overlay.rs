//! [`OverlayDisk`]: a disk whose writes stay in memory, so the disk below is read and never
//! written — how a stack is opened read-only. Recovery, which must write to bring the stack to
//! a consistent state, writes into the overlay; the image's bytes do not change.

use std::collections::HashMap;

use crate::sync::Mutex;
use crate::{Addr, Block, Disk, Result};

/// A disk over `below` that keeps every write in memory (see the module comment). `sync`
/// succeeds and changes nothing: what was written lives exactly as long as the overlay.
pub struct OverlayDisk<D> {
    below: D,
    written: Mutex<HashMap<Addr, Block>>,
    limit_blocks: u64,
}

/// The default bound on what an overlay holds: 256 MiB, far more than recovery of a log or a
/// crash resync of marked chunks writes, far less than a rebuild of a large member.
pub const OVERLAY_LIMIT_BLOCKS: u64 = 65_536;

impl<D: std::fmt::Debug> std::fmt::Debug for OverlayDisk<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayDisk")
            .field("below", &self.below)
            .finish_non_exhaustive()
    }
}

impl<D: Disk> OverlayDisk<D> {
    /// An overlay over `below`, with nothing written yet, holding at most
    /// [`OVERLAY_LIMIT_BLOCKS`].
    pub fn new(below: D) -> OverlayDisk<D> {
        OverlayDisk::with_limit(below, OVERLAY_LIMIT_BLOCKS)
    }

    /// As [`OverlayDisk::new`], holding at most `limit_blocks` distinct blocks: a write of one
    /// more fails with [`crate::DiskError::OverlayFull`].
    pub fn with_limit(below: D, limit_blocks: u64) -> OverlayDisk<D> {
        OverlayDisk {
            below,
            written: Mutex::new(HashMap::new()),
            limit_blocks,
        }
    }

    /// Blocks written to the overlay so far (what it holds in memory).
    pub fn written_blocks(&self) -> usize {
        self.written.lock().len()
    }
}

impl<D: Disk> Disk for OverlayDisk<D> {
    fn size_blocks(&self) -> u64 {
        self.below.size_blocks()
    }

    fn read(&self, addr: Addr) -> Result<Block> {
        self.check_addr(addr)?;
        if let Some(block) = self.written.lock().get(&addr) {
            return Ok(block.clone());
        }
        self.below.read(addr)
    }

    fn write(&self, addr: Addr, block: &Block) -> Result<()> {
        self.check_addr(addr)?;
        {
            let mut written = self.written.lock();
            if !written.contains_key(&addr) && written.len() as u64 >= self.limit_blocks {
                return Err(crate::DiskError::OverlayFull {
                    limit_blocks: self.limit_blocks,
                });
            }
            written.insert(addr, block.clone());
        }
        #[cfg(debug_assertions)]
        self.check_rep();
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn check_rep(&self) {
        // Every write was range-checked, so the overlay never holds more blocks than the disk.
        let size_blocks = self.below.size_blocks();
        let held = self.written.lock().len() as u64;
        assert!(
            held <= size_blocks,
            "overlay: {held} blocks held over a disk of {size_blocks}"
        );
        assert!(
            held <= self.limit_blocks,
            "overlay: {held} blocks held past its limit of {}",
            self.limit_blocks
        );
        self.below.check_rep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimDisk;

    #[test]
    fn writes_stay_in_the_overlay() {
        let below = SimDisk::new(8);
        below.write(3, &Block::filled(7)).unwrap();
        below.sync().unwrap();
        let overlay = OverlayDisk::new(below);
        overlay.write(3, &Block::filled(9)).unwrap();
        overlay.write(5, &Block::filled(1)).unwrap();
        overlay.sync().unwrap();
        assert_eq!(overlay.read(3).unwrap(), Block::filled(9));
        assert_eq!(overlay.read(5).unwrap(), Block::filled(1));
        assert_eq!(overlay.written_blocks(), 2);
        assert!(overlay.write(8, &Block::filled(1)).is_err());
        assert_eq!(overlay.below.read(3).unwrap(), Block::filled(7));
        assert_eq!(overlay.below.read(5).unwrap(), Block::zeroed());
    }

    #[test]
    fn an_overlay_refuses_to_hold_more_than_its_limit() {
        let overlay = OverlayDisk::with_limit(SimDisk::new(8), 2);
        overlay.write(1, &Block::filled(1)).unwrap();
        overlay.write(2, &Block::filled(2)).unwrap();
        overlay.write(1, &Block::filled(3)).unwrap();
        let refused = overlay.write(3, &Block::filled(4)).unwrap_err();
        assert!(matches!(
            refused,
            crate::DiskError::OverlayFull { limit_blocks: 2 }
        ));
        assert_eq!(overlay.read(3).unwrap(), Block::zeroed());
    }
}
