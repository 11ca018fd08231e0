//! Replaying a token, and shrinking what it reproduces to a minimal trace: fewest workload
//! operations, fewest recovery crashes and fewest pending writes kept by the crash states that
//! still fail the same way.
//!
//! The shrinker works on a concrete trace: each crash point as (disk, step, operations into
//! that step), so that it stays at the same place in the workload when earlier steps are
//! removed; each crash state as the blocks it takes from pending writes, checked against the
//! writes actually pending in the new run (a block no longer pending reverts to its durable
//! value, which is always a crash state).

use crate::engine::{Engine, Failure, Path, Step};
use crate::explore::describe_cut;
use crate::faults::Faults;
use crate::layer::FuzzLayer;
use crate::report::{to_value, ViolationKind};
use crate::stack::{differences, CrashAt, Disks, Interrupt};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use txdisk_disk::{Addr, Block};

/// Most executions the shrinker tries.
const MAX_SHRINK_RUNS: usize = 4000;

type Wanted = Vec<BTreeMap<Addr, Block>>;

#[derive(Clone, Debug)]
struct ConcreteCut {
    /// (disk, segment, offset): segment 0 is the stack's open, segment `j + 1` step `j`.
    crash: Option<(usize, usize, u64)>,
    state: Wanted,
    recovery: Vec<(Interrupt, Wanted)>,
}

#[derive(Clone, Debug)]
struct Concrete<Op> {
    epochs: Vec<Vec<Step<Op>>>,
    faults: Faults,
    cuts: Vec<ConcreteCut>,
}

/// What a replay found.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayReport {
    /// The token replayed.
    pub token: String,
    /// The layer the token names.
    pub layer: String,
    /// The workload number within the token's run.
    pub workload: u64,
    /// Where the token's state crashed, in words.
    pub crash: String,
    /// The violation reproduced (`None`: the token's state passes every check now).
    pub violation: Option<(ViolationKind, String)>,
    /// Operations of the workload epochs the token ran, before and after shrinking.
    pub original_ops: usize,
    /// Operations of the shrunk trace's workload epochs.
    pub shrunk_ops: usize,
    /// Pending writes kept by the shrunk trace's crash states.
    pub shrunk_pending_writes: usize,
    /// The violation of the shrunk trace (the same kind as the original).
    pub shrunk_violation: Option<(ViolationKind, String)>,
    /// The shrunk trace, step by step, for people.
    pub trace: String,
    /// Executions the shrinker ran.
    pub shrink_runs: usize,
}

impl ReplayReport {
    /// True when the token's violation showed again.
    pub fn reproduced(&self) -> bool {
        self.violation.is_some()
    }

    /// One JSON object: the report's fields, `reproduced`, and each violation as
    /// `{"kind", "message"}` (`null` when there is none).
    pub fn to_json(&self) -> Value {
        to_value(&ReplayJson::from(self))
    }
}

/// A violation as the replay report shows it.
#[derive(Serialize)]
struct ViolationJson<'a> {
    kind: ViolationKind,
    message: &'a str,
}

/// [`ReplayReport`]'s JSON shape: its violations as objects rather than pairs, plus whether
/// the token reproduced one.
#[derive(Serialize)]
struct ReplayJson<'a> {
    token: &'a str,
    layer: &'a str,
    workload: u64,
    crash: &'a str,
    reproduced: bool,
    violation: Option<ViolationJson<'a>>,
    original_ops: usize,
    shrunk_ops: usize,
    shrunk_pending_writes: usize,
    shrunk_violation: Option<ViolationJson<'a>>,
    trace: &'a str,
    shrink_runs: usize,
}

impl<'a> From<&'a ReplayReport> for ReplayJson<'a> {
    fn from(report: &'a ReplayReport) -> ReplayJson<'a> {
        let violation = |v: &'a Option<(ViolationKind, String)>| {
            v.as_ref().map(|(kind, message)| ViolationJson {
                kind: *kind,
                message,
            })
        };
        ReplayJson {
            token: &report.token,
            layer: &report.layer,
            workload: report.workload,
            crash: &report.crash,
            reproduced: report.reproduced(),
            violation: violation(&report.violation),
            original_ops: report.original_ops,
            shrunk_ops: report.shrunk_ops,
            shrunk_pending_writes: report.shrunk_pending_writes,
            shrunk_violation: violation(&report.shrunk_violation),
            trace: &report.trace,
            shrink_runs: report.shrink_runs,
        }
    }
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "token {} (layer {}, workload {}, {})",
            self.token, self.layer, self.workload, self.crash
        )?;
        let Some((kind, message)) = &self.violation else {
            return writeln!(f, "not reproduced: the state passes every check");
        };
        writeln!(f, "reproduced {kind} violation: {message}")?;
        writeln!(
            f,
            "shrunk from {} to {} operations, {} pending writes kept ({} runs):",
            self.original_ops, self.shrunk_ops, self.shrunk_pending_writes, self.shrink_runs
        )?;
        write!(f, "{}", self.trace)
    }
}

/// Runs `path` on `workload`; returns the first violation (with its epoch) and the concrete
/// trace that was run.
fn run_path<L: FuzzLayer>(
    engine: &Engine<'_, L>,
    path: &Path,
) -> (Option<(usize, Failure)>, Concrete<L::Op>) {
    let workload = engine.workload(path.workload);
    let mut concrete = Concrete {
        epochs: workload.epochs.clone(),
        faults: workload.faults.clone(),
        cuts: Vec::new(),
    };
    let mut images = engine.base.clone();
    let mut env = engine.base_env.clone();
    let mut model = engine.layer.initial_model();
    for (epoch, cut) in path.cuts.iter().enumerate() {
        let Some(steps) = workload.epochs.get(epoch) else {
            break;
        };
        let faults = workload.faults.for_epoch(epoch);
        let clean = engine.run_epoch(&images, &env, &model, Some(&faults), None, steps);
        let run = engine.run_epoch(&images, &env, &model, Some(&faults), cut.crash, steps);
        let crash = cut.crash.map(|at| segment_of(&clean.boundaries, at));
        let mut concrete_cut = ConcreteCut {
            crash,
            state: Vec::new(),
            recovery: Vec::new(),
        };
        if let Some(failure) = run.failure {
            concrete.cuts.push(concrete_cut);
            return (Some((epoch, failure)), concrete);
        }
        env = run.disks.env();
        let mut state = engine.stack.realize(&run.disks, env.dead, cut.state);
        concrete_cut.state = differences(&run.disks, &state);
        for &(at, choice) in &cut.recovery {
            match engine.crash_recovery(&state, &env, at) {
                Err(failure) => {
                    concrete.cuts.push(concrete_cut);
                    return (Some((epoch, failure)), concrete);
                }
                Ok(disks) => {
                    env = disks.env();
                    state = engine.stack.realize(&disks, env.dead, choice);
                    concrete_cut
                        .recovery
                        .push((at, differences(&disks, &state)));
                }
            }
        }
        concrete.cuts.push(concrete_cut);
        let models = engine.prefix_models(&model, steps);
        let allowed = &models[..=run.called.min(models.len() - 1)];
        match engine.recover_check(&state, &env, allowed, run.durable) {
            Err(failure) => return (Some((epoch, failure)), concrete),
            Ok(recovered) => {
                images = recovered.images;
                model = allowed[recovered.matched].clone();
                env = recovered.env;
            }
        }
    }
    (None, concrete)
}

/// (disk, segment, offset) of operation `at.op`, given a clean run's step boundaries.
fn segment_of(boundaries: &[Vec<u64>], at: CrashAt) -> (usize, usize, u64) {
    let segment = boundaries
        .iter()
        .take_while(|b| b.get(at.disk).is_some_and(|&start| start <= at.op))
        .count();
    let start = if segment == 0 {
        0
    } else {
        boundaries[segment - 1][at.disk]
    };
    (at.disk, segment, at.op - start)
}

/// Runs a concrete trace; returns the first violation and where.
fn run_concrete<L: FuzzLayer>(
    engine: &Engine<'_, L>,
    concrete: &Concrete<L::Op>,
) -> Option<(usize, Failure)> {
    let mut images = engine.base.clone();
    let mut env = engine.base_env.clone();
    let mut model = engine.layer.initial_model();
    for (epoch, cut) in concrete.cuts.iter().enumerate() {
        let steps = concrete.epochs.get(epoch)?;
        let faults = concrete.faults.for_epoch(epoch);
        let faults = Some(&faults);
        let crash = cut.crash.map(|(disk, segment, offset)| {
            let clean = engine.run_epoch(&images, &env, &model, faults, None, steps);
            let start = match segment {
                0 => 0,
                s => clean
                    .boundaries
                    .get(s - 1)
                    .and_then(|b| b.get(disk))
                    .copied()
                    .unwrap_or(u64::MAX / 2),
            };
            CrashAt {
                disk,
                op: start + offset,
            }
        });
        let run = engine.run_epoch(&images, &env, &model, faults, crash, steps);
        if let Some(failure) = run.failure {
            return Some((epoch, failure));
        }
        env = run.disks.env();
        let mut state = engine
            .stack
            .realize_explicit(&run.disks, env.dead, &cut.state);
        for (at, wanted) in &cut.recovery {
            let disks: Disks = match engine.crash_recovery(&state, &env, *at) {
                Err(failure) => return Some((epoch, failure)),
                Ok(disks) => disks,
            };
            env = disks.env();
            state = engine.stack.realize_explicit(&disks, env.dead, wanted);
        }
        let models = engine.prefix_models(&model, steps);
        let allowed = &models[..=run.called.min(models.len() - 1)];
        match engine.recover_check(&state, &env, allowed, run.durable) {
            Err(failure) => return Some((epoch, failure)),
            Ok(recovered) => {
                images = recovered.images;
                model = allowed[recovered.matched].clone();
                env = recovered.env;
            }
        }
    }
    None
}

struct Shrinker<'e, 'a, L: FuzzLayer> {
    engine: &'e Engine<'a, L>,
    kind: ViolationKind,
    runs: usize,
    last: Option<(usize, Failure)>,
}

impl<L: FuzzLayer> Shrinker<'_, '_, L> {
    /// Whether `candidate` still fails with the same kind of violation.
    fn fails(&mut self, candidate: &Concrete<L::Op>) -> bool {
        if self.runs >= MAX_SHRINK_RUNS {
            return false;
        }
        self.runs += 1;
        match run_concrete(self.engine, candidate) {
            Some((epoch, failure)) if failure.0 == self.kind => {
                self.last = Some((epoch, failure));
                true
            }
            _ => false,
        }
    }

    fn shrink(&mut self, mut best: Concrete<L::Op>) -> Concrete<L::Op> {
        self.trim_unrun(&mut best);
        loop {
            let before = (ops_of(&best), pending_of(&best), recovery_crashes_of(&best));
            self.remove_steps(&mut best);
            self.shrink_ops(&mut best);
            self.remove_recovery_crashes(&mut best);
            self.revert_pending(&mut best);
            let after = (ops_of(&best), pending_of(&best), recovery_crashes_of(&best));
            if after == before || self.runs >= MAX_SHRINK_RUNS {
                self.crash_at_end(&mut best);
                return best;
            }
        }
    }

    /// A crash point after which nothing more ran (or that never came) reads better as a crash
    /// after the last step: keep that where it fails the same way.
    fn crash_at_end(&mut self, best: &mut Concrete<L::Op>) {
        for epoch in 0..best.cuts.len() {
            if best.cuts[epoch].crash.is_some() {
                let mut candidate = best.clone();
                candidate.cuts[epoch].crash = None;
                if self.fails(&candidate) {
                    *best = candidate;
                }
            }
        }
    }

    /// Steps after a crash point never run: drop them (and any epoch past the last cut).
    fn trim_unrun(&mut self, best: &mut Concrete<L::Op>) {
        best.epochs.truncate(best.cuts.len());
        for (steps, cut) in best.epochs.iter_mut().zip(&best.cuts) {
            if let Some((_, segment, _)) = cut.crash {
                steps.truncate(segment);
            }
        }
    }

    fn remove_steps(&mut self, best: &mut Concrete<L::Op>) {
        for epoch in 0..best.epochs.len() {
            let mut index = best.epochs[epoch].len();
            while index > 0 {
                index -= 1;
                let mut candidate = best.clone();
                candidate.epochs[epoch].remove(index);
                if let Some((_, segment, _)) = &mut candidate.cuts[epoch].crash {
                    // Crashing inside the removed step: keep the crash at the start of the next.
                    if *segment > index {
                        *segment -= 1;
                    }
                }
                if self.fails(&candidate) {
                    *best = candidate;
                }
            }
        }
    }

    fn shrink_ops(&mut self, best: &mut Concrete<L::Op>) {
        for epoch in 0..best.epochs.len() {
            for index in 0..best.epochs[epoch].len() {
                let Step::Op(op) = &best.epochs[epoch][index] else {
                    continue;
                };
                for smaller in self.engine.layer.shrink_op(op) {
                    let mut candidate = best.clone();
                    candidate.epochs[epoch][index] = Step::Op(smaller);
                    if self.fails(&candidate) {
                        *best = candidate;
                        break;
                    }
                }
            }
        }
    }

    fn remove_recovery_crashes(&mut self, best: &mut Concrete<L::Op>) {
        for epoch in 0..best.cuts.len() {
            let mut index = best.cuts[epoch].recovery.len();
            while index > 0 {
                index -= 1;
                let mut candidate = best.clone();
                candidate.cuts[epoch].recovery.remove(index);
                if self.fails(&candidate) {
                    *best = candidate;
                }
            }
        }
    }

    fn revert_pending(&mut self, best: &mut Concrete<L::Op>) {
        for epoch in 0..best.cuts.len() {
            for level in 0..=best.cuts[epoch].recovery.len() {
                let wanted = wanted_at(&best.cuts[epoch], level);
                for (disk, map) in wanted.iter().enumerate() {
                    for addr in map.keys().copied().collect::<Vec<_>>() {
                        let mut candidate = best.clone();
                        wanted_at_mut(&mut candidate.cuts[epoch], level)[disk].remove(&addr);
                        if self.fails(&candidate) {
                            *best = candidate;
                        }
                    }
                }
            }
        }
    }
}

fn wanted_at(cut: &ConcreteCut, level: usize) -> Wanted {
    if level == 0 {
        cut.state.clone()
    } else {
        cut.recovery[level - 1].1.clone()
    }
}

fn wanted_at_mut(cut: &mut ConcreteCut, level: usize) -> &mut Wanted {
    if level == 0 {
        &mut cut.state
    } else {
        &mut cut.recovery[level - 1].1
    }
}

fn ops_of<Op>(concrete: &Concrete<Op>) -> usize {
    concrete.epochs.iter().map(Vec::len).sum()
}

fn pending_of<Op>(concrete: &Concrete<Op>) -> usize {
    let count = |wanted: &Wanted| wanted.iter().map(BTreeMap::len).sum::<usize>();
    concrete
        .cuts
        .iter()
        .map(|cut| count(&cut.state) + cut.recovery.iter().map(|(_, w)| count(w)).sum::<usize>())
        .sum()
}

fn recovery_crashes_of<Op>(concrete: &Concrete<Op>) -> usize {
    concrete.cuts.iter().map(|cut| cut.recovery.len()).sum()
}

fn describe_wanted(wanted: &Wanted) -> String {
    let kept: Vec<String> = wanted
        .iter()
        .enumerate()
        .flat_map(|(disk, map)| {
            map.iter()
                .map(move |(addr, block)| format!("d{} block {addr} = {block:?}", disk + 1))
        })
        .collect();
    if kept.is_empty() {
        "every block at its durable value".into()
    } else {
        format!(
            "pending writes kept: {}; every other block durable",
            kept.join(", ")
        )
    }
}

fn describe<Op: std::fmt::Debug>(
    concrete: &Concrete<Op>,
    failure: Option<&(usize, Failure)>,
) -> String {
    let mut text = String::new();
    let faults = &concrete.faults;
    if let Some(at) = faults.fail_stop {
        let _ = writeln!(
            text,
            "fault: d{} fails for good at its operation {}",
            at.disk + 1,
            at.op
        );
    }
    let when = match faults.read_errors_before_step {
        Some(step) => format!("from step {step} of epoch 1"),
        None => "from the start".to_string(),
    };
    for (disk, addr) in &faults.read_errors {
        let _ = writeln!(
            text,
            "fault: d{} block {addr} unreadable until written, {when}",
            disk + 1
        );
    }
    if let Some(at) = faults.sync_failure {
        let _ = writeln!(
            text,
            "fault: the sync at d{} operation {} fails, losing the writes since the last good one",
            at.disk + 1,
            at.op
        );
    }
    if let Some(damage) = faults.damage {
        let _ = writeln!(text, "fault: {damage}");
    }
    for (epoch, (steps, cut)) in concrete.epochs.iter().zip(&concrete.cuts).enumerate() {
        let _ = writeln!(text, "epoch {}:", epoch + 1);
        for (index, step) in steps.iter().enumerate() {
            let _ = writeln!(text, "  step {index}: {step:?}");
        }
        let _ = match cut.crash {
            Some((disk, 0, offset)) => writeln!(
                text,
                "  crash: d{} operation {offset} of the stack's open",
                disk + 1
            ),
            Some((disk, segment, offset)) => writeln!(
                text,
                "  crash: d{} operation {offset} of step {}",
                disk + 1,
                segment - 1
            ),
            None => writeln!(text, "  crash: after the last step"),
        };
        let _ = writeln!(text, "  crash state: {}", describe_wanted(&cut.state));
        for (interrupt, wanted) in &cut.recovery {
            let _ = writeln!(text, "  {interrupt}; state: {}", describe_wanted(wanted));
        }
    }
    if let Some((epoch, (kind, message))) = failure {
        let _ = writeln!(
            text,
            "result after recovery of epoch {}: {kind} violation: {message}",
            epoch + 1
        );
    }
    text
}

/// Replays `path` on `engine` (built with recording) and shrinks what it finds.
pub(crate) fn replay_path<L: FuzzLayer>(
    engine: &Engine<'_, L>,
    token: &str,
    path: &Path,
) -> ReplayReport {
    let (found, concrete) = run_path(engine, path);
    let original_ops = concrete
        .epochs
        .iter()
        .take(concrete.cuts.len())
        .map(Vec::len)
        .sum();
    let mut report = ReplayReport {
        token: token.to_string(),
        layer: engine.layer.name(),
        workload: path.workload,
        crash: path.cuts.last().map(describe_cut).unwrap_or_default(),
        violation: None,
        original_ops,
        shrunk_ops: original_ops,
        shrunk_pending_writes: pending_of(&concrete),
        shrunk_violation: None,
        trace: describe(&concrete, found.as_ref()),
        shrink_runs: 0,
    };
    let Some((epoch, failure)) = found else {
        return report;
    };
    report.violation = Some(failure.clone());
    let mut shrinker = Shrinker {
        engine,
        kind: failure.0,
        runs: 0,
        last: None,
    };
    if !shrinker.fails(&concrete) {
        // The concrete form does not fail as the path did (it should): report the path as is.
        report.shrunk_violation = Some(failure);
        return report;
    }
    let shrunk = shrinker.shrink(concrete);
    // Run the result once more so the failure printed is the shrunk trace's own.
    let last = run_concrete(engine, &shrunk)
        .or(shrinker.last.clone())
        .unwrap_or((epoch, failure));
    report.shrunk_ops = ops_of(&shrunk);
    report.shrunk_pending_writes = pending_of(&shrunk);
    report.trace = describe(&shrunk, Some(&last));
    report.shrunk_violation = Some(last.1);
    report.shrink_runs = shrinker.runs;
    report
}
