//! `ReplicatedDisk`: the running pair — the data path (read, write, sync), failure handling and
//! the metadata updates that keep a stale replica from ever being taken for a current one.

use crate::bitmap::{
    chunks_to_resync, read_bitmap, unread, BitmapLayout, Intent, IntentBitmap,
    CLEAR_AFTER_IDLE_SYNCS,
};
use crate::error::{ReplicatedError, Result};
use crate::member::{MemberBlock, MemberDisk};
use crate::meta::{write_meta, MetaState, ReplicaMeta, Role, RESERVED_BLOCKS};
use crate::syncer::Syncer;
use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::sync::Arc;
use txdisk_disk::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use txdisk_disk::sync::{Mutex, MutexGuard, RwLock};
use txdisk_disk::{Addr, Block, Disk, DiskError};

/// Number of per-address lock stripes: address `a` is guarded by stripe `a % LOCK_STRIPES`.
pub const LOCK_STRIPES: usize = 1024;

/// What the pair currently does with one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplicaStatus {
    /// Current: receives every write, serves reads.
    Active,
    /// Being copied onto by `rebuild`: receives every write, serves no read, is no source.
    Rebuilding,
    /// Failed while the pair ran (fail-stop, a failed write or sync): never touched again.
    Failed,
    /// Absent since open (the pair was opened with one disk).
    Missing,
}

impl ReplicaStatus {
    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> ReplicaStatus {
        match code {
            0 => ReplicaStatus::Active,
            1 => ReplicaStatus::Rebuilding,
            2 => ReplicaStatus::Failed,
            _ => ReplicaStatus::Missing,
        }
    }

    /// Receives writes and syncs.
    pub fn is_written(self) -> bool {
        matches!(self, ReplicaStatus::Active | ReplicaStatus::Rebuilding)
    }
}

/// A snapshot of the pair, for operators and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairStatus {
    /// Identifies the pair; both members carry it.
    pub pair_id: u64,
    /// The event counter of the current replicas.
    pub events: u64,
    /// Whether the metadata on disk says Clean (no write since open or since the last resync).
    pub clean_on_disk: bool,
    /// Data blocks of the pair (its `size_blocks()`).
    pub data_size_blocks: u64,
    /// `[d1, d2]`.
    pub replicas: [ReplicaStatus; 2],
}

impl PairStatus {
    /// True when a member is not active (failed, missing or being rebuilt).
    pub fn is_degraded(&self) -> bool {
        self.replicas
            .iter()
            .any(|status| *status != ReplicaStatus::Active)
    }

    /// Members that serve reads: 2 in a healthy pair.
    pub fn active_count(&self) -> usize {
        self.replicas
            .iter()
            .filter(|status| **status == ReplicaStatus::Active)
            .count()
    }
}

/// One member: its disk (absent when missing) and what the pair does with it.
pub(crate) struct Member<D> {
    pub(crate) disk: RwLock<Option<D>>,
    status: AtomicU8,
    /// Bumped (under the disk's write lock) whenever `rebuild` installs a new disk, so that an
    /// error of the disk it replaced is never blamed on the new one.
    pub(crate) generation: AtomicU64,
}

impl<D> Member<D> {
    pub(crate) fn new(disk: Option<D>, status: ReplicaStatus) -> Member<D> {
        Member {
            disk: RwLock::new(disk),
            status: AtomicU8::new(status.code()),
            generation: AtomicU64::new(0),
        }
    }
}

/// A member's error on the data path, with the generation of the disk that gave it.
pub(crate) struct MemberError {
    pub(crate) generation: u64,
    pub(crate) error: DiskError,
}

/// The metadata state, changed only under its lock: every metadata write and membership change
/// is serialised, and the lock is taken after a stripe lock, never before one.
#[derive(Debug)]
pub(crate) struct PairMeta {
    pub(crate) events: u64,
    /// The newest event both active members are known to hold durably: what every metadata
    /// write records as `peer_events` (see `source.rs`). Frozen while a member runs alone.
    pub(crate) confirmed: u64,
    pub(crate) on_disk: MetaState,
    /// The `seq` of the metadata last written to each member.
    pub(crate) seq: [u64; 2],
    /// Why each member failed, for error messages.
    pub(crate) failure: [Option<String>; 2],
}

/// One `Disk` over two `Disk`s of equal size. See the crate documentation.
pub struct ReplicatedDisk<D: Disk + 'static> {
    pub(crate) members: [Arc<Member<D>>; 2],
    /// Syncs d2 while the caller syncs d1 (`None` if no thread could be started).
    syncer: Option<Syncer>,
    /// The write-intent bitmap: which chunks may differ between the members.
    pub(crate) bitmap: IntentBitmap,
    /// Pair syncs a chunk stays idle through before its bit is cleared.
    clear_after_idle_syncs: AtomicU64,
    stripes: Box<[Mutex<()>]>,
    pub(crate) meta: Mutex<PairMeta>,
    /// Set once the Dirty mark is durable on every active member (reset by `mark_clean`).
    dirty_marked: AtomicBool,
    pub(crate) pair_id: u64,
    pub(crate) data_size_blocks: u64,
}

/// How the pair treats an error of one member.
enum Fault {
    /// The machine crashed: stop, touch nothing.
    Crash,
    /// One block cannot be read; the member is otherwise alive.
    BadBlock,
    /// The member is gone for this run.
    Member,
}

fn classify(error: &DiskError) -> Fault {
    match error {
        DiskError::Crashed => Fault::Crash,
        // A bad sector (EIO included, as md treats it) or a block that failed the member's
        // verification: the block is bad, the member is not.
        error if error.is_bad_block() => Fault::BadBlock,
        _ => Fault::Member,
    }
}

impl<D: Disk + 'static> ReplicatedDisk<D> {
    /// The running pair over `members`, whose bitmap marks `marked` (durable on the members).
    pub(crate) fn assemble(
        members: [Member<D>; 2],
        meta: PairMeta,
        pair_id: u64,
        layout: BitmapLayout,
    ) -> Self {
        let stripes = (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect();
        let [d1, d2] = members;
        let members = [Arc::new(d1), Arc::new(d2)];
        let syncer = Syncer::start(Arc::clone(&members[1]), "txdisk-pair-sync-d2");
        ReplicatedDisk {
            members,
            syncer,
            bitmap: IntentBitmap::new(layout, pair_id),
            clear_after_idle_syncs: AtomicU64::new(CLEAR_AFTER_IDLE_SYNCS),
            stripes,
            meta: Mutex::new(meta),
            // Whatever the metadata says, the first data write of this run (or of a resync)
            // is a new event: a member copied before it is then stale, and a member that
            // runs alone from here records so before it writes.
            dirty_marked: AtomicBool::new(false),
            pair_id,
            data_size_blocks: layout.data_blocks,
        }
    }

    // ---- members ----

    /// What the pair does with member `role` now.
    pub fn replica_status(&self, role: Role) -> ReplicaStatus {
        ReplicaStatus::from_code(self.members[role.index()].status.load(Ordering::Acquire))
    }

    pub(crate) fn set_status(&self, role: Role, status: ReplicaStatus) {
        self.members[role.index()]
            .status
            .store(status.code(), Ordering::Release);
    }

    /// Runs `op` on the member's disk; a missing disk answers `Failed`.
    pub(crate) fn on_member<T>(
        &self,
        role: Role,
        op: impl FnOnce(MemberDisk<'_, D>) -> txdisk_disk::Result<T>,
    ) -> txdisk_disk::Result<T> {
        match &*self.members[role.index()].disk.read() {
            Some(disk) => op(MemberDisk::new(disk)),
            None => Err(DiskError::Failed),
        }
    }

    /// As [`Self::on_member`], tagging an error with the generation of the disk that gave it.
    pub(crate) fn on_member_gen<T>(
        &self,
        role: Role,
        op: impl FnOnce(MemberDisk<'_, D>) -> txdisk_disk::Result<T>,
    ) -> Result<T, MemberError> {
        let member = &self.members[role.index()];
        let guard = member.disk.read();
        let generation = member.generation.load(Ordering::Acquire);
        let result = match &*guard {
            Some(disk) => op(MemberDisk::new(disk)),
            None => Err(DiskError::Failed),
        };
        result.map_err(|error| MemberError { generation, error })
    }

    pub(crate) fn stripe(&self, addr: Addr) -> MutexGuard<'_, ()> {
        self.stripes[(addr % LOCK_STRIPES as u64) as usize].lock()
    }

    pub(crate) fn active_roles(&self) -> Vec<Role> {
        [Role::D1, Role::D2]
            .into_iter()
            .filter(|role| self.replica_status(*role) == ReplicaStatus::Active)
            .collect()
    }

    pub(crate) fn all_failed(&self, meta: &PairMeta) -> ReplicatedError {
        let why = |role: Role| {
            meta.failure[role.index()]
                .clone()
                .unwrap_or_else(|| format!("{:?}", self.replica_status(role)).to_lowercase())
        };
        ReplicatedError::AllReplicasFailed {
            d1: why(Role::D1),
            d2: why(Role::D2),
        }
    }

    /// The status of the pair.
    pub fn status(&self) -> PairStatus {
        let meta = self.meta.lock();
        PairStatus {
            pair_id: self.pair_id,
            events: meta.events,
            clean_on_disk: meta.on_disk == MetaState::Clean,
            data_size_blocks: self.data_size_blocks,
            replicas: [self.replica_status(Role::D1), self.replica_status(Role::D2)],
        }
    }

    /// The pair's id, as both members' metadata records it.
    pub fn pair_id(&self) -> u64 {
        self.pair_id
    }

    // ---- metadata updates ----

    /// The metadata `role` should carry now, with its next sequence number.
    pub(crate) fn next_meta(&self, meta: &PairMeta, role: Role, state: MetaState) -> ReplicaMeta {
        ReplicaMeta {
            pair_id: self.pair_id,
            role,
            state,
            peer_failed: self.replica_status(role.other()) != ReplicaStatus::Active,
            seq: meta.seq[role.index()] + 1,
            events: meta.events,
            data_size_blocks: self.data_size_blocks,
            peer_events: meta.confirmed,
            chunk_blocks: self.bitmap.layout.chunk_blocks as u32,
        }
    }

    /// Writes (and syncs) `role`'s metadata for the pair's current state; a member failure is
    /// handled as in [`Self::fail_locked`].
    pub(crate) fn write_member_meta(
        &self,
        meta: &mut PairMeta,
        role: Role,
        state: MetaState,
    ) -> Result<()> {
        let next = self.next_meta(meta, role, state);
        match self.on_member(role, |disk| write_meta(disk, &next)) {
            Ok(()) => {
                meta.seq[role.index()] = next.seq;
                Ok(())
            }
            Err(DiskError::Crashed) => Err(DiskError::Crashed.into()),
            Err(error) => self.fail_locked(meta, role, &error),
        }
    }

    /// Marks `role` failed. Before any later write can be acknowledged, the survivor's event
    /// counter is bumped and made durable, so that the failed member — which keeps its old
    /// count — can never again be taken for a current replica. `Err` if no active member is left.
    pub(crate) fn fail_replica(&self, role: Role, failed: &MemberError) -> Result<()> {
        let mut meta = self.meta.lock();
        if self.members[role.index()]
            .generation
            .load(Ordering::Acquire)
            != failed.generation
        {
            // The disk that failed has already been replaced: the new one is not to blame.
            return self.any_active(&meta);
        }
        self.fail_locked(&mut meta, role, &failed.error)
    }

    pub(crate) fn fail_locked(
        &self,
        meta: &mut PairMeta,
        role: Role,
        cause: &DiskError,
    ) -> Result<()> {
        let status = self.replica_status(role);
        if !status.is_written() {
            // Another thread got here first; the survivor (if any) is already bumped.
            return self.any_active(meta);
        }
        tracing::warn!(replica = %role, error = %cause, "replica failed; the pair goes on degraded");
        meta.failure[role.index()] = Some(cause.to_string());
        self.set_status(role, ReplicaStatus::Failed);
        let survivor = role.other();
        if self.replica_status(survivor) != ReplicaStatus::Active {
            if self.replica_status(survivor) == ReplicaStatus::Rebuilding {
                // A half-copied replica is no source: losing the source loses the pair.
                meta.failure[survivor.index()] =
                    Some("rebuild incomplete when its source failed".into());
                self.set_status(survivor, ReplicaStatus::Failed);
            }
            return Err(self.all_failed(meta));
        }
        meta.events += 1;
        let state = meta.on_disk;
        self.write_member_meta(meta, survivor, state)
    }

    pub(crate) fn any_active(&self, meta: &PairMeta) -> Result<()> {
        if self.active_roles().is_empty() {
            return Err(self.all_failed(meta));
        }
        Ok(())
    }

    /// Makes the Dirty mark durable on every active member before the first data write after
    /// open (or after a resync marked the pair clean): a crash after any data write then always
    /// finds the pair dirty and resyncs. The mark is an event: an older copy of a member, put
    /// back after it, is stale.
    pub(crate) fn ensure_dirty(&self) -> Result<()> {
        if self.dirty_marked.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut meta = self.meta.lock();
        if self.dirty_marked.load(Ordering::Acquire) {
            return Ok(());
        }
        meta.on_disk = MetaState::Dirty;
        meta.events += 1;
        self.confirm_event(&mut meta, MetaState::Dirty)?;
        self.any_active(&meta)?;
        self.dirty_marked.store(true, Ordering::Release);
        Ok(())
    }

    /// Writes the current event to every active member so that each ends knowing the other
    /// holds it: the first member (its `peer_events` still the old event), then the second
    /// (which knows the first has it), then the first again. Only then may data be written: a
    /// copy of a member older than this event is then below its peer's `peer_events`, so it is
    /// stale, while a member a crash left one event behind in the middle of these writes is not
    /// below it (it missed no data), and is resynced instead of rebuilt.
    fn confirm_event(&self, meta: &mut PairMeta, state: MetaState) -> Result<()> {
        let roles = self.active_roles();
        let Some(&first) = roles.first() else {
            return Err(self.all_failed(meta));
        };
        self.write_member_meta(meta, first, state)?;
        let Some(&second) = roles.get(1) else {
            return Ok(());
        };
        if self.active_roles().len() < 2 {
            return Ok(()); // the first failed; the survivor's bump is written
        }
        meta.confirmed = meta.events;
        self.write_member_meta(meta, second, state)?;
        if self.active_roles().len() == 2 {
            self.write_member_meta(meta, first, state)?;
        }
        Ok(())
    }

    /// After the data of every active member is durable and equal: marks them Clean, so that a
    /// crash before the next write needs no resync. An event, as the Dirty mark is — unless no
    /// data was written since the last mark (nothing for a copy to miss), so that opening and
    /// closing a member alone without writing does not make it look as if it ran alone.
    pub(crate) fn mark_clean(&self) -> Result<()> {
        // Every bit cleared (each chunk's writes made durable by the first sync), and the
        // cleared bitmap durable (the second) before the metadata says Clean.
        self.sync_pair(0)?;
        self.sync_members()?;
        let mut meta = self.meta.lock();
        let wrote = self.dirty_marked.load(Ordering::Acquire);
        if !wrote && meta.on_disk == MetaState::Clean {
            return self.any_active(&meta);
        }
        meta.on_disk = MetaState::Clean;
        if wrote {
            meta.events += 1;
        }
        self.dirty_marked.store(false, Ordering::Release);
        for role in self.active_roles() {
            self.write_member_meta(&mut meta, role, MetaState::Clean)?;
        }
        self.any_active(&meta)
    }

    /// A clean shutdown: syncs both members and marks the pair clean, so that the next open
    /// copies nothing. Dropping the pair without `close` is a crash as far as the disks know.
    pub fn close(self) -> Result<()> {
        let result = self.mark_clean();
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    // ---- the data path ----

    /// The member block of data address `addr`, or `OutOfRange`.
    fn check_data_addr(&self, addr: Addr) -> Result<MemberBlock> {
        if addr >= self.data_size_blocks {
            return Err(DiskError::OutOfRange {
                addr,
                size_blocks: self.data_size_blocks,
            }
            .into());
        }
        Ok(MemberBlock::of_data(addr))
    }

    /// Handles a member's error on the data path: a crash stops everything, anything else fails
    /// the member (bumping the survivor). `Ok` means the pair goes on without it.
    fn absorb(&self, role: Role, failed: MemberError) -> Result<()> {
        match classify(&failed.error) {
            Fault::Crash => Err(failed.error.into()),
            Fault::BadBlock | Fault::Member => self.fail_replica(role, &failed),
        }
    }

    pub(crate) fn write_pair(&self, addr: Addr, block: &Block) -> Result<()> {
        self.check_data_addr(addr)?;
        self.ensure_dirty()?;
        let chunk = self.bitmap.layout.chunk_of(addr);
        let _intent = self.mark_intent(chunk..=chunk)?;
        self.write_marked(addr, block)
    }

    /// Writes runs of consecutive addresses: every chunk of the batch marked with one bitmap
    /// flush at most, then each block as [`Self::write_pair`] writes it. A run past the end
    /// refuses the whole batch before anything is written.
    pub(crate) fn write_pair_runs(&self, runs: &[(Addr, &[&Block])]) -> Result<()> {
        let runs: Vec<&(Addr, &[&Block])> = runs.iter().filter(|(_, b)| !b.is_empty()).collect();
        for (start, blocks) in &runs {
            self.check_data_addr(start.saturating_add(blocks.len() as u64 - 1))?;
        }
        if runs.is_empty() {
            return Ok(());
        }
        self.ensure_dirty()?;
        let layout = self.bitmap.layout;
        let mut intents = Vec::with_capacity(runs.len());
        let mut durable = true;
        for (start, blocks) in &runs {
            let chunks = layout.chunks_of_run(*start, blocks.len() as u64);
            let (intent, known) = Intent::begin(&self.bitmap, chunks);
            durable &= known;
            intents.push(intent);
        }
        if !durable {
            self.flush_bitmap()?;
        }
        for (start, blocks) in &runs {
            self.write_marked_run(*start, blocks)?;
        }
        Ok(())
    }

    /// Writes `block` at `addr` on every member being written, under the address's stripe lock;
    /// the caller holds an intent on its chunk.
    fn write_marked(&self, addr: Addr, block: &Block) -> Result<()> {
        self.write_marked_run(addr, &[block])
    }

    /// Writes a run of consecutive blocks from `start` on every member being written, as one
    /// vectored write per member, under the stripe locks of all its addresses (taken in
    /// ascending stripe order, the one order every multi-stripe lock follows); the caller holds
    /// intents on its chunks. Runs longer than [`LOCK_STRIPES`] go in pieces.
    fn write_marked_run(&self, start: Addr, blocks: &[&Block]) -> Result<()> {
        for (index, piece) in blocks.chunks(LOCK_STRIPES).enumerate() {
            let piece_start = start + (index * LOCK_STRIPES) as u64;
            let mut stripes: Vec<usize> = (0..piece.len() as u64)
                .map(|offset| ((piece_start + offset) % LOCK_STRIPES as u64) as usize)
                .collect();
            stripes.sort_unstable();
            #[cfg(feature = "deliberate-bugs")]
            if crate::bugs::active(crate::bugs::Bug::WriteWithoutAddressLock) {
                stripes.clear();
            }
            let _guards: Vec<MutexGuard<'_, ()>> = stripes
                .iter()
                .map(|stripe| self.stripes[*stripe].lock())
                .collect();
            self.write_locked_run(piece_start, piece)?;
        }
        Ok(())
    }

    /// The member writes of a run, its stripes locked.
    fn write_locked_run(&self, start: Addr, blocks: &[&Block]) -> Result<()> {
        let member_block = MemberBlock::of_data(start);
        let addr = start;
        // Statuses are read under the stripe lock: a rebuild installs its target before it copies
        // this address under the same lock, so a write either reaches the target or precedes the copy.
        let mut written = [None; 2];
        for role in [Role::D1, Role::D2] {
            if !self.replica_status(role).is_written() {
                continue;
            }
            // Data writes never reach the metadata slots.
            assert!(
                member_block.index() >= RESERVED_BLOCKS,
                "replicated: data address {addr} maps to member block {}, expected at least {RESERVED_BLOCKS}",
                member_block.index()
            );
            let member = &self.members[role.index()];
            written[role.index()] = Some(member.generation.load(Ordering::Acquire));
            if let Err(failed) =
                self.on_member_gen(role, |disk| disk.write_run(member_block, blocks))
            {
                self.absorb(role, failed)?;
            }
        }
        // A member becomes Active only through a rebuild, whose copy of this address waits for
        // the stripe lock held here: one this write skipped cannot be Active yet.
        for role in [Role::D1, Role::D2] {
            if written[role.index()].is_none() {
                let status = self.replica_status(role);
                assert_ne!(
                    status,
                    ReplicaStatus::Active,
                    "replicated: write of address {addr} skipped {role}, found Active under the stripe lock"
                );
            }
        }
        if written.contains(&None) || self.active_roles().is_empty() {
            // A member is marked failed before the survivor's bump is durable (the bump may
            // itself fail the survivor). Taking the metadata lock waits for any bump in
            // progress, so a write that skipped a member is acknowledged only after it.
            let meta = self.meta.lock();
            if self.active_roles().is_empty() {
                return Err(self.all_failed(&meta));
            }
        }
        #[cfg(debug_assertions)]
        for offset in 0..blocks.len() as u64 {
            let block = MemberBlock::of_data(start + offset);
            self.check_write_rep(start + offset, block, written);
        }
        Ok(())
    }

    /// Rep invariant of a write: while both members are active, both hold the same value at
    /// `addr` (read back from both). Checked only when both reads come from the very disks the
    /// write went to and both are still active after them: a member that failed or was replaced
    /// meanwhile is the failure path's business, and a read error is the next operation's.
    #[cfg(debug_assertions)]
    fn check_write_rep(&self, addr: Addr, block: MemberBlock, written: [Option<u64>; 2]) {
        let mut values = Vec::with_capacity(2);
        for role in [Role::D1, Role::D2] {
            let member = &self.members[role.index()];
            let guard = member.disk.read();
            let generation = member.generation.load(Ordering::Acquire);
            if written[role.index()] != Some(generation)
                || self.replica_status(role) != ReplicaStatus::Active
            {
                return;
            }
            match guard.as_ref().map(|disk| MemberDisk::new(disk).read(block)) {
                Some(Ok(value)) => values.push(value),
                _ => return,
            }
        }
        if self.active_roles().len() < 2 {
            return;
        }
        assert!(
            values[0] == values[1],
            "replicated: after a write, data block {addr} differs: d1 {:016x}, d2 {:016x} (generations {written:?})",
            values[0].fingerprint(),
            values[1].fingerprint()
        );
    }

    pub(crate) fn read_pair(&self, addr: Addr) -> Result<Block> {
        let block = self.check_data_addr(addr)?;
        let _stripe = self.stripe(addr);
        let mut bad_block_on: Option<(Role, DiskError)> = None;
        for role in [Role::D1, Role::D2] {
            if self.replica_status(role) != ReplicaStatus::Active {
                continue;
            }
            let failed = match self.on_member_gen(role, |disk| disk.read(block)) {
                Ok(value) => {
                    if let Some((bad, _)) = bad_block_on {
                        let generation = self.copy_generation(role, block);
                        self.repair(bad, addr, block, &value, generation)?;
                    }
                    return Ok(value);
                }
                Err(failed) => failed,
            };
            match classify(&failed.error) {
                Fault::Crash => return Err(failed.error.into()),
                Fault::BadBlock => bad_block_on = Some((role, failed.error)),
                Fault::Member => self.fail_replica(role, &failed)?,
            }
        }
        if let Some((_, error)) = bad_block_on {
            // Unreadable on every member still alive: this block is lost, the pair is not. The
            // error names the pair's address, not the member's block.
            let error = match error {
                DiskError::Corrupt { damage, .. } => DiskError::Corrupt {
                    addr,
                    damage: damage.shifted(RESERVED_BLOCKS),
                },
                _ => DiskError::ReadError { addr },
            };
            return Err(error.into());
        }
        Err(self.all_failed(&self.meta.lock()))
    }

    /// The write generation of `role`'s copy of `block`, to carry over to a copy of it
    /// (`None` from a member that keeps none, or that cannot tell).
    pub(crate) fn copy_generation(&self, role: Role, block: MemberBlock) -> Option<u32> {
        self.on_member(role, |disk| disk.generation(block))
            .unwrap_or(None)
    }

    /// Self-healing: writes the good value back where a read hit a bad block (a write remaps a
    /// bad sector), as a copy of the other member's version `generation` of it. Called under
    /// the address's stripe lock.
    pub(crate) fn repair(
        &self,
        role: Role,
        addr: Addr,
        block: MemberBlock,
        good: &Block,
        generation: Option<u32>,
    ) -> Result<()> {
        self.ensure_dirty()?;
        if self.replica_status(role) != ReplicaStatus::Active {
            return Ok(());
        }
        let chunk = self.bitmap.layout.chunk_of(addr);
        let _intent = self.mark_intent(chunk..=chunk)?;
        if self.replica_status(role) != ReplicaStatus::Active {
            return Ok(()); // the bitmap flush failed it
        }
        #[cfg(feature = "deliberate-bugs")]
        let role = if crate::bugs::active(crate::bugs::Bug::RepairWritesWrongMember) {
            role.other()
        } else {
            role
        };
        tracing::info!(replica = %role, addr, "repairing a bad block from the other replica");
        match self.on_member_gen(role, |disk| disk.write_copy(block, good, generation)) {
            Ok(()) => Ok(()),
            Err(failed) => self.absorb(role, failed),
        }
    }

    /// Begins a write into `chunks`: their bits are durable on every member being written when
    /// this returns. Drop the intent when the write has ended.
    pub(crate) fn mark_intent(&self, chunks: RangeInclusive<u64>) -> Result<Intent<'_>> {
        let (intent, durable) = Intent::begin(&self.bitmap, chunks);
        if !durable {
            self.flush_bitmap()?;
        }
        Ok(intent)
    }

    /// Writes every pending bit to every member being written and syncs them; writers that
    /// need bits at once share one flush (the first to take the lock writes them all).
    fn flush_bitmap(&self) -> Result<()> {
        let _flush = self.bitmap.flush.lock();
        let Some(plan) = self.bitmap.plan_flush() else {
            return Ok(()); // another writer's flush covered ours
        };
        self.write_bitmap_blocks(&plan.blocks)?;
        self.sync_members()?;
        self.bitmap.flushed(&plan);
        Ok(())
    }

    /// Writes bitmap blocks to every member being written (a member that fails is failed).
    /// Called under the bitmap's flush lock, with blocks encoded under it.
    pub(crate) fn write_bitmap_blocks(&self, blocks: &[(u64, Block)]) -> Result<()> {
        for role in [Role::D1, Role::D2] {
            if self.replica_status(role).is_written() {
                self.write_bitmap_to(role, blocks)?;
            }
        }
        self.any_active(&self.meta.lock())
    }

    /// The pair's `sync`: every member synced, then the bits of chunks idle since before
    /// `idle_syncs` earlier syncs cleared and written (lazily: the next sync makes them
    /// durable, and a lost clear only costs a later recovery a copy).
    pub(crate) fn sync_pair(&self, idle_syncs: u64) -> Result<()> {
        let epoch = self.bitmap.begin_sync();
        #[cfg(feature = "deliberate-bugs")]
        if crate::bugs::active(crate::bugs::Bug::ClearBeforeSync) {
            let _flush = self.bitmap.flush.lock();
            let cleared = self.bitmap.clear_unsynced();
            self.write_bitmap_blocks(&cleared)?;
        }
        self.sync_members()?;
        let _flush = self.bitmap.flush.lock();
        let cleared = self.bitmap.clear_idle(epoch, idle_syncs);
        if cleared.is_empty() {
            return Ok(());
        }
        self.write_bitmap_blocks(&cleared)
    }

    /// Syncs every member that receives writes, concurrently — d1 on this thread, d2 on its
    /// long-lived syncer — so that the pair's flush costs one flush. A member whose sync fails
    /// is failed (its cache may have lost writes) and the survivor's bump is durable before
    /// this returns `Ok`.
    pub(crate) fn sync_members(&self) -> Result<()> {
        let roles: Vec<Role> = [Role::D1, Role::D2]
            .into_iter()
            .filter(|role| self.replica_status(*role).is_written())
            .collect();
        let results: Vec<(Role, Result<(), MemberError>)> = match (roles.as_slice(), &self.syncer) {
            ([], _) => return Err(self.all_failed(&self.meta.lock())),
            ([Role::D1, Role::D2], Some(syncer)) => {
                let ticket = syncer.request();
                let mine = self.on_member_gen(Role::D1, |disk| disk.sync());
                let theirs = syncer.wait(ticket);
                vec![(Role::D1, mine), (Role::D2, theirs)]
            }
            (roles, _) => roles
                .iter()
                .map(|role| (*role, self.on_member_gen(*role, |disk| disk.sync())))
                .collect(),
        };
        if results.iter().any(|(_, result)| {
            matches!(
                result,
                Err(MemberError {
                    error: DiskError::Crashed,
                    ..
                })
            )
        }) {
            return Err(DiskError::Crashed.into());
        }
        for (role, result) in results {
            if let Err(failed) = result {
                self.fail_replica(role, &failed)?;
            }
        }
        let meta = self.meta.lock();
        self.any_active(&meta)
    }

    /// Reads the bitmaps of the active members of `roles` and starts from their marks (what a
    /// resync after a crash copies: [`chunks_to_resync`]); a member that fails while read is
    /// failed, as on any read. Every bitmap block the pair writes from then on keeps the
    /// marks, so no member ever loses a mark its peer may not hold.
    pub(crate) fn load_bitmap(&self, roles: &[Role]) -> Result<BTreeSet<u64>> {
        let layout = self.bitmap.layout;
        let mut bitmaps = [unread(&layout), unread(&layout)];
        for role in roles {
            if self.replica_status(*role) != ReplicaStatus::Active {
                continue;
            }
            match self.on_member_gen(*role, |disk| read_bitmap(disk, &layout, self.pair_id)) {
                Ok(bitmap) => bitmaps[role.index()] = bitmap,
                Err(MemberError {
                    error: DiskError::Crashed,
                    ..
                }) => return Err(DiskError::Crashed.into()),
                Err(failed) => self.fail_replica(*role, &failed)?,
            }
        }
        let marked = chunks_to_resync(&layout, [&bitmaps[0], &bitmaps[1]]);
        self.bitmap.load(&marked);
        Ok(marked)
    }

    /// Writes every bitmap block as memory has it (after a resync at open: blocks that did not
    /// decode are made good again).
    pub(crate) fn rewrite_bitmap(&self) -> Result<()> {
        let _flush = self.bitmap.flush.lock();
        let blocks = self.bitmap.all_blocks();
        self.write_bitmap_blocks(&blocks)
    }

    /// Syncs one member: d2 through its syncer, so that a failure the syncer saw is never
    /// followed by a direct sync that reports success.
    pub(crate) fn sync_member(&self, role: Role) -> Result<(), MemberError> {
        match (role, &self.syncer) {
            (Role::D2, Some(syncer)) => syncer.wait(syncer.request()),
            _ => self.on_member_gen(role, |disk| disk.sync()),
        }
    }

    /// Writes bitmap blocks to one member (a member that fails is failed). A rebuild target gets
    /// the whole bitmap this way, its source untouched: what a member vouches for is only ever
    /// what both were sent.
    pub(crate) fn write_bitmap_to(&self, role: Role, blocks: &[(u64, Block)]) -> Result<()> {
        let layout = self.bitmap.layout;
        for (index, block) in blocks {
            let target = layout.member_block(*index);
            if let Err(failed) = self.on_member_gen(role, |disk| disk.write(target, block)) {
                return self.absorb(role, failed);
            }
        }
        Ok(())
    }

    /// The chunks the bitmap marks now (what a crash now would have recovery copy, at most).
    pub fn marked_chunks(&self) -> BTreeSet<u64> {
        self.bitmap.marked()
    }

    /// How many pair syncs a chunk must stay idle through (after the one that made its writes
    /// durable) before its bit is cleared: [`CLEAR_AFTER_IDLE_SYNCS`] unless set. 0 clears a
    /// bit at the first sync that covers its writes (tests use it to exercise every update).
    pub fn set_clear_after_idle_syncs(&self, syncs: u64) {
        self.clear_after_idle_syncs.store(syncs, Ordering::Relaxed);
    }

    /// Where the pair's bitmap lives and what its bits cover.
    pub fn bitmap_layout(&self) -> BitmapLayout {
        self.bitmap.layout
    }

    /// Reads data block `addr` of one member directly, without fallback or repair (for
    /// inspection and the crash invariant).
    pub fn read_replica(&self, role: Role, addr: Addr) -> Result<Block> {
        let block = self.check_data_addr(addr)?;
        Ok(self.on_member(role, |disk| disk.read(block))?)
    }

    /// The rep invariant: the members' own first, then the pair's bookkeeping.
    pub fn check_rep(&self) {
        for member in &self.members {
            if let Some(disk) = &*member.disk.read() {
                disk.check_rep();
            }
        }
        let meta = self.meta.lock();
        assert!(
            meta.events >= 1,
            "replicated: event counter {} below 1",
            meta.events
        );
        assert!(
            meta.confirmed <= meta.events,
            "replicated: confirmed event {}, beyond the counter {}",
            meta.confirmed,
            meta.events
        );
        assert_eq!(self.stripes.len(), LOCK_STRIPES, "replicated: stripe count");
        self.bitmap.check_rep();
        assert_eq!(
            self.bitmap.layout.data_blocks, self.data_size_blocks,
            "replicated: the bitmap covers another size"
        );
        if self.dirty_marked.load(Ordering::Acquire) {
            assert_eq!(
                meta.on_disk,
                MetaState::Dirty,
                "replicated: dirty mark set, metadata says {:?}",
                meta.on_disk
            );
        }
        assert_ne!(
            meta.on_disk,
            MetaState::Rebuilding,
            "replicated: the pair state is never Rebuilding"
        );
        for role in [Role::D1, Role::D2] {
            let status = self.replica_status(role);
            let has_disk = self.members[role.index()].disk.read().is_some();
            if status.is_written() {
                assert!(has_disk, "replicated: {role} is {status:?} without a disk");
            }
            // A member failed with its disk still attached failed on an error, which is kept.
            if status == ReplicaStatus::Failed && has_disk {
                assert!(
                    meta.failure[role.index()].is_some(),
                    "replicated: {role} failed without a recorded cause"
                );
            }
        }
        let rebuilding = [Role::D1, Role::D2]
            .into_iter()
            .filter(|r| self.replica_status(*r) == ReplicaStatus::Rebuilding)
            .count();
        assert!(
            rebuilding <= 1,
            "replicated: {rebuilding} members rebuilding, expected at most 1"
        );
    }
}

impl<D: Disk + 'static> Disk for ReplicatedDisk<D> {
    fn size_blocks(&self) -> u64 {
        self.data_size_blocks
    }

    fn read(&self, addr: Addr) -> txdisk_disk::Result<Block> {
        let result = self.read_pair(addr).map_err(DiskError::from);
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn write(&self, addr: Addr, block: &Block) -> txdisk_disk::Result<()> {
        let result = self.write_pair(addr, block).map_err(DiskError::from);
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn write_run(&self, start: Addr, blocks: &[&Block]) -> txdisk_disk::Result<()> {
        self.write_runs(&[(start, blocks)])
    }

    fn write_runs(&self, runs: &[(Addr, &[&Block])]) -> txdisk_disk::Result<()> {
        let result = self.write_pair_runs(runs).map_err(DiskError::from);
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn sync(&self) -> txdisk_disk::Result<()> {
        let idle_syncs = self.clear_after_idle_syncs.load(Ordering::Relaxed);
        let result = self.sync_pair(idle_syncs).map_err(DiskError::from);
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn check_rep(&self) {
        ReplicatedDisk::check_rep(self);
    }
}
