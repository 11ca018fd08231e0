//! The stack under test on simulated disks, as the real one is built: each `SimDisk` under a
//! checksummed disk ([`IntegrityDisk`]), one of them under the log or two under a replicated
//! pair. Building the disks from images with their faults, opening (recovering) the stack,
//! choosing crash states, and the checks every recovered stack must pass.

use crate::config::Bug;
use crate::faults::{rotted, DamageKind, Faults, Geometry, RotAt, Touched};
use crate::history::PairHistory;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Addr, Block, Disk, DiskError, DiskImage, SimDisk, SECTORS_PER_BLOCK};
use txdisk_integrity::{IntegrityDisk, IntegrityError};
use txdisk_log::LogOptions;
use txdisk_logical::LogicalDisk;
use txdisk_replicated::{replicas_agree, ReplicaStatus, ReplicatedDisk, Role, RESERVED_BLOCKS};

pub(crate) type Images = Vec<DiskImage>;
pub(crate) type Pair = ReplicatedDisk<Arc<dyn Disk>>;
/// One simulated disk with its checksums, as the layer above sees it.
pub(crate) type Checked = IntegrityDisk<Arc<dyn Disk>>;

/// A crash (or a fail-stop) at operation `op` of disk `disk` (0 = d1, 1 = d2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CrashAt {
    pub disk: usize,
    pub op: u64,
}

/// How a recovery is cut short: the machine crashes at `at`, or (`fail_stop`) that disk fails
/// for good there, recovery goes on without it, and the machine crashes after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Interrupt {
    pub at: CrashAt,
    pub fail_stop: bool,
}

impl std::fmt::Display for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (disk, op) = (self.at.disk + 1, self.at.op);
        if self.fail_stop {
            write!(
                f,
                "d{disk} failed for good at its operation {op} of recovery"
            )
        } else {
            write!(f, "recovery crashed at operation {op} of d{disk}")
        }
    }
}

/// Which crash state of the crashed disks: the `Nth` of their enumeration, or one drawn from a
/// seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum StateChoice {
    Nth(u64),
    Random(u64),
}

/// What persists from one start of the stack to the next: dead members, (replicated runs)
/// what was written to the pair, for its crash invariant, and the blocks damage struck.
#[derive(Clone, Debug, Default)]
pub(crate) struct Env {
    pub dead: [bool; 2],
    pub history: Option<PairHistory>,
    pub touched: Option<Touched>,
}

/// The pair as the log sees it, recording every write (before it is issued: a crash may land
/// it) and every successful sync in the pair's history.
pub(crate) struct HistoryDisk {
    pub pair: Arc<Pair>,
    pub history: Arc<Mutex<PairHistory>>,
    /// Every address read through the pair (to choose bad blocks among those reads meet).
    pub reads: Arc<Mutex<Vec<Addr>>>,
}

impl Disk for HistoryDisk {
    fn size_blocks(&self) -> u64 {
        self.pair.size_blocks()
    }
    fn read(&self, addr: Addr) -> txdisk_disk::Result<Block> {
        if let Ok(mut reads) = self.reads.lock() {
            reads.push(addr);
        }
        self.pair.read(addr)
    }
    fn write(&self, addr: Addr, block: &Block) -> txdisk_disk::Result<()> {
        if let Ok(mut history) = self.history.lock() {
            history.write(addr, block);
        }
        self.pair.write(addr, block)
    }
    fn sync(&self) -> txdisk_disk::Result<()> {
        self.pair.sync()?;
        if let Ok(mut history) = self.history.lock() {
            history.sync_ok();
        }
        Ok(())
    }
    fn check_rep(&self) {
        self.pair.check_rep();
    }
}

/// One simulated disk as the checksummed disk above it sees it: the `SimDisk`, with the
/// fuzzer's own fault that the model has no notion of (a lost write: acknowledged, never
/// applied) and the bookkeeping of what reached it.
pub(crate) struct RawDisk {
    sim: Arc<SimDisk>,
    /// Keep the writes since the last sync (the shrinker's runs).
    record: bool,
    /// The write with this operation number is lost.
    lose_at: Option<u64>,
    /// The write with this operation number lands at this block (the `SimDisk` does it).
    misdirect: Option<(u64, Addr)>,
    log: Mutex<RawLog>,
}

#[derive(Default)]
struct RawLog {
    /// Per block, the values written since the last sync (where they landed), when recording:
    /// so that the shrinker can check that a chosen state is a crash state.
    pending: BTreeMap<Addr, Vec<Block>>,
    /// (operation, block) of every write the stack issued, to pick damage from.
    writes: Vec<(u64, Addr)>,
    /// The block whose write was lost.
    lost: Option<Addr>,
    /// The block a misdirected write was meant for, and the one it landed at.
    misdirected: Option<(Addr, Addr)>,
    /// Blocks whose reads failed as bad blocks since the repair check last looked: a pair
    /// must have served each from the other member and written it back here.
    fallbacks: Vec<Addr>,
}

impl RawDisk {
    fn new(sim: Arc<SimDisk>, record: bool) -> RawDisk {
        RawDisk {
            sim,
            record,
            lose_at: None,
            misdirect: None,
            log: Mutex::new(RawLog::default()),
        }
    }

    fn with_log<T>(&self, f: impl FnOnce(&mut RawLog) -> T) -> T {
        // A poisoned lock is a panic already being reported: go on with what it holds.
        let mut log = self.log.lock().unwrap_or_else(|poison| poison.into_inner());
        f(&mut log)
    }

    fn pending(&self) -> BTreeMap<Addr, Vec<Block>> {
        self.with_log(|log| log.pending.clone())
    }

    /// Bits flip in `block`'s newest value, as a write the stack did not make (the medium
    /// changed under it). False if the disk has stopped.
    fn rot(&self, block: Addr, byte: usize, mask: u8) -> bool {
        let Some(value) = self.sim.current_image().block(block).cloned() else {
            return false;
        };
        let value = rotted(&value, byte, mask);
        if self.sim.write(block, &value).is_err() {
            return false;
        }
        if self.record {
            self.with_log(|log| log.pending.entry(block).or_default().push(value));
        }
        true
    }
}

impl Disk for RawDisk {
    fn size_blocks(&self) -> u64 {
        self.sim.size_blocks()
    }
    fn read(&self, addr: Addr) -> txdisk_disk::Result<Block> {
        let result = self.sim.read(addr);
        if let Err(DiskError::ReadError { .. }) = result {
            self.with_log(|log| log.fallbacks.push(addr));
        }
        result
    }
    fn write(&self, addr: Addr, block: &Block) -> txdisk_disk::Result<()> {
        let op = self.sim.ops();
        let stopped = self.sim.is_crashed() || self.sim.is_failed();
        if self.lose_at == Some(op) && !stopped {
            self.sim.check_addr(addr)?;
            // The disk never sees it, so the next operation takes this number: lose one only.
            let lost = self.with_log(|log| {
                if log.lost.is_some() {
                    return false;
                }
                log.lost = Some(addr);
                log.writes.push((op, addr));
                true
            });
            if lost {
                return Ok(());
            }
        }
        self.sim.write(addr, block)?;
        let landed = match self.misdirect {
            Some((at, to)) if at == op => to,
            _ => addr,
        };
        self.with_log(|log| {
            log.writes.push((op, addr));
            if landed != addr {
                log.misdirected = Some((addr, landed));
            }
            if self.record {
                log.pending.entry(landed).or_default().push(block.clone());
            }
        });
        Ok(())
    }
    fn sync(&self) -> txdisk_disk::Result<()> {
        self.sim.sync()?;
        if self.record {
            self.with_log(|log| log.pending.clear());
        }
        Ok(())
    }
    fn check_rep(&self) {
        self.sim.check_rep();
    }
}

/// A member that failed for good, as the pair finds it at open: every call fails.
struct DeadDisk {
    size_blocks: u64,
}

impl Disk for DeadDisk {
    fn size_blocks(&self) -> u64 {
        self.size_blocks
    }
    fn read(&self, _addr: Addr) -> txdisk_disk::Result<Block> {
        Err(DiskError::Failed)
    }
    fn write(&self, _addr: Addr, _block: &Block) -> txdisk_disk::Result<()> {
        Err(DiskError::Failed)
    }
    fn sync(&self) -> txdisk_disk::Result<()> {
        Err(DiskError::Failed)
    }
}

/// A simulated disk as the stack opened it.
enum Member {
    Checked(Arc<Checked>),
    Dead,
}

impl Stack {
    /// Every block of a single checksummed disk outside the log's home region — the log's
    /// superblock, headers and records — verifies after recovery (the checksums' crash
    /// invariant, once recovery has rewritten what the crash cut short), but those damage
    /// struck. (Home blocks are the oracle's: it reads every one.)
    fn verify_metadata(
        &self,
        checked: &Checked,
        damaged: Option<&BTreeSet<Addr>>,
    ) -> Result<usize, String> {
        let home = self.geometry.log.data_start;
        let mut failing = 0;
        for addr in (0..checked.size_blocks()).filter(|&addr| addr < home) {
            failing += usize::from(!verify(checked, addr, damaged)?);
        }
        Ok(failing)
    }
}

/// Whether block `addr` of `checked` verifies; an error if it fails and damage did not strike
/// it.
fn verify(checked: &Checked, addr: Addr, damaged: Option<&BTreeSet<Addr>>) -> Result<bool, String> {
    match checked.verify(addr) {
        Ok(()) => Ok(true),
        Err(error) if error.is_bad_block() && damaged.is_some_and(|d| d.contains(&addr)) => {
            Ok(false)
        }
        Err(error) => Err(format!(
            "checksummed disk: after recovery, block {addr} fails: {error}"
        )),
    }
}

/// The deliberately wrong replicated variant: d2 silently drops every data write (above its
/// checksums, which therefore never see them: the pair's bug, not the disk's).
struct SkipDataWrites(Arc<dyn Disk>);

impl Disk for SkipDataWrites {
    fn size_blocks(&self) -> u64 {
        self.0.size_blocks()
    }
    fn read(&self, addr: Addr) -> txdisk_disk::Result<Block> {
        self.0.read(addr)
    }
    fn write(&self, addr: Addr, block: &Block) -> txdisk_disk::Result<()> {
        if addr >= RESERVED_BLOCKS {
            return self.0.check_addr(addr);
        }
        self.0.write(addr, block)
    }
    fn sync(&self) -> txdisk_disk::Result<()> {
        self.0.sync()
    }
    fn invalidate(&self, addr: Addr) -> txdisk_disk::Result<()> {
        self.0.invalidate(addr)
    }
    fn check_rep(&self) {
        self.0.check_rep();
    }
}

/// The simulated disks of one start of the stack.
pub(crate) struct Disks {
    pub sims: Vec<Arc<SimDisk>>,
    raws: Vec<Arc<RawDisk>>,
    history: Option<Arc<Mutex<PairHistory>>>,
    pair_reads: Arc<Mutex<Vec<Addr>>>,
    geometry: Geometry,
    /// Blocks damage struck, before this start and during it (rot; the misdirected and lost
    /// writes are read from the raw disks when asked).
    touched: Mutex<Option<Touched>>,
}

impl Disks {
    /// What the next start of the stack inherits from this one.
    pub fn env(&self) -> Env {
        let history = self
            .history
            .as_ref()
            .and_then(|h| h.lock().ok().map(|h| h.clone()));
        // The next start begins from a crash state (or a durable image): what was pending may
        // or may not be there.
        let history = history.map(|mut history| {
            history.crash();
            history
        });
        Env {
            dead: self.dead(),
            history,
            touched: self.touched(),
        }
    }

    /// The blocks damage has struck so far (of one disk: a workload damages one only).
    pub fn touched(&self) -> Option<Touched> {
        let mut touched = self
            .touched
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        for (disk, raw) in self.raws.iter().enumerate() {
            let (lost, misdirected) = raw.with_log(|log| (log.lost, log.misdirected));
            if let Some(from) = lost {
                let blocks = self.geometry.touched_by_write(from, None);
                Touched::add(&mut touched, disk, blocks);
            }
            if let Some((from, to)) = misdirected {
                let blocks = self.geometry.touched_by_write(from, Some(to));
                Touched::add(&mut touched, disk, blocks);
            }
        }
        touched
    }

    fn strike(&self, disk: usize, blocks: BTreeSet<Addr>) {
        let mut touched = self
            .touched
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        Touched::add(&mut touched, disk, blocks);
    }

    /// Bit rot now, between steps of a run: bits of `block`'s newest value on `disk` flip.
    pub fn rot(&self, disk: usize, block: Addr, byte: usize, mask: u8) {
        if self.raws[disk].rot(block, byte, mask) {
            self.strike(disk, self.geometry.touched_by_byte(block, byte));
        }
    }

    /// Whether a scheduled sync failure has struck one of the disks.
    pub fn sync_failed(&self) -> bool {
        self.sims.iter().any(|sim| sim.stats().failed_syncs > 0)
    }

    /// The operation numbers of every sync `disk` made.
    pub fn sync_ops(&self, disk: usize) -> Vec<u64> {
        let trace = self.sims[disk].trace();
        let syncs = trace.iter().enumerate();
        syncs
            .filter(|(_, kind)| **kind == txdisk_disk::OpKind::Sync)
            .map(|(op, _)| op as u64)
            .collect()
    }

    /// Blocks go bad now, between steps of a run (their reads fail until written).
    pub fn inject_read_errors(&self, blocks: &[(usize, Addr)]) {
        for &(disk, addr) in blocks {
            self.sims[disk].inject_read_error(addr);
        }
    }

    pub fn crashed(&self) -> bool {
        self.sims.iter().any(|sim| sim.is_crashed())
    }

    /// Crashes the machine: every disk stops where it is.
    pub fn crash_all(&self) {
        for sim in &self.sims {
            sim.crash_now();
        }
    }

    pub fn ops(&self) -> Vec<u64> {
        self.sims.iter().map(|sim| sim.ops()).collect()
    }

    pub fn durable_images(&self) -> Images {
        self.sims.iter().map(|sim| sim.durable_image()).collect()
    }

    pub fn dead(&self) -> [bool; 2] {
        let mut dead = [false; 2];
        for (index, sim) in self.sims.iter().enumerate() {
            dead[index] = sim.is_failed();
        }
        dead
    }

    /// Per disk, the writes since the last sync (recording runs only).
    pub fn pending(&self) -> Vec<BTreeMap<Addr, Vec<Block>>> {
        self.raws.iter().map(|raw| raw.pending()).collect()
    }

    /// Every address read through the pair (replicated runs), in order.
    pub fn pair_reads(&self) -> Vec<Addr> {
        self.pair_reads
            .lock()
            .map(|reads| reads.clone())
            .unwrap_or_default()
    }

    /// (operation, block) of every write the stack issued to `disk`.
    pub fn writes(&self, disk: usize) -> Vec<(u64, Addr)> {
        self.raws[disk].with_log(|log| log.writes.clone())
    }
}

/// A started stack: the logical disk, the pair under it in replicated runs, and the
/// checksummed disk of each simulated disk that opened.
pub(crate) struct Opened {
    pub disk: LogicalDisk,
    pub pair: Option<Arc<Pair>>,
    pub checked: Vec<Arc<Checked>>,
}

/// How to build the stack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stack {
    pub replicated: bool,
    pub torn: bool,
    pub bug: Option<Bug>,
    /// Keep every disk's writes since its last sync (the shrinker's runs).
    pub record: bool,
    pub geometry: Geometry,
}

pub(crate) fn log_options() -> LogOptions {
    LogOptions {
        background_installer: false,
        ..LogOptions::default()
    }
}

impl Stack {
    /// Disks holding `images`, with the dead ones failed, a crash scheduled, and `faults` (this
    /// epoch's) injected: bad blocks, a fail-stop, damage (bit rot at rest is in the disk's
    /// durable contents from the start; rot mid-run is the engine's, between steps).
    pub fn disks(
        &self,
        images: &[DiskImage],
        env: &Env,
        crash: Option<CrashAt>,
        faults: Option<&Faults>,
    ) -> Disks {
        let damage = faults.and_then(|faults| faults.damage);
        let mut touched = env.touched.clone();
        let sims: Vec<Arc<SimDisk>> = images
            .iter()
            .enumerate()
            .map(|(index, image)| match damage {
                Some(damage) if damage.disk == index => match damage.kind {
                    DamageKind::BitRot {
                        block,
                        byte,
                        mask,
                        at: RotAt::Rest,
                    } => {
                        let mut image = image.clone();
                        if let Some(value) = image.block(block) {
                            // In range: `block` answered.
                            let _ = image.set_block(block, rotted(value, byte, mask));
                            let blocks = self.geometry.touched_by_byte(block, byte);
                            Touched::add(&mut touched, index, blocks);
                        }
                        Arc::new(SimDisk::from_image(&image))
                    }
                    _ => Arc::new(SimDisk::from_image(image)),
                },
                _ => Arc::new(SimDisk::from_image(image)),
            })
            .collect();
        for (index, sim) in sims.iter().enumerate() {
            if env.dead[index] {
                sim.fail_now();
            }
        }
        if let Some(crash) = crash {
            sims[crash.disk].schedule_crash(crash.op);
        }
        let mut raws: Vec<RawDisk> = sims
            .iter()
            .map(|sim| RawDisk::new(Arc::clone(sim), self.record))
            .collect();
        if let Some(faults) = faults {
            if let Some(fail) = faults.fail_stop {
                sims[fail.disk].schedule_fail_stop(fail.op);
            }
            // Bad blocks that appear later are the engine's to inject, between steps.
            if faults.read_errors_before_step.is_none() {
                for &(disk, addr) in &faults.read_errors {
                    sims[disk].inject_read_error(addr);
                }
            }
            if let Some(at) = faults.sync_failure {
                sims[at.disk].schedule_sync_failure(at.op);
            }
        }
        if let Some(damage) = damage {
            match damage.kind {
                DamageKind::Misdirect { op, to } => {
                    sims[damage.disk].schedule_misdirected_write(op, to);
                    raws[damage.disk].misdirect = Some((op, to));
                }
                DamageKind::LostWrite { op } => raws[damage.disk].lose_at = Some(op),
                DamageKind::BitRot { .. } => {}
            }
        }
        let history = env.history.clone().map(|h| Arc::new(Mutex::new(h)));
        Disks {
            sims,
            raws: raws.into_iter().map(Arc::new).collect(),
            history,
            pair_reads: Arc::default(),
            geometry: self.geometry,
            touched: Mutex::new(touched),
        }
    }

    /// The checksummed disk on raw disk `index`, opened as after a restart. A disk that failed
    /// for good (before or during the open) is a dead member; a crash during the open is the
    /// error it is.
    fn member(&self, disks: &Disks, index: usize) -> Result<Member, String> {
        let raw = Arc::clone(&disks.raws[index]) as Arc<dyn Disk>;
        match IntegrityDisk::open(raw) {
            Ok(checked) => Ok(Member::Checked(Arc::new(checked))),
            Err(IntegrityError::Disk(DiskError::Failed)) if self.replicated => Ok(Member::Dead),
            Err(error) => Err(format!("checksummed disk d{} open: {error}", index + 1)),
        }
    }

    /// Starts the stack on `disks`: each checksummed disk's open, the pair's (its recovery),
    /// then the log's.
    pub fn open(&self, disks: &Disks) -> Result<Opened, String> {
        let mut members = Vec::with_capacity(disks.raws.len());
        for index in 0..disks.raws.len() {
            members.push(self.member(disks, index)?);
        }
        let checked: Vec<Arc<Checked>> = members
            .iter()
            .filter_map(|member| match member {
                Member::Checked(checked) => Some(Arc::clone(checked)),
                Member::Dead => None,
            })
            .collect();
        let size_blocks = self.geometry.checked.data_blocks;
        let mut members: Vec<Arc<dyn Disk>> = members
            .into_iter()
            .map(|member| match member {
                Member::Checked(checked) => checked as Arc<dyn Disk>,
                Member::Dead => Arc::new(DeadDisk { size_blocks }) as Arc<dyn Disk>,
            })
            .collect();
        if self.bug == Some(Bug::ReplicatedSkipsD2) && members.len() == 2 {
            members[1] = Arc::new(SkipDataWrites(Arc::clone(&members[1])));
        }
        let (base, pair): (Arc<dyn Disk>, Option<Arc<Pair>>) = if self.replicated {
            let d2 = members.pop().ok_or("replicated stack without d2")?;
            let d1 = members.pop().ok_or("replicated stack without d1")?;
            let pair = ReplicatedDisk::open(d1, d2, &mut |_| {})
                .map_err(|error| format!("replicated open: {error}"))?;
            let pair = Arc::new(pair);
            let base: Arc<dyn Disk> = match &disks.history {
                Some(history) => Arc::new(HistoryDisk {
                    pair: Arc::clone(&pair),
                    history: Arc::clone(history),
                    reads: Arc::clone(&disks.pair_reads),
                }),
                None => Arc::clone(&pair) as Arc<dyn Disk>,
            };
            (base, Some(pair))
        } else {
            (members.pop().ok_or("stack without a disk")?, None)
        };
        let disk = LogicalDisk::open(base, log_options())
            .map_err(|error| format!("logical disk open: {error}"))?;
        Ok(Opened {
            disk,
            pair,
            checked,
        })
    }

    /// Rep invariants of every layer; the pair's crash invariant (both replicas equal, every
    /// block a value written there, when the run kept the pair's history); and every block of
    /// a single checksummed disk verifying. A block damage struck (`touched`) may fail
    /// verification on the disk it struck: returns how many did.
    pub fn check(
        &self,
        opened: &Opened,
        disks: &Disks,
        touched: Option<&Touched>,
    ) -> Result<usize, String> {
        opened.disk.check_rep();
        let Some(pair) = &opened.pair else {
            let mut failing = 0;
            for checked in &opened.checked {
                failing += self.verify_metadata(checked, touched.map(|t| &t.blocks))?;
            }
            return Ok(failing);
        };
        pair.check_rep();
        let history = disks
            .history
            .as_ref()
            .and_then(|h| h.lock().ok().map(|h| h.clone()));
        let damaged = touched.map(|touched| {
            let role = if touched.disk == 0 {
                Role::D1
            } else {
                Role::D2
            };
            let blocks: BTreeSet<Addr> = touched
                .blocks
                .iter()
                .filter_map(|&addr| self.geometry.pair_addr(addr))
                .collect();
            (role, blocks)
        });
        match history {
            Some(history) => history.check(pair, self.torn, damaged.as_ref()),
            None => replicas_agree(pair)
                .map(|()| 0)
                .map_err(|violation| violation.to_string()),
        }
    }

    /// The repair check, between steps of a pair's run: every block whose read failed on one
    /// member (so the pair served the other's copy) reads right on that member now — the
    /// member's own checksummed disk, read directly — while both members are active.
    pub fn check_repairs(&self, opened: &Opened, disks: &Disks) -> Result<(), String> {
        let fallbacks: Vec<Vec<Addr>> = disks
            .raws
            .iter()
            .map(|raw| raw.with_log(|log| std::mem::take(&mut log.fallbacks)))
            .collect();
        let (Some(pair), [d1, d2]) = (&opened.pair, opened.checked.as_slice()) else {
            return Ok(());
        };
        let active = |role| pair.replica_status(role) == ReplicaStatus::Active;
        if !(active(Role::D1) && active(Role::D2)) {
            return Ok(());
        }
        let touched = disks.touched();
        let members = [(d1, d2), (d2, d1)];
        for (disk, ((bad, good), raws)) in members.iter().zip(&fallbacks).enumerate() {
            for &raw in raws {
                let Some(addr) = raw.checked_sub(self.geometry.checked.data_start) else {
                    continue;
                };
                // Damage on the same member may have struck it since: not the repair's fault.
                if touched
                    .as_ref()
                    .is_some_and(|t| t.disk == disk && t.blocks.contains(&addr))
                {
                    continue;
                }
                let Ok(expected) = good.read(addr) else {
                    if disks.crashed() {
                        return Ok(());
                    }
                    continue;
                };
                match bad.read(addr) {
                    Ok(found) if found == expected => {}
                    // These reads are operations too: the run's crash may come in one.
                    _ if disks.crashed() => return Ok(()),
                    found => {
                        let found = match found {
                            Ok(block) => format!("{block:?}"),
                            Err(error) => format!("an error ({error})"),
                        };
                        return Err(format!(
                            "repair: a read of d{} block {addr} failed and was served from d{}, \
                             yet d{} still reads {found}, expected {expected:?}",
                            disk + 1,
                            2 - disk,
                            disk + 1
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn state_counts(&self, disks: &Disks, dead: [bool; 2]) -> Vec<u128> {
        let counts = disks.sims.iter().enumerate();
        counts
            .map(|(index, sim)| {
                if dead[index] {
                    1
                } else {
                    sim.crash_state_count(self.torn)
                }
            })
            .collect()
    }

    /// How many crash states the crashed disks have together.
    pub fn state_count(&self, disks: &Disks, dead: [bool; 2]) -> u128 {
        self.state_counts(disks, dead)
            .iter()
            .fold(1u128, |acc, count| acc.saturating_mul(*count))
    }

    /// The chosen crash state of the crashed disks (a dead disk keeps its durable image).
    pub fn realize(&self, disks: &Disks, dead: [bool; 2], choice: StateChoice) -> Images {
        match choice {
            StateChoice::Nth(mut index) => {
                let counts = self.state_counts(disks, dead);
                let mut images = Vec::with_capacity(disks.sims.len());
                for (sim, count) in disks.sims.iter().zip(counts) {
                    let count = u64::try_from(count).unwrap_or(u64::MAX).max(1);
                    let pick = index % count;
                    index /= count;
                    images.push(
                        sim.nth_crash_state(self.torn, u128::from(pick))
                            .unwrap_or_else(|| sim.durable_image()),
                    );
                }
                images
            }
            StateChoice::Random(seed) => {
                let mut rng = SplitMix64::new(seed);
                let images = disks.sims.iter().enumerate();
                images
                    .map(|(index, sim)| {
                        if dead[index] {
                            sim.durable_image()
                        } else {
                            sim.random_crash_state(&mut rng, self.torn)
                        }
                    })
                    .collect()
            }
        }
    }

    /// The crash state closest to `wanted` (per disk, blocks that differ from the durable
    /// image): each wanted block is kept where every sector of it is the durable value's or a
    /// pending write's (torn mode: sector by sector; otherwise a whole pending write), else the
    /// durable value. Recording runs only.
    pub fn realize_explicit(
        &self,
        disks: &Disks,
        dead: [bool; 2],
        wanted: &[BTreeMap<Addr, Block>],
    ) -> Images {
        let pending = disks.pending();
        let mut images = disks.durable_images();
        for (index, image) in images.iter_mut().enumerate() {
            if dead[index] {
                continue;
            }
            let (Some(wanted), Some(pending)) = (wanted.get(index), pending.get(index)) else {
                continue;
            };
            for (&addr, block) in wanted {
                let Some(durable) = image.block(addr).cloned() else {
                    continue;
                };
                let values = pending.get(&addr).map(Vec::as_slice).unwrap_or(&[]);
                if self.is_crash_value(block, &durable, values) {
                    // In range: `block(addr)` answered above.
                    let _ = image.set_block(addr, block.clone());
                }
            }
        }
        images
    }

    fn is_crash_value(&self, block: &Block, durable: &Block, pending: &[Block]) -> bool {
        if !self.torn {
            return pending.contains(block);
        }
        (0..SECTORS_PER_BLOCK).all(|sector| {
            let wanted = block.sector(sector);
            durable.sector(sector) == wanted
                || pending.iter().any(|value| value.sector(sector) == wanted)
        })
    }
}

/// Per disk, the blocks at which `images` differ from the durable images of `disks`.
pub(crate) fn differences(disks: &Disks, images: &[DiskImage]) -> Vec<BTreeMap<Addr, Block>> {
    let durable = disks.durable_images();
    durable
        .iter()
        .zip(images)
        .map(|(base, image)| {
            base.diff(image)
                .into_iter()
                .filter_map(|addr| Some((addr, image.block(addr)?.clone())))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use txdisk_disk::Damage;

    /// A checksummed disk over a raw disk that loses the write numbered `lose_at`.
    fn checked_over(sim: &Arc<SimDisk>, lose_at: u64) -> (Arc<RawDisk>, Checked) {
        let mut raw = RawDisk::new(Arc::clone(sim), false);
        raw.lose_at = Some(lose_at);
        let raw = Arc::new(raw);
        let checked = IntegrityDisk::open(Arc::clone(&raw) as Arc<dyn Disk>).expect("open");
        (raw, checked)
    }

    #[test]
    fn a_lost_write_is_acknowledged_never_applied_and_read_as_stale() {
        let sim = Arc::new(SimDisk::new(64));
        let checked =
            IntegrityDisk::format_with_salt(Arc::clone(&sim) as Arc<dyn Disk>, 1).expect("format");
        checked.write(3, &Block::filled(1)).expect("write");
        checked.sync().expect("sync");
        let data_start = checked.superblock().data_start;
        drop(checked);
        let image = sim.durable_image();
        // The data write is one of the first operations after the open (which reads the
        // superblocks, and the write its tag block): lose each in turn until it is the one.
        let lost_data_write = (0..8).find_map(|offset| {
            let sim = Arc::new(SimDisk::from_image(&image));
            let (raw, checked) = checked_over(&sim, offset);
            checked.write(3, &Block::filled(2)).expect("acknowledged");
            let lost = raw.with_log(|log| log.lost);
            (lost == Some(data_start + 3)).then_some((raw, checked))
        });
        let Some((raw, checked)) = lost_data_write else {
            panic!("no operation of the open and the write was the data write")
        };
        checked.write(4, &Block::filled(3)).expect("the next write");
        assert!(
            matches!(
                checked.read(3),
                Err(DiskError::Corrupt {
                    addr: 3,
                    damage: Damage::Stale
                })
            ),
            "a lost write reads as the block's previous contents, refused"
        );
        assert_eq!(
            checked.read(4).ok(),
            Some(Block::filled(3)),
            "one write lost only"
        );
        assert_eq!(raw.with_log(|log| log.lost), Some(data_start + 3));
    }
}
