//! The one home-writer: installation and recovery both copy logged blocks home through it, and
//! the commit path writes its log records through the same run writer underneath.

use crate::error::Result;
use std::collections::BTreeMap;
use txdisk_disk::{Addr, Block, Disk};

/// Writes the newest value of every address in `writes` (later pairs win: repeated writes to
/// one address are absorbed) to its home block `data_start + addr`, in address order, as
/// vectored runs. Returns the number of distinct home blocks written. Does not sync: the caller
/// orders the writes with its own barrier before the header stops pointing at their records.
pub(crate) fn write_home<'a>(
    disk: &dyn Disk,
    data_start: Addr,
    writes: impl Iterator<Item = (Addr, &'a Block)>,
) -> Result<usize> {
    let newest: BTreeMap<Addr, &Block> = writes.collect();
    let home = newest
        .iter()
        .map(|(addr, block)| (data_start + addr, *block));
    write_runs(disk, home)?;
    Ok(newest.len())
}

/// Writes `(address, block)` pairs, in order, as runs of consecutive addresses, handed to the
/// disk in one call ([`Disk::write_runs`]).
pub(crate) fn write_runs<'a>(
    disk: &dyn Disk,
    blocks: impl Iterator<Item = (Addr, &'a Block)>,
) -> Result<()> {
    let mut runs: Vec<(Addr, Vec<&Block>)> = Vec::new();
    for (addr, block) in blocks {
        match runs.last_mut() {
            Some((start, run)) if addr == *start + run.len() as u64 => run.push(block),
            _ => runs.push((addr, vec![block])),
        }
    }
    let slices: Vec<(Addr, &[&Block])> = runs
        .iter()
        .map(|(start, run)| (*start, run.as_slice()))
        .collect();
    disk.write_runs(&slices)?;
    Ok(())
}
