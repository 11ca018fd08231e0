//! Deliberately wrong variants of the logical disk, for proving that the crash fuzzer and the
//! schedule explorer catch them. The list is always there (the fuzzer names variants on its
//! command line and in its tokens); the switch is compiled only with the `deliberate-bugs`
//! feature, and is per thread (every thread of a controlled-scheduler test runs on the test's
//! own thread, so there one switch covers them all).

#[cfg(feature = "deliberate-bugs")]
use std::cell::Cell;

/// A known-wrong change to the logical disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// A commit skips re-validating its read set: a transaction whose reads another commit
    /// changed commits anyway (a lost update).
    ValidationSkipped,
    /// A commit validates its read set before it takes the commit lock: a transaction that
    /// commits between the validation and the append goes unseen (a lost update).
    ValidateOutsideCommitLock,
    /// A commit does not stamp the last stripe it wrote with its sequence number: a
    /// transaction that read the old value there still validates.
    UnstampedStripe,
}

impl Bug {
    /// The variants the single-threaded fuzzer's conflicting workloads must catch.
    pub const ALL: [Bug; 1] = [Bug::ValidationSkipped];

    /// The concurrency variants, which only a search of thread schedules can catch.
    pub const RACES: [Bug; 2] = [Bug::ValidateOutsideCommitLock, Bug::UnstampedStripe];

    /// The variant's name on a command line: `validation-skipped`, ...
    pub fn name(self) -> &'static str {
        match self {
            Bug::ValidationSkipped => "validation-skipped",
            Bug::ValidateOutsideCommitLock => "validate-outside-commit-lock",
            Bug::UnstampedStripe => "unstamped-stripe",
        }
    }
}

#[cfg(feature = "deliberate-bugs")]
thread_local! {
    static ACTIVE: Cell<Option<Bug>> = const { Cell::new(None) };
}

/// Turns a bug on (or all off with `None`) for this thread.
#[cfg(feature = "deliberate-bugs")]
pub fn set(bug: Option<Bug>) {
    ACTIVE.with(|active| active.set(bug));
}

/// Whether `bug` is on for this thread (always false without the feature).
pub(crate) fn active(bug: Bug) -> bool {
    #[cfg(feature = "deliberate-bugs")]
    return ACTIVE.with(|active| active.get() == Some(bug));
    #[cfg(not(feature = "deliberate-bugs"))]
    {
        let _ = bug;
        false
    }
}
