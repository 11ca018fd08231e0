#![deny(missing_docs)]
//! # txdisk-replicated: one crash-safe `Disk` over two unreliable ones
//!
//! **What it offers.** [`ReplicatedDisk`] puts two [`Disk`](txdisk_disk::Disk)s of equal size
//! ("d1" and "d2", the *members* or *replicas*) behind one `Disk` that survives either of them
//! failing: `write` goes to both under an address lock, `read` serves from d1 and heals it from
//! d2, `sync` flushes both at once. A member that returns a fail-stop error is marked failed and
//! the pair runs **degraded** on the other; both failed is
//! [`ReplicatedError::AllReplicasFailed`], never a panic. [`ReplicatedDisk::format`],
//! [`ReplicatedDisk::open`] (recovery: a resync or a rebuild, from the member [`choose_source`]
//! picks), [`ReplicatedDisk::open_degraded`], [`ReplicatedDisk::recover`],
//! [`ReplicatedDisk::rebuild`] (online), [`ReplicatedDisk::scrub`] (online: every copy
//! verified, a bad one repaired), [`ReplicatedDisk::close`] (clean shutdown: the next open
//! copies nothing), [`ReplicatedDisk::status`]. Each member starts with [`RESERVED_BLOCKS`]
//! blocks of pair metadata; data address `a` of the pair is block `a + RESERVED_BLOCKS` of each;
//! a write-intent bitmap ([`BitmapLayout`]) follows the data, so that recovery after a crash
//! copies only the chunks that were being written:
//!
//! ```text
//!  member:  | slot 0 | slot 1 | data 0 | data 1 | ... | data N-1 | bitmap 0 | ... |
//!             pair metadata     \____ size_blocks() = N _______/   1 bit per chunk
//! ```
//!
//! **Rep invariant** (`check_rep`, after every public operation in debug builds, once the
//! members' own rep invariants hold): (1) after every write while both members are active,
//! `d1[a] == d2[a]`, read back from both under the address lock (`check_write_rep`); (2) while
//! the in-memory dirty mark is set, the metadata of every active member says Dirty, so no data
//! write reaches a member whose metadata says Clean; (2b) every chunk with a write in flight is
//! marked in the bitmap, and only inside the pair (`IntentBitmap::check_rep`); (3) a member being rebuilt receives every
//! write but serves no read and is never a copy source, at most one member is rebuilding, and an
//! active member always has a disk; (4) at rest, both active members agree at every address
//! ([`replicas_agree`], reading all).
//!
//! **Crash invariant** ([`recovered_from`], against a [`WriteHistory`]): after any crash (during
//! a workload, during recovery, any number of times) and an `open`, every data address holds on
//! every active member one value that was written to it — the value durable at the last pair
//! `sync` that returned `Ok`, or one written after it — and the same value on both. The
//! bitmap's crash invariant ([`differences_marked`], on the members as a crash leaves them,
//! before `open`): wherever two current members differ, recovery copies.
//!
//! Errors are values ([`ReplicatedError`]); a panic here means a broken invariant of this crate.
//!
//! ## How it works
//!
//! * `write(a, v)`: marks the pair Dirty on disk if it is not already (see below); locks
//!   address `a` (one of [`LOCK_STRIPES`] striped mutexes); writes d1; writes d2; unlocks.
//! * `read(a)`: locks `a`; reads d1; on a per-block read error (a bad sector, or a copy that
//!   fails its member's verification) reads d2 and writes the good value back to d1
//!   (self-healing); on a fail-stop error fails d1 and reads d2.
//! * Copies that both verify but differ (after a crash, or a write lost with its checksum):
//!   the one with the higher write generation is the newer ([`newer_copy`], for members that
//!   keep generations: [`Disk::generation`](txdisk_disk::Disk::generation)); the resync and the
//!   scrub keep it, and every copy the pair makes (a repair, a resync, a rebuild) carries its
//!   origin's generation ([`Disk::write_copy`](txdisk_disk::Disk::write_copy)), so the two
//!   members' counts stay comparable. Members that keep none: d1 (the source) wins, as before.
//! * `scrub()`: every address, both copies, under the address lock: the good copy written over
//!   a failing or older one, what is lost on both counted, bad metadata slots rewritten
//!   (`scrub.rs`).
//! * `sync()`: syncs both members **concurrently** — d1 on the caller's thread, d2 on a worker
//!   started with the pair (no thread per sync), requests that arrive during a sync sharing the
//!   next one — so that the pair's flush costs about one flush; then clears the bitmap bits of
//!   chunks idle since before [`CLEAR_AFTER_IDLE_SYNCS`] syncs (written lazily, unsynced).
//! * **The write-intent bitmap** (`bitmap.rs`, Linux md's idea): before the first write into a
//!   chunk whose bit is not durable, the bit is written to every member being written and both
//!   are synced (writers that need bits at once share one flush); a bit is cleared only after a
//!   sync has covered the chunk's last write. After a crash `open` reads both bitmaps and copies
//!   only the chunks either marks ([`chunks_to_resync`]); a stale, half-rebuilt or blank member
//!   is still rebuilt whole.
//!
//! **Which order recovery needs.** The seed's rule "d1, then d2" is no longer what recovery
//! relies on: a resync copies, address by address, one member's whole value over the other's
//! (the source's, or the newer by write generation), so after a crash between, during or after
//! the two member writes of `write(a, v)` — either landed, both, or neither — the pair ends
//! holding one value that was written at `a`. What recovery needs is (1) the Dirty mark durable
//! on both before the first data write of a run (a crash then always finds the pair Dirty),
//! (2) the chunk's bit durable on both before either data write into it (a crash then always
//! finds the chunk marked), and (3) a `sync` that returns `Ok` only after both members' syncs
//! did (and after any bump a failure caused). The two data writes are still issued d1 then d2
//! by the writing thread: each is a copy into the page cache that costs less than handing it to
//! another thread; the device syncs, which do cost, run concurrently.
//! * A member that returns a fail-stop error (`Failed`, a failed write, a failed `sync`) is
//!   marked failed and the pair goes on **degraded** on the other; both failed is
//!   [`ReplicatedError::AllReplicasFailed`] (as a `Disk`: `DiskError::Failed`), never a panic.
//!   [`ReplicatedDisk::status`] says which members are alive.
//! * The rep invariant's (1) is checked after every `write`, (2), (3) and the bookkeeping by
//!   `check_rep`; the exhaustive crash test (`tests/exhaustive_crash.rs`) and the fuzzer check
//!   the crash invariant with [`recovered_from`].
//!
//! **Pair metadata and the event counter** (byte layout in `docs/FORMAT-replicated.md`). Each
//! member records the pair id, its role (d1 or d2), a state (Clean, Dirty, Rebuilding), an
//! event counter, as Linux md does, and `peer_events`, the newest event it knows its peer
//! holds. The counter advances at every transition that changes data a member must have seen —
//! the Dirty mark before the first write of a run (a member running alone records that it does
//! so with it), the Clean mark after writes, losing a member (durable on the survivor before
//! any later write or sync is acknowledged), the end of a rebuild — so a member that failed, or
//! an older copy of a member put back, carries fewer events than the current one.
//! [`choose_source`] (which `open` and the inspector share) takes as the source the member that
//! ran alone past the other, else the one with the most events (d1 on a tie, never a Rebuilding
//! one); the other is rebuilt if it is stale, half-rebuilt or blank ([`plan_other`]), resynced
//! from the source if either says Dirty. Two members that each ran alone past the other are a
//! split brain and are refused ([`ReplicatedError::SplitBrain`]). Disks of two different pairs,
//! a disk that is not a pair member, swapped members, or two copies of the same member are
//! refused too.
//!
//! ## The three questions of the replicated-disk example, for this implementation
//!
//! **1. A crash between the two writes.** The Dirty mark was durable on both members before the
//! write began, so `open` finds the pair Dirty and resyncs d1 → d2 at every address where they
//! differ. If `v` survived on d1 (durable, or a pending write the crash kept), the resync writes
//! it to d2: recovery *completes the pending write* ("recovery helping"), and the write takes
//! effect as if at its d1 write. If d1 lost `v`, its older value is copied over d2: the write
//! never happened, which is allowed because no `sync` had acknowledged it. The same holds for a
//! crash after both writes but before a `sync`, where d1 may lose `v` while d2 keeps it. Either
//! way both members end equal, holding the old value or the new one, never a mix.
//!
//! **2. Can a read return a block that is not yet durable?** Yes, before `sync`, exactly as a
//! single disk does: `read` returns the newest value written to the address (the address lock
//! makes it the value before or after any one write, never the state between the two member
//! writes), and that value is durable only once a later `sync` returns `Ok`. A value read
//! before that may be gone after a crash. The contract is the `Disk` trait's: reads see every
//! completed write; durability is promised only by `sync`. Two things are stronger than the
//! example: a read never returns a value that was not written (a repair writes back d2's value,
//! which equals d1's), and right after `open` every block is durable on both members, because
//! recovery syncs both before it marks the pair clean.
//!
//! **3. Disk 1 failing during recovery.** The example's loop skips such addresses and goes on,
//! silently leaving d2 a mix. Here a fail-stop of d1 during the resync fails d1 and bumps d2's
//! event counter (durably) before anything else: d2 stands alone, and every address of d2 holds
//! either its own value or the one copied from d1 — both values written there, so the crash
//! invariant holds — and d1, should it come back, is stale and is rebuilt from d2, never copied
//! over it. A per-block read error on d1 during the resync keeps d2's value and writes it back
//! to d1. If d1 fails while it is the *only* current member (d2 was stale and being rebuilt),
//! `open` refuses with [`ReplicatedError::AllReplicasFailed`]: d2's metadata says Rebuilding,
//! so it is never used as a source.
//!
//! ## Crash windows of the metadata updates
//!
//! Every metadata update writes one slot (the older) and syncs before anything else is written
//! to that member, so at most one slot is in flight and a crash (or torn write) leaves the
//! other, one step older, intact. Case by case:
//!
//! | update | crash before it is durable | crash after |
//! |---|---|---|
//! | format (d1, then d2) | d1 blank or torn: refused, format again | d2 blank: `open` rebuilds it |
//! | Dirty mark, a new event (d1, d2, d1 again, then data) | d2 one event behind d1 but not below d1's `peer_events`: resync, nothing differs | both Dirty: resync; from the third write on, a copy older than the event is stale |
//! | bump on going degraded | equal events: resync d1 → d2; only unsynced writes were issued since | failed member stale: rebuilt, never a source |
//! | clean close, a new event (data synced, then d1, d2) | d2 Dirty one event behind: resync | both Clean at equal events: nothing copied |
//! | resync at open (d2 written, both synced, then Clean marks) | still Dirty: resync again (idempotent: only d2 is written, and d1 only with d2's value) | Clean |
//! | rebuild: Rebuilding marker on the target (both slots) | target still stale or blank: rebuild again | Rebuilding: never a source, rebuild again |
//! | rebuild end, a new event: target synced; source, target current, source | Rebuilding: rebuild again | current; if Dirty, a resync equalises |
//!
//! The pair's `sync` and a member's failure are ordered by the metadata lock: a `sync` returns
//! `Ok` only after any bump in progress is durable, and a member replaced by `rebuild` carries a
//! new generation so that an error of the old disk is never blamed on the new one.
//!
//! **Limits.** Two members cannot outvote each other: if the current member is lost before
//! `open` ever reads it, and the stale one comes back alone, nothing left records that it is
//! stale, and the pair opens on it (Linux md has the same limit). A resync after a crash reads
//! only the chunks the bitmaps mark (the README's `reopen-after-crash` rows); a rebuild copies
//! the whole pair (its time: the `pair_timing` example). A bad block on the only current member stops a rebuild. Where the
//! disks tear writes at sector boundaries, a data block being written at the crash may be torn
//! (on d1, and then, copied, on both): the pair keeps its members equal and its metadata intact
//! (`tests/exhaustive_crash.rs` samples torn crash states), and leaves torn data to the checksums
//! of the layer above.

mod bitmap;
mod bugs;
mod error;
mod invariant;
mod member;
mod meta;
mod open;
mod pair;
mod resync;
mod scrub;
mod source;
mod syncer;
mod versions;

pub use bitmap::{
    chunks_to_resync, inspect_bitmap, BitmapBlock, BitmapLayout, MemberBitmap, BITMAP_HEADER_BYTES,
    BITMAP_MAGIC, CHUNKS_PER_BITMAP_BLOCK, CLEAR_AFTER_IDLE_SYNCS, DEFAULT_CHUNK_BLOCKS,
    MARK_AHEAD_CHUNKS, MAX_CHUNK_BLOCKS,
};
#[cfg(feature = "deliberate-bugs")]
pub use bugs::set as set_bug;
pub use bugs::Bug;
pub use error::{ReplicatedError, Result};
pub use invariant::{
    differences_marked, recovered_from, replicas_agree, BitmapCheck, CrashViolation, WriteHistory,
};
pub use meta::{
    inspect_member, MetaState, ReplicaMeta, Role, Slot, FORMAT_VERSION, MAGIC,
    OLDEST_READABLE_VERSION, RESERVED_BLOCKS,
};
pub use open::{data_blocks_for, member_blocks_for, FormatOptions};
pub use pair::{PairStatus, ReplicaStatus, ReplicatedDisk, LOCK_STRIPES};
pub use resync::{CopyReport, Phase, Progress, PROGRESS_INTERVAL_BLOCKS};
pub use scrub::{BlockFault, MemberScrub, ScrubReport, SCRUB_LISTED};
pub use source::{choose_source, plan_other, MemberPlan, Peer};
pub use versions::newer_copy;
