//! The integrity check (`txdisk fsck`): read-only inspection of one image or a replicated pair,
//! layer by layer from the bottom, and the repair that runs the layers' own recoveries.

use crate::error::{InspectError, Result};
use crate::report::{
    one_line, slot_text, state_text, FsckReport, LogReport, MemberReport, RecordSummary,
    ReplicaDiff, Severity,
};
use crate::view::{open_image, ImageKind, OpenedImage};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use txdisk_disk::{Addr, Disk};
use txdisk_log::tooling::{read_headers, read_superblock, scan_log, ScanStop};
use txdisk_log::LogError;
use txdisk_replicated::{
    plan_other, MemberPlan, MetaState, Peer, ReplicaMeta, ReplicatedError, Role, Slot,
    RESERVED_BLOCKS,
};

/// How to check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Run replica recovery and log recovery on what the check finds fixable, then check again.
    /// Without it, nothing is written (the images are opened read-only).
    pub repair: bool,
    /// How many differing addresses to list.
    pub max_listed: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            repair: false,
            max_listed: 10,
        }
    }
}

/// Progress of a long step (comparing replicas, a resync), for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// What is being done, in words ("comparing replicas", ...).
    pub phase: &'static str,
    /// Blocks done so far.
    pub done_blocks: u64,
    /// Blocks the step covers.
    pub total_blocks: u64,
}

/// How often the replica comparison reports progress.
const PROGRESS_INTERVAL_BLOCKS: u64 = 4096;

/// Checks one image or the two members of a replicated pair (d1 first). `Err` is an operational
/// error (e2fsck's 8); damage is reported in the returned report.
pub fn check(images: &[PathBuf], options: &CheckOptions) -> Result<FsckReport> {
    check_with_progress(images, options, &mut |_| {})
}

/// As [`check`], reporting progress of the long steps.
pub fn check_with_progress(
    images: &[PathBuf],
    options: &CheckOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<FsckReport> {
    let before = inspect(images, options, progress)?;
    if !options.repair || before.is_clean() {
        return Ok(before);
    }
    let repair = crate::repair::repair(images, &before, progress);
    let mut after = inspect(images, options, progress)?;
    after.repair = Some(repair);
    Ok(after)
}

/// The read-only check.
fn inspect(
    images: &[PathBuf],
    options: &CheckOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<FsckReport> {
    if images.is_empty() || images.len() > 2 {
        return Err(InspectError::ImageCount {
            count: images.len(),
        });
    }
    let mut opened = images
        .iter()
        .map(|path| open_image(path))
        .collect::<Result<Vec<_>>>()?;
    mark_blank_replacement(&mut opened)?;
    let mut report = FsckReport {
        images: images.to_vec(),
        ..FsckReport::default()
    };
    let all_members = opened
        .iter()
        .all(|image| matches!(image.kind, ImageKind::Member { .. }));
    if opened.len() == 2 && !all_members {
        let single = opened
            .iter()
            .find(|image| image.kind == ImageKind::Single)
            .map_or_else(PathBuf::new, |i| i.path.clone());
        return Err(InspectError::NotAPairMember { path: single });
    }
    if !all_members {
        check_log(&opened[0], true, &mut report)?;
        return Ok(report);
    }
    let chosen = check_members(&opened, &mut report)?;
    let source = chosen.as_ref().map(|(source, _)| *source);
    if opened.len() == 2 {
        // A member to be rebuilt is overwritten whole: comparing it would list every block.
        if let Some((source, MemberPlan::InSync { .. })) = chosen {
            report.replicas = Some(compare_replicas(
                &opened,
                source,
                options,
                progress,
                &mut report,
            )?);
        }
    } else {
        report.add(
            Severity::Info,
            "replicated",
            "replicated.one_member",
            "only one member of the pair given: replicas not compared",
        );
    }
    let log_source = source.map_or(0, Role::index).min(opened.len() - 1);
    let errors_before = count_errors(&report);
    check_log(&opened[log_source], false, &mut report)?;
    if opened.len() == 2 && count_errors(&report) > errors_before {
        compare_logs(&opened[1 - log_source], &mut report);
    }
    Ok(report)
}

fn count_errors(report: &FsckReport) -> usize {
    report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count()
}

/// The log is damaged on the member recovery would copy from: tell whether the other member's
/// copy is intact (a resync would overwrite it, so repair leaves both alone).
fn compare_logs(other: &OpenedImage, report: &mut FsckReport) {
    let mut scratch = FsckReport::default();
    if check_log(other, false, &mut scratch).is_err() || count_errors(&scratch) > 0 {
        return;
    }
    let message = format!(
        "the log on {} is intact: the damage is on the other member only",
        other.path.display()
    );
    report.add(Severity::Info, "log", "log.other_member_intact", message);
}

fn io_error(path: &Path) -> impl Fn(txdisk_disk::DiskError) -> InspectError + '_ {
    move |source| InspectError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---- the replicated layer ----

/// Beside a pair member, an image whose metadata blocks are all zeros is a blank replacement
/// (what `open` rebuilds), not a single image.
fn mark_blank_replacement(opened: &mut [OpenedImage]) -> Result<()> {
    let members = opened
        .iter()
        .filter(|image| matches!(image.kind, ImageKind::Member { .. }))
        .count();
    if opened.len() != 2 || members != 1 {
        return Ok(());
    }
    for image in opened.iter_mut() {
        if image.kind != ImageKind::Single || image.disk.size_blocks() <= RESERVED_BLOCKS {
            continue;
        }
        for addr in 0..RESERVED_BLOCKS {
            if !image
                .disk
                .read(addr)
                .map_err(io_error(&image.path))?
                .is_zero()
            {
                return Ok(());
            }
        }
        image.kind = ImageKind::Member {
            slots: [Slot::Blank; 2],
            meta: None,
        };
    }
    Ok(())
}

/// Checks the pair metadata of every member given; returns the member recovery would take as
/// the source and what it would do with the other (as `ReplicatedDisk::open` decides), if a
/// source can be chosen.
fn check_members(
    opened: &[OpenedImage],
    report: &mut FsckReport,
) -> Result<Option<(Role, MemberPlan)>> {
    let mut metas: Vec<Option<ReplicaMeta>> = Vec::new();
    for (index, image) in opened.iter().enumerate() {
        let ImageKind::Member { slots, meta } = &image.kind else {
            unreachable!("inspect: members checked above")
        };
        report.members.push(MemberReport {
            path: image.path.clone(),
            slots: *slots,
            meta: *meta,
        });
        check_slots(image, slots, meta, report);
        if let Some(meta) = meta {
            if opened.len() == 2 && meta.role != Role::from_index(index) {
                return Err(InspectError::WrongOrder {
                    path: image.path.clone(),
                    expected: Role::from_index(index).to_string(),
                    found: meta.role.to_string(),
                });
            }
            check_member_size(image, meta, report);
        }
        metas.push(*meta);
    }
    if let [Some(m1), Some(m2)] = metas.as_slice() {
        if m1.pair_id != m2.pair_id {
            return Err(InspectError::DifferentPairs {
                first: opened[0].path.clone(),
                second: opened[1].path.clone(),
                first_pair_id: m1.pair_id,
                second_pair_id: m2.pair_id,
            });
        }
        if m1.data_size_blocks != m2.data_size_blocks {
            let message = format!(
                "the members record different sizes (d1 {} data blocks, d2 {})",
                m1.data_size_blocks, m2.data_size_blocks
            );
            report.add(
                Severity::Error,
                "replicated",
                "replicated.geometry",
                message,
            );
            return Ok(None);
        }
    }
    report.pair_id = metas.iter().flatten().next().map(|m| m.pair_id);
    let blank: Vec<bool> = opened
        .iter()
        .map(|image| {
            matches!(&image.kind, ImageKind::Member { slots, .. }
                if slots.iter().all(|slot| *slot == Slot::Blank))
        })
        .collect();
    Ok(choose_source(&metas, &blank, report))
}

/// What a member given in position `index` is to the source choice: a member with damaged
/// metadata (reported as an error by `check_slots`) counts as absent, not as a replacement.
fn peer_of(metas: &[Option<ReplicaMeta>], blank: &[bool], index: usize) -> Peer {
    match metas.get(index) {
        Some(Some(meta)) => Peer::Meta(*meta),
        Some(None) if blank.get(index) == Some(&true) => Peer::Blank,
        Some(None) | None => Peer::Absent,
    }
}

fn check_slots(
    image: &OpenedImage,
    slots: &[Slot; 2],
    meta: &Option<ReplicaMeta>,
    report: &mut FsckReport,
) {
    let name = image.path.display();
    if meta.is_none() && slots.iter().all(|slot| *slot == Slot::Blank) {
        // A blank replacement: the source choice reports its rebuild.
        return;
    }
    if meta.is_none() {
        let message = format!(
            "{name}: no valid pair metadata (slot 0: {}; slot 1: {})",
            slot_text(&slots[0]),
            slot_text(&slots[1])
        );
        report.add(
            Severity::Error,
            "replicated",
            "replicated.no_metadata",
            message,
        );
        return;
    }
    for (index, slot) in slots.iter().enumerate() {
        if !matches!(slot, Slot::Valid(_)) {
            // Both slots are valid on a healthy member; one bad slot is a torn metadata write
            // or damage, and the next metadata update rewrites it.
            let message = format!(
                "{name}: metadata slot {index} is {}; the other slot is current",
                slot_text(slot)
            );
            report.add(
                Severity::Fixable,
                "replicated",
                "replicated.slot_damaged",
                message,
            );
        }
    }
}

fn check_member_size(image: &OpenedImage, meta: &ReplicaMeta, report: &mut FsckReport) {
    let needed = meta.data_size_blocks.saturating_add(RESERVED_BLOCKS);
    if image.disk.size_blocks() < needed {
        let message = format!(
            "{}: {} blocks, its metadata needs {needed} (truncated image?)",
            image.path.display(),
            image.disk.size_blocks()
        );
        report.add(Severity::Error, "disk", "disk.truncated", message);
    }
}

/// The source as `open` chooses it (the replicated crate's rule), and what `open` would do with
/// the other member, reported.
fn choose_source(
    metas: &[Option<ReplicaMeta>],
    blank: &[bool],
    report: &mut FsckReport,
) -> Option<(Role, MemberPlan)> {
    let mut by_role = [None, None];
    for meta in metas.iter().flatten() {
        by_role[meta.role.index()] = Some(*meta);
    }
    let source = match txdisk_replicated::choose_source(by_role) {
        Ok(source) => source,
        Err(error) => {
            let code = match error {
                ReplicatedError::SplitBrain { .. } => "replicated.split_brain",
                _ => "replicated.no_source",
            };
            if metas.iter().flatten().next().is_some() {
                report.add(
                    Severity::Error,
                    "replicated",
                    code,
                    one_line(&error.to_string()),
                );
            }
            return None;
        }
    };
    let other_index = if metas.len() == 2 {
        source.role.other().index()
    } else {
        metas.len()
    };
    let plan = plan_other(&source, &peer_of(metas, blank, other_index));
    if let MemberPlan::Rebuild { why } = &plan {
        let code = match peer_of(metas, blank, other_index) {
            Peer::Meta(meta) if meta.state == MetaState::Rebuilding => {
                "replicated.rebuild_unfinished"
            }
            Peer::Meta(_) => "replicated.stale",
            _ => "replicated.blank_member",
        };
        let message = format!(
            "{} is to be rebuilt from {} ({why})",
            source.role.other(),
            source.role
        );
        report.add(Severity::Fixable, "replicated", code, message);
    }
    let dirty: Vec<String> = metas
        .iter()
        .flatten()
        .filter(|m| m.state == MetaState::Dirty)
        .map(|m| m.role.to_string())
        .collect();
    if !dirty.is_empty() {
        let message = format!(
            "pair not closed cleanly ({} {}): replica recovery pending",
            dirty.join(", "),
            state_text(MetaState::Dirty)
        );
        report.add(Severity::Fixable, "replicated", "replicated.dirty", message);
    }
    Some((source.role, plan))
}

/// Compares the two members' data block by block.
fn compare_replicas(
    opened: &[OpenedImage],
    source: Role,
    options: &CheckOptions,
    progress: &mut dyn FnMut(Progress),
    report: &mut FsckReport,
) -> Result<ReplicaDiff> {
    let (v1, v2) = (opened[0].log_view(), opened[1].log_view());
    let total_blocks = v1.size_blocks().min(v2.size_blocks());
    let mut diff = ReplicaDiff {
        compared_blocks: total_blocks,
        differing_blocks: 0,
        first_differences: Vec::new(),
        source,
    };
    for addr in 0..total_blocks {
        let b1 = v1.read(addr).map_err(io_error(&opened[0].path))?;
        let b2 = v2.read(addr).map_err(io_error(&opened[1].path))?;
        if b1 != b2 {
            diff.differing_blocks += 1;
            if diff.first_differences.len() < options.max_listed {
                diff.first_differences.push(addr);
            }
        }
        if (addr + 1) % PROGRESS_INTERVAL_BLOCKS == 0 {
            progress(Progress {
                phase: "comparing replicas",
                done_blocks: addr + 1,
                total_blocks,
            });
        }
    }
    progress(Progress {
        phase: "comparing replicas",
        done_blocks: total_blocks,
        total_blocks,
    });
    if diff.differing_blocks > 0 {
        let listed: Vec<String> = diff.first_differences.iter().map(Addr::to_string).collect();
        let message = format!(
            "replicas differ at {} of {} blocks (first: {}); recovery copies {} over {}",
            diff.differing_blocks,
            total_blocks,
            listed.join(", "),
            source,
            source.other()
        );
        report.add(
            Severity::Fixable,
            "replicated",
            "replicated.differ",
            message,
        );
    }
    Ok(diff)
}

// ---- the log layer ----

/// What a log error means for the check: an operational error (not ours at all, a version we
/// cannot read, an I/O failure) or damage on an image we recognise.
fn log_error(
    image: &OpenedImage,
    single: bool,
    error: LogError,
    report: &mut FsckReport,
) -> Result<()> {
    let path = image.path.clone();
    match error {
        LogError::NotAnImage { reason } if single => Err(InspectError::NotAnImage { path, reason }),
        LogError::UnsupportedVersion { found, supported } => {
            Err(InspectError::UnsupportedVersion {
                path,
                what: "log",
                found,
                supported,
            })
        }
        LogError::Disk(source) => Err(InspectError::Io { path, source }),
        other => {
            let code = match &other {
                LogError::NoValidHeader => "log.no_header",
                LogError::Corruption { .. } => "log.corruption",
                _ => "log.superblock",
            };
            report.add(Severity::Error, "log", code, one_line(&other.to_string()));
            Ok(())
        }
    }
}

/// Checks the log in the image's address space: superblock, headers, the chain of records.
fn check_log(image: &OpenedImage, single: bool, report: &mut FsckReport) -> Result<()> {
    let view = image.log_view();
    if view.size_blocks() == 0 {
        return Err(InspectError::NotAnImage {
            path: image.path.clone(),
            reason: "no blocks after the pair metadata".into(),
        });
    }
    let sb = match read_superblock(&view) {
        Ok(sb) => sb,
        Err(error) => return log_error(image, single, error, report),
    };
    // The log refuses a header whose positions are out of any plausible range when it decodes
    // it: no second copy of that limit here.
    if let Err(error) = read_headers(&view, &sb) {
        return log_error(image, single, error, report);
    }
    let scan = match scan_log(&view, false) {
        Ok(scan) => scan,
        Err(error) => return log_error(image, single, error, report),
    };
    let home: BTreeSet<Addr> = scan
        .records
        .iter()
        .flat_map(|r| r.addrs.iter().copied())
        .collect();
    let log = LogReport {
        superblock: scan.superblock,
        slots: scan.slots.clone(),
        header: scan.header,
        records: scan.records.iter().map(RecordSummary::from).collect(),
        end_pos: scan.end_pos,
        next_seq: scan.next_seq,
        stop: scan.stop.clone(),
        beyond_stop: scan.beyond_stop.iter().map(RecordSummary::from).collect(),
        corruption: scan.corruption(),
        replay_home_blocks: home.len(),
    };
    log_findings(&log, report);
    report.log = Some(log);
    Ok(())
}

fn log_findings(log: &LogReport, report: &mut FsckReport) {
    if let Some(detail) = &log.corruption {
        let message =
            format!("log corruption: {detail}; acknowledged transactions cannot be replayed");
        report.add(Severity::Error, "log", "log.corruption", message);
    }
    if let (Some(first), Some(last)) = (log.records.first(), log.records.last()) {
        let message = format!(
            "recovery needed: {} transaction(s) to replay (sequences {}..={}, {} home blocks)",
            log.records.len(),
            first.seq,
            last.seq,
            log.replay_home_blocks
        );
        report.add(Severity::Fixable, "log", "log.recovery_needed", message);
    }
    if log.corruption.is_some() {
        return;
    }
    if let ScanStop::ChecksumMismatch { pos, seq, .. } = &log.stop {
        // The right sequence number with a bad checksum, and nothing after it claiming it was
        // durable: a record whose write a crash interrupted. It was never acknowledged, and
        // recovery discards it (and moves the sequence past it, so it stays dead).
        let message = format!("torn transaction at position {pos} (sequence {seq}): a crash during its commit; never acknowledged, recovery discards it");
        report.add(Severity::Info, "log", "log.torn", message);
    }
    if !log.beyond_stop.is_empty() {
        let message = format!(
            "{} valid record(s) past the end of the log (an interrupted group flush); never acknowledged, not replayed",
            log.beyond_stop.len()
        );
        report.add(Severity::Info, "log", "log.beyond_end", message);
    }
}
