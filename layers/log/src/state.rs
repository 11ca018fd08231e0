//! The state every thread of a log shares: the in-memory records, positions and sequence
//! numbers under one lock, and the sync discipline both the committers and the installer obey.

use crate::api::LogOptions;
use crate::error::{LogError, Result};
use crate::format::{Header, Superblock};
use crate::position::{LogPos, Seq};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use txdisk_disk::sync::atomic::AtomicU64;
use txdisk_disk::sync::{Condvar, Mutex};
use txdisk_disk::{Addr, Block, Disk};

/// A committed record that is still in the log (not yet installed).
#[derive(Debug)]
pub(crate) struct RecordMeta {
    pub seq: Seq,
    pub pos: LogPos,
    pub len_blocks: u64,
    pub addrs: Vec<Addr>,
    pub data: Vec<Arc<Block>>,
}

impl RecordMeta {
    pub(crate) fn end_pos(&self) -> LogPos {
        self.pos + self.len_blocks
    }
}

/// The log's mode, as FSCQ names its `logstate`: what the log still accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Commits, flushes, installations and reads go ahead.
    Running,
    /// A disk write or sync failed: every later operation fails with this cause and nothing
    /// more is written. Never left (reopening the image recovers what is durable).
    Poisoned { cause: String },
    /// `Log::close` returned: the image is installed with an empty log.
    Closed,
}

impl Mode {
    pub(crate) fn is_poisoned(&self) -> bool {
        matches!(self, Mode::Poisoned { .. })
    }
}

/// What group commit is doing: at most one flusher at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flusher {
    /// No flush in progress: the next committer that needs durability becomes the flusher.
    Idle,
    /// A flusher waits for committers to join its group (see `Inner::gather`).
    Gathering,
    /// A flusher is writing records and syncing; others wait for it rather than flush alongside.
    Flushing,
}

/// What the background installer may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Installer {
    /// Installs when the log is full enough.
    Active,
    /// Leaves the log alone (a full log is still installed by the committer that needs the
    /// space).
    Paused,
    /// The log is closing or dropped: the thread exits.
    Stopped,
}

#[derive(Debug)]
pub(crate) struct State {
    pub mode: Mode,
    /// The durable header: the tail it names is where space is reusable from.
    pub header: Header,
    pub head_pos: LogPos,
    pub next_seq: Seq,
    pub durable_seq: Seq,
    pub flusher: Flusher,
    /// Every committed, not yet installed record, in sequence order.
    pub records: VecDeque<Arc<RecordMeta>>,
    /// How many records at the back of `records` no flusher has taken yet.
    pub unwritten: usize,
    /// Newest committed value of every address that has a record in the log.
    pub logged: HashMap<Addr, (Seq, Arc<Block>)>,
    /// Bumped when an installation picks its batch: a home read that saw no change of it
    /// cannot have overlapped a home write (see `Inner::read`).
    pub install_gen: u64,
    pub installer: Installer,
    /// Records of the last group flush, and how long its write and sync took: a new flusher
    /// waits briefly for about as many committers to join (see `Inner::gather`).
    pub last_batch_records: usize,
    pub last_flush_us: u64,
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

impl Inner {
    pub(crate) fn check_data_addr(&self, addr: Addr) -> Result<()> {
        let data_blocks = self.sb.data_blocks;
        if addr >= data_blocks {
            return Err(LogError::AddressOutOfRange { addr, data_blocks });
        }
        Ok(())
    }

    pub(crate) fn usable(state: &State) -> Result<()> {
        match &state.mode {
            Mode::Running => Ok(()),
            Mode::Poisoned { cause } => Err(LogError::Poisoned {
                cause: cause.clone(),
            }),
            Mode::Closed => Err(LogError::Closed),
        }
    }

    /// Syncs that have failed so far. Read it before issuing writes that a later
    /// [`Inner::sync_since`] must vouch for.
    pub(crate) fn failed_syncs(&self) -> u64 {
        *self.sync_failures.lock()
    }

    /// Syncs the disk, and vouches for every write issued since `failures_before` was read: Ok
    /// only if this sync succeeded and no sync of anyone failed in between — a failed sync may
    /// have dropped any write not yet durable, whoever issued it, and the next sync on the
    /// same file can succeed without having written them. Syncs are serialised so that the
    /// count and the outcome are read together. A failure poisons the log.
    pub(crate) fn sync_since(&self, failures_before: u64) -> Result<()> {
        let mut failures = self.sync_failures.lock();
        let mut outcome = self.disk.sync();
        if crate::bug_active!(FailedSyncIgnored)
            && matches!(outcome, Err(txdisk_disk::DiskError::SyncFailed))
        {
            outcome = Ok(());
        }
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
    pub(crate) fn poison(&self, cause: String) {
        let mut state = self.state.lock();
        if !state.mode.is_poisoned() {
            state.mode = Mode::Poisoned { cause };
        }
        self.flushed.notify_all();
    }
}
