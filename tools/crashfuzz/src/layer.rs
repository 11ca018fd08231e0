//! What the fuzzer drives: a layer on top of the logical disk, described by its operations, a
//! model of its contents, its recovery and its invariant ([`FuzzLayer`]). The built-in
//! [`TxLayer`] is raw transactions over the data region; [`CounterLayer`] is the smallest
//! example of a user's own layer.

use std::collections::BTreeSet;
use std::fmt;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Addr, Block, Disk};
use txdisk_log::LogError;
use txdisk_logical::{matches_prefix, Contents, LogicalDisk, LogicalError};

/// How an operation ends, as far as crash recovery is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommitKind {
    /// Commits nothing (a read, an aborted transaction): the contents must not change.
    None,
    /// One transaction committed with deferred durability (`commit_nosync`).
    Deferred,
    /// One transaction committed durably (`commit`): in every later state once it returns.
    Durable,
}

/// A layer fuzzed on top of the logical disk.
///
/// The fuzzer generates operations with [`FuzzLayer::random_op`], runs them with
/// [`FuzzLayer::apply`] (each at most one transaction), crashes the run, recovers the stack and
/// then the layer ([`FuzzLayer::recover`]), checks the layer's invariant
/// ([`FuzzLayer::check`]), reads its state back ([`FuzzLayer::observe`]) and requires it to be
/// one of the model states after some prefix of the committed operations, including every
/// durable one ([`FuzzLayer::match_prefix`]).
pub trait FuzzLayer {
    /// One operation of a workload (at most one transaction).
    type Op: Clone + fmt::Debug;
    /// What the layer's state should be, as the oracle replays the operations.
    type Model: Clone + fmt::Debug + PartialEq;

    /// A short name, part of every replay token (a token only replays on the layer it names).
    fn name(&self) -> String;

    /// The model of a freshly set-up layer.
    fn initial_model(&self) -> Self::Model;

    /// Lays down the layer's initial structures on a freshly formatted logical disk.
    fn setup(&self, _disk: &LogicalDisk) -> Result<(), LogicalError> {
        Ok(())
    }

    /// A random operation, given the model after every operation generated so far.
    fn random_op(&self, rng: &mut SplitMix64, model: &Self::Model, data_blocks: u64) -> Self::Op;

    /// Whether `op` commits a transaction, and how.
    fn commit_kind(&self, op: &Self::Op) -> CommitKind;

    /// The model after `op` commits (unchanged for `CommitKind::None`).
    fn model_apply(&self, model: &mut Self::Model, op: &Self::Op);

    /// Runs `op` on the logical disk.
    fn apply(&self, disk: &LogicalDisk, op: &Self::Op) -> Result<(), LogicalError>;

    /// The layer's own recovery, run after the stack's.
    fn recover(&self, _disk: &LogicalDisk) -> Result<(), String> {
        Ok(())
    }

    /// The layer's invariant on a recovered disk.
    fn check(&self, _disk: &LogicalDisk) -> Result<(), String> {
        Ok(())
    }

    /// The layer's state as read from a recovered disk.
    fn observe(&self, disk: &LogicalDisk) -> Result<Self::Model, String>;

    /// Accepts `found` if it equals `allowed[i]` for some `i >= min_index`; returns `i`, or a
    /// message with the expected and found values.
    fn match_prefix(
        &self,
        found: &Self::Model,
        allowed: &[Self::Model],
        min_index: usize,
    ) -> Result<usize, String> {
        if let Some(index) = (min_index..allowed.len()).find(|&index| allowed[index] == *found) {
            return Ok(index);
        }
        Err(format!(
            "recovered state matches no allowed prefix ({min_index}..={}): expected one of {:?}, found {found:?}",
            allowed.len().saturating_sub(1),
            allowed.get(min_index..).unwrap_or(&[])
        ))
    }

    /// Smaller variants of `op`, tried by the shrinker.
    fn shrink_op(&self, _op: &Self::Op) -> Vec<Self::Op> {
        Vec::new()
    }

    /// Whether the layer reads a disk on which some blocks fail verification: damage on a
    /// single disk, which has no second copy, leaves a block it struck reading as an error
    /// until it is written again. A layer that does implements
    /// [`FuzzLayer::observe_damaged`] and [`FuzzLayer::match_prefix_except`]; damage faults on
    /// a single disk need it (on a pair every block reads). Its operations are still expected
    /// to succeed: one that reads a damaged block during a workload is a failed operation.
    fn reads_damaged_blocks(&self) -> bool {
        false
    }

    /// As [`FuzzLayer::observe`], on a single disk where the blocks in `damaged` (logical
    /// addresses that damage struck) may fail verification: each of those that fails to read
    /// is left out of the state and returned as unreadable; every other block must read.
    fn observe_damaged(
        &self,
        disk: &LogicalDisk,
        damaged: &BTreeSet<Addr>,
    ) -> Result<(Self::Model, BTreeSet<Addr>), String> {
        let _ = damaged;
        self.observe(disk).map(|found| (found, BTreeSet::new()))
    }

    /// As [`FuzzLayer::match_prefix`], comparing nothing at the blocks in `unreadable`: every
    /// block that did read must hold the value of the same allowed prefix.
    fn match_prefix_except(
        &self,
        found: &Self::Model,
        unreadable: &BTreeSet<Addr>,
        allowed: &[Self::Model],
        min_index: usize,
    ) -> Result<usize, String> {
        let _ = unreadable;
        self.match_prefix(found, allowed, min_index)
    }
}

/// Whether `error` is a block failing verification (damage, not a bug or a crash).
fn is_damaged_block(error: &LogicalError) -> bool {
    match error {
        LogicalError::Image(LogError::DamagedBlock { .. }) => true,
        LogicalError::Disk(error) => error.is_bad_block(),
        _ => false,
    }
}

/// The built-in layer: transactions of random blocks over the first `addr_span` data blocks
/// (so that they overlap), committed durably or deferred, sometimes aborted. Its state is the
/// whole data region.
#[derive(Clone, Debug)]
pub struct TxLayer {
    /// Transactions write within data blocks `0..addr_span`.
    pub addr_span: u64,
    /// Most blocks one transaction writes.
    pub max_tx_blocks: u64,
}

/// One operation of [`TxLayer`]: the blocks a transaction writes as (address, tag) pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOp {
    /// A transaction that commits its writes.
    Commit {
        /// (address, tag) of each block written.
        writes: Vec<(Addr, u32)>,
        /// Durable before the commit returns; otherwise deferred to a later flush.
        durable: bool,
    },
    /// A transaction that writes and then aborts: none of its writes may survive.
    Abort {
        /// (address, tag) of each block written before the abort.
        writes: Vec<(Addr, u32)>,
    },
}

/// A block recognisable in failure messages: the address in bytes 0..8, the tag in 8..12, the
/// rest filled with the tag's low byte.
pub fn tagged_block(addr: Addr, tag: u32) -> Block {
    let mut block = Block::filled(tag as u8 | 1);
    block.as_bytes_mut()[..8].copy_from_slice(&addr.to_le_bytes());
    block.as_bytes_mut()[8..12].copy_from_slice(&tag.to_le_bytes());
    block
}

impl FuzzLayer for TxLayer {
    type Op = TxOp;
    type Model = Contents;

    fn name(&self) -> String {
        "tx".into()
    }

    fn initial_model(&self) -> Contents {
        Contents::new()
    }

    fn random_op(&self, rng: &mut SplitMix64, _model: &Contents, data_blocks: u64) -> TxOp {
        let span = self.addr_span.clamp(1, data_blocks);
        let len = 1 + rng.below(self.max_tx_blocks.max(1));
        let mut writes: Vec<(Addr, u32)> = Vec::new();
        for _ in 0..len {
            let addr = rng.below(span);
            if !writes.iter().any(|&(a, _)| a == addr) {
                writes.push((addr, rng.next_u64() as u32));
            }
        }
        match rng.below(12) {
            0 => TxOp::Abort { writes },
            pick => TxOp::Commit {
                writes,
                durable: pick % 2 == 0,
            },
        }
    }

    fn commit_kind(&self, op: &TxOp) -> CommitKind {
        match op {
            TxOp::Commit { durable: true, .. } => CommitKind::Durable,
            TxOp::Commit { durable: false, .. } => CommitKind::Deferred,
            TxOp::Abort { .. } => CommitKind::None,
        }
    }

    fn model_apply(&self, model: &mut Contents, op: &TxOp) {
        if let TxOp::Commit { writes, .. } = op {
            for &(addr, tag) in writes {
                model.insert(addr, tagged_block(addr, tag));
            }
        }
    }

    fn apply(&self, disk: &LogicalDisk, op: &TxOp) -> Result<(), LogicalError> {
        let (writes, durable) = match op {
            TxOp::Commit { writes, durable } => (writes, Some(*durable)),
            TxOp::Abort { writes } => (writes, None),
        };
        let mut tx = disk.begin();
        for &(addr, tag) in writes {
            tx.write(addr, &tagged_block(addr, tag))?;
        }
        match durable {
            Some(true) => tx.commit(),
            Some(false) => tx.commit_nosync(),
            None => {
                tx.abort();
                Ok(())
            }
        }
    }

    fn observe(&self, disk: &LogicalDisk) -> Result<Contents, String> {
        let mut contents = Contents::new();
        // Compared whole (a memcmp), not byte by byte: this runs on every recovered state.
        let zero = Block::zeroed();
        for addr in 0..disk.size_blocks() {
            let block = disk
                .read_committed(addr)
                .map_err(|error| format!("read of data block {addr}: {error}"))?;
            if block != zero {
                contents.insert(addr, block);
            }
        }
        Ok(contents)
    }

    fn match_prefix(
        &self,
        found: &Contents,
        allowed: &[Contents],
        min_index: usize,
    ) -> Result<usize, String> {
        // Contents hold no zero blocks (`observe` drops them; `model_apply` writes tagged
        // blocks, never zeros), so equal maps are equal contents. The log's `matches_prefix`
        // explains a mismatch, formatting blocks as it goes: too slow for states that match.
        if let Some(index) = (min_index..allowed.len()).find(|&index| allowed[index] == *found) {
            return Ok(index);
        }
        matches_prefix(found, allowed, min_index).map_err(|violation| violation.to_string())
    }

    fn reads_damaged_blocks(&self) -> bool {
        true
    }

    fn observe_damaged(
        &self,
        disk: &LogicalDisk,
        damaged: &BTreeSet<Addr>,
    ) -> Result<(Contents, BTreeSet<Addr>), String> {
        let mut contents = Contents::new();
        let mut unreadable = BTreeSet::new();
        let zero = Block::zeroed();
        for addr in 0..disk.size_blocks() {
            match disk.read_committed(addr) {
                Ok(block) if block == zero => {}
                Ok(block) => {
                    contents.insert(addr, block);
                }
                Err(error) if damaged.contains(&addr) && is_damaged_block(&error) => {
                    unreadable.insert(addr);
                }
                Err(error) => return Err(format!("read of data block {addr}: {error}")),
            }
        }
        Ok((contents, unreadable))
    }

    fn match_prefix_except(
        &self,
        found: &Contents,
        unreadable: &BTreeSet<Addr>,
        allowed: &[Contents],
        min_index: usize,
    ) -> Result<usize, String> {
        if unreadable.is_empty() {
            return self.match_prefix(found, allowed, min_index);
        }
        let readable: Vec<Contents> = allowed
            .iter()
            .map(|contents| {
                let mut contents = contents.clone();
                contents.retain(|addr, _| !unreadable.contains(addr));
                contents
            })
            .collect();
        self.match_prefix(found, &readable, min_index)
            .map_err(|error| format!("{error} (damaged blocks {unreadable:?} read as errors)"))
    }

    fn shrink_op(&self, op: &TxOp) -> Vec<TxOp> {
        let (writes, durable) = match op {
            TxOp::Commit { writes, durable } => (writes, Some(*durable)),
            TxOp::Abort { writes } => (writes, None),
        };
        let rebuild = |writes: Vec<(Addr, u32)>| match durable {
            Some(durable) => TxOp::Commit { writes, durable },
            None => TxOp::Abort { writes },
        };
        let mut smaller = Vec::new();
        if durable == Some(false) {
            smaller.push(TxOp::Commit {
                writes: writes.clone(),
                durable: true,
            });
        }
        if writes.len() > 1 {
            for skip in 0..writes.len() {
                let fewer = writes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, w)| *w)
                    .collect();
                smaller.push(rebuild(fewer));
            }
        }
        smaller
    }
}

/// The smallest example of a user's layer: a counter in data block 0 and its complement in
/// block 1, updated together by each transaction. Invariant: block 1 is the complement of
/// block 0. The model is the counter's value.
#[derive(Clone, Copy, Debug, Default)]
pub struct CounterLayer;

/// One operation of [`CounterLayer`]: add `amount`, durably or deferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterOp {
    /// What to add to the counter.
    pub amount: u64,
    /// Durable before the commit returns; otherwise deferred to a later flush.
    pub durable: bool,
}

fn counter_block(value: u64) -> Block {
    let mut block = Block::zeroed();
    block.as_bytes_mut()[..8].copy_from_slice(&value.to_le_bytes());
    block
}

fn counter_value(block: &Block) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&block.as_bytes()[..8]);
    u64::from_le_bytes(bytes)
}

impl FuzzLayer for CounterLayer {
    type Op = CounterOp;
    type Model = u64;

    fn name(&self) -> String {
        "counter".into()
    }

    fn initial_model(&self) -> u64 {
        0
    }

    fn setup(&self, disk: &LogicalDisk) -> Result<(), LogicalError> {
        let mut tx = disk.begin();
        tx.write(0, &counter_block(0))?;
        tx.write(1, &counter_block(!0))?;
        tx.commit()
    }

    fn random_op(&self, rng: &mut SplitMix64, _model: &u64, _data_blocks: u64) -> CounterOp {
        CounterOp {
            amount: 1 + rng.below(1000),
            durable: rng.chance(1, 2),
        }
    }

    fn commit_kind(&self, op: &CounterOp) -> CommitKind {
        if op.durable {
            CommitKind::Durable
        } else {
            CommitKind::Deferred
        }
    }

    fn model_apply(&self, model: &mut u64, op: &CounterOp) {
        *model = model.wrapping_add(op.amount);
    }

    fn apply(&self, disk: &LogicalDisk, op: &CounterOp) -> Result<(), LogicalError> {
        let mut tx = disk.begin();
        let next = counter_value(&tx.read(0)?).wrapping_add(op.amount);
        tx.write(0, &counter_block(next))?;
        tx.write(1, &counter_block(!next))?;
        if op.durable {
            tx.commit()
        } else {
            tx.commit_nosync()
        }
    }

    fn check(&self, disk: &LogicalDisk) -> Result<(), String> {
        let read = |addr| {
            disk.read_committed(addr)
                .map_err(|error| format!("counter: read of block {addr}: {error}"))
        };
        let (value, complement) = (counter_value(&read(0)?), counter_value(&read(1)?));
        if complement != !value {
            return Err(format!("counter: block 1 holds {complement:#x}, expected the complement of {value:#x} ({:#x})", !value));
        }
        Ok(())
    }

    fn observe(&self, disk: &LogicalDisk) -> Result<u64, String> {
        let block = disk
            .read_committed(0)
            .map_err(|error| format!("counter: read of block 0: {error}"))?;
        Ok(counter_value(&block))
    }
}
