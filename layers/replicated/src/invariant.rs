//! The crash invariant of the pair, as functions the tests and the crash-point fuzzer call on the
//! state `open` (recovery) leaves: every data address holds, on every active replica, one value
//! that was written to it — the one durable at the last successful pair `sync`, or one written
//! after it — and the same value on both.

use crate::bitmap::{chunks_to_resync, inspect_bitmap};
use crate::meta::{inspect_member, Role, RESERVED_BLOCKS};
use crate::pair::{ReplicaStatus, ReplicatedDisk};
use crate::source::{choose_source, plan_other, MemberPlan, Peer};
use std::collections::BTreeMap;
use txdisk_disk::{Addr, Block, Disk};

/// What a workload wrote to the pair, as far as a crash is concerned: per address, the value
/// durable at the last successful `sync` (zeros if never written) and every value written since.
#[derive(Clone, Debug, Default)]
pub struct WriteHistory {
    durable: BTreeMap<Addr, Block>,
    since_sync: BTreeMap<Addr, Vec<Block>>,
}

impl WriteHistory {
    /// An empty history: every address zeros and durable.
    pub fn new() -> WriteHistory {
        WriteHistory::default()
    }

    /// Records a write, before it is issued (a write cut short by a crash may have landed).
    pub fn write(&mut self, addr: Addr, block: &Block) {
        self.since_sync.entry(addr).or_default().push(block.clone());
    }

    /// Records a pair `sync` that returned `Ok`: the newest value of every address is durable.
    pub fn sync_ok(&mut self) {
        for (addr, mut values) in std::mem::take(&mut self.since_sync) {
            if let Some(newest) = values.pop() {
                self.durable.insert(addr, newest);
            }
        }
    }

    /// The values a crash may leave at `addr`.
    pub fn allowed(&self, addr: Addr) -> Vec<Block> {
        let durable = self
            .durable
            .get(&addr)
            .cloned()
            .unwrap_or_else(Block::zeroed);
        let mut values = vec![durable];
        values.extend(self.since_sync.get(&addr).into_iter().flatten().cloned());
        values
    }

    /// Addresses the history has seen written.
    pub fn addresses(&self) -> Vec<Addr> {
        let mut addrs: Vec<Addr> = self
            .durable
            .keys()
            .chain(self.since_sync.keys())
            .copied()
            .collect();
        addrs.sort_unstable();
        addrs.dedup();
        addrs
    }
}

/// A broken crash invariant: which address, which replica, and what was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrashViolation {
    /// Both members are active and hold different values at one address.
    #[error("replicated: after recovery, block {addr} differs: d1 {d1_fingerprint:016x}, d2 {d2_fingerprint:016x}")]
    ReplicasDiffer {
        /// The data address.
        addr: Addr,
        /// Fingerprint of d1's value.
        d1_fingerprint: u64,
        /// Fingerprint of d2's value.
        d2_fingerprint: u64,
    },

    /// An active member holds a value the history does not allow at that address.
    #[error("replicated: after recovery, {replica} block {addr} holds {found_fingerprint:016x}, never written there (allowed: {allowed_fingerprints:016x?})")]
    NeverWritten {
        /// The data address.
        addr: Addr,
        /// The member holding the value.
        replica: Role,
        /// Fingerprint of the value found.
        found_fingerprint: u64,
        /// Fingerprints of the values the history allows there.
        allowed_fingerprints: Vec<u64>,
    },

    /// An active member cannot be read at one address.
    #[error("replicated: after recovery, {replica} block {addr} cannot be read: {error}")]
    Unreadable {
        /// The data address.
        addr: Addr,
        /// The member that failed the read.
        replica: Role,
        /// The read's error.
        error: String,
    },

    /// Recovery left no member active.
    #[error("replicated: after recovery, no replica is active")]
    NoActiveReplica,

    /// In a crash state, the members differ at an address whose chunk neither bitmap marks:
    /// recovery would not copy it.
    #[error("replicated: in the crash state, block {addr} differs between the members but its chunk {chunk} is marked on neither bitmap")]
    UnmarkedDifference {
        /// The data address.
        addr: Addr,
        /// Its chunk.
        chunk: u64,
    },
}

/// The bitmap's crash invariant, on the members as a crash left them (before `open`): if
/// `open` would resync them (both current, one pair), every address where they differ lies in
/// a chunk recovery copies ([`chunks_to_resync`](crate::chunks_to_resync)). Members `open`
/// would rebuild, refuse or run without are not the bitmap's business. Blocks either member
/// cannot read are skipped (a bad block is repaired from the other by any read).
///
/// On success, what was compared: nothing (`BitmapCheck::default()`: a state the bitmap is
/// not the judge of), or the blocks found differing inside chunks recovery copies and the
/// chunks it skips — so that a test can show the check is not vacuous.
pub fn differences_marked(d1: &dyn Disk, d2: &dyn Disk) -> Result<BitmapCheck, CrashViolation> {
    let none = BitmapCheck::default();
    let (Ok(Some(m1)), Ok(Some(m2))) = (inspect_member(d1), inspect_member(d2)) else {
        return Ok(none);
    };
    if m1.pair_id != m2.pair_id
        || m1.role == m2.role
        || m1.data_size_blocks != m2.data_size_blocks
        || m1.chunk_blocks != m2.chunk_blocks
    {
        return Ok(none);
    }
    let mut by_role = [None, None];
    by_role[m1.role.index()] = Some(m1);
    by_role[m2.role.index()] = Some(m2);
    let Ok(source) = choose_source(by_role) else {
        return Ok(none);
    };
    let Some(other) = by_role[source.role.other().index()] else {
        return Ok(none);
    };
    if !matches!(
        plan_other(&source, &Peer::Meta(other)),
        MemberPlan::InSync { clean: false }
    ) {
        return Ok(none);
    }
    let layout = source.bitmap_layout();
    let (Ok(b1), Ok(b2)) = (inspect_bitmap(d1, &m1), inspect_bitmap(d2, &m2)) else {
        return Ok(none);
    };
    let copied = chunks_to_resync(&layout, [&b1, &b2]);
    let mut check = BitmapCheck {
        compared: true,
        skipped_chunks: layout.chunks() - copied.len() as u64,
        ..BitmapCheck::default()
    };
    for addr in 0..layout.data_blocks {
        let chunk = layout.chunk_of(addr);
        let block = RESERVED_BLOCKS + addr;
        let (Ok(v1), Ok(v2)) = (d1.read(block), d2.read(block)) else {
            continue;
        };
        if v1 == v2 {
            continue;
        }
        if !copied.contains(&chunk) {
            return Err(CrashViolation::UnmarkedDifference { addr, chunk });
        }
        check.differing_in_marked += 1;
    }
    Ok(check)
}

/// What [`differences_marked`] compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BitmapCheck {
    /// The members were compared (both current, to be resynced).
    pub compared: bool,
    /// Blocks that differ, each inside a chunk recovery copies.
    pub differing_in_marked: u64,
    /// Chunks recovery does not copy (all found equal).
    pub skipped_chunks: u64,
}

fn active_values<D: Disk + 'static>(
    pair: &ReplicatedDisk<D>,
    addr: Addr,
) -> Result<Vec<(Role, Block)>, CrashViolation> {
    let mut values = Vec::with_capacity(2);
    for role in [Role::D1, Role::D2] {
        if pair.replica_status(role) != ReplicaStatus::Active {
            continue;
        }
        let block = pair
            .read_replica(role, addr)
            .map_err(|error| CrashViolation::Unreadable {
                addr,
                replica: role,
                error: error.to_string(),
            })?;
        values.push((role, block));
    }
    if values.is_empty() {
        return Err(CrashViolation::NoActiveReplica);
    }
    Ok(values)
}

/// Rep invariant of the pair at rest: every active replica holds the same value at every data
/// address. Reads every block of both replicas.
pub fn replicas_agree<D: Disk + 'static>(pair: &ReplicatedDisk<D>) -> Result<(), CrashViolation> {
    for addr in 0..pair.size_blocks() {
        if let [(_, v1), (_, v2)] = active_values(pair, addr)?.as_slice() {
            if v1 != v2 {
                return Err(CrashViolation::ReplicasDiffer {
                    addr,
                    d1_fingerprint: v1.fingerprint(),
                    d2_fingerprint: v2.fingerprint(),
                });
            }
        }
    }
    Ok(())
}

/// The crash invariant after recovery: the replicas agree everywhere, and every address holds
/// a value `history` allows (zeros where it never wrote).
pub fn recovered_from<D: Disk + 'static>(
    pair: &ReplicatedDisk<D>,
    history: &WriteHistory,
) -> Result<(), CrashViolation> {
    replicas_agree(pair)?;
    for addr in 0..pair.size_blocks() {
        let allowed = history.allowed(addr);
        for (replica, value) in active_values(pair, addr)? {
            if !allowed.contains(&value) {
                return Err(CrashViolation::NeverWritten {
                    addr,
                    replica,
                    found_fingerprint: value.fingerprint(),
                    allowed_fingerprints: allowed.iter().map(Block::fingerprint).collect(),
                });
            }
        }
    }
    Ok(())
}
