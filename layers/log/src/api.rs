//! The public API of the running log: [`Log`], [`Transaction`], [`LogOptions`], [`LogStats`].
//! The work is done on the shared state (`state.rs`): commit in `commit.rs`, installation in
//! `install.rs`, reads in `read.rs`.

use crate::error::Result;
use crate::format::{Header, Superblock};
use crate::install::installer_loop;
use crate::position::Seq;
use crate::recovery::{log_recover, RecoveryReport};
use crate::scan::read_superblock;
use crate::state::{Flusher, Inner, Installer, Mode, State};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use txdisk_disk::sync::atomic::{AtomicU64, Ordering};
use txdisk_disk::sync::thread::JoinHandle;
use txdisk_disk::sync::{Condvar, Mutex};
use txdisk_disk::{Addr, Block, Disk};

/// How a log runs.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Install committed transactions from a background thread. Off: installation happens only
    /// when the log is full or on [`Log::install`], so one seed always gives one run.
    pub background_installer: bool,
    /// The background installer starts when the log is at least this full (percent).
    pub install_threshold_pct: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            background_installer: true,
            install_threshold_pct: 50,
        }
    }
}

/// Counters, for the bench and the tests that observe group commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Non-empty transactions committed (durable or deferred).
    pub commits: u64,
    /// Log flushes: one write of a group of records and one `sync`.
    pub flushes: u64,
    /// Records written by those flushes.
    pub records_written: u64,
    /// Installations (checkpoints).
    pub installs: u64,
    /// Home blocks written by installations (repeated writes to one address absorbed).
    pub blocks_installed: u64,
}

/// A write-ahead log over one disk. See the crate documentation.
pub struct Log {
    pub(crate) inner: Arc<Inner>,
    installer: Mutex<Option<JoinHandle<()>>>,
    recovery: RecoveryReport,
}

/// A transaction: buffered writes, applied atomically at commit.
pub struct Transaction<'a> {
    log: &'a Log,
    writes: BTreeMap<Addr, Block>,
}

impl Transaction<'_> {
    /// The block as this transaction sees it: its own write, else the committed value.
    pub fn read(&self, addr: Addr) -> Result<Block> {
        match self.writes.get(&addr) {
            Some(block) => Ok(block.clone()),
            None => self.log.read(addr),
        }
    }

    /// Buffers a write of `block` at `addr`; a later write to the same address replaces it.
    pub fn write(&mut self, addr: Addr, block: &Block) -> Result<()> {
        self.log.check_data_addr(addr)?;
        self.writes.insert(addr, block.clone());
        Ok(())
    }

    /// Blocks written so far.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// True when the transaction writes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// `log_commit`: atomic, and durable when it returns Ok. Returns the sequence number (None
    /// for an empty transaction, which changes nothing).
    pub fn commit(self) -> Result<Option<u64>> {
        let seq = self.log.append(self.writes.into_iter().collect())?;
        match seq {
            Some(seq) => self.log.wait_durable(seq)?,
            // A read-only transaction may have read deferred commits: what it saw must be
            // durable before its durable commit returns.
            None => self.log.flush()?,
        }
        Ok(seq)
    }

    /// Atomic now, durable at the next flush, in commit order.
    pub fn commit_nosync(self) -> Result<Option<u64>> {
        self.log.append(self.writes.into_iter().collect())
    }

    /// Drops the writes.
    pub fn abort(self) {}
}

impl Log {
    /// Writes a fresh log on `disk`: superblock, header, and zeros over the log region (so no
    /// data of an earlier use of the disk sits there, and on a file every log block is
    /// allocated before the first lap). The data region is not touched: it reads as zeros only
    /// if the disk did (a new image file, a new `SimDisk`).
    pub fn format(disk: &dyn Disk, log_blocks: u64, salt: u64) -> Result<Superblock> {
        let sb = Superblock::layout(disk.size_blocks(), log_blocks, salt)?;
        let header = Header {
            generation: 0,
            tail_pos: 0,
            tail_seq: 1,
        };
        let (sb_block, header_block) = (sb.encode(), header.encode(&sb));
        #[cfg(debug_assertions)]
        {
            crate::format::check_superblock_round_trip(&sb, &sb_block);
            crate::format::check_header_round_trip(&header, &header_block, &sb);
        }
        disk.write(crate::format::SUPERBLOCK_ADDR, &sb_block)?;
        disk.write(header.slot_addr(), &header_block)?;
        // The other slot may hold a header of an earlier format of this disk; with another
        // salt it cannot validate, but clear it so the image reads unambiguously.
        let other = crate::format::HEADER_SLOTS[1];
        let zero = Block::zeroed();
        disk.write(other, &zero)?;
        for offset in 0..sb.log_blocks {
            disk.write(sb.log_addr(offset), &zero)?;
        }
        disk.sync()?;
        Ok(sb)
    }

    /// Opens the log on `disk`, running [`log_recover`] first.
    pub fn open(disk: Arc<dyn Disk>, options: LogOptions) -> Result<Log> {
        let recovery = log_recover(&*disk)?;
        let sb = read_superblock(&*disk)?;
        let header = recovery.new_header;
        let state = State {
            mode: Mode::Running,
            header,
            head_pos: header.tail(),
            next_seq: header.first_seq(),
            durable_seq: header.first_seq().prev(),
            flusher: Flusher::Idle,
            records: VecDeque::new(),
            unwritten: 0,
            logged: HashMap::new(),
            install_gen: 0,
            installer: Installer::Active,
            last_batch_records: 0,
            last_flush_us: 0,
        };
        let inner = Arc::new(Inner {
            disk,
            max_tx_blocks: sb.max_tx_blocks(),
            sb,
            options: options.clone(),
            state: Mutex::new(state),
            flushed: Condvar::new(),
            appended: Condvar::new(),
            install_wanted: Condvar::new(),
            install_lock: Mutex::new(()),
            sync_failures: Mutex::new(0),
            commits: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
            installs: AtomicU64::new(0),
            blocks_installed: AtomicU64::new(0),
        });
        let installer = options.background_installer.then(|| {
            let inner = Arc::clone(&inner);
            txdisk_disk::sync::thread::spawn(move || installer_loop(&inner))
        });
        let log = Log {
            inner,
            installer: Mutex::new(installer),
            recovery,
        };
        #[cfg(debug_assertions)]
        log.check_rep();
        Ok(log)
    }

    /// What recovery did when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The image's superblock: its geometry and salt.
    pub fn superblock(&self) -> &Superblock {
        &self.inner.sb
    }

    /// Blocks in the data region: the address space the log offers.
    pub fn data_blocks(&self) -> u64 {
        self.inner.sb.data_blocks
    }

    /// Most blocks one transaction may write.
    pub fn max_tx_blocks(&self) -> usize {
        self.inner.max_tx_blocks
    }

    /// The disk the log runs on.
    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.inner.disk
    }

    /// The counters so far.
    pub fn stats(&self) -> LogStats {
        let i = &self.inner;
        LogStats {
            commits: i.commits.load(Ordering::Relaxed),
            flushes: i.flushes.load(Ordering::Relaxed),
            records_written: i.records_written.load(Ordering::Relaxed),
            installs: i.installs.load(Ordering::Relaxed),
            blocks_installed: i.blocks_installed.load(Ordering::Relaxed),
        }
    }

    /// Starts a transaction: nothing is written until it commits.
    pub fn begin(&self) -> Transaction<'_> {
        Transaction {
            log: self,
            writes: BTreeMap::new(),
        }
    }

    /// `atomic_two_write`: both blocks or neither, durable on return.
    pub fn atomic_two_write(&self, a1: Addr, v1: &Block, a2: Addr, v2: &Block) -> Result<()> {
        let mut tx = self.begin();
        tx.write(a1, v1)?;
        tx.write(a2, v2)?;
        tx.commit().map(|_| ())
    }

    pub(crate) fn check_data_addr(&self, addr: Addr) -> Result<()> {
        self.inner.check_data_addr(addr)
    }

    /// The committed value of `addr` (installed or still in the log).
    pub fn read(&self, addr: Addr) -> Result<Block> {
        self.inner.read(addr)
    }

    /// Commits `writes` (distinct addresses) as one record without waiting for durability;
    /// visible to readers at once. Returns its sequence number, `None` if `writes` is empty.
    pub fn append(&self, writes: Vec<(Addr, Block)>) -> Result<Option<u64>> {
        let result = self.inner.append(writes).map(|seq| seq.map(|seq| seq.0));
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    /// Makes every transaction committed so far durable (one group flush).
    pub fn flush(&self) -> Result<()> {
        let result = self.inner.flush();
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    /// Returns once the record `seq` (and so every record before it) is durable.
    pub fn wait_durable(&self, seq: u64) -> Result<()> {
        let result = self.inner.wait_durable(Seq(seq));
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    /// Installs every durable record at its home location and moves the tail past them
    /// (a checkpoint). Returns the number of records installed.
    pub fn install(&self) -> Result<usize> {
        let result = self.inner.install();
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    /// Flushes, installs everything and stops the installer: the image is then fully installed
    /// with an empty log.
    pub fn close(self) -> Result<()> {
        let result = self.close_and_stop();
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn close_and_stop(&self) -> Result<()> {
        self.inner.flush()?;
        self.inner.install()?;
        self.stop_installer();
        let mut state = self.inner.state.lock();
        // A log poisoned meanwhile (by the installer thread) stays poisoned.
        if state.mode == Mode::Running {
            state.mode = Mode::Closed;
        }
        Ok(())
    }

    fn stop_installer(&self) {
        self.inner.state.lock().installer = Installer::Stopped;
        self.inner.install_wanted.notify_all();
        if let Some(handle) = self.installer.lock().take() {
            // A panic in the installer is a broken invariant; surface it here.
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// Pauses or resumes the background installer (it is off anyway without
    /// `LogOptions::background_installer`). Installation still happens when a commit finds the
    /// log full, and on [`Log::install`].
    pub fn pause_installer(&self, paused: bool) {
        let mut state = self.inner.state.lock();
        if state.installer != Installer::Stopped {
            state.installer = if paused {
                Installer::Paused
            } else {
                Installer::Active
            };
        }
        drop(state);
        self.inner.install_wanted.notify_all();
        #[cfg(debug_assertions)]
        self.check_rep();
    }

    /// Blocks in the log region now in use (committed, not yet installed).
    pub fn used_log_blocks(&self) -> u64 {
        let state = self.inner.state.lock();
        state.head_pos - state.header.tail()
    }

    /// Sequence numbers: (highest committed, highest durable).
    pub fn seqs(&self) -> (u64, u64) {
        let state = self.inner.state.lock();
        (state.next_seq.prev().0, state.durable_seq.0)
    }

    /// The rep invariant (see the crate documentation); panics, naming what broke. Runs after
    /// every operation that changes the log's state in debug builds; reads and the accessors
    /// only look at it.
    pub fn check_rep(&self) {
        self.inner.check_rep();
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.stop_installer();
    }
}
