//! # txdisk-inspect: inspecting and repairing txdisk images
//!
//! The integrity check and the log dump as library functions, so that the `txdisk` program,
//! the tests and the fuzzer all run the same code (as redb's `Database::check_integrity`):
//!
//! * [`check`] — e2fsck for txdisk: reads one image or a replicated pair *read-only*, each
//!   through its checksums (the `IntegrityDisk` over the file), and checks every layer from the
//!   bottom: the files (whole blocks, not truncated), the checksum superblocks, every block
//!   verified (failures counted per member by kind: flipped, misdirected, stale, unreadable),
//!   the pair metadata of each member (both slots, one pair, roles, sizes, which member
//!   recovery would copy from, a dirty, stale or half-rebuilt member), the write-intent
//!   bitmaps (which chunks the next open would copy, unusable bitmap blocks), the replicas'
//!   data block by block (a difference in a chunk the next open would not copy is an error),
//!   then the log:
//!   superblock, both header slots, and every transaction of the live log as the one log
//!   parser ([`txdisk_log::tooling::scan_log`]) sees it — what recovery would replay, and why the chain
//!   ends. With `repair`, it runs the layers' own recoveries and checks again.
//! * [`logdump`] — the log, transaction by transaction, like debugfs's logdump.
//! * `damaged` (feature `test-support`) — deliberately damaged images for tests.
//!
//! **What each state means** (the exit code is e2fsck's: [`FsckReport::exit_code`]):
//!
//! | found | severity | without repair | repair |
//! |---|---|---|---|
//! | valid transactions in the log (committed, not installed) | fixable: "recovery needed" | 4 | log recovery replays them: 1 |
//! | a pair not closed cleanly, replicas that differ, a stale or half-rebuilt member, one damaged metadata slot, an unusable bitmap block | fixable | 4 | replica recovery (and an unusable bitmap block left after it rewritten clear): 1 |
//! | replicas that differ in a chunk the next open would not copy (its bit clear on both members, or both closed clean) | error: crash recovery would leave them differing | 4 | the repair's resync reads every block and keeps the newer copy: 1 |
//! | a block failing verification whose copy on the other member verifies; one damaged checksum superblock copy | fixable | 4 | the good copy written back: 1 |
//! | a block failing verification in unused log space or a header slot, on every copy | info: a crash during an unacknowledged write | 0 | nothing to do |
//! | a home block failing verification on every copy that log recovery rewrites | fixable | 4 | log recovery: 1 |
//! | any other block failing verification on every copy (lost), both checksum superblock copies damaged | error | 4 | not attempted: 4 |
//! | a torn record at the end of the log, valid records past it that no later record vouches for | info: a crash during a commit, never acknowledged | 0 | nothing to do |
//! | a broken chain (a later record says a bad one was durable), a bad superblock checksum or geometry, no valid header, a truncated image, inconsistent pair metadata | error | 4 | not attempted: 4 |
//! | not a file of ours, an empty file, a directory, a format version from the future, an image of format 1 (no checksums), members of different pairs | operational ([`InspectError`]) | 8 | 8 |
//!
//! A torn tail is not an error: a record is acknowledged only once it and everything before it
//! are durable, so a record whose checksum fails and that no later valid record vouches for was
//! never acknowledged; recovery drops it and moves the sequence numbers past it.
//!
//! Repair writes nothing if the check found an error it cannot correct (every error but a
//! difference the bitmap does not cover, which its resync corrects): the recoveries assume a
//! sound image, and a resync run on a damaged one would copy the damage over the good replica
//! (when the log is damaged on the member recovery copies from, the check says whether the
//! other member's copy is intact). Where the replicas' copies of a block differ, the checksums
//! say which is right: a copy that verifies beats one that does not, and of two that verify
//! the one with the higher write generation is the newer
//! ([`newer_copy`](txdisk_replicated::newer_copy)); only where the generations decide nothing
//! does the member recovery copies from (d1 when both are current) win. The log is checked in
//! the pair's address space as the repair leaves it — each block from the copy that is right —
//! and the repair's resync keeps exactly those copies.

#![deny(missing_docs)]

mod check;
#[cfg(feature = "test-support")]
pub mod damaged;
mod dump;
mod error;
mod repair;
mod report;
mod verify;
mod view;

pub use check::{check, check_with_progress, CheckOptions, Progress};
pub use dump::{hex_dump, logdump, DumpOptions, DumpRecord, LogDump, RawBlock};
pub use error::{InspectError, Result};
pub use report::{
    stop_kind, BitmapReport, BlockFailure, Finding, FsckReport, LogReport, MemberBitmapReport,
    MemberReport, RecordSummary, RepairReport, ReplicaDiff, Severity, UnusableBitmapBlock,
    VerifyReport, EXIT_CLEAN, EXIT_CORRECTED, EXIT_OPERATIONAL, EXIT_UNCORRECTED,
};
pub use view::{open_image, CheckedImage, ImageKind, OpenedImage, Window};
