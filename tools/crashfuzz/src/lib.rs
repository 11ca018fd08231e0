//! # txdisk-crashfuzz: crash-point fuzzing of the txdisk stack
//!
//! **What it does.** Generates seeded random workloads (transactions of overlapping blocks
//! over the whole data region that write, read, read-modify-write and conflict; durable and
//! deferred commits, aborts, flushes, installations) and runs them on the full
//! stack as the real one is built — the logical disk over the write-ahead log over one
//! [`txdisk_disk::SimDisk`] under a checksummed disk ([`txdisk_integrity::IntegrityDisk`]), or
//! over a replicated pair of them. Each workload has two epochs: run, crash, recover, run more,
//! crash, recover. It crashes the first epoch at every disk operation ([`FuzzConfig::exhaustive`])
//! or at a sample of them, takes every crash state of the disks (up to
//! [`FuzzConfig::state_cap`], else a seeded sample; torn sectors on request), recovers each,
//! crashes that recovery again (down to [`FuzzConfig::depth`] crashes in a row) and recovers to
//! the end. Replicated runs add the fail-stop of either disk at a random operation of the
//! workload or of a recovery, and bad blocks on one disk.
//!
//! **Damage** ([`FuzzConfig::bit_rot`], [`FuzzConfig::misdirect`], [`FuzzConfig::lost_writes`]):
//! every other workload gets one — bits flipped in a block at rest before an epoch or between
//! steps of its run, a write landing at a wrong block, a write acknowledged and never applied
//! (the fuzzer drops it between the `SimDisk` and the checksummed disk). On a pair it strikes
//! anywhere on one member, and every other fault of the workload strikes that member too; on a
//! single disk it strikes the log's home blocks, their checksums and the checksummed disk's
//! superblocks — not the log region, where a lone disk cannot tell the loss of the only copy of
//! a committed record from a record a crash tore.
//!
//! **The live oracle**, while each run goes: every read of the workload against the model of
//! the run so far (the last committed value, or the transaction's own write), a transaction
//! whose read set another commit changed must conflict, every layer's `check_rep` after every
//! step (release builds too), on a pair every block read through the other member's copy
//! reading right on its own member afterwards, and, on a single disk after an injected sync
//! failure ([`FuzzConfig::sync_failures`]), the fsync gate: that step and every later commit,
//! flush and installation fail, and recovery keeps no commit past the failing step.
//!
//! **The oracle**, on every recovered state: recovery succeeds; every layer's `check_rep`
//! holds; the pair's crash invariant holds (both replicas equal, every block of each verifying
//! and a value written there, tracked across every crash of the run); on a single disk, every
//! block of the log's own region verifies; the fuzzed layer's own invariant holds; and its
//! contents equal the state after some prefix of the commit order that includes every
//! transaction whose durable commit, or a later flush, returned. Under damage, a block it
//! struck may still fail verification on the member it struck (a pair serves the other copy,
//! so every read must still return the last value written); on a single disk it may read as an
//! error — never as other bytes — and is left out of the comparison
//! ([`FuzzLayer::observe_damaged`]; a layer that cannot do this gets damage on pairs only).
//!
//! **Pluggable.** A layer of one's own on top of the logical disk implements [`FuzzLayer`]
//! (operations, model, recovery, invariant) and is fuzzed the same way with [`fuzz_layer`].
//!
//! **Replay.** Every violation carries a token; [`replay`] reproduces it exactly and shrinks it
//! to a minimal trace (fewest operations, recovery crashes and pending writes that still fail).
//!
//! Deliberately wrong variants of the stack ([`Bug`], feature `deliberate-bugs`) prove that the
//! oracle catches real bugs; the tests find each one within the default budget (reads that
//! skip verification, with damage faults).

#![deny(missing_docs)]

mod config;
mod engine;
mod error;
mod explore;
mod faults;
mod guard;
mod history;
mod layer;
mod replay;
mod report;
#[cfg(feature = "shuttle")]
pub mod schedules;
mod stack;
mod token;

pub use config::{Budget, Bug, FuzzConfig, IntegrityBug, LogBug, LogicalBug, ReplicatedBug};
pub use error::{FuzzError, Result};
pub use layer::{
    derived_block, tagged_block, ApplyError, CommitKind, CounterLayer, CounterOp, FuzzLayer,
    TxLayer, TxOp,
};
pub use replay::ReplayReport;
pub use report::{FuzzProgress, FuzzReport, Violation, ViolationKind};

use engine::Engine;
use token::Token;

impl Default for TxLayer {
    fn default() -> TxLayer {
        TxLayer {
            // The whole data region: its first and last blocks are where off-by-ones live.
            addr_span: u64::MAX,
            max_tx_blocks: 3,
        }
    }
}

/// Switches a deliberately wrong variant on for this thread while it lives.
struct BugSwitch;

impl BugSwitch {
    fn on(bug: Option<Bug>) -> BugSwitch {
        #[cfg(feature = "deliberate-bugs")]
        {
            let (mut log_bug, mut integrity_bug, mut pair_bug, mut logical_bug) =
                (None, None, None, None);
            match bug {
                Some(Bug::Log(bug)) => log_bug = Some(bug),
                Some(Bug::Integrity(bug)) => integrity_bug = Some(bug),
                Some(Bug::Replicated(bug)) => pair_bug = Some(bug),
                Some(Bug::Logical(bug)) => logical_bug = Some(bug),
                // No layer's own: the stack wraps d2 instead (see `stack`).
                Some(Bug::ReplicatedSkipsD2) | None => {}
            }
            txdisk_log::bugs::set(log_bug);
            txdisk_integrity::bugs::set(integrity_bug);
            txdisk_replicated::set_bug(pair_bug);
            txdisk_logical::bugs::set(logical_bug);
        }
        #[cfg(not(feature = "deliberate-bugs"))]
        let _ = bug;
        BugSwitch
    }
}

impl Drop for BugSwitch {
    fn drop(&mut self) {
        #[cfg(feature = "deliberate-bugs")]
        {
            txdisk_log::bugs::set(None);
            txdisk_integrity::bugs::set(None);
            txdisk_replicated::set_bug(None);
            txdisk_logical::bugs::set(None);
        }
    }
}

/// Fuzzes the stack with raw transactions ([`TxLayer`]) under `config`, calling `progress` now
/// and then (every few hundred states, and at the end).
pub fn fuzz(config: &FuzzConfig, progress: &mut dyn FnMut(&FuzzProgress)) -> Result<FuzzReport> {
    fuzz_layer(&TxLayer::default(), config, progress)
}

/// Fuzzes `layer` on top of the stack under `config`.
pub fn fuzz_layer<L: FuzzLayer>(
    layer: &L,
    config: &FuzzConfig,
    progress: &mut dyn FnMut(&FuzzProgress),
) -> Result<FuzzReport> {
    let engine = Engine::new(layer, config, false)?;
    let _switch = BugSwitch::on(config.bug);
    Ok(explore::Explorer::new(engine, config, progress).run())
}

/// Replays a token of [`fuzz`] and shrinks the violation it reproduces.
pub fn replay(token: &str) -> Result<ReplayReport> {
    replay_layer(&TxLayer::default(), token)
}

/// Replays a token of [`fuzz_layer`] on `layer`.
pub fn replay_layer<L: FuzzLayer>(layer: &L, token: &str) -> Result<ReplayReport> {
    let decoded = Token::decode(token, &layer.name())?;
    let engine = Engine::new(layer, &decoded.config, true)?;
    let _switch = BugSwitch::on(decoded.config.bug);
    Ok(replay::replay_path(&engine, token.trim(), &decoded.path))
}

/// The configuration a token was made with (budget and sampling at their defaults): what a
/// CLI prints before replaying.
pub fn token_config(token: &str, layer_name: &str) -> Result<FuzzConfig> {
    Ok(Token::decode(token, layer_name)?.config)
}
