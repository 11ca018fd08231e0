//! Deliberately wrong variants of this layer, for proving that the tests and the fuzzer catch
//! them. The list is always there (the fuzzer names variants on its command line and in its
//! tokens); the switch is compiled only with the `deliberate-bugs` feature, and is per thread.

#[cfg(feature = "deliberate-bugs")]
use std::cell::Cell;

/// A known-wrong change to the replicated layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// A pair `sync` clears the bitmap bits of idle chunks (and writes them) *before* it syncs
    /// the members, so a crash during the sync can leave the members different in a chunk
    /// whose bit is clear: recovery never copies it.
    ClearBeforeSync,
    /// A read that falls back to the other member writes the good value back over the member
    /// it was read from, not the one whose block failed: the bad block is never repaired.
    RepairWritesWrongMember,
    /// A write takes no address (stripe) lock: two writers of one address can interleave their
    /// member writes so that d1 keeps one value and d2 the other, and a read can run between
    /// the two member writes.
    WriteWithoutAddressLock,
}

impl Bug {
    /// The variants a single-threaded campaign (the crash tests, the fuzzer) must catch.
    pub const ALL: [Bug; 2] = [Bug::ClearBeforeSync, Bug::RepairWritesWrongMember];

    /// The concurrency variants, which only a search of thread schedules can catch.
    pub const RACES: [Bug; 1] = [Bug::WriteWithoutAddressLock];

    /// The variant's name on a command line: `clear-before-sync`, ...
    pub fn name(self) -> &'static str {
        match self {
            Bug::ClearBeforeSync => "clear-before-sync",
            Bug::RepairWritesWrongMember => "repair-writes-wrong-member",
            Bug::WriteWithoutAddressLock => "write-without-address-lock",
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
