//! # txdisk-integrity: every block verified when it is read
//!
//! **What it offers.** [`IntegrityDisk`]: a [`Disk`](txdisk_disk::Disk) over a device, a
//! little smaller than it, whose every block is checked on `read` against a **tag** kept in a
//! region of its own: a hash of the block's contents, the hash of its previous contents and
//! a write generation, the whole entry bound by its own CRC to the block's **address** and the
//! image's salt. A block that does not match is never returned: the read fails with
//! [`DiskError::Corrupt`](txdisk_disk::DiskError::Corrupt) naming the address and what was
//! found ([`Damage`](txdisk_disk::Damage): flipped, misdirected, stale). Because the tag lives
//! outside the block it covers, a write that never reached the medium (the old block is still
//! self-consistent) and a write that landed at the wrong address are caught as surely as rot.
//! Each member of a replicated pair is one, and so is a single image: the replicated disk
//! above turns a failed verification into a read of the other member and a repair.
//! `format`, `open` (which refuses images of txdisk's first, unchecksummed format by name),
//! `verify`, `generation`, `repair_superblocks`; through the `Disk` trait, `generation` and
//! `write_copy` (a copy of another disk's block recorded at that block's generation, so that
//! the two members of a pair count alike). Layout: docs/FORMAT-integrity.md.
//!
//! **Rep invariant ([`IntegrityDisk::check_rep`], after every operation in debug builds).**
//! The superblock is the layout its device size and salt give and fits the device; the tag
//! cache holds only tag blocks of that layout; an entry changed since the last sync is in a
//! block marked dirty (so the next sync writes it); every entry written decodes to what was
//! encoded (checked as it is written).
//!
//! **Crash invariant.** A block and its tag are two writes, made durable by the same `sync`
//! (tags are written at `sync`, before the device's own): after a crash, a block written since
//! the last sync may fail verification, and no other can. Every layer above already treats a
//! block written since its last sync as possibly torn, and rewrites or ignores it before it
//! trusts it (the log replays installations and discards the torn tail of the log): a failed
//! verification there is that torn block reported as an error. A block synced since its last
//! write always verifies. Tag entries are 16 bytes and never cross a 512-byte sector, so a
//! torn tag block leaves each entry wholly old or wholly new. Tested by `tests/crash.rs` at
//! every crash point and state (torn sectors included) and across the stack by the workspace's
//! exhaustive crash tests.
//!
//! What it cannot see: a block and its tag both lost by the same failing device (the older,
//! consistent pair) — on a replicated pair the other member's higher generation shows it.
//! Errors are values ([`IntegrityError`] for format and open); a panic is a broken invariant.

#![deny(missing_docs)]

pub mod bugs;
mod checked;
mod error;
pub mod format;

pub use checked::IntegrityDisk;
pub use error::{IntegrityError, Result};
