//! `--repair`: the layers' own recoveries, run on the images — never a patch the layers would
//! not make themselves. Replica recovery (open the pair: resync or rebuild; then an explicit
//! resync, which also catches differences on a pair marked clean), then log recovery (replay
//! the chain home, move the tail), then a clean close.

use crate::check::Progress;
use crate::report::{one_line, FsckReport, RepairReport, Severity};
use std::path::PathBuf;
use txdisk_disk::FileDisk;
use txdisk_log::log_recover;
use txdisk_replicated::{Phase, ReplicatedDisk};

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
        .filter(|f| f.severity == Severity::Error)
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

fn repair_single(path: &PathBuf, actions: &mut Vec<String>) -> Result<(), String> {
    let disk = FileDisk::open(path).map_err(|e| e.to_string())?;
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
    let open = |path: &PathBuf| FileDisk::open(path).map_err(|e| e.to_string());
    let (disk1, disk2) = (open(d1)?, open(d2)?);
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
    let copied = pair
        .recover(&mut forward)
        .map_err(|e| format!("replica recovery: {e}"))?;
    actions.push(format!(
        "replicated: resynced d1 -> d2: {} of {} blocks differed and were copied",
        copied.copied_blocks, copied.scanned_blocks
    ));
    let recovered = log_recover(&pair).map_err(|e| format!("log recovery: {e}"))?;
    actions.push(log_action(&recovered));
    pair.close().map_err(|e| format!("closing the pair: {e}"))?;
    actions.push("replicated: closed the pair clean".into());
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
