//! The one log parser: recovery replays what it returns, the inspector prints it.
//!
//! A scan reads the superblock, picks the newest valid header, and follows the chain of records
//! from the header's tail: the record at each position must carry the next sequence number, fit
//! in the log, name addresses inside the data region, and match its salted checksum. The first
//! record that fails ends the chain. Every loop is bounded by the log's size.

use crate::error::{LogError, Result};
use crate::format::{
    decode_record_addrs, decode_record_head, record_crc, Header, RecordHead, Superblock,
    HEADER_SLOTS, SUPERBLOCK_ADDR,
};
use std::fmt;
use txdisk_disk::{Addr, Block, Disk, DiskError};

/// A record of the live log, as found on disk.
#[derive(Clone, Debug)]
pub struct ScannedRecord {
    /// Its sequence number.
    pub seq: u64,
    /// Absolute log position of its first descriptor block.
    pub pos: u64,
    /// Blocks it occupies: descriptors, then data.
    pub len_blocks: u64,
    /// The highest sequence number durable when it was written.
    pub durable_seq: u64,
    /// Its salted checksum, as stored (and matched).
    pub crc: u32,
    /// The home addresses of its data blocks.
    pub addrs: Vec<Addr>,
    /// The data blocks, in the order of `addrs` (empty when scanned without data).
    pub data: Vec<Block>,
}

/// What a header slot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// A header that decodes, checksum matching, in the slot its generation belongs in.
    Valid(Header),
    /// Why the slot holds no valid header.
    Invalid(String),
}

/// Why the chain of records ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// The block at `pos` is not a record head at all (stale data, zeros, a torn descriptor).
    NotARecord {
        /// Where the chain stopped.
        pos: u64,
        /// The sequence number the record there should carry.
        expected_seq: u64,
        /// Why the block is not a record head.
        reason: String,
    },
    /// A record head with another sequence number: a record from an earlier lap, or a torn tail.
    WrongSequence {
        /// Where the chain stopped.
        pos: u64,
        /// The sequence number the record there should carry.
        expected_seq: u64,
        /// The sequence number it carries.
        found_seq: u64,
    },
    /// The right sequence number but the checksum fails: a torn or half-written record.
    ChecksumMismatch {
        /// Where the chain stopped.
        pos: u64,
        /// The record's sequence number.
        seq: u64,
        /// The checksum its descriptor stores.
        expected: u32,
        /// The checksum of what is on disk.
        found: u32,
    },
    /// The record claims more blocks than the log has room for past `pos`.
    TooLong {
        /// Where the chain stopped.
        pos: u64,
        /// The record's sequence number.
        seq: u64,
        /// Blocks the record claims.
        len_blocks: u64,
        /// Blocks of log left from `pos`.
        room_blocks: u64,
    },
    /// A checksummed record names an address outside the data region: corruption or a bug.
    BadAddress {
        /// Where the chain stopped.
        pos: u64,
        /// The record's sequence number.
        seq: u64,
        /// The address it names.
        addr: Addr,
    },
    /// The chain filled the whole log region.
    LogFull {
        /// `tail_pos + log_blocks`: where the chain stopped.
        pos: u64,
    },
}

impl fmt::Display for ScanStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanStop::NotARecord { pos, expected_seq, reason } => {
                write!(f, "position {pos}: expected record {expected_seq}, found no record ({reason})")
            }
            ScanStop::WrongSequence { pos, expected_seq, found_seq } => {
                write!(f, "position {pos}: expected sequence {expected_seq}, found {found_seq}")
            }
            ScanStop::ChecksumMismatch { pos, seq, expected, found } => write!(
                f,
                "position {pos}: record {seq} checksum mismatch (expected {expected:#010x}, found {found:#010x}): torn or incomplete"
            ),
            ScanStop::TooLong { pos, seq, len_blocks, room_blocks } => write!(
                f,
                "position {pos}: record {seq} claims {len_blocks} blocks, only {room_blocks} left in the log"
            ),
            ScanStop::BadAddress { pos, seq, addr } => {
                write!(f, "position {pos}: record {seq} names address {addr} outside the data region")
            }
            ScanStop::LogFull { pos } => write!(f, "position {pos}: the chain fills the whole log"),
        }
    }
}

impl ScanStop {
    /// Stops that a crash can cause on a healthy image (a torn or never-written tail).
    pub fn is_clean_end(&self) -> bool {
        !matches!(self, ScanStop::BadAddress { .. })
    }
}

/// Everything a scan found.
#[derive(Clone, Debug)]
pub struct ScanReport {
    /// The image's superblock.
    pub superblock: Superblock,
    /// What each header slot holds.
    pub slots: [SlotState; 2],
    /// The header the chain starts from (the valid slot with the highest generation).
    pub header: Header,
    /// The valid chain, in order.
    pub records: Vec<ScannedRecord>,
    /// Position just past the last valid record: where the next record goes.
    pub end_pos: u64,
    /// The sequence number the next record in the chain would carry.
    pub next_seq: u64,
    /// Why the chain ended.
    pub stop: ScanStop,
    /// Valid records found past the stop (a crash during a group flush, or corruption).
    pub beyond_stop: Vec<ScannedRecord>,
    /// Log positions in `[end_pos, end_pos + log_blocks)` whose block fails verification: a
    /// write a crash cut short. Recovery rewrites them (they hold nothing live).
    pub damaged_beyond_stop: Vec<u64>,
}

impl ScanReport {
    /// `Some(detail)` when the end of the chain cannot be a crash: a record past it says the
    /// record at the stop had been acknowledged as durable, or a checksummed record is malformed.
    pub fn corruption(&self) -> Option<String> {
        if !self.stop.is_clean_end() {
            return Some(self.stop.to_string());
        }
        let witness = self
            .beyond_stop
            .iter()
            .find(|r| r.durable_seq >= self.next_seq)?;
        Some(format!(
            "{}; but record {} at position {} says every record through {} was durable",
            self.stop, witness.seq, witness.pos, witness.durable_seq
        ))
    }
}

/// Reads and validates the superblock of `disk`.
pub fn read_superblock(disk: &dyn Disk) -> Result<Superblock> {
    if disk.size_blocks() <= HEADER_SLOTS[1] {
        return Err(LogError::not_image(format!(
            "only {} blocks",
            disk.size_blocks()
        )));
    }
    Superblock::decode(&disk.read(SUPERBLOCK_ADDR)?, disk.size_blocks())
}

/// Reads both header slots; returns them and the newest valid header.
pub fn read_headers(disk: &dyn Disk, sb: &Superblock) -> Result<([SlotState; 2], Header)> {
    let mut slots = [
        SlotState::Invalid(String::new()),
        SlotState::Invalid(String::new()),
    ];
    for (slot, &addr) in slots.iter_mut().zip(HEADER_SLOTS.iter()) {
        let block = match disk.read(addr) {
            Ok(block) => block,
            // A slot that fails verification is a slot a crash tore (or rot damaged): the
            // other slot decides, as for a torn header. A read error is not evidence of a tear
            // and stays an error.
            Err(error @ DiskError::Corrupt { .. }) => {
                *slot = SlotState::Invalid(error.to_string());
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        *slot = match Header::decode(&block, sb) {
            Ok(header) if header.slot_addr() == addr => SlotState::Valid(header),
            Ok(header) => SlotState::Invalid(format!(
                "generation {} belongs in the other slot",
                header.generation
            )),
            Err(reason) => SlotState::Invalid(reason),
        };
    }
    let newest = slots
        .iter()
        .filter_map(|slot| match slot {
            SlotState::Valid(header) => Some(*header),
            SlotState::Invalid(_) => None,
        })
        .max_by_key(|header| header.generation)
        .ok_or(LogError::NoValidHeader)?;
    Ok((slots, newest))
}

/// Outcome of trying to read one record at a position.
enum RecordAt {
    Valid(ScannedRecord),
    Stop(ScanStop),
}

/// Tries to read the record with sequence `seq` (any sequence if `None`) at absolute `pos`,
/// with `room_blocks` blocks of log left for it.
fn read_record(
    disk: &dyn Disk,
    sb: &Superblock,
    pos: u64,
    seq: Option<u64>,
    room_blocks: u64,
    with_data: bool,
) -> Result<RecordAt> {
    let expected_seq = seq.unwrap_or(0);
    // A block of the record that fails verification ends the chain there, as a torn block
    // does: it is what a crash during the block's write leaves.
    // A block that cannot be read at all is not: it may hold an acknowledged record, so the
    // error stops recovery rather than the chain.
    let unreadable = |error: DiskError| match error {
        error @ DiskError::Corrupt { .. } => Ok(RecordAt::Stop(ScanStop::NotARecord {
            pos,
            expected_seq,
            reason: error.to_string(),
        })),
        error => Err(LogError::from(error)),
    };
    let first = match disk.read(sb.log_addr(pos)) {
        Ok(first) => first,
        Err(error) => return unreadable(error),
    };
    let head: RecordHead = match decode_record_head(&first) {
        Ok(head) => head,
        Err(reason) => {
            return Ok(RecordAt::Stop(ScanStop::NotARecord {
                pos,
                expected_seq,
                reason,
            }))
        }
    };
    if seq.is_some_and(|s| s != head.seq) {
        return Ok(RecordAt::Stop(ScanStop::WrongSequence {
            pos,
            expected_seq,
            found_seq: head.seq,
        }));
    }
    let len_blocks = u64::from(head.desc_blocks) + u64::from(head.data_blocks);
    if len_blocks > room_blocks {
        return Ok(RecordAt::Stop(ScanStop::TooLong {
            pos,
            seq: head.seq,
            len_blocks,
            room_blocks,
        }));
    }
    let mut descs = vec![first];
    for index in 1..u64::from(head.desc_blocks) {
        match disk.read(sb.log_addr(pos + index)) {
            Ok(desc) => descs.push(desc),
            Err(error) => return unreadable(error),
        }
    }
    let data_pos = pos + u64::from(head.desc_blocks);
    let mut data = Vec::with_capacity(head.data_blocks as usize);
    for index in 0..u64::from(head.data_blocks) {
        match disk.read(sb.log_addr(data_pos + index)) {
            Ok(block) => data.push(block),
            Err(error) => return unreadable(error),
        }
    }
    let found = record_crc(sb, &descs, data.iter());
    if found != head.crc && !crate::bug_active!(ReplayWithoutChecksum) {
        let stop = ScanStop::ChecksumMismatch {
            pos,
            seq: head.seq,
            expected: head.crc,
            found,
        };
        return Ok(RecordAt::Stop(stop));
    }
    let addrs = decode_record_addrs(&descs, head.data_blocks as usize);
    if let Some(&addr) = addrs.iter().find(|&&a| a >= sb.data_blocks) {
        return Ok(RecordAt::Stop(ScanStop::BadAddress {
            pos,
            seq: head.seq,
            addr,
        }));
    }
    if !with_data {
        data.clear();
    }
    Ok(RecordAt::Valid(ScannedRecord {
        seq: head.seq,
        pos,
        len_blocks,
        durable_seq: head.durable_seq,
        crc: head.crc,
        addrs,
        data,
    }))
}

/// Scans the live log of `disk` (read-only). `with_data` keeps the records' data blocks.
pub fn scan_log(disk: &dyn Disk, with_data: bool) -> Result<ScanReport> {
    let sb = read_superblock(disk)?;
    let (slots, header) = read_headers(disk, &sb)?;
    let limit = header.tail_pos + sb.log_blocks;
    let mut records = Vec::new();
    let (mut pos, mut seq) = (header.tail_pos, header.tail_seq);
    // Each iteration consumes at least one block of the log, so this ends within log_blocks.
    let stop = loop {
        if pos >= limit {
            break ScanStop::LogFull { pos };
        }
        match read_record(disk, &sb, pos, Some(seq), limit - pos, with_data)? {
            RecordAt::Valid(record) => {
                pos += record.len_blocks;
                seq += 1;
                records.push(record);
            }
            RecordAt::Stop(stop) => break stop,
        }
    };
    let (beyond_stop, damaged_beyond_stop) = probe_beyond(disk, &sb, pos, seq, limit)?;
    Ok(ScanReport {
        superblock: sb,
        slots,
        header,
        records,
        end_pos: pos,
        next_seq: seq,
        stop,
        beyond_stop,
        damaged_beyond_stop,
    })
}

/// Valid records with a sequence number of at least `seq` anywhere in `[pos, limit)`, and the
/// positions there whose block fails verification.
///
/// Every block of the range is read once; full checks of candidate records are capped at
/// [`PROBE_READ_FACTOR`] × the log's size in blocks read, so an image crafted with record heads
/// everywhere cannot make a scan quadratic. Legitimate candidates (the rest of a group flush cut
/// short by a crash) sit right after the stop and are found well within the cap.
fn probe_beyond(
    disk: &dyn Disk,
    sb: &Superblock,
    pos: u64,
    seq: u64,
    limit: u64,
) -> Result<(Vec<ScannedRecord>, Vec<u64>)> {
    let mut found = Vec::new();
    let mut damaged = Vec::new();
    let mut budget_blocks = PROBE_READ_FACTOR.saturating_mul(sb.log_blocks);
    for probe in pos..limit {
        let block = match disk.read(sb.log_addr(probe)) {
            Ok(block) => block,
            Err(DiskError::Corrupt { .. }) => {
                damaged.push(probe);
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let head = match decode_record_head(&block) {
            Ok(head) => head,
            Err(_) => continue,
        };
        let len_blocks = u64::from(head.desc_blocks) + u64::from(head.data_blocks);
        if head.seq < seq || len_blocks > limit - probe {
            continue;
        }
        if len_blocks > budget_blocks {
            tracing::warn!(
                pos = probe,
                "log probe past the stop cut short: too many candidate records"
            );
            break;
        }
        budget_blocks -= len_blocks;
        if let RecordAt::Valid(record) = read_record(disk, sb, probe, None, limit - probe, false)? {
            found.push(record);
        }
    }
    Ok((found, damaged))
}

/// How many times the log's size the probe past the stop may read in candidate records.
pub const PROBE_READ_FACTOR: u64 = 4;
