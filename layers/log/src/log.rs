//! The running log: transactions, group commit, installation, reads.

use crate::error::{LogError, Result};
use crate::format::{encode_record, record_len_blocks, Header, Superblock};
use crate::recovery::{log_recover, RecoveryReport};
use crate::scan::read_superblock;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
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
    pub records_written: u64,
    /// Installations (checkpoints) and the home blocks they wrote.
    pub installs: u64,
    pub blocks_installed: u64,
}

/// A committed record that is still in the log (not yet installed).
#[derive(Debug)]
pub(crate) struct RecordMeta {
    pub seq: u64,
    pub pos: u64,
    pub len_blocks: u64,
    pub addrs: Vec<Addr>,
    pub data: Vec<Arc<Block>>,
}

impl RecordMeta {
    fn end_pos(&self) -> u64 {
        self.pos + self.len_blocks
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub poisoned: Option<String>,
    pub closed: bool,
    /// The durable header: the tail it names is where space is reusable from.
    pub header: Header,
    pub head_pos: u64,
    pub next_seq: u64,
    pub durable_seq: u64,
    /// A flusher is writing records; others wait for it rather than flush alongside.
    pub flushing: bool,
    /// Every committed, not yet installed record, in sequence order.
    pub records: VecDeque<Arc<RecordMeta>>,
    /// How many records at the back of `records` no flusher has taken yet.
    pub unwritten: usize,
    /// Newest committed value of every address that has a record in the log.
    pub logged: HashMap<Addr, (u64, Arc<Block>)>,
    pub shutdown: bool,
    /// Bumped when an installation picks its batch: a home read that saw no change of it
    /// cannot have overlapped a home write (see `Inner::read`).
    pub install_gen: u64,
    /// The background installer leaves the log alone (a full log is still installed by the
    /// committer that needs the space).
    pub installer_paused: bool,
    /// Records of the last group flush, and how long its write and sync took: a new flusher
    /// waits briefly for about as many committers to join (see `Inner::gather`).
    pub last_batch_records: usize,
    pub last_flush_us: u64,
    /// A flusher is waiting for committers to join its group.
    pub gathering: bool,
}

pub(crate) struct Inner {
    pub disk: Arc<dyn Disk>,
    pub sb: Superblock,
    /// `sb.max_tx_blocks()`, computed once: every append checks against it.
    pub max_tx_blocks: usize,
    pub options: LogOptions,
    pub state: Mutex<State>,
    /// Signalled when a flush ends (durable_seq moved, or the log was poisoned).
    pub flushed: Condvar,
    /// Signalled when a record is appended while a flusher gathers its group.
    pub appended: Condvar,
    /// Signalled when the installer should look at the log.
    pub install_wanted: Condvar,
    pub install_lock: Mutex<()>,
    /// Serialises syncs and counts the ones that failed (see `Inner::sync_since`).
    pub sync_failures: Mutex<u64>,
    pub commits: AtomicU64,
    pub flushes: AtomicU64,
    pub records_written: AtomicU64,
    pub installs: AtomicU64,
    pub blocks_installed: AtomicU64,
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

    pub fn write(&mut self, addr: Addr, block: &Block) -> Result<()> {
        self.log.check_data_addr(addr)?;
        self.writes.insert(addr, block.clone());
        Ok(())
    }

    /// Blocks written so far.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

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
        disk.write(crate::format::SUPERBLOCK_ADDR, &sb.encode())?;
        disk.write(header.slot_addr(), &header.encode(&sb))?;
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
            poisoned: None,
            closed: false,
            header,
            head_pos: header.tail_pos,
            next_seq: header.tail_seq,
            durable_seq: header.tail_seq - 1,
            flushing: false,
            records: VecDeque::new(),
            unwritten: 0,
            logged: HashMap::new(),
            shutdown: false,
            install_gen: 0,
            installer_paused: false,
            last_batch_records: 0,
            last_flush_us: 0,
            gathering: false,
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
            std::thread::spawn(move || installer_loop(&inner))
        });
        let log = Log {
            inner,
            installer: Mutex::new(installer),
            recovery,
        };
        log.debug_check();
        Ok(log)
    }

    /// What recovery did when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

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

    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.inner.disk
    }

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
        self.inner.append(writes)
    }

    /// Makes every transaction committed so far durable (one group flush).
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// Returns once the record `seq` (and so every record before it) is durable.
    pub fn wait_durable(&self, seq: u64) -> Result<()> {
        self.inner.wait_durable(seq)
    }

    /// Installs every durable record at its home location and moves the tail past them
    /// (a checkpoint). Returns the number of records installed.
    pub fn install(&self) -> Result<usize> {
        self.inner.install()
    }

    /// Flushes, installs everything and stops the installer: the image is then fully installed
    /// with an empty log.
    pub fn close(self) -> Result<()> {
        self.flush()?;
        self.install()?;
        self.stop_installer();
        self.inner.state.lock().closed = true;
        Ok(())
    }

    fn stop_installer(&self) {
        self.inner.state.lock().shutdown = true;
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
        self.inner.state.lock().installer_paused = paused;
        self.inner.install_wanted.notify_all();
    }

    /// Blocks in the log region now in use (committed, not yet installed).
    pub fn used_log_blocks(&self) -> u64 {
        let state = self.inner.state.lock();
        state.head_pos - state.header.tail_pos
    }

    /// Sequence numbers: (highest committed, highest durable).
    pub fn seqs(&self) -> (u64, u64) {
        let state = self.inner.state.lock();
        (state.next_seq - 1, state.durable_seq)
    }

    fn debug_check(&self) {
        #[cfg(debug_assertions)]
        self.inner.check_rep();
    }

    /// The rep invariant (see the crate documentation); panics, naming what broke.
    pub fn check_rep(&self) {
        self.inner.check_rep();
    }
}

/// Home reads that race installations before a read takes the installer's lock.
const READ_ATTEMPTS: usize = 8;

impl Inner {
    pub(crate) fn check_data_addr(&self, addr: Addr) -> Result<()> {
        let data_blocks = self.sb.data_blocks;
        if addr >= data_blocks {
            return Err(LogError::AddressOutOfRange { addr, data_blocks });
        }
        Ok(())
    }

    fn usable(state: &State) -> Result<()> {
        if let Some(cause) = &state.poisoned {
            return Err(LogError::Poisoned {
                cause: cause.clone(),
            });
        }
        if state.closed {
            return Err(LogError::Closed);
        }
        Ok(())
    }

    /// The committed value of `addr` (installed or still in the log).
    pub fn read(&self, addr: Addr) -> Result<Block> {
        self.check_data_addr(addr)?;
        for _ in 0..READ_ATTEMPTS {
            let install_gen = {
                let state = self.state.lock();
                Inner::usable(&state)?;
                if let Some((_, block)) = state.logged.get(&addr) {
                    return Ok((**block).clone());
                }
                state.install_gen
            };
            // Not in the log: the home block holds the newest committed value. Only an
            // installation that started after the check above could be writing it now (an
            // earlier one would have left the address in the map), and then a torn read is
            // possible on a real file: read again.
            let block = self.disk.read(self.sb.data_start + addr)?;
            if self.state.lock().install_gen == install_gen {
                return Ok(block);
            }
        }
        // Installations keep starting: read with none running.
        let _no_installer = self.install_lock.lock();
        {
            let state = self.state.lock();
            if let Some((_, block)) = state.logged.get(&addr) {
                return Ok((**block).clone());
            }
        }
        Ok(self.disk.read(self.sb.data_start + addr)?)
    }

    /// Commits `writes` (distinct addresses) as one record without waiting for durability;
    /// visible to readers at once. Returns its sequence number, `None` if `writes` is empty.
    pub fn append(&self, writes: Vec<(Addr, Block)>) -> Result<Option<u64>> {
        // Several writes to one address in one transaction: the last one is the transaction's.
        // (Callers that buffer writes in an ordered map pass them sorted and distinct already.)
        let sorted_distinct = writes.windows(2).all(|pair| pair[0].0 < pair[1].0);
        let writes: Vec<(Addr, Block)> = if sorted_distinct {
            writes
        } else {
            writes
                .into_iter()
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect()
        };
        if writes.is_empty() {
            return Ok(None);
        }
        let max_blocks = self.max_tx_blocks;
        if writes.len() > max_blocks {
            return Err(LogError::TransactionTooLarge {
                blocks: writes.len(),
                max_blocks,
            });
        }
        for (addr, _) in &writes {
            self.check_data_addr(*addr)?;
        }
        let len_blocks = record_len_blocks(writes.len());
        let (addrs, data): (Vec<Addr>, Vec<Arc<Block>>) = writes
            .into_iter()
            .map(|(addr, block)| (addr, Arc::new(block)))
            .unzip();
        debug_assert!(
            distinct(&addrs),
            "log: duplicate address survived deduplication"
        );
        let seq = loop {
            let mut state = self.state.lock();
            Inner::usable(&state)?;
            if state.head_pos + len_blocks - state.header.tail_pos <= self.sb.log_blocks {
                break self.reserve(&mut state, len_blocks, &addrs, &data);
            }
            drop(state);
            // The log is full: make everything durable so the installer can free it all.
            self.flush()?;
            self.install()?;
        };
        self.commits.fetch_add(1, Ordering::Relaxed);
        #[cfg(debug_assertions)]
        self.check_rep();
        Ok(Some(seq))
    }

    fn reserve(
        &self,
        state: &mut State,
        len_blocks: u64,
        addrs: &[Addr],
        data: &[Arc<Block>],
    ) -> u64 {
        let seq = state.next_seq;
        let record = RecordMeta {
            seq,
            pos: state.head_pos,
            len_blocks,
            addrs: addrs.to_vec(),
            data: data.to_vec(),
        };
        state.next_seq += 1;
        state.head_pos += len_blocks;
        for (addr, block) in addrs.iter().zip(data) {
            state.logged.insert(*addr, (seq, Arc::clone(block)));
        }
        state.records.push_back(Arc::new(record));
        state.unwritten += 1;
        if state.gathering {
            self.appended.notify_all();
        }
        let used = state.head_pos - state.header.tail_pos;
        if used * 100 >= self.options.install_threshold_pct * self.sb.log_blocks {
            self.install_wanted.notify_one();
        }
        seq
    }

    /// Makes every transaction committed so far durable (one group flush).
    pub fn flush(&self) -> Result<()> {
        let target = self.state.lock().next_seq - 1;
        self.wait_durable(target)
    }

    /// Returns once the record `seq` (and so every record before it) is durable. Whoever finds
    /// no flush in progress writes every record committed so far and syncs once, on behalf of
    /// all committers waiting: that is group commit. No lock is held across the I/O.
    pub fn wait_durable(&self, seq: u64) -> Result<()> {
        let inner = self;
        let mut state = inner.state.lock();
        // Nothing past the newest commit can become durable: wait for that one at most.
        let seq = seq.min(state.next_seq - 1);
        loop {
            if let Some(cause) = &state.poisoned {
                return Err(LogError::Poisoned {
                    cause: cause.clone(),
                });
            }
            if state.durable_seq >= seq {
                return Ok(());
            }
            if state.flushing {
                inner.flushed.wait(&mut state);
                continue;
            }
            assert!(
                state.unwritten > 0,
                "log: record {seq} not durable (durable {}) and none unwritten",
                state.durable_seq
            );
            state.flushing = true;
            inner.gather(&mut state);
            if state.poisoned.is_some() {
                // Stopped while the group gathered: write nothing more, report the poison.
                state.flushing = false;
                inner.flushed.notify_all();
                continue;
            }
            let first = state.records.len() - state.unwritten;
            let batch: Vec<Arc<RecordMeta>> = state.records.iter().skip(first).cloned().collect();
            let durable_before = state.durable_seq;
            state.unwritten = 0;
            let started = Instant::now();
            let result =
                MutexGuard::unlocked(&mut state, || self.write_batch(&batch, durable_before));
            state.flushing = false;
            state.last_batch_records = batch.len();
            state.last_flush_us = started.elapsed().as_micros() as u64;
            match result {
                Ok(()) => state.durable_seq = batch.last().map_or(durable_before, |r| r.seq),
                Err(error) => state.poisoned = Some(format!("log flush: {error}")),
            }
            inner.flushed.notify_all();
        }
    }

    /// Before a flush, waits a little for committers to join the group: right after a flush the
    /// committers it released come back one by one, and the first must not leave with a group of
    /// one while the rest wait a whole flush for the next. It waits until the group is as large
    /// as the last one, or for half the last flush's duration (10 µs to 500 µs), whichever comes
    /// first; a lone committer (last group of one) never waits.
    fn gather(&self, state: &mut MutexGuard<'_, State>) {
        let expected = state.last_batch_records;
        if expected <= 1 || state.unwritten >= expected {
            return;
        }
        let patience = Duration::from_micros((state.last_flush_us / 2).clamp(10, 500));
        let deadline = Instant::now() + patience;
        state.gathering = true;
        while state.unwritten < expected && state.poisoned.is_none() {
            if self.appended.wait_until(state, deadline).timed_out() {
                break;
            }
        }
        state.gathering = false;
    }

    /// Writes a group of records to their reserved places and syncs once.
    fn write_batch(&self, batch: &[Arc<RecordMeta>], durable_before: u64) -> Result<()> {
        let sb = &self.sb;
        let disk = &self.disk;
        let failures_before = self.failed_syncs();
        let descs: Vec<Vec<Block>> = batch
            .iter()
            .map(|record| {
                let data: Vec<&Block> = record.data.iter().map(|b| &**b).collect();
                encode_record(sb, record.seq, durable_before, &record.addrs, &data)
            })
            .collect();
        // The group occupies consecutive log positions: write it as runs of consecutive disk
        // blocks (broken only where the circular log wraps).
        let blocks = batch.iter().zip(&descs).flat_map(|(record, descs)| {
            let data = record.data.iter().map(|b| &**b);
            let positions = record.pos..record.pos + record.len_blocks;
            positions.zip(descs.iter().chain(data))
        });
        write_runs(
            &**disk,
            blocks.map(|(pos, block)| (sb.log_addr(pos), block)),
        )?;
        // One sync makes the whole group durable; each record's checksum makes it all or nothing.
        if !crate::bug_active!(CommitWithoutFlush) {
            self.sync_since(failures_before)?;
        }
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.records_written
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Syncs that have failed so far. Read it before issuing writes that a later
    /// [`Inner::sync_since`] must vouch for.
    fn failed_syncs(&self) -> u64 {
        *self.sync_failures.lock()
    }

    /// Syncs the disk, and vouches for every write issued since `failures_before` was read: Ok
    /// only if this sync succeeded and no sync of anyone failed in between — a failed sync may
    /// have dropped any write not yet durable, whoever issued it, and the next sync on the
    /// same file can succeed without having written them. Syncs are serialised so that the
    /// count and the outcome are read together. A failure poisons the log.
    fn sync_since(&self, failures_before: u64) -> Result<()> {
        let mut failures = self.sync_failures.lock();
        let outcome = self.disk.sync();
        let failed = outcome.is_err();
        if failed {
            *failures += 1;
        }
        let vouched = *failures == failures_before;
        drop(failures);
        match outcome {
            Err(error) => {
                self.poison(format!("sync failed: {error}"));
                Err(error.into())
            }
            Ok(()) if !vouched => {
                let cause =
                    "an earlier sync failed: writes issued before it may be lost".to_string();
                self.poison(cause.clone());
                Err(LogError::Poisoned { cause })
            }
            Ok(()) => Ok(()),
        }
    }

    /// Stops the log: every later operation fails, nothing more is written.
    fn poison(&self, cause: String) {
        let mut state = self.state.lock();
        if state.poisoned.is_none() {
            state.poisoned = Some(cause);
        }
        self.flushed.notify_all();
    }

    /// Installs every durable record at its home location and moves the tail past them
    /// (a checkpoint). Returns the number of records installed.
    pub fn install(&self) -> Result<usize> {
        let inner = self;
        let _one_installer = inner.install_lock.lock();
        let batch: Vec<Arc<RecordMeta>> = {
            let mut state = inner.state.lock();
            Inner::usable(&state)?;
            state.install_gen += 1;
            state
                .records
                .iter()
                .take_while(|r| r.seq <= state.durable_seq)
                .cloned()
                .collect()
        };
        let Some(last) = batch.last() else {
            return Ok(0);
        };
        let result = self.install_batch(&batch);
        let mut state = inner.state.lock();
        let new_header = match result {
            Ok(header) => header,
            Err(error) => {
                state.poisoned = Some(format!("log installation: {error}"));
                inner.flushed.notify_all();
                return Err(error);
            }
        };
        state.header = new_header;
        for record in &batch {
            let front = state.records.pop_front();
            assert!(
                front.is_some_and(|f| f.seq == record.seq),
                "log: installed record {} was not at the front",
                record.seq
            );
        }
        for record in &batch {
            for addr in &record.addrs {
                if state
                    .logged
                    .get(addr)
                    .is_some_and(|(seq, _)| *seq <= last.seq)
                {
                    state.logged.remove(addr);
                }
            }
        }
        drop(state);
        inner.installs.fetch_add(1, Ordering::Relaxed);
        #[cfg(debug_assertions)]
        self.check_rep();
        Ok(batch.len())
    }

    /// The I/O of an installation: home blocks, sync, header, sync. Returns the new header.
    fn install_batch(&self, batch: &[Arc<RecordMeta>]) -> Result<Header> {
        let inner = self;
        let failures_before = self.failed_syncs();
        let mut newest: BTreeMap<Addr, &Arc<Block>> = BTreeMap::new();
        for record in batch {
            for (addr, block) in record.addrs.iter().zip(&record.data) {
                newest.insert(*addr, block);
            }
        }
        // Write-ahead: every record in the batch is durable in the log (seq <= durable_seq).
        let home = newest
            .iter()
            .map(|(addr, block)| (inner.sb.data_start + addr, &***block));
        write_runs(&*inner.disk, home)?;
        // The home blocks must be durable before the header stops pointing at their records.
        if !crate::bug_active!(HeaderBeforeInstallDurable) {
            self.sync_since(failures_before)?;
        }
        // A flush may have failed meanwhile: once poisoned, the log writes nothing more.
        let old = {
            let state = inner.state.lock();
            Inner::usable(&state)?;
            state.header
        };
        let last = &batch[batch.len() - 1];
        let header = Header {
            generation: old.generation + 1,
            tail_pos: last.end_pos(),
            tail_seq: last.seq + 1,
        };
        inner
            .disk
            .write(header.slot_addr(), &header.encode(&inner.sb))?;
        // The freed space may be reused only once the header naming the new tail is durable.
        self.sync_since(failures_before)?;
        inner
            .blocks_installed
            .fetch_add(newest.len() as u64, Ordering::Relaxed);
        Ok(header)
    }
}

/// Writes `(address, block)` pairs, in order, as runs of consecutive addresses.
pub(crate) fn write_runs<'a>(
    disk: &dyn Disk,
    blocks: impl Iterator<Item = (Addr, &'a Block)>,
) -> Result<()> {
    let mut run: Vec<&Block> = Vec::new();
    let mut run_start: Addr = 0;
    for (addr, block) in blocks {
        if !run.is_empty() && addr != run_start + run.len() as u64 {
            disk.write_run(run_start, &run)?;
            run.clear();
        }
        if run.is_empty() {
            run_start = addr;
        }
        run.push(block);
    }
    if !run.is_empty() {
        disk.write_run(run_start, &run)?;
    }
    Ok(())
}

fn distinct(addrs: &[Addr]) -> bool {
    let mut sorted = addrs.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).all(|w| w[0] != w[1])
}

impl Drop for Log {
    fn drop(&mut self) {
        self.stop_installer();
    }
}

fn installer_loop(inner: &Arc<Inner>) {
    loop {
        {
            let mut state = inner.state.lock();
            if state.shutdown || state.poisoned.is_some() {
                return;
            }
            let _ = inner
                .install_wanted
                .wait_for(&mut state, Duration::from_millis(50));
            if state.shutdown || state.poisoned.is_some() {
                return;
            }
            let used = state.head_pos - state.header.tail_pos;
            let durable_records = state
                .records
                .iter()
                .take_while(|r| r.seq <= state.durable_seq)
                .count();
            let want = used * 100 >= inner.options.install_threshold_pct * inner.sb.log_blocks
                && !state.installer_paused;
            if !want || durable_records == 0 {
                continue;
            }
        }
        if let Err(error) = inner.install() {
            tracing::error!(%error, "background installation failed; the log is stopped");
            return;
        }
    }
}
