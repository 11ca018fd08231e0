//! `SimDisk`: FSCQ's asynchronous disk, in memory, with crashes and faults on a schedule.
//!
//! Every block has a durable value and the list of writes since the last `sync` (its *value
//! set*). `read` returns the newest, `sync` makes the newest durable. Every call is numbered
//! from 0; a crash scheduled at operation k makes call k and every later call return
//! [`DiskError::Crashed`] and leaves the value sets frozen, so that the states a crash may leave
//! can be enumerated ([`SimDisk::crash_states`]) or sampled ([`SimDisk::random_crash_state`]).

use crate::block::{Addr, Block, SECTORS_PER_BLOCK, SECTOR_SIZE};
use crate::error::{DiskError, Result};
use crate::rng::SplitMix64;
use crate::Disk;
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The most pending writes one block keeps. Past it the oldest pending write is forgotten, so
/// the model then allows a crash to keep only one of the newest `MAX_PENDING_PER_BLOCK` writes
/// (a real disk cache is bounded too). Layers above sync long before this.
pub const MAX_PENDING_PER_BLOCK: usize = 4096;

/// What kind of call an operation number was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    Read,
    Write,
    Sync,
}

/// Faults scheduled on a `SimDisk`, by operation number (the number of the call that is hit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The machine crashes at this operation: it and every later call return `Crashed`.
    pub crash_at_op: Option<u64>,
    /// The device fails for good at this operation: it and every later call return `Failed`.
    pub fail_stop_at_op: Option<u64>,
    /// The `sync` with this operation number fails; the writes since the last good sync are lost.
    pub fail_sync_at_op: Option<u64>,
    /// The `write` with this operation number lands at the given address instead of its own.
    pub misdirect_write_at_op: Option<(u64, Addr)>,
    /// Blocks whose reads fail with `ReadError` until they are written again (a bad sector
    /// remapped on write).
    pub read_errors: BTreeSet<Addr>,
}

/// Counters of what reached the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub reads: u64,
    pub writes: u64,
    pub syncs: u64,
    pub failed_syncs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Running,
    Crashed { at_op: u64 },
    Failed { at_op: u64 },
}

#[derive(Clone, Debug)]
struct Slot {
    durable: Arc<Block>,
    pending: Vec<Arc<Block>>,
}

impl Slot {
    fn newest(&self) -> &Arc<Block> {
        self.pending.last().unwrap_or(&self.durable)
    }

    /// {durable} ∪ pending, each distinct value once, in write order.
    fn distinct_values(&self) -> Vec<Arc<Block>> {
        let mut values: Vec<Arc<Block>> = Vec::with_capacity(1 + self.pending.len());
        for value in std::iter::once(&self.durable).chain(self.pending.iter()) {
            if !values.iter().any(|seen| seen == value) {
                values.push(Arc::clone(value));
            }
        }
        values
    }
}

#[derive(Debug)]
struct State {
    slots: Vec<Slot>,
    /// Addresses whose pending list is non-empty; keeps sync and enumeration O(dirty).
    dirty: BTreeSet<Addr>,
    pending_total: usize,
    ops: u64,
    status: Status,
    faults: FaultPlan,
    trace: Vec<OpKind>,
    stats: SimStats,
    #[cfg(debug_assertions)]
    seen: RepSeen,
}

/// What `check_rep` saw at its previous call (debug builds only), so that it can check the
/// history the rep invariant speaks of: the operation counter never goes back, and a disk that
/// stopped (crashed or failed) never changes again.
#[cfg(debug_assertions)]
#[derive(Clone, Copy, Debug, Default)]
struct RepSeen {
    ops: u64,
    /// Taken at the first check after the disk stopped: status, counters, pending writes and
    /// dirty blocks, none of which may change afterwards.
    stopped: Option<(Status, SimStats, usize, usize)>,
}

/// The asynchronous disk model with crash and fault injection. See the module documentation.
#[derive(Debug)]
pub struct SimDisk {
    state: Mutex<State>,
    size_blocks: u64,
}

/// A whole-disk image: one value per block. Cheap to clone (blocks are shared).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DiskImage {
    blocks: Vec<Arc<Block>>,
}

impl DiskImage {
    /// An image of `size_blocks` zero blocks.
    pub fn zeroed(size_blocks: u64) -> DiskImage {
        let zero = Arc::new(Block::zeroed());
        DiskImage {
            blocks: vec![zero; size_blocks as usize],
        }
    }

    pub fn size_blocks(&self) -> u64 {
        self.blocks.len() as u64
    }

    /// The block at `addr`; `None` past the end.
    pub fn block(&self, addr: Addr) -> Option<&Block> {
        self.blocks.get(usize::try_from(addr).ok()?).map(|b| &**b)
    }

    /// Replaces the block at `addr` (a test or fuzzer building a damaged image).
    pub fn set_block(&mut self, addr: Addr, block: Block) -> Result<()> {
        let size_blocks = self.size_blocks();
        let slot = usize::try_from(addr)
            .ok()
            .and_then(|index| self.blocks.get_mut(index))
            .ok_or(DiskError::OutOfRange { addr, size_blocks })?;
        *slot = Arc::new(block);
        Ok(())
    }

    /// Addresses at which the two images differ (both must have the same size).
    pub fn diff(&self, other: &DiskImage) -> Vec<Addr> {
        assert_eq!(
            self.size_blocks(),
            other.size_blocks(),
            "disk: diff of images of different sizes"
        );
        let pairs = self.blocks.iter().zip(other.blocks.iter());
        pairs
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(addr, _)| addr as Addr)
            .collect()
    }
}

/// Returned when a crash-state enumeration would exceed the caller's cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{count} crash states exceed the cap of {cap}")]
pub struct TooManyStates {
    pub count: u128,
    pub cap: u128,
}

/// One independent choice of a crash: a block (or, torn, one sector of it) and its candidates.
#[derive(Clone, Debug)]
struct ChoiceUnit {
    addr: Addr,
    /// `Some(s)`: only sector `s` of the block is chosen by this unit (torn mode).
    sector: Option<usize>,
    candidates: Vec<Arc<Block>>,
}

/// Every crash state of a `SimDisk`, each exactly once, as an iterator of [`DiskImage`]s.
///
/// The count is known up front ([`CrashStates::total`]): the product, over blocks (or sectors in
/// torn mode), of the number of distinct values a crash may leave there. It saturates at
/// `u128::MAX`.
#[derive(Clone, Debug)]
pub struct CrashStates {
    base: DiskImage,
    units: Vec<ChoiceUnit>,
    /// Mixed-radix counter: the candidate each unit takes in the next state; `None` when done.
    next: Option<Vec<usize>>,
    total: u128,
    produced: u128,
}

impl CrashStates {
    fn new(base: DiskImage, units: Vec<ChoiceUnit>) -> CrashStates {
        let total = units.iter().fold(1u128, |acc, unit| {
            acc.saturating_mul(unit.candidates.len() as u128)
        });
        let next = Some(vec![0; units.len()]);
        CrashStates {
            base,
            units,
            next,
            total,
            produced: 0,
        }
    }

    /// How many states the enumeration yields in all (saturating at `u128::MAX`).
    pub fn total(&self) -> u128 {
        self.total
    }

    /// How many states it has yielded so far.
    pub fn produced(&self) -> u128 {
        self.produced
    }

    fn build(&self, choice: &[usize]) -> DiskImage {
        let mut image = self.base.clone();
        for (unit, &pick) in self.units.iter().zip(choice) {
            let chosen = &unit.candidates[pick];
            let slot = &mut image.blocks[unit.addr as usize];
            match unit.sector {
                None => *slot = Arc::clone(chosen),
                Some(sector) => {
                    let range = sector * SECTOR_SIZE..(sector + 1) * SECTOR_SIZE;
                    Arc::make_mut(slot).as_bytes_mut()[range.clone()]
                        .copy_from_slice(&chosen.as_bytes()[range]);
                }
            }
        }
        image
    }

    fn advance(&mut self) {
        let Some(counter) = self.next.as_mut() else {
            return;
        };
        for (index, unit) in self.units.iter().enumerate() {
            counter[index] += 1;
            if counter[index] < unit.candidates.len() {
                return;
            }
            counter[index] = 0;
        }
        self.next = None;
    }
}

impl Iterator for CrashStates {
    type Item = DiskImage;

    fn next(&mut self) -> Option<DiskImage> {
        let choice = self.next.as_ref()?;
        let image = self.build(choice);
        self.produced += 1;
        self.advance();
        if self.next.is_none() && self.total != u128::MAX {
            assert_eq!(
                self.produced, self.total,
                "disk: enumeration yielded a wrong number of crash states"
            );
        }
        Some(image)
    }
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

    // ---- fault scheduling ----

    /// Crash at operation `op` (0-based): that call and every later one return `Crashed`.
    pub fn schedule_crash(&self, op: u64) {
        self.state.lock().faults.crash_at_op = Some(op);
    }

    /// Crash now: every later call returns `Crashed`.
    pub fn crash_now(&self) {
        let mut state = self.state.lock();
        if state.status == Status::Running {
            state.status = Status::Crashed { at_op: state.ops };
        }
    }

    /// Fail for good at operation `op`: that call and every later one return `Failed`.
    pub fn schedule_fail_stop(&self, op: u64) {
        self.state.lock().faults.fail_stop_at_op = Some(op);
    }

    /// Fail for good now.
    pub fn fail_now(&self) {
        let mut state = self.state.lock();
        if state.status == Status::Running {
            state.status = Status::Failed { at_op: state.ops };
        }
    }

    /// The `sync` numbered `op` fails and loses the writes since the last good sync.
    pub fn schedule_sync_failure(&self, op: u64) {
        self.state.lock().faults.fail_sync_at_op = Some(op);
    }

    /// The `write` numbered `op` lands at `to` instead of its own address.
    pub fn schedule_misdirected_write(&self, op: u64, to: Addr) {
        assert!(
            to < self.size_blocks,
            "disk: misdirect target {to} out of range"
        );
        self.state.lock().faults.misdirect_write_at_op = Some((op, to));
    }

    /// Reads of `addr` fail with `ReadError` until it is written again.
    pub fn inject_read_error(&self, addr: Addr) {
        self.state.lock().faults.read_errors.insert(addr);
    }

    /// Installs a whole fault plan at once (replacing the current one).
    pub fn set_faults(&self, faults: FaultPlan) {
        // Checked here, as in `schedule_misdirected_write`: unchecked, the bad target would only
        // surface later as an index panic inside `write`, far from the plan that caused it.
        if let Some((op, to)) = faults.misdirect_write_at_op {
            assert!(
                to < self.size_blocks,
                "disk: misdirect target {to} (op {op}) out of range"
            );
        }
        self.state.lock().faults = faults;
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

    pub fn stats(&self) -> SimStats {
        self.state.lock().stats
    }

    pub fn is_crashed(&self) -> bool {
        matches!(self.state.lock().status, Status::Crashed { .. })
    }

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

    // ---- crash states ----

    fn choice_units(state: &State, torn: bool) -> Vec<ChoiceUnit> {
        let mut units = Vec::new();
        for &addr in &state.dirty {
            let values = state.slots[addr as usize].distinct_values();
            if !torn {
                if values.len() > 1 {
                    units.push(ChoiceUnit {
                        addr,
                        sector: None,
                        candidates: values,
                    });
                }
                continue;
            }
            for sector in 0..SECTORS_PER_BLOCK {
                let mut candidates: Vec<Arc<Block>> = Vec::new();
                for value in &values {
                    if !candidates
                        .iter()
                        .any(|c| c.sector(sector) == value.sector(sector))
                    {
                        candidates.push(Arc::clone(value));
                    }
                }
                if candidates.len() > 1 {
                    units.push(ChoiceUnit {
                        addr,
                        sector: Some(sector),
                        candidates,
                    });
                }
            }
        }
        units
    }

    /// Every state a crash now may leave, each once. `torn` tears pending writes at 512-byte
    /// sector granularity. Works on a crashed disk (its frozen value sets) or a running one.
    pub fn crash_states(&self, torn: bool) -> CrashStates {
        // The base image and the value sets must come from one locked view: a `sync` between
        // them would leave a block that is no longer dirty at its old durable value.
        let state = self.state.lock();
        let base = durable_of(&state);
        CrashStates::new(base, SimDisk::choice_units(&state, torn))
    }

    /// As [`SimDisk::crash_states`], refusing when there are more than `cap` states.
    pub fn crash_states_capped(&self, torn: bool, cap: u128) -> Result<CrashStates, TooManyStates> {
        let states = self.crash_states(torn);
        if states.total() > cap {
            return Err(TooManyStates {
                count: states.total(),
                cap,
            });
        }
        Ok(states)
    }

    /// The number of crash states, without enumerating them.
    pub fn crash_state_count(&self, torn: bool) -> u128 {
        self.crash_states(torn).total()
    }

    /// One crash state, each block (or sector, if `torn`) chosen uniformly by `rng`.
    pub fn random_crash_state(&self, rng: &mut SplitMix64, torn: bool) -> DiskImage {
        let states = self.crash_states(torn);
        let choice: Vec<usize> = states
            .units
            .iter()
            .map(|unit| rng.below(unit.candidates.len() as u64) as usize)
            .collect();
        states.build(&choice)
    }

    /// The `index`-th state of the enumeration order of [`SimDisk::crash_states`].
    pub fn nth_crash_state(&self, torn: bool, mut index: u128) -> Option<DiskImage> {
        let states = self.crash_states(torn);
        if index >= states.total() {
            return None;
        }
        let mut choice = Vec::with_capacity(states.units.len());
        for unit in &states.units {
            let radix = unit.candidates.len() as u128;
            choice.push((index % radix) as usize);
            index /= radix;
        }
        Some(states.build(&choice))
    }

    // ---- invariant ----

    /// The rep invariant (see the crate documentation). Panics, naming the block, when broken.
    pub fn check_rep_sim(&self) {
        #[cfg_attr(not(debug_assertions), allow(unused_mut))]
        let mut state = self.state.lock();
        assert_eq!(
            state.slots.len() as u64,
            self.size_blocks,
            "disk: slot count != size_blocks"
        );
        let mut pending_total = 0usize;
        for &addr in &state.dirty {
            let slot = state
                .slots
                .get(addr as usize)
                .unwrap_or_else(|| panic!("disk: dirty address {addr} out of range"));
            assert!(
                !slot.pending.is_empty(),
                "disk: block {addr} marked dirty with no pending write"
            );
            assert!(
                slot.pending.len() <= MAX_PENDING_PER_BLOCK,
                "disk: block {addr} has {} pending writes, max {MAX_PENDING_PER_BLOCK}",
                slot.pending.len()
            );
            pending_total += slot.pending.len();
        }
        assert_eq!(
            pending_total, state.pending_total,
            "disk: pending-write count out of step"
        );
        assert_eq!(
            state.trace.len() as u64,
            state.ops,
            "disk: trace length != operation count"
        );
        match state.status {
            Status::Running => {}
            Status::Crashed { at_op } | Status::Failed { at_op } => {
                assert!(
                    at_op <= state.ops,
                    "disk: stopped at op {at_op} beyond ops {}",
                    state.ops
                )
            }
        }
        #[cfg(feature = "expensive-checks")]
        for (addr, slot) in state.slots.iter().enumerate() {
            let addr = addr as Addr;
            assert_eq!(
                !slot.pending.is_empty(),
                state.dirty.contains(&addr),
                "disk: dirty set wrong at block {addr}"
            );
        }
        #[cfg(debug_assertions)]
        SimDisk::check_history(&mut state);
    }

    /// The part of the rep invariant that spans calls (see [`RepSeen`]).
    #[cfg(debug_assertions)]
    fn check_history(state: &mut State) {
        let (before, now) = (state.seen.ops, state.ops);
        assert!(
            now >= before,
            "disk: operation counter went back from {before} to {now}"
        );
        state.seen.ops = now;
        if state.status == Status::Running {
            assert!(
                state.seen.stopped.is_none(),
                "disk: a stopped disk is running again"
            );
            return;
        }
        let current = (
            state.status,
            state.stats,
            state.pending_total,
            state.dirty.len(),
        );
        let at_stop = *state.seen.stopped.get_or_insert(current);
        assert_eq!(
            at_stop, current,
            "disk: a stopped disk changed (status, stats, pending, dirty)"
        );
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
        if state.faults.crash_at_op.is_some_and(|at| at <= op) {
            state.status = Status::Crashed { at_op: op };
            return Err(DiskError::Crashed);
        }
        if state.faults.fail_stop_at_op.is_some_and(|at| at <= op) {
            state.status = Status::Failed { at_op: op };
            return Err(DiskError::Failed);
        }
        state.ops += 1;
        state.trace.push(kind);
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
        let target = match state.faults.misdirect_write_at_op {
            Some((at, to)) if at == op => to,
            _ => addr,
        };
        state.faults.read_errors.remove(&target);
        let slot = &mut state.slots[target as usize];
        slot.pending.push(Arc::new(block.clone()));
        let dropped = if slot.pending.len() > MAX_PENDING_PER_BLOCK {
            slot.pending.remove(0);
            1
        } else {
            0
        };
        state.pending_total = state.pending_total + 1 - dropped;
        state.dirty.insert(target);
        Ok(())
    }

    fn do_sync(&self) -> Result<()> {
        let mut state = self.state.lock();
        let op = SimDisk::begin_op(&mut state, OpKind::Sync)?;
        let dirty = std::mem::take(&mut state.dirty);
        state.pending_total = 0;
        if state.faults.fail_sync_at_op == Some(op) {
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

/// The durable value of every block, read under the caller's lock.
fn durable_of(state: &State) -> DiskImage {
    DiskImage {
        blocks: state.slots.iter().map(|s| Arc::clone(&s.durable)).collect(),
    }
}

impl Disk for SimDisk {
    fn size_blocks(&self) -> u64 {
        self.size_blocks
    }

    fn read(&self, addr: Addr) -> Result<Block> {
        let result = self.do_read(addr);
        #[cfg(debug_assertions)]
        self.check_rep_sim();
        result
    }

    fn write(&self, addr: Addr, block: &Block) -> Result<()> {
        let result = self.do_write(addr, block);
        #[cfg(debug_assertions)]
        self.check_rep_sim();
        result
    }

    fn sync(&self) -> Result<()> {
        let result = self.do_sync();
        #[cfg(debug_assertions)]
        self.check_rep_sim();
        result
    }

    fn check_rep(&self) {
        self.check_rep_sim();
    }
}
