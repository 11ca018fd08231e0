//! The result of a check: structured findings, the e2fsck exit code they map to, a one-line
//! diagnosis, a text rendering and JSON.

use serde::{Serialize, Serializer};
use serde_json::Value;
use std::fmt::{Display, Write as _};
use std::path::PathBuf;
use txdisk_disk::Addr;
use txdisk_log::tooling::{Header, ScanStop, ScannedRecord, SlotState, Superblock};
use txdisk_replicated::{BlockFault, MetaState, ReplicaMeta, Role, Slot};

// e2fsck's exit codes, which `txdisk fsck` keeps.

/// e2fsck's 0: nothing to correct.
pub const EXIT_CLEAN: i32 = 0;
/// e2fsck's 1: errors were found and corrected.
pub const EXIT_CORRECTED: i32 = 1;
/// e2fsck's 4: errors were left uncorrected.
pub const EXIT_UNCORRECTED: i32 = 4;
/// e2fsck's 8: an operational error, nothing was checked.
pub const EXIT_OPERATIONAL: i32 = 8;

/// How bad a finding is. Serializes as its [`Severity::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing, nothing to do (a torn tail a crash left, which recovery discards).
    Info,
    /// What a crash leaves and recovery repairs: transactions to replay, replicas to resync.
    /// `--repair` fixes it.
    Fixable,
    /// Damage recovery cannot undo: a corrupt superblock, a broken chain of acknowledged
    /// transactions, inconsistent pair metadata, replicas that differ where their write-intent
    /// bitmap says they are equal.
    Error,
}

impl Severity {
    /// The severity's stable name, as the text and the JSON show it.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Fixable => "fixable",
            Severity::Error => "error",
        }
    }
}

/// One thing the check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// The layer whose invariant or state it is about: "disk", "replicated", "log".
    pub layer: &'static str,
    /// A stable, machine-readable name (`log.recovery_needed`, `replicated.differ`, ...).
    pub code: &'static str,
    /// What was found, in words.
    pub message: String,
}

impl Finding {
    /// A finding; `code` is its stable name, `layer` the layer it is about.
    pub fn new(
        severity: Severity,
        layer: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            layer,
            code,
            message: message.into(),
        }
    }
}

/// A transaction record of the log, without its data. Its JSON spells the names out and
/// shows the checksum in hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordSummary {
    #[serde(rename = "sequence")]
    /// The record's sequence number.
    pub seq: u64,
    /// Absolute log position of its first block.
    #[serde(rename = "position")]
    pub pos: u64,
    #[serde(rename = "blocks")]
    /// Blocks the record occupies in the log.
    pub len_blocks: u64,
    /// Every record through this sequence was durable when this one was written.
    #[serde(rename = "durable_sequence")]
    pub durable_seq: u64,
    #[serde(rename = "checksum", serialize_with = "hex32")]
    /// The checksum the record carries (and was verified against).
    pub crc: u32,
    /// Home addresses (data-region addresses), in record order.
    #[serde(rename = "home_addresses")]
    pub addrs: Vec<Addr>,
}

impl From<&ScannedRecord> for RecordSummary {
    fn from(record: &ScannedRecord) -> RecordSummary {
        RecordSummary {
            seq: record.seq,
            pos: record.pos,
            len_blocks: record.len_blocks,
            durable_seq: record.durable_seq,
            crc: record.crc,
            addrs: record.addrs.clone(),
        }
    }
}

/// What the log scan found.
#[derive(Clone, Debug)]
pub struct LogReport {
    /// The log's superblock.
    pub superblock: Superblock,
    /// Both header slots, as read.
    pub slots: [SlotState; 2],
    /// The header in force: the valid slot of the larger generation.
    pub header: Header,
    /// The valid chain: what recovery would replay, in order.
    pub records: Vec<RecordSummary>,
    /// Absolute log position just past the chain's last record.
    pub end_pos: u64,
    /// The sequence number the next record would carry.
    pub next_seq: u64,
    /// Why the chain ends where it does.
    pub stop: ScanStop,
    /// Valid records past the end of the chain (never replayed).
    pub beyond_stop: Vec<RecordSummary>,
    /// `Some` when the chain's end cannot be explained by a crash.
    pub corruption: Option<String>,
    /// Distinct home blocks the replay would write.
    pub replay_home_blocks: usize,
}

/// One pair member's metadata as found.
#[derive(Clone, Debug)]
pub struct MemberReport {
    /// The member's image file.
    pub path: PathBuf,
    /// Both metadata slots, as read.
    pub slots: [Slot; 2],
    /// The newest valid slot.
    pub meta: Option<ReplicaMeta>,
}

/// The comparison of the two replicas' data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaDiff {
    /// Data blocks compared.
    pub compared_blocks: u64,
    /// Of those, blocks whose copies both verify but differ. (A copy that fails verification
    /// is counted in its member's [`VerifyReport`], and the other copy is the right one.)
    pub differing_blocks: u64,
    /// The first differing pair addresses (at most `CheckOptions::max_listed`).
    pub first_differences: Vec<Addr>,
    /// Differing blocks where d1's copy has the higher write generation: the newer, kept.
    pub d1_newer_blocks: u64,
    /// Differing blocks where d2's copy has the higher write generation: the newer, kept.
    pub d2_newer_blocks: u64,
    /// Differing blocks whose generations decide nothing (equal, or none kept): the
    /// source's copy is kept.
    pub undecided_blocks: u64,
    /// The member recovery would copy from.
    #[serde(serialize_with = "display")]
    pub source: Role,
    /// Of the differing blocks, those in chunks the next open would not copy (their bit clear
    /// on both members and no unusable bitmap block covering them, or both members closed
    /// clean): differences the write-intent bitmap does not cover, which crash recovery would
    /// leave in place.
    pub unmarked_blocks: u64,
    /// The first of those pair addresses (at most `CheckOptions::max_listed`).
    pub first_unmarked: Vec<Addr>,
}

/// The write-intent bitmap of a pair, as the check read it from the members recovery would
/// resync (the source alone when the other is to be rebuilt or is missing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BitmapReport {
    /// Data blocks per chunk (per bit).
    pub chunk_blocks: u64,
    /// The same, in KiB.
    pub chunk_kib: u64,
    /// Chunks of the pair (the last may be partial).
    pub chunks: u64,
    /// Bitmap blocks on each member.
    pub bitmap_blocks: u64,
    /// Chunks a resync after a crash would copy: those marked on either member, and every
    /// chunk of a bitmap block neither member can vouch for.
    pub marked_chunks: u64,
    /// The first of those (at most `CheckOptions::max_listed`).
    pub first_marked_chunks: Vec<u64>,
    /// Chunks the next open copies: the marked ones if either member says Dirty; none if both
    /// were closed clean or one member runs alone; every chunk if a member is rebuilt.
    pub resync_chunks: u64,
    /// Each member's bitmap as read, in the order given.
    pub members: Vec<MemberBitmapReport>,
}

/// One member's bitmap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberBitmapReport {
    /// The member's image.
    #[serde(serialize_with = "display_path")]
    pub path: PathBuf,
    /// Chunks its valid bitmap blocks mark.
    pub marked_chunks: u64,
    /// Bitmap blocks that could not be used (unreadable, blank or invalid).
    pub unusable_blocks: u64,
    /// The first of those, with the reason (at most `CheckOptions::max_listed`).
    pub first_unusable: Vec<UnusableBitmapBlock>,
}

/// A bitmap block that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnusableBitmapBlock {
    /// Its index in the bitmap (block 0 records chunks from 0).
    pub index: u64,
    /// Its block on the member's checksummed disk.
    pub block: u64,
    /// Why it cannot be used ("bad checksum", "unreadable", "blank (never written)", ...).
    pub reason: &'static str,
}

/// One block that failed verification: where (an address of the log's address space) and what
/// was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockFailure {
    /// The address.
    pub addr: Addr,
    /// What its verification (or the device) said.
    pub fault: BlockFault,
}

impl Serialize for BlockFailure {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let belongs_at = match self.fault {
            BlockFault::Misdirected { belongs_at } => Some(belongs_at),
            _ => None,
        };
        let mut map = serializer.serialize_map(Some(if belongs_at.is_some() { 3 } else { 2 }))?;
        map.serialize_entry("address", &self.addr)?;
        map.serialize_entry("kind", self.fault.name())?;
        if let Some(belongs_at) = belongs_at {
            map.serialize_entry("belongs_at", &belongs_at)?;
        }
        map.end()
    }
}

/// What verifying every block of one image (its log's address space) found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The image.
    #[serde(serialize_with = "display_path")]
    pub path: PathBuf,
    /// Blocks read and verified.
    pub verified_blocks: u64,
    /// Blocks whose bytes match no version of the block.
    pub flipped_blocks: u64,
    /// Blocks holding another block's contents (a misdirected write).
    pub misdirected_blocks: u64,
    /// Blocks holding their previous contents (a lost write).
    pub stale_blocks: u64,
    /// Blocks the device could not read.
    pub unreadable_blocks: u64,
    /// Of the failing blocks, those whose copy on the other member verifies: repair writes it
    /// back.
    pub repairable_blocks: u64,
    /// The first failing blocks (at most `CheckOptions::max_listed`).
    pub first_failures: Vec<BlockFailure>,
}

impl VerifyReport {
    /// Blocks that failed verification or could not be read.
    pub fn failing_blocks(&self) -> u64 {
        self.flipped_blocks + self.misdirected_blocks + self.stale_blocks + self.unreadable_blocks
    }

    /// Counts one failure, listing it if fewer than `max_listed` are.
    pub(crate) fn count(&mut self, failure: BlockFailure, max_listed: usize) {
        match failure.fault {
            BlockFault::Flipped => self.flipped_blocks += 1,
            BlockFault::Misdirected { .. } => self.misdirected_blocks += 1,
            BlockFault::Stale => self.stale_blocks += 1,
            BlockFault::Unreadable => self.unreadable_blocks += 1,
        }
        if self.first_failures.len() < max_listed {
            self.first_failures.push(failure);
        }
    }

    /// "2 flipped, 1 misdirected" — the kinds found, in words (empty if none).
    pub fn kinds_text(&self) -> String {
        let kinds = [
            (self.flipped_blocks, "flipped"),
            (self.misdirected_blocks, "misdirected"),
            (self.stale_blocks, "stale"),
            (self.unreadable_blocks, "unreadable"),
        ];
        let parts: Vec<String> = kinds
            .iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, name)| format!("{count} {name}"))
            .collect();
        parts.join(", ")
    }
}

/// "10 flipped, 12 misdirected from 20, 14 stale": failures as a list.
pub(crate) fn failures_text(failures: &[BlockFailure]) -> String {
    let listed: Vec<String> = failures
        .iter()
        .map(|failure| match failure.fault {
            BlockFault::Misdirected { belongs_at } => {
                format!("{} misdirected from {belongs_at}", failure.addr)
            }
            fault => format!("{} {}", failure.addr, fault.name()),
        })
        .collect();
    listed.join(", ")
}

fn display_path<S: Serializer>(path: &std::path::Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&path.display())
}

/// What `--repair` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairReport {
    /// The findings of the check before the repair.
    pub before: Vec<Finding>,
    /// What was done, in order, in plain words.
    pub actions: Vec<String>,
    /// Why nothing was written (uncorrectable errors, a missing member), if so.
    pub skipped: Option<String>,
    /// The repair started and failed.
    pub failed: Option<String>,
}

/// Everything a check found. [`FsckReport::exit_code`] maps it to e2fsck's exit codes.
#[derive(Clone, Debug, Default)]
pub struct FsckReport {
    /// The images checked, in the order given.
    pub images: Vec<PathBuf>,
    /// The pair's id when the images are pair members.
    pub pair_id: Option<u64>,
    /// Each pair member's metadata (empty for a single image).
    pub members: Vec<MemberReport>,
    /// The log scan, when the log could be read.
    pub log: Option<LogReport>,
    /// The replicas compared, for a pair whose members could both be read.
    pub replicas: Option<ReplicaDiff>,
    /// The write-intent bitmap, for a pair whose source member could be chosen.
    pub bitmap: Option<BitmapReport>,
    /// Every block of each image verified against its checksum, in the order given (an image
    /// that could not be read, or a member to be rebuilt, is not).
    pub verification: Vec<VerifyReport>,
    /// Everything found, in the order found.
    pub findings: Vec<Finding>,
    /// What `--repair` did, when asked for.
    pub repair: Option<RepairReport>,
}

impl FsckReport {
    pub(crate) fn add(
        &mut self,
        severity: Severity,
        layer: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) {
        self.findings
            .push(Finding::new(severity, layer, code, message));
    }

    /// The worst severity found, `None` if nothing at all.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// True when no finding needs action (infos only).
    pub fn is_clean(&self) -> bool {
        self.worst().map_or(true, |s| s == Severity::Info)
    }

    /// e2fsck's convention: 0 clean; 1 errors corrected (a repair ran and the image is now
    /// clean); 4 errors left uncorrected (including recovery that a read-only check did not
    /// run). Operational errors (8) are [`crate::InspectError`]s, never a report.
    pub fn exit_code(&self) -> i32 {
        if !self.is_clean() {
            return EXIT_UNCORRECTED;
        }
        match &self.repair {
            // A repair that failed part-way is not reported as a success, whatever it left.
            Some(repair) if repair.failed.is_some() => EXIT_UNCORRECTED,
            Some(repair) if repair.skipped.is_none() => EXIT_CORRECTED,
            _ => EXIT_CLEAN,
        }
    }

    /// A one-line diagnosis: the images, the verdict, and the most important findings.
    pub fn summary(&self) -> String {
        let names: Vec<String> = self
            .images
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let names = names.join(" + ");
        let verdict = match self.exit_code() {
            EXIT_CLEAN => "clean".to_string(),
            EXIT_CORRECTED => "errors corrected, now clean".to_string(),
            _ if self.repair.as_ref().is_some_and(|r| r.failed.is_some()) => {
                "repair failed".to_string()
            }
            _ => "problems left uncorrected".to_string(),
        };
        // What is wrong now; after a successful repair, what was wrong before it.
        let findings = match &self.repair {
            Some(repair) if self.exit_code() == EXIT_CORRECTED => &repair.before,
            _ => &self.findings,
        };
        let mut worst: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.severity > Severity::Info)
            .collect();
        // The worst first; among fixable findings, pending transactions say the most.
        worst.sort_by_key(|f| {
            (
                std::cmp::Reverse(f.severity),
                f.code != "log.recovery_needed",
            )
        });
        let mut line = format!("{names}: {verdict}");
        if let Some(first) = worst.first() {
            let more = match worst.len() {
                1 => String::new(),
                count => format!(" (and {} more)", count - 1),
            };
            match self.exit_code() {
                EXIT_CORRECTED => write!(line, " (was: {}{more})", first.message),
                _ => write!(line, ": {}{more}", first.message),
            }
            .unwrap_or_default();
        }
        one_line(&line)
    }

    /// The report as a human reads it: what was checked, every finding, the verdict.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        render_members(self, &mut out);
        if let Some(bitmap) = &self.bitmap {
            render_bitmap(bitmap, &mut out);
        }
        if let Some(log) = &self.log {
            render_log(log, &mut out);
        }
        for verified in &self.verification {
            let failing = verified.failing_blocks();
            let detail = if failing == 0 {
                "all verify".to_string()
            } else {
                format!(
                    "{failing} fail ({}; first: {})",
                    verified.kinds_text(),
                    failures_text(&verified.first_failures)
                )
            };
            let _ = writeln!(
                out,
                "checksums: {}: {} blocks verified, {detail}",
                verified.path.display(),
                verified.verified_blocks
            );
        }
        if let Some(diff) = &self.replicas {
            let listed: Vec<String> = diff.first_differences.iter().map(u64::to_string).collect();
            let unmarked = if diff.unmarked_blocks == 0 {
                String::new()
            } else {
                let first: Vec<String> = diff.first_unmarked.iter().map(u64::to_string).collect();
                format!(
                    "; {} in chunks recovery would not copy (first: {})",
                    diff.unmarked_blocks,
                    first.join(", ")
                )
            };
            let _ = writeln!(
                out,
                "replicas: {} of {} data blocks differ{}{unmarked}",
                diff.differing_blocks,
                diff.compared_blocks,
                if listed.is_empty() {
                    String::new()
                } else {
                    format!(" (first: {})", listed.join(", "))
                }
            );
        }
        if let Some(repair) = &self.repair {
            render_repair(repair, &mut out);
        }
        for finding in &self.findings {
            let _ = writeln!(
                out,
                "{:<7} {}: {}",
                finding.severity.name(),
                finding.layer,
                finding.message
            );
        }
        let _ = writeln!(out, "{}", self.summary());
        out
    }

    /// One JSON object: the images, `exit_code`, `summary`, and every part of the report.
    pub fn to_json(&self) -> Value {
        to_value(&FsckJson {
            images: self
                .images
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            exit_code: self.exit_code(),
            summary: self.summary(),
            pair_id: self.pair_id.map(|id| format!("{id:016x}")),
            members: self.members.iter().map(MemberJson::from).collect(),
            log: self.log.as_ref().map(LogJson::from),
            replicas: self.replicas.as_ref(),
            bitmap: self.bitmap.as_ref(),
            verification: &self.verification,
            findings: &self.findings,
            repair: self.repair.as_ref(),
        })
    }
}

/// [`FsckReport`]'s JSON shape: paths as strings, the pair id in hex, and the verdict.
#[derive(Serialize)]
struct FsckJson<'a> {
    images: Vec<String>,
    exit_code: i32,
    summary: String,
    pair_id: Option<String>,
    members: Vec<MemberJson>,
    log: Option<LogJson<'a>>,
    replicas: Option<&'a ReplicaDiff>,
    bitmap: Option<&'a BitmapReport>,
    verification: &'a [VerifyReport],
    findings: &'a [Finding],
    repair: Option<&'a RepairReport>,
}

/// A pair member as JSON: its slots in words, and the newest metadata's fields (`null`
/// without valid metadata).
#[derive(Serialize)]
struct MemberJson {
    path: String,
    slots: Vec<String>,
    role: Option<String>,
    state: Option<&'static str>,
    events: Option<u64>,
    data_blocks: Option<u64>,
}

impl From<&MemberReport> for MemberJson {
    fn from(member: &MemberReport) -> MemberJson {
        MemberJson {
            path: member.path.display().to_string(),
            slots: member.slots.iter().map(slot_text).collect(),
            role: member.meta.map(|m| m.role.to_string()),
            state: member.meta.map(|m| state_text(m.state)),
            events: member.meta.map(|m| m.events),
            data_blocks: member.meta.map(|m| m.data_size_blocks),
        }
    }
}

/// The log superblock as JSON, its salt in hex.
#[derive(Serialize)]
pub(crate) struct SuperblockJson {
    version: u32,
    size_blocks: u64,
    log_start: Addr,
    log_blocks: u64,
    data_start: Addr,
    data_blocks: u64,
    salt: String,
}

impl From<&Superblock> for SuperblockJson {
    fn from(sb: &Superblock) -> SuperblockJson {
        SuperblockJson {
            version: sb.version,
            size_blocks: sb.size_blocks,
            log_start: sb.log_start,
            log_blocks: sb.log_blocks,
            data_start: sb.data_start,
            data_blocks: sb.data_blocks,
            salt: format!("{:#018x}", sb.salt),
        }
    }
}

/// [`LogReport`]'s JSON shape: header slots and the stop in words, positions spelled out.
#[derive(Serialize)]
struct LogJson<'a> {
    superblock: SuperblockJson,
    header_slots: Vec<String>,
    tail_position: u64,
    tail_sequence: u64,
    replay: &'a [RecordSummary],
    replay_home_blocks: usize,
    end_position: u64,
    next_sequence: u64,
    stop: String,
    stop_kind: &'static str,
    beyond_stop: &'a [RecordSummary],
    corruption: &'a Option<String>,
}

impl<'a> From<&'a LogReport> for LogJson<'a> {
    fn from(log: &'a LogReport) -> LogJson<'a> {
        LogJson {
            superblock: SuperblockJson::from(&log.superblock),
            header_slots: log.slots.iter().map(header_slot_text).collect(),
            tail_position: log.header.tail_pos,
            tail_sequence: log.header.tail_seq,
            replay: &log.records,
            replay_home_blocks: log.replay_home_blocks,
            end_position: log.end_pos,
            next_sequence: log.next_seq,
            stop: log.stop.to_string(),
            stop_kind: stop_kind(&log.stop).0,
            beyond_stop: &log.beyond_stop,
            corruption: &log.corruption,
        }
    }
}

/// A derived report as a JSON value, whose map keeps its keys sorted as the reports always
/// printed them.
pub(crate) fn to_value(report: &impl Serialize) -> Value {
    // The reports hold strings, numbers, options and lists under string keys: nothing that
    // serde_json's conversion can refuse (json! interpolation unwraps the same conversion).
    serde_json::to_value(report).expect("a derived report converts to a JSON value")
}

/// Serializes a checksum as `0x` and eight hex digits, as the text rendering shows it.
pub(crate) fn hex32<S: Serializer>(value: &u32, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("{value:#010x}"))
}

/// Serializes a value as its `Display` text (for layer types that do not derive `Serialize`).
fn display<T: Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Collapses a message onto one line (error chains may carry newlines).
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn slot_text(slot: &Slot) -> String {
    match slot {
        Slot::Valid(meta) => meta_text(meta),
        Slot::Blank => "blank".into(),
        Slot::Foreign => "not pair metadata".into(),
        Slot::BadVersion { found } => format!("format version {found} (unsupported)"),
        Slot::Corrupt {
            expected_crc,
            found_crc,
        } => {
            format!("corrupt (checksum expected {expected_crc:#010x}, found {found_crc:#010x}, or a field out of range)")
        }
        Slot::Unreadable => "unreadable (it fails verification, or a bad sector)".into(),
    }
}

pub(crate) fn state_text(state: MetaState) -> &'static str {
    match state {
        MetaState::Clean => "clean",
        MetaState::Dirty => "dirty",
        MetaState::Rebuilding => "rebuilding",
    }
}

fn meta_text(meta: &ReplicaMeta) -> String {
    format!(
        "member {} of pair {:016x}, {}, seq {}, events {}, {} data blocks{}",
        meta.role,
        meta.pair_id,
        state_text(meta.state),
        meta.seq,
        meta.events,
        meta.data_size_blocks,
        if meta.peer_failed {
            ", ran without its peer"
        } else {
            ""
        }
    )
}

fn render_members(report: &FsckReport, out: &mut String) {
    for member in &report.members {
        let _ = writeln!(out, "{}:", member.path.display());
        for (index, slot) in member.slots.iter().enumerate() {
            let _ = writeln!(out, "  metadata slot {index}: {}", slot_text(slot));
        }
    }
}

fn render_bitmap(bitmap: &BitmapReport, out: &mut String) {
    let first: Vec<String> = bitmap
        .first_marked_chunks
        .iter()
        .map(u64::to_string)
        .collect();
    let _ = writeln!(
        out,
        "bitmap: {} chunk(s) of {} blocks ({} KiB) in {} block(s) per member; {} marked{}; the next open copies {}",
        bitmap.chunks,
        bitmap.chunk_blocks,
        bitmap.chunk_kib,
        bitmap.bitmap_blocks,
        bitmap.marked_chunks,
        if first.is_empty() {
            String::new()
        } else {
            format!(" (first: {})", first.join(", "))
        },
        bitmap.resync_chunks
    );
    for member in &bitmap.members {
        let unusable = if member.unusable_blocks == 0 {
            String::new()
        } else {
            format!(
                "; {} block(s) unusable ({})",
                member.unusable_blocks,
                unusable_text(&member.first_unusable)
            )
        };
        let _ = writeln!(
            out,
            "bitmap: {}: marks {} chunk(s){unusable}",
            member.path.display(),
            member.marked_chunks
        );
    }
}

/// "block 0: bad checksum, block 3: unreadable": unusable bitmap blocks as a list.
pub(crate) fn unusable_text(blocks: &[UnusableBitmapBlock]) -> String {
    let listed: Vec<String> = blocks
        .iter()
        .map(|block| format!("block {}: {}", block.index, block.reason))
        .collect();
    listed.join(", ")
}

pub(crate) fn superblock_text(sb: &Superblock) -> String {
    format!(
        "version {}, {} blocks, log blocks {}..{} ({} blocks), data blocks {}..{} ({} blocks), salt {:#018x}",
        sb.version,
        sb.size_blocks,
        sb.log_start,
        sb.log_start + sb.log_blocks,
        sb.log_blocks,
        sb.data_start,
        sb.data_start + sb.data_blocks,
        sb.data_blocks,
        sb.salt
    )
}

pub(crate) fn header_slot_text(slot: &SlotState) -> String {
    match slot {
        SlotState::Valid(h) => format!(
            "generation {}, tail position {}, tail sequence {}",
            h.generation, h.tail_pos, h.tail_seq
        ),
        SlotState::Invalid(reason) => format!("invalid ({reason})"),
    }
}

fn render_log(log: &LogReport, out: &mut String) {
    let _ = writeln!(out, "log superblock: {}", superblock_text(&log.superblock));
    for (index, slot) in log.slots.iter().enumerate() {
        let _ = writeln!(
            out,
            "log header slot {}: {}",
            index + 1,
            header_slot_text(slot)
        );
    }
    let _ = writeln!(
        out,
        "log: {} transaction(s) to replay from position {}",
        log.records.len(),
        log.header.tail_pos
    );
    for record in &log.records {
        let _ = writeln!(
            out,
            "  sequence {} at position {}: {} block(s), home {}, checksum {:#010x} valid",
            record.seq,
            record.pos,
            record.len_blocks,
            addr_list(&record.addrs, 8),
            record.crc
        );
    }
    let _ = writeln!(out, "log ends: {} ({})", log.stop, stop_kind(&log.stop).1);
    for record in &log.beyond_stop {
        let _ = writeln!(
            out,
            "  past the end: sequence {} at position {} (durable through {}), not replayed",
            record.seq, record.pos, record.durable_seq
        );
    }
}

fn render_repair(repair: &RepairReport, out: &mut String) {
    if let Some(reason) = &repair.skipped {
        let _ = writeln!(out, "repair: skipped: {reason}");
    }
    for action in &repair.actions {
        let _ = writeln!(out, "repair: {action}");
    }
    if let Some(error) = &repair.failed {
        let _ = writeln!(out, "repair: failed: {error}");
    }
}

/// Up to `max` addresses, then a count of the rest.
pub(crate) fn addr_list(addrs: &[Addr], max: usize) -> String {
    let shown: Vec<String> = addrs.iter().take(max).map(u64::to_string).collect();
    let mut text = shown.join(" ");
    if addrs.len() > max {
        let _ = write!(text, " (+{} more)", addrs.len() - max);
    }
    text
}

/// What the block where the chain ends holds: a short name and a plain explanation.
pub fn stop_kind(stop: &ScanStop) -> (&'static str, &'static str) {
    match stop {
        ScanStop::NotARecord { .. } => ("unused", "no record there: the log is empty from here"),
        ScanStop::WrongSequence {
            expected_seq,
            found_seq,
            ..
        } if found_seq < expected_seq => {
            ("stale", "a record of an earlier lap, installed long ago")
        }
        ScanStop::WrongSequence { .. } => (
            "ahead",
            "a record numbered past the header's: not part of this log",
        ),
        ScanStop::ChecksumMismatch { .. } => ("torn", "its write never completed"),
        ScanStop::TooLong { .. } => ("malformed", "it claims more blocks than the log has"),
        ScanStop::BadAddress { .. } => {
            ("corrupt", "a checksummed record with an impossible address")
        }
        ScanStop::LogFull { .. } => ("full", "the chain fills the whole log"),
    }
}
