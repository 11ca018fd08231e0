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

    /// Runs `op` on the logical disk and checks what it sees as it runs against `model`, the
    /// state after every operation of the run so far (the live oracle): every read returns
    /// the last committed value or the transaction's own write, and a commit that must fail
    /// (its read set changed) fails. The fuzzer calls this one; the default runs
    /// [`FuzzLayer::apply`] and checks nothing.
    fn apply_checked(
        &self,
        disk: &LogicalDisk,
        op: &Self::Op,
        model: &Self::Model,
    ) -> Result<(), ApplyError> {
        let _ = model;
        self.apply(disk, op).map_err(ApplyError::Stack)
    }

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

/// Why an operation of a workload did not run as the model says.
#[derive(Debug)]
pub enum ApplyError {
    /// The stack returned an error (expected only after a crash or an injected fault).
    Stack(LogicalError),
    /// The stack answered, wrongly: a read returned another value than the model's, or a
    /// commit that had to conflict returned Ok. The message names the address and both values.
    Oracle(String),
}

impl From<LogicalError> for ApplyError {
    fn from(error: LogicalError) -> ApplyError {
        ApplyError::Stack(error)
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Stack(error) => write!(f, "{error}"),
            ApplyError::Oracle(message) => write!(f, "live oracle: {message}"),
        }
    }
}

/// Whether `error` is a block failing verification (damage, not a bug or a crash).
pub(crate) fn is_damaged_block(error: &LogicalError) -> bool {
    match error {
        LogicalError::Image(LogError::DamagedBlock { .. }) => true,
        LogicalError::Disk(error) => error.is_bad_block(),
        _ => false,
    }
}

/// The built-in layer: transactions over data blocks `0..addr_span` (the whole data region by
/// default), with addresses drawn to overlap — a third near each end of the region (the last
/// block included) and a small hot set in the middle, the rest uniform — committed durably or
/// deferred, sometimes aborted; transactions that read (read-modify-write, transfers between
/// two blocks, reads only, aborts after reads) and transactions whose read set another commit
/// changes before they commit (they must conflict). Its state is the whole data region.
///
/// Every operation is one transaction of its own plus, for [`TxOp::Conflict`], the one that
/// interferes with it: nothing here assumes a single thread beyond the order of those two.
#[derive(Clone, Debug)]
pub struct TxLayer {
    /// Transactions touch data blocks `0..addr_span` (clamped to the data region).
    pub addr_span: u64,
    /// Most blocks one transaction writes (or reads).
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
    /// A transaction that reads `reads` (each checked against the model), then writes at each
    /// of `writes` a block derived from what it read ([`derived_block`]), reads one of its own
    /// writes back, and commits — or aborts after all that. A read-modify-write reads and
    /// writes one block, a transfer two; with no writes it is a read-only transaction.
    Update {
        /// Blocks read first, in this order.
        reads: Vec<Addr>,
        /// Blocks then written with values derived from the reads.
        writes: Vec<Addr>,
        /// Mixed into the derived values, so that two updates of a block differ.
        salt: u32,
        /// Durable before the commit returns; otherwise deferred.
        durable: bool,
        /// Abort instead of committing: nothing may survive.
        abort: bool,
    },
    /// Transaction A reads `reads`; then another transaction writes `interloper` (which
    /// overlaps A's reads) and commits; then A writes `writes` and tries to commit, which must
    /// fail with a conflict. The interloper is the one commit of this operation.
    Conflict {
        /// What A reads (checked against the model).
        reads: Vec<Addr>,
        /// (address, tag) of the interloper's blind writes; the first is one of A's reads.
        interloper: Vec<(Addr, u32)>,
        /// (address, tag) A writes before its commit.
        writes: Vec<(Addr, u32)>,
        /// The interloper's commit is durable; otherwise deferred.
        durable: bool,
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

/// What an update writes at `addr` after reading `read` (in its read order): a tagged block
/// whose tag hashes (FNV-1a) the salt and the first 16 bytes of every block read — the address
/// and tag of a tagged block, zeros for a block never written — so that a stale read changes
/// the value written and shows in every later state.
pub fn derived_block(addr: Addr, salt: u32, read: &[Block]) -> Block {
    let mut hash: u32 = 0x811c_9dc5 ^ salt;
    for block in read {
        for &byte in &block.as_bytes()[..16] {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    tagged_block(addr, hash)
}

/// Blocks near each end of the region and in the hot set that addresses are biased to.
const EDGE_BLOCKS: u64 = 3;
const HOT_BLOCKS: u64 = 3;

impl TxLayer {
    fn span(&self, data_blocks: u64) -> u64 {
        self.addr_span.clamp(1, data_blocks.max(1))
    }

    /// One address: the first or last `EDGE_BLOCKS` (a third), the hot set in the middle of the
    /// region (a third), or any block.
    fn pick_addr(&self, rng: &mut SplitMix64, data_blocks: u64) -> Addr {
        let span = self.span(data_blocks);
        match rng.below(6) {
            0 => rng.below(EDGE_BLOCKS.min(span)),
            1 => span - 1 - rng.below(EDGE_BLOCKS.min(span)),
            2 | 3 => (span / 2 + rng.below(HOT_BLOCKS)).min(span - 1),
            _ => rng.below(span),
        }
    }

    /// Up to `max_tx_blocks` distinct addresses (at least one).
    fn pick_addrs(&self, rng: &mut SplitMix64, data_blocks: u64, most: u64) -> Vec<Addr> {
        let len = 1 + rng.below(most.max(1));
        let mut addrs: Vec<Addr> = Vec::new();
        for _ in 0..len {
            let addr = self.pick_addr(rng, data_blocks);
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        addrs
    }

    fn tagged_writes(&self, rng: &mut SplitMix64, data_blocks: u64) -> Vec<(Addr, u32)> {
        let addrs = self.pick_addrs(rng, data_blocks, self.max_tx_blocks);
        addrs
            .into_iter()
            .map(|addr| (addr, rng.next_u64() as u32))
            .collect()
    }

    fn random_update(&self, rng: &mut SplitMix64, data_blocks: u64) -> TxOp {
        let salt = rng.next_u64() as u32;
        let durable = rng.chance(1, 2);
        let (reads, writes) = match rng.below(4) {
            // Read-modify-write of one block.
            0 => {
                let addr = self.pick_addr(rng, data_blocks);
                (vec![addr], vec![addr])
            }
            // A transfer: read two blocks, write both.
            1 => {
                let from = self.pick_addr(rng, data_blocks);
                let mut to = self.pick_addr(rng, data_blocks);
                if to == from {
                    to = (from + 1) % self.span(data_blocks);
                }
                let both = if to == from {
                    vec![from]
                } else {
                    vec![from, to]
                };
                (both.clone(), both)
            }
            // Read only.
            2 => (
                self.pick_addrs(rng, data_blocks, self.max_tx_blocks),
                Vec::new(),
            ),
            // Read some, write others.
            _ => (
                self.pick_addrs(rng, data_blocks, self.max_tx_blocks),
                self.pick_addrs(rng, data_blocks, self.max_tx_blocks),
            ),
        };
        TxOp::Update {
            abort: !writes.is_empty() && rng.chance(1, 8),
            reads,
            writes,
            salt,
            durable,
        }
    }

    fn random_conflict(&self, rng: &mut SplitMix64, data_blocks: u64) -> TxOp {
        let reads = self.pick_addrs(rng, data_blocks, self.max_tx_blocks);
        let overlap = reads[rng.below(reads.len() as u64) as usize];
        let mut interloper = vec![(overlap, rng.next_u64() as u32)];
        for (addr, tag) in self.tagged_writes(rng, data_blocks) {
            if addr != overlap && (interloper.len() as u64) < self.max_tx_blocks.max(1) {
                interloper.push((addr, tag));
            }
        }
        TxOp::Conflict {
            reads,
            interloper,
            writes: self.tagged_writes(rng, data_blocks),
            durable: rng.chance(1, 2),
        }
    }
}

/// The model's value of `addr`: zeros where nothing was committed.
fn model_block(model: &Contents, addr: Addr) -> Block {
    model.get(&addr).cloned().unwrap_or_else(Block::zeroed)
}

/// Reads `addr` in `tx` and checks it against `expected`.
fn checked_read(
    tx: &mut txdisk_logical::Transaction<'_>,
    addr: Addr,
    expected: &Block,
    what: &str,
) -> Result<Block, ApplyError> {
    let found = tx.read(addr)?;
    if found != *expected {
        return Err(ApplyError::Oracle(format!(
            "{what} of data block {addr}: expected {expected:?}, found {found:?}"
        )));
    }
    Ok(found)
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
        match rng.below(20) {
            0 => TxOp::Abort {
                writes: self.tagged_writes(rng, data_blocks),
            },
            1..=5 => self.random_update(rng, data_blocks),
            6 | 7 => self.random_conflict(rng, data_blocks),
            pick => TxOp::Commit {
                writes: self.tagged_writes(rng, data_blocks),
                durable: pick % 2 == 0,
            },
        }
    }

    fn commit_kind(&self, op: &TxOp) -> CommitKind {
        let durable = match op {
            TxOp::Commit { durable, .. } | TxOp::Conflict { durable, .. } => *durable,
            TxOp::Update {
                writes,
                abort,
                durable,
                ..
            } => {
                if writes.is_empty() || *abort {
                    return CommitKind::None;
                }
                *durable
            }
            TxOp::Abort { .. } => return CommitKind::None,
        };
        if durable {
            CommitKind::Durable
        } else {
            CommitKind::Deferred
        }
    }

    fn model_apply(&self, model: &mut Contents, op: &TxOp) {
        if self.commit_kind(op) == CommitKind::None {
            return;
        }
        match op {
            TxOp::Commit { writes, .. }
            | TxOp::Conflict {
                interloper: writes, ..
            } => {
                for &(addr, tag) in writes {
                    model.insert(addr, tagged_block(addr, tag));
                }
            }
            TxOp::Update {
                reads,
                writes,
                salt,
                ..
            } => {
                let read: Vec<Block> = reads.iter().map(|&a| model_block(model, a)).collect();
                for &addr in writes {
                    model.insert(addr, derived_block(addr, *salt, &read));
                }
            }
            TxOp::Abort { .. } => {}
        }
    }

    fn apply(&self, disk: &LogicalDisk, op: &TxOp) -> Result<(), LogicalError> {
        // Without a model nothing is compared, so only the stack's errors come back.
        match self.run(disk, op, None) {
            Ok(()) => Ok(()),
            Err(ApplyError::Stack(error)) => Err(error),
            Err(ApplyError::Oracle(_)) => Ok(()),
        }
    }

    fn apply_checked(
        &self,
        disk: &LogicalDisk,
        op: &TxOp,
        model: &Contents,
    ) -> Result<(), ApplyError> {
        self.run(disk, op, Some(model))
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
        let mut smaller = Vec::new();
        let fewer = |items: &[(Addr, u32)]| -> Vec<Vec<(Addr, u32)>> {
            if items.len() < 2 {
                return Vec::new();
            }
            (0..items.len())
                .map(|skip| {
                    let mut rest = items.to_vec();
                    rest.remove(skip);
                    rest
                })
                .collect()
        };
        match op {
            TxOp::Commit { writes, durable } => {
                if !durable {
                    smaller.push(TxOp::Commit {
                        writes: writes.clone(),
                        durable: true,
                    });
                }
                for writes in fewer(writes) {
                    smaller.push(TxOp::Commit {
                        writes,
                        durable: *durable,
                    });
                }
            }
            TxOp::Abort { writes } => {
                smaller.extend(
                    fewer(writes)
                        .into_iter()
                        .map(|writes| TxOp::Abort { writes }),
                );
            }
            TxOp::Update {
                reads,
                writes,
                salt,
                durable,
                abort,
            } => {
                if !durable {
                    smaller.push(TxOp::Update {
                        reads: reads.clone(),
                        writes: writes.clone(),
                        salt: *salt,
                        durable: true,
                        abort: *abort,
                    });
                }
                // A blind commit of what the update wrote, when the reads do not matter.
                if !abort && !writes.is_empty() {
                    let tagged = writes.iter().map(|&addr| (addr, *salt)).collect();
                    smaller.push(TxOp::Commit {
                        writes: tagged,
                        durable: *durable,
                    });
                }
            }
            TxOp::Conflict {
                interloper,
                durable,
                ..
            } => {
                // The interloper alone, when the conflicting transaction does not matter.
                smaller.push(TxOp::Commit {
                    writes: interloper.clone(),
                    durable: *durable,
                });
            }
        }
        smaller
    }
}

impl TxLayer {
    /// Runs `op`, checking every read against `model` when there is one.
    fn run(
        &self,
        disk: &LogicalDisk,
        op: &TxOp,
        model: Option<&Contents>,
    ) -> Result<(), ApplyError> {
        let expected = |addr: Addr| model.map(|m| model_block(m, addr));
        let read =
            |tx: &mut txdisk_logical::Transaction<'_>, addr: Addr, what: &str| match expected(addr)
            {
                Some(block) => checked_read(tx, addr, &block, what),
                None => Ok(tx.read(addr)?),
            };
        match op {
            TxOp::Commit { writes, durable } => {
                let mut tx = disk.begin();
                for &(addr, tag) in writes {
                    tx.write(addr, &tagged_block(addr, tag))?;
                }
                commit(tx, *durable)
            }
            TxOp::Abort { writes } => {
                let mut tx = disk.begin();
                for &(addr, tag) in writes {
                    tx.write(addr, &tagged_block(addr, tag))?;
                }
                tx.abort();
                Ok(())
            }
            TxOp::Update {
                reads,
                writes,
                salt,
                durable,
                abort,
            } => {
                let mut tx = disk.begin();
                let mut seen = Vec::with_capacity(reads.len());
                for &addr in reads {
                    seen.push(read(&mut tx, addr, "read")?);
                }
                for &addr in writes {
                    tx.write(addr, &derived_block(addr, *salt, &seen))?;
                }
                if let Some(&addr) = writes.first() {
                    // The transaction's own write, before it commits.
                    let own = derived_block(addr, *salt, &seen);
                    let found = tx.read(addr)?;
                    if model.is_some() && found != own {
                        return Err(ApplyError::Oracle(format!(
                            "a transaction's read of its own write at data block {addr}: expected {own:?}, found {found:?}"
                        )));
                    }
                }
                if *abort || writes.is_empty() {
                    tx.abort();
                    return Ok(());
                }
                commit(tx, *durable)
            }
            TxOp::Conflict {
                reads,
                interloper,
                writes,
                durable,
            } => {
                let mut first = disk.begin();
                for &addr in reads {
                    read(&mut first, addr, "read")?;
                }
                let mut other = disk.begin();
                for &(addr, tag) in interloper {
                    other.write(addr, &tagged_block(addr, tag))?;
                }
                commit(other, *durable)?;
                for &(addr, tag) in writes {
                    first.write(addr, &tagged_block(addr, tag))?;
                }
                match first.commit_nosync() {
                    Err(error) if error.is_conflict() => Ok(()),
                    Err(error) => Err(ApplyError::Stack(error)),
                    Ok(()) if model.is_some() => Err(ApplyError::Oracle(format!(
                        "a transaction that read {reads:?} committed although a commit of {:?} \
                         came between its reads and its commit: expected a conflict",
                        interloper.iter().map(|(addr, _)| addr).collect::<Vec<_>>()
                    ))),
                    Ok(()) => Ok(()),
                }
            }
        }
    }
}

fn commit(tx: txdisk_logical::Transaction<'_>, durable: bool) -> Result<(), ApplyError> {
    let result = if durable {
        tx.commit()
    } else {
        tx.commit_nosync()
    };
    result.map_err(ApplyError::Stack)
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
