//! `txdisk scrub A.img [B.img]`: every block verified, a bad copy repaired from the good one
//! (`txdisk::scrub`), counts per kind and member, e2fsck's exit codes.

use crate::output;
use clap::Args;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;
use txdisk::replicated::{BlockFault, MemberScrub, Phase, Role};
use txdisk::Scrubbed;
use txdisk_inspect::{EXIT_CLEAN, EXIT_CORRECTED, EXIT_UNCORRECTED};

#[derive(Args, Debug)]
pub struct ScrubArgs {
    /// The image, or the first member (d1) of a pair.
    image: PathBuf,
    /// The second member (d2) of a pair.
    image2: Option<PathBuf>,
}

pub fn run(args: &ScrubArgs, json: bool) -> i32 {
    let images: Vec<PathBuf> = std::iter::once(args.image.clone())
        .chain(args.image2.clone())
        .collect();
    let mut bar = output::Bar::new(json);
    let started = Instant::now();
    let outcome = txdisk::scrub(&images, &mut |p| {
        let phase = match p.phase {
            Phase::Resync => "resyncing replicas",
            Phase::Rebuild => "rebuilding a replica",
            Phase::Scrub => "scrubbing",
        };
        bar.update(phase, p.done_blocks, p.total_blocks)
    });
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    match outcome {
        Ok(scrubbed) => {
            let code = exit_code(&scrubbed);
            if json {
                output::print_json(&ScrubJson::new(&scrubbed, code, seconds));
            } else {
                print!("{}", render_text(&scrubbed, seconds));
            }
            code
        }
        Err(error) => output::fail(json, &format!("scrub: {error}")),
    }
}

/// fsck's codes: 0 nothing wrong, 1 everything wrong repaired, 4 blocks lost (no good copy).
fn exit_code(scrubbed: &Scrubbed) -> i32 {
    if scrubbed.is_clean() {
        EXIT_CLEAN
    } else if scrubbed.all_repaired() {
        EXIT_CORRECTED
    } else {
        EXIT_UNCORRECTED
    }
}

fn names(scrubbed: &Scrubbed) -> String {
    let names: Vec<String> = scrubbed
        .images
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    names.join(" + ")
}

/// The one-line verdict, as fsck's last line.
fn summary(scrubbed: &Scrubbed) -> String {
    let report = &scrubbed.report;
    let verdict = match exit_code(scrubbed) {
        EXIT_CLEAN => "clean".to_string(),
        EXIT_CORRECTED => format!("errors corrected, now clean ({})", repairs(scrubbed)),
        _ => format!(
            "problems left uncorrected: {} block(s) fail verification with no good copy (first: {}); writing a block through the stack makes it good again",
            report.lost_blocks,
            list(&report.first_lost)
        ),
    };
    format!("{}: {verdict}", names(scrubbed))
}

/// What was repaired, in words.
fn repairs(scrubbed: &Scrubbed) -> String {
    let report = &scrubbed.report;
    let mut done = Vec::new();
    if report.repaired_blocks > 0 {
        done.push(format!(
            "{} block copies rewritten from the good one",
            report.repaired_blocks
        ));
    }
    let rewritten: Vec<String> = scrubbed
        .images
        .iter()
        .zip(&report.members)
        .filter(|(_, member)| member.metadata_rewritten)
        .map(|(path, _)| path.display().to_string())
        .collect();
    if !rewritten.is_empty() {
        done.push(format!("metadata of {} rewritten", rewritten.join(" and ")));
    }
    let copies: u64 = scrubbed.superblocks_repaired.iter().sum();
    if copies > 0 {
        done.push(format!("{copies} checksum superblock copy(ies) rewritten"));
    }
    done.join("; ")
}

fn list(addrs: &[u64]) -> String {
    let shown: Vec<String> = addrs.iter().map(u64::to_string).collect();
    shown.join(", ")
}

fn fault_text(addr: u64, fault: Option<BlockFault>) -> String {
    match fault {
        Some(BlockFault::Misdirected { belongs_at }) => {
            format!("{addr} misdirected from {belongs_at}")
        }
        Some(fault) => format!("{addr} {}", fault.name()),
        None => format!("{addr} older"),
    }
}

fn member_line(member: &MemberScrub) -> String {
    let mut line = format!(
        "{} flipped, {} misdirected, {} stale, {} unreadable",
        member.flipped_blocks,
        member.misdirected_blocks,
        member.stale_blocks,
        member.unreadable_blocks
    );
    if member.older_blocks > 0 {
        let _ = write!(
            line,
            ", {} older than the other member's",
            member.older_blocks
        );
    }
    if !member.first_faults.is_empty() {
        let first: Vec<String> = member
            .first_faults
            .iter()
            .map(|(addr, fault)| fault_text(*addr, *fault))
            .collect();
        let _ = write!(line, " (first: {})", first.join(", "));
    }
    line
}

fn render_text(scrubbed: &Scrubbed, seconds: f64) -> String {
    let report = &scrubbed.report;
    let mut out = String::new();
    let what = if scrubbed.replicated {
        "replicated pair"
    } else {
        "single image: nothing to repair from"
    };
    let _ = writeln!(
        out,
        "scrub of {} ({what}): {} blocks scanned in {seconds:.2} s",
        names(scrubbed),
        report.scanned_blocks
    );
    for (index, path) in scrubbed.images.iter().enumerate() {
        let member = &report.members[index];
        let role = if scrubbed.replicated {
            format!(" ({})", Role::from_index(index))
        } else {
            String::new()
        };
        let _ = writeln!(out, "{}{role}: {}", path.display(), member_line(member));
        if !member.scanned && scrubbed.replicated {
            let _ = writeln!(out, "  not scrubbed: the member is not active in the pair");
        }
        for slot in &member.damaged_slots {
            let _ = writeln!(
                out,
                "  metadata slot {slot} damaged: the member's metadata {}",
                if member.metadata_rewritten {
                    "was written again"
                } else {
                    "could not be written again"
                }
            );
        }
        if let Some(copies) = scrubbed.superblocks_repaired.get(index).filter(|n| **n > 0) {
            let _ = writeln!(
                out,
                "  {copies} damaged checksum superblock copy rewritten from the good one"
            );
        }
    }
    let _ = writeln!(
        out,
        "repaired {} block copies, lost {} blocks{}",
        report.repaired_blocks,
        report.lost_blocks,
        if report.first_lost.is_empty() {
            String::new()
        } else {
            format!(" (first: {})", list(&report.first_lost))
        }
    );
    let _ = writeln!(out, "{}", summary(scrubbed));
    out
}

/// `scrub --json`.
#[derive(Serialize)]
struct ScrubJson {
    images: Vec<String>,
    replicated: bool,
    exit_code: i32,
    summary: String,
    seconds: f64,
    scanned_blocks: u64,
    members: Vec<MemberJson>,
    repaired_blocks: u64,
    lost_blocks: u64,
    first_lost: Vec<u64>,
}

#[derive(Serialize)]
struct MemberJson {
    image: String,
    role: Option<String>,
    scanned: bool,
    ok_blocks: u64,
    flipped_blocks: u64,
    misdirected_blocks: u64,
    stale_blocks: u64,
    unreadable_blocks: u64,
    older_blocks: u64,
    first_faults: Vec<FaultJson>,
    damaged_slots: Vec<u64>,
    metadata_rewritten: bool,
    superblocks_repaired: u64,
}

#[derive(Serialize)]
struct FaultJson {
    address: u64,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    belongs_at: Option<u64>,
}

impl ScrubJson {
    fn new(scrubbed: &Scrubbed, exit_code: i32, seconds: f64) -> ScrubJson {
        let report = &scrubbed.report;
        let members = scrubbed
            .images
            .iter()
            .enumerate()
            .map(|(index, path)| {
                let member = &report.members[index];
                MemberJson {
                    image: path.display().to_string(),
                    role: scrubbed
                        .replicated
                        .then(|| Role::from_index(index).to_string()),
                    scanned: member.scanned,
                    ok_blocks: member.ok_blocks,
                    flipped_blocks: member.flipped_blocks,
                    misdirected_blocks: member.misdirected_blocks,
                    stale_blocks: member.stale_blocks,
                    unreadable_blocks: member.unreadable_blocks,
                    older_blocks: member.older_blocks,
                    first_faults: member
                        .first_faults
                        .iter()
                        .map(|(address, fault)| FaultJson {
                            address: *address,
                            kind: fault.map_or("older", BlockFault::name),
                            belongs_at: match fault {
                                Some(BlockFault::Misdirected { belongs_at }) => Some(*belongs_at),
                                _ => None,
                            },
                        })
                        .collect(),
                    damaged_slots: member.damaged_slots.clone(),
                    metadata_rewritten: member.metadata_rewritten,
                    superblocks_repaired: scrubbed
                        .superblocks_repaired
                        .get(index)
                        .copied()
                        .unwrap_or(0),
                }
            })
            .collect();
        ScrubJson {
            images: scrubbed
                .images
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            replicated: scrubbed.replicated,
            exit_code,
            summary: summary(scrubbed),
            seconds,
            scanned_blocks: report.scanned_blocks,
            members,
            repaired_blocks: report.repaired_blocks,
            lost_blocks: report.lost_blocks,
            first_lost: report.first_lost.clone(),
        }
    }
}
