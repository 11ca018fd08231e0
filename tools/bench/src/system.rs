//! The interface a benchmarked system implements: a factory that creates and opens it in a
//! directory, and the opened system that workloads drive.

use crate::error::{BenchError, Result};
use crate::probe;
use crate::workload::{Geometry, ReadKind, RecoveryKind, Workload};
use std::path::Path;
use std::time::{Duration, Instant};
use txdisk_disk::{Addr, Block};

/// A kind of system under test (`floor`, `txdisk`, `txdisk-pair`, `sqlite`, `redb`).
///
/// The runner calls [`create`](SystemFactory::create) once per run (untimed: format and prefill
/// every block of `0..disk_blocks`), then [`open`](SystemFactory::open) once per measured cell,
/// and drops the opened system at the end of the cell, so each cell's peak RSS is its own.
pub trait SystemFactory: Send + Sync {
    /// The system's name in the output (the JSON `system` field).
    fn name(&self) -> &'static str;

    /// How this system is configured for the run, printed under the table and in the JSON.
    fn config_note(&self) -> String;

    /// Whether the system can do `workload`; a system leaves out what it cannot do.
    fn supports(&self, workload: Workload) -> bool;

    /// Creates the system's files in the empty directory `dir` and prefills every logical block.
    fn create(&self, dir: &Path, geometry: &Geometry) -> Result<()>;

    /// Opens what `create` made, ready for workloads.
    fn open(&self, dir: &Path, geometry: &Geometry) -> Result<Box<dyn System>>;
}

/// An opened system. Every method takes `&self`: threads `0..workload.threads()` call it at
/// once, thread `t` writing only inside its region of the [`Geometry`], so systems may keep
/// per-thread state (a connection, a file cursor) indexed by `thread`.
pub trait System: Send + Sync {
    /// One transaction writing `data[i]` at `addrs[i]`, durable when this returns.
    fn durable_txn(&self, thread: usize, addrs: &[Addr], data: &[Block]) -> Result<()>;

    /// One transaction whose durability is deferred to the next [`flush`](System::flush).
    fn nosync_txn(&self, thread: usize, addrs: &[Addr], data: &[Block]) -> Result<()> {
        let _ = (thread, addrs, data);
        Err(self.unsupported(Workload::NOSYNC_1BLK_1THR))
    }

    /// Makes every transaction committed so far durable.
    fn flush(&self) -> Result<()>;

    /// Untimed: writes `data[i]` at `addrs[i]` durably and leaves them where `kind` says, so
    /// that [`read`](System::read) of them measures that path.
    fn prepare_reads(&self, kind: ReadKind, addrs: &[Addr], data: &[Block]) -> Result<()>;

    /// The current value of block `addr`.
    fn read(&self, thread: usize, addr: Addr) -> Result<Block>;

    /// One recovery: an untimed set-up of the crashed state, then the timed recovery, whose
    /// duration, the bytes it brought back and the bytes it wrote the system reports itself,
    /// measured by a [`RecoveryClock`] around the timed part only.
    fn recover(&self, kind: RecoveryKind) -> Result<RecoveryRun> {
        Err(self.unsupported(kind.workload()))
    }

    /// Device syncs (fsync/fdatasync/FUA flushes) issued since open, if the system counts them:
    /// the runner reports syncs per transaction, which shows group commit at work.
    fn sync_count(&self) -> Option<u64> {
        None
    }

    /// The system's name, for errors.
    fn name(&self) -> &'static str;

    /// The error a system returns for a workload it cannot do.
    fn unsupported(&self, workload: Workload) -> BenchError {
        BenchError::Unsupported {
            system: self.name().to_string(),
            workload: workload.name(),
        }
    }
}

/// What one timed recovery did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecoveryRun {
    /// Bytes of user data recovered (the log's payload, or the whole disk for a resync).
    pub bytes: u64,
    /// Time of the recovery itself, set-up excluded.
    pub elapsed: Duration,
    /// Bytes the process handed to write system calls during the recovery itself (see
    /// [`probe::written_bytes`]); None where the kernel does not count them.
    pub written_bytes: Option<u64>,
    /// Bytes the process got from read system calls during the recovery itself (see
    /// [`probe::read_bytes`]); None where the kernel does not count them.
    pub read_bytes: Option<u64>,
}

/// Measures the timed part of a recovery: started where it begins, stopped where it ends, it
/// gives its duration and what the process wrote and read meanwhile, over the same span. The
/// set-up of the crashed state writes far more than most recoveries, so it must stay outside.
#[derive(Debug)]
pub struct RecoveryClock {
    started: Instant,
    written_before: Option<u64>,
    read_before: Option<u64>,
}

impl RecoveryClock {
    /// Starts timing and metering now.
    pub fn start() -> RecoveryClock {
        RecoveryClock {
            written_before: probe::written_bytes(),
            read_before: probe::read_bytes(),
            started: Instant::now(),
        }
    }

    /// The recovery that brought back `bytes` of user data ends now.
    pub fn stop(self, bytes: u64) -> RecoveryRun {
        let elapsed = self.started.elapsed();
        RecoveryRun {
            bytes,
            elapsed,
            written_bytes: probe::written_between(self.written_before, probe::written_bytes()),
            read_bytes: probe::written_between(self.read_before, probe::read_bytes()),
        }
    }
}
