//! Helpers shared by the disk layer's tests: distinct block values and a plain reference model
//! of the asynchronous disk's value sets (durable value + pending writes per block).
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::HashSet;
use txdisk_disk::{Addr, Block, DiskImage, SECTORS_PER_BLOCK};

/// A block that differs from the block of every other tag: the tag leads, the rest is a filler.
pub fn tagged(tag: u64) -> Block {
    let mut block = Block::filled(0xa5);
    block.as_bytes_mut()[..8].copy_from_slice(&tag.to_le_bytes());
    block
}

/// A block whose sector `s` is filled with `bytes[s]`, for building partial overlaps.
pub fn sectored(bytes: [u8; SECTORS_PER_BLOCK]) -> Block {
    let mut block = Block::zeroed();
    for (sector, chunk) in block
        .as_bytes_mut()
        .chunks_mut(txdisk_disk::SECTOR_SIZE)
        .enumerate()
    {
        chunk.fill(bytes[sector]);
    }
    block
}

/// The whole image as a list of blocks, for sets and comparisons.
pub fn blocks_of(image: &DiskImage) -> Vec<Block> {
    (0..image.size_blocks())
        .map(|addr| image.block(addr).cloned().unwrap_or_default())
        .collect()
}

/// The reference model: per block a durable value and the writes since the last sync, kept as
/// plainly as possible (no caps, no dirty sets, no sharing).
#[derive(Clone, Debug)]
pub struct ValueSets {
    pub durable: Vec<Block>,
    pub pending: Vec<Vec<Block>>,
}

impl ValueSets {
    pub fn new(size_blocks: u64) -> ValueSets {
        let size = size_blocks as usize;
        ValueSets {
            durable: vec![Block::zeroed(); size],
            pending: vec![Vec::new(); size],
        }
    }

    pub fn write(&mut self, addr: Addr, block: &Block) {
        self.pending[addr as usize].push(block.clone());
    }

    pub fn newest(&self, addr: Addr) -> &Block {
        let index = addr as usize;
        self.pending[index].last().unwrap_or(&self.durable[index])
    }

    pub fn sync(&mut self) {
        for (durable, pending) in self.durable.iter_mut().zip(self.pending.iter_mut()) {
            if let Some(newest) = pending.pop() {
                *durable = newest;
            }
            pending.clear();
        }
    }

    /// A failed sync: the writes since the last good sync are gone.
    pub fn lose_pending(&mut self) {
        self.pending.iter_mut().for_each(Vec::clear);
    }

    /// {durable} ∪ pending at `addr`, each distinct value once.
    pub fn candidates(&self, addr: Addr) -> Vec<Block> {
        let index = addr as usize;
        let mut values: Vec<Block> = Vec::new();
        for value in std::iter::once(&self.durable[index]).chain(&self.pending[index]) {
            if !values.contains(value) {
                values.push(value.clone());
            }
        }
        values
    }

    /// Number of whole-block crash states: the product of distinct candidates over blocks.
    pub fn state_count(&self) -> u128 {
        (0..self.durable.len() as Addr)
            .map(|a| self.candidates(a).len() as u128)
            .product()
    }

    /// Number of torn crash states: the product over every sector of its distinct candidates.
    pub fn torn_state_count(&self) -> u128 {
        let mut count = 1u128;
        for addr in 0..self.durable.len() as Addr {
            let values = self.candidates(addr);
            for sector in 0..SECTORS_PER_BLOCK {
                let distinct: HashSet<&[u8]> = values.iter().map(|v| v.sector(sector)).collect();
                count *= distinct.len() as u128;
            }
        }
        count
    }

    /// Every whole-block crash state (only call when `state_count` is small).
    pub fn all_states(&self) -> HashSet<Vec<Block>> {
        let mut states: Vec<Vec<Block>> = vec![Vec::new()];
        for addr in 0..self.durable.len() as Addr {
            let values = self.candidates(addr);
            states = states
                .into_iter()
                .flat_map(|prefix| {
                    values.iter().map(move |value| {
                        let mut state = prefix.clone();
                        state.push(value.clone());
                        state
                    })
                })
                .collect();
        }
        states.into_iter().collect()
    }

    /// `Ok` if every block of `image` is its durable value or one of its pending writes.
    pub fn allows(&self, image: &DiskImage) -> Result<(), String> {
        self.check_size(image)?;
        for addr in 0..self.durable.len() as Addr {
            let found = image.block(addr).cloned().unwrap_or_default();
            if !self.candidates(addr).contains(&found) {
                return Err(format!(
                    "block {addr}: {found:?} is neither durable nor pending"
                ));
            }
        }
        Ok(())
    }

    /// `Ok` if every sector of every block of `image` is that sector of an allowed value.
    pub fn allows_torn(&self, image: &DiskImage) -> Result<(), String> {
        self.check_size(image)?;
        for addr in 0..self.durable.len() as Addr {
            let found = image.block(addr).cloned().unwrap_or_default();
            let values = self.candidates(addr);
            for sector in 0..SECTORS_PER_BLOCK {
                if !values
                    .iter()
                    .any(|v| v.sector(sector) == found.sector(sector))
                {
                    return Err(format!(
                        "block {addr} sector {sector}: not from an allowed value"
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_size(&self, image: &DiskImage) -> Result<(), String> {
        if image.size_blocks() != self.durable.len() as u64 {
            return Err(format!(
                "image has {} blocks, model {}",
                image.size_blocks(),
                self.durable.len()
            ));
        }
        Ok(())
    }
}

/// Prints the seed of a deterministic run if the run panics, so the failure can be replayed.
pub struct SeedGuard(pub u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failing seed: {}", self.0);
        }
    }
}
