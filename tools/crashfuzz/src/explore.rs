//! The fuzzing loop: workload after workload, crash points of the first epoch (all, or a
//! sample), the crash states of each (all up to the cap, else a sample), crashes of recovery
//! down to the configured depth, and a second epoch run on each recovered state.

use crate::config::{Budget, FuzzConfig};
use crate::engine::{mix, Cut, Engine, Failure, Path, Step, Workload};
use crate::faults::DamageKind;
use crate::layer::FuzzLayer;
use crate::report::{FuzzProgress, FuzzReport, Violation};
use crate::stack::{CrashAt, Env, Images, Interrupt, StateChoice};
use crate::token::Token;
use std::time::Instant;
use txdisk_disk::rng::SplitMix64;

/// Whether to go on after a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Go,
    /// This workload has a violation: on to the next one.
    Violated,
    /// The budget is spent (or enough violations found).
    Stop,
}

/// How often (in states) progress is reported.
const PROGRESS_EVERY_STATES: u64 = 256;

pub(crate) struct Explorer<'a, 'p, L: FuzzLayer> {
    engine: Engine<'a, L>,
    cfg: &'a FuzzConfig,
    report: FuzzReport,
    start: Instant,
    progress: &'p mut dyn FnMut(&FuzzProgress),
    rng: SplitMix64,
    workload: Option<Workload<L::Op>>,
    workload_index: u64,
}

/// The models a crash of an epoch may recover to, and from which one on.
struct Allowed<'m, M> {
    models: &'m [M],
    min_index: usize,
}

impl<'a, 'p, L: FuzzLayer> Explorer<'a, 'p, L> {
    pub fn new(
        engine: Engine<'a, L>,
        cfg: &'a FuzzConfig,
        progress: &'p mut dyn FnMut(&FuzzProgress),
    ) -> Self {
        let report = FuzzReport {
            seed: cfg.seed,
            layer: engine.layer.name(),
            replicated: cfg.replicated,
            exhaustive: cfg.exhaustive,
            ..FuzzReport::default()
        };
        let rng = SplitMix64::new(mix(cfg.seed, u64::MAX));
        Explorer {
            engine,
            cfg,
            report,
            start: Instant::now(),
            progress,
            rng,
            workload: None,
            workload_index: 0,
        }
    }

    pub fn run(mut self) -> FuzzReport {
        while !self.spent() {
            self.workload_index = self.report.workloads;
            self.report.workloads += 1;
            self.rng = SplitMix64::new(mix(self.cfg.seed ^ 0x00c0_ffee, self.workload_index));
            let workload = self.engine.workload(self.workload_index);
            self.report.fail_stop_workloads += u64::from(workload.faults.fail_stop.is_some());
            self.report.read_error_workloads += u64::from(!workload.faults.read_errors.is_empty());
            self.report.sync_failure_workloads += u64::from(workload.faults.sync_failure.is_some());
            if let Some(damage) = &workload.faults.damage {
                match damage.kind {
                    DamageKind::BitRot { .. } => self.report.bit_rot_workloads += 1,
                    DamageKind::Misdirect { .. } => self.report.misdirect_workloads += 1,
                    DamageKind::LostWrite { .. } => self.report.lost_write_workloads += 1,
                }
            }
            self.workload = Some(workload);
            let start = self.engine.base.clone();
            let env = self.engine.base_env.clone();
            let mut cuts = Vec::new();
            if self.explore_epoch(
                0,
                &start,
                &env,
                &self.engine.layer.initial_model(),
                &mut cuts,
            ) == Flow::Stop
            {
                break;
            }
        }
        self.finish()
    }

    fn finish(mut self) -> FuzzReport {
        self.report.elapsed_s = self.start.elapsed().as_secs_f64();
        self.report.states_per_s =
            self.report.crash_states as f64 / self.report.elapsed_s.max(1e-9);
        self.tick(true);
        self.report
    }

    fn fraction(&self) -> f64 {
        match self.cfg.budget {
            Budget::States(states) => self.report.crash_states as f64 / states.max(1) as f64,
            Budget::Seconds(seconds) => self.start.elapsed().as_secs_f64() / seconds,
        }
    }

    fn spent(&self) -> bool {
        self.report.violations.len() as u64 >= u64::from(self.cfg.max_violations.max(1))
            || self.fraction() >= 1.0
    }

    fn tick(&mut self, force: bool) {
        if force || self.report.crash_states % PROGRESS_EVERY_STATES == 0 {
            let progress = FuzzProgress {
                workloads: self.report.workloads,
                crash_points: self.report.crash_points,
                crash_states: self.report.crash_states,
                violations: self.report.violations.len() as u64,
                elapsed_s: self.start.elapsed().as_secs_f64(),
                fraction: self.fraction().min(1.0),
            };
            (self.progress)(&progress);
        }
    }

    fn steps(&self, epoch: usize) -> Vec<Step<L::Op>> {
        self.workload
            .as_ref()
            .map(|w| w.epochs[epoch].clone())
            .unwrap_or_default()
    }

    fn violation(&mut self, cuts: &[Cut], failure: Failure) -> Flow {
        let path = Path {
            workload: self.workload_index,
            cuts: cuts.to_vec(),
        };
        let token = Token {
            layer: self.engine.layer.name(),
            config: self.cfg.clone(),
            path,
        }
        .encode();
        let epoch = cuts.len();
        let crash = cuts.last().map(describe_cut).unwrap_or_default();
        let (kind, message) = failure;
        self.report.violations.push(Violation {
            kind,
            message,
            token,
            workload: self.workload_index,
            epoch,
            crash,
        });
        if self.spent() {
            Flow::Stop
        } else {
            Flow::Violated
        }
    }

    /// Runs epoch `epoch` from `start` at each of its crash points.
    fn explore_epoch(
        &mut self,
        epoch: usize,
        start: &Images,
        env: &Env,
        model: &L::Model,
        cuts: &mut Vec<Cut>,
    ) -> Flow {
        let steps = self.steps(epoch);
        let models = self.engine.prefix_models(model, &steps);
        let faults = self.workload.as_ref().map(|w| w.faults.for_epoch(epoch));
        let clean = self
            .engine
            .run_epoch(start, env, model, faults.as_ref(), None, &steps);
        if let Some(failure) = clean.failure {
            let cut = Cut {
                crash: None,
                state: StateChoice::Random(0),
                recovery: Vec::new(),
            };
            cuts.push(cut);
            let flow = self.violation(cuts, failure);
            cuts.pop();
            return flow;
        }
        let all = self.engine.crash_points(&clean.disks.ops(), env.dead);
        for point in self.pick_points(epoch, all) {
            let run = self
                .engine
                .run_epoch(start, env, model, faults.as_ref(), point, &steps);
            self.report.crash_points += 1;
            let flow = self.explore_point(epoch, point, run, &models, cuts);
            if flow != Flow::Go {
                return flow;
            }
        }
        Flow::Go
    }

    fn pick_points(&mut self, epoch: usize, all: Vec<Option<CrashAt>>) -> Vec<Option<CrashAt>> {
        if epoch == 0 && self.cfg.exhaustive {
            return all;
        }
        let wanted = if epoch == 0 {
            self.cfg.crash_points as usize
        } else {
            2
        };
        if all.len() <= wanted {
            return all;
        }
        // Distinct points. A later epoch always includes its end (the last point): stale
        // records of the first epoch show there.
        let mut pool = all;
        let mut points = Vec::with_capacity(wanted);
        if epoch > 0 {
            points.extend(pool.pop());
        }
        while points.len() < wanted && !pool.is_empty() {
            let index = self.rng.below(pool.len() as u64) as usize;
            points.push(pool.swap_remove(index));
        }
        points
    }

    fn explore_point(
        &mut self,
        epoch: usize,
        point: Option<CrashAt>,
        run: crate::engine::Run,
        models: &[L::Model],
        cuts: &mut Vec<Cut>,
    ) -> Flow {
        if let Some(failure) = run.failure {
            cuts.push(Cut {
                crash: point,
                state: StateChoice::Random(0),
                recovery: Vec::new(),
            });
            let flow = self.violation(cuts, failure);
            cuts.pop();
            return flow;
        }
        let env = run.disks.env();
        let allowed = Allowed {
            models: &models[..=run.called.min(models.len() - 1)],
            min_index: run.durable,
        };
        let count = self.engine.stack.state_count(&run.disks, env.dead);
        let choices: Vec<StateChoice> = if epoch == 0 && count <= u128::from(self.cfg.state_cap) {
            (0..count as u64).map(StateChoice::Nth).collect()
        } else {
            self.report.sampled_points += 1;
            let samples = if epoch == 0 {
                self.cfg.samples.max(1)
            } else {
                1
            };
            (0..samples)
                .map(|_| StateChoice::Random(self.rng.next_u64()))
                .collect()
        };
        for choice in choices {
            let images = self.engine.stack.realize(&run.disks, env.dead, choice);
            cuts.push(Cut {
                crash: point,
                state: choice,
                recovery: Vec::new(),
            });
            let flow = self.explore_state(epoch, &images, &env, &allowed, cuts, self.cfg.depth);
            cuts.pop();
            if flow != Flow::Go {
                return flow;
            }
        }
        Flow::Go
    }

    /// Recovers `images` to the end and checks it; then crashes its recovery (depth left) and
    /// runs the next epoch on the recovered state.
    fn explore_state(
        &mut self,
        epoch: usize,
        images: &Images,
        env: &Env,
        allowed: &Allowed<'_, L::Model>,
        cuts: &mut Vec<Cut>,
        depth: u32,
    ) -> Flow {
        let recovered = self
            .engine
            .recover_check(images, env, allowed.models, allowed.min_index);
        self.report.crash_states += 1;
        self.tick(false);
        let recovered = match recovered {
            Ok(recovered) => recovered,
            Err(failure) => return self.violation(cuts, failure),
        };
        self.report.damage_found_states += u64::from(recovered.damaged_failing > 0);
        if self.spent() {
            return Flow::Stop;
        }
        if depth > 1 {
            let flow =
                self.crash_recoveries(epoch, images, env, allowed, cuts, depth, &recovered.ops);
            if flow != Flow::Go {
                return flow;
            }
        }
        let top_level = cuts.last().is_some_and(|cut| cut.recovery.is_empty());
        if top_level && epoch + 1 < self.cfg.epochs as usize {
            let next_env = recovered.env;
            let model = allowed.models[recovered.matched].clone();
            return self.explore_epoch(epoch + 1, &recovered.images, &next_env, &model, cuts);
        }
        Flow::Go
    }

    #[allow(clippy::too_many_arguments)]
    fn crash_recoveries(
        &mut self,
        epoch: usize,
        images: &Images,
        env: &Env,
        allowed: &Allowed<'_, L::Model>,
        cuts: &mut Vec<Cut>,
        depth: u32,
        ops: &[u64],
    ) -> Flow {
        let mut points: Vec<CrashAt> = self
            .engine
            .crash_points(ops, env.dead)
            .into_iter()
            .flatten()
            .collect();
        // Exhaustive mode crashes the first recovery at every operation; deeper ones (whose count
        // would multiply) at sampled operations.
        let every = self.cfg.exhaustive && depth == self.cfg.depth;
        if !every && points.len() > self.cfg.recovery_points as usize {
            points = (0..self.cfg.recovery_points)
                .map(|_| points[self.rng.below(points.len() as u64) as usize])
                .collect();
        }
        // A workload's faults strike one disk: with damage or a failed sync on one (after
        // which the pair no longer trusts it), the other never fails too.
        let damaged = self.workload.as_ref().and_then(|w| {
            let damage = w.faults.damage.map(|damage| damage.disk);
            damage.or(w.faults.sync_failure.map(|at| at.disk))
        });
        for at in points {
            // Replicated runs with both disks alive: sometimes one fails during recovery.
            let fail_stop = self.cfg.replicated
                && env.dead == [false; 2]
                && self.rng.chance(1, 4)
                && damaged.map_or(true, |disk| disk == at.disk);
            let interrupt = Interrupt { at, fail_stop };
            self.report.recovery_crashes += 1;
            self.report.recovery_fail_stops += u64::from(fail_stop);
            let choice = StateChoice::Random(self.rng.next_u64());
            let Some(cut) = cuts.last_mut() else {
                return Flow::Go;
            };
            cut.recovery.push((interrupt, choice));
            let flow = match self.engine.crash_recovery(images, env, interrupt) {
                Err(failure) => self.violation(cuts, failure),
                Ok(disks) => {
                    let next_env = disks.env();
                    let next = self.engine.stack.realize(&disks, next_env.dead, choice);
                    self.explore_state(epoch, &next, &next_env, allowed, cuts, depth - 1)
                }
            };
            if let Some(cut) = cuts.last_mut() {
                cut.recovery.pop();
            }
            if flow != Flow::Go {
                return flow;
            }
        }
        Flow::Go
    }
}

/// A cut in words, for reports.
pub(crate) fn describe_cut(cut: &Cut) -> String {
    let point = match cut.crash {
        Some(at) => format!("crash at operation {} of d{}", at.op, at.disk + 1),
        None => "crash after the last operation".to_string(),
    };
    let state = match cut.state {
        StateChoice::Nth(index) => format!("crash state #{index}"),
        StateChoice::Random(seed) => format!("sampled crash state {seed:#x}"),
    };
    let mut text = format!("{point}, {state}");
    for (interrupt, _) in &cut.recovery {
        text.push_str(&format!(", {interrupt}"));
    }
    text
}
