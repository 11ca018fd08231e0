//! The logical disk's concurrency contract as a function tests and the fuzzer call: a history
//! of committed transactions is **serializable in log-sequence order**, and a crash leaves a
//! **prefix** of that order that includes every commit acknowledged durable.
//!
//! Threads record into one [`SerialHistory`] as they go: what each committed transaction read
//! and wrote with the sequence number [`Transaction::commit_ordered`](crate::Transaction::commit_ordered)
//! gave it, what each read-only transaction saw, the values of attempts that did not commit,
//! and the highest sequence number a durable commit or a flush acknowledged. The checks then
//! replay the commits one at a time in sequence order over the initial contents:
//!
//! * every committed transaction read exactly the state before it in that order (its own
//!   writes aside: a read after its own write is not recorded as a read of committed state);
//! * every read-only transaction saw the state after some prefix of the commits that includes
//!   every commit recorded before it began;
//! * no value written by an attempt that did not commit is ever read or recovered;
//! * after a crash, the recovered contents are the state after a prefix that includes every
//!   acknowledged commit ([`matches_prefix`]).
//!
//! Recording takes a `std` mutex that is never held across an operation of the stack, so the
//! history adds no scheduling point of its own under a controlled scheduler.

use crate::{matches_prefix, Contents, CrashViolation};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use txdisk_disk::{Addr, Block};

/// A committed transaction: its place in the serial order, what it read of committed state and
/// what it wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Its log sequence number.
    pub seq: u64,
    /// (address, value) of every read of committed state.
    pub reads: Vec<(Addr, Block)>,
    /// (address, value) of every write, distinct addresses.
    pub writes: Vec<(Addr, Block)>,
}

/// A read-only transaction: the newest sequence recorded when it began, and what it read.
type Snapshot = (u64, Vec<(Addr, Block)>);

/// What threads record while they run transactions; see the module documentation.
#[derive(Debug, Default)]
pub struct SerialHistory {
    committed: Mutex<Vec<Committed>>,
    snapshots: Mutex<Vec<Snapshot>>,
    discarded: Mutex<Vec<Block>>,
    acked_seq: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A recording thread that panicked left a complete entry or none.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SerialHistory {
    /// An empty history.
    pub fn new() -> SerialHistory {
        SerialHistory::default()
    }

    /// A transaction committed with `commit_ordered` and got `seq`.
    pub fn committed(&self, transaction: Committed) {
        lock(&self.committed).push(transaction);
    }

    /// A read-only transaction that began when [`SerialHistory::newest_seq`] was
    /// `newest_at_begin` committed after reading `reads`.
    pub fn read_only(&self, newest_at_begin: u64, reads: Vec<(Addr, Block)>) {
        lock(&self.snapshots).push((newest_at_begin, reads));
    }

    /// The highest sequence number recorded so far (0 if none): a flush that begins now makes
    /// at least every commit through it durable, and a transaction that begins now must see
    /// at least them.
    pub fn newest_seq(&self) -> u64 {
        lock(&self.committed)
            .iter()
            .map(|commit| commit.seq)
            .max()
            .unwrap_or(0)
    }

    /// An attempt that did not commit (aborted, or conflicted) would have written these values.
    pub fn discarded(&self, values: impl IntoIterator<Item = Block>) {
        lock(&self.discarded).extend(values);
    }

    /// Every commit through `seq` was acknowledged durable (a durable commit or a flush
    /// returned Ok).
    pub fn acknowledged(&self, seq: u64) {
        self.acked_seq.fetch_max(seq, Ordering::SeqCst);
    }

    /// The highest sequence number acknowledged durable (0 if none).
    pub fn acknowledged_seq(&self) -> u64 {
        self.acked_seq.load(Ordering::SeqCst)
    }

    /// The committed transactions in sequence order.
    pub fn in_order(&self) -> Vec<Committed> {
        let mut committed = lock(&self.committed).clone();
        committed.sort_by_key(|commit| commit.seq);
        committed
    }

    /// How many transactions committed, read only, and were discarded.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            lock(&self.committed).len(),
            lock(&self.snapshots).len(),
            lock(&self.discarded).len(),
        )
    }

    /// The contents after each prefix of the commits in order: `initial` first.
    pub fn states(&self, initial: &Contents) -> Vec<Contents> {
        let mut state = initial.clone();
        let mut states = vec![state.clone()];
        for commit in self.in_order() {
            for (addr, value) in commit.writes {
                state.insert(addr, value);
            }
            states.push(state.clone());
        }
        states
    }

    /// Serializability of what was recorded (see the module documentation).
    pub fn check_serializable(&self, initial: &Contents) -> Result<(), CrashViolation> {
        let committed = self.in_order();
        if let Some(pair) = committed.windows(2).find(|pair| pair[0].seq == pair[1].seq) {
            return Err(violation(
                0,
                format!("two commits have sequence {}", pair[0].seq),
            ));
        }
        let discarded = lock(&self.discarded).clone();
        let states = self.states(initial);
        for (commit, before) in committed.iter().zip(&states) {
            for (addr, value) in &commit.reads {
                let serial = value_at(before, *addr);
                if *value != serial {
                    return Err(violation(*addr, format!(
                        "transaction {} read {} at {addr}, but in sequence order the address held {}",
                        commit.seq,
                        value.fingerprint(),
                        serial.fingerprint()
                    )));
                }
            }
        }
        for (newest_at_begin, snapshot) in lock(&self.snapshots).iter() {
            let shortest = committed
                .iter()
                .take_while(|commit| commit.seq <= *newest_at_begin)
                .count();
            let consistent = states.iter().skip(shortest).any(|state| {
                snapshot
                    .iter()
                    .all(|(addr, value)| value_at(state, *addr) == *value)
            });
            if !consistent {
                let addr = snapshot.first().map_or(0, |(addr, _)| *addr);
                return Err(violation(
                    addr,
                    format!(
                        "a read-only transaction saw the state after no prefix of the {} commits that includes the {shortest} recorded before it began",
                        committed.len()
                    ),
                ));
            }
        }
        let snapshots = lock(&self.snapshots).clone();
        let read = committed
            .iter()
            .flat_map(|commit| commit.reads.iter())
            .chain(snapshots.iter().flat_map(|(_, reads)| reads));
        for (addr, value) in read {
            if !value.is_zero() && discarded.contains(value) {
                return Err(violation(
                    *addr,
                    format!("a transaction read {} at {addr}, written by an attempt that never committed", value.fingerprint()),
                ));
            }
        }
        Ok(())
    }

    /// After a crash and recovery: `recovered` is the state after a prefix of the commits that
    /// includes every acknowledged one, and holds no discarded value. Returns the prefix length.
    pub fn check_recovered(
        &self,
        initial: &Contents,
        recovered: &Contents,
    ) -> Result<usize, CrashViolation> {
        let acked = self.acknowledged_seq();
        let shortest = self
            .in_order()
            .iter()
            .take_while(|commit| commit.seq <= acked)
            .count();
        let prefix = matches_prefix(recovered, &self.states(initial), shortest)?;
        let discarded = lock(&self.discarded).clone();
        if let Some((addr, value)) = recovered
            .iter()
            .find(|(_, value)| !value.is_zero() && discarded.contains(value))
        {
            return Err(violation(
                *addr,
                format!(
                    "recovered {} at {addr}, written by an attempt that never committed",
                    value.fingerprint()
                ),
            ));
        }
        Ok(prefix)
    }
}

fn value_at(contents: &Contents, addr: Addr) -> Block {
    contents.get(&addr).cloned().unwrap_or_else(Block::zeroed)
}

fn violation(addr: Addr, detail: String) -> CrashViolation {
    CrashViolation { addr, detail }
}
