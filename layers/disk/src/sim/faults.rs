//! Faults on a [`SimDisk`]: a crash or a fail-stop at an operation number (or now), a failing
//! `sync` that loses the cached writes, a misdirected write and blocks whose reads fail.

use super::model::{SimDisk, Status};
use crate::block::Addr;
use std::collections::BTreeSet;

/// Faults scheduled on a `SimDisk`, by operation number (the number of the call that is hit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The machine crashes at this operation: it and every later call return `Crashed`.
    pub crash_at_op: Option<u64>,
    /// The device fails for good at this operation: it and every later call return `Failed`.
    pub fail_stop_at_op: Option<u64>,
    /// The `sync` with this operation number fails; the writes since the last good sync are lost.
    pub fail_sync_at_op: Option<u64>,
    /// The `write` with this operation number lands at the given address instead of its own.
    pub misdirect_write_at_op: Option<(u64, Addr)>,
    /// Blocks whose reads fail with `ReadError` until they are written again (a bad sector
    /// remapped on write).
    pub read_errors: BTreeSet<Addr>,
}

impl SimDisk {
    /// Crash at operation `op` (0-based): that call and every later one return `Crashed`.
    pub fn schedule_crash(&self, op: u64) {
        self.state.lock().faults.crash_at_op = Some(op);
    }

    /// Crash now: every later call returns `Crashed`.
    pub fn crash_now(&self) {
        let mut state = self.state.lock();
        if state.status == Status::Running {
            state.status = Status::Crashed { at_op: state.ops };
        }
    }

    /// Fail for good at operation `op`: that call and every later one return `Failed`.
    pub fn schedule_fail_stop(&self, op: u64) {
        self.state.lock().faults.fail_stop_at_op = Some(op);
    }

    /// Fail for good now.
    pub fn fail_now(&self) {
        let mut state = self.state.lock();
        if state.status == Status::Running {
            state.status = Status::Failed { at_op: state.ops };
        }
    }

    /// The `sync` numbered `op` fails and loses the writes since the last good sync.
    pub fn schedule_sync_failure(&self, op: u64) {
        self.state.lock().faults.fail_sync_at_op = Some(op);
    }

    /// The `write` numbered `op` lands at `to` instead of its own address.
    pub fn schedule_misdirected_write(&self, op: u64, to: Addr) {
        assert!(
            to < self.size_blocks,
            "disk: misdirect target {to} out of range"
        );
        self.state.lock().faults.misdirect_write_at_op = Some((op, to));
    }

    /// Reads of `addr` fail with `ReadError` until it is written again.
    pub fn inject_read_error(&self, addr: Addr) {
        self.state.lock().faults.read_errors.insert(addr);
    }

    /// Installs a whole fault plan at once (replacing the current one).
    pub fn set_faults(&self, faults: FaultPlan) {
        // Checked here, as in `schedule_misdirected_write`: unchecked, the bad target would only
        // surface later as an index panic inside `write`, far from the plan that caused it.
        if let Some((op, to)) = faults.misdirect_write_at_op {
            assert!(
                to < self.size_blocks,
                "disk: misdirect target {to} (op {op}) out of range"
            );
        }
        self.state.lock().faults = faults;
    }
}

/// How the plan hits the operation numbered `op`: the rules of each fault, in one place.
impl FaultPlan {
    /// The status the disk stops in at `op`, if a scheduled crash or fail-stop is due (a crash
    /// wins when both are).
    pub(super) fn stop_at(&self, op: u64) -> Option<Status> {
        if self.crash_at_op.is_some_and(|at| at <= op) {
            return Some(Status::Crashed { at_op: op });
        }
        if self.fail_stop_at_op.is_some_and(|at| at <= op) {
            return Some(Status::Failed { at_op: op });
        }
        None
    }

    /// Where the write numbered `op`, addressed to `addr`, lands.
    pub(super) fn write_target(&self, op: u64, addr: Addr) -> Addr {
        match self.misdirect_write_at_op {
            Some((at, to)) if at == op => to,
            _ => addr,
        }
    }

    /// Whether the sync numbered `op` fails.
    pub(super) fn sync_fails(&self, op: u64) -> bool {
        self.fail_sync_at_op == Some(op)
    }
}
