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
}

impl<D: std::fmt::Debug> std::fmt::Debug for OverlayDisk<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayDisk")
            .field("below", &self.below)
            .finish_non_exhaustive()
    }
}

impl<D: Disk> OverlayDisk<D> {
    /// An overlay over `below`, with nothing written yet.
    pub fn new(below: D) -> OverlayDisk<D> {
        OverlayDisk {
            below,
            written: Mutex::new(HashMap::new()),
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
        self.written.lock().insert(addr, block.clone());
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
}
