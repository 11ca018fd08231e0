//! Deliberately wrong variants of this layer, for proving that the tests and the fuzzer catch
//! them. The list is always there (the fuzzer names variants on its command line and in its
//! tokens); the switch is compiled only with the `deliberate-bugs` feature, and is per thread.

#[cfg(feature = "deliberate-bugs")]
use std::cell::Cell;

/// A known-wrong change to the integrity layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// Reads return the block's bytes without checking them against its tag.
    SkipVerify,
    /// `sync` syncs the device first and writes the tags after it, unsynced.
    TagsAfterSync,
}

impl Bug {
    /// Every variant, for tests that try each.
    pub const ALL: [Bug; 2] = [Bug::SkipVerify, Bug::TagsAfterSync];

    /// The variant's name on a command line: `skip-verify`, `tags-after-sync`.
    pub fn name(self) -> &'static str {
        match self {
            Bug::SkipVerify => "skip-verify",
            Bug::TagsAfterSync => "tags-after-sync",
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

#[cfg(feature = "deliberate-bugs")]
pub(crate) fn active(bug: Bug) -> bool {
    ACTIVE.with(|active| active.get() == Some(bug))
}
