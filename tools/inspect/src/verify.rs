//! The checksums, for the check: every block of each image verified, the two members of a
//! pair compared copy by copy — a copy that verifies beats one that does not; of two that
//! verify but differ, the higher write generation is the newer ([`newer_copy`], the rule the
//! pair's resync and scrub keep) — and what each failure means given where it is:
//!
//! | a block that fails verification | severity |
//! |---|---|
//! | whose copy on the other member verifies | fixable: repair writes that copy back |
//! | in unused log space or a header slot (no copy verifies) | info: what a crash during a write never acknowledged leaves |
//! | a home block that log recovery rewrites (no copy verifies) | fixable: recovery writes it |
//! | anything else (no copy verifies) | error: its contents are lost |

use crate::check::{Progress, PROGRESS_INTERVAL_BLOCKS};
use crate::error::{InspectError, Result};
use crate::report::{
    failures_text, BlockFailure, FsckReport, LogReport, ReplicaDiff, Severity, VerifyReport,
};
use crate::view::{CheckedImage, OpenedImage, Window};
use std::collections::BTreeSet;
use std::path::Path;
use txdisk_disk::{Addr, Block, Disk, DiskError};
use txdisk_log::tooling::HEADER_SLOTS;
use txdisk_replicated::{newer_copy, BitmapLayout, BlockFault, Role};

/// One failing block, and whether the other member's copy verifies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Failure {
    pub(crate) failure: BlockFailure,
    pub(crate) other_verifies: bool,
}

/// The failures found on one image, in address order.
pub(crate) type Failures = Vec<Failure>;

fn io_error(path: &Path) -> impl Fn(DiskError) -> InspectError + '_ {
    move |source| InspectError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A read of one copy: the block, a per-block failure, or an error that stops the check.
fn read_copy(
    view: &Window<&CheckedImage>,
    addr: Addr,
    path: &Path,
) -> Result<Result<Block, BlockFault>> {
    match view.read(addr) {
        Ok(block) => Ok(Ok(block)),
        Err(error) => match BlockFault::of(&error) {
            Some(fault) => Ok(Err(fault.shifted(view.offset_blocks()))),
            None => Err(io_error(path)(error)),
        },
    }
}

/// Verifies every block of one image's log address space.
pub(crate) fn verify_alone(
    image: &OpenedImage,
    max_listed: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<Option<(VerifyReport, Failures)>> {
    let Some(view) = image.log_view() else {
        return Ok(None);
    };
    let total_blocks = view.size_blocks();
    let mut report = VerifyReport {
        path: image.path.clone(),
        verified_blocks: total_blocks,
        ..VerifyReport::default()
    };
    let mut failures = Vec::new();
    for addr in 0..total_blocks {
        if let Err(fault) = read_copy(&view, addr, &image.path)? {
            let failure = BlockFailure { addr, fault };
            report.count(failure, max_listed);
            failures.push(Failure {
                failure,
                other_verifies: false,
            });
        }
        tick(progress, "verifying checksums", addr + 1, total_blocks);
    }
    Ok(Some((report, failures)))
}

fn tick(progress: &mut dyn FnMut(Progress), phase: &'static str, done: u64, total: u64) {
    if done % PROGRESS_INTERVAL_BLOCKS == 0 || done == total {
        progress(Progress {
            phase,
            done_blocks: done,
            total_blocks: total,
        });
    }
}

/// The chunks the next open copies between two current members (from their write-intent
/// bitmaps; none when both were closed clean), to tell a difference recovery repairs from one
/// it would leave.
pub(crate) struct Resync {
    pub(crate) layout: BitmapLayout,
    pub(crate) chunks: BTreeSet<u64>,
}

impl Resync {
    /// Whether the next open copies pair address `addr`.
    fn copies(&self, addr: Addr) -> bool {
        self.chunks.contains(&self.layout.chunk_of(addr))
    }
}

/// What comparing the two members found.
pub(crate) struct Compared {
    pub(crate) diff: ReplicaDiff,
    pub(crate) verified: [VerifyReport; 2],
    pub(crate) failures: [Failures; 2],
}

/// Compares the two members' copies block by block, verifying each; with `resync`, counts the
/// differences in chunks it does not copy apart.
pub(crate) fn compare(
    opened: &[OpenedImage],
    source: Role,
    resync: Option<&Resync>,
    max_listed: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<Option<Compared>> {
    let (Some(v1), Some(v2)) = (opened[0].log_view(), opened[1].log_view()) else {
        return Ok(None);
    };
    let views = [v1, v2];
    let total_blocks = views[0].size_blocks().min(views[1].size_blocks());
    let mut diff = ReplicaDiff {
        compared_blocks: total_blocks,
        differing_blocks: 0,
        first_differences: Vec::new(),
        d1_newer_blocks: 0,
        d2_newer_blocks: 0,
        undecided_blocks: 0,
        source,
        unmarked_blocks: 0,
        first_unmarked: Vec::new(),
    };
    let mut verified = [0, 1].map(|index| VerifyReport {
        path: opened[index].path.clone(),
        verified_blocks: total_blocks,
        ..VerifyReport::default()
    });
    let mut failures: [Failures; 2] = [Vec::new(), Vec::new()];
    for addr in 0..total_blocks {
        let copies = [
            read_copy(&views[0], addr, &opened[0].path)?,
            read_copy(&views[1], addr, &opened[1].path)?,
        ];
        match &copies {
            [Ok(b1), Ok(b2)] if b1 != b2 => {
                diff.differing_blocks += 1;
                if diff.first_differences.len() < max_listed {
                    diff.first_differences.push(addr);
                }
                if resync.is_some_and(|resync| !resync.copies(addr)) {
                    diff.unmarked_blocks += 1;
                    if diff.first_unmarked.len() < max_listed {
                        diff.first_unmarked.push(addr);
                    }
                }
                let generation = |index: usize| views[index].generation(addr).unwrap_or(None);
                match newer_copy(generation(0), generation(1)) {
                    Some(Role::D1) => diff.d1_newer_blocks += 1,
                    Some(Role::D2) => diff.d2_newer_blocks += 1,
                    None => diff.undecided_blocks += 1,
                }
            }
            _ => {}
        }
        for index in 0..2 {
            if let Err(fault) = copies[index] {
                let failure = BlockFailure { addr, fault };
                let other_verifies = copies[1 - index].is_ok();
                verified[index].count(failure, max_listed);
                if other_verifies {
                    verified[index].repairable_blocks += 1;
                }
                failures[index].push(Failure {
                    failure,
                    other_verifies,
                });
            }
        }
        tick(progress, "comparing replicas", addr + 1, total_blocks);
    }
    Ok(Some(Compared {
        diff,
        verified,
        failures,
    }))
}

/// The pair's log address space as the repair leaves it, block by block: the copy that
/// verifies; of two that verify and differ, the newer by generation (the source's when that
/// decides nothing). What the log check reads on a pair.
pub(crate) struct Agreed<'a> {
    pub(crate) views: [Window<&'a CheckedImage>; 2],
    pub(crate) source: Role,
}

impl Disk for Agreed<'_> {
    fn size_blocks(&self) -> u64 {
        self.views[0].size_blocks().min(self.views[1].size_blocks())
    }

    fn read(&self, addr: Addr) -> txdisk_disk::Result<Block> {
        self.check_addr(addr)?;
        let copies = [self.views[0].read(addr), self.views[1].read(addr)];
        let keep = match &copies {
            [Ok(b1), Ok(b2)] if b1 != b2 => {
                let generation = |index: usize| self.views[index].generation(addr).unwrap_or(None);
                newer_copy(generation(0), generation(1)).unwrap_or(self.source)
            }
            [Ok(_), _] => Role::D1,
            [_, Ok(_)] => Role::D2,
            // Neither verifies: the source's error, as recovery would see it.
            [_, _] => self.source,
        };
        let [c1, c2] = copies;
        match keep {
            Role::D1 => c1,
            Role::D2 => c2,
        }
    }

    fn write(&self, _addr: Addr, _block: &Block) -> txdisk_disk::Result<()> {
        Err(DiskError::Unsupported {
            op: "write (the check is read-only)",
        })
    }

    fn sync(&self) -> txdisk_disk::Result<()> {
        Ok(())
    }
}

/// Where a block no copy of which verifies is, for what its failure means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Region {
    /// Unused log space or a header slot: nothing acknowledged is lost.
    Unused,
    /// A home block log recovery writes.
    Replayed,
    /// Anything else: its contents are lost.
    Lost,
}

fn region(addr: Addr, log: Option<&LogReport>, replayed: &BTreeSet<Addr>) -> Region {
    let Some(log) = log else {
        return Region::Lost;
    };
    let sb = &log.superblock;
    let in_range = |start: u64, blocks: u64| addr >= start && addr - start < blocks;
    if HEADER_SLOTS.contains(&addr) || in_range(sb.log_start, sb.log_blocks) {
        Region::Unused
    } else if in_range(sb.data_start, sb.data_blocks) && replayed.contains(&(addr - sb.data_start))
    {
        Region::Replayed
    } else {
        Region::Lost
    }
}

/// Turns the failures of every image into findings: per image, those the other member can
/// repair; then, once per address, those no copy of which verifies, by where they are.
pub(crate) fn findings(
    images: &[(&Path, Failures)],
    pair: bool,
    max_listed: usize,
    report: &mut FsckReport,
) {
    for (path, failures) in images {
        let repairable: Vec<BlockFailure> = failures
            .iter()
            .filter(|f| f.other_verifies)
            .map(|f| f.failure)
            .collect();
        if repairable.is_empty() {
            continue;
        }
        let mut counted = VerifyReport::default();
        for failure in &repairable {
            counted.count(*failure, max_listed);
        }
        let message = format!(
            "{}: {} block(s) fail verification ({}; first: {}); the other member's copies verify: repair writes them back",
            path.display(),
            repairable.len(),
            counted.kinds_text(),
            failures_text(&counted.first_failures)
        );
        report.add(
            Severity::Fixable,
            "integrity",
            "integrity.repairable",
            message,
        );
    }
    let replayed: BTreeSet<Addr> = report
        .log
        .iter()
        .flat_map(|log| log.records.iter().flat_map(|r| r.addrs.iter().copied()))
        .collect();
    let mut unrepairable: Vec<BlockFailure> = images
        .iter()
        .flat_map(|(_, failures)| failures.iter().filter(|f| !f.other_verifies))
        .map(|f| f.failure)
        .collect();
    unrepairable.sort_by_key(|f| f.addr);
    unrepairable.dedup_by_key(|f| f.addr);
    let everywhere = if pair { " on every copy" } else { "" };
    for (wanted, severity, code, meaning) in [
        (
            Region::Unused,
            Severity::Info,
            "integrity.unused_log",
            "block(s) of unused log space or a header slot fail verification{}: what a crash during a write never acknowledged leaves; later writes replace them",
        ),
        (
            Region::Replayed,
            Severity::Fixable,
            "integrity.replayed",
            "home block(s) fail verification{}: log recovery writes them",
        ),
        (
            Region::Lost,
            Severity::Error,
            "integrity.lost",
            "block(s) fail verification{}: their contents are lost (writing a block through the stack makes it good again)",
        ),
    ] {
        let mut counted = VerifyReport::default();
        let mut count = 0;
        for failure in &unrepairable {
            if region(failure.addr, report.log.as_ref(), &replayed) == wanted {
                counted.count(*failure, max_listed);
                count += 1;
            }
        }
        if count == 0 {
            continue;
        }
        let message = format!(
            "{count} {} ({}; first: {})",
            meaning.replace("{}", everywhere),
            counted.kinds_text(),
            failures_text(&counted.first_failures)
        );
        report.add(severity, "integrity", code, message);
    }
}
