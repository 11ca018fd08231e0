//! The floor: the raw device doing the least any durable transactional store must do — a header
//! block plus the data blocks, `pwrite`n over a preallocated file, then one `fdatasync` per
//! transaction. Every other system's figures are read as ratios to these.
//!
//! File layout (4096-byte blocks): `[header slot per thread | data 0..disk_blocks | log area]`.
//! The log area is what `recover-full-log` reads back and installs; `replica-resync` writes the
//! whole data area sequentially, which is the sequential-write bandwidth of the file system.
//!
//! `floor-pair` is the same floor over two such files, the least a mirrored pair must do: every
//! `pwrite` goes to both, and every `fdatasync` becomes one on each file at once — the second
//! handed to a [`MirrorSyncer`] thread that lives as long as the opened system, the first done by
//! the caller — returning when both are done. One [`Floor`] does both, so the two floors cannot
//! drift apart in what they write.

use crate::error::{BenchError, Result};
use crate::system::{RecoveryClock, RecoveryRun, System, SystemFactory};
use crate::workload::{Geometry, ReadKind, RecoveryKind, Workload};
use parking_lot::{Condvar, Mutex};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use txdisk_disk::{Addr, Block, BLOCK_SIZE};

const FILE_NAME: &str = "floor.img";
/// The pair's two files (the single floor's is [`FILE_NAME`]); the second is synced by a thread.
const PAIR_FILE_NAMES: [&str; 2] = ["floor-1.img", "floor-2.img"];
/// Sequential I/O is done in chunks of this many blocks (1 MiB).
const CHUNK_BLOCKS: u64 = 256;

/// The raw-device floor: the same I/O pattern as a workload straight on one file (`floor`) or
/// on a mirrored pair of files (`floor-pair`) with `pwrite` and `fdatasync`, the fastest a
/// durable system on that disk could be.
pub struct FloorFactory {
    /// Two files, every write to both and both synced concurrently, rather than one.
    pub replicated: bool,
}

impl FloorFactory {
    fn file_names(&self) -> &'static [&'static str] {
        if self.replicated {
            &PAIR_FILE_NAMES
        } else {
            std::slice::from_ref(&FILE_NAME)
        }
    }

    /// Opens (or, with `create`, creates and truncates) the files in `dir` as one floor.
    fn open_floor(&self, dir: &Path, geometry: &Geometry, create: bool) -> Result<Floor> {
        let op = if create { "create" } else { "open" };
        let files = self
            .file_names()
            .iter()
            .map(|name| {
                let path = dir.join(name);
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(create)
                    .truncate(create)
                    .open(&path)
                    .map(|file| FloorFile {
                        file,
                        path: path.clone(),
                    })
                    .map_err(|e| BenchError::io(op, &path, e))
            })
            .collect::<Result<Vec<_>>>()?;
        Floor::new(self.name(), files, *geometry)
    }
}

impl SystemFactory for FloorFactory {
    fn name(&self) -> &'static str {
        if self.replicated {
            "floor-pair"
        } else {
            "floor"
        }
    }

    fn config_note(&self) -> String {
        let single = "raw file, preallocated by writing zeros; per transaction one pwrite of a \
                      header block (the thread's slot) and one pwrite per data block at its \
                      address, then fdatasync; nosync = the same without fdatasync, flush = \
                      fdatasync; recover-full-log = read the log area and pwrite it home + \
                      fdatasync; replica-resync = sequential 1 MiB pwrites of the whole disk + \
                      fdatasync (the file system's sequential-write bandwidth)";
        if !self.replicated {
            return single.to_string();
        }
        format!(
            "the floor on two files at once: each {single}; every pwrite goes to both files in \
             turn, and each fdatasync is one on each file at the same time (the second file's \
             by a sync thread started at open, which may serve concurrent requests with one \
             fdatasync; the first file's by the caller), done when both are; reads and \
             recover-full-log's log reads come from the first file; syncs/op counts one per \
             pair sync, as txdisk-pair's does"
        )
    }

    fn supports(&self, workload: Workload) -> bool {
        // A raw file has nothing to reopen: its open is the same after a crash as before.
        !matches!(workload, Workload::ReopenAfterCrash { .. })
    }

    fn create(&self, dir: &Path, geometry: &Geometry) -> Result<()> {
        let floor = self.open_floor(dir, geometry, true)?;
        // Real zeros, not fallocate: unwritten extents would make the first overwrite of each
        // block pay a metadata update that no later write pays.
        let zeros = vec![0u8; CHUNK_BLOCKS as usize * BLOCK_SIZE];
        floor.write_sequential(0, floor.total_blocks(), &zeros)?;
        floor.sync()
    }

    fn open(&self, dir: &Path, geometry: &Geometry) -> Result<Box<dyn System>> {
        Ok(Box::new(self.open_floor(dir, geometry, false)?))
    }
}

/// One of a floor's files.
struct FloorFile {
    file: File,
    path: PathBuf,
}

impl FloorFile {
    fn pwrite(&self, bytes: &[u8], offset: u64) -> Result<()> {
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| BenchError::io("pwrite", &self.path, e))
    }

    fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| BenchError::io("fdatasync", &self.path, e))
    }
}

/// The floor over one file or a mirrored pair: every write goes to each of `files`, reads come
/// from the first, and a sync covers all of them.
struct Floor {
    name: &'static str,
    files: Vec<Arc<FloorFile>>,
    /// Syncs the second file while the caller syncs the first; None for a single file.
    mirror: Option<MirrorSyncer>,
    geometry: Geometry,
    /// Syncs of the whole floor: a pair's two concurrent fdatasyncs count as one.
    syncs: AtomicU64,
}

impl Floor {
    /// The floor over `files` (one, or a pair whose second gets a sync thread of its own).
    fn new(name: &'static str, files: Vec<FloorFile>, geometry: Geometry) -> Result<Floor> {
        let files: Vec<Arc<FloorFile>> = files.into_iter().map(Arc::new).collect();
        let mirror = match files.as_slice() {
            [_] => None,
            [_, second] => Some(MirrorSyncer::start(second.clone())?),
            _ => {
                return Err(BenchError::Config(format!(
                    "{name}: a floor has one file or two, not {}",
                    files.len()
                )))
            }
        };
        Ok(Floor {
            name,
            files,
            mirror,
            geometry,
            syncs: AtomicU64::new(0),
        })
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

    /// Writes `bytes` at `offset` of every file.
    fn pwrite(&self, bytes: &[u8], offset: u64) -> Result<()> {
        self.files
            .iter()
            .try_for_each(|file| file.pwrite(bytes, offset))
    }

    /// Reads from the first file: a mirror reads one copy.
    fn pread(&self, bytes: &mut [u8], offset: u64) -> Result<()> {
        let first = &self.files[0];
        first
            .file
            .read_exact_at(bytes, offset)
            .map_err(|e| BenchError::io("pread", &first.path, e))
    }

    /// Makes every write so far durable on every file; a pair's two fdatasyncs run at once.
    fn sync(&self) -> Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let Some(mirror) = &self.mirror else {
            return self.files[0].sync();
        };
        // Asked for only now, after this caller's writes: the sync that serves the request
        // starts after them, so it covers them.
        let request = mirror.request();
        let first = self.files[0].sync();
        // Waited for even when the first failed, so the transaction ends with both.
        let second = mirror.wait(request);
        first.and(second)
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
            "{}: addrs and data differ in length",
            self.name
        );
        if 8 * (addrs.len() + 1) > BLOCK_SIZE {
            return Err(BenchError::Config(format!(
                "{}: a header block holds at most {} addresses, transaction has {}",
                self.name,
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
        self.name
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
            RecoveryKind::ReopenAfterCrash { .. } => Err(self.unsupported(kind.workload())),
        }
    }

    fn sync_count(&self) -> Option<u64> {
        Some(self.syncs.load(Ordering::Relaxed))
    }
}

/// A thread that `fdatasync`s one file on request, started with the floor and stopped when it is
/// dropped: a pair's second sync overlaps the first without the cost of a thread spawned per
/// sync, which the floor must not pay when the pair it bounds does not.
///
/// Requests are numbered; each sync serves every request made before it started (they may be
/// many, from concurrent callers: a request made during a sync waits for the next one).
struct MirrorSyncer {
    shared: Arc<SyncShared>,
    thread: Option<JoinHandle<()>>,
    /// The file the thread syncs, for its errors.
    path: PathBuf,
}

struct SyncShared {
    state: Mutex<SyncState>,
    /// Wakes the thread: a request was made, or the floor is closing.
    requested: Condvar,
    /// Wakes the callers: a sync finished.
    synced: Condvar,
}

struct SyncState {
    /// The number of the latest request (requests are numbered from 1).
    requested: u64,
    /// Every request up to this number has been served by a finished sync.
    synced: u64,
    /// The first failed sync and the first request it served: that request and every later
    /// one fail, since after a failed fdatasync nothing is known of what reached the disk.
    failure: Option<(u64, std::io::ErrorKind, String)>,
    stopping: bool,
}

impl MirrorSyncer {
    fn start(file: Arc<FloorFile>) -> Result<MirrorSyncer> {
        let shared = Arc::new(SyncShared {
            state: Mutex::new(SyncState {
                requested: 0,
                synced: 0,
                failure: None,
                stopping: false,
            }),
            requested: Condvar::new(),
            synced: Condvar::new(),
        });
        let path = file.path.clone();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("floor-pair-sync".into())
                .spawn(move || sync_on_request(&shared, &file))
                .map_err(|e| BenchError::io("spawn the sync thread of", &path, e))?
        };
        Ok(MirrorSyncer {
            shared,
            thread: Some(thread),
            path,
        })
    }

    /// Asks for a sync that starts from now; returns the request's number for [`wait`](Self::wait).
    fn request(&self) -> u64 {
        let mut state = self.shared.state.lock();
        state.requested += 1;
        self.shared.requested.notify_one();
        state.requested
    }

    /// Waits until a sync has served `request`, with that sync's outcome.
    fn wait(&self, request: u64) -> Result<()> {
        let mut state = self.shared.state.lock();
        while state.synced < request {
            self.shared.synced.wait(&mut state);
        }
        match &state.failure {
            Some((first_failed, kind, message)) if request >= *first_failed => {
                let source = std::io::Error::new(*kind, message.clone());
                Err(BenchError::io("fdatasync", &self.path, source))
            }
            _ => Ok(()),
        }
    }
}

/// The sync thread's loop: serve every request made so far with one fdatasync, until the floor
/// closes (requests made before it did are still served).
fn sync_on_request(shared: &SyncShared, file: &FloorFile) {
    let mut state = shared.state.lock();
    loop {
        if state.requested > state.synced {
            let serving = state.requested;
            let result = parking_lot::MutexGuard::unlocked(&mut state, || file.file.sync_data());
            if let Err(error) = result {
                if state.failure.is_none() {
                    let first = state.synced + 1;
                    state.failure = Some((first, error.kind(), error.to_string()));
                }
            }
            state.synced = serving;
            shared.synced.notify_all();
        } else if state.stopping {
            return;
        } else {
            shared.requested.wait(&mut state);
        }
    }
}

impl Drop for MirrorSyncer {
    fn drop(&mut self) {
        self.shared.state.lock().stopping = true;
        self.shared.requested.notify_one();
        if let Some(thread) = self.thread.take() {
            // The loop cannot panic; a join error would only repeat a panic already reported.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry() -> Geometry {
        Geometry {
            disk_blocks: 1024,
            log_blocks: 64,
            max_threads: 8,
        }
    }

    #[test]
    fn a_pair_floor_writes_the_same_bytes_to_both_files_from_eight_threads() {
        let scratch = tempfile::tempdir().expect("scratch directory");
        let factory = FloorFactory { replicated: true };
        factory
            .create(scratch.path(), &geometry())
            .expect("created");
        let system = factory.open(scratch.path(), &geometry()).expect("opened");
        std::thread::scope(|scope| {
            for thread in 0..8usize {
                let system = &system;
                scope.spawn(move || {
                    let start = geometry().region_start(thread);
                    for txn in 0..20u64 {
                        let addrs = [start + txn, start + 40 + txn];
                        let data = [Block::filled(thread as u8), Block::filled(txn as u8)];
                        system.durable_txn(thread, &addrs, &data).expect("durable");
                    }
                });
            }
        });
        assert_eq!(
            system.sync_count(),
            Some(160),
            "one pair sync per transaction"
        );
        let block = system
            .read(0, geometry().region_start(3) + 5)
            .expect("reads");
        assert_eq!(block, Block::filled(3));
        drop(system);
        let [first, second] = PAIR_FILE_NAMES
            .map(|name| std::fs::read(scratch.path().join(name)).expect("the file reads back"));
        assert_eq!(first.len(), second.len());
        assert!(first == second, "the two files differ");
    }

    #[test]
    fn the_sync_thread_serves_every_request_and_stops_with_the_floor() {
        let scratch = tempfile::tempdir().expect("scratch directory");
        let path = scratch.path().join("f");
        let file = File::create(&path).expect("created");
        let mirror = MirrorSyncer::start(Arc::new(FloorFile { file, path })).expect("started");
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..25 {
                        let request = mirror.request();
                        mirror.wait(request).expect("synced");
                    }
                });
            }
        });
        let state = mirror.shared.state.lock();
        assert_eq!(state.requested, 200);
        assert_eq!(state.synced, 200);
        drop(state);
        // Joins the thread: a hang here is a thread that missed its stop.
        drop(mirror);
    }
}
