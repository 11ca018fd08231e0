//! # txdisk-log: the write-ahead log
//!
//! **What it offers.** Atomic multi-block transactions over one [`Disk`] that only writes single
//! blocks, buffers them until `sync`, and may crash anywhere: [`Log::begin`] → a
//! [`Transaction`] with `read`/`write`; `commit` (FSCQ's `log_commit`: atomic, durable on
//! return), `commit_nosync` + [`Log::flush`] (atomic now, durable at the next flush, in commit
//! order); [`Log::atomic_two_write`]; and [`log_recover`], which [`Log::open`] runs and which
//! may itself crash and be run again. The address space offered is the image's data region,
//! `0..data_blocks()`.
//!
//! **The moving parts.** Positions in the log are absolute (`u64`, block `log_start + pos %
//! log_blocks` on disk), so they never wrap numerically:
//!
//! ```text
//!   installed | logged, durable | logged, written  | committed, in memory | free
//!             ^tail_pos         ^(durable_seq)     ^(flusher's batch)     ^head_pos
//! ```
//!
//! A commit reserves `[head_pos, head_pos + len)` and the next sequence number under the state
//! lock and is visible to readers at once (the map of logged blocks). Durability is group
//! commit: the first committer that finds no flush in progress writes every record not yet
//! written and syncs once for all of them; the others wait for it. No lock that committers or
//! readers need is held across I/O. Installation copies durable records home (repeated writes
//! to one address absorbed), syncs, writes the header with the new tail, and syncs: only then
//! is the space reused. It runs in a background thread when the log is half full (switchable
//! off for deterministic tests) and synchronously when a commit finds the log full.
//!
//! **One flush per durable commit.** A record is its descriptor block(s) — magic, sequence
//! number, the highest sequence durable when it was written, the home addresses, a CRC-32C
//! over the descriptors and data seeded with the image's random salt — then its data blocks.
//! No separate commit block: a record whose checksum matches is complete, one that does not is
//! a torn tail. The format is in `docs/FORMAT.md`.
//!
//! **Recovery** ([`log_recover`]) follows the chain from the newest valid header slot: each
//! record must carry the next sequence number and a matching checksum; the first that does not
//! ends the log. It replays the chain home (absorbed), syncs, then writes a header whose tail
//! is the chain's end and whose sequence number jumps by `log_blocks`, past every sequence
//! number that can be in the log region, so no stale record can ever be mistaken for a new one.
//! A bad record followed by a valid one that says the bad one had been durable is corruption,
//! not a torn tail: recovery refuses it ([`LogError::Corruption`]) rather than drop
//! acknowledged transactions silently.
//!
//! **Rep invariant** ([`Log::check_rep`], after every public operation in debug builds):
//! `tail_pos <= head_pos <= tail_pos + log_blocks`; the in-memory records are contiguous from
//! the tail with consecutive sequence numbers ending at `head_pos` / `next_seq`; records not
//! yet handed to a flusher are newer than `durable_seq`; the map of logged blocks holds exactly
//! the newest value of every address named by a record. The disk's `check_rep` runs first.
//!
//! **Crash invariant** ([`log_intact`], [`matches_prefix`]): after any crash and recovery, the
//! data region equals the contents after some prefix of the commit order that includes every
//! transaction whose durable commit (or a flush after it) returned. `log_recover`'s crash
//! condition implies its precondition: it writes nothing the scan depends on until the replay
//! is durable, so it is idempotent.

mod api;
#[cfg(feature = "deliberate-bugs")]
pub mod bugs;
mod commit;
mod error;
mod format;
mod home;
mod install;
mod invariants;
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
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}
