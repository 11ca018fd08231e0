//! The pair's crash invariant across many crashes: which values each block of the pair may
//! hold. `txdisk_replicated::WriteHistory` states it for one crash (the value durable at the
//! last sync, or one written after it); a fuzzing run goes on after a crash — recovery writes
//! and syncs through the pair again — so a block recovery did not rewrite may still hold any
//! value the crash could have left there, whatever later syncs made durable elsewhere.

use crate::stack::Pair;
use std::collections::{BTreeMap, BTreeSet};
use txdisk_disk::{Addr, Block, Disk, SECTORS_PER_BLOCK};
use txdisk_replicated::{ReplicaStatus, ReplicatedError, Role};

/// Per block of the pair: the values it may hold now (`allowed`, zeros if never written) and
/// those written since the last successful sync (`pending`).
#[derive(Clone, Debug, Default)]
pub(crate) struct PairHistory {
    allowed: BTreeMap<Addr, Vec<Block>>,
    pending: BTreeMap<Addr, Vec<Block>>,
}

impl PairHistory {
    /// A write to the pair, recorded before it is issued (a crash may land it).
    pub fn write(&mut self, addr: Addr, block: &Block) {
        self.pending.entry(addr).or_default().push(block.clone());
    }

    /// A pair sync returned Ok: the newest write of every block is its only value.
    pub fn sync_ok(&mut self) {
        for (addr, mut values) in std::mem::take(&mut self.pending) {
            if let Some(newest) = values.pop() {
                self.allowed.insert(addr, vec![newest]);
            }
        }
    }

    /// The machine crashed: each block may keep any write since the last sync, or its value.
    pub fn crash(&mut self) {
        for (addr, values) in std::mem::take(&mut self.pending) {
            let allowed = self
                .allowed
                .entry(addr)
                .or_insert_with(|| vec![Block::zeroed()]);
            for value in values {
                if !allowed.contains(&value) {
                    allowed.push(value);
                }
            }
        }
    }

    /// Whether `value` may be at `addr`: one of its values, or (`torn`) every 512-byte sector
    /// of it a sector of one of them.
    fn allows(&self, addr: Addr, value: &Block, torn: bool) -> bool {
        let zero = [Block::zeroed()];
        let allowed = self.allowed.get(&addr).map_or(&zero[..], Vec::as_slice);
        let pending = self.pending.get(&addr).map_or(&[][..], Vec::as_slice);
        let mut candidates = allowed.iter().chain(pending);
        if !torn {
            return candidates.any(|candidate| candidate == value);
        }
        let candidates: Vec<&Block> = candidates.collect();
        (0..SECTORS_PER_BLOCK).all(|sector| {
            candidates
                .iter()
                .any(|c| c.sector(sector) == value.sector(sector))
        })
    }

    /// The pair's crash invariant after recovery: every block of each active replica verifies
    /// and holds a value this history allows (sector by sector if `torn`), and the replicas
    /// agree everywhere. (As `replicas_agree` and `recovered_from`, reading each block of each
    /// replica once.) `damaged`: blocks of one replica that damage struck, which may still fail
    /// verification there (nothing has read them since: the pair repairs a block when it reads
    /// it) — the other replica's copy is then the one checked. Returns how many blocks did.
    pub fn check(
        &self,
        pair: &Pair,
        torn: bool,
        damaged: Option<&(Role, BTreeSet<Addr>)>,
    ) -> Result<usize, String> {
        let mut failing = 0;
        let active: Vec<Role> = [Role::D1, Role::D2]
            .into_iter()
            .filter(|role| pair.replica_status(*role) == ReplicaStatus::Active)
            .collect();
        if active.is_empty() {
            return Err("replicated: after recovery, no replica is active".into());
        }
        for addr in 0..pair.size_blocks() {
            let mut first: Option<(Role, Block)> = None;
            for &role in &active {
                let value = match pair.read_replica(role, addr) {
                    Ok(value) => value,
                    Err(ReplicatedError::Disk(error))
                        if error.is_bad_block()
                            && damaged.is_some_and(|(r, blocks)| {
                                *r == role && blocks.contains(&addr)
                            }) =>
                    {
                        failing += 1;
                        continue;
                    }
                    Err(e) => {
                        return Err(format!(
                            "replicated: after recovery, {role} block {addr}: {e}"
                        ))
                    }
                };
                if !self.allows(addr, &value, torn) {
                    return Err(self.never_written(role, addr, &value));
                }
                if let Some((other, seen)) = &first {
                    if *seen != value {
                        return Err(format!(
                            "replicated: after recovery, block {addr} differs: {other} {:016x}, {role} {:016x}",
                            seen.fingerprint(),
                            value.fingerprint()
                        ));
                    }
                }
                first = Some((role, value));
            }
        }
        Ok(failing)
    }

    fn never_written(&self, role: Role, addr: Addr, value: &Block) -> String {
        let allowed: Vec<String> = self
            .allowed
            .get(&addr)
            .into_iter()
            .chain(self.pending.get(&addr))
            .flatten()
            .map(|block| format!("{:016x}", block.fingerprint()))
            .collect();
        let allowed = if allowed.is_empty() {
            "zeros".to_string()
        } else {
            allowed.join(", ")
        };
        format!(
            "replicated crash invariant: after recovery, {role} block {addr} holds {:016x}, never written there (allowed: {allowed})",
            value.fingerprint()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_every_pending_value_allowed_until_rewritten() {
        let (a, b, c) = (Block::filled(0xa), Block::filled(0xb), Block::filled(0xc));
        let mut history = PairHistory::default();
        assert!(
            history.allows(7, &Block::zeroed(), false),
            "an unwritten block reads zeros"
        );
        history.write(7, &a);
        history.sync_ok();
        history.write(7, &b);
        history.crash();
        // A sync after the crash that did not rewrite block 7 settles nothing about it.
        history.sync_ok();
        assert!(history.allows(7, &a, false));
        assert!(history.allows(7, &b, false));
        assert!(!history.allows(7, &c, false));
        assert!(
            !history.allows(7, &Block::zeroed(), false),
            "zeros were overwritten by a synced write"
        );
        history.write(7, &c);
        history.sync_ok();
        assert!(history.allows(7, &c, false));
        assert!(
            !history.allows(7, &a, false),
            "a synced rewrite leaves one value"
        );
    }

    #[test]
    fn torn_values_are_allowed_sector_by_sector() {
        let (a, b) = (Block::filled(0xa), Block::filled(0xb));
        let mut history = PairHistory::default();
        history.write(3, &a);
        history.sync_ok();
        history.write(3, &b);
        history.crash();
        let mut torn = a.clone();
        torn.as_bytes_mut()[..512].copy_from_slice(&b.as_bytes()[..512]);
        assert!(history.allows(3, &torn, true));
        assert!(!history.allows(3, &torn, false));
        let mut foreign = a.clone();
        foreign.as_bytes_mut()[0] = 0xff;
        assert!(!history.allows(3, &foreign, true));
    }
}
