//! The floor: the raw device doing the least any durable transactional store must do — a header
//! block plus the data blocks, `pwrite`n over a preallocated file, then one `fdatasync` per
//! transaction. Every other system's figures are read as ratios to these.
//!
//! File layout (4096-byte blocks): `[header slot per thread | data 0..disk_blocks | log area]`.
//! The log area is what `recover-full-log` reads back and installs; `replica-resync` writes the
//! whole data area sequentially, which is the sequential-write bandwidth of the file system.

use crate::error::{BenchError, Result};
use crate::system::{RecoveryClock, RecoveryRun, System, SystemFactory};
use crate::workload::{Geometry, ReadKind, RecoveryKind, Workload};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use txdisk_disk::{Addr, Block, BLOCK_SIZE};

const FILE_NAME: &str = "floor.img";
/// Sequential I/O is done in chunks of this many blocks (1 MiB).
const CHUNK_BLOCKS: u64 = 256;

/// The raw-device floor: the same I/O pattern as a workload straight on one file with
/// `pwrite` and `fdatasync`, the fastest a durable system on that disk could be.
pub struct FloorFactory;

impl SystemFactory for FloorFactory {
    fn name(&self) -> &'static str {
        "floor"
    }

    fn config_note(&self) -> String {
        "raw file, preallocated by writing zeros; per transaction one pwrite of a header block \
         (the thread's slot) and one pwrite per data block at its address, then fdatasync; \
         nosync = the same without fdatasync, flush = fdatasync; recover-full-log = read the \
         log area and pwrite it home + fdatasync; replica-resync = sequential 1 MiB pwrites of \
         the whole disk + fdatasync (the file system's sequential-write bandwidth)"
            .to_string()
    }

    fn supports(&self, _workload: Workload) -> bool {
        true
    }

    fn create(&self, dir: &Path, geometry: &Geometry) -> Result<()> {
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| BenchError::io("create", &path, e))?;
        // Real zeros, not fallocate: unwritten extents would make the first overwrite of each
        // block pay a metadata update that no later write pays.
        let floor = Floor::from_file(file, path, *geometry);
        let zeros = vec![0u8; CHUNK_BLOCKS as usize * BLOCK_SIZE];
        floor.write_sequential(0, floor.total_blocks(), &zeros)?;
        floor.sync()
    }

    fn open(&self, dir: &Path, geometry: &Geometry) -> Result<Box<dyn System>> {
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| BenchError::io("open", &path, e))?;
        Ok(Box::new(Floor::from_file(file, path, *geometry)))
    }
}

struct Floor {
    file: File,
    path: PathBuf,
    geometry: Geometry,
    syncs: AtomicU64,
}

impl Floor {
    fn from_file(file: File, path: PathBuf, geometry: Geometry) -> Floor {
        Floor {
            file,
            path,
            geometry,
            syncs: AtomicU64::new(0),
        }
    }

    fn header_slots(&self) -> u64 {
        self.geometry.max_threads as u64
    }

    fn data_offset(&self, addr: Addr) -> u64 {
        (self.header_slots() + addr) * BLOCK_SIZE as u64
    }

    fn log_start_block(&self) -> u64 {
        self.header_slots() + self.geometry.disk_blocks
    }

    fn total_blocks(&self) -> u64 {
        self.log_start_block() + self.geometry.log_blocks
    }

    fn pwrite(&self, bytes: &[u8], offset: u64) -> Result<()> {
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| BenchError::io("pwrite", &self.path, e))
    }

    fn pread(&self, bytes: &mut [u8], offset: u64) -> Result<()> {
        self.file
            .read_exact_at(bytes, offset)
            .map_err(|e| BenchError::io("pread", &self.path, e))
    }

    fn sync(&self) -> Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.file
            .sync_data()
            .map_err(|e| BenchError::io("fdatasync", &self.path, e))
    }

    /// Writes `count` blocks from block `start` in chunks of `pattern` (a whole number of blocks).
    fn write_sequential(&self, start: u64, count: u64, pattern: &[u8]) -> Result<()> {
        let chunk_blocks = (pattern.len() / BLOCK_SIZE) as u64;
        let mut block = start;
        while block < start + count {
            let blocks = chunk_blocks.min(start + count - block);
            let bytes = &pattern[..blocks as usize * BLOCK_SIZE];
            self.pwrite(bytes, block * BLOCK_SIZE as u64)?;
            block += blocks;
        }
        Ok(())
    }

    /// The header and data writes of one transaction, without the sync.
    fn write_txn(&self, thread: usize, addrs: &[Addr], data: &[Block]) -> Result<()> {
        assert_eq!(
            addrs.len(),
            data.len(),
            "floor: addrs and data differ in length"
        );
        if 8 * (addrs.len() + 1) > BLOCK_SIZE {
            return Err(BenchError::Config(format!(
                "floor: a header block holds at most {} addresses, transaction has {}",
                BLOCK_SIZE / 8 - 1,
                addrs.len()
            )));
        }
        // The header a log would write: the count and the addresses of the blocks.
        let mut header = [0u8; BLOCK_SIZE];
        header[..8].copy_from_slice(&(addrs.len() as u64).to_le_bytes());
        for (slot, addr) in header[8..].chunks_exact_mut(8).zip(addrs) {
            slot.copy_from_slice(&addr.to_le_bytes());
        }
        self.pwrite(&header, thread as u64 * BLOCK_SIZE as u64)?;
        for (addr, block) in addrs.iter().zip(data) {
            self.check_addr(*addr)?;
            self.pwrite(block.as_bytes(), self.data_offset(*addr))?;
        }
        Ok(())
    }

    fn check_addr(&self, addr: Addr) -> Result<()> {
        if addr >= self.geometry.disk_blocks {
            return Err(txdisk_disk::DiskError::OutOfRange {
                addr,
                size_blocks: self.geometry.disk_blocks,
            }
            .into());
        }
        Ok(())
    }

    /// Untimed: fills the log area; timed: reads it back and writes it home, then syncs.
    fn recover_full_log(&self) -> Result<RecoveryRun> {
        let log_start = self.log_start_block();
        let log_blocks = self.geometry.log_blocks.min(self.geometry.disk_blocks);
        let pattern = vec![0xA5u8; CHUNK_BLOCKS as usize * BLOCK_SIZE];
        self.write_sequential(log_start, log_blocks, &pattern)?;
        self.sync()?;
        let clock = RecoveryClock::start();
        let mut buffer = vec![0u8; CHUNK_BLOCKS as usize * BLOCK_SIZE];
        let mut done = 0;
        while done < log_blocks {
            let blocks = CHUNK_BLOCKS.min(log_blocks - done);
            let bytes = &mut buffer[..blocks as usize * BLOCK_SIZE];
            self.pread(bytes, (log_start + done) * BLOCK_SIZE as u64)?;
            self.pwrite(bytes, self.data_offset(done))?;
            done += blocks;
        }
        self.sync()?;
        Ok(clock.stop(log_blocks * BLOCK_SIZE as u64))
    }

    fn resync(&self) -> Result<RecoveryRun> {
        let pattern = vec![0x5Au8; CHUNK_BLOCKS as usize * BLOCK_SIZE];
        let clock = RecoveryClock::start();
        self.write_sequential(self.header_slots(), self.geometry.disk_blocks, &pattern)?;
        self.sync()?;
        Ok(clock.stop(self.geometry.disk_blocks * BLOCK_SIZE as u64))
    }
}

impl System for Floor {
    fn name(&self) -> &'static str {
        "floor"
    }

    fn durable_txn(&self, thread: usize, addrs: &[Addr], data: &[Block]) -> Result<()> {
        self.write_txn(thread, addrs, data)?;
        self.sync()
    }

    fn nosync_txn(&self, thread: usize, addrs: &[Addr], data: &[Block]) -> Result<()> {
        self.write_txn(thread, addrs, data)
    }

    fn flush(&self) -> Result<()> {
        self.sync()
    }

    fn prepare_reads(&self, _kind: ReadKind, addrs: &[Addr], data: &[Block]) -> Result<()> {
        // A raw device has no log: a logged block and an installed one are read alike.
        for (addr, block) in addrs.iter().zip(data) {
            self.check_addr(*addr)?;
            self.pwrite(block.as_bytes(), self.data_offset(*addr))?;
        }
        self.sync()
    }

    fn read(&self, _thread: usize, addr: Addr) -> Result<Block> {
        self.check_addr(addr)?;
        let mut block = Block::zeroed();
        self.pread(block.as_bytes_mut(), self.data_offset(addr))?;
        Ok(block)
    }

    fn recover(&self, kind: RecoveryKind) -> Result<RecoveryRun> {
        match kind {
            RecoveryKind::FullLog => self.recover_full_log(),
            RecoveryKind::ReplicaResync => self.resync(),
        }
    }

    fn sync_count(&self) -> Option<u64> {
        Some(self.syncs.load(Ordering::Relaxed))
    }
}
