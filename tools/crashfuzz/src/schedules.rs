//! Concurrent campaigns: schedules × crash points × crash states (the `shuttle` feature).
//!
//! The single-threaded fuzzer explores crash points and crash states of one workload; this one
//! runs the workload's transactions from several threads under shuttle's controlled scheduler
//! (the whole stack takes its locks, atomics and threads from `txdisk_disk::sync`, which the
//! feature turns into shuttle's). Each schedule:
//!
//! 1. formats a logical disk on a `SimDisk`, or on a replicated pair of them;
//! 2. runs `threads` threads of read-modify-write transactions over the whole data region
//!    (addresses biased to both ends and to a hot set, so transactions meet), some aborted after
//!    their reads, some followed by a flush that acknowledges them durable;
//! 3. lets a chaos thread crash the machine at a point the scheduler picks (or not at all);
//! 4. checks serializability of what committed ([`SerialHistory::check_serializable`]: in log
//!    order, every transaction read exactly the state before it, no aborted value seen);
//! 5. recovers `crash_states` crash states of the disks (or the clean close) and checks each
//!    with the prefix oracle ([`SerialHistory::check_recovered`]).
//!
//! Every choice — operations, addresses, the crash point, the crash states — comes from
//! shuttle's random source, so the printed schedule is the token: [`replay_schedule`] runs
//! exactly that execution again. Such a build runs only inside shuttle (see
//! `txdisk_disk::sync`); the normal `txdisk crashfuzz` stays single-threaded.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::sync::shuttle::{
    self,
    rand::Rng,
    scheduler::{PctScheduler, RandomScheduler},
    Config, Runner,
};
use txdisk_disk::sync::thread;
use txdisk_disk::{Addr, Block, Disk, SimDisk};
use txdisk_log::LogOptions;
use txdisk_logical::serial::{Committed, SerialHistory};
use txdisk_logical::{Contents, LogicalDisk};
use txdisk_replicated::{FormatOptions, ReplicatedDisk};

/// What a concurrent campaign runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// Threads running transactions (2 to 8).
    pub threads: u64,
    /// Transactions each thread attempts.
    pub transactions_per_thread: u64,
    /// Data blocks of the logical disk (the addresses span all of them).
    pub data_blocks: u64,
    /// Blocks of its log.
    pub log_blocks: u64,
    /// The logical disk on a replicated pair instead of one disk.
    pub replicated: bool,
    /// Seed of the schedulers.
    pub seed: u64,
    /// Schedules per scheduler (PCT, then random).
    pub schedules: usize,
    /// Crash states recovered and checked per crashed schedule.
    pub crash_states: u64,
}

impl Default for ScheduleConfig {
    fn default() -> ScheduleConfig {
        ScheduleConfig {
            threads: 3,
            transactions_per_thread: 3,
            data_blocks: 24,
            log_blocks: 8,
            replicated: false,
            seed: 0x5c4e_d01e,
            schedules: 500,
            crash_states: 4,
        }
    }
}

/// What a campaign did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduleReport {
    /// Schedules run.
    pub schedules: u64,
    /// Schedules in which the machine crashed.
    pub crashed_schedules: u64,
    /// Crash states recovered and checked (clean closes included).
    pub recoveries_checked: u64,
    /// Transactions that committed, over all schedules.
    pub commits: u64,
    /// Attempts aborted or refused by a conflict.
    pub discarded: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Counters the schedules add to (outside the scheduler: recording is not a step).
#[derive(Default)]
struct Totals {
    schedules: AtomicU64,
    crashed: AtomicU64,
    recoveries: AtomicU64,
    commits: AtomicU64,
    discarded: AtomicU64,
}

/// Runs the campaign; `Err` carries the violation (the failing schedule is printed on stderr by
/// the scheduler, ready for [`replay_schedule`]).
pub fn fuzz_schedules(config: &ScheduleConfig) -> Result<ScheduleReport, String> {
    check_config(config)?;
    let totals = Arc::new(Totals::default());
    let body = schedule_body(config.clone(), Arc::clone(&totals));
    let started = Instant::now();
    let (seed, schedules) = (config.seed, config.schedules);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let pct = PctScheduler::new_from_seed(seed, 3, schedules);
        Runner::new(pct, quiet()).run(body.clone());
        let random = RandomScheduler::new_from_seed(seed, schedules);
        Runner::new(random, quiet()).run(body);
    }));
    outcome.map_err(|panic| panic_message(&*panic))?;
    Ok(ScheduleReport {
        schedules: totals.schedules.load(Ordering::Relaxed),
        crashed_schedules: totals.crashed.load(Ordering::Relaxed),
        recoveries_checked: totals.recoveries.load(Ordering::Relaxed),
        commits: totals.commits.load(Ordering::Relaxed),
        discarded: totals.discarded.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs exactly the execution a failure printed (its schedule string), under `config`.
pub fn replay_schedule(config: &ScheduleConfig, schedule: &str) -> Result<(), String> {
    check_config(config)?;
    let body = schedule_body(config.clone(), Arc::new(Totals::default()));
    catch_unwind(AssertUnwindSafe(|| shuttle::replay(body, schedule)))
        .map_err(|panic| panic_message(&*panic))
}

fn check_config(config: &ScheduleConfig) -> Result<(), String> {
    if !(2..=8).contains(&config.threads) {
        return Err(format!("threads must be 2 to 8, not {}", config.threads));
    }
    if config.data_blocks < 4 || config.log_blocks < 4 {
        return Err("data_blocks and log_blocks must be at least 4".to_string());
    }
    Ok(())
}

fn quiet() -> Config {
    let mut config = Config::new();
    config.silence_warnings = true;
    config
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a schedule panicked".to_string())
}

fn choose(below: u64) -> u64 {
    shuttle::rand::thread_rng().gen_range(0..below.max(1))
}

/// An address over the whole region: the first blocks, the last blocks, a hot set, anywhere.
fn address(data_blocks: u64) -> Addr {
    match choose(4) {
        0 => choose(3),
        1 => data_blocks - 1 - choose(3),
        2 => data_blocks / 2 + choose(2),
        _ => choose(data_blocks),
    }
}

/// A value no other write has: the attempt's tag, and the address it is for.
fn value(tag: u64, addr: Addr) -> Block {
    let mut block = Block::zeroed();
    block.as_bytes_mut()[..8].copy_from_slice(&tag.to_le_bytes());
    block.as_bytes_mut()[8..16].copy_from_slice(&addr.to_le_bytes());
    block
}

fn schedule_body(config: ScheduleConfig, totals: Arc<Totals>) -> impl Fn() + Send + Sync + Clone {
    let config = Arc::new(config);
    move || run_schedule(&config, &totals)
}

/// The disks of one schedule, and the logical disk over them.
struct Stack {
    disks: Vec<Arc<SimDisk>>,
    logical: LogicalDisk,
}

fn options() -> LogOptions {
    LogOptions {
        background_installer: true,
        install_threshold_pct: 25,
    }
}

fn build(config: &ScheduleConfig, images: Option<Vec<txdisk_disk::DiskImage>>) -> Stack {
    let fresh = images.is_none();
    // The log's superblock and its two header slots.
    let logical_blocks = config.data_blocks + config.log_blocks + 3;
    let disks: Vec<Arc<SimDisk>> = match images {
        Some(images) => images
            .iter()
            .map(|i| Arc::new(SimDisk::from_image(i)))
            .collect(),
        None if config.replicated => {
            let chunk = 4;
            let size = txdisk_replicated::member_blocks_for(logical_blocks, chunk)
                .unwrap_or_else(|| panic!("a pair layout for {logical_blocks} blocks"));
            vec![Arc::new(SimDisk::new(size)), Arc::new(SimDisk::new(size))]
        }
        None => vec![Arc::new(SimDisk::new(logical_blocks))],
    };
    let below: Arc<dyn Disk> = if config.replicated {
        if fresh {
            let format = FormatOptions {
                pair_id: Some(config.seed),
                assume_equal: true,
                chunk_blocks: Some(4),
            };
            ReplicatedDisk::format(&disks[0], &disks[1], &format)
                .unwrap_or_else(|e| panic!("pair format: {e}"));
        }
        let pair = ReplicatedDisk::open(Arc::clone(&disks[0]), Arc::clone(&disks[1]), &mut |_| {})
            .unwrap_or_else(|e| panic!("pair open: {e}"));
        Arc::new(pair)
    } else {
        Arc::clone(&disks[0]) as Arc<dyn Disk>
    };
    if fresh {
        // The seed as the log's salt: a random one would make a schedule replay differently.
        txdisk_log::Log::format(&*below, config.log_blocks, config.seed)
            .unwrap_or_else(|e| panic!("format: {e}"));
    }
    let logical = LogicalDisk::open(below, options()).unwrap_or_else(|e| panic!("open: {e}"));
    assert!(
        logical.size_blocks() >= config.data_blocks,
        "a logical disk of {} blocks, expected {}",
        logical.size_blocks(),
        config.data_blocks
    );
    Stack { disks, logical }
}

fn run_schedule(config: &ScheduleConfig, totals: &Totals) {
    totals.schedules.fetch_add(1, Ordering::Relaxed);
    let Stack { disks, logical } = build(config, None);
    let logical = Arc::new(logical);
    let history = Arc::new(SerialHistory::new());
    let crash = choose(4) != 0;
    let chaos = crash.then(|| {
        let disks = disks.clone();
        thread::spawn(move || {
            for _ in 0..choose(120) {
                thread::yield_now();
            }
            for disk in &disks {
                disk.crash_now();
            }
        })
    });
    let workers: Vec<_> = (0..config.threads)
        .map(|thread_no| {
            let (logical, history) = (Arc::clone(&logical), Arc::clone(&history));
            let config = config.clone();
            thread::spawn(move || worker(&logical, &history, &config, thread_no))
        })
        .collect();
    for worker in workers {
        if let Err(panic) = worker.join() {
            std::panic::resume_unwind(panic);
        }
    }
    if let Some(chaos) = chaos {
        if let Err(panic) = chaos.join() {
            std::panic::resume_unwind(panic);
        }
    }
    let initial: Contents = BTreeMap::new();
    history
        .check_serializable(&initial)
        .unwrap_or_else(|v| panic!("not serializable: {v}"));
    let (commits, _, discarded) = history.counts();
    totals.commits.fetch_add(commits as u64, Ordering::Relaxed);
    totals
        .discarded
        .fetch_add(discarded as u64, Ordering::Relaxed);
    let logical = Arc::into_inner(logical).unwrap_or_else(|| panic!("the disk is still shared"));
    if crash {
        totals.crashed.fetch_add(1, Ordering::Relaxed);
        drop(logical);
        let mut rng = SplitMix64::new(shuttle::rand::thread_rng().gen::<u64>());
        for _ in 0..config.crash_states {
            let images = disks
                .iter()
                .map(|d| d.random_crash_state(&mut rng, false))
                .collect();
            check_recovery(config, &history, &initial, images, totals);
        }
    } else {
        logical.close().unwrap_or_else(|e| panic!("close: {e}"));
        history.acknowledged(u64::MAX);
        let images = disks.iter().map(|d| d.durable_image()).collect();
        check_recovery(config, &history, &initial, images, totals);
    }
}

fn check_recovery(
    config: &ScheduleConfig,
    history: &SerialHistory,
    initial: &Contents,
    images: Vec<txdisk_disk::DiskImage>,
    totals: &Totals,
) {
    let Stack { logical, .. } = build(config, Some(images));
    let recovered: Contents = (0..config.data_blocks)
        .map(|addr| {
            let block = logical
                .read_committed(addr)
                .unwrap_or_else(|e| panic!("read {addr} after recovery: {e}"));
            (addr, block)
        })
        .filter(|(_, block)| !block.is_zero())
        .collect();
    history
        .check_recovered(initial, &recovered)
        .unwrap_or_else(|v| panic!("recovery: {v}"));
    totals.recoveries.fetch_add(1, Ordering::Relaxed);
}

/// One thread's transactions: read one to three addresses, write new values over them (a
/// read-modify-write; sometimes an abort after the reads instead), commit in order, sometimes
/// flush. Stops at the first error that is not a conflict: only the crash causes one.
fn worker(disk: &LogicalDisk, history: &SerialHistory, config: &ScheduleConfig, thread_no: u64) {
    for step in 0..config.transactions_per_thread {
        let tag = (thread_no + 1) << 40 | (step + 1) << 8;
        let mut addrs: Vec<Addr> = (0..1 + choose(3))
            .map(|_| address(config.data_blocks))
            .collect();
        addrs.sort_unstable();
        addrs.dedup();
        let mut tx = disk.begin();
        let mut reads = Vec::new();
        for &addr in &addrs {
            match tx.read(addr) {
                Ok(block) => reads.push((addr, block)),
                Err(error) if error.is_conflict() => break,
                Err(_) => return,
            }
        }
        let writes: Vec<(Addr, Block)> = addrs.iter().map(|&a| (a, value(tag, a))).collect();
        if reads.len() < addrs.len() || choose(8) == 0 {
            tx.abort();
            history.discarded(writes.into_iter().map(|(_, block)| block));
            continue;
        }
        for (addr, block) in &writes {
            if tx.write(*addr, block).is_err() {
                return;
            }
        }
        match tx.commit_ordered(false) {
            Ok(Some(seq)) => {
                history.committed(Committed { seq, reads, writes });
                if choose(3) == 0 {
                    // A flush makes durable every commit made before it began.
                    let covered = history.newest_seq().max(seq);
                    match disk.flush() {
                        Ok(()) => history.acknowledged(covered),
                        Err(_) => return,
                    }
                }
            }
            Ok(None) => panic!("a transaction with writes committed without a sequence number"),
            Err(error) if error.is_conflict() => {
                history.discarded(writes.into_iter().map(|(_, block)| block));
            }
            Err(_) => return,
        }
    }
}
