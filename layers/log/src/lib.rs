#![deny(missing_docs)]
//! # txdisk-log: the write-ahead log
//!
//! **What it offers.** Atomic multi-block transactions over one
//! [`Disk`](txdisk_disk::Disk) that writes single blocks, buffers them until `sync`, and may
//! crash anywhere. [`Log::begin`] gives a [`Transaction`] (`read`, `write`); its `commit` is
//! atomic and durable on return (FSCQ's `log_commit`), `commit_nosync` atomic now and durable
//! at the next [`Log::flush`], in commit order; [`Log::atomic_two_write`]; [`log_recover`],
//! which [`Log::open`] runs, may itself crash and be run again. The address space is the
//! image's data region, `0..data_blocks()`. The format, the scanner and the checkers, for tools
//! and tests, are in [`tooling`].
//!
//! **Regions of the log**, by absolute position (block `log_start + pos % log_blocks`;
//! `durable` is the end of record `durable_seq`):
//!
//! ```text
//!   installed | logged, durable | logged, in memory | free
//!             ^tail_pos         ^durable            ^head_pos
//! ```
//!
//! **Rep invariant** ([`Log::check_rep`], after every public operation that changes the state,
//! in debug builds): `tail_pos <= head_pos <= tail_pos + log_blocks`; `durable_seq < next_seq`;
//! the in-memory records are contiguous from the tail with consecutive sequence numbers ending
//! at `head_pos` / `next_seq`; records no flusher has taken are newer than `durable_seq`; the
//! map of logged blocks holds exactly the newest value of every address a record names. The
//! disk's `check_rep` runs first.
//!
//! **Crash invariant** ([`tooling::log_intact`], [`tooling::matches_prefix`]): after any crash
//! and recovery, the data region equals the contents after some prefix of the commit order that
//! includes every transaction whose durable commit (or a flush after it) returned. Recovery
//! writes nothing its scan depends on until the replay is durable, so it is idempotent.
//!
//! Errors are values ([`LogError`]); a panic here means a broken invariant of this crate.
//!
//! ## How it works
//!
//! **Commit and group commit** (`commit.rs`). A commit reserves `[head_pos, head_pos + len)`
//! and the next sequence number under the state lock and is visible to readers at once (the map
//! of logged blocks). The first committer that needs durability and finds no flush in progress
//! writes every record not yet written and syncs once for all of them; the others wait for it.
//! No lock that committers or readers need is held across I/O. Between `durable` and `head_pos`
//! the flusher's batch may be written but not yet synced.
//!
//! **Installation** (`install.rs`, through the one home-writer in `home.rs`). Durable records
//! are copied home (repeated writes to one address absorbed), synced, then the header with the
//! new tail is written and synced: only then is the space reused. It runs in a background thread
//! when the log is half full (switchable off for deterministic tests) and synchronously when a
//! commit finds the log full.
//!
//! **One flush per durable commit.** A record is its descriptor block(s) — magic, sequence
//! number, the highest sequence durable when it was written, the home addresses, a CRC-32C
//! over the descriptors and data seeded with the image's random salt — then its data blocks.
//! No separate commit block: a record whose checksum matches is complete, one that does not is
//! a torn tail. The format is in `docs/FORMAT.md`.
//!
//! **Recovery** ([`log_recover`], `recovery.rs`) follows the chain from the newest valid header
//! slot: each record must carry the next sequence number and a matching checksum; the first
//! that does not ends the log. It replays the chain home (absorbed), syncs, then writes a header
//! whose tail is the chain's end and whose sequence number jumps by `log_blocks`, past every
//! sequence number that can be in the log region, so no stale record can ever be mistaken for a
//! new one. A bad record followed by a valid one that says the bad one had been durable is
//! corruption, not a torn tail: recovery refuses it ([`LogError::Corruption`]) rather than drop
//! acknowledged transactions silently.

mod api;
pub mod bugs;
mod commit;
mod error;
mod format;
mod home;
mod install;
mod invariants;
mod position;
mod read;
mod recovery;
mod scan;
mod state;
mod wal_check;

pub use api::{Log, LogOptions, LogStats, Transaction};
pub use error::{LogError, Result};
pub use recovery::{log_recover, RecoveryReport};

/// The tooling API: the on-disk format, the read-only scanner the inspector and recovery share,
/// and the invariants and checkers that tests and the crash fuzzer apply. Programs that only
/// run transactions need none of it.
pub mod tooling {
    pub use crate::format::{
        record_len_blocks, Header, Superblock, FORMAT_VERSION, HEADER_SLOTS, LOG_START,
        MIN_LOG_BLOCKS, SUPERBLOCK_ADDR,
    };
    pub use crate::invariants::{
        first_difference, log_intact, matches_prefix, Contents, CrashViolation,
    };
    pub use crate::scan::{
        read_headers, read_superblock, scan_log, ScanReport, ScanStop, ScannedRecord, SlotState,
    };
    pub use crate::wal_check::WalChecker;
}

/// True when the deliberately wrong variant `bug` is switched on (never without the feature).
macro_rules! bug_active {
    ($bug:ident) => {{
        #[cfg(feature = "deliberate-bugs")]
        let active = crate::bugs::active(crate::bugs::Bug::$bug);
        #[cfg(not(feature = "deliberate-bugs"))]
        let active = false;
        active
    }};
}
pub(crate) use bug_active;

/// A salt for a new image: not secret, but unknown to anyone who writes data through the log,
/// so no data block can be crafted to pass a record checksum.
pub fn random_salt() -> u64 {
    txdisk_disk::rng::random_seed()
}
