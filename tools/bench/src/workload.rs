//! The workloads, named exactly as in the JSON output, and the geometry every system is given.
//!
//! Writing workloads take a thread count, so a sweep (`durable-1blk` at 1, 2, 4, 8, 16 threads)
//! is a list of workloads like any other: `durable-1blk-4thr` is named, run and reported the
//! same way as the documented `durable-1blk-1thr` and `durable-1blk-8thr`.
//!
//! The reopen-after-crash workloads carry the size of the disk they crash
//! (`reopen-after-crash-1g`, `reopen-after-crash-16g`): each round formats images of that size,
//! so they are run only when asked for by name ([`Workload::REOPEN`]), never by default.

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
    /// Reopen, and read one block of, images of `disk_mib` MiB that a writer was killed on.
    ReopenAfterCrash {
        /// The logical size of the disk, in MiB (each image is a little larger).
        disk_mib: u64,
    },
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
    /// Open images of `disk_mib` MiB that a writer was killed on, and serve one block.
    ReopenAfterCrash {
        /// The logical size of the disk, in MiB.
        disk_mib: u64,
    },
}

impl RecoveryKind {
    /// The workload that runs this recovery.
    pub fn workload(self) -> Workload {
        match self {
            RecoveryKind::FullLog => Workload::RecoverFullLog,
            RecoveryKind::ReplicaResync => Workload::ReplicaResync,
            RecoveryKind::ReopenAfterCrash { disk_mib } => Workload::ReopenAfterCrash { disk_mib },
        }
    }
}

/// MiB in a GiB: the unit a reopen workload's name switches to.
const MIB_PER_GIB: u64 = 1024;
/// 4 KiB blocks in a MiB.
const BLOCKS_PER_MIB: u64 = 256;

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

    /// Reopen after a crash, on a 1 GiB disk.
    pub const REOPEN_AFTER_CRASH_1G: Workload = Workload::ReopenAfterCrash {
        disk_mib: MIB_PER_GIB,
    };
    /// Reopen after a crash, on a 16 GiB disk.
    pub const REOPEN_AFTER_CRASH_16G: Workload = Workload::ReopenAfterCrash {
        disk_mib: 16 * MIB_PER_GIB,
    };

    /// The documented reopen-after-crash workloads: each round of one formats images of its
    /// size and crashes a writer on them, so they run only when named (`--workloads`).
    pub const REOPEN: [Workload; 2] = [
        Workload::REOPEN_AFTER_CRASH_1G,
        Workload::REOPEN_AFTER_CRASH_16G,
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
    /// `reopen-after-crash-{size}` (`1g`, `16g`; in MiB, `8m`, where the size is not a whole
    /// number of GiB), or one of the fixed names of the single-threaded workloads.
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
            Workload::ReopenAfterCrash { disk_mib } if disk_mib % MIB_PER_GIB == 0 => {
                format!("{REOPEN_PREFIX}{}g", disk_mib / MIB_PER_GIB)
            }
            Workload::ReopenAfterCrash { disk_mib } => format!("{REOPEN_PREFIX}{disk_mib}m"),
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
        if let Some(size) = name.strip_prefix(REOPEN_PREFIX) {
            return Workload::reopen_from_size(size);
        }
        let (make, rest): (fn(usize, usize) -> Workload, &str) =
            if let Some(rest) = name.strip_prefix("durable-") {
                (Workload::durable, rest)
            } else {
                (Workload::nosync, name.strip_prefix("nosync-")?)
            };
        let (blocks, threads) = rest.strip_suffix("thr")?.split_once("blk-")?;
        let number = |text: &str| positive_number(text).and_then(|n| usize::try_from(n).ok());
        Some(make(number(blocks)?, number(threads)?))
    }

    /// `1g`, `16g` or `8m` as a reopen workload; None for any other spelling, a whole number
    /// of GiB in MiB (`1024m` is `1g`) included, and for a size whose bytes overflow.
    fn reopen_from_size(size: &str) -> Option<Workload> {
        let disk_mib = if let Some(gib) = size.strip_suffix('g') {
            positive_number(gib)?.checked_mul(MIB_PER_GIB)?
        } else {
            let mib = positive_number(size.strip_suffix('m')?)?;
            if mib % MIB_PER_GIB == 0 {
                return None;
            }
            mib
        };
        disk_mib.checked_mul(1 << 20)?;
        Some(Workload::ReopenAfterCrash { disk_mib })
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
            Workload::ReopenAfterCrash { disk_mib } => {
                WorkloadKind::Recovery(RecoveryKind::ReopenAfterCrash { disk_mib })
            }
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

/// The name of a reopen workload before its size.
const REOPEN_PREFIX: &str = "reopen-after-crash-";

/// A positive decimal number in its one spelling: digits only, no sign, no leading zero, so that
/// every name parses back to exactly one workload.
fn positive_number(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    text.parse()
        .ok()
        .filter(|n| digits && *n > 0 && !text.starts_with('0'))
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
    /// Blocks of a disk of `disk_mib` MiB (a reopen workload's size).
    pub fn blocks_of_mib(disk_mib: u64) -> u64 {
        disk_mib.saturating_mul(BLOCKS_PER_MIB)
    }

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
