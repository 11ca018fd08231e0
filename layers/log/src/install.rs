//! Installation (checkpoint): durable records are copied home, then the header moves the tail
//! past them and their log space is reused. A background thread installs when the log is half
//! full; a committer that finds the log full installs synchronously.

use crate::error::Result;
#[cfg(debug_assertions)]
use crate::format::check_header_round_trip;
use crate::format::Header;
use crate::home::write_home;
use crate::position::Seq;
use crate::state::{Inner, Installer, Mode, RecordMeta, State};
use std::sync::Arc;
use std::time::Duration;
use txdisk_disk::sync::atomic::Ordering;

impl Inner {
    /// Installs every durable record at its home location and moves the tail past them
    /// (a checkpoint). Returns the number of records installed.
    pub fn install(&self) -> Result<usize> {
        let _one_installer = self.install_lock.lock();
        let (batch, next_seq_at_pick) = self.pick_batch()?;
        let Some(last) = batch.last() else {
            return Ok(0);
        };
        let result = self.install_batch(&batch, last, next_seq_at_pick);
        let mut state = self.state.lock();
        let new_header = match result {
            Ok(header) => header,
            Err(error) => {
                state.mode = Mode::Poisoned {
                    cause: format!("log installation: {error}"),
                };
                self.flushed.notify_all();
                return Err(error);
            }
        };
        retire(&mut state, &batch, new_header);
        drop(state);
        self.installs.fetch_add(1, Ordering::Relaxed);
        Ok(batch.len())
    }

    /// The durable records at the front of the log, checked against the header they follow,
    /// and the sequence number the next commit would get when they were picked.
    fn pick_batch(&self) -> Result<(Vec<Arc<RecordMeta>>, Seq)> {
        let mut state = self.state.lock();
        Inner::usable(&state)?;
        state.install_gen += 1;
        let batch: Vec<Arc<RecordMeta>> = state
            .records
            .iter()
            .take_while(|r| r.seq <= state.durable_seq)
            .cloned()
            .collect();
        check_install_batch(&state, &batch);
        Ok((batch, state.next_seq))
    }

    /// The I/O of an installation: home blocks, sync, header, sync. Returns the new header.
    fn install_batch(
        &self,
        batch: &[Arc<RecordMeta>],
        last: &RecordMeta,
        next_seq_at_pick: Seq,
    ) -> Result<Header> {
        let failures_before = self.failed_syncs();
        // Write-ahead: every record in the batch is durable in the log (seq <= durable_seq).
        let last_block = self.sb.data_blocks.checked_sub(1);
        let writes = batch
            .iter()
            .flat_map(|record| {
                let data = record.data.iter().map(|block| &**block);
                record.addrs.iter().copied().zip(data)
            })
            .filter(|&(addr, _)| {
                !(crate::bug_active!(LastBlockDropped) && Some(addr) == last_block)
            });
        let home_blocks = write_home(&*self.disk, self.sb.data_start, writes)?;
        // The home blocks must be durable before the header stops pointing at their records.
        if !crate::bug_active!(HeaderBeforeInstallDurable) {
            self.sync_since(failures_before)?;
        }
        // A flush may have failed meanwhile: once poisoned, the log writes nothing more.
        let (old, head) = {
            let state = self.state.lock();
            Inner::usable(&state)?;
            (state.header, (state.head_pos, state.next_seq))
        };
        let mut header = Header {
            generation: old.generation + 1,
            tail_pos: last.end_pos().0,
            tail_seq: last.seq.next().0,
        };
        // The wrong variant: when the batch was every record there was, the tail goes to the
        // head as it is now, past the records reserved since the pick.
        if crate::bug_active!(TailPastReservations) && last.seq.next() == next_seq_at_pick {
            (header.tail_pos, header.tail_seq) = (head.0 .0, head.1 .0);
        }
        let block = header.encode(&self.sb);
        #[cfg(debug_assertions)]
        check_header_round_trip(&header, &block, &self.sb);
        self.disk.write(header.slot_addr(), &block)?;
        // The freed space may be reused only once the header naming the new tail is durable.
        self.sync_since(failures_before)?;
        self.blocks_installed
            .fetch_add(home_blocks as u64, Ordering::Relaxed);
        Ok(header)
    }
}

/// Preconditions of an installation: the batch starts at the header's tail, is consecutive in
/// sequence and position, and is durable in the log (write-ahead).
fn check_install_batch(state: &State, batch: &[Arc<RecordMeta>]) {
    let tail = state.header;
    if let Some(first) = batch.first() {
        assert_eq!(
            first.pos,
            tail.tail(),
            "log: installation starts at position {}, expected the tail {}",
            first.pos,
            tail.tail_pos
        );
        assert_eq!(
            first.seq,
            tail.first_seq(),
            "log: installation starts at record {}, expected the tail's {}",
            first.seq,
            tail.tail_seq
        );
    }
    if let Some(last) = batch.last() {
        assert!(
            last.seq <= state.durable_seq,
            "log: installing record {} home, durable only through {}",
            last.seq,
            state.durable_seq
        );
    }
    for pair in batch.windows(2) {
        assert_eq!(
            pair[1].pos,
            pair[0].end_pos(),
            "log: installing record {} at position {}, expected {}",
            pair[1].seq,
            pair[1].pos,
            pair[0].end_pos()
        );
    }
}

/// After the new header is durable: the installed records leave the log, and so do the
/// addresses whose newest value they carried.
fn retire(state: &mut State, batch: &[Arc<RecordMeta>], new_header: Header) {
    assert_eq!(
        new_header.generation,
        state.header.generation + 1,
        "log: header generation {} replaces generation {}, expected the next",
        new_header.generation,
        state.header.generation
    );
    state.header = new_header;
    for record in batch {
        let Some(front) = state.records.pop_front() else {
            panic!("log: installed record {} but no record is left", record.seq)
        };
        assert_eq!(
            front.seq, record.seq,
            "log: installed record {} but record {} was at the front",
            record.seq, front.seq
        );
    }
    let last_seq = new_header.first_seq().prev();
    for record in batch {
        for addr in &record.addrs {
            if state
                .logged
                .get(addr)
                .is_some_and(|(seq, _)| *seq <= last_seq)
            {
                state.logged.remove(addr);
            }
        }
    }
}

pub(crate) fn installer_loop(inner: &Arc<Inner>) {
    loop {
        {
            let mut state = inner.state.lock();
            if state.installer == Installer::Stopped || state.mode.is_poisoned() {
                return;
            }
            let _ = inner
                .install_wanted
                .wait_for(&mut state, Duration::from_millis(50));
            if state.installer == Installer::Stopped || state.mode.is_poisoned() {
                return;
            }
            let used = state.head_pos - state.header.tail();
            let durable_records = state
                .records
                .iter()
                .take_while(|r| r.seq <= state.durable_seq)
                .count();
            let want = used * 100 >= inner.options.install_threshold_pct * inner.sb.log_blocks
                && state.installer != Installer::Paused;
            if !want || durable_records == 0 {
                continue;
            }
        }
        if let Err(error) = inner.install() {
            tracing::error!(%error, "background installation failed; the log is stopped");
            return;
        }
        #[cfg(debug_assertions)]
        inner.check_rep();
    }
}
