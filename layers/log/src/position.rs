//! The two kinds of number the running log counts in, kept apart by type: a position in the
//! log and a record's sequence number. Both are `u64` on disk (the format's `Header` and
//! records, the tooling API and the public API keep `u64`); the conversions happen at those
//! edges.

use crate::format::Header;
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// An absolute position in the log, counted in blocks: block `log_start + pos % log_blocks`
/// on disk. Positions never wrap numerically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct LogPos(pub u64);

/// A record's sequence number: consecutive along the log, the first one is 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Seq(pub u64);

impl Add<u64> for LogPos {
    type Output = LogPos;
    /// The position `blocks` further on.
    fn add(self, blocks: u64) -> LogPos {
        LogPos(self.0 + blocks)
    }
}

impl AddAssign<u64> for LogPos {
    fn add_assign(&mut self, blocks: u64) {
        self.0 += blocks;
    }
}

impl Sub for LogPos {
    type Output = u64;
    /// Blocks from `earlier` to `self`.
    fn sub(self, earlier: LogPos) -> u64 {
        self.0 - earlier.0
    }
}

impl Seq {
    /// The sequence number of the record after this one.
    pub(crate) fn next(self) -> Seq {
        Seq(self.0 + 1)
    }

    /// The sequence number of the record before this one (`self` is at least 1).
    pub(crate) fn prev(self) -> Seq {
        Seq(self.0 - 1)
    }
}

impl fmt::Display for LogPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Header {
    /// Where the live log starts.
    pub(crate) fn tail(&self) -> LogPos {
        LogPos(self.tail_pos)
    }

    /// The sequence number the record at the tail carries.
    pub(crate) fn first_seq(&self) -> Seq {
        Seq(self.tail_seq)
    }
}
