//! [`scrub`]: every block of one image, or of both members of a replicated pair, read and
//! verified against its checksum — on a pair, the good copy written over a bad one.
//!
//! A read repairs only the copy it reads (d1's, on a pair), and only when something reads
//! that block: damage to a block nobody reads, or to the second copy of one, waits unseen
//! until the other copy fails too. A scrub finds it first. On a pair it is
//! [`ReplicatedDisk::scrub`]: each copy classified (ok, flipped, misdirected, stale,
//! unreadable), the good copy written over a failing one (the newer over the older where both
//! verify but differ), the members' metadata slots checked, and the blocks lost on both
//! counted. A single image has no second copy: its scrub verifies every block and reports,
//! and repairs nothing. Either way the images are opened as `open` opens them (a pair
//! recovered first if it needs it), a damaged checksum superblock copy is rewritten from the
//! good one, and the images are closed cleanly.

use crate::{open_image, refuse_same_file, Error, Image};
use std::path::{Path, PathBuf};
use txdisk_disk::Disk;
use txdisk_replicated::{
    BlockFault, Phase, Progress, ReplicatedDisk, ScrubReport, PROGRESS_INTERVAL_BLOCKS,
    SCRUB_LISTED,
};

/// What [`scrub`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scrubbed {
    /// The images, in the order given.
    pub images: Vec<PathBuf>,
    /// Per image: damaged checksum superblock copies rewritten from the good one.
    pub superblocks_repaired: Vec<u64>,
    /// Whether the images are a replicated pair.
    pub replicated: bool,
    /// The blocks: per member (a single image is `members[0]`; its blocks that fail are all
    /// lost, and nothing is repaired), what was repaired, what is lost.
    pub report: ScrubReport,
}

impl Scrubbed {
    /// Nothing was wrong anywhere.
    pub fn is_clean(&self) -> bool {
        self.report.is_clean() && self.superblocks_repaired.iter().all(|n| *n == 0)
    }

    /// Something was wrong and everything wrong was repaired: no block is lost.
    pub fn all_repaired(&self) -> bool {
        !self.is_clean() && self.report.lost_blocks == 0
    }
}

/// Scrubs one image, or the two members of a replicated pair (d1 first): see the module
/// documentation. `progress` hears the pair's recovery, if it needs one, then the scrub.
pub fn scrub(
    images: &[impl AsRef<Path>],
    progress: &mut dyn FnMut(Progress),
) -> Result<Scrubbed, Error> {
    let mut scrubbed = Scrubbed {
        images: images.iter().map(|p| p.as_ref().to_path_buf()).collect(),
        ..Scrubbed::default()
    };
    match images {
        [single] => {
            let disk = open_repaired(single.as_ref(), false, &mut scrubbed)?;
            scrubbed.report = verify_single(&disk, progress)?;
        }
        [first, second] => {
            refuse_same_file(first.as_ref(), second.as_ref())?;
            let d1 = open_repaired(first.as_ref(), true, &mut scrubbed)?;
            let d2 = open_repaired(second.as_ref(), true, &mut scrubbed)?;
            let pair = ReplicatedDisk::open(d1, d2, progress)?;
            scrubbed.replicated = true;
            scrubbed.report = pair.scrub(progress)?;
            pair.close()?;
        }
        _ => {
            return Err(Error::ImageCount {
                count: images.len(),
            })
        }
    }
    Ok(scrubbed)
}

/// Opens one image as `open` does, rewriting a damaged checksum superblock copy.
fn open_repaired(
    path: &Path,
    blank_is_replacement: bool,
    scrubbed: &mut Scrubbed,
) -> Result<Image, Error> {
    let disk = open_image(path, blank_is_replacement)?;
    let repaired = if disk.damaged_superblocks().is_empty() {
        0
    } else {
        disk.repair_superblocks()?
    };
    scrubbed.superblocks_repaired.push(repaired);
    Ok(disk)
}

/// Every block of a single image verified; each one that fails is lost (no other copy).
fn verify_single(disk: &Image, progress: &mut dyn FnMut(Progress)) -> Result<ScrubReport, Error> {
    let total_blocks = disk.size_blocks();
    let mut report = ScrubReport::default();
    let member = &mut report.members[0];
    member.scanned = true;
    for addr in 0..total_blocks {
        match disk.verify(addr) {
            Ok(()) => member.ok_blocks += 1,
            Err(error) => {
                let Some(fault) = BlockFault::of(&error) else {
                    return Err(error.into());
                };
                member.count(addr, Some(fault));
                report.lost_blocks += 1;
                if report.first_lost.len() < SCRUB_LISTED {
                    report.first_lost.push(addr);
                }
            }
        }
        report.scanned_blocks += 1;
        if report.scanned_blocks % PROGRESS_INTERVAL_BLOCKS == 0 || addr + 1 == total_blocks {
            progress(Progress {
                phase: Phase::Scrub,
                done_blocks: report.scanned_blocks,
                total_blocks,
            });
        }
    }
    Ok(report)
}
