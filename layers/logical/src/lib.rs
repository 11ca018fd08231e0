#![deny(missing_docs)]
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
//! **Rep invariant** (`check_rep`, after every public operation in debug builds): the log's rep
//! invariant; no commit in progress leaves a version stripe busy once it has finished (counted);
//! and no stripe is newer than the clock (checked for a rotating window of stripes at each call,
//! for all of them with the `expensive-checks` feature).
//!
//! **Crash invariant** (as the log's: [`txdisk_log::tooling::matches_prefix`]): after any crash and
//! recovery, the contents are those after some prefix of the commit (sequence) order that
//! includes every transaction whose durable commit, or a flush after it, returned.
//!
//! **Concurrency invariant** ([`serial::SerialHistory`], checked by the schedule explorer and
//! the fuzzer's concurrent campaign): replayed one at a time in the order of their log sequence
//! numbers ([`Transaction::commit_ordered`]), every committed transaction read exactly the state
//! before it, and nothing an aborted or conflicted attempt wrote is ever read.
//!
//! Errors are values ([`LogicalError`]); a panic here means a broken invariant of this crate.
//!
//! ## How transactions are serializable
//!
//! Optimistic concurrency with a global version clock (TL2-style), over the write-ahead log of
//! `txdisk-log`:
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
//! a transaction body must not start another transaction, write or sync through the `Disk`
//! trait, or flush or install the same logical disk (in exclusive mode that would wait for
//! itself; so would the rep check after a flush or install in a debug build); and when a commit
//! finds the log full, it installs under the commit lock, so other committers wait for that
//! one installation.
//!
//! A read that meets a conflict marks its transaction: it is retried by `transaction` and can
//! never commit, even if the body ignored the error. A durable commit of a read-only
//! transaction returns once every commit it read from is durable. The log underneath is
//! private: [`LogicalDisk::stats`], [`LogicalDisk::install`], [`LogicalDisk::pause_installer`]
//! and [`LogicalDisk::used_log_blocks`] are what a user sees of it.

pub mod bugs;
pub mod serial;

use std::collections::BTreeMap;
use std::sync::Arc;
#[cfg(debug_assertions)]
use txdisk_disk::sync::atomic::AtomicUsize;
use txdisk_disk::sync::atomic::{AtomicU64, Ordering};
use txdisk_disk::sync::{thread, Mutex, MutexGuard};
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

/// Stripes the rep check looks at per call (all of them under `expensive-checks`).
#[cfg(all(debug_assertions, not(feature = "expensive-checks")))]
const CHECK_WINDOW_STRIPES: usize = 64;

/// The logical disk's results.
pub type Result<T, E = LogicalError> = std::result::Result<T, E>;

/// What can go wrong on the logical disk, in its own terms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogicalError {
    /// The transaction writes more blocks than one log record can hold.
    #[error("transaction of {blocks} blocks exceeds the largest the log takes ({max_blocks})")]
    TooLarge {
        /// Blocks the transaction writes.
        blocks: usize,
        /// The most one log record holds.
        max_blocks: usize,
    },

    /// An address past the end of the logical disk.
    #[error("address {addr} is out of range (the logical disk has {size_blocks} blocks)")]
    OutOfRange {
        /// The address asked for.
        addr: Addr,
        /// The logical disk's size.
        size_blocks: u64,
    },

    /// The disk below failed (or the machine crashed).
    #[error(transparent)]
    Disk(DiskError),

    /// The logical disk stopped taking work: an I/O failure poisoned it (reopen to recover), or
    /// it was closed.
    #[error("the logical disk stopped: {cause}")]
    Stopped {
        /// What stopped it.
        cause: String,
    },

    /// Another transaction changed something this one read: retry it.
    #[error("transaction conflict at address {addr}: retry")]
    Conflict {
        /// The address whose version changed.
        addr: Addr,
    },

    /// The image cannot be formatted or opened: not ours, another version, damaged metadata,
    /// or a corrupt log (the detail says which).
    #[error(transparent)]
    Image(LogError),
}

impl LogicalError {
    /// True for a conflict: the transaction committed nothing and may be retried.
    pub fn is_conflict(&self) -> bool {
        matches!(self, LogicalError::Conflict { .. })
    }
}

impl From<LogError> for LogicalError {
    fn from(error: LogError) -> LogicalError {
        match error {
            LogError::TransactionTooLarge { blocks, max_blocks } => {
                LogicalError::TooLarge { blocks, max_blocks }
            }
            LogError::AddressOutOfRange { addr, data_blocks } => LogicalError::OutOfRange {
                addr,
                size_blocks: data_blocks,
            },
            LogError::Disk(disk) => LogicalError::Disk(disk),
            LogError::Poisoned { cause } => LogicalError::Stopped { cause },
            LogError::Closed => LogicalError::Stopped {
                cause: "closed".into(),
            },
            image => LogicalError::Image(image),
        }
    }
}

impl From<LogicalError> for DiskError {
    fn from(error: LogicalError) -> DiskError {
        match error {
            LogicalError::Disk(disk) => disk,
            LogicalError::OutOfRange { addr, size_blocks } => {
                DiskError::OutOfRange { addr, size_blocks }
            }
            // A damaged block stays a per-block error for a layer stacked on this disk.
            LogicalError::Image(LogError::DamagedBlock {
                addr,
                source: DiskError::Corrupt { damage, .. },
            }) => DiskError::Corrupt { addr, damage },
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
    /// Stripes marked busy by a commit and not yet stamped (only for checking).
    #[cfg(debug_assertions)]
    busy_stripes: AtomicUsize,
    /// Where the next rep check's window of stripes starts.
    #[cfg(all(debug_assertions, not(feature = "expensive-checks")))]
    check_cursor: AtomicUsize,
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
        let disk = LogicalDisk::over(Log::open(disk, options)?);
        #[cfg(debug_assertions)]
        disk.check_rep();
        Ok(disk)
    }

    /// A logical disk over an open log.
    fn over(log: Log) -> LogicalDisk {
        let versions = (0..VERSION_STRIPES).map(|_| AtomicU64::new(0)).collect();
        LogicalDisk {
            log,
            versions,
            clock: AtomicU64::new(0),
            commit_lock: Mutex::new(()),
            #[cfg(debug_assertions)]
            busy_stripes: AtomicUsize::new(0),
            #[cfg(all(debug_assertions, not(feature = "expensive-checks")))]
            check_cursor: AtomicUsize::new(0),
        }
    }

    /// Counters of the log underneath: commits, flushes, installations.
    pub fn stats(&self) -> LogStats {
        self.log.stats()
    }

    /// Log blocks in use (committed, not yet installed).
    pub fn used_log_blocks(&self) -> u64 {
        self.log.used_log_blocks()
    }

    /// Holds the background installer back (`true`) or lets it run again (`false`); a full
    /// log still installs synchronously. For measurements that need data left in the log.
    pub fn pause_installer(&self, paused: bool) {
        self.log.pause_installer(paused);
    }

    /// Most blocks one transaction may write.
    pub fn max_tx_blocks(&self) -> usize {
        self.log.max_tx_blocks()
    }

    /// Starts an optimistic transaction: it sees the state as of now, and conflicts if what it
    /// reads changes before it commits.
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
                    thread::yield_now()
                }
                Err(error) => return Err(error.into()),
                Ok(value) => return Ok(value),
            }
        }
        unreachable!("the retry loop returns from its exclusive attempt")
    }

    /// Makes every transaction committed so far durable.
    pub fn flush(&self) -> Result<()> {
        let result = self.log.flush();
        #[cfg(debug_assertions)]
        self.check_rep();
        Ok(result?)
    }

    /// Installs every durable transaction at its home location now (a checkpoint).
    pub fn install(&self) -> Result<usize> {
        let result = self.log.install();
        #[cfg(debug_assertions)]
        self.check_rep();
        Ok(result?)
    }

    /// Flushes, installs everything and closes the log.
    pub fn close(self) -> Result<()> {
        #[cfg(debug_assertions)]
        self.check_rep();
        Ok(self.log.close()?)
    }

    /// The committed value of `addr` (outside any transaction).
    pub fn read_committed(&self, addr: Addr) -> Result<Block> {
        // No rep check here: a read changes nothing, and the check waits for the commit lock,
        // which a transaction body in exclusive mode holds while it may read through `Disk`.
        Ok(self.log.read(addr)?)
    }

    /// The rep invariant; panics, naming what broke. Waits for a commit in progress to leave
    /// its critical section (it is in memory only), so it never skips a check.
    pub fn check_rep(&self) {
        self.log.check_rep();
        let _quiet = self.commit_lock.lock();
        let clock = self.clock.load(Ordering::Acquire);
        #[cfg(debug_assertions)]
        {
            let busy = self.busy_stripes.load(Ordering::Acquire);
            assert_eq!(
                busy, 0,
                "logical: {busy} stripe(s) left busy with no commit running"
            );
        }
        for index in self.stripes_to_check() {
            let version = self.versions[index].load(Ordering::Acquire);
            assert_ne!(
                version, BUSY,
                "logical: stripe {index} left busy with no commit running"
            );
            assert!(
                version <= clock,
                "logical: stripe {index} at version {version}, clock {clock}"
            );
        }
    }

    /// Every stripe with `expensive-checks`; otherwise a window that moves on at each call.
    fn stripes_to_check(&self) -> std::ops::Range<usize> {
        #[cfg(all(debug_assertions, not(feature = "expensive-checks")))]
        {
            let start = self
                .check_cursor
                .fetch_add(CHECK_WINDOW_STRIPES, Ordering::Relaxed)
                % VERSION_STRIPES;
            start..(start + CHECK_WINDOW_STRIPES).min(VERSION_STRIPES)
        }
        #[cfg(any(not(debug_assertions), feature = "expensive-checks"))]
        {
            0..VERSION_STRIPES
        }
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
        // A busy stripe is newer than any read version, and no commit runs beside an exclusive
        // transaction: a read that did not conflict never saw one.
        assert_ne!(
            before, BUSY,
            "logical: read of address {addr} saw stripe {index} busy and did not conflict"
        );
        self.reads.entry(index).or_insert(before);
        self.newest_read = self.newest_read.max(before);
        Ok(block)
    }

    /// Writes `block` at `addr` in this transaction (seen by its own reads; by others once
    /// it commits).
    pub fn write(&mut self, addr: Addr, block: &Block) -> Result<()> {
        let size_blocks = self.disk.log.data_blocks();
        if addr >= size_blocks {
            return Err(LogicalError::OutOfRange { addr, size_blocks });
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
        self.finish(true).map(drop)
    }

    /// Commits atomically; durable at the next [`LogicalDisk::flush`] or durable commit.
    pub fn commit_nosync(self) -> Result<()> {
        self.finish(false).map(drop)
    }

    /// Commits as [`Transaction::commit`] (`durable`) or [`Transaction::commit_nosync`], and
    /// returns the transaction's place in the serial order: the log sequence number of its
    /// record. Committed transactions are equivalent to running them one at a time in this
    /// order. `None` for a transaction that wrote nothing (it changed no state).
    pub fn commit_ordered(self, durable: bool) -> Result<Option<u64>> {
        self.finish(durable)
    }

    /// Drops every write.
    pub fn abort(self) {}

    /// Under the commit lock: a `Conflict` unless every stripe read is still at the version
    /// seen (and no read conflicted).
    fn validate(&self) -> Result<()> {
        if bugs::active(bugs::Bug::ValidationSkipped) {
            return Ok(());
        }
        if self.conflicted {
            return Err(LogicalError::Conflict { addr: 0 });
        }
        for (&index, &seen) in &self.reads {
            if self.disk.versions[index].load(Ordering::Acquire) != seen {
                return Err(LogicalError::Conflict {
                    addr: index as Addr,
                });
            }
        }
        Ok(())
    }

    fn finish(mut self, durable: bool) -> Result<Option<u64>> {
        let disk = self.disk;
        let early = bugs::active(bugs::Bug::ValidateOutsideCommitLock);
        if early {
            self.validate()?;
            // The window the lock closes: another commit may run here.
            thread::yield_now();
        }
        let guard = match self.exclusive.take() {
            Some(guard) => guard,
            None => disk.commit_lock.lock(),
        };
        if !early {
            self.validate()?;
        }
        if self.writes.is_empty() {
            // Every version read was stamped by a commit the clock has already passed.
            let clock = disk.clock.load(Ordering::Acquire);
            assert!(
                self.newest_read <= clock,
                "logical: read-only commit read version {}, expected at most the clock {clock}",
                self.newest_read
            );
            drop(guard);
            // What a read-only transaction saw may come from deferred commits: a durable
            // commit of it returns once they are durable too.
            if durable && self.newest_read > 0 {
                disk.log.wait_durable(self.newest_read)?;
            }
            return Ok(None);
        }
        let written: Vec<usize> = self.writes.keys().map(|&addr| stripe(addr)).collect();
        let unstamped = bugs::active(bugs::Bug::UnstampedStripe)
            .then(|| {
                written
                    .last()
                    .map(|&index| (index, disk.versions[index].load(Ordering::Acquire)))
            })
            .flatten();
        for &index in &written {
            disk.versions[index].store(BUSY, Ordering::Release);
        }
        #[cfg(debug_assertions)]
        disk.busy_stripes.fetch_add(written.len(), Ordering::AcqRel);
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
                #[cfg(debug_assertions)]
                disk.busy_stripes.fetch_sub(written.len(), Ordering::AcqRel);
                return Err(error.into());
            }
        };
        let clock = disk.clock.load(Ordering::Acquire);
        assert!(
            seq > clock,
            "logical: commit sequence {seq}, expected after the clock {clock}"
        );
        assert!(
            seq > self.read_version,
            "logical: commit sequence {seq}, expected after the read version {}",
            self.read_version
        );
        for &index in &written {
            disk.versions[index].store(seq, Ordering::Release);
        }
        if let Some((index, previous)) = unstamped {
            // The wrong variant leaves the stripe at the version it had before this commit.
            disk.versions[index].store(previous, Ordering::Release);
        }
        #[cfg(debug_assertions)]
        disk.busy_stripes.fetch_sub(written.len(), Ordering::AcqRel);
        disk.clock.store(seq, Ordering::Release);
        drop(guard);
        let result = if durable {
            disk.log.wait_durable(seq)
        } else {
            Ok(())
        };
        #[cfg(debug_assertions)]
        disk.check_rep();
        result?;
        Ok(Some(seq))
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
