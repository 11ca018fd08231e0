//! Deliberately wrong variants of the log, for proving that crash tests and the fuzzer catch
//! real bugs. The list of variants is always there (the fuzzer names them on its command line
//! and in its tokens); the switch that turns one on is compiled only with the `deliberate-bugs`
//! feature. It is per thread, so only the (single-threaded) run that sets it is affected.

#[cfg(feature = "deliberate-bugs")]
use std::cell::Cell;

/// A known-wrong change to the log's crash protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// A durable commit returns without syncing the log records it wrote.
    CommitWithoutFlush,
    /// Recovery replays a record whose checksum does not match.
    ReplayWithoutChecksum,
    /// Installation writes the new header before the home blocks are durable.
    HeaderBeforeInstallDurable,
    /// Recovery keeps the sequence number instead of jumping past stale records.
    NoSequenceJump,
    /// A group flush acknowledges every record committed by the time it ends, including the
    /// ones appended after it took its batch (late joiners whose records it never wrote).
    AckLateJoiners,
    /// An installation moves the tail to the head as it finds it when writing the header, so
    /// the space of records reserved since it picked its batch (not yet written, or not yet
    /// durable) is freed under them.
    TailPastReservations,
    /// A read of a block whose newest record is not yet durable returns the home block (the
    /// previous value) instead: wrong only while the log runs — recovery installs everything.
    StaleLiveRead,
    /// Installation never writes the data region's last block home, and drops it from the log.
    LastBlockDropped,
    /// A failed sync is taken for a good one: the commit that asked for it returns Ok.
    FailedSyncIgnored,
}

impl Bug {
    /// The crash-protocol variants, which a single-threaded crash campaign must catch.
    pub const ALL: [Bug; 4] = [
        Bug::CommitWithoutFlush,
        Bug::ReplayWithoutChecksum,
        Bug::HeaderBeforeInstallDurable,
        Bug::NoSequenceJump,
    ];

    /// The concurrency variants, which only a search of thread schedules can catch.
    pub const RACES: [Bug; 2] = [Bug::AckLateJoiners, Bug::TailPastReservations];

    /// The variants only a check of the running log sees — its reads as they happen, the last
    /// block of the region, failing syncs — which the crash campaigns of this crate do not do
    /// (they check states after recovery): the crash fuzzer's live oracle catches them.
    pub const SEEN_LIVE: [Bug; 3] = [
        Bug::StaleLiveRead,
        Bug::LastBlockDropped,
        Bug::FailedSyncIgnored,
    ];

    /// The variant's name on a command line: `commit-without-flush`, ...
    pub fn name(self) -> &'static str {
        match self {
            Bug::CommitWithoutFlush => "commit-without-flush",
            Bug::ReplayWithoutChecksum => "replay-without-checksum",
            Bug::HeaderBeforeInstallDurable => "header-before-install-durable",
            Bug::NoSequenceJump => "no-sequence-jump",
            Bug::AckLateJoiners => "ack-late-joiners",
            Bug::TailPastReservations => "tail-past-reservations",
            Bug::StaleLiveRead => "stale-live-read",
            Bug::LastBlockDropped => "last-block-dropped",
            Bug::FailedSyncIgnored => "failed-sync-ignored",
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
