//! Faults besides crashes: a disk of the pair failing for good, bad blocks, and **damage** —
//! bits flipped in a block (bit rot, at rest or mid-run), a write landing at the wrong block
//! (misdirected), a write the disk acknowledges and never applies (lost) — and which blocks of
//! the checksummed disk each damage may leave failing verification (`Touched`).
//!
//! Where damage strikes: on a pair, anywhere on one member (superblocks, tags, pair metadata,
//! the log, home blocks), since the other member holds a good copy of every block. On a single
//! disk, home blocks of the log and their tag entries, plus the checksummed disk's superblock
//! copies: there is no second copy there, and damage to the log region (or to a tag write, which
//! covers log blocks) can destroy the only copy of a committed record, which recovery cannot
//! tell from a record a crash tore — it is data loss on any single disk, not a bug to hunt.

use crate::stack::CrashAt;
use std::collections::BTreeSet;
use std::ops::Range;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Addr, Block, BLOCK_SIZE};
use txdisk_integrity::format::{Superblock as CheckedLayout, ENTRIES_PER_BLOCK, ENTRY_BYTES};
use txdisk_log::tooling::Superblock as LogLayout;

/// When bit rot strikes, within its epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RotAt {
    /// At rest, before the stack starts: the disk's durable contents.
    Rest,
    /// Between steps of the run, before step `n`: the block's newest contents change, durable
    /// at the disk's next sync (a crash before it may keep the block as it was).
    BeforeStep(usize),
}

/// One damage to one simulated disk. Blocks are the simulated disk's own (raw) addresses;
/// operations are its operation numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DamageKind {
    /// Byte `byte` of raw block `block` is XORed with `mask` (non-zero).
    BitRot {
        block: Addr,
        byte: usize,
        mask: u8,
        at: RotAt,
    },
    /// The write numbered `op` lands at raw block `to` instead of its own.
    Misdirect { op: u64, to: Addr },
    /// The write numbered `op` is acknowledged and never applied.
    LostWrite { op: u64 },
}

/// A damage of disk `disk` during epoch `epoch` of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DamageFault {
    pub disk: usize,
    pub epoch: usize,
    pub kind: DamageKind,
}

impl std::fmt::Display for DamageFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (disk, epoch) = (self.disk + 1, self.epoch + 1);
        match self.kind {
            DamageKind::BitRot {
                block,
                byte,
                mask,
                at,
            } => {
                let when = match at {
                    RotAt::Rest => format!("at rest before epoch {epoch}"),
                    RotAt::BeforeStep(step) => format!("before step {step} of epoch {epoch}"),
                };
                write!(
                    f,
                    "bit rot on d{disk}: byte {byte} of block {block} XOR {mask:#04x}, {when}"
                )
            }
            DamageKind::Misdirect { op, to } => write!(
                f,
                "the write at d{disk} operation {op} of epoch {epoch} lands at block {to}"
            ),
            DamageKind::LostWrite { op } => write!(
                f,
                "the write at d{disk} operation {op} of epoch {epoch} is acknowledged and lost"
            ),
        }
    }
}

/// The faults of one workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Faults {
    /// The first epoch's run: this disk fails for good at this operation.
    pub fail_stop: Option<CrashAt>,
    /// (disk, raw block) whose reads fail until written, during the first epoch's run.
    /// (Not across a restart: a block gone bad while the pair is at rest and clean is a latent
    /// error that only a scrub finds, which `open` does not claim to do.)
    pub read_errors: Vec<(usize, Addr)>,
    /// The blocks go bad before this step of the run (`None`: before the stack opens). A
    /// pair's open resyncs the chunks its bitmap marks — on a small pair, every block — and
    /// repairs a bad block as it copies it; only blocks that go bad after the open are met
    /// by reads, whose fallback and repair the repair check watches.
    pub read_errors_before_step: Option<usize>,
    /// At most one damage, on the same disk as the other faults (one failing disk at a time:
    /// damage to both copies of a block is data loss on any pair).
    pub damage: Option<DamageFault>,
    /// The first epoch's run: the sync with this operation number of this disk fails, losing
    /// the writes since the disk's last good sync (`SimDisk::schedule_sync_failure`).
    pub sync_failure: Option<CrashAt>,
}

/// Bit rot between steps of a run: before step `step`, on `disk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MidRunRot {
    pub disk: usize,
    pub step: usize,
    pub block: Addr,
    pub byte: usize,
    pub mask: u8,
}

impl Faults {
    /// The bit rot these faults strike between steps, if any (the engine's to apply: the
    /// stack's disks only know operation numbers).
    pub fn mid_run_rot(&self) -> Option<MidRunRot> {
        let damage = self.damage?;
        match damage.kind {
            DamageKind::BitRot {
                block,
                byte,
                mask,
                at: RotAt::BeforeStep(step),
            } => Some(MidRunRot {
                disk: damage.disk,
                step,
                block,
                byte,
                mask,
            }),
            _ => None,
        }
    }

    /// The faults that strike during epoch `epoch`.
    pub fn for_epoch(&self, epoch: usize) -> Faults {
        let first = epoch == 0;
        Faults {
            fail_stop: self.fail_stop.filter(|_| first),
            read_errors: if first {
                self.read_errors.clone()
            } else {
                Vec::new()
            },
            read_errors_before_step: self.read_errors_before_step.filter(|_| first),
            damage: self.damage.filter(|d| d.epoch == epoch),
            sync_failure: self.sync_failure.filter(|_| first),
        }
    }
}

/// Blocks of one disk — addresses of the checksummed disk on it — that a damage struck: each
/// may fail verification until it is written again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Touched {
    pub disk: usize,
    pub blocks: BTreeSet<Addr>,
}

impl Touched {
    /// Adds `blocks` of `disk` (a workload damages one disk only).
    pub fn add(touched: &mut Option<Touched>, disk: usize, blocks: BTreeSet<Addr>) {
        match touched {
            Some(known) => {
                assert_eq!(
                    known.disk,
                    disk,
                    "crashfuzz: damage on d{} after damage on d{}",
                    disk + 1,
                    known.disk + 1
                );
                known.blocks.extend(blocks);
            }
            None => *touched = Some(Touched { disk, blocks }),
        }
    }
}

/// Where everything is on each simulated disk: the checksummed layout, the pair's metadata,
/// the log's layout on the disk it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub checked: CheckedLayout,
    /// Blocks of pair metadata at the start of each checksummed disk (0 on a single disk).
    pub pair_blocks: u64,
    pub log: LogLayout,
}

impl Geometry {
    /// Raw blocks of the log's home region (the data region of the logical disk).
    pub fn home_raw(&self) -> Range<Addr> {
        let start = self.checked.data_start + self.pair_blocks + self.log.data_start;
        start..start + self.log.data_blocks
    }

    /// The checksummed disk's blocks whose tag entries live in raw tag block `raw`.
    fn entries_of(&self, raw: Addr) -> Range<Addr> {
        let first = (raw - self.checked.tag_start) * ENTRIES_PER_BLOCK;
        first.min(self.checked.data_blocks)
            ..(first + ENTRIES_PER_BLOCK).min(self.checked.data_blocks)
    }

    fn is_tag(&self, raw: Addr) -> bool {
        (self.checked.tag_start..self.checked.data_start).contains(&raw)
    }

    /// What replacing raw block `raw` whole (a misdirected or lost write) can leave failing:
    /// the block, or every block whose entry the tag block holds. A superblock copy touches
    /// nothing (the other copy is used).
    pub fn touched_by_block(&self, raw: Addr) -> BTreeSet<Addr> {
        if self.is_tag(raw) {
            return self.entries_of(raw).collect();
        }
        self.data_of(raw).into_iter().collect()
    }

    /// What flipping bits in byte `byte` of raw block `raw` can leave failing: the block, or
    /// the one block whose tag entry holds the byte (entries carry their own checksums).
    pub fn touched_by_byte(&self, raw: Addr, byte: usize) -> BTreeSet<Addr> {
        if self.is_tag(raw) {
            let entry = self.entries_of(raw).start + (byte / ENTRY_BYTES) as u64;
            return self
                .entries_of(raw)
                .contains(&entry)
                .then_some(entry)
                .into_iter()
                .collect();
        }
        self.data_of(raw).into_iter().collect()
    }

    fn data_of(&self, raw: Addr) -> Option<Addr> {
        let addr = raw.checked_sub(self.checked.data_start)?;
        (addr < self.checked.data_blocks).then_some(addr)
    }

    /// The pair's data address of checksummed block `addr` (`None`: pair metadata).
    pub fn pair_addr(&self, addr: Addr) -> Option<Addr> {
        addr.checked_sub(self.pair_blocks)
    }

    /// The logical disk's address of checksummed block `addr` (`None`: not a home block).
    pub fn logical_addr(&self, addr: Addr) -> Option<Addr> {
        let log_addr = addr.checked_sub(self.pair_blocks)?;
        let logical = log_addr.checked_sub(self.log.data_start)?;
        (logical < self.log.data_blocks).then_some(logical)
    }

    /// What `damage` leaves failing, given the raw blocks its write went to (`from`) and landed
    /// at (`to`, a misdirected write only).
    pub fn touched_by_write(&self, from: Addr, to: Option<Addr>) -> BTreeSet<Addr> {
        let mut touched = self.touched_by_block(from);
        if let Some(to) = to {
            touched.extend(self.touched_by_block(to));
        }
        touched
    }
}

/// `block` with byte `byte` XORed with `mask`.
pub(crate) fn rotted(block: &Block, byte: usize, mask: u8) -> Block {
    let mut rotted = block.clone();
    rotted.as_bytes_mut()[byte % BLOCK_SIZE] ^= mask;
    rotted
}

/// The damage kinds a run asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DamageKinds {
    pub bit_rot: bool,
    pub misdirect: bool,
    pub lost_writes: bool,
}

impl DamageKinds {
    pub fn any(self) -> bool {
        self.bit_rot || self.misdirect || self.lost_writes
    }
}

/// What a workload's damage is chosen from.
pub(crate) struct DamagePlan<'a> {
    pub kinds: DamageKinds,
    pub geometry: &'a Geometry,
    pub replicated: bool,
    /// The disk every fault of the workload strikes.
    pub disk: usize,
    /// (operation, raw block) of each write of the first epoch's fault-free run on `disk`.
    pub writes: &'a [(u64, Addr)],
    /// Steps of each epoch.
    pub steps: &'a [usize],
}

impl DamagePlan<'_> {
    /// One damage in every other workload, of a kind drawn from those asked for.
    pub fn draw(&self, rng: &mut SplitMix64) -> Option<DamageFault> {
        if !self.kinds.any() || !rng.chance(1, 2) {
            return None;
        }
        let kinds: Vec<u8> = [
            (self.kinds.bit_rot, 0),
            (self.kinds.misdirect, 1),
            (self.kinds.lost_writes, 2),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, kind)| *kind)
        .collect();
        let kind = match kinds[rng.below(kinds.len() as u64) as usize] {
            0 => return Some(self.bit_rot(rng)),
            1 => {
                let (op, _) = self.pick_write(rng)?;
                DamageKind::Misdirect {
                    op,
                    to: self.pick_block(rng),
                }
            }
            _ => DamageKind::LostWrite {
                op: self.pick_write(rng)?.0,
            },
        };
        // Writes are picked from the first epoch's run: its operation numbers are known.
        Some(DamageFault {
            disk: self.disk,
            epoch: 0,
            kind,
        })
    }

    fn bit_rot(&self, rng: &mut SplitMix64) -> DamageFault {
        let epoch = rng.below(self.steps.len().max(1) as u64) as usize;
        let steps = self.steps.get(epoch).copied().unwrap_or(0) as u64;
        let at = if steps == 0 || rng.chance(1, 2) {
            RotAt::Rest
        } else {
            RotAt::BeforeStep(rng.below(steps) as usize)
        };
        let mask = 1 + rng.below(255) as u8;
        let (block, byte) = if self.replicated {
            let raw = rng.below(self.geometry.checked.raw_blocks);
            (raw, rng.below(BLOCK_SIZE as u64) as usize)
        } else {
            self.lone_rot_target(rng)
        };
        DamageFault {
            disk: self.disk,
            epoch,
            kind: DamageKind::BitRot {
                block,
                byte,
                mask,
                at,
            },
        }
    }

    /// On a single disk: a home block (6 in 10), the tag entry of one (3 in 10), or a
    /// superblock copy's checksummed bytes (1 in 10).
    fn lone_rot_target(&self, rng: &mut SplitMix64) -> (Addr, usize) {
        let home = self.geometry.home_raw();
        let checked = &self.geometry.checked;
        match rng.below(10) {
            0..=5 => (
                home.start + rng.below(home.end - home.start),
                rng.below(BLOCK_SIZE as u64) as usize,
            ),
            6..=8 => {
                let addr = home.start + rng.below(home.end - home.start) - checked.data_start;
                let tag_block = checked.tag_start + addr / ENTRIES_PER_BLOCK;
                let entry = (addr % ENTRIES_PER_BLOCK) as usize;
                (
                    tag_block,
                    entry * ENTRY_BYTES + rng.below(ENTRY_BYTES as u64) as usize,
                )
            }
            // The superblock's checksum covers its first 68 bytes; the rest is padding.
            _ => (rng.below(checked.tag_start), rng.below(68) as usize),
        }
    }

    /// A write of the first epoch to damage: any on a pair, a home block's on a single disk.
    fn pick_write(&self, rng: &mut SplitMix64) -> Option<(u64, Addr)> {
        let home = self.geometry.home_raw();
        let candidates: Vec<(u64, Addr)> = self
            .writes
            .iter()
            .copied()
            .filter(|(_, addr)| self.replicated || home.contains(addr))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[rng.below(candidates.len() as u64) as usize])
    }

    /// Where a misdirected write lands: any block of a member, a home block of a single disk.
    fn pick_block(&self, rng: &mut SplitMix64) -> Addr {
        if self.replicated {
            return rng.below(self.geometry.checked.raw_blocks);
        }
        let home = self.geometry.home_raw();
        home.start + rng.below(home.end - home.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(pair_blocks: u64) -> Geometry {
        let checked = CheckedLayout::layout(600, 0).expect("layout");
        let log = LogLayout::layout(checked.data_blocks - pair_blocks, 12, 0).expect("log");
        Geometry {
            checked,
            pair_blocks,
            log,
        }
    }

    #[test]
    fn damage_touches_the_blocks_it_can_leave_failing() {
        let g = geometry(2);
        assert_eq!(g.checked.tag_blocks, 3, "600 blocks: three tag blocks");
        let data = g.checked.data_start;
        assert!(g.touched_by_block(0).is_empty(), "a superblock copy");
        assert_eq!(g.touched_by_block(data + 7), BTreeSet::from([7]));
        let second_tag = g.checked.tag_start + 1;
        assert_eq!(
            g.touched_by_block(second_tag),
            (256..512).collect::<BTreeSet<Addr>>()
        );
        assert_eq!(
            g.touched_by_byte(second_tag, 3 * ENTRY_BYTES + 5),
            BTreeSet::from([259])
        );
        let last_tag = g.checked.tag_start + 2;
        assert!(
            g.touched_by_byte(last_tag, BLOCK_SIZE - 1).is_empty(),
            "an entry past the data blocks is padding"
        );
        assert_eq!(
            g.touched_by_write(data + 1, Some(data + 9)),
            BTreeSet::from([1, 9])
        );
    }

    #[test]
    fn addresses_map_down_the_stack() {
        let g = geometry(2);
        let home = g.home_raw();
        let first = home.start - g.checked.data_start;
        assert_eq!(g.logical_addr(first), Some(0));
        assert_eq!(g.logical_addr(first - 1), None, "the log's last block");
        assert_eq!(g.logical_addr(1), None, "pair metadata");
        assert_eq!(g.pair_addr(1), None);
        assert_eq!(g.pair_addr(2), Some(0));
        assert_eq!(
            g.logical_addr(home.end - 1 - g.checked.data_start),
            Some(g.log.data_blocks - 1)
        );
    }

    #[test]
    fn a_single_disk_is_damaged_at_home_only() {
        let g = geometry(0);
        let writes: Vec<(u64, Addr)> = (0..40).map(|op| (op, op + g.checked.data_start)).collect();
        let plan = DamagePlan {
            kinds: DamageKinds {
                bit_rot: true,
                misdirect: true,
                lost_writes: true,
            },
            geometry: &g,
            replicated: false,
            disk: 0,
            writes: &writes,
            steps: &[10, 5],
        };
        let mut rng = SplitMix64::new(7);
        let mut seen = 0;
        for _ in 0..400 {
            let Some(damage) = plan.draw(&mut rng) else {
                continue;
            };
            seen += 1;
            let touched = match damage.kind {
                DamageKind::BitRot { block, byte, .. } => g.touched_by_byte(block, byte),
                DamageKind::Misdirect { op, to } => {
                    assert!(g.home_raw().contains(&to), "{damage}");
                    g.touched_by_write(writes[op as usize].1, Some(to))
                }
                DamageKind::LostWrite { op } => g.touched_by_write(writes[op as usize].1, None),
            };
            for addr in touched {
                assert!(g.logical_addr(addr).is_some(), "{damage} touches {addr}");
            }
        }
        assert!(seen > 100, "{seen} damages in 400 workloads");
    }
}
