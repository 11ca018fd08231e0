//! The primitives every run is made of: the starting image, workloads generated from a seed,
//! running an epoch of a workload up to a crash, crashing a recovery, and recovering to the end
//! with every check. The fuzzing loop and the replayer are both built from these, so a replayed
//! path runs exactly the code the fuzzer ran.

use crate::config::FuzzConfig;
use crate::error::FuzzError;
use crate::faults::{DamagePlan, Faults, Geometry, MidRunRot};
use crate::guard::guarded;
use crate::history::PairHistory;
use crate::layer::{is_damaged_block, ApplyError, CommitKind, FuzzLayer};
use crate::report::ViolationKind;
use crate::stack::{
    log_options, CrashAt, Disks, Env, HistoryDisk, Images, Interrupt, Stack, StateChoice,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Addr, Disk, SimDisk};
use txdisk_integrity::format::Superblock as CheckedLayout;
use txdisk_integrity::IntegrityDisk;
use txdisk_log::Log;
use txdisk_logical::LogicalDisk;
use txdisk_replicated::{FormatOptions, ReplicatedDisk, RESERVED_BLOCKS};

/// One step of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step<Op> {
    Op(Op),
    Flush,
    Install,
}

/// A workload: its epochs (run, crash, recover, run the next, ...) and its faults.
#[derive(Clone, Debug)]
pub(crate) struct Workload<Op> {
    pub epochs: Vec<Vec<Step<Op>>>,
    pub faults: Faults,
}

/// Where one epoch was cut: the crash point, the crash state, and the crashes of recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    /// `None`: the epoch ran to its end, then the machine crashed.
    pub crash: Option<CrashAt>,
    pub state: StateChoice,
    pub recovery: Vec<(Interrupt, StateChoice)>,
}

/// Everything that decides one checked state: the workload and the cut of each epoch run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Path {
    pub workload: u64,
    pub cuts: Vec<Cut>,
}

/// An epoch run up to its crash.
pub(crate) struct Run {
    pub disks: Disks,
    /// Commits called (the prefixes allowed end here) and known durable (they start here).
    pub called: usize,
    pub durable: usize,
    /// Operations of each disk before each step (and, last, at the end).
    pub boundaries: Vec<Vec<u64>>,
    /// A failure that was not the crash: an operation that erred or panicked.
    pub failure: Option<(ViolationKind, String)>,
    /// A sync failed on a single disk and the stack stopped as it must: `called` stops at the
    /// step whose sync failed (every later one failed, and none may be recovered).
    pub sync_failed: bool,
}

/// A state recovered to the end and checked.
pub(crate) struct Recovered {
    /// Operations recovery made on each disk.
    pub ops: Vec<u64>,
    /// The disks after recovery (durable: recovery syncs what it writes).
    pub images: Images,
    /// Which prefix the contents matched.
    pub matched: usize,
    /// Blocks damage struck that still failed verification (read as errors on a single disk;
    /// served from the other member on a pair).
    pub damaged_failing: usize,
    /// What the next start inherits.
    pub env: Env,
}

pub(crate) type Failure = (ViolationKind, String);

/// Bad blocks that appear before a step of the run: (step, [(disk, raw block)]).
type LateBadBlocks = (usize, Vec<(usize, Addr)>);

/// SplitMix64 finaliser over two words: independent streams per (seed, index).
pub(crate) fn mix(seed: u64, index: u64) -> u64 {
    SplitMix64::new(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)).next_u64()
}

pub(crate) struct Engine<'a, L: FuzzLayer> {
    pub layer: &'a L,
    pub cfg: &'a FuzzConfig,
    pub stack: Stack,
    pub base: Images,
    pub data_blocks: u64,
    /// What the first start of every workload inherits.
    pub base_env: Env,
}

impl<'a, L: FuzzLayer> Engine<'a, L> {
    pub fn new(
        layer: &'a L,
        cfg: &'a FuzzConfig,
        record: bool,
    ) -> Result<Engine<'a, L>, FuzzError> {
        cfg.validate()?;
        if !cfg.replicated && cfg.damage().any() && !layer.reads_damaged_blocks() {
            return Err(FuzzError::BadConfig {
                reason: format!(
                    "damage on a single disk needs a layer that reads a damaged block as an \
                     error (FuzzLayer::reads_damaged_blocks), which {:?} does not: damage a \
                     replicated pair instead",
                    layer.name()
                ),
            });
        }
        let (base, data_blocks, base_env, geometry) =
            base_images(layer, cfg).map_err(|detail| FuzzError::Setup { detail })?;
        let stack = Stack {
            replicated: cfg.replicated,
            torn: cfg.torn,
            bug: cfg.bug,
            record,
            geometry,
        };
        Ok(Engine {
            layer,
            cfg,
            stack,
            base,
            data_blocks,
            base_env,
        })
    }

    /// The workload numbered `index`, the same for every run of this configuration.
    pub fn workload(&self, index: u64) -> Workload<L::Op> {
        let mut rng = SplitMix64::new(mix(self.cfg.seed, index));
        let mut model = self.layer.initial_model();
        let mut epochs = Vec::new();
        for epoch in 0..self.cfg.epochs {
            let len = if epoch == 0 {
                self.cfg.workload_len
            } else {
                (self.cfg.workload_len / 2).max(1)
            };
            let steps: Vec<Step<L::Op>> = (0..len)
                .map(|_| self.random_step(&mut rng, &mut model))
                .collect();
            epochs.push(steps);
        }
        let faults = self.random_faults(&mut rng, &epochs);
        Workload { epochs, faults }
    }

    fn random_step(&self, rng: &mut SplitMix64, model: &mut L::Model) -> Step<L::Op> {
        match rng.below(10) {
            0 => Step::Flush,
            1 => Step::Install,
            _ => {
                let op = self.layer.random_op(rng, model, self.data_blocks);
                if self.layer.commit_kind(&op) != CommitKind::None {
                    self.layer.model_apply(model, &op);
                }
                Step::Op(op)
            }
        }
    }

    /// Replicated runs: nothing, the fail-stop of one disk at a random operation, or bad blocks
    /// on one disk. With damage asked for, every other workload also gets one damage, on the
    /// same disk (`faults`).
    fn random_faults(&self, rng: &mut SplitMix64, epochs: &[Vec<Step<L::Op>>]) -> Faults {
        let mut faults = Faults::default();
        let damage = self.cfg.damage();
        let sync_failure = self.cfg.sync_failures && rng.chance(1, 4);
        if !self.cfg.replicated && !damage.any() && !sync_failure {
            return faults;
        }
        let initial = self.layer.initial_model();
        let clean = self.run_epoch(&self.base, &self.base_env, &initial, None, None, &epochs[0]);
        let ops = clean.disks.ops();
        let geometry = &self.stack.geometry;
        let mut disk = if self.cfg.replicated {
            rng.below(2) as usize
        } else {
            0
        };
        if self.cfg.replicated {
            match rng.below(3) {
                0 => {}
                1 => {
                    faults.fail_stop = Some(CrashAt {
                        disk,
                        op: rng.below(ops[disk] + 1),
                    })
                }
                _ => {
                    // The pair's data blocks only: a bad metadata slot is the pair's metadata
                    // layer's business, tested there.
                    let start = geometry.checked.data_start + geometry.pair_blocks;
                    let data = geometry.checked.data_blocks - geometry.pair_blocks;
                    // Mostly on d1, which the pair reads first: a bad block on d2 is met
                    // only by a resync (every later fault of the workload strikes it too).
                    if rng.chance(3, 4) {
                        disk = 0;
                    }
                    // Mostly home blocks the workload's reads meet through the pair, so that a read falls back to the other
                    // member and repairs this one — and the repair check sees it. (Blocks only
                    // written meet the checksummed disk's own read before the write, which a
                    // bad block does not trouble.)
                    let read: Vec<Addr> = clean
                        .disks
                        .pair_reads()
                        .into_iter()
                        .filter(|&addr| addr >= geometry.log.data_start)
                        .map(|addr| start + addr)
                        .filter(|&raw| raw < start + data)
                        .collect();
                    if rng.chance(3, 4) && !epochs[0].is_empty() {
                        let step = rng.below(epochs[0].len() as u64) as usize;
                        faults.read_errors_before_step = Some(step);
                    }
                    for _ in 0..1 + rng.below(2) {
                        let addr = if !read.is_empty() && rng.chance(3, 4) {
                            read[rng.below(read.len() as u64) as usize]
                        } else {
                            start + rng.below(data)
                        };
                        faults.read_errors.push((disk, addr));
                    }
                }
            }
        }
        if sync_failure {
            // Any sync of the run: the log's flushes, its installations, the pair's bitmap.
            let syncs = clean.disks.sync_ops(disk);
            if !syncs.is_empty() {
                let op = syncs[rng.below(syncs.len() as u64) as usize];
                faults.sync_failure = Some(CrashAt { disk, op });
            }
        }
        let steps: Vec<usize> = epochs.iter().map(Vec::len).collect();
        let writes = clean.disks.writes(disk);
        let plan = DamagePlan {
            kinds: damage,
            geometry,
            replicated: self.cfg.replicated,
            disk,
            writes: &writes,
            steps: &steps,
        };
        faults.damage = plan.draw(rng);
        faults
    }

    /// The model after each prefix of the commits of `steps`, from `start`.
    pub fn prefix_models(&self, start: &L::Model, steps: &[Step<L::Op>]) -> Vec<L::Model> {
        let mut models = vec![start.clone()];
        for step in steps {
            if let Step::Op(op) = step {
                if self.layer.commit_kind(op) != CommitKind::None {
                    let mut next = models[models.len() - 1].clone();
                    self.layer.model_apply(&mut next, op);
                    models.push(next);
                }
            }
        }
        models
    }

    /// Starts the stack on `images` (whose contents are `model`) with this epoch's `faults` and
    /// runs `steps` until the crash (or the end); then the machine crashes. Every operation's
    /// reads are checked against the model as it runs, and every layer's rep invariant after
    /// every step.
    pub fn run_epoch(
        &self,
        images: &[txdisk_disk::DiskImage],
        env: &Env,
        model: &L::Model,
        faults: Option<&Faults>,
        crash: Option<CrashAt>,
        steps: &[Step<L::Op>],
    ) -> Run {
        let disks = self.stack.disks(images, env, crash, faults);
        let mut run = Run {
            disks,
            called: 0,
            durable: 0,
            boundaries: Vec::new(),
            failure: None,
            sync_failed: false,
        };
        let rot = faults.and_then(Faults::mid_run_rot);
        let late_bad = faults.and_then(|faults| {
            let step = faults.read_errors_before_step?;
            Some((step, faults.read_errors.clone()))
        });
        let mut live = model.clone();
        let outcome =
            guarded(|| self.run_steps(&mut run, &mut live, steps, (rot, late_bad.as_ref())));
        if let Err(panic) = outcome {
            run.failure = Some((ViolationKind::Panic, panic));
        }
        run.disks.crash_all();
        run
    }

    fn run_steps(
        &self,
        run: &mut Run,
        live: &mut L::Model,
        steps: &[Step<L::Op>],
        (rot, late_bad): (Option<MidRunRot>, Option<&LateBadBlocks>),
    ) {
        let opened = match self.stack.open(&run.disks) {
            Ok(opened) => opened,
            Err(error) => {
                if run.disks.crashed() {
                    return;
                }
                if self.gated(run) {
                    run.sync_failed = true;
                    return;
                }
                run.failure = Some((
                    ViolationKind::OperationFailed,
                    format!("open before the workload: {error}"),
                ));
                return;
            }
        };
        for (index, step) in steps.iter().enumerate() {
            run.boundaries.push(run.disks.ops());
            if let Some(rot) = rot.filter(|rot| rot.step == index) {
                run.disks.rot(rot.disk, rot.block, rot.byte, rot.mask);
            }
            if let Some((_, blocks)) = late_bad.filter(|(step, _)| *step == index) {
                run.disks.inject_read_errors(blocks);
            }
            let failed_before = self.gated(run);
            match self.run_step(run, live, &opened.disk, step) {
                Ok(()) if !failed_before && self.gated(run) => {
                    let detail = format!(
                        "fsync gate: a sync failed during step {index} ({step:?}), which \
                         returned Ok: writes the failed sync lost were reported durable"
                    );
                    run.failure = Some((ViolationKind::Oracle, detail));
                    return;
                }
                Ok(()) => {}
                Err(ApplyError::Oracle(message)) => {
                    let detail = format!("step {index} ({step:?}): {message}");
                    run.failure = Some((ViolationKind::Oracle, detail));
                    return;
                }
                Err(ApplyError::Stack(_)) if !run.disks.crashed() && self.gated(run) => {
                    run.sync_failed = true;
                    run.failure = self.after_failed_sync(run, live, &opened.disk, steps, index);
                    return;
                }
                // On a single disk a block damage struck reads as an error, never as other
                // bytes: the read was right, and the run stops there as if it crashed.
                Err(ApplyError::Stack(error)) if self.damaged_read(run, &error) => return,
                Err(ApplyError::Stack(error)) => {
                    if !run.disks.crashed() {
                        let detail =
                            format!("step {index} ({step:?}) failed without a crash: {error}");
                        run.failure = Some((ViolationKind::OperationFailed, detail));
                    }
                    return;
                }
            }
            // Every layer's rep invariant, from the logical disk down to the simulated disks
            // (each calls the one below first): explicit, so that release builds check too.
            opened.disk.check_rep();
            if let Err(message) = self.stack.check_repairs(&opened, &run.disks) {
                let detail = format!("after step {index} ({step:?}): {message}");
                run.failure = Some((ViolationKind::Invariant, detail));
                return;
            }
        }
        run.boundaries.push(run.disks.ops());
    }

    /// Whether `error` is a read of a home block that damage struck on a single disk.
    fn damaged_read(&self, run: &Run, error: &txdisk_logical::LogicalError) -> bool {
        if self.cfg.replicated || !is_damaged_block(error) {
            return false;
        }
        let addr = match error {
            txdisk_logical::LogicalError::Image(txdisk_log::LogError::DamagedBlock {
                addr,
                ..
            }) => *addr,
            _ => return false,
        };
        let touched = run.disks.touched();
        touched.is_some_and(|touched| {
            let logical = touched.blocks.iter();
            logical
                .filter_map(|&block| self.stack.geometry.logical_addr(block))
                .any(|block| block == addr)
        })
    }

    /// Whether the fsync gate applies: a sync failed on a single disk (a pair fails the member
    /// whose sync failed and goes on with the other).
    fn gated(&self, run: &Run) -> bool {
        !self.cfg.replicated && run.disks.sync_failed()
    }

    /// The fsync gate after the sync failure that stopped step `failed`: every later commit,
    /// flush and installation fails too (nothing written since the last good sync may be
    /// reported durable), and recovery keeps every acknowledged commit and none of those later
    /// steps. (Not exactly the acknowledged ones: a commit that finds the log full flushes the
    /// commits before it, durably, before the installation whose sync may be the one failing.)
    fn after_failed_sync(
        &self,
        run: &mut Run,
        live: &mut L::Model,
        disk: &LogicalDisk,
        steps: &[Step<L::Op>],
        failed: usize,
    ) -> Option<Failure> {
        let called = run.called;
        for (index, step) in steps.iter().enumerate().skip(failed + 1) {
            let commits = match step {
                Step::Op(op) => self.layer.commit_kind(op) != CommitKind::None,
                Step::Flush | Step::Install => true,
            };
            let durable = run.durable;
            let outcome = self.run_step(run, live, disk, step);
            run.durable = durable;
            if commits && outcome.is_ok() {
                let detail = format!(
                    "fsync gate: a sync failed in step {failed}, yet step {index} ({step:?}) \
                     returned Ok: a stack must stop after a failed sync"
                );
                return Some((ViolationKind::Oracle, detail));
            }
        }
        run.called = called;
        None
    }

    fn run_step(
        &self,
        run: &mut Run,
        live: &mut L::Model,
        disk: &LogicalDisk,
        step: &Step<L::Op>,
    ) -> Result<(), ApplyError> {
        match step {
            Step::Op(op) => {
                let kind = self.layer.commit_kind(op);
                if kind != CommitKind::None {
                    run.called += 1;
                }
                self.layer.apply_checked(disk, op, live)?;
                if kind != CommitKind::None {
                    self.layer.model_apply(live, op);
                }
                if kind == CommitKind::Durable {
                    run.durable = run.called;
                }
            }
            Step::Flush => {
                disk.flush()?;
                run.durable = run.called;
            }
            Step::Install => {
                disk.install()?;
            }
        }
        Ok(())
    }

    /// Runs recovery on `images` cut short by `interrupt`; returns the crashed disks (a disk
    /// failed by the interrupt is dead in them).
    pub fn crash_recovery(
        &self,
        images: &[txdisk_disk::DiskImage],
        env: &Env,
        interrupt: Interrupt,
    ) -> Result<Disks, Failure> {
        let fail = Faults {
            fail_stop: Some(interrupt.at),
            ..Faults::default()
        };
        let disks = if interrupt.fail_stop {
            self.stack.disks(images, env, None, Some(&fail))
        } else {
            self.stack.disks(images, env, Some(interrupt.at), None)
        };
        let outcome = guarded(|| {
            let opened = self.stack.open(&disks)?;
            self.layer.recover(&opened.disk)
        });
        match outcome {
            Err(panic) => return Err((ViolationKind::Panic, panic)),
            Ok(Err(error)) if !disks.crashed() => {
                return Err((ViolationKind::RecoveryFailed, error))
            }
            Ok(_) => {}
        }
        disks.crash_all();
        Ok(disks)
    }

    /// Recovers `images` to the end and checks it: every layer's invariants, the pair's crash
    /// invariant, the layer's invariant, and the contents against the allowed prefixes.
    pub fn recover_check(
        &self,
        images: &[txdisk_disk::DiskImage],
        env: &Env,
        allowed: &[L::Model],
        min_index: usize,
    ) -> Result<Recovered, Failure> {
        let disks = self.stack.disks(images, env, None, None);
        // On a single disk, a home block damage struck may read as an error (never as other
        // bytes); a pair serves every block from its good copy.
        let damaged: BTreeSet<Addr> = match (&env.touched, self.cfg.replicated) {
            (Some(touched), false) => touched
                .blocks
                .iter()
                .filter_map(|&addr| self.stack.geometry.logical_addr(addr))
                .collect(),
            _ => BTreeSet::new(),
        };
        let outcome = guarded(|| -> Result<(usize, usize), Failure> {
            let opened = self
                .stack
                .open(&disks)
                .map_err(|e| (ViolationKind::RecoveryFailed, e))?;
            self.layer.recover(&opened.disk).map_err(|e| {
                (
                    ViolationKind::RecoveryFailed,
                    format!("layer recovery: {e}"),
                )
            })?;
            let failing = self
                .stack
                .check(&opened, &disks, env.touched.as_ref())
                .map_err(|e| (ViolationKind::Invariant, e))?;
            self.layer
                .check(&opened.disk)
                .map_err(|e| (ViolationKind::Invariant, e))?;
            if damaged.is_empty() {
                let found = self
                    .layer
                    .observe(&opened.disk)
                    .map_err(|e| (ViolationKind::RecoveryFailed, e))?;
                let matched = self
                    .layer
                    .match_prefix(&found, allowed, min_index)
                    .map_err(|e| (ViolationKind::Oracle, e))?;
                return Ok((matched, failing));
            }
            let (found, unreadable) = self
                .layer
                .observe_damaged(&opened.disk, &damaged)
                .map_err(|e| (ViolationKind::RecoveryFailed, e))?;
            let matched = self
                .layer
                .match_prefix_except(&found, &unreadable, allowed, min_index)
                .map_err(|e| (ViolationKind::Oracle, e))?;
            Ok((matched, failing + unreadable.len()))
        });
        let (matched, damaged_failing) =
            outcome.unwrap_or_else(|panic| Err((ViolationKind::Panic, panic)))?;
        Ok(Recovered {
            ops: disks.ops(),
            images: disks.durable_images(),
            matched,
            damaged_failing,
            env: disks.env(),
        })
    }

    /// Every crash point of a run that made `ops` operations per disk: each operation of each
    /// live disk, then the end.
    pub fn crash_points(&self, ops: &[u64], dead: [bool; 2]) -> Vec<Option<CrashAt>> {
        let mut points = Vec::new();
        for (disk, &count) in ops.iter().enumerate() {
            if !dead[disk] {
                points.extend((0..count).map(|op| Some(CrashAt { disk, op })));
            }
        }
        points.push(None);
        points
    }
}

/// Each simulated disk formatted as a checksummed disk, and their (common) layout.
fn format_checked(
    cfg: &FuzzConfig,
    sims: &[Arc<SimDisk>],
) -> Result<(Vec<Arc<dyn Disk>>, CheckedLayout), String> {
    let mut checked: Vec<Arc<dyn Disk>> = Vec::with_capacity(sims.len());
    let mut layout = None;
    for (index, sim) in sims.iter().enumerate() {
        // A salt of the seed's: every run of a configuration formats the same images.
        let salt = mix(cfg.seed, 0x1e67 + index as u64);
        let disk = IntegrityDisk::format_with_salt(Arc::clone(sim) as Arc<dyn Disk>, salt)
            .map_err(|e| format!("checksummed disk format: {e}"))?;
        layout = Some(*disk.superblock());
        checked.push(Arc::new(disk));
    }
    let layout = layout.ok_or("no disk to format")?;
    Ok((checked, layout))
}

/// The formatted starting image(s) with the layer set up — each simulated disk checksummed,
/// then the pair (replicated runs), the log and the layer — the data blocks the log offers,
/// what the next start inherits (the pair's write history in replicated runs), and where
/// everything is.
fn base_images<L: FuzzLayer>(
    layer: &L,
    cfg: &FuzzConfig,
) -> Result<(Images, u64, Env, Geometry), String> {
    let count = if cfg.replicated { 2 } else { 1 };
    let sims: Vec<Arc<SimDisk>> = (0..count)
        .map(|_| Arc::new(SimDisk::new(cfg.disk_blocks)))
        .collect();
    let (checked, checked_layout) = format_checked(cfg, &sims)?;
    let mut checked = checked.into_iter();
    let mut history: Option<Arc<Mutex<PairHistory>>> = None;
    let disk: Arc<dyn Disk> = match (checked.next(), checked.next()) {
        (Some(d1), Some(d2)) => {
            let options = FormatOptions {
                pair_id: Some(mix(cfg.seed, 0x9a17).max(1)),
                assume_equal: true,
                ..Default::default()
            };
            ReplicatedDisk::format(&d1, &d2, &options)
                .map_err(|e| format!("replicated format: {e}"))?;
            let pair = ReplicatedDisk::open(d1, d2, &mut |_| {})
                .map_err(|e| format!("replicated open: {e}"))?;
            let recorded = Arc::new(Mutex::new(PairHistory::default()));
            history = Some(Arc::clone(&recorded));
            Arc::new(HistoryDisk {
                pair: Arc::new(pair),
                history: recorded,
                reads: Arc::default(),
            })
        }
        (Some(single), None) => single,
        _ => return Err("no disk to format".into()),
    };
    Log::format(&*disk, cfg.log_blocks, mix(cfg.seed, 0x5a17))
        .map_err(|e| format!("log format: {e}"))?;
    let log_layout =
        txdisk_log::tooling::read_superblock(&*disk).map_err(|e| format!("log superblock: {e}"))?;
    let logical = LogicalDisk::open(Arc::clone(&disk), log_options())
        .map_err(|e| format!("logical open: {e}"))?;
    let data_blocks = logical.size_blocks();
    layer
        .setup(&logical)
        .map_err(|e| format!("layer setup: {e}"))?;
    logical.close().map_err(|e| format!("logical close: {e}"))?;
    disk.sync().map_err(|e| format!("sync after setup: {e}"))?;
    let history = history.and_then(|h| h.lock().ok().map(|h| h.clone()));
    let images = sims.iter().map(|sim| sim.durable_image()).collect();
    let geometry = Geometry {
        checked: checked_layout,
        pair_blocks: if cfg.replicated { RESERVED_BLOCKS } else { 0 },
        log: log_layout,
    };
    Ok((
        images,
        data_blocks,
        Env {
            dead: [false; 2],
            history,
            touched: None,
        },
        geometry,
    ))
}
