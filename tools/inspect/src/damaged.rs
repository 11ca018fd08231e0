//! Deliberately damaged images, one per kind of trouble, for the tests of this crate and of the
//! `txdisk` program (as e2fsprogs keeps journal test images): each is made from a healthy
//! image by the layers themselves (a crash is "drop without close") and then, where the
//! trouble is damage, by patching bytes the format documents.
//!
//! Every image is checksummed (docs/FORMAT-integrity.md): the file holds two checksum
//! superblocks and the tag blocks, then the checked disk's blocks — on a pair member its
//! metadata slots, then the log's address space. Damage comes in two depths:
//!
//! * **through the checksums** ([`patch_checked`], and the layers' own writes): the block is
//!   rewritten with its tag, so it verifies, and only the layer above can tell it is wrong (a
//!   log superblock whose own checksum fails, a crafted header). This is what a bug above the
//!   checksums would leave.
//! * **beneath them** ([`patch_raw`], [`flip_random_bit`], [`misdirect`], [`put_back`]): bytes
//!   of the file changed behind the checksummed disk's back, as rot, a misdirected or a lost
//!   write leaves them: the block fails verification.
//!
//! [`Geometry`] says where each block of an image is in its file.

use crate::view::Window;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Addr, Block, Disk, FileDisk, BLOCK_SIZE};
use txdisk_integrity::IntegrityDisk;
use txdisk_log::tooling::{scan_log, Superblock};
use txdisk_log::LogOptions;
use txdisk_logical::LogicalDisk;
use txdisk_replicated::{
    BitmapLayout, FormatOptions, MetaState, ReplicaMeta, ReplicatedDisk, Slot, BITMAP_HEADER_BYTES,
    RESERVED_BLOCKS,
};

/// Blocks of every test image (1 MiB): small, so that thousands of checks take seconds.
pub const SIZE_BLOCKS: u64 = 256;
/// Blocks of the log region of every test image.
pub const LOG_BLOCKS: u64 = 32;

/// What making a test image can fail with.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One image as the stack uses it.
type Checked = IntegrityDisk<FileDisk>;

/// The kinds of test image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Damage {
    /// A single image, formatted and closed cleanly: nothing to find.
    CleanSingle,
    /// A replicated pair, formatted and closed cleanly: nothing to find.
    CleanPair,
    /// Three durable transactions never installed, then a crash: recovery needed.
    PendingSingle,
    /// As `PendingSingle` on a pair, which is also left dirty.
    PendingPair,
    /// One durable transaction, then a record whose last block never reached the disk.
    TornTail,
    /// Only a torn record: nothing to replay.
    TornOnly,
    /// A pair closed clean whose d2 holds newer copies of three data blocks than d1 (both
    /// verify): what d1 losing three writes, block and tag together, leaves. Both members'
    /// bitmaps are clear, so recovery would not copy them: an error.
    ReplicaDifference,
    /// A pair left dirty by a crash just after a write through it, whose d2 then got a newer
    /// copy of that block (both verify): a difference inside a chunk both bitmaps mark, which
    /// the resync at open copies.
    MarkedDifference,
    /// d1's write-intent bitmap block fails the bitmap's own checksum (the block verifies);
    /// d2's copy is valid.
    DamagedBitmap,
    /// The first of three acknowledged records damaged: the later ones say it was durable.
    BrokenChain,
    /// A byte of the log superblock flipped (magic intact; the block itself verifies).
    SuperblockChecksum,
    /// The superblock magic overwritten: not ours.
    WrongMagic,
    /// A log superblock of format version 2, with a valid checksum.
    FutureLogVersion,
    /// d1's pair metadata of a format version newer than this build's.
    FuturePairVersion,
    /// Both log header slots zeroed.
    NoValidHeader,
    /// A single image cut to half its size (whole blocks).
    TruncatedSingle,
    /// d2 of a pair cut to half its size.
    TruncatedMember,
    /// d1 of one pair with d2 of another.
    DifferentPairs,
    /// d2 missed writes: fewer events than d1.
    StaleMember,
    /// d2's rebuild never finished.
    UnfinishedRebuild,
    /// One metadata slot of d1 corrupt (a torn metadata write).
    DamagedSlot,
    /// A file of zero bytes.
    EmptyFile,
    /// A file of text.
    NotAnImage,
    /// A directory where an image is expected.
    Directory,
    /// A pair whose d1 copies of five data blocks fail verification (two flipped bits, two
    /// misdirected writes, one lost write); d2's verify.
    RottenCopies,
    /// A single image whose home blocks 3 and 9 have a flipped bit: lost, nothing to repair from.
    RottenSingle,
    /// d1's log superblock block fails verification; d2's copy verifies.
    RottenLogSuperblock,
    /// One metadata slot of d1 fails verification (rot beneath the checksums).
    RottenSlot,
    /// The first checksum superblock copy of d1 damaged; the second is good.
    ChecksumSuperblockCopy,
    /// Both checksum superblock copies of a single image damaged.
    ChecksumSuperblocks,
    /// An image of txdisk's first format, which kept no block checksums.
    FormatOne,
}

impl Damage {
    /// Every kind, in declaration order.
    pub const ALL: [Damage; 31] = [
        Damage::CleanSingle,
        Damage::CleanPair,
        Damage::PendingSingle,
        Damage::PendingPair,
        Damage::TornTail,
        Damage::TornOnly,
        Damage::ReplicaDifference,
        Damage::MarkedDifference,
        Damage::DamagedBitmap,
        Damage::BrokenChain,
        Damage::SuperblockChecksum,
        Damage::WrongMagic,
        Damage::FutureLogVersion,
        Damage::FuturePairVersion,
        Damage::NoValidHeader,
        Damage::TruncatedSingle,
        Damage::TruncatedMember,
        Damage::DifferentPairs,
        Damage::StaleMember,
        Damage::UnfinishedRebuild,
        Damage::DamagedSlot,
        Damage::EmptyFile,
        Damage::NotAnImage,
        Damage::Directory,
        Damage::RottenCopies,
        Damage::RottenSingle,
        Damage::RottenLogSuperblock,
        Damage::RottenSlot,
        Damage::ChecksumSuperblockCopy,
        Damage::ChecksumSuperblocks,
        Damage::FormatOne,
    ];
}

/// Makes the image(s) for `damage` in `dir` (which must not already hold them); returns their
/// paths, d1 first.
pub fn make(damage: Damage, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let single = || vec![dir.join("single.img")];
    let pair = || vec![dir.join("d1.img"), dir.join("d2.img")];
    let images = match damage {
        Damage::CleanSingle
        | Damage::PendingSingle
        | Damage::TornTail
        | Damage::TornOnly
        | Damage::BrokenChain => single(),
        Damage::SuperblockChecksum
        | Damage::WrongMagic
        | Damage::FutureLogVersion
        | Damage::NoValidHeader => single(),
        Damage::TruncatedSingle | Damage::EmptyFile | Damage::NotAnImage | Damage::Directory => {
            single()
        }
        Damage::RottenSingle | Damage::ChecksumSuperblocks | Damage::FormatOne => single(),
        _ => pair(),
    };
    match damage {
        Damage::EmptyFile => std::fs::write(&images[0], b"")?,
        Damage::NotAnImage => {
            std::fs::write(&images[0], "not an image\n".repeat(2 * BLOCK_SIZE / 13 + 1))?
        }
        Damage::Directory => std::fs::create_dir(&images[0])?,
        Damage::FormatOne => {
            // Format 1: the log directly on the file, no checksum envelope.
            let disk = FileDisk::create(&images[0], SIZE_BLOCKS)?;
            LogicalDisk::format(&disk, LOG_BLOCKS)?;
        }
        Damage::DifferentPairs => {
            format(&images, 1)?;
            let other = [dir.join("other-d1.img"), dir.join("other-d2.img")];
            format(&other, 2)?;
            return Ok(vec![images[0].clone(), other[1].clone()]);
        }
        _ => {
            format(&images, 1)?;
            damage_formatted(damage, &images)?;
        }
    }
    Ok(images)
}

fn damage_formatted(damage: Damage, images: &[PathBuf]) -> Result<(), Error> {
    match damage {
        Damage::PendingSingle | Damage::PendingPair => commit_and_crash(images, 3)?,
        Damage::TornTail => {
            commit_and_crash(images, 2)?;
            tear_record(&images[0], 1)?;
        }
        Damage::TornOnly => {
            commit_and_crash(images, 1)?;
            tear_record(&images[0], 0)?;
        }
        Damage::BrokenChain => {
            commit_and_crash(images, 3)?;
            tear_record(&images[0], 0)?;
        }
        Damage::ReplicaDifference => {
            let geometry = Geometry::of(&images[1])?;
            let d2 = open_checked(&images[1])?;
            for home in [5, 6, 40] {
                let addr = geometry.checked_of_log(geometry.log.data_start + home);
                d2.write(addr, &Block::filled(0xd2))?;
            }
            d2.sync()?;
        }
        Damage::MarkedDifference => {
            let geometry = Geometry::of(&images[1])?;
            let addr = geometry.log.data_start + 7;
            let (_, pair) = open_stack_disk(images)?;
            let pair = pair.ok_or("a pair")?;
            // The write marks its chunk on both members before the data reaches either;
            // dropping the pair without `close` is a crash, which leaves it Dirty and marked.
            pair.write(addr, &Block::filled(0x5a))?;
            pair.sync()?;
            drop(pair);
            let d2 = open_checked(&images[1])?;
            d2.write(geometry.checked_of_log(addr), &Block::filled(0xd2))?;
            d2.sync()?;
        }
        Damage::DamagedBitmap => {
            let layout = Geometry::of(&images[0])?
                .bitmap
                .ok_or("not a pair member")?;
            // A bit flipped in block 0's bits: the bitmap's own checksum no longer matches.
            let block = layout.first_bitmap_block();
            patch_checked_block(&images[0], block, BITMAP_HEADER_BYTES, &[0x01])?;
        }
        Damage::SuperblockChecksum => patch_checked(&images[0], 0, 20, &[0x55])?,
        Damage::WrongMagic => patch_checked(&images[0], 0, 0, b"NOTTXDSK")?,
        Damage::FutureLogVersion => {
            let geometry = Geometry::of(&images[0])?;
            let mut sb = geometry.log;
            sb.version = 2;
            let disk = open_checked(&images[0])?;
            disk.write(geometry.checked_of_log(0), &sb.encode())?;
            disk.sync()?;
        }
        Damage::FuturePairVersion => {
            let version = (txdisk_replicated::FORMAT_VERSION + 1).to_le_bytes();
            for slot in 0..RESERVED_BLOCKS {
                patch_checked_block(&images[0], slot, 8, &version)?;
            }
        }
        Damage::NoValidHeader => {
            patch_checked(&images[0], 1, 0, &[0u8; BLOCK_SIZE])?;
            patch_checked(&images[0], 2, 0, &[0u8; BLOCK_SIZE])?;
        }
        Damage::TruncatedSingle | Damage::TruncatedMember => {
            let path = images.last().ok_or("no image")?;
            OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(SIZE_BLOCKS / 2 * BLOCK_SIZE as u64)?;
        }
        // As d2 was at format time: an older copy of itself put back.
        Damage::StaleMember => rewrite_meta(&images[1], |meta| {
            meta.events = 1;
            meta.peer_events = 1;
        })?,
        Damage::UnfinishedRebuild => rewrite_meta(&images[1], |meta| {
            meta.state = MetaState::Rebuilding;
            meta.events = 0;
            meta.peer_events = 0;
        })?,
        Damage::DamagedSlot => patch_checked_block(&images[0], 0, 30, &[0xff])?,
        Damage::RottenCopies => rot_copies(images)?,
        Damage::RottenSingle => {
            let mut rng = SplitMix64::new(0x5c7b);
            for home in [3, 9] {
                flip_random_bit(
                    &images[0],
                    Geometry::of(&images[0])?.raw_of_home(home),
                    &mut rng,
                )?;
            }
        }
        Damage::RottenLogSuperblock => {
            let raw = Geometry::of(&images[0])?.raw_of_log(0);
            patch_raw(&images[0], raw, 20, &[0x55])?;
        }
        Damage::RottenSlot => {
            let raw = Geometry::of(&images[0])?.raw_of_checked(0);
            patch_raw(&images[0], raw, 30, &[0xff])?;
        }
        Damage::ChecksumSuperblockCopy => patch_raw(&images[0], 0, 20, &[0x55])?,
        Damage::ChecksumSuperblocks => {
            patch_raw(&images[0], 0, 20, &[0x55])?;
            patch_raw(&images[0], 1, 20, &[0x55])?;
        }
        _ => {}
    }
    Ok(())
}

/// `RottenCopies`: d1's copies of home blocks 10 and 11 get a flipped bit, 12 and 13 the
/// contents of 20 and 21 (misdirected), and 14 its previous contents (a lost write).
fn rot_copies(images: &[PathBuf]) -> Result<(), Error> {
    let geometry = Geometry::of(&images[0])?;
    // Distinct contents everywhere first, so that a misdirected block names its origin.
    write_homes(images, &[(10..22).collect::<Vec<Addr>>()])?;
    let before = snapshot(&images[0], &[geometry.raw_of_home(14)])?;
    write_homes(images, &[vec![14]])?;
    let mut rng = SplitMix64::new(0x2077);
    for home in [10, 11] {
        flip_random_bit(&images[0], geometry.raw_of_home(home), &mut rng)?;
    }
    for (home, from) in [(12, 20), (13, 21)] {
        misdirect(
            &images[0],
            geometry.raw_of_home(home),
            geometry.raw_of_home(from),
        )?;
    }
    put_back(&images[0], &before)
}

/// Writes each list of home addresses in one transaction, every block different from every
/// other ever written (its address and a counter), and closes cleanly.
fn write_homes(images: &[PathBuf], batches: &[Vec<Addr>]) -> Result<(), Error> {
    let (disk, pair) = open_stack_disk(images)?;
    let logical = LogicalDisk::open(disk, LogOptions::default())?;
    let stamp = txdisk_disk::rng::random_seed();
    for (batch, addrs) in batches.iter().enumerate() {
        let mut tx = logical.begin();
        for &addr in addrs {
            tx.write(addr, &distinct_block(addr, stamp ^ batch as u64))?;
        }
        tx.commit()?;
    }
    // Closing installs everything and gives up the log's handle on the pair.
    logical.close()?;
    if let Some(pair) = pair {
        Arc::try_unwrap(pair)
            .map_err(|_| "the pair is still shared")?
            .close()?;
    }
    Ok(())
}

/// A block that differs from every other: the address and `stamp` in its first 16 bytes, the
/// rest a pattern of both.
pub fn distinct_block(addr: Addr, stamp: u64) -> Block {
    let mut block = Block::zeroed();
    let mut rng = SplitMix64::new(addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stamp);
    for chunk in block.as_bytes_mut().chunks_exact_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    block.as_bytes_mut()[0..8].copy_from_slice(&addr.to_le_bytes());
    block.as_bytes_mut()[8..16].copy_from_slice(&stamp.to_le_bytes());
    block
}

/// Formats one image, or a pair with the given pair id, closed clean: the checksummed disk
/// on each file, then the pair and the log, as `txdisk::format` makes them.
pub fn format(images: &[PathBuf], pair_id: u64) -> Result<(), Error> {
    let create = |path: &Path| -> Result<Checked, Error> {
        Ok(IntegrityDisk::format(FileDisk::create(path, SIZE_BLOCKS)?)?)
    };
    match images {
        [single] => {
            let disk = create(single)?;
            LogicalDisk::format(&disk, LOG_BLOCKS)?;
        }
        [p1, p2] => {
            let (d1, d2) = (create(p1)?, create(p2)?);
            ReplicatedDisk::format(
                &d1,
                &d2,
                &FormatOptions {
                    pair_id: Some(pair_id),
                    assume_equal: true,
                    ..Default::default()
                },
            )?;
            let pair = ReplicatedDisk::open(d1, d2, &mut |_| {})?;
            LogicalDisk::format(&pair, LOG_BLOCKS)?;
            pair.close()?;
        }
        _ => return Err("one or two images".into()),
    }
    Ok(())
}

/// The checksummed disk of an image, writable.
fn open_checked(path: &Path) -> Result<Checked, Error> {
    Ok(IntegrityDisk::open(FileDisk::open(path)?)?)
}

type StackDisk = (Arc<dyn Disk>, Option<Arc<ReplicatedDisk<Checked>>>);

/// The disk the log lives on: one checksummed image, or the pair of two.
fn open_stack_disk(images: &[PathBuf]) -> Result<StackDisk, Error> {
    Ok(match images {
        [single] => (Arc::new(open_checked(single)?), None),
        [p1, p2] => {
            let pair = Arc::new(ReplicatedDisk::open(
                open_checked(p1)?,
                open_checked(p2)?,
                &mut |_| {},
            )?);
            (pair.clone(), Some(pair))
        }
        _ => return Err("one or two images".into()),
    })
}

/// Commits `count` durable transactions of two blocks each (addresses `2i`, `2i + 1`, filled
/// with `i + 1`), with installation off, then drops everything without closing: a crash after
/// the commits returned.
pub fn commit_and_crash(images: &[PathBuf], count: u8) -> Result<(), Error> {
    let (disk, _pair) = open_stack_disk(images)?;
    let options = LogOptions {
        background_installer: false,
        ..LogOptions::default()
    };
    let logical = LogicalDisk::open(disk, options)?;
    for index in 0..count {
        let mut tx = logical.begin();
        let base = 2 * u64::from(index);
        tx.write(base, &Block::filled(index + 1))?;
        tx.write(base + 1, &Block::filled(index + 1))?;
        tx.commit()?;
    }
    Ok(())
}

/// Overwrites the last block of record number `index` of the chain of a single image with
/// garbage, through the checksums: the block verifies, the record's checksum no longer
/// matches.
fn tear_record(path: &Path, index: usize) -> Result<(), Error> {
    let disk = open_checked(path)?;
    let scan = scan_log(&disk, false)?;
    let record = scan.records.get(index).ok_or("no such record")?;
    let last = scan.superblock.log_addr(record.pos + record.len_blocks - 1);
    disk.write(last, &Block::filled(0x7e))?;
    disk.sync()?;
    Ok(())
}

/// Writes `bytes` at byte `offset` of the file, beneath everything (for the checksum
/// superblocks, or to make a file that is not an image).
pub fn patch(path: &Path, offset: u64, bytes: &[u8]) -> Result<(), Error> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.write_all_at(bytes, offset)?;
    file.sync_data()?;
    Ok(())
}

/// Writes `bytes` at byte `offset` of file block `raw_block`, beneath the checksums: the block
/// no longer verifies.
pub fn patch_raw(path: &Path, raw_block: u64, offset: usize, bytes: &[u8]) -> Result<(), Error> {
    if offset + bytes.len() > BLOCK_SIZE {
        return Err("a patch must fit in its block".into());
    }
    patch(path, raw_block * BLOCK_SIZE as u64 + offset as u64, bytes)
}

/// Writes `bytes` at byte `offset` of block `addr` of the log's address space, through the
/// checksums: the block verifies, and only the log can tell it is wrong.
pub fn patch_checked(path: &Path, addr: Addr, offset: usize, bytes: &[u8]) -> Result<(), Error> {
    let geometry = Geometry::of(path)?;
    patch_checked_block(path, geometry.checked_of_log(addr), offset, bytes)
}

/// As [`patch_checked`], at block `block` of the checksummed disk (a pair member's metadata
/// slots are its blocks 0 and 1).
pub fn patch_checked_block(
    path: &Path,
    block: Addr,
    offset: usize,
    bytes: &[u8],
) -> Result<(), Error> {
    if offset + bytes.len() > BLOCK_SIZE {
        return Err("a patch must fit in its block".into());
    }
    let disk = open_checked(path)?;
    let mut contents = disk.read(block)?;
    contents.as_bytes_mut()[offset..offset + bytes.len()].copy_from_slice(bytes);
    disk.write(block, &contents)?;
    disk.sync()?;
    Ok(())
}

/// Flips one bit, at a random byte of file block `raw_block`, beneath the checksums (rot).
pub fn flip_random_bit(path: &Path, raw_block: u64, rng: &mut SplitMix64) -> Result<(), Error> {
    let offset = (rng.next_u64() % BLOCK_SIZE as u64) as usize;
    let mut byte = [0u8];
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let at = raw_block * BLOCK_SIZE as u64 + offset as u64;
    file.read_exact_at(&mut byte, at)?;
    byte[0] ^= 1 << (rng.next_u64() % 8);
    file.write_all_at(&byte, at)?;
    file.sync_data()?;
    Ok(())
}

/// Copies file block `from` over file block `home`, beneath the checksums: a write meant for
/// `from` that landed at `home`.
pub fn misdirect(path: &Path, home: u64, from: u64) -> Result<(), Error> {
    let saved = snapshot(path, &[from])?;
    let moved: Vec<(u64, Block)> = saved.into_iter().map(|(_, block)| (home, block)).collect();
    put_back(path, &moved)
}

/// The contents of file blocks `raw_blocks`, to [`put_back`] later.
pub fn snapshot(path: &Path, raw_blocks: &[u64]) -> Result<Vec<(u64, Block)>, Error> {
    let file = std::fs::File::open(path)?;
    raw_blocks
        .iter()
        .map(|&raw| {
            let mut block = Block::zeroed();
            file.read_exact_at(block.as_bytes_mut(), raw * BLOCK_SIZE as u64)?;
            Ok((raw, block))
        })
        .collect()
}

/// Writes blocks saved by [`snapshot`] back to their file blocks, beneath the checksums: the
/// writes made since were lost (their tags say otherwise).
pub fn put_back(path: &Path, saved: &[(u64, Block)]) -> Result<(), Error> {
    let file = OpenOptions::new().write(true).open(path)?;
    for (raw, block) in saved {
        file.write_all_at(block.as_bytes(), raw * BLOCK_SIZE as u64)?;
    }
    file.sync_data()?;
    Ok(())
}

/// Where the blocks of an image are in its file: the checksummed disk's layout, whether the
/// image is a pair member (its log's address space starts after the pair metadata), and the
/// log's superblock.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    /// The checksum layout (`data_start`: the file block of the checked disk's block 0).
    pub integrity: txdisk_integrity::format::Superblock,
    /// Blocks of the checked disk before the log's address space: the pair metadata of a
    /// member, none on a single image.
    pub log_offset: u64,
    /// The log's superblock.
    pub log: Superblock,
    /// Where a pair member's write-intent bitmap is (`None` on a single image).
    pub bitmap: Option<BitmapLayout>,
}

impl Geometry {
    /// Reads the geometry of a healthy image (at rest).
    pub fn of(path: &Path) -> Result<Geometry, Error> {
        let disk = IntegrityDisk::open(FileDisk::open_read_only(path)?)?;
        let meta = (0..RESERVED_BLOCKS)
            .filter_map(|slot| match disk.read(slot).map(|b| Slot::decode(&b)) {
                Ok(Slot::Valid(meta)) => Some(meta),
                _ => None,
            })
            .max_by_key(|meta| meta.seq);
        let log_offset = if meta.is_some() { RESERVED_BLOCKS } else { 0 };
        let view = Window::new(&disk, log_offset, disk.size_blocks() - log_offset);
        let log = txdisk_log::tooling::read_superblock(&view)?;
        Ok(Geometry {
            integrity: *disk.superblock(),
            log_offset,
            log,
            bitmap: meta.map(|meta| meta.bitmap_layout()),
        })
    }

    /// The checked disk's block holding block `addr` of the log's address space.
    pub fn checked_of_log(&self, addr: Addr) -> Addr {
        self.log_offset + addr
    }

    /// The file block holding block `addr` of the checked disk.
    pub fn raw_of_checked(&self, addr: Addr) -> u64 {
        self.integrity.data_start + addr
    }

    /// The file block holding block `addr` of the log's address space.
    pub fn raw_of_log(&self, addr: Addr) -> u64 {
        self.raw_of_checked(self.checked_of_log(addr))
    }

    /// The file block holding the home block of logical address `addr`.
    pub fn raw_of_home(&self, addr: Addr) -> u64 {
        self.raw_of_log(self.log.data_start + addr)
    }
}

/// The metadata slot of a pair member holding the older of its two metadata writes: damaging
/// that one leaves the member's metadata as it is (the newer slot decides).
pub fn older_slot(path: &Path) -> Result<u64, Error> {
    let disk = IntegrityDisk::open(FileDisk::open_read_only(path)?)?;
    let mut seqs = [0u64; RESERVED_BLOCKS as usize];
    for (slot, seq) in seqs.iter_mut().enumerate() {
        match Slot::decode(&disk.read(slot as u64)?) {
            Slot::Valid(meta) => *seq = meta.seq,
            other => return Err(format!("metadata slot {slot}: {other:?}").into()),
        }
    }
    Ok(if seqs[0] < seqs[1] { 0 } else { 1 })
}

/// Rewrites both metadata slots of a member with its newest metadata, changed by `edit`.
fn rewrite_meta(path: &Path, edit: impl Fn(&mut ReplicaMeta)) -> Result<(), Error> {
    let disk = open_checked(path)?;
    let newest = (0..RESERVED_BLOCKS)
        .filter_map(|addr| match disk.read(addr).map(|b| Slot::decode(&b)) {
            Ok(Slot::Valid(meta)) => Some(meta),
            _ => None,
        })
        .max_by_key(|meta| meta.seq)
        .ok_or("no valid metadata")?;
    let mut meta = newest;
    edit(&mut meta);
    for _ in 0..RESERVED_BLOCKS {
        meta.seq += 1;
        disk.write(meta.slot_addr(), &meta.encode())?;
    }
    disk.sync()?;
    Ok(())
}
