//! `log_recover`: replay the durable log to the home locations and start a fresh log.
//!
//! Idempotent by construction: it changes nothing the scan depends on until the replayed
//! blocks are durable at home, and then moves the tail with a single header write. A crash at
//! any point leaves either the old header (the same scan, the same replay again) or the new one
//! (an empty log).

use crate::error::{LogError, Result};
use crate::format::Header;
use crate::home::write_home;
use crate::scan::{scan_log, ScanReport, ScanStop, ScannedRecord};
use txdisk_disk::{Block, Disk};

/// What a recovery did.
#[derive(Clone, Debug)]
pub struct RecoveryReport {
    /// Records replayed, in order: (sequence, number of blocks).
    pub replayed: Vec<(u64, usize)>,
    /// Distinct home blocks written (repeated writes to one address absorbed).
    pub home_blocks_written: usize,
    /// The header the scan started from.
    pub old_header: Header,
    /// The header recovery wrote: the tail past the replayed records.
    pub new_header: Header,
    /// Why the scan ended.
    pub stop: ScanStop,
}

/// Recovers the log on `disk`: replays every valid record from the header's tail, makes the
/// result durable, then moves the tail past the replayed records. Refuses (with
/// [`LogError::Corruption`]) a log whose chain breaks at a record that had been acknowledged.
pub fn log_recover(disk: &dyn Disk) -> Result<RecoveryReport> {
    let scan = scan_log(disk, true)?;
    match decide(ChainEnd::of(&scan)) {
        Decision::ReplayAndMoveTail => {}
        Decision::Refuse => {
            return Err(LogError::Corruption {
                pos: scan.end_pos,
                seq: scan.next_seq,
                detail: scan.corruption().unwrap_or_else(|| scan.stop.to_string()),
            })
        }
    }
    let home_blocks_written = replay(disk, &scan)?;
    let new_header = fresh_header(&scan)?;
    let block = new_header.encode(&scan.superblock);
    #[cfg(debug_assertions)]
    crate::format::check_header_round_trip(&new_header, &block, &scan.superblock);
    disk.write(new_header.slot_addr(), &block)?;
    disk.sync()?;
    let replayed = scan
        .records
        .iter()
        .map(|r| (r.seq, r.addrs.len()))
        .collect();
    tracing::info!(
        records = scan.records.len(),
        home_blocks_written,
        stop = %scan.stop,
        "log recovered"
    );
    Ok(RecoveryReport {
        replayed,
        home_blocks_written,
        old_header: scan.header,
        new_header,
        stop: scan.stop,
    })
}

/// How the chain of records ended, in the terms recovery decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChainEnd {
    /// What a crash leaves: zeros or stale data, a record of an earlier lap, a torn record, a
    /// record longer than the room left, or a chain that fills the log; nothing past the end
    /// says the record there had been durable.
    Torn,
    /// A clean-looking end, but a valid record past it says the record at the end had been
    /// acknowledged as durable.
    AcknowledgedLost,
    /// A checksummed record names an address outside the data region.
    Malformed,
}

/// What recovery does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Replay the chain home, sync, and write a header with the tail at the chain's end.
    ReplayAndMoveTail,
    /// Write nothing and report [`LogError::Corruption`]: dropping the rest of the log would
    /// silently lose acknowledged transactions.
    Refuse,
}

/// The decision table of recovery: every way the chain can end, and what recovery does.
const DECISIONS: [(ChainEnd, Decision); 3] = [
    (ChainEnd::Torn, Decision::ReplayAndMoveTail),
    (ChainEnd::AcknowledgedLost, Decision::Refuse),
    (ChainEnd::Malformed, Decision::Refuse),
];

impl ChainEnd {
    fn of(scan: &ScanReport) -> ChainEnd {
        if !scan.stop.is_clean_end() {
            return ChainEnd::Malformed;
        }
        let acknowledged = |r: &ScannedRecord| r.durable_seq >= scan.next_seq;
        if scan.beyond_stop.iter().any(acknowledged) {
            return ChainEnd::AcknowledgedLost;
        }
        ChainEnd::Torn
    }
}

/// Looks `end` up in [`DECISIONS`]; a case missing from the table is refused.
fn decide(end: ChainEnd) -> Decision {
    DECISIONS
        .iter()
        .find(|(case, _)| *case == end)
        .map_or(Decision::Refuse, |(_, decision)| *decision)
}

/// Writes the newest value of every address in the chain home, then syncs.
fn replay(disk: &dyn Disk, scan: &ScanReport) -> Result<usize> {
    let writes = scan
        .records
        .iter()
        .flat_map(|record| record.addrs.iter().copied().zip(record.data.iter()));
    let home_blocks = write_home(disk, scan.superblock.data_start, writes)?;
    // Blocks past the chain that fail verification are writes the crash cut short; zeros in
    // their place (never a record) leave every block of the log verifiable again.
    let zero = Block::zeroed();
    for pos in &scan.damaged_beyond_stop {
        disk.write(scan.superblock.log_addr(*pos), &zero)?;
    }
    // The home blocks must be durable before the header stops pointing at their records.
    disk.sync()?;
    Ok(home_blocks)
}

/// The header after recovery: the tail at the end of the chain, and a sequence number past
/// every one that may ever have been written to the log region, so that no stale record (a
/// torn tail, a record of an unacknowledged group) can ever be taken for a new one.
fn fresh_header(scan: &ScanReport) -> Result<Header> {
    let overflow = || LogError::Corruption {
        pos: scan.end_pos,
        seq: scan.next_seq,
        detail: "log positions or sequence numbers exhausted: copy the data to a new image".into(),
    };
    // At most log_blocks / 2 records fit in the region, so no record past the chain carries a
    // sequence at or above next_seq + log_blocks.
    let jump = if crate::bug_active!(NoSequenceJump) {
        0
    } else {
        scan.superblock.log_blocks
    };
    let tail_seq = scan.next_seq.checked_add(jump).ok_or_else(overflow)?;
    let generation = scan.header.generation.checked_add(1).ok_or_else(overflow)?;
    // Refuse to run a log whose positions could one day pass what a header may hold: every
    // header this log writes must decode again.
    let limit = crate::format::MAX_POSITION / 2;
    if tail_seq > limit || scan.end_pos > limit || generation > limit {
        return Err(overflow());
    }
    Ok(Header {
        generation,
        tail_pos: scan.end_pos,
        tail_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Superblock;
    use crate::scan::SlotState;

    /// One example of every way a scan can stop.
    fn every_stop() -> Vec<ScanStop> {
        vec![
            ScanStop::NotARecord {
                pos: 5,
                expected_seq: 2,
                reason: "no record magic".into(),
            },
            ScanStop::WrongSequence {
                pos: 5,
                expected_seq: 2,
                found_seq: 9,
            },
            ScanStop::ChecksumMismatch {
                pos: 5,
                seq: 2,
                expected: 1,
                found: 2,
            },
            ScanStop::TooLong {
                pos: 5,
                seq: 2,
                len_blocks: 30,
                room_blocks: 11,
            },
            ScanStop::BadAddress {
                pos: 5,
                seq: 2,
                addr: 1000,
            },
            ScanStop::LogFull { pos: 16 },
        ]
    }

    fn scan(stop: ScanStop, beyond_durable_seq: Option<u64>) -> ScanReport {
        let header = Header {
            generation: 1,
            tail_pos: 0,
            tail_seq: 1,
        };
        let beyond = beyond_durable_seq.map(|durable_seq| ScannedRecord {
            seq: 3,
            pos: 7,
            len_blocks: 2,
            durable_seq,
            crc: 0,
            addrs: vec![0],
            data: Vec::new(),
        });
        ScanReport {
            superblock: Superblock::layout(100, 16, 1).expect("layout"),
            slots: [
                SlotState::Valid(header),
                SlotState::Invalid("bad magic".into()),
            ],
            header,
            records: Vec::new(),
            end_pos: 5,
            next_seq: 2,
            stop,
            beyond_stop: beyond.into_iter().collect(),
            damaged_beyond_stop: Vec::new(),
        }
    }

    #[test]
    fn the_table_decides_every_case_once() {
        for (case, _) in DECISIONS {
            let rows = DECISIONS.iter().filter(|(c, _)| *c == case).count();
            assert_eq!(rows, 1, "{case:?} has {rows} rows");
        }
        assert_eq!(decide(ChainEnd::Torn), Decision::ReplayAndMoveTail);
        assert_eq!(decide(ChainEnd::AcknowledgedLost), Decision::Refuse);
        assert_eq!(decide(ChainEnd::Malformed), Decision::Refuse);
    }

    /// Every stop, with nothing past it, with a later record that says the stop was not yet
    /// durable, and with one that says it was: recovery refuses exactly what the scan calls
    /// corruption, and replays the rest.
    #[test]
    fn every_scan_outcome_maps_to_one_decision() {
        for stop in every_stop() {
            // next_seq is 2: durable_seq 1 says record 2 was not yet durable, 2 says it was.
            for beyond in [None, Some(1), Some(2)] {
                let scan = scan(stop.clone(), beyond);
                let end = ChainEnd::of(&scan);
                let expected = match (&stop, beyond) {
                    (ScanStop::BadAddress { .. }, _) => ChainEnd::Malformed,
                    (_, Some(2)) => ChainEnd::AcknowledgedLost,
                    _ => ChainEnd::Torn,
                };
                assert_eq!(end, expected, "stop {stop}, beyond {beyond:?}");
                let refused = decide(end) == Decision::Refuse;
                assert_eq!(
                    refused,
                    scan.corruption().is_some(),
                    "stop {stop}, beyond {beyond:?}: the decision and the scan's verdict differ"
                );
            }
        }
    }
}
