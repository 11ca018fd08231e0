//! The stack under test on simulated disks: building the disks from images with their faults,
//! opening (recovering) the stack, choosing crash states, and the checks every recovered stack
//! must pass.

use crate::config::Bug;
use crate::history::PairHistory;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Addr, Block, Disk, DiskImage, SimDisk, SECTORS_PER_BLOCK};
use txdisk_log::LogOptions;
use txdisk_logical::LogicalDisk;
use txdisk_replicated::{replicas_agree, ReplicatedDisk, RESERVED_BLOCKS};

pub(crate) type Images = Vec<DiskImage>;
pub(crate) type Pair = ReplicatedDisk<Arc<dyn Disk>>;

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

/// Faults of the first epoch of a workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Faults {
    pub fail_stop: Option<CrashAt>,
    /// (disk, physical block) whose reads fail until written, during the first epoch's run.
    /// (Not across a restart: a block gone bad while the pair is at rest and clean is a latent
    /// error that only a scrub finds, which `open` does not claim to do.)
    pub read_errors: Vec<(usize, Addr)>,
    /// The write at this operation lands at this block instead.
    pub misdirect: Option<(CrashAt, Addr)>,
}

/// What persists from one start of the stack to the next: dead members, and (replicated
/// runs) what was written to the pair, for its crash invariant.
#[derive(Clone, Debug, Default)]
pub(crate) struct Env {
    pub dead: [bool; 2],
    pub history: Option<PairHistory>,
}

/// The pair as the log sees it, recording every write (before it is issued: a crash may land
/// it) and every successful sync in the pair's history.
pub(crate) struct HistoryDisk {
    pub pair: Arc<Pair>,
    pub history: Arc<Mutex<PairHistory>>,
}

impl Disk for HistoryDisk {
    fn size_blocks(&self) -> u64 {
        self.pair.size_blocks()
    }
    fn read(&self, addr: Addr) -> txdisk_disk::Result<Block> {
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

/// Records, per block, the writes not yet made durable by a successful sync (the value sets of
/// the `SimDisk` below), so that the shrinker can check that a chosen state is a crash state.
pub(crate) struct Recorder {
    sim: Arc<SimDisk>,
    pending: Mutex<BTreeMap<Addr, Vec<Block>>>,
}

impl Recorder {
    fn pending(&self) -> BTreeMap<Addr, Vec<Block>> {
        self.pending
            .lock()
            .map(|pending| pending.clone())
            .unwrap_or_default()
    }
}

impl Disk for Recorder {
    fn size_blocks(&self) -> u64 {
        self.sim.size_blocks()
    }
    fn read(&self, addr: Addr) -> txdisk_disk::Result<Block> {
        self.sim.read(addr)
    }
    fn write(&self, addr: Addr, block: &Block) -> txdisk_disk::Result<()> {
        self.sim.write(addr, block)?;
        if let Ok(mut pending) = self.pending.lock() {
            pending.entry(addr).or_default().push(block.clone());
        }
        Ok(())
    }
    fn sync(&self) -> txdisk_disk::Result<()> {
        self.sim.sync()?;
        if let Ok(mut pending) = self.pending.lock() {
            pending.clear();
        }
        Ok(())
    }
    fn check_rep(&self) {
        self.sim.check_rep();
    }
}

/// The deliberately wrong replicated variant: d2 silently drops every data write.
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
    fn check_rep(&self) {
        self.0.check_rep();
    }
}

/// The simulated disks of one start of the stack.
pub(crate) struct Disks {
    pub sims: Vec<Arc<SimDisk>>,
    recorders: Vec<Arc<Recorder>>,
    history: Option<Arc<Mutex<PairHistory>>>,
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
        self.recorders
            .iter()
            .map(|recorder| recorder.pending())
            .collect()
    }
}

/// A started stack: the logical disk, and the pair under it in replicated runs.
pub(crate) struct Opened {
    pub disk: LogicalDisk,
    pub pair: Option<Arc<Pair>>,
}

/// How to build the stack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stack {
    pub replicated: bool,
    pub torn: bool,
    pub bug: Option<Bug>,
    /// Wrap every disk in a [`Recorder`] (the shrinker's runs).
    pub record: bool,
}

pub(crate) fn log_options() -> LogOptions {
    LogOptions {
        background_installer: false,
        ..LogOptions::default()
    }
}

impl Stack {
    /// Disks holding `images`, with the dead ones failed, the bad blocks injected, and a crash
    /// and the first-epoch faults scheduled.
    pub fn disks(
        &self,
        images: &[DiskImage],
        env: &Env,
        crash: Option<CrashAt>,
        faults: Option<&Faults>,
    ) -> Disks {
        let sims: Vec<Arc<SimDisk>> = images
            .iter()
            .map(|image| Arc::new(SimDisk::from_image(image)))
            .collect();
        for (index, sim) in sims.iter().enumerate() {
            if env.dead[index] {
                sim.fail_now();
            }
        }
        if let Some(crash) = crash {
            sims[crash.disk].schedule_crash(crash.op);
        }
        if let Some(faults) = faults {
            if let Some(fail) = faults.fail_stop {
                sims[fail.disk].schedule_fail_stop(fail.op);
            }
            for &(disk, addr) in &faults.read_errors {
                sims[disk].inject_read_error(addr);
            }
            if let Some((at, to)) = faults.misdirect {
                sims[at.disk].schedule_misdirected_write(at.op, to);
            }
        }
        let recorders = if self.record {
            sims.iter()
                .map(|sim| {
                    Arc::new(Recorder {
                        sim: Arc::clone(sim),
                        pending: Mutex::new(BTreeMap::new()),
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let history = env.history.clone().map(|h| Arc::new(Mutex::new(h)));
        Disks {
            sims,
            recorders,
            history,
        }
    }

    fn members(&self, disks: &Disks) -> Vec<Arc<dyn Disk>> {
        let mut members: Vec<Arc<dyn Disk>> = if self.record {
            disks
                .recorders
                .iter()
                .map(|r| Arc::clone(r) as Arc<dyn Disk>)
                .collect()
        } else {
            disks
                .sims
                .iter()
                .map(|s| Arc::clone(s) as Arc<dyn Disk>)
                .collect()
        };
        if self.bug == Some(Bug::ReplicatedSkipsD2) && members.len() == 2 {
            members[1] = Arc::new(SkipDataWrites(Arc::clone(&members[1])));
        }
        members
    }

    /// Starts the stack on `disks`: the pair's open (its recovery), then the log's.
    pub fn open(&self, disks: &Disks) -> Result<Opened, String> {
        let mut members = self.members(disks);
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
                }),
                None => Arc::clone(&pair) as Arc<dyn Disk>,
            };
            (base, Some(pair))
        } else {
            (members.pop().ok_or("stack without a disk")?, None)
        };
        let disk = LogicalDisk::open(base, log_options())
            .map_err(|error| format!("logical disk open: {error}"))?;
        Ok(Opened { disk, pair })
    }

    /// Rep invariants of every layer and the pair's crash invariant: both replicas equal, every
    /// block a value written there (when the run kept the pair's history).
    pub fn check(&self, opened: &Opened, disks: &Disks) -> Result<(), String> {
        opened.disk.check_rep();
        if let Some(pair) = &opened.pair {
            pair.check_rep();
            let history = disks
                .history
                .as_ref()
                .and_then(|h| h.lock().ok().map(|h| h.clone()));
            match history {
                Some(history) => history.check(pair, self.torn)?,
                None => replicas_agree(pair).map_err(|violation| violation.to_string())?,
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
