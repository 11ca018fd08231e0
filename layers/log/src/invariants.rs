//! The log's invariants as code: the rep invariant of a running log, and the crash invariants
//! (FSCQ's `log_intact`) that tests and the fuzzer apply to recovered disks.

use crate::position::Seq;
use crate::state::{Flusher, Inner, Mode, State};
use std::collections::BTreeMap;
use std::fmt;
use txdisk_disk::{Addr, Block};

impl Inner {
    /// Rep invariant: positions ordered and within the log; records contiguous from the tail
    /// with consecutive sequence numbers; the map of logged blocks exactly the newest value of
    /// every address in the records. Calls the disk's own `check_rep` first.
    pub(crate) fn check_rep(&self) {
        self.disk.check_rep();
        let state = self.state.lock();
        check_positions(&state, self.sb.log_blocks);
        check_records(&state);
        check_logged_map(&state);
        check_modes(&state);
    }
}

/// What the named states imply about the records.
fn check_modes(state: &State) {
    // close flushed and installed everything before it marked the log closed.
    if state.mode == Mode::Closed {
        assert!(
            state.records.is_empty(),
            "log: closed with {} records not installed (tail {}, head {})",
            state.records.len(),
            state.header.tail_pos,
            state.head_pos
        );
    }
    // Between group flushes of a running log, a record is durable or no flusher has taken it.
    if state.mode == Mode::Running && state.flusher == Flusher::Idle {
        let not_durable = state
            .records
            .iter()
            .filter(|r| r.seq > state.durable_seq)
            .count();
        assert_eq!(
            not_durable, state.unwritten,
            "log: no flush running, {not_durable} records not durable (through {}), {} unwritten",
            state.durable_seq, state.unwritten
        );
    }
}

fn check_positions(state: &State, log_blocks: u64) {
    let tail = state.header.tail();
    assert!(
        tail <= state.head_pos,
        "log: tail {tail} beyond head {}",
        state.head_pos
    );
    let used = state.head_pos - tail;
    assert!(
        used <= log_blocks,
        "log: {used} blocks in use, log has {log_blocks}"
    );
    assert!(
        state.durable_seq < state.next_seq,
        "log: durable {} >= next {}",
        state.durable_seq,
        state.next_seq
    );
    assert!(
        state.durable_seq.next() >= state.header.first_seq(),
        "log: durable {} behind tail sequence {}",
        state.durable_seq,
        state.header.tail_seq
    );
    assert!(
        state.unwritten <= state.records.len(),
        "log: {} unwritten of {} records",
        state.unwritten,
        state.records.len()
    );
}

fn check_records(state: &State) {
    let (mut pos, mut seq) = (state.header.tail(), state.header.first_seq());
    for record in &state.records {
        assert_eq!(
            record.pos, pos,
            "log: record {} at position {}, expected {pos}",
            record.seq, record.pos
        );
        assert_eq!(
            record.seq, seq,
            "log: record sequence {}, expected {seq}",
            record.seq
        );
        assert_eq!(
            record.addrs.len(),
            record.data.len(),
            "log: record {} addrs/data mismatch",
            record.seq
        );
        pos += record.len_blocks;
        seq = seq.next();
    }
    assert_eq!(
        pos, state.head_pos,
        "log: records end at {pos}, head is {}",
        state.head_pos
    );
    assert_eq!(
        seq, state.next_seq,
        "log: records end at sequence {seq}, next is {}",
        state.next_seq
    );
    let first_unwritten = state.records.len() - state.unwritten;
    if let Some(record) = state.records.get(first_unwritten) {
        assert!(
            record.seq > state.durable_seq,
            "log: unwritten record {} already durable",
            record.seq
        );
    }
}

fn check_logged_map(state: &State) {
    let mut newest: BTreeMap<Addr, (Seq, &Block)> = BTreeMap::new();
    for record in &state.records {
        for (addr, block) in record.addrs.iter().zip(&record.data) {
            newest.insert(*addr, (record.seq, &**block));
        }
    }
    assert_eq!(
        newest.len(),
        state.logged.len(),
        "log: logged map has {} entries, records name {}",
        state.logged.len(),
        newest.len()
    );
    for (addr, (seq, block)) in newest {
        let Some((found_seq, found_block)) = state.logged.get(&addr) else {
            panic!("log: address {addr} (record {seq}) missing from the logged map")
        };
        assert_eq!(
            *found_seq, seq,
            "log: address {addr} maps to record {found_seq}, newest is {seq}"
        );
        assert!(
            **found_block == *block,
            "log: address {addr} logged value differs from record {seq}"
        );
    }
}

/// A crash invariant that failed: which address, what was expected, what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashViolation {
    /// The first address whose contents break the invariant.
    pub addr: Addr,
    /// What was expected there and what was found.
    pub detail: String,
}

impl fmt::Display for CrashViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "log crash invariant violated at address {}: {}",
            self.addr, self.detail
        )
    }
}

impl std::error::Error for CrashViolation {}

/// Logical contents of the data region: address → block, absent = zeros.
pub type Contents = BTreeMap<Addr, Block>;

fn value_at(contents: &Contents, addr: Addr) -> Block {
    contents.get(&addr).cloned().unwrap_or_else(Block::zeroed)
}

/// FSCQ's `log_intact(last_state, committed_state)`: accepts `recovered` (the logical contents
/// of a recovered disk, read through the data region) only if it equals `last` or `committed`
/// on every address — all of one, never a mix.
pub fn log_intact(
    recovered: &Contents,
    last: &Contents,
    committed: &Contents,
) -> Result<(), CrashViolation> {
    matches_prefix(recovered, &[last.clone(), committed.clone()], 0).map(|_| ())
}

/// Accepts `recovered` if it equals one of `states` at index `min_index` or later (the states
/// after each prefix of the commit order; `min_index` the last durably committed). Returns the
/// index matched; on failure, the first address at which it differs from the newest allowed
/// state, with the expected and found values.
pub fn matches_prefix(
    recovered: &Contents,
    states: &[Contents],
    min_index: usize,
) -> Result<usize, CrashViolation> {
    let mut closest: Option<CrashViolation> = None;
    for (index, state) in states.iter().enumerate().skip(min_index) {
        match first_difference(recovered, state) {
            None => return Ok(index),
            Some(addr) => {
                let detail = format!(
                    "recovered contents match no allowed state (prefixes {min_index}..{}); against prefix {index}: expected {:?}, found {:?}",
                    states.len().saturating_sub(1),
                    value_at(state, addr),
                    value_at(recovered, addr)
                );
                closest = Some(CrashViolation { addr, detail });
            }
        }
    }
    Err(closest.unwrap_or(CrashViolation {
        addr: 0,
        detail: format!("no allowed state at or after prefix {min_index}"),
    }))
}

/// The first address at which two contents differ (absent and zeros are equal).
pub fn first_difference(a: &Contents, b: &Contents) -> Option<Addr> {
    let addrs = a.keys().chain(b.keys());
    let mut differing = addrs
        .filter(|addr| value_at(a, **addr) != value_at(b, **addr))
        .copied();
    differing.next().map(|first| {
        let mut min = first;
        for addr in differing {
            min = min.min(addr);
        }
        min
    })
}
