//! The prefix oracle for block workloads, the crash fuzzer's rule for a recovered disk: after a
//! crash the disk holds the state after some prefix of the committed transactions (or
//! NBD WRITEs), and that prefix includes every one whose durable commit, flush or FUA
//! returned. Values are self-describing ([`stamp_block`]), so a block that holds bytes no
//! transaction wrote (torn, misplaced, garbage) is told apart from an old value.

use std::collections::BTreeMap;
use txdisk_disk::{Block, BLOCK_SIZE};

/// The value transaction `stamp` (numbered from 1) writes to `addr`: the address and the
/// stamp, then a pattern derived from both, so any tear or misplacement shows.
pub fn stamp_block(addr: u64, stamp: u64) -> Block {
    let mut block = Block::zeroed();
    let bytes = block.as_bytes_mut();
    bytes[..8].copy_from_slice(&addr.to_le_bytes());
    bytes[8..16].copy_from_slice(&stamp.to_le_bytes());
    let mut x = addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stamp;
    for chunk in bytes[16..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    block
}

/// Which transaction wrote `block` at `addr`: 0 for zeros (never written), `None` for bytes
/// that no transaction wrote there.
pub fn stamp_of(addr: u64, block: &Block) -> Option<u64> {
    let bytes = block.as_bytes();
    if bytes.iter().all(|&b| b == 0) {
        return Some(0);
    }
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[8..16]);
    let stamp = u64::from_le_bytes(word);
    (stamp != 0 && stamp_block(addr, stamp) == *block).then_some(stamp)
}

/// The committed transactions of a run and how many of them are known durable.
#[derive(Debug, Default, Clone)]
pub struct BlockOracle {
    /// Transaction `i` (stamp `i + 1`) and the addresses it wrote.
    writes: Vec<Vec<u64>>,
    /// The first `durable` transactions must survive any crash.
    durable: usize,
    /// A transaction issued whose outcome is unknown (a crash may keep it or not).
    in_flight: Option<Vec<u64>>,
    /// The state the run started from (after earlier recoveries): address → stamp.
    base: BTreeMap<u64, u64>,
}

impl BlockOracle {
    /// The stamp the next transaction must write with.
    pub fn next_stamp(&self) -> u64 {
        self.writes.len() as u64 + 1
    }

    /// A transaction writing `addrs` is about to be issued.
    pub fn issue(&mut self, addrs: &[u64]) {
        assert!(
            self.in_flight.is_none(),
            "oracle: two transactions in flight"
        );
        self.in_flight = Some(addrs.to_vec());
    }

    /// The transaction in flight returned Ok; `durable` if its return promised durability.
    pub fn committed(&mut self, durable: bool) {
        let addrs = self
            .in_flight
            .take()
            .expect("oracle: committed without a transaction in flight");
        self.writes.push(addrs);
        if durable {
            self.durable = self.writes.len();
        }
    }

    /// A flush returned Ok: every committed transaction is durable.
    pub fn flushed(&mut self) {
        self.durable = self.writes.len();
    }

    /// Every address any transaction (or the base) wrote.
    pub fn addresses(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self
            .writes
            .iter()
            .flatten()
            .chain(self.in_flight.iter().flatten())
            .copied()
            .chain(self.base.keys().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The stamp of `addr` after the first `prefix` transactions.
    fn expected(&self, addr: u64, prefix: usize) -> u64 {
        self.writes[..prefix]
            .iter()
            .enumerate()
            .rev()
            .find(|(_, addrs)| addrs.contains(&addr))
            .map(|(i, _)| i as u64 + 1)
            .unwrap_or_else(|| self.base.get(&addr).copied().unwrap_or(0))
    }

    /// Checks a recovered disk (`read` returns a block's contents) and returns the prefix it
    /// holds; the oracle then continues from that state (later transactions are forgotten).
    pub fn check_recovered(
        &mut self,
        mut read: impl FnMut(u64) -> Result<Block, String>,
    ) -> Result<usize, String> {
        let mut found = BTreeMap::new();
        for addr in self.addresses() {
            let block = read(addr).map_err(|e| format!("reading block {addr}: {e}"))?;
            let stamp = stamp_of(addr, &block)
                .ok_or_else(|| format!("block {addr} holds bytes no transaction wrote there"))?;
            found.insert(addr, stamp);
        }
        if let Some(addrs) = self.in_flight.take() {
            // Kept or not: a crash decides. As a committed one it may be in the prefix.
            self.writes.push(addrs);
        }
        let matches = |prefix: usize| found.iter().all(|(&a, &s)| self.expected(a, prefix) == s);
        let prefix = (self.durable..=self.writes.len())
            .rev()
            .find(|&prefix| matches(prefix))
            .ok_or_else(|| self.explain(&found))?;
        self.base = found.into_iter().filter(|&(_, s)| s != 0).collect();
        self.writes.truncate(prefix);
        self.durable = prefix;
        Ok(prefix)
    }

    fn explain(&self, found: &BTreeMap<u64, u64>) -> String {
        let lost: Vec<String> = found
            .iter()
            .filter(|(&a, &s)| self.expected(a, self.durable) > s)
            .take(8)
            .map(|(a, s)| {
                format!(
                    "block {a} holds transaction {s}, older than the durable {}",
                    self.expected(*a, self.durable)
                )
            })
            .collect();
        format!(
            "the recovered disk is the state after no prefix of the {} committed transactions \
             that includes the {} acknowledged durable: {}",
            self.writes.len(),
            self.durable,
            if lost.is_empty() {
                "blocks from different prefixes mixed".to_string()
            } else {
                lost.join("; ")
            }
        )
    }
}

const _: () = assert!(BLOCK_SIZE >= 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_torn_blocks_are_refused() {
        let block = stamp_block(7, 3);
        assert_eq!(stamp_of(7, &block), Some(3));
        assert_eq!(stamp_of(8, &block), None, "a misplaced block");
        let mut torn = block.clone();
        torn.as_bytes_mut()[600..1024].copy_from_slice(&[0u8; 424]);
        assert_eq!(stamp_of(7, &torn), None);
        assert_eq!(stamp_of(7, &Block::zeroed()), Some(0));
    }

    #[test]
    fn a_lost_durable_transaction_is_a_violation_and_an_undurable_one_is_not() {
        let mut oracle = BlockOracle::default();
        for (addrs, durable) in [(vec![1, 2], true), (vec![2, 3], false)] {
            oracle.issue(&addrs);
            oracle.committed(durable);
        }
        // The second (not durable) lost: fine, prefix 1.
        let state = |a: u64| -> Result<Block, String> {
            Ok(match a {
                1 | 2 => stamp_block(a, 1),
                _ => Block::zeroed(),
            })
        };
        assert_eq!(oracle.clone().check_recovered(state), Ok(1));
        // The first lost: a violation.
        let empty = |_| Ok(Block::zeroed());
        assert!(oracle.clone().check_recovered(empty).is_err());
        // Mixed prefixes: block 2 from the second, block 3 not.
        let mixed = |a: u64| -> Result<Block, String> {
            Ok(match a {
                1 => stamp_block(1, 1),
                2 => stamp_block(2, 2),
                _ => Block::zeroed(),
            })
        };
        assert!(oracle.check_recovered(mixed).is_err());
    }
}
