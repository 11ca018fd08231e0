//! `log_recover`: replay the durable log to the home locations and start a fresh log.
//!
//! Idempotent by construction: it changes nothing the scan depends on until the replayed
//! blocks are durable at home, and then moves the tail with a single header write. A crash at
//! any point leaves either the old header (the same scan, the same replay again) or the new one
//! (an empty log).

use crate::error::{LogError, Result};
use crate::format::Header;
use crate::home::write_home;
use crate::scan::{scan_log, ScanReport, ScanStop};
use txdisk_disk::Disk;

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
    if let Some(detail) = scan.corruption() {
        return Err(LogError::Corruption {
            pos: scan.end_pos,
            seq: scan.next_seq,
            detail,
        });
    }
    let home_blocks_written = replay(disk, &scan)?;
    let new_header = fresh_header(&scan)?;
    disk.write(new_header.slot_addr(), &new_header.encode(&scan.superblock))?;
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

/// Writes the newest value of every address in the chain home, then syncs.
fn replay(disk: &dyn Disk, scan: &ScanReport) -> Result<usize> {
    let writes = scan
        .records
        .iter()
        .flat_map(|record| record.addrs.iter().copied().zip(record.data.iter()));
    let home_blocks = write_home(disk, scan.superblock.data_start, writes)?;
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
