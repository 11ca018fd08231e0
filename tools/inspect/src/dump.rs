//! The log dump (`txdisk logdump`), like debugfs's logdump: the superblock, both header slots,
//! then the live log transaction by transaction, and why the chain ends. It prints what the
//! one log parser ([`txdisk_log::tooling::scan_log`]) returns — the same records recovery replays.

use crate::error::{InspectError, Result};
use crate::report::{
    addr_list, header_slot_text, one_line, stop_kind, superblock_text, to_value, RecordSummary,
    SuperblockJson,
};
use crate::view::{open_image, ImageKind};
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use txdisk_disk::{Addr, Block, Disk};
use txdisk_log::tooling::{scan_log, Header, ScanStop, SlotState, Superblock};
use txdisk_log::LogError;

/// What to show.
#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    /// Show at most this many records of the chain.
    pub max_records: Option<usize>,
    /// Show only records that write this home (data-region) address.
    pub block: Option<Addr>,
    /// Add a hex dump of every block of every record shown.
    pub raw: bool,
}

/// One block of a record, as stored in the log.
#[derive(Clone, Debug)]
pub struct RawBlock {
    /// Address in the log's address space.
    pub disk_addr: Addr,
    /// The block's contents.
    pub block: Block,
}

/// A record as the dump shows it.
#[derive(Clone, Debug)]
pub struct DumpRecord {
    /// The record's header fields.
    pub record: RecordSummary,
    /// Addresses (in the log's address space) of its blocks, in order.
    pub first_disk_addr: Addr,
    /// Its blocks as stored, with `--raw` (empty otherwise).
    pub raw: Vec<RawBlock>,
}

/// The log of one image.
#[derive(Clone, Debug)]
pub struct LogDump {
    /// The image file dumped.
    pub image: PathBuf,
    /// Where the log's address space starts in the checksummed disk over the file (2 for a
    /// pair member, after its metadata; 0 otherwise).
    pub offset_blocks: u64,
    /// The log's superblock.
    pub superblock: Superblock,
    /// Both header slots, as read.
    pub slots: [SlotState; 2],
    /// The header in force: the valid slot of the larger generation.
    pub header: Header,
    /// Records in the chain (all of them, before any filter).
    pub chain_records: usize,
    /// The records shown, after the filters of [`DumpOptions`].
    pub records: Vec<DumpRecord>,
    /// Why the chain ends where it does.
    pub stop: ScanStop,
    /// The first block at the stop, raw (with `--raw`).
    pub stop_block: Option<RawBlock>,
    /// Valid records past the end of the chain (never replayed).
    pub beyond_stop: Vec<RecordSummary>,
    /// `Some` when the chain's end cannot be explained by a crash.
    pub corruption: Option<String>,
}

/// Dumps the log of `image` (read-only).
pub fn logdump(image: &Path, options: &DumpOptions) -> Result<LogDump> {
    let opened = open_image(image)?;
    let view = opened.log_view().ok_or_else(|| InspectError::Blank {
        path: image.to_path_buf(),
    })?;
    let unreadable = |error: LogError| match error {
        LogError::Disk(source) => InspectError::Io {
            path: image.to_path_buf(),
            source,
        },
        LogError::UnsupportedVersion { found, supported } => InspectError::UnsupportedVersion {
            path: image.to_path_buf(),
            what: "log",
            found,
            supported,
        },
        LogError::NotAnImage { reason } if opened.kind == ImageKind::Single => {
            InspectError::NotAnImage {
                path: image.to_path_buf(),
                reason,
            }
        }
        other => InspectError::Unreadable {
            path: image.to_path_buf(),
            detail: one_line(&other.to_string()),
        },
    };
    // Reading the headers first gives their own diagnosis (the log refuses positions out of
    // any plausible range when it decodes a header).
    txdisk_log::tooling::read_superblock(&view)
        .and_then(|sb| txdisk_log::tooling::read_headers(&view, &sb))
        .map_err(unreadable)?;
    let scan = scan_log(&view, false).map_err(unreadable)?;
    let sb = scan.superblock;
    let read_raw = |pos: u64| -> Result<RawBlock> {
        let disk_addr = sb.log_addr(pos);
        let block = view.read(disk_addr).map_err(|source| InspectError::Io {
            path: image.to_path_buf(),
            source,
        })?;
        Ok(RawBlock { disk_addr, block })
    };
    let mut records = Vec::new();
    let shown = scan
        .records
        .iter()
        .filter(|r| options.block.map_or(true, |b| r.addrs.contains(&b)));
    for record in shown.take(options.max_records.unwrap_or(usize::MAX)) {
        let mut raw = Vec::new();
        if options.raw {
            for index in 0..record.len_blocks {
                raw.push(read_raw(record.pos + index)?);
            }
        }
        records.push(DumpRecord {
            record: RecordSummary::from(record),
            first_disk_addr: sb.log_addr(record.pos),
            raw,
        });
    }
    let stop_block = if options.raw {
        Some(read_raw(scan.end_pos)?)
    } else {
        None
    };
    Ok(LogDump {
        image: image.to_path_buf(),
        offset_blocks: view.offset_blocks(),
        superblock: sb,
        slots: scan.slots.clone(),
        header: scan.header,
        chain_records: scan.records.len(),
        records,
        stop: scan.stop.clone(),
        stop_block,
        beyond_stop: scan.beyond_stop.iter().map(RecordSummary::from).collect(),
        corruption: scan.corruption(),
    })
}

impl LogDump {
    /// The dump as a human reads it: the headers, each record shown (hex dumps under `--raw`), then
    /// why the chain ends.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Log of {} (log address space at file block {})",
            self.image.display(),
            self.offset_blocks
        );
        let _ = writeln!(out, "superblock: {}", superblock_text(&self.superblock));
        for (index, slot) in self.slots.iter().enumerate() {
            let _ = writeln!(
                out,
                "header slot {} (block {}): {}",
                index + 1,
                index + 1,
                header_slot_text(slot)
            );
        }
        let _ = writeln!(
            out,
            "live log from position {} (block {}), sequence {}; {} record(s) in the chain, {} shown",
            self.header.tail_pos,
            self.superblock.log_addr(self.header.tail_pos),
            self.header.tail_seq,
            self.chain_records,
            self.records.len()
        );
        for shown in &self.records {
            let r = &shown.record;
            let _ = writeln!(
                out,
                "  sequence {} at position {} (block {}): {} block(s), durable through {}, checksum found {:#010x} expected {:#010x}",
                r.seq, r.pos, shown.first_disk_addr, r.len_blocks, r.durable_seq, r.crc, r.crc
            );
            let _ = writeln!(out, "    home blocks: {}", addr_list(&r.addrs, 64));
            for raw in &shown.raw {
                let _ = writeln!(out, "    block {}:", raw.disk_addr);
                out.push_str(&hex_dump(&raw.block, "      "));
            }
        }
        let _ = writeln!(
            out,
            "end of log: {} ({})",
            self.stop,
            stop_kind(&self.stop).1
        );
        if let Some(raw) = &self.stop_block {
            let _ = writeln!(out, "    block {} (at the end of the log):", raw.disk_addr);
            out.push_str(&hex_dump(&raw.block, "      "));
        }
        for r in &self.beyond_stop {
            let _ = writeln!(
                out,
                "  past the end: sequence {} at position {}, durable through {}, home blocks {} (not replayed)",
                r.seq,
                r.pos,
                r.durable_seq,
                addr_list(&r.addrs, 16)
            );
        }
        if let Some(detail) = &self.corruption {
            let _ = writeln!(out, "CORRUPTION: {detail}");
        }
        out
    }

    /// One JSON object: the headers, the records shown (with their raw blocks under
    /// `--raw`), and why the chain ends.
    pub fn to_json(&self) -> Value {
        to_value(&LogDumpJson {
            image: self.image.display().to_string(),
            offset_blocks: self.offset_blocks,
            superblock: SuperblockJson::from(&self.superblock),
            header_slots: self.slots.iter().map(header_slot_text).collect(),
            tail_position: self.header.tail_pos,
            tail_sequence: self.header.tail_seq,
            chain_records: self.chain_records,
            records: self.records.iter().map(DumpRecordJson::from).collect(),
            stop: self.stop.to_string(),
            stop_kind: stop_kind(&self.stop).0,
            stop_block: self.stop_block.as_ref().map(RawBlockJson::from),
            beyond_stop: &self.beyond_stop,
            corruption: &self.corruption,
        })
    }
}

/// [`LogDump`]'s JSON shape.
#[derive(Serialize)]
struct LogDumpJson<'a> {
    image: String,
    offset_blocks: u64,
    superblock: SuperblockJson,
    header_slots: Vec<String>,
    tail_position: u64,
    tail_sequence: u64,
    chain_records: usize,
    records: Vec<DumpRecordJson<'a>>,
    stop: String,
    stop_kind: &'static str,
    stop_block: Option<RawBlockJson>,
    beyond_stop: &'a [RecordSummary],
    corruption: &'a Option<String>,
}

/// A record as the dump's JSON shows it: the summary's keys, where it starts in the log's
/// address space, and its checksum check (every record of the chain passed it).
#[derive(Serialize)]
struct DumpRecordJson<'a> {
    #[serde(flatten)]
    record: &'a RecordSummary,
    first_block: Addr,
    checksum_expected: String,
    checksum_valid: bool,
    /// Present only under `--raw`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    raw: Vec<RawBlockJson>,
}

impl<'a> From<&'a DumpRecord> for DumpRecordJson<'a> {
    fn from(shown: &'a DumpRecord) -> DumpRecordJson<'a> {
        DumpRecordJson {
            record: &shown.record,
            first_block: shown.first_disk_addr,
            checksum_expected: format!("{:#010x}", shown.record.crc),
            checksum_valid: true,
            raw: shown.raw.iter().map(RawBlockJson::from).collect(),
        }
    }
}

/// A raw block as JSON: its address in the log's address space and its bytes in hex.
#[derive(Serialize)]
struct RawBlockJson {
    block: Addr,
    hex: String,
}

impl From<&RawBlock> for RawBlockJson {
    fn from(raw: &RawBlock) -> RawBlockJson {
        let hex: String = raw
            .block
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        RawBlockJson {
            block: raw.disk_addr,
            hex,
        }
    }
}

/// A hex dump, 16 bytes a line with their ASCII, repeated lines collapsed to `*` (as hexdump).
pub fn hex_dump(block: &Block, indent: &str) -> String {
    let bytes = block.as_bytes();
    let mut out = String::new();
    let mut previous: Option<&[u8]> = None;
    let mut starred = false;
    for (index, line) in bytes.chunks(16).enumerate() {
        if previous == Some(line) {
            if !starred {
                let _ = writeln!(out, "{indent}*");
                starred = true;
            }
            continue;
        }
        starred = false;
        previous = Some(line);
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = line
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "{indent}{:04x}  {}  |{ascii}|",
            index * 16,
            hex.join(" ")
        );
    }
    let _ = writeln!(out, "{indent}{:04x}", bytes.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_dump_collapses_repeated_lines() {
        let mut block = Block::zeroed();
        block.as_bytes_mut()[..8].copy_from_slice(b"TXDRECRD");
        let text = hex_dump(&block, "");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("0000  54 58 44 52"), "{text}");
        assert!(lines[0].ends_with("|TXDRECRD........|"), "{text}");
        assert!(lines[1].starts_with("0010  00 00"), "{text}");
        assert_eq!(lines[2], "*");
        assert_eq!(lines[3], "1000");
    }

    #[test]
    fn hex_dump_shows_every_differing_line() {
        let mut block = Block::zeroed();
        for (index, byte) in block.as_bytes_mut().iter_mut().enumerate() {
            *byte = (index / 16) as u8;
        }
        assert_eq!(hex_dump(&block, "  ").lines().count(), 4096 / 16 + 1);
    }
}
