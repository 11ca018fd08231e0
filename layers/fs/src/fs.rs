//! The file system's operations. Each runs as one store transaction (a large write as several,
//! one per chunk), under the file system's lock, retried from the start on a store conflict.

use crate::dir::{validate_name, Entry};
use crate::error::{FsError, Result};
use crate::format::{
    set_bit, Ino, Inode, Kind, Superblock, Timestamp, BLOCK_SIZE_BYTES, MAX_FILE_BLOCKS,
    MAX_FILE_BYTES, MAX_NODE_LEVEL, PERM_MASK, POINTERS_PER_BLOCK, ROOT_INO, SUPERBLOCK_ADDR,
    SYMLINK_MAX,
};
use crate::store::{TxHandle, TxStore};
use crate::txn::{Ctx, Hints};
use std::sync::Arc;
use txdisk_disk::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use txdisk_disk::sync::Mutex;
use txdisk_disk::{Addr, Block, BLOCK_SIZE};

/// How many times an operation is retried after store conflicts before giving up.
pub const MAX_ATTEMPTS: u32 = 64;

/// Options for [`Fs::mkfs`].
#[derive(Clone, Debug, Default)]
pub struct MkfsOptions {
    /// Inodes to provide; `None` = one per four blocks (at least 64).
    pub inode_count: Option<u64>,
    /// The directory-name hash key; `None` = a random one (tests fix it to replay).
    pub hash_seed: Option<[u64; 2]>,
}

/// Where the file system's times come from.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Nanoseconds since the epoch, set by hand; `None` = the system clock.
    manual_nanos: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system's real-time clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that reads `nanos` (since the epoch) until [`Clock::set`] moves it: tests
    /// and the crash oracle use it so that every time an operation stores is predictable.
    pub fn manual(nanos: i64) -> Clock {
        Clock {
            manual_nanos: Some(Arc::new(AtomicI64::new(nanos))),
        }
    }

    /// Sets a manual clock to `nanos` since the epoch (the system clock ignores it).
    pub fn set(&self, nanos: i64) {
        if let Some(manual) = &self.manual_nanos {
            manual.store(nanos, Ordering::SeqCst);
        }
    }

    /// Sets a manual clock to `time` (the system clock ignores it).
    pub fn set_time(&self, time: Timestamp) {
        self.set(time.as_nanos());
    }

    /// Whether the clock is set by hand.
    pub fn is_manual(&self) -> bool {
        self.manual_nanos.is_some()
    }

    /// The time now.
    pub fn now(&self) -> Timestamp {
        match &self.manual_nanos {
            Some(manual) => Timestamp::from_nanos(manual.load(Ordering::SeqCst)),
            None => Timestamp::from_system_time(std::time::SystemTime::now()),
        }
    }
}

/// Options for opening a file system.
#[derive(Clone, Debug, Default)]
pub struct FsOptions {
    /// Commit every operation durably (`commit`) instead of deferring durability to the next
    /// [`Fs::fsync`] (`commit_nosync`).
    pub sync_every_op: bool,
    /// Where times come from (the system clock by default).
    pub clock: Clock,
}

/// What a new inode is made with ([`Fs::make_node`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInode {
    /// Its kind (not [`Kind::Symlink`]: [`Fs::symlink`] makes those).
    pub kind: Kind,
    /// Permission bits (`07777` at most).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node.
    pub rdev: u32,
}

impl NewInode {
    /// An inode of `kind` with permission bits `perm`, owned by root.
    pub fn new(kind: Kind, perm: u32) -> NewInode {
        NewInode {
            kind,
            perm,
            uid: 0,
            gid: 0,
            rdev: 0,
        }
    }

    /// The same, owned by `uid`:`gid`.
    pub fn owned_by(self, uid: u32, gid: u32) -> NewInode {
        NewInode { uid, gid, ..self }
    }
}

/// Attributes to change in one [`Fs::setattr`]; `None` leaves one as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (the file type is kept).
    pub perm: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New length (regular files only), as `truncate`.
    pub size_bytes: Option<u64>,
    /// New access time.
    pub atime: Option<Timestamp>,
    /// New modification time.
    pub mtime: Option<Timestamp>,
}

/// How [`Fs::rename_with`] treats an existing destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    /// Replace it, as POSIX `rename` does.
    Replace,
    /// Fail with `Exists` (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap the two entries; both must exist (`RENAME_EXCHANGE`).
    Exchange,
}

/// What `stat` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The inode number.
    pub ino: Ino,
    /// What the inode is.
    pub kind: Kind,
    /// Permission bits.
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Length in bytes (a directory: its B-tree nodes; a symbolic link: its target).
    pub size_bytes: u64,
    /// Directory entries naming it (a directory: 2 + its subdirectories).
    pub nlink: u32,
    /// Data, index and directory-node blocks the inode owns.
    pub blocks: u64,
    /// Last access.
    pub atime: Timestamp,
    /// Last change of the contents.
    pub mtime: Timestamp,
    /// Last change of the inode.
    pub ctime: Timestamp,
    /// Device number of a device node.
    pub rdev: u32,
}

impl Stat {
    /// The whole mode: file-type bits and permission bits.
    pub fn mode(&self) -> u32 {
        self.kind.type_bits() | self.perm
    }
}

/// Capacity and use, as `statfs` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsStats {
    /// Data blocks (4096 bytes each).
    pub blocks: u64,
    /// Data blocks not in use.
    pub free_blocks: u64,
    /// Usable inodes (inode 0 is reserved).
    pub inodes: u64,
    /// Inodes not in use.
    pub free_inodes: u64,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (any bytes but `/` and NUL).
    pub name: Vec<u8>,
    /// The inode number.
    pub ino: Ino,
    /// What the inode is.
    pub kind: Kind,
    /// The entry's position: listing again from this offset starts with it (and from
    /// `offset + 1`, after it), however the directory changed meanwhile.
    pub offset: u64,
}

impl DirEntry {
    /// The name as text (lossy for names that are not UTF-8).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// A file system on a [`TxStore`].
pub struct Fs<S: TxStore> {
    store: S,
    sb: Superblock,
    options: FsOptions,
    /// Serialises operations (and guards the allocation hints): operations never conflict with
    /// each other, so a store conflict means someone else shares the store.
    hints: Mutex<Hints>,
    write_chunk_blocks: u64,
    /// Mutating operations committed since this file system was opened.
    commits: AtomicU64,
    /// The value of `commits` when the last successful flush started.
    flushed_commits: AtomicU64,
    /// Whether an operation may have written since the whole-image check last passed: a
    /// read-only operation leaves the image as checked, so the check is not repeated for it.
    #[cfg(feature = "expensive-checks")]
    image_unchecked: txdisk_disk::sync::atomic::AtomicBool,
}

/// Distinct blocks a write of `blocks` data blocks may dirty: the data, a bitmap block per
/// allocation (at most all of them), the index blocks spanned, and the inode's table block.
fn write_cost_blocks(blocks: u64, bitmap_blocks: u64) -> u64 {
    let index_blocks = blocks.div_ceil(POINTERS_PER_BLOCK) + 3;
    blocks + (blocks + index_blocks).min(bitmap_blocks) + index_blocks + 1
}

/// Distinct blocks one directory change may dirty: a node per level on its path, a new one
/// per level from splits, and a new root.
const DIR_CHANGE_BLOCKS: u64 = 2 * (MAX_NODE_LEVEL as u64 + 1) + 1;

/// Distinct blocks any other operation may dirty: up to four inodes, two directory changes,
/// a symbolic link's target block, the inode bitmap, every block bitmap block (freeing a large
/// file), the partial tail block and the index blocks a truncation rewrites.
fn op_cost_blocks(sb: &Superblock) -> u64 {
    4 + 2 * DIR_CHANGE_BLOCKS + 1 + sb.inode_bitmap_blocks + sb.block_bitmap_blocks + 1 + 3
}

impl<S: TxStore> Fs<S> {
    /// Formats `store` and returns the empty file system. A crash during mkfs leaves no valid
    /// superblock (it is invalidated first and written last).
    pub fn mkfs(store: S, options: &MkfsOptions) -> Result<Fs<S>> {
        Fs::mkfs_with(store, options, FsOptions::default())
    }

    /// [`Fs::mkfs`], then opened with `fs_options` (the root's times come from its clock).
    pub fn mkfs_with(store: S, options: &MkfsOptions, fs_options: FsOptions) -> Result<Fs<S>> {
        let total_blocks = store.size_blocks();
        let inode_count = options.inode_count.unwrap_or((total_blocks / 4).max(64));
        let seed = options.hash_seed.unwrap_or_else(random_seed);
        let sb = Superblock::layout(total_blocks, inode_count)
            .ok_or(FsError::NoSpace {
                what: "store too small for the file system",
            })?
            .with_hash_seed(seed);
        check_tx_limit(&store, &sb)?;
        let mut hints = Hints::default();
        run_tx(&store, sb, &mut hints, true, |ctx| {
            ctx.put(SUPERBLOCK_ADDR, Block::zeroed());
            Ok(())
        })?;
        let limit = store.max_tx_blocks().max(1) as u64;
        let mut addr = SUPERBLOCK_ADDR + 1;
        while addr < sb.data_start {
            let end = (addr + limit).min(sb.data_start);
            run_tx(&store, sb, &mut hints, false, |ctx| {
                zero_range(ctx, addr, end)
            })?;
            addr = end;
        }
        let now = fs_options.clock.now();
        run_tx(&store, sb, &mut hints, true, |ctx| {
            set_bit(ctx.get_mut(sb.inode_bitmap_start)?, 0, true);
            set_bit(ctx.get_mut(sb.inode_bitmap_start)?, ROOT_INO, true);
            ctx.put_inode(ROOT_INO, &Inode::new(Kind::Dir, 0o755, ROOT_INO, now))?;
            let encoded = sb.encode();
            // Pair check: the superblock about to be written decodes to the geometry meant.
            debug_assert!(
                matches!(Superblock::decode(&encoded, total_blocks), Ok(decoded) if decoded == sb),
                "fs: superblock for {total_blocks} blocks does not decode to what was encoded"
            );
            ctx.put(SUPERBLOCK_ADDR, encoded);
            Ok(())
        })?;
        Fs::open(store, fs_options)
    }

    /// Opens the file system on `store`.
    pub fn open(store: S, options: FsOptions) -> Result<Fs<S>> {
        let mut tx = store.begin();
        let block = tx.read(SUPERBLOCK_ADDR);
        tx.abort();
        let sb = Superblock::decode(&block?, store.size_blocks())?;
        check_tx_limit(&store, &sb)?;
        let write_chunk_blocks = chunk_blocks(store.max_tx_blocks() as u64, sb.block_bitmap_blocks);
        let fs = Fs {
            store,
            sb,
            options,
            hints: Mutex::new(Hints::default()),
            write_chunk_blocks,
            commits: AtomicU64::new(0),
            flushed_commits: AtomicU64::new(0),
            #[cfg(feature = "expensive-checks")]
            image_unchecked: txdisk_disk::sync::atomic::AtomicBool::new(true),
        };
        #[cfg(debug_assertions)]
        fs.check_rep()?;
        Ok(fs)
    }

    /// The store below.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The geometry.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The clock operations take their times from.
    pub fn clock(&self) -> &Clock {
        &self.options.clock
    }

    /// Bytes per write transaction: a write is split at the file offsets that are multiples of
    /// this, each piece atomic on its own.
    pub fn write_chunk_bytes(&self) -> u64 {
        self.write_chunk_blocks * BLOCK_SIZE_BYTES
    }

    /// Mutating operations committed since the last successful [`Fs::fsync`] began (what a
    /// crash now could take; a background flusher skips its flush when this is 0).
    pub fn unflushed_ops(&self) -> u64 {
        let commits = self.commits.load(Ordering::SeqCst);
        commits.saturating_sub(self.flushed_commits.load(Ordering::SeqCst))
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }
    /// Checks the rep invariant (see the crate documentation) and panics, naming what broke,
    /// when the cheap part does not hold. With `expensive-checks` it also runs the whole-image
    /// check ([`crate::check_invariants`]): a store error while reading is returned as an error
    /// value, a broken invariant panics. Runs after every public operation in debug builds.
    pub fn check_rep(&self) -> Result<()> {
        self.check_geometry();
        let hints = self.hints.lock();
        assert!(
            hints.next_data_bit <= self.sb.data_blocks,
            "fs: allocation hint at data bit {}: expected at most {} (the data blocks)",
            hints.next_data_bit,
            self.sb.data_blocks
        );
        assert!(
            hints.next_ino <= self.sb.inode_count,
            "fs: allocation hint at inode {}: expected at most {} (the inode count)",
            hints.next_ino,
            self.sb.inode_count
        );
        drop(hints);
        #[cfg(feature = "expensive-checks")]
        self.check_image()?;
        Ok(())
    }

    /// The cheap geometry part of the rep invariant.
    fn check_geometry(&self) {
        let layout = Superblock::layout(self.sb.total_blocks, self.sb.inode_count)
            .map(|layout| layout.with_hash_seed(self.sb.hash_seed));
        assert_eq!(
            layout,
            Some(self.sb),
            "fs: superblock geometry is not the layout of its own counts"
        );
        assert!(
            self.sb.total_blocks <= self.store.size_blocks(),
            "fs: superblock total {} blocks: expected at most the store's {}",
            self.sb.total_blocks,
            self.store.size_blocks()
        );
        assert!(
            self.write_chunk_blocks >= 1,
            "fs: write chunk of 0 blocks: expected at least 1"
        );
        let max_tx_blocks = self.store.max_tx_blocks() as u64;
        let write_blocks = write_cost_blocks(self.write_chunk_blocks, self.sb.block_bitmap_blocks);
        assert!(
            write_blocks <= max_tx_blocks,
            "fs: a write chunk may dirty {write_blocks} blocks: expected at most the store's {max_tx_blocks}"
        );
        assert!(
            op_cost_blocks(&self.sb) <= max_tx_blocks,
            "fs: an operation may dirty {} blocks: expected at most the store's {max_tx_blocks}",
            op_cost_blocks(&self.sb)
        );
    }

    /// The whole-image part of the rep invariant: every invariant [`crate::check`] verifies.
    #[cfg(feature = "expensive-checks")]
    fn check_image(&self) -> Result<()> {
        use crate::check::Violation;
        use txdisk_disk::sync::atomic::Ordering;
        if !self.image_unchecked.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        match crate::check::check_invariants(&self.store) {
            Ok(_) => Ok(()),
            // The store failing under the check is an I/O error, not a broken invariant.
            Err(Violation::Store(error)) => {
                // Checked again after the next operation: the store may answer then.
                self.image_unchecked.store(true, Ordering::SeqCst);
                Err(error.into())
            }
            Err(violation) => panic!("fs: invariant violated after an operation: {violation}"),
        }
    }

    fn run<T>(
        &self,
        mutates: bool,
        op: impl FnMut(&mut Ctx<'_, S::Tx<'_>>) -> Result<T>,
    ) -> Result<T> {
        let mut hints = self.hints.lock();
        let durable = self.options.sync_every_op;
        #[cfg(feature = "expensive-checks")]
        if mutates {
            self.image_unchecked
                .store(true, txdisk_disk::sync::atomic::Ordering::SeqCst);
        }
        let result = if mutates {
            let result = run_tx(&self.store, self.sb, &mut hints, durable, op);
            if result.is_ok() {
                self.commits.fetch_add(1, Ordering::SeqCst);
            }
            result
        } else {
            run_read(&self.store, self.sb, &mut hints, op)
        };
        drop(hints);
        #[cfg(debug_assertions)]
        self.check_rep()?;
        result
    }

    /// Runs a mutating `op` with the time now.
    fn run_at<T>(
        &self,
        mut op: impl FnMut(&mut Ctx<'_, S::Tx<'_>>, Timestamp) -> Result<T>,
    ) -> Result<T> {
        let now = self.options.clock.now();
        self.run(true, |ctx| op(ctx, now))
    }

    /// The inode named `name` in directory `parent`.
    pub fn lookup(&self, parent: Ino, name: impl AsRef<[u8]>) -> Result<Ino> {
        let name = name.as_ref();
        validate_lookup_name(name)?;
        self.run(false, |ctx| {
            lookup_in(ctx, parent, name).map(|entry| entry.ino)
        })
    }

    /// Creates an empty regular file (mode 0644, owned by root).
    pub fn create(&self, parent: Ino, name: impl AsRef<[u8]>) -> Result<Ino> {
        self.make_node(parent, name, &NewInode::new(Kind::File, 0o644))
    }

    /// Creates an empty directory (mode 0755, owned by root).
    pub fn mkdir(&self, parent: Ino, name: impl AsRef<[u8]>) -> Result<Ino> {
        self.make_node(parent, name, &NewInode::new(Kind::Dir, 0o755))
    }

    /// Creates a file, directory, FIFO, socket or device node named `name` in `parent`.
    pub fn make_node(&self, parent: Ino, name: impl AsRef<[u8]>, new: &NewInode) -> Result<Ino> {
        let name = name.as_ref();
        validate_name(name)?;
        if new.kind == Kind::Symlink {
            return Err(FsError::InvalidArgument("a symbolic link needs a target"));
        }
        self.run_at(|ctx, now| make_in(ctx, parent, name, new, now))
    }

    /// Creates a symbolic link `name` in `parent` holding `target` (1..=4095 bytes, any but
    /// NUL), mode 0777, owned by `uid`:`gid`.
    pub fn symlink(
        &self,
        parent: Ino,
        name: impl AsRef<[u8]>,
        target: impl AsRef<[u8]>,
        uid: u32,
        gid: u32,
    ) -> Result<Ino> {
        let (name, target) = (name.as_ref(), target.as_ref());
        validate_name(name)?;
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        if target.len() > SYMLINK_MAX {
            return Err(FsError::NameTooLong {
                len: target.len(),
                max: SYMLINK_MAX,
            });
        }
        if target.contains(&0) {
            return Err(FsError::InvalidArgument(
                "symbolic link target contains NUL",
            ));
        }
        let new = NewInode::new(Kind::Symlink, 0o777).owned_by(uid, gid);
        self.run_at(|ctx, now| {
            let ino = make_in(ctx, parent, name, &new, now)?;
            let mut inode = ctx.inode(ino)?;
            let (addr, _) = ctx.map_alloc(&mut inode, 0)?;
            ctx.get_mut(addr)?.as_bytes_mut()[..target.len()].copy_from_slice(target);
            inode.size_bytes = target.len() as u64;
            ctx.put_inode(ino, &inode)?;
            Ok(ino)
        })
    }

    /// A symbolic link's target.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.run(false, |ctx| {
            let inode = ctx.inode(ino)?;
            if inode.kind() != Some(Kind::Symlink) {
                return Err(FsError::InvalidArgument("not a symbolic link"));
            }
            read_bytes(ctx, &inode, 0, SYMLINK_MAX)
        })
    }

    /// Adds a name for an existing inode other than a directory.
    pub fn link(&self, ino: Ino, parent: Ino, name: impl AsRef<[u8]>) -> Result<()> {
        let name = name.as_ref();
        validate_name(name)?;
        self.run_at(|ctx, now| {
            let kind = ctx.kind(ino)?;
            if kind == Kind::Dir {
                return Err(FsError::IsADirectory);
            }
            if ctx.dir_lookup(parent, name)?.is_some() {
                return Err(FsError::Exists);
            }
            adjust_nlink(ctx, ino, 1, now)?;
            ctx.dir_insert(parent, name, ino, kind)?;
            touch_dir(ctx, parent, now)
        })
    }

    /// Up to `len` bytes from `offset` (fewer at the end of the file).
    pub fn read(&self, ino: Ino, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.run(false, |ctx| {
            let inode = file_inode(ctx, ino)?;
            read_bytes(ctx, &inode, offset, len)
        })
    }

    /// Writes `data` at `offset`, extending the file (holes read as zeros). A write that spans
    /// more than [`Fs::write_chunk_bytes`] is split: each piece is atomic and leaves a
    /// consistent file system, but a crash may keep a prefix of the pieces.
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset.saturating_add(data.len() as u64);
        if end > MAX_FILE_BYTES {
            return Err(FsError::FileTooLarge {
                size_bytes: end,
                max_bytes: MAX_FILE_BYTES,
            });
        }
        if data.is_empty() {
            // Still report writing to a directory or a missing inode.
            return self.run(false, |ctx| file_inode(ctx, ino).map(drop));
        }
        let chunk_bytes = self.write_chunk_bytes();
        let mut pos = offset;
        // Bounded: every round advances `pos` by at least one byte towards `end`.
        while pos < end {
            let chunk_end = ((pos / chunk_bytes + 1) * chunk_bytes).min(end);
            let piece = &data[(pos - offset) as usize..(chunk_end - offset) as usize];
            self.run_at(|ctx, now| write_piece(ctx, ino, pos, piece, now))?;
            pos = chunk_end;
        }
        Ok(())
    }

    /// Sets the file's length: shrinking frees the blocks past it, growing leaves a hole.
    pub fn truncate(&self, ino: Ino, size_bytes: u64) -> Result<()> {
        self.setattr(
            ino,
            &SetAttr {
                size_bytes: Some(size_bytes),
                ..SetAttr::default()
            },
        )
        .map(drop)
    }

    /// Changes any of mode, owner, group, size and times in one transaction (the change time
    /// becomes now; a size change also sets the modification time) and returns the result.
    pub fn setattr(&self, ino: Ino, change: &SetAttr) -> Result<Stat> {
        let times = [change.atime, change.mtime];
        if times
            .iter()
            .flatten()
            .any(|time| time.nanos >= 1_000_000_000)
        {
            return Err(FsError::InvalidArgument(
                "a time with a second or more of nanoseconds",
            ));
        }
        if let Some(size_bytes) = change.size_bytes {
            if size_bytes > MAX_FILE_BYTES {
                return Err(FsError::FileTooLarge {
                    size_bytes,
                    max_bytes: MAX_FILE_BYTES,
                });
            }
        }
        self.run_at(|ctx, now| setattr_in(ctx, ino, change, now))
    }

    /// Removes a name of anything but a directory; the inode goes when its last name does.
    pub fn unlink(&self, parent: Ino, name: impl AsRef<[u8]>) -> Result<()> {
        let name = name.as_ref();
        validate_lookup_name(name)?;
        self.run_at(|ctx, now| {
            let entry = lookup_in(ctx, parent, name)?;
            if entry.kind == Kind::Dir {
                return Err(FsError::IsADirectory);
            }
            ctx.dir_remove(parent, name)?;
            drop_link(ctx, entry.ino, now)?;
            touch_dir(ctx, parent, now)
        })
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, parent: Ino, name: impl AsRef<[u8]>) -> Result<()> {
        let name = name.as_ref();
        if name == b"." {
            return Err(FsError::InvalidArgument("rmdir of '.'"));
        }
        if name == b".." {
            return Err(FsError::NotEmpty);
        }
        validate_lookup_name(name)?;
        self.run_at(|ctx, now| {
            let entry = lookup_in(ctx, parent, name)?;
            if entry.kind != Kind::Dir {
                return Err(FsError::NotADirectory);
            }
            if !ctx.dir_is_empty(entry.ino)? {
                return Err(FsError::NotEmpty);
            }
            ctx.dir_remove(parent, name)?;
            adjust_nlink(ctx, parent, -1, now)?;
            free_inode_and_blocks(ctx, entry.ino)?;
            touch_dir(ctx, parent, now)
        })
    }

    /// Renames `src_parent/src_name` to `dst_parent/dst_name`, replacing a file by a file or a
    /// directory by an empty directory, atomically, as POSIX rename does.
    pub fn rename(
        &self,
        src_parent: Ino,
        src_name: impl AsRef<[u8]>,
        dst_parent: Ino,
        dst_name: impl AsRef<[u8]>,
    ) -> Result<()> {
        self.rename_with(
            src_parent,
            src_name,
            dst_parent,
            dst_name,
            RenameMode::Replace,
        )
    }

    /// [`Fs::rename`] with `RENAME_NOREPLACE` or `RENAME_EXCHANGE` semantics.
    pub fn rename_with(
        &self,
        src_parent: Ino,
        src_name: impl AsRef<[u8]>,
        dst_parent: Ino,
        dst_name: impl AsRef<[u8]>,
        mode: RenameMode,
    ) -> Result<()> {
        let (src_name, dst_name) = (src_name.as_ref(), dst_name.as_ref());
        validate_lookup_name(src_name)?;
        validate_name(dst_name)?;
        let names = RenameNames {
            src_parent,
            src_name,
            dst_parent,
            dst_name,
        };
        self.run_at(|ctx, now| match mode {
            RenameMode::Exchange => exchange_in(ctx, &names, now),
            _ => rename_in(ctx, &names, mode == RenameMode::NoReplace, now),
        })
    }

    /// The entries of a directory (without `.` and `..`), in offset order.
    pub fn readdir(&self, dir: Ino) -> Result<Vec<DirEntry>> {
        self.readdir_from(dir, 0, usize::MAX)
    }

    /// Entries of a directory from position `offset` on ([`DirEntry::offset`]), at least
    /// `at_least` of them unless the directory ends first.
    pub fn readdir_from(&self, dir: Ino, offset: u64, at_least: usize) -> Result<Vec<DirEntry>> {
        self.run(false, |ctx| {
            ctx.dir_entries_from(dir, offset, at_least)?
                .into_iter()
                .map(|record| {
                    let kind = Kind::from_code(record.kind_code).ok_or_else(|| {
                        FsError::corrupt("directory entry kind", 8u8, record.kind_code)
                    })?;
                    Ok(DirEntry {
                        name: record.name,
                        ino: record.ino,
                        kind,
                        offset: record.key,
                    })
                })
                .collect()
        })
    }

    /// The directory holding directory `dir` (the root's is the root).
    pub fn parent_of(&self, dir: Ino) -> Result<Ino> {
        self.run(false, |ctx| Ok(ctx.dir_inode(dir)?.parent))
    }

    /// An inode's attributes.
    pub fn stat(&self, ino: Ino) -> Result<Stat> {
        self.run(false, |ctx| stat_in(ctx, ino))
    }

    /// Capacity and use, from the bitmaps (one read of each bitmap block).
    pub fn statfs(&self) -> Result<FsStats> {
        let sb = self.sb;
        self.run(false, |ctx| {
            let count_set = |ctx: &mut Ctx<'_, _>, start: Addr, blocks: u64| -> Result<u64> {
                let mut set = 0;
                for addr in start..start + blocks {
                    set += ctx
                        .get(addr)?
                        .as_bytes()
                        .iter()
                        .map(|b| u64::from(b.count_ones()))
                        .sum::<u64>();
                }
                Ok(set)
            };
            let used_blocks = count_set(ctx, sb.block_bitmap_start, sb.block_bitmap_blocks)?;
            // Bit 0 of the inode bitmap is the reserved inode 0.
            let used_inodes = count_set(ctx, sb.inode_bitmap_start, sb.inode_bitmap_blocks)?;
            Ok(FsStats {
                blocks: sb.data_blocks,
                free_blocks: sb.data_blocks.saturating_sub(used_blocks),
                inodes: sb.inode_count - 1,
                free_inodes: sb.inode_count.saturating_sub(used_inodes),
            })
        })
    }

    /// Makes every operation completed before the call durable: one flush of the store, which
    /// `fsync`, `fdatasync`, `syncfs` and unmounting all are. Operations are not held up while
    /// it runs; those it overlaps may or may not be included.
    pub fn fsync(&self) -> Result<()> {
        let commits = self.commits.load(Ordering::SeqCst);
        self.store.flush()?;
        self.flushed_commits.fetch_max(commits, Ordering::SeqCst);
        #[cfg(debug_assertions)]
        self.check_rep()?;
        Ok(())
    }

    /// The inode a slash-separated path names, from the root (empty components ignored).
    pub fn resolve(&self, path: &str) -> Result<Ino> {
        let mut ino = ROOT_INO;
        for component in path.split('/').filter(|c| !c.is_empty()) {
            ino = self.lookup(ino, component)?;
        }
        Ok(ino)
    }

    /// The directory holding a path's last component, and that component.
    pub fn resolve_parent<'p>(&self, path: &'p str) -> Result<(Ino, &'p str)> {
        let trimmed = path.trim_end_matches('/');
        let (dir, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
        if name.is_empty() {
            return Err(FsError::InvalidArgument("path has no last component"));
        }
        Ok((self.resolve(dir)?, name))
    }
}

/// A random directory-hash key: from the standard library's per-process random hasher keys,
/// mixed with the time and the process id (no extra dependency, and never predictable).
fn random_seed() -> [u64; 2] {
    use std::hash::{BuildHasher, Hasher};
    let mut seed = [0; 2];
    for (i, word) in seed.iter_mut().enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(i as u64);
        hasher.write_u32(std::process::id());
        hasher.write_i64(Clock::system().now().as_nanos());
        *word = hasher.finish();
    }
    seed
}

fn check_tx_limit<S: TxStore>(store: &S, sb: &Superblock) -> Result<()> {
    let needed = op_cost_blocks(sb).max(write_cost_blocks(1, sb.block_bitmap_blocks));
    if (store.max_tx_blocks() as u64) < needed {
        return Err(FsError::TxTooSmall {
            max_blocks: store.max_tx_blocks(),
            needed: needed as usize,
        });
    }
    Ok(())
}

/// The most data blocks one write transaction can carry (at least 1 once the limit passed
/// [`check_tx_limit`]); bounded by the largest file.
fn chunk_blocks(max_tx_blocks: u64, bitmap_blocks: u64) -> u64 {
    // write_cost_blocks is increasing, so a binary search finds the largest fit.
    let (mut low, mut high) = (1, max_tx_blocks.min(MAX_FILE_BLOCKS));
    while low < high {
        let mid = (low + high).div_ceil(2);
        if write_cost_blocks(mid, bitmap_blocks) <= max_tx_blocks {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    low
}

/// Runs `op` in a transaction and commits it, retrying from the start on a conflict.
fn run_tx<S: TxStore, T>(
    store: &S,
    sb: Superblock,
    hints: &mut Hints,
    durable: bool,
    mut op: impl FnMut(&mut Ctx<'_, S::Tx<'_>>) -> Result<T>,
) -> Result<T> {
    for _ in 0..MAX_ATTEMPTS {
        let mut ctx = Ctx::new(store.begin(), sb, hints);
        let outcome = match op(&mut ctx) {
            Ok(value) => {
                // The per-operation bounds (op_cost_blocks, write_cost_blocks) promise this.
                debug_assert!(
                    ctx.dirty_blocks() <= store.max_tx_blocks(),
                    "fs: an operation dirtied {} blocks, the store allows {}",
                    ctx.dirty_blocks(),
                    store.max_tx_blocks()
                );
                ctx.commit(durable).map(|()| value)
            }
            Err(error) => {
                ctx.abort();
                Err(error)
            }
        };
        match outcome {
            Err(error) if error.is_conflict() => continue,
            other => return other,
        }
    }
    Err(FsError::Busy {
        attempts: MAX_ATTEMPTS,
    })
}

/// Runs a read-only `op`: its transaction is dropped, as nothing is written.
fn run_read<S: TxStore, T>(
    store: &S,
    sb: Superblock,
    hints: &mut Hints,
    mut op: impl FnMut(&mut Ctx<'_, S::Tx<'_>>) -> Result<T>,
) -> Result<T> {
    for _ in 0..MAX_ATTEMPTS {
        let mut ctx = Ctx::new(store.begin(), sb, hints);
        let outcome = op(&mut ctx);
        ctx.abort();
        match outcome {
            Err(error) if error.is_conflict() => continue,
            other => return other,
        }
    }
    Err(FsError::Busy {
        attempts: MAX_ATTEMPTS,
    })
}

fn zero_range<T: TxHandle>(ctx: &mut Ctx<'_, T>, start: Addr, end: Addr) -> Result<()> {
    for addr in start..end {
        // Reading first keeps a fresh image's log traffic down to the blocks that need it.
        if !ctx.get(addr)?.is_zero() {
            ctx.put(addr, Block::zeroed());
        }
    }
    Ok(())
}

fn validate_lookup_name(name: &[u8]) -> Result<()> {
    validate_name(name).map_err(|error| match error {
        FsError::InvalidArgument(_) if name == b"." || name == b".." => error,
        FsError::InvalidArgument(_) => FsError::NotFound,
        other => other,
    })
}

fn lookup_in<T: TxHandle>(ctx: &mut Ctx<'_, T>, parent: Ino, name: &[u8]) -> Result<Entry> {
    ctx.dir_lookup(parent, name)?.ok_or(FsError::NotFound)
}

/// A regular file's inode: a directory is `IsADirectory`, anything else `InvalidArgument`.
fn file_inode<T: TxHandle>(ctx: &mut Ctx<'_, T>, ino: Ino) -> Result<Inode> {
    let inode = ctx.inode(ino)?;
    match inode.kind() {
        Some(Kind::File) => Ok(inode),
        Some(Kind::Dir) => Err(FsError::IsADirectory),
        _ => Err(FsError::InvalidArgument("not a regular file")),
    }
}

fn stat_of(ino: Ino, inode: &Inode) -> Result<Stat> {
    Ok(Stat {
        ino,
        kind: inode
            .kind()
            .ok_or(FsError::corrupt("inode kind", 8u32, inode.mode))?,
        perm: inode.perm(),
        uid: inode.uid,
        gid: inode.gid,
        size_bytes: inode.size_bytes,
        nlink: inode.nlink,
        blocks: inode.blocks,
        atime: inode.atime,
        mtime: inode.mtime,
        ctime: inode.ctime,
        rdev: inode.rdev,
    })
}

fn stat_in<T: TxHandle>(ctx: &mut Ctx<'_, T>, ino: Ino) -> Result<Stat> {
    let inode = ctx.inode(ino)?;
    stat_of(ino, &inode)
}

/// Sets a directory's modification and change times: an entry in it came or went.
fn touch_dir<T: TxHandle>(ctx: &mut Ctx<'_, T>, dir: Ino, now: Timestamp) -> Result<()> {
    let mut inode = ctx.inode(dir)?;
    inode.mtime = now;
    inode.ctime = now;
    ctx.put_inode(dir, &inode)
}

/// Sets an inode's change time.
fn touch_inode<T: TxHandle>(ctx: &mut Ctx<'_, T>, ino: Ino, now: Timestamp) -> Result<()> {
    let mut inode = ctx.inode(ino)?;
    inode.ctime = now;
    ctx.put_inode(ino, &inode)
}

fn adjust_nlink<T: TxHandle>(
    ctx: &mut Ctx<'_, T>,
    ino: Ino,
    delta: i64,
    now: Timestamp,
) -> Result<u32> {
    let mut inode = ctx.inode(ino)?;
    let nlink = i64::from(inode.nlink) + delta;
    inode.nlink = u32::try_from(nlink).map_err(|_| {
        if delta > 0 {
            FsError::TooManyLinks
        } else {
            FsError::corrupt("link count above zero", 1u32, inode.nlink)
        }
    })?;
    inode.ctime = now;
    ctx.put_inode(ino, &inode)?;
    Ok(inode.nlink)
}

/// Drops one link to a non-directory, freeing it with the last.
fn drop_link<T: TxHandle>(ctx: &mut Ctx<'_, T>, ino: Ino, now: Timestamp) -> Result<()> {
    if crate::bugs::active(crate::bugs::Bug::UnlinkKeepsLinkCount) {
        return Ok(());
    }
    if adjust_nlink(ctx, ino, -1, now)? == 0 {
        free_inode_and_blocks(ctx, ino)?;
    }
    Ok(())
}

fn free_inode_and_blocks<T: TxHandle>(ctx: &mut Ctx<'_, T>, ino: Ino) -> Result<()> {
    let mut inode = ctx.inode(ino)?;
    // Precondition: a directory is freed only empty, so its tree owns no node.
    assert!(
        inode.kind() != Some(Kind::Dir) || inode.direct[0] == 0,
        "fs: freeing directory {ino} with entries"
    );
    ctx.free_from(&mut inode, 0)?;
    ctx.free_inode(ino)
}

fn make_in<T: TxHandle>(
    ctx: &mut Ctx<'_, T>,
    parent: Ino,
    name: &[u8],
    new: &NewInode,
    now: Timestamp,
) -> Result<Ino> {
    if new.perm & !PERM_MASK != 0 {
        return Err(FsError::InvalidArgument("mode bits past 07777"));
    }
    if ctx.dir_lookup(parent, name)?.is_some() {
        return Err(FsError::Exists);
    }
    let mut inode = Inode::new(new.kind, new.perm, parent, now);
    inode.uid = new.uid;
    inode.gid = new.gid;
    if matches!(new.kind, Kind::CharDevice | Kind::BlockDevice) {
        inode.rdev = new.rdev;
    }
    let ino = ctx.alloc_inode(&inode)?;
    ctx.dir_insert(parent, name, ino, new.kind)?;
    if new.kind == Kind::Dir {
        adjust_nlink(ctx, parent, 1, now)?;
    }
    touch_dir(ctx, parent, now)?;
    Ok(ino)
}

fn read_bytes<T: TxHandle>(
    ctx: &mut Ctx<'_, T>,
    inode: &Inode,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>> {
    let end = offset.saturating_add(len as u64).min(inode.size_bytes);
    let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
    let mut pos = offset;
    while pos < end {
        let index = pos / BLOCK_SIZE_BYTES;
        let within = (pos % BLOCK_SIZE_BYTES) as usize;
        let take = ((BLOCK_SIZE_BYTES - within as u64).min(end - pos)) as usize;
        match ctx.map(inode, index)? {
            0 => out.resize(out.len() + take, 0),
            addr => out.extend_from_slice(&ctx.peek(addr)?.as_bytes()[within..within + take]),
        }
        pos += take as u64;
    }
    Ok(out)
}

fn write_piece<T: TxHandle>(
    ctx: &mut Ctx<'_, T>,
    ino: Ino,
    offset: u64,
    data: &[u8],
    now: Timestamp,
) -> Result<()> {
    let mut inode = file_inode(ctx, ino)?;
    let end = offset + data.len() as u64;
    let mut pos = offset;
    while pos < end {
        let index = pos / BLOCK_SIZE_BYTES;
        let within = (pos % BLOCK_SIZE_BYTES) as usize;
        let take = ((BLOCK_SIZE_BYTES - within as u64).min(end - pos)) as usize;
        let source = &data[(pos - offset) as usize..(pos - offset) as usize + take];
        let (addr, _fresh) = ctx.map_alloc(&mut inode, index)?;
        if take == BLOCK_SIZE {
            ctx.put(
                addr,
                Block::from_bytes(source).map_err(|_| FsError::InvalidArgument("block"))?,
            );
        } else {
            // A fresh block is zeroed by the allocator; an old one keeps its other bytes
            // (zeros past the end of file, by the tail invariant).
            ctx.get_mut(addr)?.as_bytes_mut()[within..within + take].copy_from_slice(source);
        }
        pos += take as u64;
    }
    inode.size_bytes = inode.size_bytes.max(end);
    inode.mtime = now;
    inode.ctime = now;
    ctx.put_inode(ino, &inode)
}

fn truncate_inode<T: TxHandle>(
    ctx: &mut Ctx<'_, T>,
    inode: &mut Inode,
    size_bytes: u64,
) -> Result<()> {
    if size_bytes < inode.size_bytes {
        ctx.free_from(inode, size_bytes.div_ceil(BLOCK_SIZE_BYTES))?;
        let within = (size_bytes % BLOCK_SIZE_BYTES) as usize;
        if within != 0 {
            // Keep the tail invariant: bytes past the end of file read as zeros if it grows.
            let addr = ctx.map(inode, size_bytes / BLOCK_SIZE_BYTES)?;
            if addr != 0 {
                ctx.get_mut(addr)?.as_bytes_mut()[within..].fill(0);
            }
        }
    }
    inode.size_bytes = size_bytes;
    Ok(())
}

fn setattr_in<T: TxHandle>(
    ctx: &mut Ctx<'_, T>,
    ino: Ino,
    change: &SetAttr,
    now: Timestamp,
) -> Result<Stat> {
    let mut inode = ctx.inode(ino)?;
    if let Some(size_bytes) = change.size_bytes {
        match inode.kind() {
            Some(Kind::File) => {}
            Some(Kind::Dir) => return Err(FsError::IsADirectory),
            _ => return Err(FsError::InvalidArgument("size of a special file")),
        }
        truncate_inode(ctx, &mut inode, size_bytes)?;
        inode.mtime = now;
    }
    if let Some(perm) = change.perm {
        if perm & !PERM_MASK != 0 {
            return Err(FsError::InvalidArgument("mode bits past 07777"));
        }
        inode.mode = (inode.mode & !PERM_MASK) | perm;
    }
    inode.uid = change.uid.unwrap_or(inode.uid);
    inode.gid = change.gid.unwrap_or(inode.gid);
    inode.atime = change.atime.unwrap_or(inode.atime);
    inode.mtime = change.mtime.unwrap_or(inode.mtime);
    inode.ctime = now;
    ctx.put_inode(ino, &inode)?;
    stat_of(ino, &inode)
}

/// The two names of a rename.
struct RenameNames<'n> {
    src_parent: Ino,
    src_name: &'n [u8],
    dst_parent: Ino,
    dst_name: &'n [u8],
}

fn rename_in<T: TxHandle>(
    ctx: &mut Ctx<'_, T>,
    names: &RenameNames<'_>,
    no_replace: bool,
    now: Timestamp,
) -> Result<()> {
    let (sp, dp) = (names.src_parent, names.dst_parent);
    let src = lookup_in(ctx, sp, names.src_name)?;
    let dst = ctx.dir_lookup(dp, names.dst_name)?;
    if let Some(dst) = dst {
        if no_replace {
            return Err(FsError::Exists);
        }
        if dst.ino == src.ino {
            // Two names of one inode (or one name): POSIX says do nothing.
            return Ok(());
        }
        match (src.kind == Kind::Dir, dst.kind == Kind::Dir) {
            (true, false) => return Err(FsError::NotADirectory),
            (false, true) => return Err(FsError::IsADirectory),
            (true, true) if !ctx.dir_is_empty(dst.ino)? => return Err(FsError::NotEmpty),
            _ => {}
        }
    }
    if src.kind == Kind::Dir && sp != dp && is_ancestor(ctx, src.ino, dp)? {
        return Err(FsError::InvalidArgument("directory moved into itself"));
    }
    ctx.dir_remove(sp, names.src_name)?;
    match dst {
        Some(dst) => {
            ctx.dir_retarget(dp, names.dst_name, src.ino, src.kind)?;
            if dst.kind == Kind::Dir {
                adjust_nlink(ctx, dp, -1, now)?;
                free_inode_and_blocks(ctx, dst.ino)?;
            } else {
                drop_link(ctx, dst.ino, now)?;
            }
        }
        None => ctx.dir_insert(dp, names.dst_name, src.ino, src.kind)?,
    }
    if src.kind == Kind::Dir && sp != dp {
        move_dir(ctx, src.ino, sp, dp, now)?;
    }
    touch_inode(ctx, src.ino, now)?;
    touch_dir(ctx, sp, now)?;
    touch_dir(ctx, dp, now)
}

/// A directory's entry moved from `from` to `to`: its parent field and both link counts.
fn move_dir<T: TxHandle>(
    ctx: &mut Ctx<'_, T>,
    dir: Ino,
    from: Ino,
    to: Ino,
    now: Timestamp,
) -> Result<()> {
    let mut moved = ctx.inode(dir)?;
    moved.parent = to;
    ctx.put_inode(dir, &moved)?;
    adjust_nlink(ctx, from, -1, now)?;
    adjust_nlink(ctx, to, 1, now)?;
    Ok(())
}

fn exchange_in<T: TxHandle>(
    ctx: &mut Ctx<'_, T>,
    names: &RenameNames<'_>,
    now: Timestamp,
) -> Result<()> {
    let (sp, dp) = (names.src_parent, names.dst_parent);
    let a = lookup_in(ctx, sp, names.src_name)?;
    let b = lookup_in(ctx, dp, names.dst_name)?;
    if a.ino == b.ino {
        return Ok(());
    }
    if sp != dp {
        if a.kind == Kind::Dir && is_ancestor(ctx, a.ino, dp)? {
            return Err(FsError::InvalidArgument("directory moved into itself"));
        }
        if b.kind == Kind::Dir && is_ancestor(ctx, b.ino, sp)? {
            return Err(FsError::InvalidArgument("directory moved into itself"));
        }
    }
    ctx.dir_retarget(sp, names.src_name, b.ino, b.kind)?;
    ctx.dir_retarget(dp, names.dst_name, a.ino, a.kind)?;
    if sp != dp {
        if a.kind == Kind::Dir {
            move_dir(ctx, a.ino, sp, dp, now)?;
        }
        if b.kind == Kind::Dir {
            move_dir(ctx, b.ino, dp, sp, now)?;
        }
    }
    touch_inode(ctx, a.ino, now)?;
    touch_inode(ctx, b.ino, now)?;
    touch_dir(ctx, sp, now)?;
    touch_dir(ctx, dp, now)
}

/// Whether directory `ancestor` is `dir` or above it, following parent links to the root
/// (bounded by the inode count: a longer chain is a cycle, which is corruption).
fn is_ancestor<T: TxHandle>(ctx: &mut Ctx<'_, T>, ancestor: Ino, dir: Ino) -> Result<bool> {
    let mut current = dir;
    for _ in 0..ctx.sb.inode_count {
        if current == ancestor {
            return Ok(true);
        }
        if current == ROOT_INO {
            return Ok(false);
        }
        current = ctx.dir_inode(current)?.parent;
    }
    Err(FsError::corrupt(
        "parent chain reaches the root",
        ROOT_INO,
        current,
    ))
}
