//! # txdisk-fs: a POSIX file system on the transactional logical disk
//!
//! **What it offers.** [`Fs`], a POSIX file system (superblock, inode and block bitmaps, an
//! inode table of 256-byte inodes with mode, owner, group, nanosecond times and device number;
//! directories as B+-trees keyed by a keyed hash of the name; files of ten direct blocks, one
//! indirect and one double-indirect block: just over 1 GiB) on any [`TxStore`] (the logical disk
//! in production, [`MemStore`] in tests), in which **every operation is one transaction**.
//! Operations are inode-based like a kernel VFS (`mkfs`, `open`, `lookup`, `create`, `mkdir`,
//! `make_node` for FIFOs, sockets and devices, `symlink`, `readlink`, `link`, `read`, `write`,
//! `truncate`, `setattr` for chmod/chown/utimens, `unlink`, `rmdir`, `rename` and `rename_with`
//! for `RENAME_NOREPLACE`/`RENAME_EXCHANGE`, `readdir`/`readdir_from` with offsets that stay
//! valid while entries come and go, `stat`, `statfs`, `fsync`), with path-level helpers for
//! tools; [`check_invariants`] is an fsck that reports and never repairs. Lookup, create and
//! unlink cost O(log n) block reads in a directory of n entries. The byte layout (version 2)
//! is in `FORMAT.md` beside this crate and in [`mod@format`].
//!
//! **Crash invariant.** Operations commit without waiting for the disk (`commit_nosync`); each
//! is atomic at once and durable at the next [`Fs::fsync`] — which `fsync`, `fdatasync`,
//! `fsyncdir` and unmount all are over FUSE, and which the mount's background flusher runs
//! every 5 s by default ([`fuse::MountOptions`]) — or at once with
//! [`FsOptions::sync_every_op`]. After a crash the tree equals the state after some prefix of
//! the operations that includes every operation that completed before an `fsync` (of anything)
//! returned. A write larger than one transaction ([`Fs::write_chunk_bytes`]) may keep a prefix
//! of its chunks. Every state a crash can leave passes [`check_invariants`], so no fsck-style
//! repair is ever needed. The crash oracle and the fuzzer's file-system layer check exactly
//! this, times and link counts included.
//!
//! **Rep invariant (`Fs::check_rep`, after every public operation in debug builds).** Always
//! (cheap): the geometry is the one `Superblock::layout` gives for its two numbers and fits the
//! store; a write chunk is at least one block and, like every other operation, fits one
//! transaction; the allocation hints lie inside the bitmaps. With `expensive-checks` (the whole
//! image, what [`check`] verifies): the inode and block bitmaps mark exactly what is reachable
//! from the root, every block owned once; every directory entry names an allocated inode of
//! its kind; every directory's B-tree agrees with its entries; link counts (hard links
//! included), sizes and symbolic-link targets agree with the entries and the block lists;
//! metadata is in range. A store error
//! during that check is returned as an error value, a broken invariant panics.
//!
//! Errors are values ([`FsError`], with the errno a POSIX program expects); a panic here means
//! a broken invariant of this crate.
//!
//! ## Details
//!
//! **Atomicity and durability.** Each operation commits with `commit_nosync` (`commit` with
//! `sync_every_op`); [`Fs::fsync`] flushes the store. A write larger than one transaction can
//! carry ([`Fs::write_chunk_bytes`], derived from the store's `max_tx_blocks`) is split at chunk
//! boundaries into several transactions, each atomic and each leaving a consistent file system
//! with the file size covering the chunks written — the guarantee ext4 gives with
//! `data=ordered`.
//!
//! **Concurrency.** Operations are serialised by one lock per file system; the store's
//! serializability is a second line of defence for a store shared with other users: a
//! conflict error from a commit retries the whole operation (at most [`MAX_ATTEMPTS`] times,
//! then [`FsError::Busy`]).
//!
//! **Limits, all from the geometry.** Every loop over disk contents is bounded: bitmap scans by
//! the region sizes, directory scans by the directory's size (itself at most the largest file),
//! block-map walks by the pointer tables, parent-chain walks by the inode count. Names are at
//! most [`format::NAME_MAX`] (255) bytes, symbolic-link targets at most 4095. Directory trees
//! have at most five levels (a root split past that is `NoSpace`, as ext4 bounds its htree). A
//! store whose transactions cannot hold the largest non-write operation (31 blocks plus every
//! bitmap block, since freeing a large file clears bits anywhere in the block bitmap in one
//! transaction) is refused with [`FsError::TxTooSmall`]. Consecutive pieces of a split write are separate operations under
//! the lock, so another thread's operation may come between them.
//!
//! **Crash oracle** (feature `test-support`, test support only). `oracle` holds a workload
//! generator, an in-memory model of the tree and a recorder that checks a recovered file system
//! against every state a crash may legally leave: the crash tests here use it, and so does the
//! file system's layer for the crash-point fuzzer (`tests/crashfuzz_fs.rs`).
//!
//! **FUSE** (feature `fuse`): `fuse::spawn_mount` and `fuse::mount` serve a file system
//! at a mount point through the `fuser` crate's own mount (no libfuse), flushing the store when
//! the session ends.
//!
//! **Tests** (`cargo test -p txdisk-fs`; the mount test needs the `fuse` feature, which the
//! workspace build turns on through the `txdisk` CLI):
//! `model` (quickcheck: operation sequences against an in-memory tree), `crash` (MemStore:
//! crashes at every store call of some workloads and sampled calls of many, recovery to a
//! random prefix of the unflushed commits, the oracle), `on_logical` (the same oracle on a
//! LogicalDisk over a SimDisk: every disk crash point, torn writes included), `fsck` (one
//! hand-made corruption per checker violation), `errors` (POSIX errors, conflicts, limits),
//! `large` (a 100 MiB file and a 10,000-entry directory), `fuse_mount` (real programs on a
//! mount), `fuse_posix` (`cp -a` of a tree with symbolic and hard links, modes, owners and
//! times, identical under `lstat` after a remount; chmod/chown/utime persisting; rename
//! replacing, NOREPLACE and EXCHANGE; a 100,000-entry directory; readdir while entries change —
//! each scenario run on the host's file system first as the reference), `format_layout` (the
//! bytes against `FORMAT.md`), `crashfuzz_fs` (the crash-point fuzzer driving the file system as a pluggable layer:
//! every disk crash point of short workloads, crashed recovery, the invariant checker and the
//! contents oracle; four deliberately wrong variants it must catch, with replay tokens, one of
//! them [`bugs::Bug::UnlinkKeepsLinkCount`]).
//!
//! **Not supported (yet):** open-but-unlinked files (an unlinked file is freed at once, so a
//! process holding it open gets `ENOENT`), extended attributes (the format reserves 80 bytes
//! per inode for them; FUSE answers `EOPNOTSUPP`), access-time updates on read (`noatime`).

#![deny(missing_docs)]

pub mod bugs;
pub mod check;
mod dir;
mod error;
pub mod format;
mod fs;
#[cfg(feature = "fuse")]
pub mod fuse;
mod logical_store;
#[cfg(feature = "test-support")]
pub mod oracle;
mod paths;
pub mod store;
mod txn;

pub use check::{check_invariants, FsckReport, Violation};
pub use error::{errno, FsError, Result};
pub use format::{Ino, Kind, Timestamp, ROOT_INO};
pub use fs::{
    Clock, DirEntry, Fs, FsOptions, FsStats, MkfsOptions, NewInode, RenameMode, SetAttr, Stat,
    MAX_ATTEMPTS,
};
pub use logical_store::LogicalStore;
pub use paths::STREAM_PIECE_BYTES;
pub use store::{MemStore, StoreError, TxHandle, TxStore};
