//! # txdisk-bench: durable-write benchmarks that hold on a noisy machine
//!
//! Every system — the raw-device **floor** (on one file, and as `floor-pair` on two mirrored
//! files: the floor of a replicated pair), txdisk (a single image and a replicated pair) and
//! its **peers** SQLite and redb — does the same logical work (transactions over 4 KiB blocks
//! at addresses `0..disk_blocks`) in one run, on the same file system, interleaved round by
//! round, so that each figure is best read as a ratio to the floor or to a peer.
//!
//! * [`SystemFactory`] / [`System`]: what a benchmarked system implements (create and open in a
//!   directory; durable and deferred-durability transactions, flush, reads, recovery).
//! * [`FloorFactory`] (`floor`, `floor-pair`), [`SqliteFactory`], [`RedbFactory`]: the floors and
//!   the peers.
//! * [`run`] with a [`BenchConfig`] (`quick` or `full`) gives a [`Report`]: a table
//!   ([`Report::table`]) and one JSON object ([`Report::to_json`]) whose `results` entries are
//!   `{system, workload, ops_per_s, mb_per_s, p50_us, p99_us, peak_rss_bytes}` and, added
//!   since, `threads`, `syncs_per_op`, `write_bytes_per_op`, `read_bytes_per_op`,
//!   `cpu_us_per_op`, `context_switches_per_op`, `ops`, `rounds_ops_per_s`, `rounds_mb_per_s`
//!   and `latency_cdf_us`.
//!   [`BenchConfig::sweep_threads`] runs the writing workloads at several thread counts in the
//!   same run.
//! * [`compare()`] of two runs ([`load_run`] finds one saved with [`save_run`] or any JSON file
//!   a run printed): each row's ratio with a noise band from the rounds, and a [`Verdict`].
//! * [`plot::write_charts`]: SVG charts of a run (throughput against threads, latency CDFs,
//!   ratios to the floor).
//!
//! The reopen-after-crash workloads ([`Workload::REOPEN`]: `reopen-after-crash-1g`, `-16g`) run
//! only when named: each round formats images of that size and kills a writer child on them
//! (the program must call [`child_entry`] first, which also runs that writer).
//!
//! Workloads are named as in the JSON ([`Workload::name`]); a system leaves out what it cannot
//! do ([`SystemFactory::supports`]). The runner checks every read against what was written, so a
//! fast wrong answer is an error, not a figure.

#![deny(missing_docs)]

pub mod compare;
mod counting;
mod crash;
mod error;
mod floor;
pub mod histogram;
mod isolation;
pub mod plot;
pub mod probe;
mod redb_store;
pub mod report;
mod runner;
mod saved;
mod sqlite;
mod system;
mod txdisk_system;
mod workload;

pub use compare::{compare, Comparison, RowChange, Verdict, DEFAULT_NOISE_FLOOR};
pub use counting::{CountingDisk, DiskCounts};
pub use error::{BenchError, Result};
pub use floor::FloorFactory;
pub use histogram::LatencyHistogram;
pub use isolation::{child_entry, Isolation};
pub use probe::Machine;
pub use redb_store::RedbFactory;
pub use report::{median_of_rounds, Measurement, Report, RssMode};
pub use runner::{run, BenchConfig};
pub use saved::{load_run, save_run, saved_path, RESULTS_DIR};
pub use sqlite::SqliteFactory;
pub use system::{RecoveryClock, RecoveryRun, System, SystemFactory};
pub use txdisk_system::{TxdiskFactory, TxdiskNbdFactory};
pub use workload::{Geometry, ReadKind, RecoveryKind, Workload, WorkloadKind};

/// The floor and the peers, in the order the table shows them.
pub fn baseline_systems() -> Vec<Box<dyn SystemFactory>> {
    vec![
        Box::new(FloorFactory { replicated: false }),
        Box::new(SqliteFactory),
        Box::new(RedbFactory),
    ]
}

/// Every system: the floor on one file and on a pair, txdisk on one image and on a pair, and
/// the peers.
pub fn all_systems() -> Vec<Box<dyn SystemFactory>> {
    vec![
        Box::new(FloorFactory { replicated: false }),
        Box::new(FloorFactory { replicated: true }),
        Box::new(TxdiskFactory { replicated: false }),
        Box::new(TxdiskFactory { replicated: true }),
        Box::new(TxdiskNbdFactory),
        Box::new(SqliteFactory),
        Box::new(RedbFactory),
    ]
}
