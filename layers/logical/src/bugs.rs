//! Deliberately wrong variants of the logical disk, for proving that the crash fuzzer catches
//! them. The list is always there (the fuzzer names variants on its command line and in its
//! tokens); the switch is compiled only with the `deliberate-bugs` feature, and is per thread.

#[cfg(feature = "deliberate-bugs")]
use std::cell::Cell;

/// A known-wrong change to the logical disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// A commit skips re-validating its read set: a transaction whose reads another commit
    /// changed commits anyway (a lost update).
    ValidationSkipped,
}

impl Bug {
    /// Every variant, for tests that try each.
    pub const ALL: [Bug; 1] = [Bug::ValidationSkipped];

    /// The variant's name on a command line: `validation-skipped`.
    pub fn name(self) -> &'static str {
        match self {
            Bug::ValidationSkipped => "validation-skipped",
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

/// Whether `bug` is on in this thread (never without the feature).
pub(crate) fn active(bug: Bug) -> bool {
    #[cfg(feature = "deliberate-bugs")]
    return ACTIVE.with(|active| active.get() == Some(bug));
    #[cfg(not(feature = "deliberate-bugs"))]
    {
        let _ = bug;
        false
    }
}
