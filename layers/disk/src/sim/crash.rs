//! Crash-state enumeration: every state a crash may leave on a [`SimDisk`] (each exactly once,
//! counted up front), the `n`-th of them, a random one, and torn writes at sector granularity.

use super::image::{durable_of, DiskImage};
use super::model::{SimDisk, State};
use crate::block::{Addr, Block, SECTORS_PER_BLOCK, SECTOR_SIZE};
use crate::rng::SplitMix64;
use std::sync::Arc;

/// Returned when a crash-state enumeration would exceed the caller's cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{count} crash states exceed the cap of {cap}")]
pub struct TooManyStates {
    /// How many states there are.
    pub count: u128,
    /// The most the caller would take.
    pub cap: u128,
}

/// One independent choice of a crash: a block (or, torn, one sector of it) and its candidates.
#[derive(Clone, Debug)]
struct ChoiceUnit {
    addr: Addr,
    /// `Some(s)`: only sector `s` of the block is chosen by this unit (torn mode).
    sector: Option<usize>,
    candidates: Vec<Arc<Block>>,
}

/// Every crash state of a `SimDisk`, each exactly once, as an iterator of [`DiskImage`]s.
///
/// The count is known up front ([`CrashStates::total`]): the product, over blocks (or sectors in
/// torn mode), of the number of distinct values a crash may leave there. It saturates at
/// `u128::MAX`.
#[derive(Clone, Debug)]
pub struct CrashStates {
    base: DiskImage,
    units: Vec<ChoiceUnit>,
    /// Mixed-radix counter: the candidate each unit takes in the next state; `None` when done.
    next: Option<Vec<usize>>,
    total: u128,
    produced: u128,
}

impl CrashStates {
    fn new(base: DiskImage, units: Vec<ChoiceUnit>) -> CrashStates {
        // A unit with one candidate is no choice: it would count each state more than once
        // in nothing but the counter, and belongs in the base image instead.
        for unit in &units {
            assert!(
                unit.candidates.len() >= 2,
                "disk: crash choice at block {} (sector {:?}) has {} candidates, expected at least 2",
                unit.addr,
                unit.sector,
                unit.candidates.len()
            );
        }
        let total = units.iter().fold(1u128, |acc, unit| {
            acc.saturating_mul(unit.candidates.len() as u128)
        });
        let next = Some(vec![0; units.len()]);
        CrashStates {
            base,
            units,
            next,
            total,
            produced: 0,
        }
    }

    /// How many states the enumeration yields in all (saturating at `u128::MAX`).
    pub fn total(&self) -> u128 {
        self.total
    }

    /// How many states it has yielded so far.
    pub fn produced(&self) -> u128 {
        self.produced
    }

    fn build(&self, choice: &[usize]) -> DiskImage {
        assert_eq!(
            choice.len(),
            self.units.len(),
            "disk: a crash state needs one choice per unit"
        );
        let mut image = self.base.clone();
        for (unit, &pick) in self.units.iter().zip(choice) {
            let chosen = &unit.candidates[pick];
            let slot = &mut image.blocks[unit.addr as usize];
            match unit.sector {
                None => *slot = Arc::clone(chosen),
                Some(sector) => {
                    let range = sector * SECTOR_SIZE..(sector + 1) * SECTOR_SIZE;
                    Arc::make_mut(slot).as_bytes_mut()[range.clone()]
                        .copy_from_slice(&chosen.as_bytes()[range]);
                }
            }
        }
        image
    }

    fn advance(&mut self) {
        let Some(counter) = self.next.as_mut() else {
            return;
        };
        for (index, unit) in self.units.iter().enumerate() {
            counter[index] += 1;
            if counter[index] < unit.candidates.len() {
                return;
            }
            counter[index] = 0;
        }
        self.next = None;
    }
}

impl Iterator for CrashStates {
    type Item = DiskImage;

    fn next(&mut self) -> Option<DiskImage> {
        let choice = self.next.as_ref()?;
        let image = self.build(choice);
        self.produced += 1;
        self.advance();
        if self.next.is_none() && self.total != u128::MAX {
            assert_eq!(
                self.produced, self.total,
                "disk: enumeration yielded a wrong number of crash states"
            );
        }
        Some(image)
    }
}

impl SimDisk {
    fn choice_units(state: &State, torn: bool) -> Vec<ChoiceUnit> {
        let mut units = Vec::new();
        for &addr in &state.dirty {
            let values = state.slots[addr as usize].distinct_values();
            if !torn {
                if values.len() > 1 {
                    units.push(ChoiceUnit {
                        addr,
                        sector: None,
                        candidates: values,
                    });
                }
                continue;
            }
            for sector in 0..SECTORS_PER_BLOCK {
                let mut candidates: Vec<Arc<Block>> = Vec::new();
                for value in &values {
                    if !candidates
                        .iter()
                        .any(|c| c.sector(sector) == value.sector(sector))
                    {
                        candidates.push(Arc::clone(value));
                    }
                }
                if candidates.len() > 1 {
                    units.push(ChoiceUnit {
                        addr,
                        sector: Some(sector),
                        candidates,
                    });
                }
            }
        }
        units
    }

    /// Every state a crash now may leave, each once. `torn` tears pending writes at 512-byte
    /// sector granularity. Works on a crashed disk (its frozen value sets) or a running one.
    pub fn crash_states(&self, torn: bool) -> CrashStates {
        // The base image and the value sets must come from one locked view: a `sync` between
        // them would leave a block that is no longer dirty at its old durable value.
        let state = self.state.lock();
        let base = durable_of(&state);
        CrashStates::new(base, SimDisk::choice_units(&state, torn))
    }

    /// As [`SimDisk::crash_states`], refusing when there are more than `cap` states.
    pub fn crash_states_capped(&self, torn: bool, cap: u128) -> Result<CrashStates, TooManyStates> {
        let states = self.crash_states(torn);
        if states.total() > cap {
            return Err(TooManyStates {
                count: states.total(),
                cap,
            });
        }
        Ok(states)
    }

    /// The number of crash states, without enumerating them.
    pub fn crash_state_count(&self, torn: bool) -> u128 {
        self.crash_states(torn).total()
    }

    /// One crash state, each block (or sector, if `torn`) chosen uniformly by `rng`.
    pub fn random_crash_state(&self, rng: &mut SplitMix64, torn: bool) -> DiskImage {
        let states = self.crash_states(torn);
        let choice: Vec<usize> = states
            .units
            .iter()
            .map(|unit| rng.below(unit.candidates.len() as u64) as usize)
            .collect();
        states.build(&choice)
    }

    /// The `index`-th state of the enumeration order of [`SimDisk::crash_states`].
    pub fn nth_crash_state(&self, torn: bool, mut index: u128) -> Option<DiskImage> {
        let states = self.crash_states(torn);
        if index >= states.total() {
            return None;
        }
        let mut choice = Vec::with_capacity(states.units.len());
        for unit in &states.units {
            let radix = unit.candidates.len() as u128;
            choice.push((index % radix) as usize);
            index /= radix;
        }
        // Postcondition: an index below the total is used up exactly by the mixed radix.
        assert_eq!(
            index, 0,
            "disk: crash state index left over after choosing every unit"
        );
        Some(states.build(&choice))
    }
}
