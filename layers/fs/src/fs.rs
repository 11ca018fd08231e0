//! The file system's operations. Each runs as one store transaction (a large write as several,
//! one per chunk), under the file system's lock, retried from the start on a store conflict.

use crate::dir::validate_name;
use crate::error::{FsError, Result};
use crate::format::{
    set_bit, Ino, Inode, Kind, Superblock, MAX_FILE_BLOCKS, MAX_FILE_BYTES, POINTERS_PER_BLOCK,
    ROOT_INO, SUPERBLOCK_ADDR,
};
use crate::store::{TxHandle, TxStore};
use crate::txn::{Ctx, Hints};
use txdisk_disk::sync::Mutex;
use txdisk_disk::{Addr, Block, BLOCK_SIZE};

/// How many times an operation is retried after store conflicts before giving up.
pub const MAX_ATTEMPTS: u32 = 64;

const BLOCK_BYTES: u64 = BLOCK_SIZE as u64;

/// Options for [`Fs::mkfs`].
#[derive(Clone, Debug, Default)]
pub struct MkfsOptions {
    /// Inodes to provide; `None` = one per four blocks (at least 64).
    pub inode_count: Option<u64>,
}

/// Options for opening a file system.
#[derive(Clone, Debug, Default)]
pub struct FsOptions {
    /// Commit every operation durably (`commit`) instead of deferring durability to the next
    /// [`Fs::fsync`] (`commit_nosync`).
    pub sync_every_op: bool,
}

/// What `stat` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The inode number.
    pub ino: Ino,
    /// File or directory.
    pub kind: Kind,
    /// Length in bytes (a directory: its entry blocks).
    pub size_bytes: u64,
    /// Directory entries naming it (a directory: 2 + its subdirectories).
    pub nlink: u32,
    /// Data and index blocks the inode owns.
    pub blocks: u64,
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
    /// File or directory.
    pub kind: Kind,
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

/// Distinct blocks any other operation may dirty: up to four inodes, two directory blocks and
/// a new one with its index blocks, the inode bitmap, every block bitmap block (freeing a large
/// file), the partial tail block and the index blocks a truncation rewrites.
fn op_cost_blocks(sb: &Superblock) -> u64 {
    4 + 3 + 3 + sb.inode_bitmap_blocks + sb.block_bitmap_blocks + 1 + 3
}

impl<S: TxStore> Fs<S> {
    /// Formats `store` and returns the empty file system. A crash during mkfs leaves no valid
    /// superblock (it is invalidated first and written last).
    pub fn mkfs(store: S, options: &MkfsOptions) -> Result<Fs<S>> {
        let total_blocks = store.size_blocks();
        let inode_count = options.inode_count.unwrap_or((total_blocks / 4).max(64));
        let sb = Superblock::layout(total_blocks, inode_count).ok_or(FsError::NoSpace {
            what: "store too small for the file system",
        })?;
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
        run_tx(&store, sb, &mut hints, true, |ctx| {
            set_bit(ctx.get_mut(sb.inode_bitmap_start)?, 0, true);
            set_bit(ctx.get_mut(sb.inode_bitmap_start)?, ROOT_INO, true);
            ctx.put_inode(ROOT_INO, &Inode::new(Kind::Dir, ROOT_INO))?;
            let encoded = sb.encode();
            // Pair check: the superblock about to be written decodes to the geometry meant.
            debug_assert!(
                matches!(Superblock::decode(&encoded, total_blocks), Ok(decoded) if decoded == sb),
                "fs: superblock for {total_blocks} blocks does not decode to what was encoded"
            );
            ctx.put(SUPERBLOCK_ADDR, encoded);
            Ok(())
        })?;
        Fs::open(store, FsOptions::default())
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

    /// Bytes per write transaction: a write is split at the file offsets that are multiples of
    /// this, each piece atomic on its own.
    pub fn write_chunk_bytes(&self) -> u64 {
        self.write_chunk_blocks * BLOCK_BYTES
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
        let layout = Superblock::layout(self.sb.total_blocks, self.sb.inode_count);
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
            run_tx(&self.store, self.sb, &mut hints, durable, op)
        } else {
            run_read(&self.store, self.sb, &mut hints, op)
        };
        drop(hints);
        #[cfg(debug_assertions)]
        self.check_rep()?;
        result
    }

    /// The inode named `name` in directory `parent`.
    pub fn lookup(&self, parent: Ino, name: impl AsRef<[u8]>) -> Result<Ino> {
        let name = name.as_ref();
        validate_lookup_name(name)?;
        self.run(false, |ctx| lookup_in(ctx, parent, name))
    }

    /// Creates an empty regular file.
    pub fn create(&self, parent: Ino, name: impl AsRef<[u8]>) -> Result<Ino> {
        self.make(parent, name.as_ref(), Kind::File)
    }

    /// Creates an empty directory.
    pub fn mkdir(&self, parent: Ino, name: impl AsRef<[u8]>) -> Result<Ino> {
        self.make(parent, name.as_ref(), Kind::Dir)
    }

    fn make(&self, parent: Ino, name: &[u8], kind: Kind) -> Result<Ino> {
        validate_name(name)?;
        self.run(true, |ctx| {
            let scan = ctx.dir_scan(parent, name)?;
            if scan.found.is_some() {
                return Err(FsError::Exists);
            }
            let ino = ctx.alloc_inode(&Inode::new(kind, parent))?;
            ctx.dir_add(parent, scan.free, name, ino, kind)?;
            if kind == Kind::Dir {
                adjust_nlink(ctx, parent, 1)?;
            }
            Ok(ino)
        })
    }

    /// Adds a name for an existing regular file.
    pub fn link(&self, ino: Ino, parent: Ino, name: impl AsRef<[u8]>) -> Result<()> {
        let name = name.as_ref();
        validate_name(name)?;
        self.run(true, |ctx| {
            if ctx.kind(ino)? == Kind::Dir {
                return Err(FsError::IsADirectory);
            }
            let scan = ctx.dir_scan(parent, name)?;
            if scan.found.is_some() {
                return Err(FsError::Exists);
            }
            adjust_nlink(ctx, ino, 1)?;
            ctx.dir_add(parent, scan.free, name, ino, Kind::File)
        })
    }

    /// Up to `len` bytes from `offset` (fewer at the end of the file).
    pub fn read(&self, ino: Ino, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.run(false, |ctx| {
            let inode = file_inode(ctx, ino)?;
            let end = offset.saturating_add(len as u64).min(inode.size_bytes);
            let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
            let mut pos = offset;
            while pos < end {
                let index = pos / BLOCK_BYTES;
                let within = (pos % BLOCK_BYTES) as usize;
                let take = ((BLOCK_BYTES - within as u64).min(end - pos)) as usize;
                match ctx.map(&inode, index)? {
                    0 => out.resize(out.len() + take, 0),
                    addr => {
                        out.extend_from_slice(&ctx.peek(addr)?.as_bytes()[within..within + take])
                    }
                }
                pos += take as u64;
            }
            Ok(out)
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
            self.run(true, |ctx| write_piece(ctx, ino, pos, piece))?;
            pos = chunk_end;
        }
        Ok(())
    }

    /// Sets the file's length: shrinking frees the blocks past it, growing leaves a hole.
    pub fn truncate(&self, ino: Ino, size_bytes: u64) -> Result<()> {
        if size_bytes > MAX_FILE_BYTES {
            return Err(FsError::FileTooLarge {
                size_bytes,
                max_bytes: MAX_FILE_BYTES,
            });
        }
        self.run(true, |ctx| {
            let mut inode = file_inode(ctx, ino)?;
            truncate_inode(ctx, &mut inode, size_bytes)?;
            ctx.put_inode(ino, &inode)
        })
    }

    /// Removes a file's name; the file goes when its last name does.
    pub fn unlink(&self, parent: Ino, name: impl AsRef<[u8]>) -> Result<()> {
        let name = name.as_ref();
        validate_lookup_name(name)?;
        self.run(true, |ctx| {
            let at = ctx.dir_scan(parent, name)?.found.ok_or(FsError::NotFound)?;
            if at.kind == Kind::Dir {
                return Err(FsError::IsADirectory);
            }
            ctx.dir_remove(at)?;
            drop_link(ctx, at.ino)
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
        self.run(true, |ctx| {
            let at = ctx.dir_scan(parent, name)?.found.ok_or(FsError::NotFound)?;
            if at.kind != Kind::Dir {
                return Err(FsError::NotADirectory);
            }
            if !ctx.dir_is_empty(at.ino)? {
                return Err(FsError::NotEmpty);
            }
            ctx.dir_remove(at)?;
            adjust_nlink(ctx, parent, -1)?;
            free_inode_and_blocks(ctx, at.ino)
        })
    }

    /// Renames `src_parent/src_name` to `dst_parent/dst_name`, replacing a file by a file or a
    /// directory by an empty directory, as POSIX rename does.
    pub fn rename(
        &self,
        src_parent: Ino,
        src_name: impl AsRef<[u8]>,
        dst_parent: Ino,
        dst_name: impl AsRef<[u8]>,
    ) -> Result<()> {
        let (src_name, dst_name) = (src_name.as_ref(), dst_name.as_ref());
        validate_lookup_name(src_name)?;
        validate_name(dst_name)?;
        self.run(true, |ctx| {
            rename_in(ctx, src_parent, src_name, dst_parent, dst_name)
        })
    }

    /// The entries of a directory (without `.` and `..`).
    pub fn readdir(&self, dir: Ino) -> Result<Vec<DirEntry>> {
        self.run(false, |ctx| {
            Ok(ctx
                .dir_entries(dir)?
                .into_iter()
                .map(|(name, ino, kind)| DirEntry { name, ino, kind })
                .collect())
        })
    }

    /// An inode's attributes.
    pub fn stat(&self, ino: Ino) -> Result<Stat> {
        self.run(false, |ctx| {
            let inode = ctx.inode(ino)?;
            Ok(Stat {
                ino,
                kind: inode
                    .kind()
                    .ok_or(FsError::corrupt("inode kind", 1u32, inode.kind_code))?,
                size_bytes: inode.size_bytes,
                nlink: inode.nlink,
                blocks: inode.blocks,
            })
        })
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

    /// Makes every completed operation durable.
    pub fn fsync(&self) -> Result<()> {
        let serialise = self.hints.lock();
        let result = self.store.flush();
        drop(serialise);
        #[cfg(debug_assertions)]
        self.check_rep()?;
        Ok(result?)
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

fn lookup_in<T: TxHandle>(ctx: &mut Ctx<'_, T>, parent: Ino, name: &[u8]) -> Result<Ino> {
    Ok(ctx
        .dir_scan(parent, name)?
        .found
        .ok_or(FsError::NotFound)?
        .ino)
}

fn file_inode<T: TxHandle>(ctx: &mut Ctx<'_, T>, ino: Ino) -> Result<Inode> {
    let inode = ctx.inode(ino)?;
    if inode.kind() == Some(Kind::Dir) {
        return Err(FsError::IsADirectory);
    }
    Ok(inode)
}

fn adjust_nlink<T: TxHandle>(ctx: &mut Ctx<'_, T>, ino: Ino, delta: i64) -> Result<u32> {
    let mut inode = ctx.inode(ino)?;
    let nlink = i64::from(inode.nlink) + delta;
    inode.nlink = u32::try_from(nlink).map_err(|_| {
        if delta > 0 {
            FsError::TooManyLinks
        } else {
            FsError::corrupt("link count above zero", 1u32, inode.nlink)
        }
    })?;
    ctx.put_inode(ino, &inode)?;
    Ok(inode.nlink)
}

/// Drops one link to a file, freeing it with the last.
fn drop_link<T: TxHandle>(ctx: &mut Ctx<'_, T>, ino: Ino) -> Result<()> {
    if adjust_nlink(ctx, ino, -1)? == 0 {
        free_inode_and_blocks(ctx, ino)?;
    }
    Ok(())
}

fn free_inode_and_blocks<T: TxHandle>(ctx: &mut Ctx<'_, T>, ino: Ino) -> Result<()> {
    let mut inode = ctx.inode(ino)?;
    ctx.free_from(&mut inode, 0)?;
    ctx.free_inode(ino)
}

fn write_piece<T: TxHandle>(
    ctx: &mut Ctx<'_, T>,
    ino: Ino,
    offset: u64,
    data: &[u8],
) -> Result<()> {
    let mut inode = file_inode(ctx, ino)?;
    let end = offset + data.len() as u64;
    let mut pos = offset;
    while pos < end {
        let index = pos / BLOCK_BYTES;
        let within = (pos % BLOCK_BYTES) as usize;
        let take = ((BLOCK_BYTES - within as u64).min(end - pos)) as usize;
        let source = &data[(pos - offset) as usize..(pos - offset) as usize + take];
        let (addr, fresh) = ctx.map_alloc(&mut inode, index)?;
        if take == BLOCK_SIZE {
            ctx.put(
                addr,
                Block::from_bytes(source).map_err(|_| FsError::InvalidArgument("block"))?,
            );
        } else {
            // A fresh block is zeroed by the allocator; an old one keeps its other bytes
            // (zeros past the end of file, by the tail invariant).
            let _ = fresh;
            ctx.get_mut(addr)?.as_bytes_mut()[within..within + take].copy_from_slice(source);
        }
        pos += take as u64;
    }
    inode.size_bytes = inode.size_bytes.max(end);
    ctx.put_inode(ino, &inode)
}

fn truncate_inode<T: TxHandle>(
    ctx: &mut Ctx<'_, T>,
    inode: &mut Inode,
    size_bytes: u64,
) -> Result<()> {
    if size_bytes < inode.size_bytes {
        ctx.free_from(inode, size_bytes.div_ceil(BLOCK_BYTES))?;
        let within = (size_bytes % BLOCK_BYTES) as usize;
        if within != 0 {
            // Keep the tail invariant: bytes past the end of file read as zeros if it grows.
            let addr = ctx.map(inode, size_bytes / BLOCK_BYTES)?;
            if addr != 0 {
                ctx.get_mut(addr)?.as_bytes_mut()[within..].fill(0);
            }
        }
    }
    inode.size_bytes = size_bytes;
    Ok(())
}

fn rename_in<T: TxHandle>(
    ctx: &mut Ctx<'_, T>,
    src_parent: Ino,
    src_name: &[u8],
    dst_parent: Ino,
    dst_name: &[u8],
) -> Result<()> {
    let src = ctx
        .dir_scan(src_parent, src_name)?
        .found
        .ok_or(FsError::NotFound)?;
    let dst = ctx.dir_scan(dst_parent, dst_name)?.found;
    if let Some(dst) = dst {
        if dst.ino == src.ino {
            return Ok(());
        }
        match (src.kind, dst.kind) {
            (Kind::Dir, Kind::File) => return Err(FsError::NotADirectory),
            (Kind::File, Kind::Dir) => return Err(FsError::IsADirectory),
            (Kind::Dir, Kind::Dir) if !ctx.dir_is_empty(dst.ino)? => return Err(FsError::NotEmpty),
            _ => {}
        }
    }
    if src.kind == Kind::Dir && src_parent != dst_parent && is_ancestor(ctx, src.ino, dst_parent)? {
        return Err(FsError::InvalidArgument("directory moved into itself"));
    }
    if let Some(dst) = dst {
        ctx.dir_remove(dst)?;
        if dst.kind == Kind::Dir {
            adjust_nlink(ctx, dst_parent, -1)?;
            free_inode_and_blocks(ctx, dst.ino)?;
        } else {
            drop_link(ctx, dst.ino)?;
        }
    }
    ctx.dir_remove(src)?;
    // Scan again: the removals above may have freed the slot a scan would pick.
    let free = ctx.dir_scan(dst_parent, dst_name)?.free;
    ctx.dir_add(dst_parent, free, dst_name, src.ino, src.kind)?;
    if src.kind == Kind::Dir && src_parent != dst_parent {
        let mut moved = ctx.inode(src.ino)?;
        moved.parent = dst_parent;
        ctx.put_inode(src.ino, &moved)?;
        adjust_nlink(ctx, src_parent, -1)?;
        adjust_nlink(ctx, dst_parent, 1)?;
    }
    Ok(())
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
