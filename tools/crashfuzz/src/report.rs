//! What a run reports: counts, speed, and the violations with their replay tokens.

use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// What broke. Serializes as its [`ViolationKind::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// The recovered contents are not the state after an allowed prefix of the commits.
    Oracle,
    /// A rep or crash invariant failed (a layer's `check_rep`, the pair's replicas differ, the
    /// fuzzed layer's own invariant).
    Invariant,
    /// Recovery returned an error on a state a crash may leave.
    RecoveryFailed,
    /// An operation failed although nothing crashed.
    OperationFailed,
    /// A panic inside the stack (a broken invariant asserted at run time).
    Panic,
}

impl ViolationKind {
    /// The kind's stable name, as the JSON and the text show it.
    pub fn name(self) -> &'static str {
        match self {
            ViolationKind::Oracle => "oracle",
            ViolationKind::Invariant => "invariant",
            ViolationKind::RecoveryFailed => "recovery-failed",
            ViolationKind::OperationFailed => "operation-failed",
            ViolationKind::Panic => "panic",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One violation found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// What broke.
    pub kind: ViolationKind,
    /// What was found, in words.
    pub message: String,
    /// `txdisk crashfuzz --replay TOKEN` reproduces it.
    pub token: String,
    /// The workload number within the run (part of the token).
    pub workload: u64,
    /// The epoch whose run or recovery failed (1 = the first).
    pub epoch: usize,
    /// Where it crashed, in words.
    pub crash: String,
}

impl Violation {
    /// One JSON object: `kind`, `message`, `token`, `workload`, `epoch`, `crash`.
    pub fn to_json(&self) -> Value {
        to_value(self)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violation in workload {} (epoch {}, {}): {}\n  replay: txdisk crashfuzz --replay {}", self.kind, self.workload, self.epoch, self.crash, self.message, self.token)
    }
}

/// Progress of a running campaign, passed to the caller's callback now and then.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FuzzProgress {
    /// Workloads started so far.
    pub workloads: u64,
    /// Crash points run so far.
    pub crash_points: u64,
    /// Crash states checked so far.
    pub crash_states: u64,
    /// Violations found so far.
    pub violations: u64,
    /// Wall-clock time so far in seconds.
    pub elapsed_s: f64,
    /// Fraction of the budget spent, 0..=1.
    pub fraction: f64,
}

/// The result of a campaign.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FuzzReport {
    /// The run's seed.
    pub seed: u64,
    /// The fuzzed layer's name.
    pub layer: String,
    /// The stack ran on a replicated pair rather than one disk.
    pub replicated: bool,
    /// The run's [`crate::FuzzConfig::exhaustive`]: every disk operation of every first epoch
    /// was a crash point.
    pub exhaustive: bool,
    /// Workloads started.
    pub workloads: u64,
    /// Crash points run (a workload epoch crashed at one operation).
    pub crash_points: u64,
    /// Crash points whose states were sampled rather than all enumerated.
    pub sampled_points: u64,
    /// Crash states recovered to the end and checked (at every depth).
    pub crash_states: u64,
    /// Recoveries crashed on purpose (depth 2 and more).
    pub recovery_crashes: u64,
    /// Of those, recoveries where one disk of the pair failed for good instead.
    pub recovery_fail_stops: u64,
    /// Workloads with a fail-stop of one disk scheduled in their first epoch.
    pub fail_stop_workloads: u64,
    /// Workloads with bad blocks on one disk during their first epoch.
    pub read_error_workloads: u64,
    /// Workloads with a misdirected write in their first epoch.
    pub misdirect_workloads: u64,
    /// Workloads with bits flipped in a block (at rest or mid-run, in either epoch).
    pub bit_rot_workloads: u64,
    /// Workloads with a write lost in their first epoch.
    pub lost_write_workloads: u64,
    /// Workloads with a failing sync scheduled in their first epoch.
    pub sync_failure_workloads: u64,
    /// Checked states in which a block that damage struck still failed verification after
    /// recovery: read as an error on a single disk, served from the other member on a pair
    /// (most damage on a pair is repaired by the recovery that reads it first).
    pub damage_found_states: u64,
    /// Wall-clock time of the run in seconds.
    pub elapsed_s: f64,
    /// Crash states checked per second of the run.
    pub states_per_s: f64,
    /// Every violation found, in the order found.
    pub violations: Vec<Violation>,
}

impl FuzzReport {
    /// One JSON object: `seed`, `workloads`, `crash_points`, `crash_states`, `states_per_s`,
    /// `violations` (a list) and the rest of the counts.
    pub fn to_json(&self) -> Value {
        to_value(self)
    }
}

/// A derived report as a JSON value, whose map keeps its keys sorted as the reports always
/// printed them.
pub(crate) fn to_value(report: &impl Serialize) -> Value {
    // The reports hold strings, numbers, options and lists under string keys: nothing that
    // serde_json's conversion can refuse (json! interpolation unwraps the same conversion).
    serde_json::to_value(report).expect("a derived report converts to a JSON value")
}

impl fmt::Display for FuzzReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} workloads, {} crash points ({} sampled), {} crash states checked, {} recovery crashes, in {:.1} s ({:.0} states/s)",
            self.seed,
            self.workloads,
            self.crash_points,
            self.sampled_points,
            self.crash_states,
            self.recovery_crashes,
            self.elapsed_s,
            self.states_per_s
        )?;
        let faults = [
            self.recovery_fail_stops,
            self.fail_stop_workloads,
            self.read_error_workloads,
        ];
        if faults.iter().any(|&count| count > 0) {
            let [in_recovery, fail_stop, read_errors] = faults;
            writeln!(
                f,
                "faults: {fail_stop} workloads with a fail-stop, {read_errors} with bad blocks; \
                 {in_recovery} recoveries with a fail-stop"
            )?;
        }
        let damage = [
            self.bit_rot_workloads,
            self.misdirect_workloads,
            self.lost_write_workloads,
        ];
        if damage.iter().any(|&count| count > 0) {
            let [rot, misdirect, lost] = damage;
            writeln!(
                f,
                "damage: {rot} workloads with bit rot, {misdirect} with a misdirected write, \
                 {lost} with a lost write; {} states with a damaged block failing verification",
                self.damage_found_states
            )?;
        }
        if self.sync_failure_workloads > 0 {
            writeln!(
                f,
                "sync failures: {} workloads with a failing sync",
                self.sync_failure_workloads
            )?;
        }
        if self.violations.is_empty() {
            return writeln!(f, "no violations");
        }
        writeln!(f, "{} violation(s):", self.violations.len())?;
        for violation in &self.violations {
            writeln!(f, "{violation}")?;
        }
        Ok(())
    }
}
