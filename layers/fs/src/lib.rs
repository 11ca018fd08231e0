//! # txdisk-fs: a small POSIX-like file system on the transactional logical disk
//!
//! The example user of the txdisk stack: an ext2-shaped file system (superblock, inode and
//! block bitmaps, an inode table, linear directories, files with ten direct blocks, one
//! indirect and one double-indirect block — up to just over 1 GiB) in which **every operation
//! is one transaction** of the store below, so a crash leaves each operation all or nothing
//! and the file system never needs an fsck-style repair.
//!
//! It runs on any [`TxStore`]: the logical disk (`txdisk-logical`) in production, [`MemStore`]
//! in tests. The byte layout is in `FORMAT.md` beside this crate and in [`mod@format`].
//!
//! **Operations** ([`Fs`]), inode-based like a kernel VFS: `mkfs`, `open`, `lookup`, `create`,
//! `mkdir`, `link`, `read`, `write` (any offset and length, holes read as zeros), `truncate`,
//! `unlink`, `rmdir`, `rename` (across directories, replacing as POSIX does), `readdir`,
//! `stat`, `fsync`, plus path-level helpers for tools (`resolve`, `mkdir_path`, `put_file`,
//! `get_file`, `list_path`, `remove_path`, `rename_path`, `stat_path`). Errors are [`FsError`] values
//! with the errno a POSIX program expects ([`FsError::errno`]).
//!
//! **Atomicity and durability.** Each operation commits with `commit_nosync`: atomic at once,
//! durable at the next [`Fs::fsync`] (which flushes the store), in operation order — so after a
//! crash the file system is in the state after some prefix of the completed operations that
//! includes every one before the last successful `fsync`. [`FsOptions::sync_every_op`] makes
//! each operation durable on return instead. The exception is a **write larger than one
//! transaction can carry** ([`Fs::write_chunk_bytes`], derived from the store's
//! `max_tx_blocks`): it is split at chunk boundaries into several transactions, each atomic and
//! each leaving a consistent file system with the file size covering the chunks written, so a
//! crash may keep a prefix of the chunks — the guarantee ext4 gives with `data=ordered`.
//!
//! **Concurrency.** Operations are serialised by one lock per file system; the store's
//! serializability is a second line of defence for a store shared with other users: a
//! conflict error from a commit retries the whole operation (at most [`MAX_ATTEMPTS`] times,
//! then [`FsError::Busy`]).
//!
//! **Limits, all from the geometry.** Every loop over disk contents is bounded: bitmap scans by
//! the region sizes, directory scans by the directory's size (itself at most the largest file),
//! block-map walks by the pointer tables, parent-chain walks by the inode count. Names are at
//! most [`format::NAME_MAX`] (112) bytes. A store whose transactions cannot hold the largest
//! non-write operation (14 blocks plus every bitmap block, since freeing a large file clears
//! bits anywhere in the block bitmap in one transaction) is refused with
//! [`FsError::TxTooSmall`]. Consecutive pieces of a split write are separate operations under
//! the lock, so another thread's operation may come between them.
//!
//! **Invariants.** [`check_invariants`] is the crash invariant: it walks the tree and checks
//! the bitmaps, link counts, directory entries and sizes (see [`check`]). `Fs::check_rep` runs
//! after every mutating operation in debug builds, and runs the whole check too with the
//! `expensive-checks` feature.
//!
//! **Crash oracle.** [`oracle`] holds a workload generator, an in-memory model of the tree and
//! a recorder that checks a recovered file system against every state a crash may legally
//! leave: the crash tests here and the crash-point fuzzer use the same code.
//!
//! **FUSE** (feature `fuse`): [`fuse::spawn_mount`] and [`fuse::mount`] serve a file system
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
//! mount), `crashfuzz_fs` (the crash-point fuzzer driving the file system as a pluggable layer:
//! every disk crash point of short workloads, crashed recovery, the invariant checker and the
//! contents oracle; three deliberately wrong variants it must catch, with replay tokens).
//!
//! **Not supported (yet):** open-but-unlinked files (an unlinked file is freed at once),
//! timestamps, permissions and ownership, symbolic links.

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
pub use format::{Ino, Kind, ROOT_INO};
pub use fs::{DirEntry, Fs, FsOptions, FsStats, MkfsOptions, Stat, MAX_ATTEMPTS};
pub use paths::STREAM_PIECE_BYTES;
pub use store::{MemStore, StoreError, TxHandle, TxStore};
