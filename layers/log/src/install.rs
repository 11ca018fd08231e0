//! Installation (checkpoint): durable records are copied home, then the header moves the tail
//! past them and their log space is reused. A background thread installs when the log is half
//! full; a committer that finds the log full installs synchronously.

use crate::error::Result;
use crate::format::Header;
use crate::home::write_home;
use crate::state::{Inner, Installer, Mode, RecordMeta};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl Inner {
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
                state.mode = Mode::Poisoned {
                    cause: format!("log installation: {error}"),
                };
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
        Ok(batch.len())
    }

    /// The I/O of an installation: home blocks, sync, header, sync. Returns the new header.
    fn install_batch(&self, batch: &[Arc<RecordMeta>]) -> Result<Header> {
        let inner = self;
        let failures_before = self.failed_syncs();
        // Write-ahead: every record in the batch is durable in the log (seq <= durable_seq).
        let writes = batch.iter().flat_map(|record| {
            let data = record.data.iter().map(|block| &**block);
            record.addrs.iter().copied().zip(data)
        });
        let home_blocks = write_home(&*inner.disk, inner.sb.data_start, writes)?;
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
            .fetch_add(home_blocks as u64, Ordering::Relaxed);
        Ok(header)
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
            let used = state.head_pos - state.header.tail_pos;
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
