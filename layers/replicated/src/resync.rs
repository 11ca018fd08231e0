//! Making the replicas equal again: `recover` (resync d1 → d2 after a crash) and `rebuild`
//! (copy the current replica onto a replacement). Both run online, one address at a time under
//! that address's stripe lock, so they never race with a write to the same address.

use crate::bitmap::Intent;
use crate::error::{ReplicatedError, Result};
use crate::member::{MemberBlock, MemberDisk};
use crate::meta::{
    read_meta, write_both_slots, Found, MetaState, ReplicaMeta, Role, RESERVED_BLOCKS,
};
use crate::pair::{MemberError, ReplicaStatus, ReplicatedDisk};
use crate::versions::newer_copy;
use std::collections::BTreeSet;
use txdisk_disk::sync::atomic::Ordering;
use txdisk_disk::{Addr, Block, Disk, DiskError};

/// How often (in blocks) a copy reports progress.
pub const PROGRESS_INTERVAL_BLOCKS: u64 = 4096;

/// Which pass over the pair is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// After a crash: d1 → d2 where they differ.
    Resync,
    /// Onto a replacement (or a stale replica): the current replica → it.
    Rebuild,
    /// Every copy verified, the good one written over a bad one ([`ReplicatedDisk::scrub`]).
    Scrub,
}

/// Progress of a copy, reported every [`PROGRESS_INTERVAL_BLOCKS`] and at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Which copy.
    pub phase: Phase,
    /// Data blocks examined so far.
    pub done_blocks: u64,
    /// Data blocks the copy examines in all.
    pub total_blocks: u64,
}

/// What a copy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Data blocks compared.
    pub scanned_blocks: u64,
    /// Data blocks written to the target because they differed.
    pub copied_blocks: u64,
}

enum Step {
    Same,
    Copied,
    /// The source or the target left the pair: stop copying.
    Stop,
}

impl<D: Disk + 'static> ReplicatedDisk<D> {
    /// Makes the replicas equal: compares d1 and d2 at every address and copies d1's value over
    /// d2's where they differ (both being active, both are current, and d1 is the preferred
    /// source) — unless the members keep write generations and d2's copy is the newer, which
    /// is then copied over d1's ([`newer_copy`]). A bad block on d1 is repaired from d2. Safe to run while the pair is in use, and
    /// to interrupt by a crash and run again. If d1 fails during the copy, d2 — every block of
    /// which holds either its own value or d1's — stands alone; if d2 fails, d1 does.
    pub fn recover(&self, progress: &mut dyn FnMut(Progress)) -> Result<CopyReport> {
        self.resync_from(Role::D1, None, progress)
    }

    /// As [`Self::recover`], copying from `source` (the member `open` chose), over the chunks
    /// `only` (after a crash: those the bitmaps mark) or every address.
    pub(crate) fn resync_from(
        &self,
        source: Role,
        only: Option<&BTreeSet<u64>>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<CopyReport> {
        let both = self.replica_status(Role::D1) == ReplicaStatus::Active
            && self.replica_status(Role::D2) == ReplicaStatus::Active;
        if !both {
            return Ok(CopyReport::default());
        }
        self.ensure_dirty()?;
        let report = self.copy_all(source, source.other(), Phase::Resync, only, progress)?;
        self.sync_members()?;
        #[cfg(debug_assertions)]
        self.check_rep();
        Ok(report)
    }

    /// Replaces the failed or missing replica by `new_disk` and copies the current replica onto
    /// it, while the pair stays in use. Until the copy is durable on `new_disk`, its metadata
    /// says Rebuilding, so an interrupted rebuild never leaves a replica that could be taken for
    /// a current one. Whatever `new_disk` held is overwritten.
    pub fn rebuild(&self, new_disk: D, progress: &mut dyn FnMut(Progress)) -> Result<CopyReport> {
        let target = self.install(new_disk)?;
        let result = self.rebuild_member(target, progress);
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn install(&self, new_disk: D) -> Result<Role> {
        let mut meta = self.meta.lock();
        let target = [Role::D1, Role::D2]
            .into_iter()
            .find(|role| !self.replica_status(*role).is_written())
            .ok_or(ReplicatedError::NotDegraded)?;
        if self.replica_status(target.other()) != ReplicaStatus::Active {
            return Err(self.all_failed(&meta));
        }
        let needed_blocks = self.bitmap.layout.member_blocks();
        if new_disk.size_blocks() < needed_blocks {
            return Err(ReplicatedError::TooSmall {
                replica: target,
                size_blocks: new_disk.size_blocks(),
                needed_blocks,
            });
        }
        // The current member itself (the same file opened twice) must never be overwritten.
        if let Ok(Found::Meta(found)) = read_meta(MemberDisk::new(&new_disk), target) {
            if found.pair_id == self.pair_id
                && found.role != target
                && found.state != MetaState::Rebuilding
            {
                return Err(ReplicatedError::WrongRole {
                    replica: target,
                    found: found.role,
                    pair_id: found.pair_id,
                });
            }
        }
        let member = &self.members[target.index()];
        let mut slot = member.disk.write();
        *slot = Some(new_disk);
        member.generation.fetch_add(1, Ordering::AcqRel);
        drop(slot);
        // Out of the pair until its Rebuilding marker is durable.
        meta.failure[target.index()] =
            Some("replacement installed, rebuild not yet started".into());
        self.set_status(target, ReplicaStatus::Failed);
        Ok(target)
    }

    /// Rebuilds `target`, whose disk is in place (status Failed or Missing), from the other.
    pub(crate) fn rebuild_member(
        &self,
        target: Role,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<CopyReport> {
        self.start_rebuild(target)?;
        // The target's bitmap region holds whatever the disk held: it gets the pair's bitmap
        // now (every later flush reaches it too), durable with the copy.
        {
            let _flush = self.bitmap.flush.lock();
            let blocks = self.bitmap.all_blocks();
            self.write_bitmap_to(target, &blocks)?;
        }
        let report = match self.copy_all(target.other(), target, Phase::Rebuild, None, progress) {
            Ok(report) => report,
            Err(error) => {
                self.abandon_rebuild(target, &error);
                return Err(error);
            }
        };
        if report.scanned_blocks != self.data_size_blocks {
            let error = ReplicatedError::RebuildAborted {
                replica: target,
                reason: "a member left the pair during the copy".into(),
            };
            self.abandon_rebuild(target, &error);
            return Err(error);
        }
        // The copy must be durable on the target before its metadata may call it current.
        if self.replica_status(target) == ReplicaStatus::Rebuilding {
            if let Err(failed) = self.sync_member(target) {
                if matches!(failed.error, DiskError::Crashed) {
                    return Err(failed.error.into());
                }
                self.fail_replica(target, &failed)?;
            }
        }
        self.finish_rebuild(target)?;
        Ok(report)
    }

    /// Writes Rebuilding (events 0) to both slots of the target, then lets it receive writes.
    fn start_rebuild(&self, target: Role) -> Result<()> {
        let mut meta = self.meta.lock();
        if self.replica_status(target.other()) != ReplicaStatus::Active {
            return Err(self.all_failed(&meta));
        }
        // Start above whatever sequence the disk carries, so that a crash between the two slot
        // writes leaves Rebuilding as the newest slot, never the old contents.
        let found_seq = match self.on_member(target, |disk| Ok(read_meta(disk, target))) {
            Ok(Ok(Found::Meta(old))) => old.seq,
            _ => 0,
        };
        let marker = ReplicaMeta {
            pair_id: self.pair_id,
            role: target,
            state: MetaState::Rebuilding,
            peer_failed: false,
            seq: found_seq.max(meta.seq[target.index()]).saturating_add(1),
            events: 0,
            data_size_blocks: self.data_size_blocks,
            peer_events: 0,
            chunk_blocks: self.bitmap.layout.chunk_blocks as u32,
        };
        match self.on_member(target, |disk| write_both_slots(disk, &marker)) {
            Ok(written) => meta.seq[target.index()] = written.seq,
            Err(DiskError::Crashed) => return Err(DiskError::Crashed.into()),
            Err(error) => {
                meta.failure[target.index()] = Some(error.to_string());
                return Err(ReplicatedError::RebuildAborted {
                    replica: target,
                    reason: error.to_string(),
                });
            }
        }
        self.set_status(target, ReplicaStatus::Rebuilding);
        Ok(())
    }

    fn abandon_rebuild(&self, target: Role, error: &ReplicatedError) {
        let mut meta = self.meta.lock();
        if self.replica_status(target) == ReplicaStatus::Rebuilding {
            // No bump needed: the target's metadata says Rebuilding and is never a source.
            meta.failure[target.index()] = Some(error.to_string());
            self.set_status(target, ReplicaStatus::Failed);
        }
    }

    /// The target's copy is durable: a new event, first on the source (a crash here leaves
    /// the target Rebuilding: rebuilt again), then the target current (it knows the source has
    /// the event), then the source again with its peer back (a crash between the two leaves
    /// both current at equal events, the source still saying it ran alone: not a split brain,
    /// since the target does not).
    fn finish_rebuild(&self, target: Role) -> Result<()> {
        let mut meta = self.meta.lock();
        let aborted = |meta: &crate::pair::PairMeta| ReplicatedError::RebuildAborted {
            replica: target,
            reason: meta.failure[target.index()]
                .clone()
                .unwrap_or_else(|| "the target left the pair".into()),
        };
        if self.replica_status(target) != ReplicaStatus::Rebuilding {
            return Err(aborted(&meta));
        }
        let state = meta.on_disk;
        meta.events += 1;
        self.write_member_meta(&mut meta, target.other(), state)?;
        meta.confirmed = meta.events;
        self.write_member_meta(&mut meta, target, state)?;
        if self.replica_status(target) != ReplicaStatus::Rebuilding {
            return Err(aborted(&meta));
        }
        self.set_status(target, ReplicaStatus::Active);
        self.write_member_meta(&mut meta, target.other(), state)?;
        tracing::info!(replica = %target, "rebuild complete");
        Ok(())
    }

    /// Copies `source` → `target` where they differ, address by address, over the chunks
    /// `only`, or every address.
    pub(crate) fn copy_all(
        &self,
        source: Role,
        target: Role,
        phase: Phase,
        only: Option<&BTreeSet<u64>>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<CopyReport> {
        assert_ne!(
            source, target,
            "replicated: {phase:?} from {source} onto itself"
        );
        // A rebuild target becomes Active only when its copy is complete and durable.
        if phase == Phase::Rebuild {
            let status = self.replica_status(target);
            assert_ne!(
                status,
                ReplicaStatus::Active,
                "replicated: rebuild onto {target}, found it Active before the copy"
            );
        }
        let layout = self.bitmap.layout;
        let addrs: Box<dyn Iterator<Item = Addr>> = match only {
            Some(chunks) => Box::new(
                chunks
                    .iter()
                    .flat_map(move |chunk| layout.addrs_of_chunk(*chunk)),
            ),
            None => Box::new(0..self.data_size_blocks),
        };
        let total_blocks = match only {
            Some(chunks) => chunks
                .iter()
                .map(|chunk| layout.addrs_of_chunk(*chunk).count() as u64)
                .sum(),
            None => self.data_size_blocks,
        };
        let mut report = CopyReport::default();
        for addr in addrs {
            let step = {
                let _stripe = self.stripe(addr);
                self.copy_one(source, target, addr)?
            };
            match step {
                Step::Same => {}
                Step::Copied => report.copied_blocks += 1,
                Step::Stop => break,
            }
            report.scanned_blocks += 1;
            if report.scanned_blocks % PROGRESS_INTERVAL_BLOCKS == 0 {
                progress(Progress {
                    phase,
                    done_blocks: report.scanned_blocks,
                    total_blocks,
                });
            }
        }
        progress(Progress {
            phase,
            done_blocks: report.scanned_blocks,
            total_blocks,
        });
        Ok(report)
    }

    /// One address of a copy; called under its stripe lock.
    fn copy_one(&self, source: Role, target: Role, addr: Addr) -> Result<Step> {
        assert_ne!(
            source, target,
            "replicated: copy of address {addr} from {source} onto itself"
        );
        assert!(
            addr < self.data_size_blocks,
            "replicated: copy of address {addr}, expected below {}",
            self.data_size_blocks
        );
        // Either member may have failed since the copy began (another thread's I/O): that
        // stops the copy, it is not a broken invariant.
        if self.replica_status(source) != ReplicaStatus::Active {
            return Ok(Step::Stop);
        }
        if !self.replica_status(target).is_written() {
            return Ok(Step::Stop);
        }
        let block = MemberBlock::of_data(addr);
        let value = match self.on_member_gen(source, |disk| disk.read(block)) {
            Ok(value) => value,
            Err(MemberError {
                error: DiskError::Crashed,
                ..
            }) => return Err(DiskError::Crashed.into()),
            Err(MemberError { error, .. }) if error.is_bad_block() => {
                return self.source_bad_block(source, target, addr, error)
            }
            Err(failed) => {
                self.fail_replica(source, &failed)?;
                return Ok(Step::Stop);
            }
        };
        match self.on_member_gen(target, |disk| disk.read(block)) {
            Ok(current) if current == value => return Ok(Step::Same),
            // Both current, both verify, and the target's copy is the newer by the members'
            // write generations: it is the one kept (what `fsck` calls right, and the scrub
            // keeps). Either value was written there, so either is a correct outcome of a crash.
            Ok(current)
                if self.replica_status(target) == ReplicaStatus::Active
                    && self.newer_member(block) == Some(target) =>
            {
                return self.copy_back(source, target, block, &current);
            }
            Err(MemberError {
                error: DiskError::Crashed,
                ..
            }) => return Err(DiskError::Crashed.into()),
            // A differing value, a bad block or a failed target: the write below decides.
            _ => {}
        }
        let generation = self.copy_generation(source, block);
        let _intent = self.resync_intent(target, addr)?;
        match self.on_member_gen(target, |disk| disk.write_copy(block, &value, generation)) {
            Ok(()) => Ok(Step::Copied),
            Err(MemberError {
                error: DiskError::Crashed,
                ..
            }) => Err(DiskError::Crashed.into()),
            Err(failed) => {
                self.fail_replica(target, &failed)?;
                Ok(Step::Stop)
            }
        }
    }

    /// A copy between two current members makes them differ until it lands on both: its
    /// chunk's bit must be durable first (a copy onto a rebuild target needs none: a crash
    /// rebuilds it whole).
    fn resync_intent(&self, target: Role, addr: Addr) -> Result<Option<Intent<'_>>> {
        if self.replica_status(target) != ReplicaStatus::Active {
            return Ok(None);
        }
        let chunk = self.bitmap.layout.chunk_of(addr);
        self.mark_intent(chunk..=chunk).map(Some)
    }

    /// The member whose copy of `block` has the higher write generation, if the members keep
    /// generations and they differ ([`newer_copy`]).
    fn newer_member(&self, block: MemberBlock) -> Option<Role> {
        newer_copy(
            self.copy_generation(Role::D1, block),
            self.copy_generation(Role::D2, block),
        )
    }

    /// Writes the target's newer copy over the source's.
    fn copy_back(
        &self,
        source: Role,
        target: Role,
        block: MemberBlock,
        newer: &Block,
    ) -> Result<Step> {
        let generation = self.copy_generation(target, block);
        let _intent = self.resync_intent(target, block.index() - RESERVED_BLOCKS)?;
        match self.on_member_gen(source, |disk| disk.write_copy(block, newer, generation)) {
            Ok(()) => Ok(Step::Copied),
            Err(MemberError {
                error: DiskError::Crashed,
                ..
            }) => Err(DiskError::Crashed.into()),
            Err(failed) => {
                self.fail_replica(source, &failed)?;
                Ok(Step::Stop)
            }
        }
    }

    /// The source cannot read `addr`. A current target still holds a value written there: keep
    /// it and repair the source from it. A target being rebuilt holds nothing current: the
    /// rebuild cannot complete.
    fn source_bad_block(
        &self,
        source: Role,
        target: Role,
        addr: Addr,
        error: DiskError,
    ) -> Result<Step> {
        let block = MemberBlock::of_data(addr);
        if self.replica_status(target) != ReplicaStatus::Active {
            // The target holds nothing current to repair from. Its copy must fail as the
            // source's does, never serve whatever it held before: a member that checks its
            // blocks records it as lost; on one that cannot, the rebuild cannot complete.
            return match self.on_member_gen(target, |disk| disk.invalidate(block)) {
                Ok(()) => Ok(Step::Copied),
                Err(MemberError {
                    error: DiskError::Crashed,
                    ..
                }) => Err(DiskError::Crashed.into()),
                Err(MemberError {
                    error: DiskError::Unsupported { .. },
                    ..
                }) => Err(ReplicatedError::Disk(error)),
                Err(failed) => {
                    self.fail_replica(target, &failed)?;
                    Ok(Step::Stop)
                }
            };
        }
        let good = match self.on_member_gen(target, |disk| disk.read(block)) {
            Ok(good) => good,
            Err(MemberError {
                error: DiskError::Crashed,
                ..
            }) => return Err(DiskError::Crashed.into()),
            // Unreadable on both (or failing verification on both: a block both members were
            // writing when the machine crashed, which the layer above rewrites before it reads
            // it): nothing to copy, the copy goes on.
            Err(MemberError { error, .. }) if error.is_bad_block() => return Ok(Step::Same),
            Err(failed) => {
                self.fail_replica(target, &failed)?;
                return Ok(Step::Stop);
            }
        };
        let generation = self.copy_generation(target, block);
        let _intent = self.resync_intent(target, addr)?;
        match self.on_member_gen(source, |disk| disk.write_copy(block, &good, generation)) {
            Ok(()) => Ok(Step::Copied),
            Err(MemberError {
                error: DiskError::Crashed,
                ..
            }) => Err(DiskError::Crashed.into()),
            Err(failed) => {
                self.fail_replica(source, &failed)?;
                Ok(Step::Stop)
            }
        }
    }
}
