//! A crash oracle for the file system, for tests and the crash-point fuzzer: a random
//! workload generator ([`workload`], [`random_op`]), an in-memory model of the file system
//! (inodes, hard links, modes, owners and times: [`Model`]),
//! the same operations run on an [`Fs`](crate::Fs) ([`run_op`]), and a [`Recorder`] that runs a
//! workload on a file system whose store may crash at any call, remembers every state recovery
//! may legally produce, and checks a recovered file system against them
//! ([`Recorder::check_recovered`]).
//!
//! The allowed states after a crash are the model after some prefix of the completed
//! operations that includes every one before the last successful fsync (every completed one
//! with `sync_every_op`), plus what the operation in flight may leave: nothing, all of it, or
//! (a write split into chunks) a prefix of its chunks. A completed split write that was not yet
//! flushed may likewise be cut between chunks.
//!
//! Times are predictable: operation `n` runs at [`op_time`]`(n)` on a file system whose clock
//! is manual ([`crate::Clock::manual`]), and the model stores the same.
//!
//! Test support: compiled only with the `test-support` feature.

mod generator;
mod model;
mod recorder;

pub use generator::{random_op, workload};
pub use model::{
    chunk_states, in_flight_states, op_time, pattern, summary, Links, Meta, Model, Node, Op, Out,
    Outcome, Path, MAX_DEPTH, NAMES, SYMLINK_TARGETS,
};
pub use recorder::{dump, run_op, run_op_errno, OracleError, Recorder};
