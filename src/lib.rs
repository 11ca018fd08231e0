//! # txdisk — a crash-safe transactional logical disk
//!
//! The façade crate: it re-exports the layers of the stack, bottom to top.
//!
//! * [`disk`] — the `Disk` trait, `FileDisk` and the simulated asynchronous `SimDisk`.

pub use txdisk_disk as disk;
