//! What a fuzzing run does: the stack, the workload shape, the faults and the budget.

use crate::error::FuzzError;
use crate::faults::DamageKinds;
pub use txdisk_integrity::bugs::Bug as IntegrityBug;
pub use txdisk_log::bugs::Bug as LogBug;
pub use txdisk_logical::bugs::Bug as LogicalBug;
pub use txdisk_replicated::Bug as ReplicatedBug;

/// When a run stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// After this many crash states have been recovered and checked.
    States(u64),
    /// After this many seconds (checked between states).
    Seconds(f64),
}

impl std::str::FromStr for Budget {
    type Err = FuzzError;

    /// `20s` is seconds, a plain number a count of states.
    fn from_str(text: &str) -> Result<Budget, FuzzError> {
        let bad = || FuzzError::BadConfig {
            reason: format!("budget {text:?}: expected a count of states or seconds as `20s`"),
        };
        match text.strip_suffix('s') {
            Some(seconds) => {
                let seconds: f64 = seconds.parse().map_err(|_| bad())?;
                if !(seconds.is_finite() && seconds > 0.0) {
                    return Err(bad());
                }
                Ok(Budget::Seconds(seconds))
            }
            None => text.parse().map(Budget::States).map_err(|_| bad()),
        }
    }
}

/// A deliberately wrong variant of the stack, for proving that the fuzzer catches real bugs.
/// Available with the `deliberate-bugs` feature only. The log's and the checksummed disk's
/// variants are those layers' own lists, wrapped; the fuzzer adds one of the pair's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// One of the log's deliberate bugs ([`LogBug`]).
    Log(LogBug),
    /// The replicated pair: data writes never reach d2 (replicated runs only).
    ReplicatedSkipsD2,
    /// One of the checksummed disk's deliberate bugs ([`IntegrityBug`]): reads that skip
    /// verification (caught with damage faults only: without them every block verifies), or
    /// tags written after the sync.
    Integrity(IntegrityBug),
    /// One of the replicated pair's own deliberate bugs ([`ReplicatedBug`]): a bitmap bit
    /// cleared before the sync that covers its chunk's writes (replicated runs only).
    Replicated(ReplicatedBug),
    /// One of the logical disk's deliberate bugs ([`LogicalBug`]): a commit that skips
    /// validating its read set.
    Logical(LogicalBug),
}

impl Bug {
    /// Every deliberate bug, in a fixed order (tokens carry the position): the log's crash
    /// protocol's, the fuzzer's own of the pair, the checksummed disk's, the pair crate's, then
    /// those only a live check sees — the log's and the logical disk's.
    pub fn all() -> Vec<Bug> {
        LogBug::ALL
            .iter()
            .map(|bug| Bug::Log(*bug))
            .chain([Bug::ReplicatedSkipsD2])
            .chain(IntegrityBug::ALL.iter().map(|bug| Bug::Integrity(*bug)))
            .chain(ReplicatedBug::ALL.iter().map(|bug| Bug::Replicated(*bug)))
            .chain(LogBug::SEEN_LIVE.iter().map(|bug| Bug::Log(*bug)))
            .chain(LogicalBug::ALL.iter().map(|bug| Bug::Logical(*bug)))
            .collect()
    }

    /// The variant's name on a command line: `commit-without-flush`, `skip-verify`, ...
    pub fn name(self) -> &'static str {
        match self {
            Bug::Log(bug) => bug.name(),
            Bug::ReplicatedSkipsD2 => "replicated-skips-d2",
            Bug::Integrity(bug) => bug.name(),
            Bug::Replicated(bug) => bug.name(),
            Bug::Logical(bug) => bug.name(),
        }
    }

    pub(crate) fn code(self) -> u64 {
        Bug::all()
            .iter()
            .position(|b| *b == self)
            .map_or(0, |index| index as u64 + 1)
    }

    pub(crate) fn from_code(code: u64) -> Option<Option<Bug>> {
        match code {
            0 => Some(None),
            code => Bug::all().get(code as usize - 1).map(|bug| Some(*bug)),
        }
    }
}

impl std::str::FromStr for Bug {
    type Err = FuzzError;

    fn from_str(text: &str) -> Result<Bug, FuzzError> {
        Bug::all()
            .into_iter()
            .find(|bug| bug.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Bug::all().iter().map(|bug| bug.name()).collect();
                FuzzError::BadConfig {
                    reason: format!("no variant {text:?}; the variants are {}", names.join(", ")),
                }
            })
    }
}

/// A fuzzing run. `FuzzConfig::default()` is the CLI's default run.
#[derive(Clone, Debug, PartialEq)]
pub struct FuzzConfig {
    /// Seeds every workload, crash choice and fault: the same seed makes the same run.
    pub seed: u64,
    /// How much to run.
    pub budget: Budget,
    /// Crash the first epoch of every workload at every disk operation, and the first recovery
    /// of each state at every operation; otherwise `crash_points` sampled points per workload
    /// and `recovery_points` per recovery. (Later epochs and deeper recoveries are sampled.)
    pub exhaustive: bool,
    /// A replicated pair of `SimDisk`s under the log, with fail-stop and read-error faults.
    pub replicated: bool,
    /// Crash states tear pending writes at 512-byte sectors.
    pub torn: bool,
    /// Damage: in every other workload, one write of the first epoch lands at a wrong block.
    /// With `bit_rot` and `lost_writes`, each damaged workload gets one of the kinds asked for,
    /// on one disk: anywhere on one member of a pair; on a single disk, home blocks of the log
    /// only (see [`FuzzConfig::bit_rot`]).
    pub misdirect: bool,
    /// Damage: bits flip in a block, at rest before an epoch or between steps of its run. On a
    /// pair every read must still return the last value written (the other member serves it
    /// and repairs the damaged one). On a single disk a damaged home block must read as an
    /// error, never as other bytes; damage there strikes home blocks, their checksums and the
    /// checksummed disk's superblocks, not the log region, whose only copy of a committed
    /// record a lone disk cannot tell from a torn one.
    pub bit_rot: bool,
    /// Damage: one write of the first epoch is acknowledged and never reaches the disk.
    pub lost_writes: bool,
    /// In one workload of four, one sync of the first epoch fails (on either disk of a pair),
    /// losing the writes since that disk's last good sync. The fsync gate: on a single disk,
    /// the step whose sync failed and every later commit, flush and installation must fail,
    /// and recovery must give exactly the acknowledged state; a pair fails the member whose
    /// sync failed and goes on with the other.
    pub sync_failures: bool,
    /// Crashes in a row: the workload's, then `depth - 1` crashes of recovery, then a recovery
    /// to the end.
    pub depth: u32,
    /// Enumerate every crash state of a crash point when there are at most this many.
    pub state_cap: u64,
    /// Otherwise check this many sampled states.
    pub samples: u32,
    /// Crash points per workload in sampled mode.
    pub crash_points: u32,
    /// Recovery crash points per state at each depth in sampled mode.
    pub recovery_points: u32,
    /// Operations in the first epoch of a workload (the second has half as many).
    pub workload_len: u32,
    /// Two epochs: run, crash, recover, run more, crash, recover.
    pub epochs: u32,
    /// Blocks of each simulated disk.
    pub disk_blocks: u64,
    /// Blocks of the log region.
    pub log_blocks: u64,
    /// Stop after this many violations (each workload reports at most one).
    pub max_violations: u32,
    /// A deliberately wrong variant to run (feature `deliberate-bugs`).
    pub bug: Option<Bug>,
}

impl Default for FuzzConfig {
    fn default() -> FuzzConfig {
        FuzzConfig {
            seed: 1,
            budget: Budget::States(200_000),
            exhaustive: false,
            replicated: false,
            torn: false,
            misdirect: false,
            bit_rot: false,
            lost_writes: false,
            sync_failures: true,
            depth: 2,
            state_cap: 64,
            samples: 8,
            crash_points: 12,
            recovery_points: 2,
            workload_len: 10,
            epochs: 2,
            disk_blocks: 64,
            log_blocks: 12,
            max_violations: 8,
            bug: None,
        }
    }
}

impl FuzzConfig {
    /// The damage faults asked for.
    pub(crate) fn damage(&self) -> DamageKinds {
        DamageKinds {
            bit_rot: self.bit_rot,
            misdirect: self.misdirect,
            lost_writes: self.lost_writes,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), FuzzError> {
        let bad = |reason: &str| {
            Err(FuzzError::BadConfig {
                reason: reason.into(),
            })
        };
        if self.depth == 0 {
            return bad("depth must be at least 1");
        }
        if !(1..=2).contains(&self.epochs) {
            return bad("epochs must be 1 or 2");
        }
        if self.workload_len == 0 {
            return bad("workload_len must be at least 1");
        }
        if self.disk_blocks > 1 << 20 {
            return bad("disk_blocks above 2^20 is not a fuzzing geometry");
        }
        if self.bug == Some(Bug::ReplicatedSkipsD2) && !self.replicated {
            return bad("the ReplicatedSkipsD2 variant needs a replicated run");
        }
        if matches!(self.bug, Some(Bug::Replicated(_))) && !self.replicated {
            return bad("the pair's variants need a replicated run");
        }
        if self.bug.is_some() && !cfg!(feature = "deliberate-bugs") {
            return Err(FuzzError::BugsNotBuilt);
        }
        Ok(())
    }
}
