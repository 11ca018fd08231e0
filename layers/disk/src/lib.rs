//! # txdisk-disk: the bottom layer — block devices
//!
//! **What it offers.** The [`Disk`] trait: a fixed-size array of 4096-byte [`Block`]s addressed by
//! [`Addr`] (a block number, `u64`), with `size_blocks()`, `read(addr)`, `write(addr, &block)` and
//! `sync()`. Every method takes `&self`: one disk is shared by many threads, and an
//! implementation serialises what it must. The implementations:
//!
//! * [`FileDisk`] — an image file or a block device, positional I/O (`pread`/`pwrite`), `sync`
//!   = `fdatasync`; each handle locks its image (one writer, or readers only).
//! * [`OverlayDisk`] — any disk with its writes kept in memory, for opening an image read-only.
//! * [`bugs`] — deliberately wrong variants (a `sync` without `fdatasync`) that tests switch on
//!   with the `deliberate-bugs` feature to prove they catch them.
//! * [`SimDisk`] — the asynchronous disk model of FSCQ, in memory, with crash and fault
//!   injection, deterministic from a seed. Crash tests and the crash-point fuzzer run every
//!   layer above on it.
//!
//! **Crash model (the contract every layer above programs against).** A write is *pending*
//! until the next successful `sync`; `read` returns the newest value written. A crash keeps, for
//! each block independently, either its durable value or any one of its pending writes — never
//! a value that was not written, and (unless torn writes are simulated) never a mix of two. A
//! layer above must therefore order its writes with `sync` barriers, and must never trust a
//! write it has not seen synced. A failed `sync` ([`DiskError::SyncFailed`]) means the writes
//! since the last good sync may be lost: it is never retried and reported as success.
//!
//! **Rep invariant (`SimDisk::check_rep`, run after every operation in debug builds).** Exactly
//! `size_blocks` slots; every slot holds one durable value and at most [`MAX_PENDING_PER_BLOCK`]
//! pending writes; the operation counter only grows; once crashed or failed, the disk stays so
//! and its contents no longer change.
//!
//! **Crash invariant.** [`SimDisk::crash_states`] enumerates exactly the states the model allows:
//! the product over blocks of the number of distinct values among {durable} ∪ pending (each
//! state once); in torn mode, every 512-byte sector chooses independently among those values.
//!
//! Errors are values ([`DiskError`]); a panic here means a broken invariant of this crate.

#![deny(missing_docs)]

mod block;
pub mod bugs;
mod error;
mod file;
mod lock;
mod overlay;
pub mod rng;
mod sim;
pub mod sync;

pub use block::{Addr, Block, BLOCK_SIZE, SECTORS_PER_BLOCK, SECTOR_SIZE};
pub use error::{Damage, DiskError, LockMode, Result};
pub use file::FileDisk;
pub use overlay::{OverlayDisk, OVERLAY_LIMIT_BLOCKS};
pub use sim::{
    CrashStates, DiskImage, FaultPlan, OpKind, SimDisk, SimStats, TooManyStates,
    MAX_PENDING_PER_BLOCK,
};

use std::sync::Arc;

/// A block device: `size_blocks()` blocks of [`BLOCK_SIZE`] bytes, written one block at a time.
///
/// Writes are buffered until `sync`: see the crate documentation for the crash model.
pub trait Disk: Send + Sync {
    /// Number of blocks; valid addresses are `0..size_blocks()`.
    fn size_blocks(&self) -> u64;

    /// The newest value written to `addr` (durable or not).
    fn read(&self, addr: Addr) -> Result<Block>;

    /// Writes `block` at `addr`; durable only after the next successful [`Disk::sync`].
    fn write(&self, addr: Addr, block: &Block) -> Result<()>;

    /// Makes every write issued before the call durable. An error means some of them may be lost.
    fn sync(&self) -> Result<()>;

    /// Writes `blocks` at consecutive addresses from `start`: the same as `write` of each in
    /// order (each block pending on its own until `sync`), but a file-backed disk does it in one
    /// vectored system call.
    fn write_run(&self, start: Addr, blocks: &[&Block]) -> Result<()> {
        // A run that ends past the disk is refused whole, before anything is written.
        if let Some(last) = (blocks.len() as u64).checked_sub(1) {
            self.check_addr(start.saturating_add(last))?;
        }
        for (offset, block) in blocks.iter().enumerate() {
            self.write(start + offset as u64, block)?;
        }
        Ok(())
    }

    /// Writes several runs (each as [`Disk::write_run`]), in order: one call for a batch the
    /// caller has ready at once, so that a disk with a per-write cost it can share (a replicated
    /// disk's write-intent bitmap: one flush for every chunk of the batch) pays it once.
    fn write_runs(&self, runs: &[(Addr, &[&Block])]) -> Result<()> {
        for (start, blocks) in runs {
            self.write_run(*start, blocks)?;
        }
        Ok(())
    }

    /// Records that `addr` holds no good value: every later read of it fails with
    /// [`DiskError::Corrupt`] until it is written again, and a crash keeps that (durable after
    /// the next `sync`). A replicated disk uses it when it copies a block whose only copy failed
    /// verification, so the copy fails as the original does instead of serving other bytes. A
    /// disk that keeps no checksums cannot record it and returns [`DiskError::Unsupported`].
    fn invalidate(&self, addr: Addr) -> Result<()> {
        self.check_addr(addr)?;
        Err(DiskError::Unsupported { op: "invalidate" })
    }

    /// The version of block `addr`: how many times it was written, for a disk that counts
    /// (a checksummed disk keeps it in the block's tag), `None` for one that does not, or for a
    /// block never written or whose tag is damaged. Of two copies of one block that both
    /// verify but differ — on the two members of a replicated pair — the higher version is the
    /// newer one.
    fn generation(&self, addr: Addr) -> Result<Option<u32>> {
        self.check_addr(addr)?;
        Ok(None)
    }

    /// Writes `block` at `addr` as a copy of another disk's block whose version is
    /// `generation` (that disk's [`Disk::generation`]): a disk that counts versions records
    /// the copy at that version, so that the two copies of one write carry the same count and
    /// a later comparison of them means what it says. Otherwise the same as [`Disk::write`]
    /// (the default). A replicated disk copies this way whenever it repairs or rebuilds.
    fn write_copy(&self, addr: Addr, block: &Block, generation: Option<u32>) -> Result<()> {
        let _ = generation;
        self.write(addr, block)
    }

    /// Checks this disk's rep invariant (and, for a layered disk, the layers below first).
    /// Panics on a broken invariant. Layers call it under `cfg(debug_assertions)`.
    fn check_rep(&self) {}

    /// Convenience: an out-of-range check shared by implementations and layers.
    fn check_addr(&self, addr: Addr) -> Result<()> {
        let size_blocks = self.size_blocks();
        if addr >= size_blocks {
            return Err(DiskError::OutOfRange { addr, size_blocks });
        }
        Ok(())
    }
}

impl<D: Disk + ?Sized> Disk for Arc<D> {
    fn size_blocks(&self) -> u64 {
        (**self).size_blocks()
    }
    fn read(&self, addr: Addr) -> Result<Block> {
        (**self).read(addr)
    }
    fn write(&self, addr: Addr, block: &Block) -> Result<()> {
        (**self).write(addr, block)
    }
    fn write_run(&self, start: Addr, blocks: &[&Block]) -> Result<()> {
        (**self).write_run(start, blocks)
    }
    fn write_runs(&self, runs: &[(Addr, &[&Block])]) -> Result<()> {
        (**self).write_runs(runs)
    }
    fn sync(&self) -> Result<()> {
        (**self).sync()
    }
    fn invalidate(&self, addr: Addr) -> Result<()> {
        (**self).invalidate(addr)
    }
    fn generation(&self, addr: Addr) -> Result<Option<u32>> {
        (**self).generation(addr)
    }
    fn write_copy(&self, addr: Addr, block: &Block, generation: Option<u32>) -> Result<()> {
        (**self).write_copy(addr, block, generation)
    }
    fn check_rep(&self) {
        (**self).check_rep()
    }
}

impl<D: Disk + ?Sized> Disk for Box<D> {
    fn size_blocks(&self) -> u64 {
        (**self).size_blocks()
    }
    fn read(&self, addr: Addr) -> Result<Block> {
        (**self).read(addr)
    }
    fn write(&self, addr: Addr, block: &Block) -> Result<()> {
        (**self).write(addr, block)
    }
    fn write_run(&self, start: Addr, blocks: &[&Block]) -> Result<()> {
        (**self).write_run(start, blocks)
    }
    fn write_runs(&self, runs: &[(Addr, &[&Block])]) -> Result<()> {
        (**self).write_runs(runs)
    }
    fn sync(&self) -> Result<()> {
        (**self).sync()
    }
    fn invalidate(&self, addr: Addr) -> Result<()> {
        (**self).invalidate(addr)
    }
    fn generation(&self, addr: Addr) -> Result<Option<u32>> {
        (**self).generation(addr)
    }
    fn write_copy(&self, addr: Addr, block: &Block, generation: Option<u32>) -> Result<()> {
        (**self).write_copy(addr, block, generation)
    }
    fn check_rep(&self) {
        (**self).check_rep()
    }
}

impl<D: Disk + ?Sized> Disk for &D {
    fn size_blocks(&self) -> u64 {
        (**self).size_blocks()
    }
    fn read(&self, addr: Addr) -> Result<Block> {
        (**self).read(addr)
    }
    fn write(&self, addr: Addr, block: &Block) -> Result<()> {
        (**self).write(addr, block)
    }
    fn write_run(&self, start: Addr, blocks: &[&Block]) -> Result<()> {
        (**self).write_run(start, blocks)
    }
    fn write_runs(&self, runs: &[(Addr, &[&Block])]) -> Result<()> {
        (**self).write_runs(runs)
    }
    fn sync(&self) -> Result<()> {
        (**self).sync()
    }
    fn invalidate(&self, addr: Addr) -> Result<()> {
        (**self).invalidate(addr)
    }
    fn generation(&self, addr: Addr) -> Result<Option<u32>> {
        (**self).generation(addr)
    }
    fn write_copy(&self, addr: Addr, block: &Block, generation: Option<u32>) -> Result<()> {
        (**self).write_copy(addr, block, generation)
    }
    fn check_rep(&self) {
        (**self).check_rep()
    }
}
