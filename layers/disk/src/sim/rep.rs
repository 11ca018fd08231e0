//! The rep invariant of a [`SimDisk`] (see the crate documentation), checked after every
//! operation in debug builds.

#[cfg(debug_assertions)]
use super::model::State;
use super::model::{SimDisk, Status, MAX_PENDING_PER_BLOCK};
#[cfg(feature = "expensive-checks")]
use crate::block::Addr;

impl SimDisk {
    /// The rep invariant (see the crate documentation). Panics, naming the block, when broken.
    pub fn check_rep(&self) {
        #[cfg_attr(not(debug_assertions), allow(unused_mut))]
        let mut state = self.state.lock();
        assert_eq!(
            state.slots.len() as u64,
            self.size_blocks,
            "disk: slot count != size_blocks"
        );
        let mut pending_total = 0usize;
        for &addr in &state.dirty {
            let slot = state
                .slots
                .get(addr as usize)
                .unwrap_or_else(|| panic!("disk: dirty address {addr} out of range"));
            assert!(
                !slot.pending.is_empty(),
                "disk: block {addr} marked dirty with no pending write"
            );
            assert!(
                slot.pending.len() <= MAX_PENDING_PER_BLOCK,
                "disk: block {addr} has {} pending writes, max {MAX_PENDING_PER_BLOCK}",
                slot.pending.len()
            );
            pending_total += slot.pending.len();
        }
        assert_eq!(
            pending_total, state.pending_total,
            "disk: pending-write count out of step"
        );
        assert_eq!(
            state.trace.len() as u64,
            state.ops,
            "disk: trace length != operation count"
        );
        match state.status {
            Status::Running => {}
            Status::Crashed { at_op } | Status::Failed { at_op } => {
                assert!(
                    at_op <= state.ops,
                    "disk: stopped at op {at_op} beyond ops {}",
                    state.ops
                )
            }
        }
        #[cfg(feature = "expensive-checks")]
        for (addr, slot) in state.slots.iter().enumerate() {
            let addr = addr as Addr;
            assert_eq!(
                !slot.pending.is_empty(),
                state.dirty.contains(&addr),
                "disk: dirty set wrong at block {addr}"
            );
        }
        #[cfg(debug_assertions)]
        SimDisk::check_history(&mut state);
    }

    /// The part of the rep invariant that spans calls (see [`RepSeen`]).
    #[cfg(debug_assertions)]
    fn check_history(state: &mut State) {
        let (before, now) = (state.seen.ops, state.ops);
        assert!(
            now >= before,
            "disk: operation counter went back from {before} to {now}"
        );
        state.seen.ops = now;
        if state.status == Status::Running {
            assert!(
                state.seen.stopped.is_none(),
                "disk: a stopped disk is running again"
            );
            return;
        }
        let current = (
            state.status,
            state.stats,
            state.pending_total,
            state.dirty.len(),
        );
        let at_stop = *state.seen.stopped.get_or_insert(current);
        assert_eq!(
            at_stop, current,
            "disk: a stopped disk changed (status, stats, pending, dirty)"
        );
    }
}
