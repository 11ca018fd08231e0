//! `--repair`: the layers' own recoveries, run on the images — never a patch the layers would
//! not make themselves. The checksums' own (a damaged superblock copy rewritten from the good
//! one), replica recovery (open the pair: resync or rebuild; then an explicit resync, which
//! also catches differences and failing copies on a pair marked clean, and keeps the copy the
//! check called right), then log recovery (replay the chain home, move the tail), then a clean
//! close. A bitmap block still unusable after that (the pair rewrites its bitmap after a resync
//! at open, not when it opens clean) is written as the pair itself encodes it, clear: what the
//! bitmap of a pair closed clean says.

use crate::check::Progress;
use crate::report::{one_line, FsckReport, RepairReport, Severity};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use txdisk_disk::Disk;
use txdisk_integrity::IntegrityDisk;
use txdisk_log::log_recover;
use txdisk_nbd_disk::{nbd_options, Member};
use txdisk_replicated::{inspect_bitmap, inspect_member, MetaState, Phase, ReplicatedDisk};

/// Errors the repair corrects all the same: differences between copies that both verify, in
/// chunks the pair's own recovery would not copy. Crash recovery cannot undo them, but the
/// repair's resync reads every block and keeps the newer copy, as for `replicated.differ`.
const CORRECTED_ERRORS: &[&str] = &["replicated.unmarked_difference"];

/// Repairs what `before` found fixable. Writes nothing if it found uncorrectable errors: the
/// recoveries assume a sound image, and run on a damaged one they could spread the damage (a
/// resync copies d1 over d2 whatever d1 holds).
pub(crate) fn repair(
    images: &[PathBuf],
    before: &FsckReport,
    progress: &mut dyn FnMut(Progress),
) -> RepairReport {
    let mut repair = RepairReport {
        before: before.findings.clone(),
        ..RepairReport::default()
    };
    let errors = before
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error && !CORRECTED_ERRORS.contains(&f.code))
        .count();
    if errors > 0 {
        repair.skipped = Some(format!(
            "{errors} uncorrectable error(s); nothing was written"
        ));
        return repair;
    }
    let outcome = match images {
        [single] if before.members.is_empty() => repair_single(single, &mut repair.actions),
        [d1, d2] => repair_pair(d1, d2, &mut repair.actions, progress),
        _ => {
            repair.skipped =
                Some("repairing a pair needs both members; nothing was written".into());
            return repair;
        }
    };
    if let Err(error) = outcome {
        repair.failed = Some(one_line(&error));
    }
    repair
}

/// One image's checksummed disk, writable: damaged checksum superblock copies rewritten
/// first; with `blank_is_replacement`, a blank file (a new pair member) formatted.
fn open_checked(
    path: &Path,
    blank_is_replacement: bool,
    actions: &mut Vec<String>,
) -> Result<IntegrityDisk<Member>, String> {
    let file = Member::open(path, &nbd_options()).map_err(|e| e.to_string())?;
    let name = path.display();
    if blank_is_replacement && IntegrityDisk::is_blank(&file).map_err(|e| e.to_string())? {
        let disk = IntegrityDisk::format(file).map_err(|e| format!("{name}: {e}"))?;
        actions.push(format!(
            "integrity: formatted the checksums of blank {name} (a replacement member)"
        ));
        return Ok(disk);
    }
    let disk = IntegrityDisk::open(file).map_err(|e| format!("{name}: {e}"))?;
    let damaged = disk.damaged_superblocks();
    if !damaged.is_empty() {
        let rewritten = disk
            .repair_superblocks()
            .map_err(|e| format!("{name}: rewriting a checksum superblock copy: {e}"))?;
        actions.push(format!(
            "integrity: rewrote {rewritten} damaged checksum superblock copy(ies) of {name} from the good one"
        ));
    }
    Ok(disk)
}

fn repair_single(path: &Path, actions: &mut Vec<String>) -> Result<(), String> {
    let disk = open_checked(path, false, actions)?;
    let recovered = log_recover(&disk).map_err(|e| format!("log recovery: {e}"))?;
    actions.push(log_action(&recovered));
    Ok(())
}

fn repair_pair(
    d1: &PathBuf,
    d2: &PathBuf,
    actions: &mut Vec<String>,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), String> {
    let (disk1, disk2) = (
        open_checked(d1, true, actions)?,
        open_checked(d2, true, actions)?,
    );
    let mut forward = |p: txdisk_replicated::Progress| {
        let phase = match p.phase {
            Phase::Resync => "resyncing replicas",
            Phase::Rebuild => "rebuilding a replica",
            Phase::Scrub => "scrubbing replicas",
        };
        progress(Progress {
            phase,
            done_blocks: p.done_blocks,
            total_blocks: p.total_blocks,
        });
    };
    let pair = ReplicatedDisk::open(disk1, disk2, &mut forward)
        .map_err(|e| format!("opening the pair: {e}"))?;
    actions.push("replicated: opened the pair (resync or rebuild as its metadata asks)".into());
    // The resync writes the copy that verifies over one that does not, and the newer of two
    // that verify over the older: what the check called right is what is kept.
    let copied = pair
        .recover(&mut forward)
        .map_err(|e| format!("replica recovery: {e}"))?;
    actions.push(format!(
        "replicated: resynced the members: {} of {} blocks differed or failed verification and were rewritten from the right copy",
        copied.copied_blocks, copied.scanned_blocks
    ));
    let recovered = log_recover(&pair).map_err(|e| format!("log recovery: {e}"))?;
    actions.push(log_action(&recovered));
    pair.close().map_err(|e| format!("closing the pair: {e}"))?;
    actions.push("replicated: closed the pair clean".into());
    for path in [d1, d2] {
        rewrite_unusable_bitmap(path, actions)?;
    }
    Ok(())
}

/// Rewrites, clear, the bitmap blocks of a member of a pair just closed clean that still cannot
/// be used. `open` rewrites the bitmap only after a resync, and the pair writes a block only
/// when a chunk in it is marked or cleared, so a block damaged while the pair was clean would
/// stay damaged. Clear is what the pair's own bitmap says once closed clean: the close synced
/// both members after the resync made them equal, and cleared every bit before it marked them
/// Clean.
fn rewrite_unusable_bitmap(path: &Path, actions: &mut Vec<String>) -> Result<(), String> {
    let name = path.display();
    let disk = open_checked(path, false, actions)?;
    let meta = match inspect_member(&disk) {
        Ok(Some(meta)) if meta.state == MetaState::Clean => meta,
        // Not closed clean after all: the next open resyncs and rewrites the bitmap itself.
        Ok(_) => return Ok(()),
        Err(error) => return Err(format!("{name}: reading its pair metadata: {error}")),
    };
    let layout = meta.bitmap_layout();
    let bitmap =
        inspect_bitmap(&disk, &meta).map_err(|e| format!("{name}: reading its bitmap: {e}"))?;
    if bitmap.unusable.is_empty() {
        return Ok(());
    }
    for index in bitmap.unusable.keys() {
        let block = layout.encode_block(meta.pair_id, *index, &BTreeSet::new());
        disk.write(layout.first_bitmap_block() + index, &block)
            .map_err(|e| format!("{name}: rewriting bitmap block {index}: {e}"))?;
    }
    disk.sync()
        .map_err(|e| format!("{name}: syncing the bitmap: {e}"))?;
    actions.push(format!(
        "replicated: rewrote {} unusable bitmap block(s) of {name}, clear as the closed pair's bitmap is",
        bitmap.unusable.len()
    ));
    Ok(())
}

fn log_action(recovered: &txdisk_log::RecoveryReport) -> String {
    format!(
        "log: replayed {} transaction(s), {} home block(s) written; log ends: {}",
        recovered.replayed.len(),
        recovered.home_blocks_written,
        recovered.stop
    )
}
