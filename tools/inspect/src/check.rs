//! The integrity check (`txdisk fsck`): read-only inspection of one image or a replicated pair,
//! layer by layer from the bottom — the checksums (every block verified, `verify.rs`), the
//! pair, the log — and the repair that runs the layers' own recoveries.

use crate::error::{InspectError, Result};
use crate::report::{
    one_line, slot_text, state_text, unusable_text, BitmapReport, FsckReport, LogReport,
    MemberBitmapReport, MemberReport, RecordSummary, ReplicaDiff, Severity, UnusableBitmapBlock,
};
use crate::verify::{self, Agreed, Failures, Resync};
use crate::view::{open_image, ImageKind, OpenedImage};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use txdisk_disk::{Addr, Disk, BLOCK_SIZE};
use txdisk_log::tooling::{read_headers, read_superblock, scan_log, ScanStop};
use txdisk_log::LogError;
use txdisk_replicated::{
    chunks_to_resync, inspect_bitmap, plan_other, BitmapLayout, MemberBitmap, MemberPlan,
    MetaState, Peer, ReplicaMeta, ReplicatedError, Role, Slot, RESERVED_BLOCKS,
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

/// How often the block-by-block steps report progress.
pub(crate) const PROGRESS_INTERVAL_BLOCKS: u64 = 4096;

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
    let mut report = FsckReport {
        images: images.to_vec(),
        ..FsckReport::default()
    };
    let mut opened = open_all(images, &mut report)?;
    if opened.is_empty() {
        return Ok(report); // nothing readable: the checksum superblock findings say why
    }
    mark_blank_replacement(&mut opened)?;
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
        let failures = verify_each(&opened, &[0], options, progress, &mut report)?;
        if let Some(view) = opened[0].log_view() {
            check_log(&view, &opened[0].path, true, &mut report)?;
        }
        finish_verification(&failures, false, options, &mut report);
        return Ok(report);
    }
    inspect_members(&opened, images.len(), options, progress, &mut report)?;
    Ok(report)
}

/// The check of pair members (`given` images were named, `opened` could be read): their
/// metadata, their copies compared (or the source's verified alone), the log.
fn inspect_members(
    opened: &[OpenedImage],
    given: usize,
    options: &CheckOptions,
    progress: &mut dyn FnMut(Progress),
    report: &mut FsckReport,
) -> Result<()> {
    let chosen = check_members(opened, report)?;
    let source = chosen.as_ref().map(|(source, _)| *source);
    let resync = match &chosen {
        Some((source, plan)) => check_bitmap(opened, *source, plan, options, report)?,
        None => None,
    };
    let mut failures = Vec::new();
    if opened.len() == 2 {
        // A member to be rebuilt is overwritten whole: comparing it would list every block.
        if let Some((source, MemberPlan::InSync { clean })) = chosen {
            let found = verify::compare(
                opened,
                source,
                resync.as_ref(),
                options.max_listed,
                progress,
            )?;
            if let Some(found) = found {
                differ_finding(&found.diff, report);
                unmarked_finding(&found.diff, clean, resync.as_ref(), report);
                report.replicas = Some(found.diff);
                report.verification.extend(found.verified);
                let [f1, f2] = found.failures;
                failures.push((opened[0].path.clone(), f1));
                failures.push((opened[1].path.clone(), f2));
            }
        }
    } else {
        let message = if given == 2 {
            "only one member of the pair can be read: replicas not compared"
        } else {
            "only one member of the pair given: replicas not compared"
        };
        report.add(
            Severity::Info,
            "replicated",
            "replicated.one_member",
            message,
        );
    }
    let compared = report.replicas.is_some();
    let log_source = source.map_or(0, Role::index).min(opened.len() - 1);
    if !compared {
        failures = verify_each(opened, &[log_source], options, progress, report)?;
    }
    let errors_before = count_errors(report);
    check_pair_log(opened, compared, Role::from_index(log_source), report)?;
    if opened.len() == 2 && count_errors(report) > errors_before {
        compare_logs(&opened[1 - log_source], report);
    }
    finish_verification(&failures, opened.len() == 2, options, report);
    Ok(())
}

/// The log of a pair: read through both members' copies as the repair leaves them when they
/// were compared, else from the source alone.
fn check_pair_log(
    opened: &[OpenedImage],
    compared: bool,
    source: Role,
    report: &mut FsckReport,
) -> Result<()> {
    let path = &opened[source.index()].path;
    match (
        compared,
        opened[0].log_view(),
        opened.get(1).and_then(OpenedImage::log_view),
    ) {
        (true, Some(v1), Some(v2)) => {
            let agreed = Agreed {
                views: [v1, v2],
                source,
            };
            check_log(&agreed, path, false, report)
        }
        _ => match opened[source.index()].log_view() {
            Some(view) => check_log(&view, path, false, report),
            None => Ok(()),
        },
    }
}

/// Opens every image through its checksums. An image whose checksum superblocks are both
/// damaged (or truncated) is reported and left out; one with a damaged copy is reported as
/// fixable; a blank file beside another image is a replacement member.
fn open_all(images: &[PathBuf], report: &mut FsckReport) -> Result<Vec<OpenedImage>> {
    let mut opened = Vec::new();
    for path in images {
        match open_image(path) {
            Ok(image) => opened.push(image),
            Err(InspectError::Blank { .. }) if images.len() == 2 => {
                opened.push(OpenedImage::blank_member(path))
            }
            Err(InspectError::Truncated {
                path,
                formatted_blocks,
                file_blocks,
            }) => {
                let message = format!(
                    "{}: formatted for {formatted_blocks} blocks, the file has {file_blocks} (truncated image?)",
                    path.display()
                );
                report.add(Severity::Error, "disk", "disk.truncated", message);
            }
            Err(InspectError::Superblocks { path, source }) => {
                let message = format!(
                    "{}: both checksum superblock copies are damaged ({}): nothing in it can be verified{}",
                    path.display(),
                    one_line(&source.to_string()),
                    if images.len() == 2 {
                        "; put a blank file in its place to rebuild it from the other member"
                    } else {
                        ""
                    }
                );
                report.add(
                    Severity::Error,
                    "integrity",
                    "integrity.superblock",
                    message,
                );
            }
            Err(error) => return Err(error),
        }
    }
    if !opened.is_empty() && opened.iter().all(|image| image.disk.is_none()) {
        return Err(InspectError::Blank {
            path: opened[0].path.clone(),
        });
    }
    for image in &opened {
        let damaged = image
            .disk
            .as_ref()
            .map_or_else(Vec::new, |disk| disk.damaged_superblocks());
        if !damaged.is_empty() {
            let copies: Vec<String> = damaged.iter().map(u64::to_string).collect();
            let message = format!(
                "{}: checksum superblock copy {} is damaged; the other is good and repair rewrites it",
                image.path.display(),
                copies.join(" and ")
            );
            report.add(
                Severity::Fixable,
                "integrity",
                "integrity.superblock_copy",
                message,
            );
        }
    }
    Ok(opened)
}

/// Verifies every block of the images at `indexes`, alone (no other copy to compare with).
fn verify_each(
    opened: &[OpenedImage],
    indexes: &[usize],
    options: &CheckOptions,
    progress: &mut dyn FnMut(Progress),
    report: &mut FsckReport,
) -> Result<Vec<(PathBuf, Failures)>> {
    let mut failures = Vec::new();
    for &index in indexes {
        if let Some((verified, found)) =
            verify::verify_alone(&opened[index], options.max_listed, progress)?
        {
            report.verification.push(verified);
            failures.push((opened[index].path.clone(), found));
        }
    }
    Ok(failures)
}

/// The failures as findings, once the log (and so what each failing block is) is known.
fn finish_verification(
    failures: &[(PathBuf, Failures)],
    pair: bool,
    options: &CheckOptions,
    report: &mut FsckReport,
) {
    let images: Vec<(&Path, Failures)> = failures
        .iter()
        .map(|(path, found)| (path.as_path(), found.clone()))
        .collect();
    verify::findings(&images, pair, options.max_listed, report);
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
    let Some(view) = other.log_view() else {
        return;
    };
    let mut scratch = FsckReport::default();
    if check_log(&view, &other.path, false, &mut scratch).is_err() || count_errors(&scratch) > 0 {
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
        let Some(disk) = image.disk.as_ref() else {
            continue;
        };
        if image.kind != ImageKind::Single || disk.size_blocks() <= RESERVED_BLOCKS {
            continue;
        }
        // Checksums formatted, pair metadata never written: a format cut short (or a
        // replacement formatted by hand) — what `open` rebuilds.
        for addr in 0..RESERVED_BLOCKS {
            match disk.read(addr) {
                Ok(block) if block.is_zero() => {}
                Ok(_) => return Ok(()),
                Err(error) if error.is_bad_block() => return Ok(()),
                Err(error) => return Err(io_error(&image.path)(error)),
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
        if m1.chunk_blocks != m2.chunk_blocks {
            // `open` refuses such a pair: which member's bits cover which blocks is unknown.
            let message = format!(
                "the members record different bitmap chunk sizes (d1 {} blocks, d2 {})",
                m1.chunk_blocks, m2.chunk_blocks
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

/// Whether a member of `size_blocks` checksummed blocks holds everything `meta` places on it:
/// the metadata slots, the data and the bitmap.
fn holds(size_blocks: u64, meta: &ReplicaMeta) -> bool {
    // The data size first: a crafted one near `u64::MAX` would overflow the layout's sums.
    meta.data_size_blocks <= size_blocks && meta.bitmap_layout().member_blocks() <= size_blocks
}

fn check_member_size(image: &OpenedImage, meta: &ReplicaMeta, report: &mut FsckReport) {
    let size_blocks = image.disk.as_ref().map_or(0, |disk| disk.size_blocks());
    if !holds(size_blocks, meta) {
        let needed = if meta.data_size_blocks <= size_blocks {
            meta.bitmap_layout().member_blocks()
        } else {
            // At least this much (the bitmap's size would not fit the sums).
            meta.data_size_blocks.saturating_add(RESERVED_BLOCKS)
        };
        let message = format!(
            "{}: {size_blocks} checksummed blocks, its metadata needs {needed} (truncated image?)",
            image.path.display(),
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

/// Where copies that both verify differ: which is newer, and so which repair keeps.
fn differ_finding(diff: &ReplicaDiff, report: &mut FsckReport) {
    if diff.differing_blocks == 0 {
        return;
    }
    let listed: Vec<String> = diff.first_differences.iter().map(Addr::to_string).collect();
    let mut kept = Vec::new();
    for (count, role) in [
        (diff.d1_newer_blocks, Role::D1),
        (diff.d2_newer_blocks, Role::D2),
    ] {
        if count > 0 {
            kept.push(format!(
                "{role}'s copy is newer (higher write generation) at {count}"
            ));
        }
    }
    if diff.undecided_blocks > 0 {
        kept.push(format!(
            "the generations decide nothing at {}: {}'s copy (recovery's source) is kept",
            diff.undecided_blocks, diff.source
        ));
    }
    let message = format!(
        "replicas differ at {} of {} blocks (first: {}), both copies verifying: {}; repair keeps the newer copy",
        diff.differing_blocks,
        diff.compared_blocks,
        listed.join(", "),
        kept.join("; ")
    );
    report.add(
        Severity::Fixable,
        "replicated",
        "replicated.differ",
        message,
    );
}

/// Where both copies verify but differ in a chunk the next open would not copy: the pair's
/// own recovery would leave them differing, and the pair would serve whichever member it reads.
fn unmarked_finding(
    diff: &ReplicaDiff,
    clean: bool,
    resync: Option<&Resync>,
    report: &mut FsckReport,
) {
    let Some(resync) = resync else {
        return;
    };
    if diff.unmarked_blocks == 0 {
        return;
    }
    let listed: Vec<String> = diff
        .first_unmarked
        .iter()
        .map(|addr| format!("{addr} in chunk {}", resync.layout.chunk_of(*addr)))
        .collect();
    let why = if clean {
        "both members were closed clean, so the next open copies nothing"
    } else {
        "neither member's write-intent bitmap marks their chunks"
    };
    let message = format!(
        "{} differing block(s) in chunks recovery would not copy (first: {}): {why}, and the pair would go on serving two different copies (a write lost with its checksum, or a change behind the pair's back); repair resyncs every block and keeps the newer copy",
        diff.unmarked_blocks,
        listed.join(", ")
    );
    report.add(
        Severity::Error,
        "replicated",
        "replicated.unmarked_difference",
        message,
    );
}

// ---- the write-intent bitmap ----

/// Reads the write-intent bitmap of the members the next open would read (both when they are
/// in sync; else the source's alone, for the report: a rebuild copies every chunk and a member
/// running alone copies none), reports it, and returns the chunks the next open would copy
/// between two members in sync.
fn check_bitmap(
    opened: &[OpenedImage],
    source: Role,
    plan: &MemberPlan,
    options: &CheckOptions,
    report: &mut FsckReport,
) -> Result<Option<Resync>> {
    let member_meta = |image: &OpenedImage| match &image.kind {
        ImageKind::Member { meta, .. } => *meta,
        ImageKind::Single => None,
    };
    let Some((source_image, source_meta)) = opened.iter().find_map(|image| {
        let meta = member_meta(image).filter(|meta| meta.role == source)?;
        Some((image, meta))
    }) else {
        return Ok(None);
    };
    // Every read and every list below is bounded by the bitmap's size: only once the source is
    // known to hold it (a truncated member is reported by `check_member_size`).
    let source_blocks = source_image.disk.as_ref().map_or(0, |d| d.size_blocks());
    if !holds(source_blocks, &source_meta) {
        return Ok(None);
    }
    let layout = source_meta.bitmap_layout();
    let in_sync = matches!(plan, MemberPlan::InSync { .. }) && opened.len() == 2;
    // As `open` reads them: a member it does not read vouches for no block.
    let unread = || MemberBitmap {
        unusable: (0..layout.bitmap_blocks())
            .map(|index| (index, "not read"))
            .collect(),
        ..MemberBitmap::default()
    };
    let mut bitmaps = [unread(), unread()];
    let mut members = Vec::new();
    for image in opened {
        let Some(role) = member_meta(image).map(|meta| meta.role) else {
            continue;
        };
        let Some(disk) = image.disk.as_ref() else {
            continue;
        };
        // A truncated member is reported as such (`check_member_size`) and `open` refuses it:
        // reading past its end would only add noise.
        if (role != source && !in_sync) || !holds(disk.size_blocks(), &source_meta) {
            continue;
        }
        let bitmap = inspect_bitmap(disk, &source_meta).map_err(io_error(&image.path))?;
        members.push(member_bitmap(image, &layout, &bitmap, options.max_listed));
        bitmaps[role.index()] = bitmap;
    }
    let marked = chunks_to_resync(&layout, [&bitmaps[0], &bitmaps[1]]);
    let resync_chunks = match plan {
        MemberPlan::InSync { clean: false } => marked.len() as u64,
        MemberPlan::InSync { clean: true } | MemberPlan::Degraded => 0,
        MemberPlan::Rebuild { .. } => layout.chunks(),
    };
    let bitmap = BitmapReport {
        chunk_blocks: layout.chunk_blocks,
        chunk_kib: layout.chunk_blocks * BLOCK_SIZE as u64 / 1024,
        chunks: layout.chunks(),
        bitmap_blocks: layout.bitmap_blocks(),
        marked_chunks: marked.len() as u64,
        first_marked_chunks: marked.iter().take(options.max_listed).copied().collect(),
        resync_chunks,
        members,
    };
    bitmap_summary(&bitmap, &layout, &marked, source, plan, report);
    bitmap_damage(&bitmap, &bitmaps, in_sync, report);
    report.bitmap = Some(bitmap);
    Ok(match plan {
        MemberPlan::InSync { clean } if in_sync => Some(Resync {
            layout,
            chunks: if *clean { BTreeSet::new() } else { marked },
        }),
        _ => None,
    })
}

fn member_bitmap(
    image: &OpenedImage,
    layout: &BitmapLayout,
    bitmap: &MemberBitmap,
    max_listed: usize,
) -> MemberBitmapReport {
    MemberBitmapReport {
        path: image.path.clone(),
        marked_chunks: bitmap.marked.len() as u64,
        unusable_blocks: bitmap.unusable.len() as u64,
        first_unusable: bitmap
            .unusable
            .iter()
            .take(max_listed)
            .map(|(index, reason)| UnusableBitmapBlock {
                index: *index,
                block: layout.first_bitmap_block() + index,
                reason,
            })
            .collect(),
    }
}

/// What the bitmap says the next open copies, when anything is marked or the pair is dirty.
fn bitmap_summary(
    bitmap: &BitmapReport,
    layout: &BitmapLayout,
    marked: &BTreeSet<u64>,
    source: Role,
    plan: &MemberPlan,
    report: &mut FsckReport,
) {
    let dirty = matches!(plan, MemberPlan::InSync { clean: false });
    if marked.is_empty() && !dirty {
        return;
    }
    let first: Vec<String> = bitmap
        .first_marked_chunks
        .iter()
        .map(u64::to_string)
        .collect();
    let marked_blocks: u64 = marked
        .iter()
        .map(|chunk| {
            let addrs = layout.addrs_of_chunk(*chunk);
            addrs.end - addrs.start
        })
        .sum();
    let what = match plan {
        MemberPlan::InSync { clean: false } => format!(
            "the resync at the next open copies those ({marked_blocks} of {} blocks)",
            layout.data_blocks
        ),
        MemberPlan::InSync { clean: true } => {
            "both members were closed clean: the next open copies nothing".to_string()
        }
        MemberPlan::Rebuild { .. } => format!(
            "{} is rebuilt whole, whatever the bitmap says",
            source.other()
        ),
        MemberPlan::Degraded => format!("the pair runs on {source} alone: nothing is copied"),
    };
    let message = format!(
        "write-intent bitmap: {} of {} chunk(s) of {} blocks ({} KiB) marked{}; {what}",
        bitmap.marked_chunks,
        bitmap.chunks,
        bitmap.chunk_blocks,
        bitmap.chunk_kib,
        if first.is_empty() {
            String::new()
        } else {
            format!(" (first: {})", first.join(", "))
        }
    );
    report.add(Severity::Info, "replicated", "replicated.bitmap", message);
}

/// Bitmap blocks a member cannot use, and what recovery does about them: it reads the other
/// member's copy of each (both receive every version), treats the chunks of a block neither
/// can vouch for as marked, and rewrites the bitmap once it has resynced.
fn bitmap_damage(
    bitmap: &BitmapReport,
    bitmaps: &[MemberBitmap; 2],
    in_sync: bool,
    report: &mut FsckReport,
) {
    for member in &bitmap.members {
        if member.unusable_blocks == 0 {
            continue;
        }
        let vouched = |index: u64| {
            in_sync
                && bitmaps
                    .iter()
                    .any(|bitmap| !bitmap.unusable.contains_key(&index))
        };
        let listed = &member.first_unusable;
        let consequence = if listed.iter().all(|block| vouched(block.index)) {
            "the other member's copies are valid, and recovery reads those"
        } else if in_sync && listed.iter().any(|block| vouched(block.index)) {
            "where the other member's copy is valid recovery reads it; the chunks of a block neither member can use count as marked, and recovery copies them"
        } else {
            "recovery counts their chunks as marked and copies them"
        };
        let message = format!(
            "{}: {} bitmap block(s) unusable ({}): {consequence}; repair rewrites them",
            member.path.display(),
            member.unusable_blocks,
            unusable_text(listed)
        );
        report.add(
            Severity::Fixable,
            "replicated",
            "replicated.bitmap_damaged",
            message,
        );
    }
}

// ---- the log layer ----

/// What a log error means for the check: an operational error (not ours at all, a version we
/// cannot read, an I/O failure) or damage on an image we recognise.
fn log_error(path: &Path, single: bool, error: LogError, report: &mut FsckReport) -> Result<()> {
    let path = path.to_path_buf();
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
        LogError::Disk(source) if source.is_bad_block() => {
            // The log's superblock fails verification (on every copy, on a pair).
            let message = format!("log superblock: {}", one_line(&source.to_string()));
            report.add(Severity::Error, "log", "log.superblock", message);
            Ok(())
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

/// Checks the log in the address space `view` (of the image at `path`, or of a pair):
/// superblock, headers, the chain of records.
fn check_log(view: &dyn Disk, path: &Path, single: bool, report: &mut FsckReport) -> Result<()> {
    if view.size_blocks() == 0 {
        return Err(InspectError::NotAnImage {
            path: path.to_path_buf(),
            reason: "no blocks after the pair metadata".into(),
        });
    }
    let sb = match read_superblock(view) {
        Ok(sb) => sb,
        Err(error) => return log_error(path, single, error, report),
    };
    // The log refuses a header whose positions are out of any plausible range when it decodes
    // it: no second copy of that limit here.
    if let Err(error) = read_headers(view, &sb) {
        return log_error(path, single, error, report);
    }
    let scan = match scan_log(view, false) {
        Ok(scan) => scan,
        Err(error) => return log_error(path, single, error, report),
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
