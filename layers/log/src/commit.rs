//! Commit with group commit: a commit reserves its place in the log under the state lock; the
//! first committer that needs durability and finds no flush in progress writes every record
//! not yet written and syncs once for all of them, and the others wait for it.

use crate::error::{LogError, Result};
#[cfg(debug_assertions)]
use crate::format::check_record_round_trip;
use crate::format::{encode_record, record_len_blocks};
use crate::home::write_runs;
use crate::position::Seq;
use crate::state::{Flusher, Inner, Mode, RecordMeta, State};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use txdisk_disk::sync::atomic::Ordering;
use txdisk_disk::sync::MutexGuard;
use txdisk_disk::{Addr, Block};

impl Inner {
    /// Commits `writes` (distinct addresses) as one record without waiting for durability;
    /// visible to readers at once. Returns its sequence number, `None` if `writes` is empty.
    pub fn append(&self, writes: Vec<(Addr, Block)>) -> Result<Option<Seq>> {
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
        #[cfg(debug_assertions)]
        assert!(
            distinct(&addrs),
            "log: duplicate address survived deduplication"
        );
        let seq = loop {
            let mut state = self.state.lock();
            Inner::usable(&state)?;
            if state.head_pos + len_blocks - state.header.tail() <= self.sb.log_blocks {
                break self.reserve(&mut state, len_blocks, &addrs, &data);
            }
            drop(state);
            // The log is full: make everything durable so the installer can free it all.
            self.flush()?;
            self.install()?;
        };
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(Some(seq))
    }

    fn reserve(
        &self,
        state: &mut State,
        len_blocks: u64,
        addrs: &[Addr],
        data: &[Arc<Block>],
    ) -> Seq {
        self.check_reserve(state, len_blocks, addrs, data);
        let seq = state.next_seq;
        let record = RecordMeta {
            seq,
            pos: state.head_pos,
            len_blocks,
            addrs: addrs.to_vec(),
            data: data.to_vec(),
        };
        state.next_seq = seq.next();
        state.head_pos += len_blocks;
        for (addr, block) in addrs.iter().zip(data) {
            state.logged.insert(*addr, (seq, Arc::clone(block)));
        }
        state.records.push_back(Arc::new(record));
        state.unwritten += 1;
        if state.flusher == Flusher::Gathering {
            self.appended.notify_all();
        }
        let used = state.head_pos - state.header.tail();
        if used * 100 >= self.options.install_threshold_pct * self.sb.log_blocks {
            self.install_wanted.notify_one();
        }
        seq
    }

    /// Makes every transaction committed so far durable (one group flush).
    pub fn flush(&self) -> Result<()> {
        let target = self.state.lock().next_seq.prev();
        self.wait_durable(target)
    }

    /// Returns once the record `seq` (and so every record before it) is durable. Whoever finds
    /// no flush in progress writes every record committed so far and syncs once, on behalf of
    /// all committers waiting: that is group commit. No lock is held across the I/O.
    pub fn wait_durable(&self, seq: Seq) -> Result<()> {
        let inner = self;
        let mut state = inner.state.lock();
        // Nothing past the newest commit can become durable: wait for that one at most.
        let seq = seq.min(state.next_seq.prev());
        loop {
            if let Mode::Poisoned { cause } = &state.mode {
                return Err(LogError::Poisoned {
                    cause: cause.clone(),
                });
            }
            if state.durable_seq >= seq {
                return Ok(());
            }
            if state.flusher != Flusher::Idle {
                inner.flushed.wait(&mut state);
                continue;
            }
            assert!(
                state.unwritten > 0,
                "log: record {seq} not durable (durable {}) and none unwritten",
                state.durable_seq
            );
            state.flusher = Flusher::Flushing;
            inner.gather(&mut state);
            if state.mode.is_poisoned() {
                // Stopped while the group gathered: write nothing more, report the poison.
                state.flusher = Flusher::Idle;
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
            state.flusher = Flusher::Idle;
            state.last_batch_records = batch.len();
            state.last_flush_us = started.elapsed().as_micros() as u64;
            match result {
                Ok(()) if crate::bug_active!(AckLateJoiners) => {
                    state.durable_seq = state.next_seq.prev();
                }
                Ok(()) => state.durable_seq = batch.last().map_or(durable_before, |r| r.seq),
                Err(error) => {
                    state.mode = Mode::Poisoned {
                        cause: format!("log flush: {error}"),
                    }
                }
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
        state.flusher = Flusher::Gathering;
        while state.unwritten < expected && !state.mode.is_poisoned() {
            if self.appended.wait_until(state, deadline).timed_out() {
                break;
            }
        }
        state.flusher = Flusher::Flushing;
    }

    /// Preconditions of a reservation, which the caller established under the state lock.
    fn check_reserve(&self, state: &State, len_blocks: u64, addrs: &[Addr], data: &[Arc<Block>]) {
        let head_pos = state.head_pos;
        assert_eq!(
            state.mode,
            Mode::Running,
            "log: reserve at position {head_pos} on a log that is not running"
        );
        assert!(
            !addrs.is_empty(),
            "log: empty record at position {head_pos}"
        );
        assert_eq!(
            addrs.len(),
            data.len(),
            "log: record at position {head_pos}: {} addresses, {} blocks",
            addrs.len(),
            data.len()
        );
        assert_eq!(
            len_blocks,
            record_len_blocks(addrs.len()),
            "log: record at position {head_pos} of {} blocks reserves {len_blocks}",
            addrs.len()
        );
        let tail_pos = state.header.tail();
        assert!(
            tail_pos <= head_pos,
            "log: reserve at position {head_pos}, behind the tail {tail_pos}"
        );
        let (used, log_blocks) = (head_pos - tail_pos, self.sb.log_blocks);
        assert!(
            used + len_blocks <= log_blocks,
            "log: record of {len_blocks} blocks at position {head_pos}: {used} of {log_blocks} in use"
        );
        let data_blocks = self.sb.data_blocks;
        for &addr in addrs {
            assert!(
                addr < data_blocks,
                "log: record at position {head_pos} names address {addr}, expected below {data_blocks}"
            );
        }
    }

    /// Writes a group of records to their reserved places and syncs once.
    fn write_batch(&self, batch: &[Arc<RecordMeta>], durable_before: Seq) -> Result<()> {
        let sb = &self.sb;
        let disk = &self.disk;
        check_batch(batch, durable_before);
        let failures_before = self.failed_syncs();
        let descs: Vec<Vec<Block>> = batch
            .iter()
            .map(|record| {
                let data: Vec<&Block> = record.data.iter().map(|b| &**b).collect();
                let (seq, durable_seq) = (record.seq.0, durable_before.0);
                let descs = encode_record(sb, seq, durable_seq, &record.addrs, &data);
                #[cfg(debug_assertions)]
                check_record_round_trip(sb, seq, durable_seq, &record.addrs, &descs, &data);
                descs
            })
            .collect();
        // The group occupies consecutive log positions: write it as runs of consecutive disk
        // blocks (broken only where the circular log wraps).
        let blocks = batch.iter().zip(&descs).flat_map(|(record, descs)| {
            let data = record.data.iter().map(|b| &**b);
            let positions = record.pos.0..record.end_pos().0;
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
}

/// Preconditions of a group flush: the batch is the records right after the durable ones,
/// consecutive in sequence and position.
fn check_batch(batch: &[Arc<RecordMeta>], durable_before: Seq) {
    let Some(first) = batch.first() else {
        panic!("log: flush of an empty batch (durable through {durable_before})")
    };
    assert_eq!(
        first.seq,
        durable_before.next(),
        "log: flush starts at record {}, expected {} (durable through {durable_before})",
        first.seq,
        durable_before.next()
    );
    for pair in batch.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        assert_eq!(
            next.seq,
            prev.seq.next(),
            "log: flush batch has record {} after record {}",
            next.seq,
            prev.seq
        );
        assert_eq!(
            next.pos,
            prev.end_pos(),
            "log: record {} at position {}, expected {} (end of record {})",
            next.seq,
            next.pos,
            prev.end_pos(),
            prev.seq
        );
    }
}

#[cfg(debug_assertions)]
fn distinct(addrs: &[Addr]) -> bool {
    let mut sorted = addrs.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).all(|w| w[0] != w[1])
}
