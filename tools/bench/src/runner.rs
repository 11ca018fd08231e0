//! The runner: every system does the same workload on the same file system, interleaved round
//! by round (w1 on A, B, C; w2 on A, B, C; …; then the next round, starting from another
//! system), so that a noisy neighbour or a file system's mood hits all systems alike and the
//! ratios hold. Each figure is the median round.
//!
//! Peak RSS: by default each cell runs in a child process (the program re-executed, see
//! [`crate::child_entry`]), so its VmHWM is that cell's alone: the harness (~5 MiB) plus the one
//! system opened for it. In-process isolation (tests) instead resets VmHWM by writing 5 to
//! /proc/self/clear_refs before each cell; that figure also carries what earlier cells left
//! behind (glibc keeps per-thread arenas after 8-thread cells: ~8 MiB measured), which is why
//! it is not the default.

use crate::error::{BenchError, Result};
use crate::histogram::{LatencyHistogram, CDF_QUANTILES};
use crate::isolation::{self, Isolation};
use crate::probe::{self, Machine};
use crate::report::{median_of_rounds, Measurement, Report, RssMode};
use crate::system::{System, SystemFactory};
use crate::workload::{Geometry, ReadKind, RecoveryKind, Workload, WorkloadKind};
use std::path::PathBuf;
use std::sync::Barrier;
use std::time::{Duration, Instant};
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Addr, Block, BLOCK_SIZE};

/// Distinct blocks of data cycled through by writers, made before timing starts.
const POOL_BLOCKS: usize = 64;
/// Upper bound on recoveries per cell, whatever their speed.
const MAX_RECOVERIES_PER_CELL: usize = 50;
/// Reopens after a crash per cell: each formats its images and crashes a writer on them first,
/// which takes seconds, and the reopen of a large pair minutes, so a round is one of them.
const REOPENS_PER_CELL: usize = 1;

/// What to run and how long.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Directory for the systems' files (one subdirectory each); must be on a disk file system.
    pub dir: PathBuf,
    /// Sizes of the systems' disks and logs, and the most threads a workload uses.
    pub geometry: Geometry,
    /// Workloads to run, in table order.
    pub workloads: Vec<Workload>,
    /// Interleaved rounds; each figure is the median round.
    pub rounds: usize,
    /// Measured time of each timed cell.
    pub cell_duration: Duration,
    /// Unmeasured time before it (caches, allocators, file system state settle).
    pub warmup: Duration,
    /// `nosync` workloads flush after every this many transactions.
    pub flush_every: usize,
    /// Blocks prepared for the read workloads.
    pub read_set_blocks: u64,
    /// Seeds the workloads' addresses and data: the same seed makes the same operations.
    pub seed: u64,
    /// Smaller sizes and shorter cells, for smoke tests.
    pub quick: bool,
    /// Run even where the directory is on tmpfs (only for tests of the harness itself).
    pub allow_memory_fs: bool,
    /// Remove the systems' files at the end.
    pub remove_files: bool,
    /// Where each cell runs: its own process (clean peak RSS) or this one.
    pub isolation: Isolation,
}

impl BenchConfig {
    /// About 1–2 s per cell, one round, a small disk: a run of well under a minute.
    pub fn quick(dir: PathBuf) -> BenchConfig {
        BenchConfig {
            dir,
            geometry: Geometry {
                disk_blocks: 8192,
                log_blocks: 1024,
                max_threads: 8,
            },
            workloads: Workload::ALL.to_vec(),
            rounds: 1,
            cell_duration: Duration::from_millis(400),
            warmup: Duration::from_millis(50),
            flush_every: 64,
            read_set_blocks: 512,
            seed: 0x7478_6469_736b,
            quick: true,
            allow_memory_fs: false,
            remove_files: true,
            isolation: Isolation::ChildProcess,
        }
    }

    /// Three rounds of 2 s cells on a 128 MiB disk with a 16 MiB log.
    pub fn full(dir: PathBuf) -> BenchConfig {
        BenchConfig {
            geometry: Geometry {
                disk_blocks: 32_768,
                log_blocks: 4096,
                max_threads: 8,
            },
            rounds: 3,
            cell_duration: Duration::from_secs(2),
            warmup: Duration::from_millis(200),
            read_set_blocks: 2048,
            quick: false,
            ..BenchConfig::quick(dir)
        }
    }

    /// Runs each durable and deferred workload of `workloads` from every thread count in
    /// `threads` instead (its family once per count, in the order given, where the family first
    /// appeared); reads and recoveries stay as they are. The geometry grows to the largest
    /// count, so each thread keeps a region of its own.
    pub fn sweep_threads(&mut self, threads: &[usize]) -> Result<()> {
        if threads.is_empty() || threads.contains(&0) {
            return Err(BenchError::Config(format!(
                "thread counts must be positive, got {threads:?}"
            )));
        }
        let mut swept = Vec::new();
        for workload in &self.workloads {
            let family = threads
                .iter()
                .filter_map(|&t| workload.with_threads(t))
                .collect::<Vec<_>>();
            let fresh: Vec<Workload> = if family.is_empty() {
                vec![*workload]
            } else {
                family
            };
            for workload in fresh {
                if !swept.contains(&workload) {
                    swept.push(workload);
                }
            }
        }
        self.workloads = swept;
        let most = threads.iter().copied().max().unwrap_or(1);
        self.geometry.max_threads = self.geometry.max_threads.max(most);
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        self.geometry.validate()?;
        let largest_txn = self.workloads.iter().map(|w| w.blocks_per_txn()).max();
        if largest_txn.unwrap_or(0) as u64 > self.geometry.region_blocks() {
            return Err(BenchError::Config(format!(
                "a transaction of {} blocks does not fit a thread's region of {}",
                largest_txn.unwrap_or(0),
                self.geometry.region_blocks()
            )));
        }
        let max_threads = self
            .workloads
            .iter()
            .map(|w| w.threads())
            .max()
            .unwrap_or(1);
        if max_threads > self.geometry.max_threads {
            return Err(BenchError::Config(format!(
                "a workload uses {max_threads} threads, geometry allows {}",
                self.geometry.max_threads
            )));
        }
        if self.rounds == 0 || self.flush_every == 0 || self.read_set_blocks == 0 {
            return Err(BenchError::Config(
                "rounds, flush_every and read_set_blocks must be positive".into(),
            ));
        }
        if self.read_set_blocks > self.geometry.disk_blocks {
            return Err(BenchError::Config(format!(
                "read set of {} blocks exceeds the disk's {}",
                self.read_set_blocks, self.geometry.disk_blocks
            )));
        }
        Ok(())
    }
}

/// Runs every supported (system, workload) cell of `config`, interleaved, and reports the
/// median round of each. `progress` hears one line per step (for a terminal; ignore it when
/// printing JSON).
pub fn run(
    config: &BenchConfig,
    systems: &[&dyn SystemFactory],
    progress: &mut dyn FnMut(&str),
) -> Result<Report> {
    isolation::refuse_nested_run()?;
    config.validate()?;
    let started_unix_s = probe::unix_now_s();
    std::fs::create_dir_all(&config.dir).map_err(|e| BenchError::io("mkdir", &config.dir, e))?;
    let machine = Machine::describe(&config.dir);
    if probe::is_memory_fs(&machine.fs_type) && !config.allow_memory_fs {
        return Err(BenchError::NotADiskFileSystem {
            path: config.dir.clone(),
            fs_type: machine.fs_type,
        });
    }
    for system in systems {
        let dir = system_dir(config, *system);
        progress(&format!("creating {} in {}", system.name(), dir.display()));
        std::fs::create_dir_all(&dir).map_err(|e| BenchError::io("mkdir", &dir, e))?;
        system.create(&dir, &config.geometry)?;
    }
    let rss_mode = match config.isolation {
        Isolation::ChildProcess => RssMode::PerProcess,
        Isolation::InProcess if probe::reset_peak_rss() => RssMode::PerCell,
        Isolation::InProcess => RssMode::Cumulative,
    };
    let mut cells: Vec<Vec<Measurement>> = Vec::new();
    for round in 0..config.rounds {
        for workload in &config.workloads {
            // Rotate who goes first, so no system always runs right after the same neighbour.
            for offset in 0..systems.len() {
                let system = systems[(round + offset) % systems.len()];
                if !system.supports(*workload) {
                    continue;
                }
                progress(&format!(
                    "round {}/{}: {} {}",
                    round + 1,
                    config.rounds,
                    system.name(),
                    workload
                ));
                let measurement = match config.isolation {
                    Isolation::ChildProcess => {
                        isolation::run_in_child(config, system, *workload, round)?
                    }
                    Isolation::InProcess => run_cell(config, system, *workload, round)?,
                };
                add_round(&mut cells, measurement);
            }
        }
    }
    if config.remove_files {
        for system in systems {
            let dir = system_dir(config, *system);
            std::fs::remove_dir_all(&dir).map_err(|e| BenchError::io("remove", &dir, e))?;
        }
    }
    Ok(Report {
        machine,
        dir: config.dir.display().to_string(),
        rounds: config.rounds,
        cell_seconds: config.cell_duration.as_secs_f64(),
        quick: config.quick,
        rss_mode,
        started_unix_s,
        systems: systems
            .iter()
            .map(|s| (s.name().to_string(), s.config_note()))
            .collect(),
        results: order_results(systems, cells),
    })
}

pub(crate) fn system_dir(config: &BenchConfig, system: &dyn SystemFactory) -> PathBuf {
    config.dir.join(system.name())
}

fn add_round(cells: &mut Vec<Vec<Measurement>>, measurement: Measurement) {
    match cells.iter_mut().find(|rounds| {
        rounds[0].system == measurement.system && rounds[0].workload == measurement.workload
    }) {
        Some(rounds) => rounds.push(measurement),
        None => cells.push(vec![measurement]),
    }
}

/// Medians, ordered by workload then by the systems' order.
fn order_results(systems: &[&dyn SystemFactory], cells: Vec<Vec<Measurement>>) -> Vec<Measurement> {
    let mut results: Vec<Measurement> = cells.into_iter().filter_map(median_of_rounds).collect();
    let position = |name: &str| systems.iter().position(|s| s.name() == name);
    results.sort_by_key(|m| (m.workload, position(&m.system)));
    results
}

/// What one cell's driving loop saw.
struct CellOutcome {
    /// Operations measured (after warm-up).
    ops: u64,
    /// Data bytes those operations moved.
    bytes: u64,
    /// Time over which `ops` were measured.
    measured: Duration,
    latencies: LatencyHistogram,
    /// All operations, warm-up included, and the CPU time, context switches, syncs and bytes
    /// handed to write and got from read system calls they cost (a recovery's bytes: of its
    /// timed part only).
    all_ops: u64,
    cpu: Duration,
    context_switches: Option<u64>,
    syncs: Option<u64>,
    written: Option<u64>,
    read: Option<u64>,
}

/// Measures one cell in this process.
pub(crate) fn run_cell(
    config: &BenchConfig,
    factory: &dyn SystemFactory,
    workload: Workload,
    round: usize,
) -> Result<Measurement> {
    // Memory freed by earlier cells goes back to the kernel first, so the reset starts from
    // the harness alone. Refused resets leave VmHWM cumulative, as `run` reports.
    probe::trim_heap();
    probe::reset_peak_rss();
    let system = factory.open(&system_dir(config, factory), &config.geometry)?;
    let seed = config.seed ^ ((round as u64) << 32) ^ name_hash(&workload.name());
    let outcome = match workload.kind() {
        kind @ (WorkloadKind::Durable {
            blocks_per_txn,
            threads,
        }
        | WorkloadKind::Nosync {
            blocks_per_txn,
            threads,
        }) => {
            let durable = matches!(kind, WorkloadKind::Durable { .. });
            drive_writes(
                config,
                &*system,
                workload,
                blocks_per_txn,
                threads,
                durable,
                seed,
            )?
        }
        WorkloadKind::Read(kind) => drive_reads(config, &*system, kind, seed)?,
        WorkloadKind::Recovery(kind) => drive_recoveries(config, &*system, kind)?,
    };
    let peak_rss_bytes = probe::peak_rss_bytes().unwrap_or(0);
    drop(system);
    Ok(measurement(
        factory.name(),
        workload,
        &outcome,
        peak_rss_bytes,
    ))
}

fn measurement(
    system: &str,
    workload: Workload,
    outcome: &CellOutcome,
    peak_rss_bytes: u64,
) -> Measurement {
    let seconds = outcome.measured.as_secs_f64().max(1e-9);
    let all_ops = outcome.all_ops.max(1) as f64;
    let ops_per_s = outcome.ops as f64 / seconds;
    let mb_per_s = outcome.bytes as f64 / seconds / 1e6;
    Measurement {
        system: system.to_string(),
        workload,
        ops_per_s,
        mb_per_s,
        p50_us: outcome.latencies.percentile_us(0.50),
        p99_us: outcome.latencies.percentile_us(0.99),
        peak_rss_bytes,
        syncs_per_op: outcome.syncs.map(|s| s as f64 / all_ops),
        write_bytes_per_op: probe::bytes_per_op(outcome.written, outcome.all_ops),
        read_bytes_per_op: probe::bytes_per_op(outcome.read, outcome.all_ops),
        cpu_us_per_op: outcome.cpu.as_secs_f64() * 1e6 / all_ops,
        context_switches_per_op: outcome.context_switches.map(|n| n as f64 / all_ops),
        ops: outcome.ops,
        latency_cdf_us: outcome.latencies.cdf_us(&CDF_QUANTILES),
        // One cell is one round; `median_of_rounds` gathers the others.
        rounds_ops_per_s: vec![ops_per_s],
        rounds_mb_per_s: vec![mb_per_s],
    }
}

/// FNV-1a of a workload's name: a per-workload seed that does not depend on declaration order.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Distinct blocks of pseudo-random data, so that no system can win by compressing.
pub(crate) fn data_pool(seed: u64, count: usize) -> Vec<Block> {
    let mut rng = SplitMix64::new(seed);
    (0..count)
        .map(|_| {
            let mut block = Block::zeroed();
            rng.fill_bytes(block.as_bytes_mut());
            block
        })
        .collect()
}

/// `count` distinct random addresses in thread `thread`'s region.
pub(crate) fn txn_addrs(
    rng: &mut SplitMix64,
    geometry: &Geometry,
    thread: usize,
    count: usize,
    out: &mut Vec<Addr>,
) {
    out.clear();
    let start = geometry.region_start(thread);
    let region = geometry.region_blocks();
    while out.len() < count {
        let addr = start + rng.below(region);
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
}

/// Data for one transaction: blocks from the pool, each stamped with (thread, transaction,
/// index) so no write repeats a block's current content — some stores (SQLite) skip those.
fn fill_txn_data(
    rng: &mut SplitMix64,
    pool: &[Block],
    thread: usize,
    txn: u64,
    data: &mut [Block],
) {
    for (index, block) in data.iter_mut().enumerate() {
        let source = &pool[rng.below(pool.len() as u64) as usize];
        block.as_bytes_mut().copy_from_slice(source.as_bytes());
        let stamp = [thread as u64, txn, index as u64];
        for (slot, value) in block.as_bytes_mut().chunks_exact_mut(8).zip(stamp) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
    }
}

/// Per thread: operations measured, when the last one ended, its latencies, all operations.
struct ThreadOutcome {
    ops: u64,
    last_end: Instant,
    latencies: LatencyHistogram,
    all_ops: u64,
}

#[allow(clippy::too_many_arguments)]
fn drive_writes(
    config: &BenchConfig,
    system: &dyn System,
    workload: Workload,
    blocks_per_txn: usize,
    threads: usize,
    durable: bool,
    seed: u64,
) -> Result<CellOutcome> {
    let pool = data_pool(seed, POOL_BLOCKS);
    let barrier = Barrier::new(threads + 1);
    let syncs_before = system.sync_count();
    let cpu_before = probe::cpu_time();
    let switches_before = probe::context_switches();
    // The whole process's count, read in the cell's own process (or, in-process, the harness's
    // and the system's): the same counter for every system, whatever its I/O path.
    let written_before = probe::written_bytes();
    let read_before = probe::read_bytes();
    let (start, outcomes) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (pool, barrier) = (&pool, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let spec = WriterSpec {
                        blocks_per_txn,
                        durable,
                        flush_every: config.flush_every,
                        seed: seed ^ (thread as u64 + 1).wrapping_mul(0x9E37_79B9),
                    };
                    write_loop(config, system, thread, &spec, pool)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let outcomes: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        (start, outcomes)
    });
    let mut finished = Vec::with_capacity(threads);
    for outcome in outcomes {
        match outcome {
            Ok(result) => finished.push(result?),
            Err(_) => {
                return Err(BenchError::WorkerPanicked {
                    system: system.name().to_string(),
                    workload: workload.name(),
                })
            }
        }
    }
    if !durable {
        system.flush()?;
    }
    let cpu = probe::cpu_time().saturating_sub(cpu_before);
    let context_switches = probe::switches_between(switches_before, probe::context_switches());
    let syncs = system.sync_count().zip(syncs_before).map(|(a, b)| a - b);
    let written = probe::written_between(written_before, probe::written_bytes());
    let read = probe::written_between(read_before, probe::read_bytes());
    let costs = Costs {
        cpu,
        context_switches,
        syncs,
        written,
        read,
    };
    Ok(combine(config, start, finished, blocks_per_txn, costs))
}

/// What all of a cell's operations cost the process.
struct Costs {
    cpu: Duration,
    context_switches: Option<u64>,
    syncs: Option<u64>,
    written: Option<u64>,
    read: Option<u64>,
}

fn combine(
    config: &BenchConfig,
    start: Instant,
    finished: Vec<ThreadOutcome>,
    blocks_per_op: usize,
    costs: Costs,
) -> CellOutcome {
    let measure_from = start + config.warmup;
    let mut latencies = LatencyHistogram::new();
    let (mut ops, mut all_ops, mut last_end) = (0, 0, measure_from);
    for outcome in &finished {
        latencies.merge(&outcome.latencies);
        ops += outcome.ops;
        all_ops += outcome.all_ops;
        last_end = last_end.max(outcome.last_end);
    }
    CellOutcome {
        ops,
        bytes: ops * (blocks_per_op * BLOCK_SIZE) as u64,
        measured: last_end.saturating_duration_since(measure_from),
        latencies,
        all_ops,
        cpu: costs.cpu,
        context_switches: costs.context_switches,
        syncs: costs.syncs,
        written: costs.written,
        read: costs.read,
    }
}

struct WriterSpec {
    blocks_per_txn: usize,
    durable: bool,
    flush_every: usize,
    seed: u64,
}

/// One writer thread: transactions until the cell's time is up; a nosync writer flushes every
/// `flush_every` transactions, inside the timing of the transaction that triggers it.
fn write_loop(
    config: &BenchConfig,
    system: &dyn System,
    thread: usize,
    spec: &WriterSpec,
    pool: &[Block],
) -> Result<ThreadOutcome> {
    let mut rng = SplitMix64::new(spec.seed);
    let mut addrs = Vec::with_capacity(spec.blocks_per_txn);
    let start = Instant::now();
    let (measure_from, stop_at) = (
        start + config.warmup,
        start + config.warmup + config.cell_duration,
    );
    let mut outcome = ThreadOutcome {
        ops: 0,
        last_end: measure_from,
        latencies: LatencyHistogram::new(),
        all_ops: 0,
    };
    let mut data: Vec<Block> = pool[..spec.blocks_per_txn].to_vec();
    loop {
        txn_addrs(
            &mut rng,
            &config.geometry,
            thread,
            spec.blocks_per_txn,
            &mut addrs,
        );
        fill_txn_data(&mut rng, pool, thread, outcome.all_ops, &mut data);
        let data = &data[..];
        let began = Instant::now();
        if spec.durable {
            system.durable_txn(thread, &addrs, data)?;
        } else {
            system.nosync_txn(thread, &addrs, data)?;
            if (outcome.all_ops + 1) % spec.flush_every as u64 == 0 {
                system.flush()?;
            }
        }
        let ended = Instant::now();
        outcome.all_ops += 1;
        if began >= measure_from {
            outcome.ops += 1;
            outcome.latencies.record(ended - began);
            outcome.last_end = ended;
        }
        // At least one measured operation per thread, however slow the device is today.
        if ended >= stop_at && outcome.ops > 0 {
            return Ok(outcome);
        }
    }
}

/// Random single-block reads of a prepared set, each checked against what was written.
fn drive_reads(
    config: &BenchConfig,
    system: &dyn System,
    kind: ReadKind,
    seed: u64,
) -> Result<CellOutcome> {
    let pool = data_pool(seed, POOL_BLOCKS);
    let addrs: Vec<Addr> = (0..config.read_set_blocks).collect();
    let data: Vec<Block> = addrs.iter().map(|a| read_block(&pool, seed, *a)).collect();
    system.prepare_reads(kind, &addrs, &data)?;
    // The set-up's copy of the read set is the harness's, not the system's: free it and start
    // the cell's peak RSS from the system as prepared.
    drop((addrs, data));
    probe::trim_heap();
    probe::reset_peak_rss();
    let mut rng = SplitMix64::new(seed);
    let cpu_before = probe::cpu_time();
    let switches_before = probe::context_switches();
    let written_before = probe::written_bytes();
    let read_before = probe::read_bytes();
    let start = Instant::now();
    let (measure_from, stop_at) = (
        start + config.warmup,
        start + config.warmup + config.cell_duration,
    );
    let mut outcome = ThreadOutcome {
        ops: 0,
        last_end: measure_from,
        latencies: LatencyHistogram::new(),
        all_ops: 0,
    };
    loop {
        let addr = rng.below(config.read_set_blocks);
        let began = Instant::now();
        let block = system.read(0, addr)?;
        let ended = Instant::now();
        check_read(system, addr, &read_block(&pool, seed, addr), &block)?;
        outcome.all_ops += 1;
        if began >= measure_from {
            outcome.ops += 1;
            outcome.latencies.record(ended - began);
            outcome.last_end = ended;
        }
        // At least one measured operation per thread, however slow the device is today.
        if ended >= stop_at && outcome.ops > 0 {
            break;
        }
    }
    let costs = Costs {
        cpu: probe::cpu_time().saturating_sub(cpu_before),
        context_switches: probe::switches_between(switches_before, probe::context_switches()),
        syncs: None,
        written: probe::written_between(written_before, probe::written_bytes()),
        read: probe::written_between(read_before, probe::read_bytes()),
    };
    Ok(combine(config, start, vec![outcome], 1, costs))
}

/// The block the read workloads put at `addr`: unique to the address and the cell.
fn read_block(pool: &[Block], seed: u64, addr: Addr) -> Block {
    let mut block = pool[addr as usize % pool.len()].clone();
    block.as_bytes_mut()[..8].copy_from_slice(&addr.to_le_bytes());
    block.as_bytes_mut()[8..16].copy_from_slice(&seed.to_le_bytes());
    block
}

fn check_read(system: &dyn System, addr: Addr, expected: &Block, found: &Block) -> Result<()> {
    if expected == found {
        return Ok(());
    }
    Err(BenchError::WrongData {
        system: system.name().to_string(),
        addr,
        expected: expected.fingerprint(),
        found: found.fingerprint(),
    })
}

/// Recoveries until the cell's time is spent (at least one, at most a bound).
fn drive_recoveries(
    config: &BenchConfig,
    system: &dyn System,
    kind: RecoveryKind,
) -> Result<CellOutcome> {
    let started = Instant::now();
    let cpu_before = probe::cpu_time();
    let switches_before = probe::context_switches();
    let syncs_before = system.sync_count();
    let mut latencies = LatencyHistogram::new();
    let (mut ops, mut bytes, mut measured) = (0u64, 0u64, Duration::ZERO);
    // Each recovery's own, set-up excluded: unknown once any recovery's is.
    let (mut written, mut read) = (Some(0u64), Some(0u64));
    let most = match kind {
        RecoveryKind::ReopenAfterCrash { .. } => REOPENS_PER_CELL,
        RecoveryKind::FullLog | RecoveryKind::ReplicaResync => MAX_RECOVERIES_PER_CELL,
    };
    while ops == 0 || (started.elapsed() < config.cell_duration && (ops as usize) < most) {
        let run = system.recover(kind)?;
        latencies.record(run.elapsed);
        ops += 1;
        bytes += run.bytes;
        measured += run.elapsed;
        written = written.zip(run.written_bytes).map(|(sum, run)| sum + run);
        read = read.zip(run.read_bytes).map(|(sum, run)| sum + run);
    }
    Ok(CellOutcome {
        ops,
        bytes,
        measured,
        latencies,
        all_ops: ops,
        // Include the untimed set-ups: a recovery's own CPU cost and switches are not
        // separable here.
        cpu: probe::cpu_time().saturating_sub(cpu_before),
        context_switches: probe::switches_between(switches_before, probe::context_switches()),
        syncs: system.sync_count().zip(syncs_before).map(|(a, b)| a - b),
        written,
        read,
    })
}
