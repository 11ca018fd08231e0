//! A [`Disk`] wrapper that counts the operations reaching the device, so a system built on
//! disks (txdisk) can report syncs per transaction — group commit shows as fewer than one.

use std::sync::atomic::{AtomicU64, Ordering};
use txdisk_disk::{Addr, Block, Disk, Result};

/// `inner`, with counts of reads, writes and syncs (successful or not: each reached the device).
pub struct CountingDisk<D> {
    inner: D,
    reads: AtomicU64,
    writes: AtomicU64,
    syncs: AtomicU64,
}

/// The counts of a [`CountingDisk`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskCounts {
    /// Block reads.
    pub reads: u64,
    /// Block writes.
    pub writes: u64,
    /// Syncs (flushes to stable storage).
    pub syncs: u64,
}

impl<D: Disk> CountingDisk<D> {
    /// Counts the operations on `inner`, from zero.
    pub fn new(inner: D) -> Self {
        CountingDisk {
            inner,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> DiskCounts {
        DiskCounts {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
        }
    }

    /// The disk counted.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The disk counted, without the counter.
    pub fn into_inner(self) -> D {
        self.inner
    }
}

impl<D: Disk> Disk for CountingDisk<D> {
    fn size_blocks(&self) -> u64 {
        self.inner.size_blocks()
    }

    fn read(&self, addr: Addr) -> Result<Block> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read(addr)
    }

    fn write(&self, addr: Addr, block: &Block) -> Result<()> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.write(addr, block)
    }

    fn write_run(&self, start: Addr, blocks: &[&Block]) -> Result<()> {
        self.writes
            .fetch_add(blocks.len() as u64, Ordering::Relaxed);
        self.inner.write_run(start, blocks)
    }

    fn sync(&self) -> Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync()
    }

    fn check_rep(&self) {
        self.inner.check_rep()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use txdisk_disk::SimDisk;

    #[test]
    fn counts_every_operation_and_passes_it_through() {
        let disk = CountingDisk::new(SimDisk::new(8));
        disk.write(3, &Block::filled(7)).expect("write");
        disk.write(4, &Block::filled(8)).expect("write");
        disk.sync().expect("sync");
        assert_eq!(disk.read(3).expect("read"), Block::filled(7));
        assert!(
            disk.read(8).is_err(),
            "out of range still errs, and still counts"
        );
        assert_eq!(
            disk.counts(),
            DiskCounts {
                reads: 2,
                writes: 2,
                syncs: 1
            }
        );
        assert_eq!(disk.size_blocks(), 8);
        assert_eq!(disk.into_inner().read(4).expect("read"), Block::filled(8));
    }
}
