//! Deliberately wrong variants of the file system, for proving that the crash fuzzer's file
//! system layer and the invariant checker catch them. The list is always there (tests name
//! variants in their tokens); the switch is compiled only with the `deliberate-bugs` feature,
//! and is per thread.

#[cfg(feature = "deliberate-bugs")]
use std::cell::Cell;

/// A known-wrong change to the file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// Removing a name of a file (unlink, or a rename over it) leaves the file's link count
    /// as it was: the last unlink never frees the inode.
    UnlinkKeepsLinkCount,
}

impl Bug {
    /// The variant's name in a test's output: `unlink-keeps-link-count`.
    pub fn name(self) -> &'static str {
        match self {
            Bug::UnlinkKeepsLinkCount => "unlink-keeps-link-count",
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
