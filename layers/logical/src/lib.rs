//! # txdisk-logical: the logical disk
//!
//! **What it offers.** [`LogicalDisk`]: the interface a file-system author programs to. A
//! synchronous address space of `size_blocks()` blocks, all zeros after format, that is itself a
//! [`Disk`] (`read`; `write` atomic and durable on return; `sync` = flush) and offers
//! serializable transactions for many threads: [`LogicalDisk::transaction`] (retried on
//! conflict) and explicit [`LogicalDisk::begin`] / [`Transaction::commit`] (durable on return) /
//! [`Transaction::commit_nosync`] + [`LogicalDisk::flush`] (deferred durability, in commit
//! order) / [`Transaction::abort`]. A transaction reads its own writes.
//!
//! **How transactions are serializable.** Optimistic concurrency with a global version clock
//! (TL2-style), over the write-ahead log of `txdisk-log`:
//! * every address hashes to one of [`VERSION_STRIPES`] version words holding the sequence
//!   number of the last commit that wrote an address of that stripe;
//! * `begin` reads the clock (the last committed sequence number); a read whose stripe is newer
//!   than that, or changes while the block is read, is a conflict — so a transaction never sees
//!   an inconsistent state, even before it commits;
//! * `commit` takes a short in-memory commit lock, re-validates every stripe it read, marks the
//!   stripes it writes as busy, appends its record to the log (an in-memory reservation),
//!   stamps the stripes and the clock with the record's sequence number, and releases the lock.
//!   Only then does a durable commit wait for the group flush: the log's sequence order is the
//!   serial order, and durability is by prefix, so releasing before the flush is safe.
//!
//! No transaction holds a lock while it runs, so there is no deadlock; disjoint transactions
//! proceed in parallel and share group commits. A transaction that keeps conflicting is retried
//! by `transaction` in exclusive mode (holding the commit lock from begin to commit) after
//! [`OPTIMISTIC_ATTEMPTS`] attempts, so a long read-only scan always finishes. Two caveats:
//! a transaction body must not start another transaction or write through the `Disk` trait
//! of the same logical disk (in exclusive mode that would wait for itself); and when a commit
//! finds the log full, it installs under the commit lock, so other committers wait for that
//! one installation.
//!
//! A read that meets a conflict marks its transaction: it is retried by `transaction` and can
//! never commit, even if the body ignored the error. A durable commit of a read-only
//! transaction returns once every commit it read from is durable. Writes through
//! [`LogicalDisk::log`] bypass this concurrency control: use it for statistics and
//! installation, not for data.
//!
//! **Rep invariant** (debug builds, after every public operation): the log's rep invariant; and
//! no version stripe a commit has finished with is left busy or newer than the clock.
//!
//! **Crash invariant** (as the log's: [`txdisk_log::tooling::matches_prefix`]): after any crash and
//! recovery, the contents are those after some prefix of the commit (sequence) order that
//! includes every transaction whose durable commit, or a flush after it, returned.

use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use txdisk_disk::{Addr, Block, Disk, DiskError};
use txdisk_log::{Log, LogError, LogOptions, LogStats};

pub use txdisk_log::tooling::{matches_prefix, Contents, CrashViolation};

/// Version words; addresses share them by `addr % VERSION_STRIPES` (a shared word can only
/// cause a spurious conflict, never a missed one).
pub const VERSION_STRIPES: usize = 1 << 14;
/// Optimistic attempts `transaction` makes before it runs the body in exclusive mode.
pub const OPTIMISTIC_ATTEMPTS: usize = 16;
/// A stripe being written by a commit in progress.
const BUSY: u64 = u64::MAX;

pub type Result<T, E = LogicalError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogicalError {
    #[error(transparent)]
    Log(#[from] LogError),

    /// Another transaction changed something this one read: retry it.
    #[error("transaction conflict at address {addr}: retry")]
    Conflict { addr: Addr },
}

impl LogicalError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, LogicalError::Conflict { .. })
    }
}

impl From<LogicalError> for DiskError {
    fn from(error: LogicalError) -> DiskError {
        match error {
            LogicalError::Log(LogError::Disk(disk)) => disk,
            other => DiskError::Io {
                op: "logical",
                addr: 0,
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

/// The logical disk. Share it between threads by reference or `Arc`.
pub struct LogicalDisk {
    log: Log,
    versions: Box<[AtomicU64]>,
    clock: AtomicU64,
    commit_lock: Mutex<()>,
}

/// A transaction on the logical disk. Dropping it aborts it.
pub struct Transaction<'a> {
    disk: &'a LogicalDisk,
    read_version: u64,
    /// Stripe → version seen, for every address read from committed data.
    reads: BTreeMap<usize, u64>,
    writes: BTreeMap<Addr, Block>,
    exclusive: Option<MutexGuard<'a, ()>>,
    /// A read hit a conflict: whatever the body returns, the attempt is retried, and it can
    /// never commit (even if the body swallowed the error).
    conflicted: bool,
    /// The newest version among the stripes read: a durable read-only commit waits for it.
    newest_read: u64,
}

fn stripe(addr: Addr) -> usize {
    (addr % VERSION_STRIPES as u64) as usize
}

impl LogicalDisk {
    /// Formats `disk` for a logical disk with a log of `log_blocks` (data region = the rest).
    pub fn format(disk: &dyn Disk, log_blocks: u64) -> Result<()> {
        Log::format(disk, log_blocks, txdisk_log::random_salt())?;
        Ok(())
    }

    /// Opens the logical disk on `disk`, recovering the log first.
    pub fn open(disk: Arc<dyn Disk>, options: LogOptions) -> Result<LogicalDisk> {
        Ok(LogicalDisk::over(Log::open(disk, options)?))
    }

    /// A logical disk over an open log.
    pub fn over(log: Log) -> LogicalDisk {
        let versions = (0..VERSION_STRIPES).map(|_| AtomicU64::new(0)).collect();
        LogicalDisk {
            log,
            versions,
            clock: AtomicU64::new(0),
            commit_lock: Mutex::new(()),
        }
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn stats(&self) -> LogStats {
        self.log.stats()
    }

    /// Most blocks one transaction may write.
    pub fn max_tx_blocks(&self) -> usize {
        self.log.max_tx_blocks()
    }

    pub fn begin(&self) -> Transaction<'_> {
        Transaction {
            disk: self,
            read_version: self.clock.load(Ordering::Acquire),
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
            exclusive: None,
            conflicted: false,
            newest_read: 0,
        }
    }

    /// A transaction that holds the commit lock from begin to commit: it cannot conflict.
    fn begin_exclusive(&self) -> Transaction<'_> {
        let guard = self.commit_lock.lock();
        let mut tx = self.begin();
        tx.read_version = self.clock.load(Ordering::Acquire);
        tx.exclusive = Some(guard);
        tx
    }

    /// Runs `body` in a transaction and commits it durably, retrying on conflict. An error from
    /// `body` aborts the transaction and is returned as is.
    pub fn transaction<T, E>(
        &self,
        body: impl FnMut(&mut Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<LogicalError>,
    {
        self.run(body, true)
    }

    /// As [`LogicalDisk::transaction`], committing with deferred durability.
    pub fn transaction_nosync<T, E>(
        &self,
        body: impl FnMut(&mut Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<LogicalError>,
    {
        self.run(body, false)
    }

    fn run<T, E>(
        &self,
        mut body: impl FnMut(&mut Transaction<'_>) -> Result<T, E>,
        durable: bool,
    ) -> Result<T, E>
    where
        E: From<LogicalError>,
    {
        for attempt in 0.. {
            let mut tx = if attempt < OPTIMISTIC_ATTEMPTS {
                self.begin()
            } else {
                self.begin_exclusive()
            };
            let outcome = match body(&mut tx) {
                Ok(value) => tx.finish(durable).map(|_| value),
                // The body may have failed only because it saw a conflict (its error type may
                // hide that): retry it like any other conflict.
                Err(_) if tx.conflicted && attempt < OPTIMISTIC_ATTEMPTS => {
                    Err(LogicalError::Conflict { addr: 0 })
                }
                Err(error) => return Err(error),
            };
            match outcome {
                Err(LogicalError::Conflict { .. }) if attempt < OPTIMISTIC_ATTEMPTS => {
                    std::thread::yield_now()
                }
                Err(error) => return Err(error.into()),
                Ok(value) => return Ok(value),
            }
        }
        unreachable!("the retry loop returns from its exclusive attempt")
    }

    /// Makes every transaction committed so far durable.
    pub fn flush(&self) -> Result<()> {
        self.log.flush()?;
        self.debug_check();
        Ok(())
    }

    /// Installs every durable transaction at its home location now (a checkpoint).
    pub fn install(&self) -> Result<usize> {
        Ok(self.log.install()?)
    }

    /// Flushes, installs everything and closes the log.
    pub fn close(self) -> Result<()> {
        Ok(self.log.close()?)
    }

    /// The committed value of `addr` (outside any transaction).
    pub fn read_committed(&self, addr: Addr) -> Result<Block> {
        Ok(self.log.read(addr)?)
    }

    /// The rep invariant; panics, naming what broke.
    pub fn check_rep(&self) {
        self.log.check_rep();
        if let Some(_quiet) = self.commit_lock.try_lock() {
            let clock = self.clock.load(Ordering::Acquire);
            for (index, version) in self.versions.iter().enumerate() {
                let version = version.load(Ordering::Acquire);
                assert!(
                    version != BUSY,
                    "logical: stripe {index} left busy with no commit running"
                );
                assert!(
                    version <= clock,
                    "logical: stripe {index} at version {version}, clock {clock}"
                );
            }
        }
    }

    fn debug_check(&self) {
        #[cfg(all(debug_assertions, feature = "expensive-checks"))]
        self.check_rep();
        #[cfg(all(debug_assertions, not(feature = "expensive-checks")))]
        self.log.check_rep();
    }
}

impl Transaction<'_> {
    /// The block as this transaction sees it: its own write, else the committed value as of
    /// the transaction's start (a conflict if it changed since).
    pub fn read(&mut self, addr: Addr) -> Result<Block> {
        if let Some(block) = self.writes.get(&addr) {
            return Ok(block.clone());
        }
        let index = stripe(addr);
        let word = &self.disk.versions[index];
        let before = word.load(Ordering::Acquire);
        if before > self.read_version && self.exclusive.is_none() {
            self.conflicted = true;
            return Err(LogicalError::Conflict { addr });
        }
        let block = self.disk.log.read(addr)?;
        if word.load(Ordering::Acquire) != before {
            self.conflicted = true;
            return Err(LogicalError::Conflict { addr });
        }
        self.reads.entry(index).or_insert(before);
        self.newest_read = self.newest_read.max(before);
        Ok(block)
    }

    pub fn write(&mut self, addr: Addr, block: &Block) -> Result<()> {
        if addr >= self.disk.log.data_blocks() {
            return Err(LogError::AddressOutOfRange {
                addr,
                data_blocks: self.disk.log.data_blocks(),
            }
            .into());
        }
        self.writes.insert(addr, block.clone());
        Ok(())
    }

    /// Blocks written so far.
    pub fn write_count(&self) -> usize {
        self.writes.len()
    }

    /// Commits atomically; durable when it returns Ok. `Conflict` means nothing was committed.
    pub fn commit(self) -> Result<()> {
        self.finish(true)
    }

    /// Commits atomically; durable at the next [`LogicalDisk::flush`] or durable commit.
    pub fn commit_nosync(self) -> Result<()> {
        self.finish(false)
    }

    /// Drops every write.
    pub fn abort(self) {}

    fn finish(mut self, durable: bool) -> Result<()> {
        let disk = self.disk;
        let guard = match self.exclusive.take() {
            Some(guard) => guard,
            None => disk.commit_lock.lock(),
        };
        if self.conflicted {
            return Err(LogicalError::Conflict { addr: 0 });
        }
        for (&index, &seen) in &self.reads {
            if disk.versions[index].load(Ordering::Acquire) != seen {
                return Err(LogicalError::Conflict {
                    addr: index as Addr,
                });
            }
        }
        if self.writes.is_empty() {
            drop(guard);
            // What a read-only transaction saw may come from deferred commits: a durable
            // commit of it returns once they are durable too.
            if durable && self.newest_read > 0 {
                disk.log.wait_durable(self.newest_read)?;
            }
            return Ok(());
        }
        let written: Vec<usize> = self.writes.keys().map(|&addr| stripe(addr)).collect();
        for &index in &written {
            disk.versions[index].store(BUSY, Ordering::Release);
        }
        let appended = disk
            .log
            .append(std::mem::take(&mut self.writes).into_iter().collect());
        let seq = match appended {
            Ok(Some(seq)) => seq,
            Ok(None) => unreachable!("logical: a non-empty transaction appended nothing"),
            Err(error) => {
                // Nothing was committed: put the stripes back as they were before.
                let clock = disk.clock.load(Ordering::Acquire);
                for &index in &written {
                    disk.versions[index].store(clock, Ordering::Release);
                }
                return Err(error.into());
            }
        };
        for &index in &written {
            disk.versions[index].store(seq, Ordering::Release);
        }
        disk.clock.store(seq, Ordering::Release);
        drop(guard);
        if durable {
            disk.log.wait_durable(seq)?;
        }
        disk.debug_check();
        Ok(())
    }
}

impl Disk for LogicalDisk {
    fn size_blocks(&self) -> u64 {
        self.log.data_blocks()
    }

    fn read(&self, addr: Addr) -> txdisk_disk::Result<Block> {
        self.check_addr(addr)?;
        Ok(self.read_committed(addr)?)
    }

    /// One-block transaction: atomic and durable on return.
    fn write(&self, addr: Addr, block: &Block) -> txdisk_disk::Result<()> {
        self.check_addr(addr)?;
        self.transaction(|tx| tx.write(addr, block))
            .map_err(DiskError::from)
    }

    fn sync(&self) -> txdisk_disk::Result<()> {
        Ok(self.flush()?)
    }

    fn check_rep(&self) {
        LogicalDisk::check_rep(self);
    }
}
