//! The workloads, named exactly as in the JSON output, and the geometry every system is given.
//!
//! Writing workloads take a thread count, so a sweep (`durable-1blk` at 1, 2, 4, 8, 16 threads)
//! is a list of workloads like any other: `durable-1blk-4thr` is named, run and reported the
//! same way as the documented `durable-1blk-1thr` and `durable-1blk-8thr`.

use std::fmt;

/// One measured workload. The name (`Workload::name`) is the string in the JSON `workload` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// Transactions of `blocks_per_txn` blocks, each durable when it returns, from `threads`.
    Durable {
        /// Blocks each transaction writes.
        blocks_per_txn: usize,
        /// Threads committing concurrently.
        threads: usize,
    },
    /// Transactions whose durability is deferred, from `threads`, each of which flushes after
    /// every `BenchConfig::flush_every` of its own transactions.
    Nosync {
        /// Blocks each transaction writes.
        blocks_per_txn: usize,
        /// Threads committing concurrently.
        threads: usize,
    },
    /// Random single-block reads of blocks installed at home.
    ReadInstalled,
    /// Random single-block reads of blocks still in the log.
    ReadLogged,
    /// Recovery of a log full of committed, uninstalled transactions.
    RecoverFullLog,
    /// Resync of a fresh replica with the whole disk.
    ReplicaResync,
}

/// What a workload does, for the runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Transactions of `blocks_per_txn` blocks, each durable when it returns, from `threads`.
    Durable {
        /// Blocks each transaction writes.
        blocks_per_txn: usize,
        /// Threads committing concurrently.
        threads: usize,
    },
    /// Transactions whose durability is deferred, with a flush every `BenchConfig::flush_every`.
    Nosync {
        /// Blocks each transaction writes.
        blocks_per_txn: usize,
        /// Threads committing concurrently.
        threads: usize,
    },
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
    /// Durable one-block transactions from one thread.
    pub const DURABLE_1BLK_1THR: Workload = Workload::durable(1, 1);
    /// Durable one-block transactions from eight threads.
    pub const DURABLE_1BLK_8THR: Workload = Workload::durable(1, 8);
    /// Durable sixteen-block transactions from one thread.
    pub const DURABLE_16BLK_1THR: Workload = Workload::durable(16, 1);
    /// Durable sixteen-block transactions from eight threads.
    pub const DURABLE_16BLK_8THR: Workload = Workload::durable(16, 8);
    /// Deferred-durability one-block transactions from one thread.
    pub const NOSYNC_1BLK_1THR: Workload = Workload::nosync(1, 1);

    /// The documented workloads, in the order the table shows them: a run without a thread
    /// sweep runs exactly these.
    pub const ALL: [Workload; 9] = [
        Workload::DURABLE_1BLK_1THR,
        Workload::DURABLE_1BLK_8THR,
        Workload::DURABLE_16BLK_1THR,
        Workload::DURABLE_16BLK_8THR,
        Workload::NOSYNC_1BLK_1THR,
        Workload::ReadInstalled,
        Workload::ReadLogged,
        Workload::RecoverFullLog,
        Workload::ReplicaResync,
    ];

    /// A durable workload of `blocks_per_txn`-block transactions from `threads`.
    pub const fn durable(blocks_per_txn: usize, threads: usize) -> Workload {
        Workload::Durable {
            blocks_per_txn,
            threads,
        }
    }

    /// A deferred-durability workload of `blocks_per_txn`-block transactions from `threads`.
    pub const fn nosync(blocks_per_txn: usize, threads: usize) -> Workload {
        Workload::Nosync {
            blocks_per_txn,
            threads,
        }
    }

    /// The JSON name: `durable-{blocks}blk-{threads}thr`, `nosync-{blocks}blk-{threads}thr`,
    /// or one of the fixed names of the single-threaded workloads.
    pub fn name(self) -> String {
        match self {
            Workload::Durable { threads, .. } | Workload::Nosync { threads, .. } => {
                format!("{}-{threads}thr", self.family())
            }
            _ => self.family(),
        }
    }

    /// The name without the thread count: what a thread sweep varies over (`durable-1blk`).
    /// For reads and recoveries, the name itself.
    pub fn family(self) -> String {
        match self {
            Workload::Durable { blocks_per_txn, .. } => format!("durable-{blocks_per_txn}blk"),
            Workload::Nosync { blocks_per_txn, .. } => format!("nosync-{blocks_per_txn}blk"),
            Workload::ReadInstalled => "read-installed".into(),
            Workload::ReadLogged => "read-logged".into(),
            Workload::RecoverFullLog => "recover-full-log".into(),
            Workload::ReplicaResync => "replica-resync".into(),
        }
    }

    /// Parses what `name` prints; None for anything else (zero blocks or threads included).
    pub fn from_name(name: &str) -> Option<Workload> {
        let fixed = [
            Workload::ReadInstalled,
            Workload::ReadLogged,
            Workload::RecoverFullLog,
            Workload::ReplicaResync,
        ];
        if let Some(workload) = fixed.into_iter().find(|w| w.name() == name) {
            return Some(workload);
        }
        let (make, rest): (fn(usize, usize) -> Workload, &str) =
            if let Some(rest) = name.strip_prefix("durable-") {
                (Workload::durable, rest)
            } else {
                (Workload::nosync, name.strip_prefix("nosync-")?)
            };
        let (blocks, threads) = rest.strip_suffix("thr")?.split_once("blk-")?;
        let number = |text: &str| -> Option<usize> {
            // Digits only, so that every name parses back to exactly one spelling.
            let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
            text.parse()
                .ok()
                .filter(|n| digits && *n > 0 && !text.starts_with('0'))
        };
        Some(make(number(blocks)?, number(threads)?))
    }

    /// What the workload does.
    pub fn kind(self) -> WorkloadKind {
        match self {
            Workload::Durable {
                blocks_per_txn,
                threads,
            } => WorkloadKind::Durable {
                blocks_per_txn,
                threads,
            },
            Workload::Nosync {
                blocks_per_txn,
                threads,
            } => WorkloadKind::Nosync {
                blocks_per_txn,
                threads,
            },
            Workload::ReadInstalled => WorkloadKind::Read(ReadKind::Installed),
            Workload::ReadLogged => WorkloadKind::Read(ReadKind::Logged),
            Workload::RecoverFullLog => WorkloadKind::Recovery(RecoveryKind::FullLog),
            Workload::ReplicaResync => WorkloadKind::Recovery(RecoveryKind::ReplicaResync),
        }
    }

    /// Threads that drive this workload (and so the thread indices a system must accept).
    pub fn threads(self) -> usize {
        match self {
            Workload::Durable { threads, .. } | Workload::Nosync { threads, .. } => threads,
            _ => 1,
        }
    }

    /// Blocks written per transaction; 0 for reads and recoveries.
    pub fn blocks_per_txn(self) -> usize {
        match self {
            Workload::Durable { blocks_per_txn, .. } | Workload::Nosync { blocks_per_txn, .. } => {
                blocks_per_txn
            }
            _ => 0,
        }
    }

    /// The same workload from `threads` threads; None for reads and recoveries, which a sweep
    /// leaves alone.
    pub fn with_threads(self, threads: usize) -> Option<Workload> {
        match self {
            Workload::Durable { blocks_per_txn, .. } => {
                Some(Workload::durable(blocks_per_txn, threads))
            }
            Workload::Nosync { blocks_per_txn, .. } => {
                Some(Workload::nosync(blocks_per_txn, threads))
            }
            _ => None,
        }
    }

    /// Whether each operation is a transaction durable on return (the latency CDFs are drawn
    /// for these).
    pub fn is_durable(self) -> bool {
        matches!(self, Workload::Durable { .. })
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
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
