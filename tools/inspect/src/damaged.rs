//! Deliberately damaged images, one per kind of trouble, for the tests of this crate and of the
//! `txdisk` program (as e2fsprogs keeps journal test images): each is made from a healthy
//! image by the layers themselves (a crash is "drop without close") and then, where the
//! trouble is damage, by patching bytes the format documents.

use crate::view::Window;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use txdisk_disk::{Block, Disk, FileDisk, BLOCK_SIZE};
use txdisk_log::tooling::{scan_log, Superblock};
use txdisk_log::LogOptions;
use txdisk_logical::LogicalDisk;
use txdisk_replicated::{
    FormatOptions, MetaState, ReplicaMeta, ReplicatedDisk, Slot, RESERVED_BLOCKS,
};

/// Blocks of every test image (1 MiB): small, so that thousands of checks take seconds.
pub const SIZE_BLOCKS: u64 = 256;
/// Blocks of the log region of every test image.
pub const LOG_BLOCKS: u64 = 32;

/// What making a test image can fail with.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

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
    /// A pair closed clean whose d2 differs from d1 at three data addresses.
    ReplicaDifference,
    /// The first of three acknowledged records damaged: the later ones say it was durable.
    BrokenChain,
    /// A byte of the log superblock flipped (magic intact).
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
}

impl Damage {
    /// Every kind, in declaration order.
    pub const ALL: [Damage; 22] = [
        Damage::CleanSingle,
        Damage::CleanPair,
        Damage::PendingSingle,
        Damage::PendingPair,
        Damage::TornTail,
        Damage::TornOnly,
        Damage::ReplicaDifference,
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
        _ => pair(),
    };
    match damage {
        Damage::EmptyFile => std::fs::write(&images[0], b"")?,
        Damage::NotAnImage => {
            std::fs::write(&images[0], "not an image\n".repeat(2 * BLOCK_SIZE / 13 + 1))?
        }
        Damage::Directory => std::fs::create_dir(&images[0])?,
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
            let d2 = FileDisk::open(&images[1])?;
            let sb = txdisk_log::tooling::read_superblock(&Window::new(
                &d2,
                RESERVED_BLOCKS,
                d2.size_blocks() - RESERVED_BLOCKS,
            ))?;
            for home in [5, 6, 40] {
                d2.write(RESERVED_BLOCKS + sb.data_start + home, &Block::filled(0xd2))?;
            }
            d2.sync()?;
        }
        Damage::SuperblockChecksum => patch(&images[0], 20, &[0x55])?,
        Damage::WrongMagic => patch(&images[0], 0, b"NOTTXDSK")?,
        Damage::FutureLogVersion => {
            let disk = FileDisk::open(&images[0])?;
            let mut sb = Superblock::decode(&disk.read(0)?, disk.size_blocks())?;
            sb.version = 2;
            disk.write(0, &sb.encode())?;
            disk.sync()?;
        }
        Damage::FuturePairVersion => {
            for slot in 0..RESERVED_BLOCKS {
                patch(
                    &images[0],
                    slot * BLOCK_SIZE as u64 + 8,
                    &(txdisk_replicated::FORMAT_VERSION + 1).to_le_bytes(),
                )?;
            }
        }
        Damage::NoValidHeader => {
            patch(&images[0], BLOCK_SIZE as u64, &[0u8; BLOCK_SIZE])?;
            patch(&images[0], 2 * BLOCK_SIZE as u64, &[0u8; BLOCK_SIZE])?;
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
        Damage::DamagedSlot => patch(&images[0], 30, &[0xff])?,
        _ => {}
    }
    Ok(())
}

/// Formats one image, or a pair with the given pair id, closed clean.
pub fn format(images: &[PathBuf], pair_id: u64) -> Result<(), Error> {
    match images {
        [single] => {
            let disk = FileDisk::create(single, SIZE_BLOCKS)?;
            LogicalDisk::format(&disk, LOG_BLOCKS)?;
        }
        [p1, p2] => {
            let (d1, d2) = (
                FileDisk::create(p1, SIZE_BLOCKS)?,
                FileDisk::create(p2, SIZE_BLOCKS)?,
            );
            ReplicatedDisk::format(
                &d1,
                &d2,
                &FormatOptions {
                    pair_id: Some(pair_id),
                    assume_equal: true,
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

/// Commits `count` durable transactions of two blocks each (addresses `2i`, `2i + 1`, filled
/// with `i + 1`), with installation off, then drops everything without closing: a crash after
/// the commits returned.
pub fn commit_and_crash(images: &[PathBuf], count: u8) -> Result<(), Error> {
    let disk: Arc<dyn Disk> = match images {
        [single] => Arc::new(FileDisk::open(single)?),
        [p1, p2] => Arc::new(ReplicatedDisk::open(
            FileDisk::open(p1)?,
            FileDisk::open(p2)?,
            &mut |_| {},
        )?),
        _ => return Err("one or two images".into()),
    };
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
/// garbage: its checksum no longer matches.
fn tear_record(path: &Path, index: usize) -> Result<(), Error> {
    let disk = FileDisk::open(path)?;
    let scan = scan_log(&disk, false)?;
    let record = scan.records.get(index).ok_or("no such record")?;
    let last = scan.superblock.log_addr(record.pos + record.len_blocks - 1);
    disk.write(last, &Block::filled(0x7e))?;
    disk.sync()?;
    Ok(())
}

/// Writes `bytes` at byte `offset` of the file.
pub fn patch(path: &Path, offset: u64, bytes: &[u8]) -> Result<(), Error> {
    use std::os::unix::fs::FileExt;
    let file = OpenOptions::new().write(true).open(path)?;
    file.write_all_at(bytes, offset)?;
    file.sync_data()?;
    Ok(())
}

/// Rewrites both metadata slots of a member with its newest metadata, changed by `edit`.
fn rewrite_meta(path: &Path, edit: impl Fn(&mut ReplicaMeta)) -> Result<(), Error> {
    let disk = FileDisk::open(path)?;
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
