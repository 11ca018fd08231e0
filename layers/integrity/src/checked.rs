//! [`IntegrityDisk`]: every block verified on read against a tag kept outside it.

use crate::error::{IntegrityError, Result};
use crate::format::{data_hash, Entry, Superblock, Tag, ENTRIES_PER_BLOCK, ENTRY_BYTES};
use std::collections::{BTreeSet, HashMap};
use txdisk_disk::sync::{Mutex, RwLock};
use txdisk_disk::{Addr, Block, Damage, Disk, DiskError, BLOCK_SIZE};

/// The largest tag region for which a failed verification looks for the address a block
/// belongs at (the index reads every tag block once and keeps a map of every block's hash:
/// 16 MiB of tags and about 30 MiB of map at this size, a 4 GiB disk). Past it, a block that is
/// neither its current nor its previous contents is reported as flipped.
const INDEX_MAX_TAG_BLOCKS: u64 = 4096;

/// Stripes of the per-address read/write locks: a read sees a block and its tag from the same
/// write.
const LOCK_STRIPES: usize = 64;

/// A disk whose every block is verified against a checksum kept in a tag region of the device
/// below, bound to the block's address and to its version. See the crate documentation.
pub struct IntegrityDisk<D: Disk> {
    raw: D,
    sb: Superblock,
    stripes: Box<[RwLock<()>]>,
    tags: Mutex<TagCache>,
    /// Syncs one at a time: a sync must not return before the tags of every write issued
    /// before it are written, including tags another sync collected.
    sync_lock: Mutex<()>,
    /// A sync failed: the tags it took may never have been written, so no later sync may
    /// report success (as the disk below must never do after its own failed sync).
    sync_failed: txdisk_disk::sync::atomic::AtomicBool,
    /// Superblock copies (0 or 1) found damaged when the disk was opened.
    damaged_superblocks: Mutex<Vec<u64>>,
}

/// The tag blocks read so far, and the changes not yet written.
#[derive(Default)]
struct TagCache {
    blocks: HashMap<u64, CachedTags>,
    /// Tag blocks changed since they were last written: a sync visits these, not the cache.
    dirty: BTreeSet<u64>,
    /// Data hash → an address whose current contents have it: how a misdirected block is told
    /// from rot. Built at the first failed verification, kept up to date after.
    index: Option<HashMap<u32, Addr>>,
}

struct CachedTags {
    bytes: Box<[u8; BLOCK_SIZE]>,
    /// Entries changed since the last sync: their `prev_hash` already names the synced value.
    changed_since_sync: [u64; (ENTRIES_PER_BLOCK / 64) as usize],
}

impl CachedTags {
    fn entry_bytes(&self, index: usize) -> &[u8] {
        &self.bytes[index * ENTRY_BYTES..(index + 1) * ENTRY_BYTES]
    }
    fn changed(&self, index: usize) -> bool {
        self.changed_since_sync[index / 64] & (1 << (index % 64)) != 0
    }
}

impl<D: Disk> IntegrityDisk<D> {
    /// Formats `raw`: both superblock copies and every tag block (blank entries: every data
    /// block reads as zeros until written), then syncs.
    pub fn format(raw: D) -> Result<IntegrityDisk<D>> {
        IntegrityDisk::format_with_salt(raw, txdisk_disk::rng::random_seed())
    }

    /// As [`IntegrityDisk::format`] with a given salt, for runs that must repeat exactly
    /// (simulations, the crash fuzzer's replays).
    pub fn format_with_salt(raw: D, salt: u64) -> Result<IntegrityDisk<D>> {
        let sb = Superblock::layout(raw.size_blocks(), salt)?;
        let encoded = sb.encode();
        assert_eq!(
            Superblock::decode(&encoded, raw.size_blocks())?,
            sb,
            "integrity: the superblock does not decode to what was encoded"
        );
        let zero = Block::zeroed();
        // Written, not left as unwritten extents: a tag block is rewritten at every sync, and a
        // sync should never depend on an extent conversion (docs/FORMAT.md explains why).
        for tag_block in 0..sb.tag_blocks {
            raw.write(sb.tag_start + tag_block, &zero)?;
        }
        raw.sync()?;
        // The superblocks last: a format cut short leaves no superblock, not a half-made disk.
        raw.write(0, &encoded)?;
        raw.sync()?;
        raw.write(1, &encoded)?;
        raw.sync()?;
        Ok(IntegrityDisk::assemble(raw, sb, Vec::new()))
    }

    /// Opens a formatted device: the first valid superblock copy wins. An image of txdisk's
    /// first format (no checksums) is refused by name ([`IntegrityError::Unchecksummed`]), a
    /// never-formatted one as [`IntegrityError::Blank`].
    pub fn open(raw: D) -> Result<IntegrityDisk<D>> {
        let mut outcomes = Vec::with_capacity(2);
        for copy in 0..2 {
            let outcome = match raw.read(copy) {
                Ok(block) => Superblock::decode(&block, raw.size_blocks()),
                Err(error) if error.is_bad_block() => Err(IntegrityError::Disk(error)),
                Err(error) => return Err(error.into()),
            };
            outcomes.push(outcome);
        }
        let damaged: Vec<u64> = (0..2).filter(|c| outcomes[*c as usize].is_err()).collect();
        let mut errors = Vec::new();
        for outcome in outcomes {
            match outcome {
                Ok(sb) => {
                    if !damaged.is_empty() {
                        tracing::warn!(copies = ?damaged, "a superblock copy is damaged; the other is used");
                    }
                    return Ok(IntegrityDisk::assemble(raw, sb, damaged));
                }
                Err(error) => errors.push(error),
            }
        }
        Err(open_refusal(errors))
    }

    /// True when both superblock copies of `raw` are zeros: a device never formatted (a new
    /// replacement member of a pair is formatted rather than opened). A format cut short is
    /// blank or opens: it syncs copy 0 before it writes copy 1, and a copy's 68 bytes lie in
    /// one sector, so a torn copy is zeros or whole.
    pub fn is_blank(raw: &D) -> txdisk_disk::Result<bool> {
        for copy in 0..2 {
            if copy >= raw.size_blocks() || !raw.read(copy)?.is_zero() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn assemble(raw: D, sb: Superblock, damaged: Vec<u64>) -> IntegrityDisk<D> {
        let disk = IntegrityDisk {
            raw,
            sb,
            stripes: (0..LOCK_STRIPES).map(|_| RwLock::new(())).collect(),
            tags: Mutex::new(TagCache::default()),
            sync_lock: Mutex::new(()),
            sync_failed: txdisk_disk::sync::atomic::AtomicBool::new(false),
            damaged_superblocks: Mutex::new(damaged),
        };
        #[cfg(debug_assertions)]
        disk.check_rep();
        disk
    }

    /// The layout of this device.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The device below.
    pub fn inner(&self) -> &D {
        &self.raw
    }

    /// The device below, giving this layer up (unsynced tags are dropped: sync first).
    pub fn into_inner(self) -> D {
        self.raw
    }

    /// Superblock copies found damaged at open (`0`, `1`).
    pub fn damaged_superblocks(&self) -> Vec<u64> {
        self.damaged_superblocks.lock().clone()
    }

    /// Rewrites the damaged superblock copies from the good one and syncs; returns how many.
    pub fn repair_superblocks(&self) -> txdisk_disk::Result<u64> {
        let mut damaged = self.damaged_superblocks.lock();
        let encoded = self.sb.encode();
        for copy in damaged.iter() {
            self.raw.write(*copy, &encoded)?;
        }
        self.raw.sync()?;
        let repaired = damaged.len() as u64;
        damaged.clear();
        Ok(repaired)
    }

    /// Checks block `addr` without returning it: `Ok` if it verifies, else the error a read
    /// would give.
    pub fn verify(&self, addr: Addr) -> txdisk_disk::Result<()> {
        self.read(addr).map(|_| ())
    }

    /// The generation of block `addr`'s tag (writes of it so far), `None` if never written or
    /// the tag is damaged: of two copies that both verify, the higher one is the newer.
    pub fn generation(&self, addr: Addr) -> txdisk_disk::Result<Option<u32>> {
        self.check_addr(addr)?;
        Ok(match self.entry(addr)? {
            Entry::Written(tag) => Some(tag.generation),
            Entry::Blank | Entry::Damaged => None,
        })
    }

    fn stripe(&self, addr: Addr) -> &RwLock<()> {
        &self.stripes[(addr % LOCK_STRIPES as u64) as usize]
    }

    /// The raw device's error for one of our blocks, renamed to our address.
    fn rename(&self, error: DiskError, addr: Addr) -> DiskError {
        match error {
            DiskError::ReadError { .. } => DiskError::ReadError { addr },
            DiskError::Io { op, source, .. } => DiskError::Io { op, addr, source },
            other => other,
        }
    }

    fn entry(&self, addr: Addr) -> txdisk_disk::Result<Entry> {
        let (tag_block, index) = self.sb.tag_of(addr);
        let mut cache = self.tags.lock();
        let cached = self
            .cached(&mut cache, tag_block)
            .map_err(|error| tag_error(error, addr))?;
        Ok(Tag::decode(cached.entry_bytes(index), addr, self.sb.salt))
    }

    /// The cached tag block `tag_block`, read on first use.
    fn cached<'c>(
        &self,
        cache: &'c mut TagCache,
        tag_block: u64,
    ) -> txdisk_disk::Result<&'c mut CachedTags> {
        let entry = match cache.blocks.entry(tag_block) {
            std::collections::hash_map::Entry::Occupied(cached) => return Ok(cached.into_mut()),
            std::collections::hash_map::Entry::Vacant(vacant) => vacant,
        };
        // A tag block that cannot be read is not cached: its blocks fail with a read error
        // (which a pair repairs from the other member) and the next access tries again.
        // Caching a stand-in would write it back at the next sync and lose the tags of blocks
        // that are intact.
        let bytes = Box::new(*self.raw.read(self.sb.tag_start + tag_block)?.as_bytes());
        Ok(entry.insert(CachedTags {
            bytes,
            changed_since_sync: [0; (ENTRIES_PER_BLOCK / 64) as usize],
        }))
    }

    /// Checks `block` read at `addr` against its entry.
    fn check(&self, addr: Addr, block: &Block, entry: Entry) -> txdisk_disk::Result<()> {
        #[cfg(feature = "deliberate-bugs")]
        if crate::bugs::active(crate::bugs::Bug::SkipVerify) {
            return Ok(());
        }
        let (hash, tag) = match entry {
            Entry::Blank if block.is_zero() => return Ok(()),
            Entry::Blank => (data_hash(block), None),
            Entry::Damaged => return Err(corrupt(addr, Damage::Flipped)),
            Entry::Written(tag) if tag.lost => return Err(corrupt(addr, Damage::Flipped)),
            Entry::Written(tag) => {
                let hash = data_hash(block);
                if hash == tag.data_hash {
                    return Ok(());
                }
                (hash, Some(tag))
            }
        };
        Err(corrupt(addr, self.diagnose(addr, hash, tag)?))
    }

    /// What a block that failed verification holds: its previous contents (a lost write),
    /// another block's (a misdirected write), or neither (rot).
    fn diagnose(&self, addr: Addr, hash: u32, tag: Option<Tag>) -> txdisk_disk::Result<Damage> {
        if tag.is_some_and(|tag| tag.prev_hash == hash) {
            return Ok(Damage::Stale);
        }
        if self.sb.tag_blocks > INDEX_MAX_TAG_BLOCKS {
            return Ok(Damage::Flipped);
        }
        let mut cache = self.tags.lock();
        if cache.index.is_none() {
            let index = self.build_index(&mut cache)?;
            cache.index = Some(index);
        }
        Ok(
            match cache.index.as_ref().and_then(|index| index.get(&hash)) {
                Some(&belongs_at) if belongs_at != addr => Damage::Misdirected { belongs_at },
                _ => Damage::Flipped,
            },
        )
    }

    fn build_index(&self, cache: &mut TagCache) -> txdisk_disk::Result<HashMap<u32, Addr>> {
        let mut index = HashMap::new();
        for tag_block in 0..self.sb.tag_blocks {
            let cached = match self.cached(cache, tag_block) {
                Ok(cached) => cached,
                Err(error) if error.is_bad_block() => continue,
                Err(error) => return Err(error),
            };
            let first = tag_block * ENTRIES_PER_BLOCK;
            let last = (first + ENTRIES_PER_BLOCK).min(self.sb.data_blocks);
            for addr in first..last {
                let bytes = cached.entry_bytes((addr - first) as usize);
                if let Entry::Written(tag) = Tag::decode(bytes, addr, self.sb.salt) {
                    if !tag.lost {
                        index.insert(tag.data_hash, addr);
                    }
                }
            }
        }
        Ok(index)
    }

    /// Reads (into the cache) the tag blocks of `count` blocks from `start`, before a write
    /// touches their data: a tag block that cannot be read fails the write with nothing
    /// written, rather than leaving new data under an old tag.
    fn load_tags(&self, start: Addr, count: u64) -> txdisk_disk::Result<()> {
        let Some(last) = count.checked_sub(1).map(|offset| start + offset) else {
            return Ok(());
        };
        let (first_block, _) = self.sb.tag_of(start);
        let (last_block, _) = self.sb.tag_of(last);
        let mut cache = self.tags.lock();
        for tag_block in first_block..=last_block {
            let first_addr = (tag_block * ENTRIES_PER_BLOCK).max(start);
            self.cached(&mut cache, tag_block)
                .map_err(|error| tag_error(error, first_addr))?;
        }
        Ok(())
    }

    /// Records `hash` as block `addr`'s new contents (or the block as lost), at generation
    /// `copied` if it is a copy of another disk's block of that version, else at the next.
    fn set_tag(
        &self,
        addr: Addr,
        hash: u32,
        lost: bool,
        copied: Option<u32>,
    ) -> txdisk_disk::Result<()> {
        let (tag_block, index) = self.sb.tag_of(addr);
        let salt = self.sb.salt;
        let mut guard = self.tags.lock();
        let cache = &mut *guard;
        let cached = self
            .cached(cache, tag_block)
            .map_err(|error| tag_error(error, addr))?;
        let old = Tag::decode(cached.entry_bytes(index), addr, salt);
        let (current_hash, prev_hash, generation) = match old {
            Entry::Written(tag) => (Some(tag.data_hash), tag.prev_hash, tag.generation),
            Entry::Blank => (Some(data_hash(&Block::zeroed())), 0, 0),
            Entry::Damaged => (None, 0, 0),
        };
        // The previous contents are those of the last sync: a second write before a sync
        // keeps the first write's `prev_hash`.
        let prev_hash = if cached.changed(index) {
            prev_hash
        } else {
            current_hash.unwrap_or(0)
        };
        let generation = match copied {
            Some(copied) => copied & Tag::GENERATION_MASK,
            None => Tag::next_generation(generation),
        };
        let tag = Tag {
            data_hash: hash,
            prev_hash,
            generation,
            lost,
        };
        let bytes = &mut cached.bytes[index * ENTRY_BYTES..(index + 1) * ENTRY_BYTES];
        tag.encode(bytes, addr, salt);
        assert_eq!(
            Tag::decode(bytes, addr, salt),
            Entry::Written(tag),
            "integrity: entry of block {addr} does not decode to what was encoded"
        );
        cached.changed_since_sync[index / 64] |= 1 << (index % 64);
        cache.dirty.insert(tag_block);
        if let Some(map) = cache.index.as_mut() {
            if let Some(old_hash) = current_hash {
                if map.get(&old_hash) == Some(&addr) {
                    map.remove(&old_hash);
                }
            }
            if !lost {
                map.insert(hash, addr);
            }
        }
        Ok(())
    }

    /// Writes every changed tag block, then syncs the device below.
    fn sync_tags(&self) -> txdisk_disk::Result<()> {
        use txdisk_disk::sync::atomic::Ordering;
        let _one_sync = self.sync_lock.lock();
        if self.sync_failed.load(Ordering::Acquire) {
            return Err(DiskError::SyncFailed);
        }
        let result = self.write_tags_and_sync();
        if result.is_err() {
            self.sync_failed.store(true, Ordering::Release);
        }
        result
    }

    /// Writes every changed tag block, then syncs the device below; under the sync lock.
    fn write_tags_and_sync(&self) -> txdisk_disk::Result<()> {
        let changed: Vec<(u64, Block)> = {
            let mut guard = self.tags.lock();
            let cache = &mut *guard;
            std::mem::take(&mut cache.dirty)
                .into_iter()
                .filter_map(|tag_block| {
                    let cached = cache.blocks.get_mut(&tag_block)?;
                    cached.changed_since_sync = [0; (ENTRIES_PER_BLOCK / 64) as usize];
                    Some((tag_block, block_of(&cached.bytes)))
                })
                .collect()
        };
        #[cfg(feature = "deliberate-bugs")]
        if crate::bugs::active(crate::bugs::Bug::TagsAfterSync) {
            self.raw.sync()?;
            for (tag_block, block) in &changed {
                self.raw.write(self.sb.tag_start + tag_block, block)?;
            }
            return Ok(());
        }
        for (tag_block, block) in &changed {
            self.raw.write(self.sb.tag_start + tag_block, block)?;
        }
        self.raw.sync()
    }

    /// The rep invariant: the layout is the one the device's size and salt give, the cache
    /// holds only tag blocks of the layout, and the device below holds its own invariant.
    pub fn check_rep(&self) {
        self.raw.check_rep();
        let layout = Superblock::layout(self.sb.raw_blocks, self.sb.salt)
            .unwrap_or_else(|error| panic!("integrity: superblock {:?}: {error}", self.sb));
        assert_eq!(layout, self.sb, "integrity: superblock is not its layout");
        assert!(
            self.raw.size_blocks() >= self.sb.raw_blocks,
            "integrity: device of {} blocks, formatted for {}",
            self.raw.size_blocks(),
            self.sb.raw_blocks
        );
        assert_eq!(self.stripes.len(), LOCK_STRIPES, "integrity: stripe count");
        let cache = self.tags.lock();
        for tag_block in &cache.dirty {
            assert!(
                cache.blocks.contains_key(tag_block),
                "integrity: dirty tag block {tag_block} is not cached"
            );
        }
        for (tag_block, cached) in &cache.blocks {
            assert!(
                *tag_block < self.sb.tag_blocks,
                "integrity: cached tag block {tag_block}, expected below {}",
                self.sb.tag_blocks
            );
            assert!(
                cache.dirty.contains(tag_block)
                    || cached.changed_since_sync.iter().all(|bits| *bits == 0),
                "integrity: tag block {tag_block} has changed entries but is not dirty"
            );
        }
    }
}

/// The reason `open` gives when neither superblock copy is good.
fn open_refusal(errors: Vec<IntegrityError>) -> IntegrityError {
    let rank = |error: &IntegrityError| match error {
        IntegrityError::Unchecksummed { .. } => 0,
        IntegrityError::UnsupportedVersion { .. } => 1,
        IntegrityError::SuperblockChecksum { .. } | IntegrityError::BadGeometry { .. } => 2,
        IntegrityError::Disk(_) => 3,
        IntegrityError::NotAnImage => 4,
        _ => 5,
    };
    if errors
        .iter()
        .all(|error| matches!(error, IntegrityError::Blank))
    {
        return IntegrityError::Blank;
    }
    errors
        .into_iter()
        .filter(|error| !matches!(error, IntegrityError::Blank))
        .min_by_key(rank)
        .unwrap_or(IntegrityError::NotAnImage)
}

/// An error reading the tag block of `addr`, as an error of `addr` itself.
fn tag_error(error: DiskError, addr: Addr) -> DiskError {
    if error.is_bad_block() {
        DiskError::ReadError { addr }
    } else {
        error
    }
}

fn block_of(bytes: &[u8; BLOCK_SIZE]) -> Block {
    let mut block = Block::zeroed();
    block.as_bytes_mut().copy_from_slice(bytes);
    block
}

fn corrupt(addr: Addr, damage: Damage) -> DiskError {
    DiskError::Corrupt { addr, damage }
}

impl<D: Disk> Disk for IntegrityDisk<D> {
    fn size_blocks(&self) -> u64 {
        self.sb.data_blocks
    }

    fn read(&self, addr: Addr) -> txdisk_disk::Result<Block> {
        self.check_addr(addr)?;
        let result = {
            let _stripe = self.stripe(addr).read();
            match self.raw.read(self.sb.data_start + addr) {
                Ok(block) => self
                    .entry(addr)
                    .and_then(|entry| self.check(addr, &block, entry))
                    .map(|()| block),
                Err(error) => Err(self.rename(error, addr)),
            }
        };
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn write(&self, addr: Addr, block: &Block) -> txdisk_disk::Result<()> {
        // A write is a copy of nothing: its generation is the next one.
        self.write_copy(addr, block, None)
    }

    fn write_copy(
        &self,
        addr: Addr,
        block: &Block,
        generation: Option<u32>,
    ) -> txdisk_disk::Result<()> {
        self.check_addr(addr)?;
        let result = {
            let _stripe = self.stripe(addr).write();
            self.load_tags(addr, 1)
                .and_then(|()| self.raw.write(self.sb.data_start + addr, block))
                .map_err(|error| self.rename(error, addr))
                .and_then(|()| self.set_tag(addr, data_hash(block), false, generation))
        };
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn write_run(&self, start: Addr, blocks: &[&Block]) -> txdisk_disk::Result<()> {
        let Some(last) = (blocks.len() as u64).checked_sub(1) else {
            return Ok(());
        };
        self.check_addr(start.saturating_add(last))?;
        let mut stripes: Vec<usize> = (start..=start + last)
            .map(|addr| (addr % LOCK_STRIPES as u64) as usize)
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        // In ascending order, as every multi-stripe holder takes them: no deadlock.
        let _guards: Vec<_> = stripes.iter().map(|s| self.stripes[*s].write()).collect();
        let result =
            self.load_tags(start, blocks.len() as u64)
                .and_then(|()| self.raw.write_run(self.sb.data_start + start, blocks))
                .map_err(|error| self.rename(error, start))
                .and_then(|()| {
                    blocks.iter().zip(start..).try_for_each(|(block, addr)| {
                        self.set_tag(addr, data_hash(block), false, None)
                    })
                });
        drop(_guards);
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn sync(&self) -> txdisk_disk::Result<()> {
        let result = self.sync_tags();
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn invalidate(&self, addr: Addr) -> txdisk_disk::Result<()> {
        self.check_addr(addr)?;
        let _stripe = self.stripe(addr).write();
        self.set_tag(addr, 0, true, None)
    }

    fn generation(&self, addr: Addr) -> txdisk_disk::Result<Option<u32>> {
        IntegrityDisk::generation(self, addr)
    }

    fn check_rep(&self) {
        IntegrityDisk::check_rep(self);
    }
}
