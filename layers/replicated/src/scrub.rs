//! The scrub: every data address read on every active member, each copy classified, the good
//! copy written over a bad or older one, and the metadata slots checked.
//!
//! A read of the pair tries d1 first and stops at the first copy that verifies, so damage to
//! the copy a read does not reach — d2's, or either one of a block nobody reads — waits,
//! unseen, until the other copy fails too. [`ReplicatedDisk::scrub`] finds it while the other
//! copy is still good (as md's `check`/`repair` and ZFS's scrub do), one address at a time
//! under that address's stripe lock, so it runs while the pair is in use:
//!
//! ```text
//!  address a:  d1 copy ──verify──┐
//!                                ├── both good, equal ............ ok
//!              d2 copy ──verify──┤   one good ..................... it is written over the other
//!                                ├── both good, different ......... the newer (generation) over the older
//!                                └── neither good ................. lost (an error on every read)
//! ```
//!
//! A repair is a data write: it happens inside the pair's Dirty mark, as the self-healing read
//! does, so a crash during a scrub leaves a pair that the next open resyncs. Each member's two
//! metadata slots are read too; a slot that fails verification or does not decode (rot, or a
//! torn metadata write) gets the member's current metadata written again, to both slots, with
//! no new event.

use crate::error::Result;
use crate::member::MemberBlock;
use crate::meta::{Role, Slot, RESERVED_BLOCKS};
use crate::pair::{MemberError, ReplicaStatus, ReplicatedDisk};
use crate::resync::{Phase, Progress, PROGRESS_INTERVAL_BLOCKS};
use crate::versions::newer_copy;
use txdisk_disk::{Addr, Block, Damage, Disk, DiskError};

/// How many failing addresses a scrub report lists per member (and lost ones for the pair).
pub const SCRUB_LISTED: usize = 8;

/// Why one copy of a block is not served: what its verification (or the device) said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockFault {
    /// The bytes match no version of any block (rot, a torn write, a damaged tag).
    Flipped,
    /// The bytes belong at another address of the same disk: a misdirected write.
    Misdirected {
        /// The address whose contents these are (an address of the disk that was scrubbed or
        /// checked: the pair's, or the log's address space).
        belongs_at: Addr,
    },
    /// The block's previous contents: its last write never reached the medium.
    Stale,
    /// The device could not read the block (a bad sector).
    Unreadable,
}

impl BlockFault {
    /// The fault a per-block error shows; `None` for an error that is not about one block.
    pub fn of(error: &DiskError) -> Option<BlockFault> {
        match error {
            DiskError::Corrupt { damage, .. } => Some(BlockFault::of_damage(*damage)),
            error if error.is_bad_block() => Some(BlockFault::Unreadable),
            _ => None,
        }
    }

    fn of_damage(damage: Damage) -> BlockFault {
        match damage {
            Damage::Flipped => BlockFault::Flipped,
            Damage::Misdirected { belongs_at } => BlockFault::Misdirected { belongs_at },
            Damage::Stale => BlockFault::Stale,
        }
    }

    /// The same fault seen from a disk whose address 0 is block `offset` of the one that
    /// reported it ([`Damage::shifted`]).
    pub fn shifted(self, offset: u64) -> BlockFault {
        match self {
            BlockFault::Misdirected { belongs_at } => {
                BlockFault::of_damage(Damage::Misdirected { belongs_at }.shifted(offset))
            }
            other => other,
        }
    }

    /// The kind's name in reports: `flipped`, `misdirected`, `stale`, `unreadable`.
    pub fn name(self) -> &'static str {
        match self {
            BlockFault::Flipped => "flipped",
            BlockFault::Misdirected { .. } => "misdirected",
            BlockFault::Stale => "stale",
            BlockFault::Unreadable => "unreadable",
        }
    }
}

impl std::fmt::Display for BlockFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockFault::Misdirected { belongs_at } => {
                write!(f, "misdirected (holds block {belongs_at})")
            }
            other => f.write_str(other.name()),
        }
    }
}

/// What a scrub (or a check) found on one member, or on one image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberScrub {
    /// The member was active and its copies were read.
    pub scanned: bool,
    /// Copies that verified and were the newest.
    pub ok_blocks: u64,
    /// Copies whose bytes match no version of the block.
    pub flipped_blocks: u64,
    /// Copies holding another address's block.
    pub misdirected_blocks: u64,
    /// Copies holding the block's previous contents.
    pub stale_blocks: u64,
    /// Copies the device could not read.
    pub unreadable_blocks: u64,
    /// Copies that verified but were older than the other member's (a write lost together
    /// with its tag).
    pub older_blocks: u64,
    /// The first failing or older copies (at most [`SCRUB_LISTED`]): address and fault
    /// (`None` for an older copy).
    pub first_faults: Vec<(Addr, Option<BlockFault>)>,
    /// Metadata slots that failed verification or did not decode.
    pub damaged_slots: Vec<u64>,
    /// The member's metadata was written again (both slots).
    pub metadata_rewritten: bool,
}

impl MemberScrub {
    /// Copies that failed verification or could not be read.
    pub fn failing_blocks(&self) -> u64 {
        self.flipped_blocks + self.misdirected_blocks + self.stale_blocks + self.unreadable_blocks
    }

    /// Counts one copy's fault (`None`: older than the other member's).
    pub fn count(&mut self, addr: Addr, fault: Option<BlockFault>) {
        match fault {
            Some(BlockFault::Flipped) => self.flipped_blocks += 1,
            Some(BlockFault::Misdirected { .. }) => self.misdirected_blocks += 1,
            Some(BlockFault::Stale) => self.stale_blocks += 1,
            Some(BlockFault::Unreadable) => self.unreadable_blocks += 1,
            None => self.older_blocks += 1,
        }
        if self.first_faults.len() < SCRUB_LISTED {
            self.first_faults.push((addr, fault));
        }
    }
}

/// What [`ReplicatedDisk::scrub`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Data addresses scrubbed (all of them, unless every member failed on the way).
    pub scanned_blocks: u64,
    /// `[d1, d2]`.
    pub members: [MemberScrub; 2],
    /// Copies written over a failing or older one.
    pub repaired_blocks: u64,
    /// Addresses where no active member's copy verifies: every read of them fails.
    pub lost_blocks: u64,
    /// The first of them (at most [`SCRUB_LISTED`]).
    pub first_lost: Vec<Addr>,
}

impl ScrubReport {
    /// Nothing was wrong: every copy verified and agreed, every slot was good.
    pub fn is_clean(&self) -> bool {
        self.members.iter().all(|member| {
            member.failing_blocks() == 0
                && member.older_blocks == 0
                && member.damaged_slots.is_empty()
        }) && self.lost_blocks == 0
    }
}

/// One member's copy of one address, as the scrub read it.
enum Copy {
    /// Verified: the contents.
    Good(Block),
    /// Failed verification or could not be read.
    Bad(BlockFault),
}

/// No copy of `addr` verifies: each member's fault counted, the address lost (unless no
/// member was read at all).
fn count_lost(addr: Addr, copies: &[Option<Copy>; 2], report: &mut ScrubReport) {
    for role in [Role::D1, Role::D2] {
        if let Some(Copy::Bad(fault)) = copies[role.index()] {
            report.members[role.index()].scanned = true;
            report.members[role.index()].count(addr, Some(fault));
        }
    }
    if copies.iter().any(Option::is_some) {
        report.lost_blocks += 1;
        if report.first_lost.len() < SCRUB_LISTED {
            report.first_lost.push(addr);
        }
    }
}

impl<D: Disk + 'static> ReplicatedDisk<D> {
    /// Scrubs the pair: checks both metadata slots of every active member (rewriting the
    /// metadata of a member where one fails), then reads every data address on every active
    /// member, writes the good copy over a failing one — the newer over the older where both
    /// verify but differ — and counts what it found (module documentation). Runs online;
    /// repairs are made durable (synced) before it returns. Reports progress every
    /// [`PROGRESS_INTERVAL_BLOCKS`] and at the end.
    pub fn scrub(&self, progress: &mut dyn FnMut(Progress)) -> Result<ScrubReport> {
        let mut report = ScrubReport::default();
        self.scrub_metadata(&mut report)?;
        let total_blocks = self.data_size_blocks;
        for addr in 0..total_blocks {
            {
                let _stripe = self.stripe(addr);
                self.scrub_one(addr, &mut report)?;
            }
            report.scanned_blocks += 1;
            if report.scanned_blocks % PROGRESS_INTERVAL_BLOCKS == 0 {
                progress(Progress {
                    phase: Phase::Scrub,
                    done_blocks: report.scanned_blocks,
                    total_blocks,
                });
            }
        }
        progress(Progress {
            phase: Phase::Scrub,
            done_blocks: report.scanned_blocks,
            total_blocks,
        });
        if report.repaired_blocks > 0 {
            self.sync_members()?;
        }
        #[cfg(debug_assertions)]
        self.check_rep();
        Ok(report)
    }

    /// Both slots of every active member; a member with a bad slot gets its metadata written
    /// twice (the two slots), as the pair's state is now, without a new event.
    fn scrub_metadata(&self, report: &mut ScrubReport) -> Result<()> {
        'members: for role in self.active_roles() {
            let mut damaged = Vec::new();
            for slot in 0..RESERVED_BLOCKS {
                match self.on_member_gen(role, |disk| disk.read(MemberBlock::slot(slot))) {
                    Ok(block) => match Slot::decode(&block) {
                        Slot::Valid(meta) if meta.pair_id == self.pair_id && meta.role == role => {}
                        _ => damaged.push(slot),
                    },
                    Err(MemberError {
                        error: DiskError::Crashed,
                        ..
                    }) => return Err(DiskError::Crashed.into()),
                    Err(MemberError { error, .. }) if error.is_bad_block() => damaged.push(slot),
                    Err(failed) => {
                        self.fail_replica(role, &failed)?;
                        continue 'members;
                    }
                }
            }
            let member = &mut report.members[role.index()];
            if damaged.is_empty() {
                continue;
            }
            tracing::warn!(replica = %role, slots = ?damaged, "a metadata slot is damaged; rewriting the member's metadata");
            member.damaged_slots = damaged;
            let mut meta = self.meta.lock();
            let state = meta.on_disk;
            for _ in 0..RESERVED_BLOCKS {
                self.write_member_meta(&mut meta, role, state)?;
            }
            member.metadata_rewritten = self.replica_status(role) == ReplicaStatus::Active;
        }
        Ok(())
    }

    /// One address; called under its stripe lock.
    fn scrub_one(&self, addr: Addr, report: &mut ScrubReport) -> Result<()> {
        let block = MemberBlock::of_data(addr);
        let mut copies: [Option<Copy>; 2] = [None, None];
        for role in [Role::D1, Role::D2] {
            if self.replica_status(role) != ReplicaStatus::Active {
                continue;
            }
            copies[role.index()] = match self.read_copy(role, block)? {
                Some(copy) => Some(copy),
                None => continue, // the member failed and left the pair
            };
        }
        let good: Vec<Role> = [Role::D1, Role::D2]
            .into_iter()
            .filter(|role| matches!(copies[role.index()], Some(Copy::Good(..))))
            .collect();
        let winner = match good.as_slice() {
            [] => {
                count_lost(addr, &copies, report);
                return Ok(());
            }
            [one] => *one,
            [..] => match (&copies[0], &copies[1]) {
                (Some(Copy::Good(b1)), Some(Copy::Good(b2))) if b1 != b2 => {
                    // d1 when the generations decide nothing: the copy a read serves.
                    newer_copy(
                        self.copy_generation(Role::D1, block),
                        self.copy_generation(Role::D2, block),
                    )
                    .unwrap_or(Role::D1)
                }
                _ => Role::D1,
            },
        };
        let Some(Copy::Good(value)) = &copies[winner.index()] else {
            unreachable!("replicated: scrub winner {winner} of address {addr} has no good copy")
        };
        let value = value.clone();
        for role in [Role::D1, Role::D2] {
            let member = &mut report.members[role.index()];
            let fault = match &copies[role.index()] {
                None => continue,
                Some(Copy::Good(copy)) if *copy == value => {
                    member.scanned = true;
                    member.ok_blocks += 1;
                    continue;
                }
                Some(Copy::Good(..)) => None,
                Some(Copy::Bad(fault)) => Some(*fault),
            };
            member.scanned = true;
            member.count(addr, fault);
            tracing::info!(replica = %role, addr, ?fault, "scrub: writing the good copy over a bad one");
            let generation = self.copy_generation(winner, block);
            self.repair(role, addr, block, &value, generation)?;
            if self.replica_status(role) == ReplicaStatus::Active {
                report.repaired_blocks += 1;
            }
        }
        Ok(())
    }

    /// One member's copy: `Ok(None)` if the member failed (and was failed) on the way.
    fn read_copy(&self, role: Role, block: MemberBlock) -> Result<Option<Copy>> {
        let failed = match self.on_member_gen(role, |disk| disk.read(block)) {
            Ok(value) => return Ok(Some(Copy::Good(value))),
            Err(failed) => failed,
        };
        if matches!(failed.error, DiskError::Crashed) {
            return Err(DiskError::Crashed.into());
        }
        if let Some(fault) = BlockFault::of(&failed.error) {
            return Ok(Some(Copy::Bad(fault.shifted(RESERVED_BLOCKS))));
        }
        self.fail_replica(role, &failed)?;
        Ok(None)
    }
}
