//! The workloads, named exactly as in the JSON output, and the geometry every system is given.

use std::fmt;

/// One measured workload. The name (`Workload::name`) is the string in the JSON `workload` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    Durable1Blk1Thr,
    Durable1Blk8Thr,
    Durable16Blk1Thr,
    Durable16Blk8Thr,
    Nosync1Blk1Thr,
    ReadInstalled,
    ReadLogged,
    RecoverFullLog,
    ReplicaResync,
}

/// What a workload does, for the runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Transactions of `blocks_per_txn` blocks, each durable when it returns, from `threads`.
    Durable {
        blocks_per_txn: usize,
        threads: usize,
    },
    /// Transactions whose durability is deferred, with a flush every `BenchConfig::flush_every`.
    Nosync { blocks_per_txn: usize },
    /// Random single-block reads from one thread.
    Read(ReadKind),
    /// One timed recovery after an untimed crash set-up.
    Recovery(RecoveryKind),
}

/// Where the blocks being read live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKind {
    /// Written, durable, and moved to their home location (checkpointed / installed).
    Installed,
    /// Written and durable, but still only in the log (not yet installed).
    Logged,
}

/// What is recovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryKind {
    /// Reopen after a crash that left the log full of committed, uninstalled transactions.
    FullLog,
    /// Bring a fresh replica up to date with the whole disk.
    ReplicaResync,
}

impl Workload {
    pub const ALL: [Workload; 9] = [
        Workload::Durable1Blk1Thr,
        Workload::Durable1Blk8Thr,
        Workload::Durable16Blk1Thr,
        Workload::Durable16Blk8Thr,
        Workload::Nosync1Blk1Thr,
        Workload::ReadInstalled,
        Workload::ReadLogged,
        Workload::RecoverFullLog,
        Workload::ReplicaResync,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Durable1Blk1Thr => "durable-1blk-1thr",
            Workload::Durable1Blk8Thr => "durable-1blk-8thr",
            Workload::Durable16Blk1Thr => "durable-16blk-1thr",
            Workload::Durable16Blk8Thr => "durable-16blk-8thr",
            Workload::Nosync1Blk1Thr => "nosync-1blk-1thr",
            Workload::ReadInstalled => "read-installed",
            Workload::ReadLogged => "read-logged",
            Workload::RecoverFullLog => "recover-full-log",
            Workload::ReplicaResync => "replica-resync",
        }
    }

    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    pub fn kind(self) -> WorkloadKind {
        let durable = |blocks_per_txn, threads| WorkloadKind::Durable {
            blocks_per_txn,
            threads,
        };
        match self {
            Workload::Durable1Blk1Thr => durable(1, 1),
            Workload::Durable1Blk8Thr => durable(1, 8),
            Workload::Durable16Blk1Thr => durable(16, 1),
            Workload::Durable16Blk8Thr => durable(16, 8),
            Workload::Nosync1Blk1Thr => WorkloadKind::Nosync { blocks_per_txn: 1 },
            Workload::ReadInstalled => WorkloadKind::Read(ReadKind::Installed),
            Workload::ReadLogged => WorkloadKind::Read(ReadKind::Logged),
            Workload::RecoverFullLog => WorkloadKind::Recovery(RecoveryKind::FullLog),
            Workload::ReplicaResync => WorkloadKind::Recovery(RecoveryKind::ReplicaResync),
        }
    }

    /// Threads that drive this workload (and so the thread indices a system must accept).
    pub fn threads(self) -> usize {
        match self.kind() {
            WorkloadKind::Durable { threads, .. } => threads,
            _ => 1,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The logical shape every system is created with, so that all do the same work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Logical blocks addressable by transactions (`0..disk_blocks`); prefilled at creation.
    pub disk_blocks: u64,
    /// Blocks of log a log-structured system is formatted with; also the size of the
    /// "full log" recovered by `recover-full-log`.
    pub log_blocks: u64,
    /// Highest thread count any workload uses; thread `t` writes only in its own region.
    pub max_threads: usize,
}

impl Geometry {
    /// Blocks in each thread's disjoint region.
    pub fn region_blocks(&self) -> u64 {
        self.disk_blocks / self.max_threads as u64
    }

    /// The first block of thread `thread`'s region.
    pub fn region_start(&self, thread: usize) -> u64 {
        self.region_blocks() * thread as u64
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        if self.max_threads == 0 || self.region_blocks() < 64 {
            return Err(crate::BenchError::Config(format!(
                "disk of {} blocks is too small for {} threads (each needs at least 64 blocks)",
                self.disk_blocks, self.max_threads
            )));
        }
        if self.log_blocks == 0 {
            return Err(crate::BenchError::Config(
                "log_blocks must be positive".into(),
            ));
        }
        Ok(())
    }
}
