//! `SimDisk`: FSCQ's asynchronous disk, in memory, with crashes and faults on a schedule.
//!
//! Every block has a durable value and the list of writes since the last `sync` (its *value
//! set*). `read` returns the newest, `sync` makes the newest durable. Every call is numbered
//! from 0; a crash scheduled at operation k makes call k and every later call return
//! [`DiskError::Crashed`](crate::DiskError::Crashed) and leaves the value sets frozen, so that
//! the states a crash may leave can be enumerated ([`SimDisk::crash_states`]) or sampled
//! ([`SimDisk::random_crash_state`]).
//!
//! One file per part: `model` (value sets and the three operations), `crash` (crash-state
//! enumeration), `faults` (the fault plan), `image` (whole-disk images) and `rep` (the rep
//! invariant).

mod crash;
mod faults;
mod image;
mod model;
mod rep;

pub use crash::{CrashStates, TooManyStates};
pub use faults::FaultPlan;
pub use image::DiskImage;
pub use model::{OpKind, SimDisk, SimStats, MAX_PENDING_PER_BLOCK};
