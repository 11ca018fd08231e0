//! The asynchronous disk model itself: every block's durable value and pending writes, the
//! numbered operations `read`, `write` and `sync`, and what can be observed of them.

use super::faults::FaultPlan;
use super::image::{durable_of, DiskImage};
use crate::block::{Addr, Block};
use crate::error::{DiskError, Result};
use crate::sync::Mutex;
use crate::Disk;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The most pending writes one block keeps. Past it the oldest pending write is forgotten, so
/// the model then allows a crash to keep only one of the newest `MAX_PENDING_PER_BLOCK` writes
/// (a real disk cache is bounded too). Layers above sync long before this.
pub const MAX_PENDING_PER_BLOCK: usize = 4096;

/// What kind of call an operation number was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// A [`Disk::read`].
    Read,
    /// A [`Disk::write`] (each block of a `write_run` is one).
    Write,
    /// A [`Disk::sync`].
    Sync,
}

/// Counters of what reached the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Reads that reached the disk (including those failing with `ReadError`).
    pub reads: u64,
    /// Writes that reached the disk.
    pub writes: u64,
    /// Successful syncs.
    pub syncs: u64,
    /// Syncs that failed on a schedule and lost the cached writes.
    pub failed_syncs: u64,
}

/// Whether the disk still runs; a stopped disk stays stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    Running,
    Crashed { at_op: u64 },
    Failed { at_op: u64 },
}

/// One block: its durable value and the writes since the last `sync`, oldest first.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) durable: Arc<Block>,
    pub(super) pending: Vec<Arc<Block>>,
}

impl Slot {
    pub(super) fn newest(&self) -> &Arc<Block> {
        self.pending.last().unwrap_or(&self.durable)
    }

    /// {durable} ∪ pending, each distinct value once, in write order.
    pub(super) fn distinct_values(&self) -> Vec<Arc<Block>> {
        let mut values: Vec<Arc<Block>> = Vec::with_capacity(1 + self.pending.len());
        for value in std::iter::once(&self.durable).chain(self.pending.iter()) {
            if !values.iter().any(|seen| seen == value) {
                values.push(Arc::clone(value));
            }
        }
        values
    }
}

/// Everything behind the disk's lock.
#[derive(Debug)]
pub(super) struct State {
    pub(super) slots: Vec<Slot>,
    /// Addresses whose pending list is non-empty; keeps sync and enumeration O(dirty).
    pub(super) dirty: BTreeSet<Addr>,
    pub(super) pending_total: usize,
    pub(super) ops: u64,
    pub(super) status: Status,
    pub(super) faults: FaultPlan,
    pub(super) trace: Vec<OpKind>,
    pub(super) stats: SimStats,
    #[cfg(debug_assertions)]
    pub(super) seen: RepSeen,
}

/// What `check_rep` saw at its previous call (debug builds only), so that it can check the
/// history the rep invariant speaks of: the operation counter never goes back, and a disk that
/// stopped (crashed or failed) never changes again.
#[cfg(debug_assertions)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RepSeen {
    pub(super) ops: u64,
    /// Taken at the first check after the disk stopped: status, counters, pending writes and
    /// dirty blocks, none of which may change afterwards.
    pub(super) stopped: Option<(Status, SimStats, usize, usize)>,
}

/// The asynchronous disk model with crash and fault injection. See the module documentation.
#[derive(Debug)]
pub struct SimDisk {
    pub(super) state: Mutex<State>,
    pub(super) size_blocks: u64,
}

impl SimDisk {
    /// A running disk of `size_blocks` zero blocks, all durable.
    pub fn new(size_blocks: u64) -> SimDisk {
        SimDisk::from_image(&DiskImage::zeroed(size_blocks))
    }

    /// A running disk whose durable contents are `image` (restart a stack on a crash state).
    pub fn from_image(image: &DiskImage) -> SimDisk {
        let slots = image
            .blocks
            .iter()
            .map(|block| Slot {
                durable: Arc::clone(block),
                pending: Vec::new(),
            })
            .collect();
        let state = State {
            slots,
            dirty: BTreeSet::new(),
            pending_total: 0,
            ops: 0,
            status: Status::Running,
            faults: FaultPlan::default(),
            trace: Vec::new(),
            stats: SimStats::default(),
            #[cfg(debug_assertions)]
            seen: RepSeen::default(),
        };
        SimDisk {
            state: Mutex::new(state),
            size_blocks: image.size_blocks(),
        }
    }

    // ---- observation ----

    /// Number of operations performed so far (the next operation's number).
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// The kind of every operation performed so far, by number.
    pub fn trace(&self) -> Vec<OpKind> {
        self.state.lock().trace.clone()
    }

    /// What reached the disk so far.
    pub fn stats(&self) -> SimStats {
        self.state.lock().stats
    }

    /// Whether the disk has crashed (every call returns `Crashed`).
    pub fn is_crashed(&self) -> bool {
        matches!(self.state.lock().status, Status::Crashed { .. })
    }

    /// Whether the disk has failed for good (every call returns `Failed`).
    pub fn is_failed(&self) -> bool {
        matches!(self.state.lock().status, Status::Failed { .. })
    }

    /// Number of blocks that have pending (unsynced) writes.
    pub fn dirty_blocks(&self) -> usize {
        self.state.lock().dirty.len()
    }

    /// Total pending writes over all blocks.
    pub fn pending_writes(&self) -> usize {
        self.state.lock().pending_total
    }

    /// The durable contents: what survives a crash if no pending write does.
    pub fn durable_image(&self) -> DiskImage {
        durable_of(&self.state.lock())
    }

    /// The newest contents: what a crash leaves if every pending write survives.
    pub fn current_image(&self) -> DiskImage {
        let state = self.state.lock();
        DiskImage {
            blocks: state.slots.iter().map(|s| Arc::clone(s.newest())).collect(),
        }
    }

    // ---- the operations ----

    /// Numbers the operation and applies crash / fail-stop schedules. `Ok(op)` if it may run.
    fn begin_op(state: &mut State, kind: OpKind) -> Result<u64> {
        match state.status {
            Status::Crashed { .. } => return Err(DiskError::Crashed),
            Status::Failed { .. } => return Err(DiskError::Failed),
            Status::Running => {}
        }
        let op = state.ops;
        if let Some(stopped) = state.faults.stop_at(op) {
            state.status = stopped;
            return Err(match stopped {
                Status::Failed { .. } => DiskError::Failed,
                _ => DiskError::Crashed,
            });
        }
        state.ops += 1;
        state.trace.push(kind);
        assert_eq!(
            state.trace.len() as u64,
            state.ops,
            "disk: op {op} ({kind:?}): trace length out of step with the operation count"
        );
        Ok(op)
    }

    fn do_read(&self, addr: Addr) -> Result<Block> {
        let mut state = self.state.lock();
        SimDisk::begin_op(&mut state, OpKind::Read)?;
        self.check_addr(addr)?;
        state.stats.reads += 1;
        if state.faults.read_errors.contains(&addr) {
            return Err(DiskError::ReadError { addr });
        }
        Ok((**state.slots[addr as usize].newest()).clone())
    }

    fn do_write(&self, addr: Addr, block: &Block) -> Result<()> {
        let mut state = self.state.lock();
        let op = SimDisk::begin_op(&mut state, OpKind::Write)?;
        self.check_addr(addr)?;
        state.stats.writes += 1;
        let target = state.faults.write_target(op, addr);
        assert!(
            target < self.size_blocks,
            "disk: op {op}: write of block {addr} directed to block {target}, past the disk's {} blocks",
            self.size_blocks
        );
        state.faults.read_errors.remove(&target);
        let slot = &mut state.slots[target as usize];
        slot.pending.push(Arc::new(block.clone()));
        let dropped = if slot.pending.len() > MAX_PENDING_PER_BLOCK {
            slot.pending.remove(0);
            1
        } else {
            0
        };
        // Postconditions: the write is the block's newest value, and its list stays bounded.
        debug_assert!(
            **slot.newest() == *block,
            "disk: op {op}: block {target} does not read back the value just written"
        );
        assert!(
            slot.pending.len() <= MAX_PENDING_PER_BLOCK,
            "disk: op {op}: block {target} has {} pending writes, at most {MAX_PENDING_PER_BLOCK} expected",
            slot.pending.len()
        );
        state.pending_total = state.pending_total + 1 - dropped;
        state.dirty.insert(target);
        Ok(())
    }

    fn do_sync(&self) -> Result<()> {
        let mut state = self.state.lock();
        let op = SimDisk::begin_op(&mut state, OpKind::Sync)?;
        let dirty = std::mem::take(&mut state.dirty);
        state.pending_total = 0;
        if state.faults.sync_fails(op) {
            // The device lost the cached writes: they are neither durable nor readable any more.
            state.stats.failed_syncs += 1;
            for addr in dirty {
                state.slots[addr as usize].pending.clear();
            }
            return Err(DiskError::SyncFailed);
        }
        state.stats.syncs += 1;
        for addr in dirty {
            let slot = &mut state.slots[addr as usize];
            if let Some(newest) = slot.pending.pop() {
                slot.durable = newest;
            }
            slot.pending.clear();
        }
        Ok(())
    }

    /// Which blocks differ between the durable image and the newest contents, with how many
    /// pending writes each has (a summary for diagnostics).
    pub fn pending_summary(&self) -> BTreeMap<Addr, usize> {
        let state = self.state.lock();
        state
            .dirty
            .iter()
            .map(|&addr| (addr, state.slots[addr as usize].pending.len()))
            .collect()
    }
}

impl Disk for SimDisk {
    fn size_blocks(&self) -> u64 {
        self.size_blocks
    }

    fn read(&self, addr: Addr) -> Result<Block> {
        let result = self.do_read(addr);
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn write(&self, addr: Addr, block: &Block) -> Result<()> {
        let result = self.do_write(addr, block);
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn sync(&self) -> Result<()> {
        let result = self.do_sync();
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn check_rep(&self) {
        SimDisk::check_rep(self);
    }
}
