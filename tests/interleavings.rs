//! Schedules × crashes: the stack's concurrent paths under shuttle's controlled scheduler.
//!
//! Built only with the `shuttle` feature (`cargo test --features shuttle --test interleavings`),
//! which makes every lock, condition variable, atomic and thread of the stack shuttle's (see
//! `txdisk_disk::sync`). Each harness runs a small concurrent workload over `SimDisk`s under a
//! PCT scheduler and a random scheduler with fixed seeds and budgets; shuttle decides every
//! interleaving, and the harness's own choices (which operation, which address, when the
//! "chaos" thread fails a member or crashes the machine, which crash state) come from shuttle's
//! random source, so a schedule fixes all of them. A failure prints the schedule; run the test
//! again with `TXDISK_SCHEDULE='<schedule>'` to replay exactly that execution.
//!
//! What each harness checks:
//! * **replicated**: 3 threads write, write runs, read and sync overlapping addresses of a pair;
//!   a member fails or the machine crashes at a point the scheduler picks. Every read is
//!   linearizable (the value of a write that overlapped it, or of the newest one before it —
//!   never one an earlier read had already seen overwritten, never a state between the two
//!   member writes); at the end the members agree; after a crash and `open`, every address
//!   holds a value written there that no durable write had overwritten, on both members.
//! * **log**: durable and deferred committers, explicit flushes and installations and the
//!   background installer, then `close` or a crash: recovery yields the state after a prefix of
//!   the records in sequence order that includes every acknowledged one (the prefix oracle),
//!   and no waiter is left hanging (shuttle reports a deadlock if one is).
//! * **logical**: bank transfers and read-only audits from 3 threads, checked for
//!   serializability — replayed in the order of their log sequence numbers, every committed
//!   transaction read exactly the state before it, every read-only one some state between two
//!   commits, and no value of an aborted attempt is ever seen — then the prefix oracle after a
//!   crash.
//! * the three questions of the replicated-disk example, as named tests.
//! * the planted concurrency bugs (`deliberate-bugs`), each caught within the same budget.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::sync::shuttle::{
    self,
    rand::Rng,
    scheduler::{PctScheduler, RandomScheduler, Scheduler},
    Config, Runner,
};
use txdisk_disk::sync::thread;
use txdisk_disk::{Addr, Block, Disk, SimDisk};
use txdisk_log::{Log, LogOptions};
use txdisk_logical::serial::{Committed, SerialHistory};
use txdisk_logical::{Contents, LogicalDisk};
use txdisk_replicated::{replicas_agree, FormatOptions, ReplicaStatus, ReplicatedDisk, Role};

/// The seed of every scheduler; a failure prints its schedule, which replays it.
const SEED: u64 = 0x5c4e_d01e;
/// Schedules per scheduler per harness in CI (`TXDISK_SCHEDULES` overrides it, for long runs).
const CI_BUDGET: usize = 1000;
fn budget() -> usize {
    std::env::var("TXDISK_SCHEDULES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CI_BUDGET)
}

/// PCT's bug depth: the number of priority changes per schedule.
const PCT_DEPTH: usize = 3;

// ---------------------------------------------------------------------------------------------
// Exploration

thread_local! {
    /// How many executions reached each named situation (see [`reached`]).
    static COVERAGE: std::cell::RefCell<BTreeMap<&'static str, u64>> =
        const { std::cell::RefCell::new(BTreeMap::new()) };
}

/// Counts an execution that reached `situation`: a harness requires each of its situations to
/// be reached, so that an exploration that never gets where the bugs are cannot pass.
fn reached(situation: &'static str) {
    COVERAGE.with(|coverage| *coverage.borrow_mut().entry(situation).or_default() += 1);
}

/// Explores `body` under PCT then a random scheduler (or replays `TXDISK_SCHEDULE`), prints
/// how many schedules ran and how fast, and requires every one of `situations` reached.
fn explore(
    name: &str,
    budget: usize,
    situations: &[&'static str],
    body: impl Fn() + Send + Sync + 'static,
) {
    let body = Arc::new(body);
    if let Ok(schedule) = std::env::var("TXDISK_SCHEDULE") {
        let body = Arc::clone(&body);
        shuttle::replay(move || body(), &schedule);
        return;
    }
    COVERAGE.with(|coverage| coverage.borrow_mut().clear());
    let started = Instant::now();
    let mut schedules = run_with(PctScheduler::new_from_seed(SEED, PCT_DEPTH, budget), &body);
    schedules += run_with(RandomScheduler::new_from_seed(SEED, budget), &body);
    let seconds = started.elapsed().as_secs_f64();
    let coverage = COVERAGE.with(|coverage| coverage.borrow().clone());
    println!(
        "{name}: {schedules} schedules (PCT depth {PCT_DEPTH} and random, seed {SEED:#x}) in {seconds:.1} s, {:.0} schedules/s, 0 violations; reached {coverage:?}",
        schedules as f64 / seconds
    );
    for situation in situations {
        assert!(
            coverage.get(situation).is_some_and(|&n| n > 0),
            "{name}: no schedule reached \"{situation}\" (reached {coverage:?})"
        );
    }
}

fn run_with<S: Scheduler + 'static>(
    scheduler: S,
    body: &Arc<impl Fn() + Send + Sync + 'static>,
) -> usize {
    let body = Arc::clone(body);
    let mut config = Config::new();
    // Shuttle treats every atomic ordering as SeqCst (and says so once per run): the stack's
    // weaker orderings are not what these tests explore.
    config.silence_warnings = true;
    Runner::new(scheduler, config).run(move || body())
}

thread_local! {
    /// The context switches of the execution when its first panic began (see [`count_steps`]).
    static STEPS_AT_PANIC: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Installs (once per process) a panic hook that notes how many scheduling steps the failing
/// execution had taken, then hands the panic to the hook that was there (shuttle's, which prints
/// the schedule, sits on top of it).
fn count_steps() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Only where shuttle's state can be read now: inside an execution, not borrowed.
            if shuttle::current::try_get_current_task().is_some() {
                let steps = shuttle::current::context_switches();
                STEPS_AT_PANIC.with(|at| {
                    if at.get().is_none() {
                        at.set(Some(steps));
                    }
                });
            }
            previous(info);
        }));
    });
}

/// Runs `body` with `arm` switching a deliberate bug on, and requires a failure within the
/// budget by a check whose message contains one of `expected`.
fn caught(
    name: &str,
    expected: &[&str],
    budget: usize,
    arm: fn(bool),
    body: impl Fn() + Send + Sync + 'static,
) {
    count_steps();
    let tried = Arc::new(AtomicUsize::new(0));
    let counted = {
        let tried = Arc::clone(&tried);
        move || {
            tried.fetch_add(1, Ordering::Relaxed);
            STEPS_AT_PANIC.with(|at| at.set(None));
            arm(true);
            body();
        }
    };
    let counted = Arc::new(counted);
    if let Ok(schedule) = std::env::var("TXDISK_SCHEDULE") {
        // Replays the failure the explorer printed, with the bug on.
        let replayed = catch_unwind(AssertUnwindSafe(|| {
            let counted = Arc::clone(&counted);
            shuttle::replay(move || counted(), &schedule)
        }));
        arm(false);
        if let Err(panic) = replayed {
            std::panic::resume_unwind(panic);
        }
        return;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        run_with(
            PctScheduler::new_from_seed(SEED, PCT_DEPTH, budget),
            &counted,
        );
        run_with(RandomScheduler::new_from_seed(SEED, budget), &counted);
    }));
    arm(false);
    let tried = tried.load(Ordering::Relaxed);
    let Err(panic) = outcome else {
        panic!("{name}: {tried} schedules (seed {SEED:#x}) and the planted bug was not caught")
    };
    // Caught by the check meant to catch it, not by something else going wrong.
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        expected.iter().any(|needle| message.contains(needle)),
        "{name}: caught, but by {message:?}, not by a check saying one of {expected:?}"
    );
    let steps = STEPS_AT_PANIC
        .with(|at| at.get())
        .map_or("?".to_string(), |n| n.to_string());
    println!(
        "{name}: caught at schedule {tried} of at most {} (seed {SEED:#x}), {steps} scheduling steps into it: {message}",
        2 * budget
    );
}

/// A choice of the harness, made by shuttle's random source (so the schedule replays it).
fn choose(below: u64) -> u64 {
    shuttle::rand::thread_rng().gen_range(0..below)
}

/// Lets the scheduler run others `0..below` times before the caller goes on.
fn wander(below: u64) {
    for _ in 0..choose(below) {
        thread::yield_now();
    }
}

/// A fresh seed for a crash-state choice, from the schedule.
fn crash_rng() -> SplitMix64 {
    SplitMix64::new(shuttle::rand::thread_rng().gen::<u64>())
}

// ---------------------------------------------------------------------------------------------
// A register history: the writes and reads of one address, with logical times

/// Times from one counter outside the scheduler (recording is not a step of the program).
#[derive(Default)]
struct Clock(AtomicU64);

impl Clock {
    fn now(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

/// A value written by a workload: the tag names the writer and step; 0 is zeros.
fn tagged(tag: u64) -> Block {
    let mut block = Block::zeroed();
    block.as_bytes_mut()[..8].copy_from_slice(&tag.to_le_bytes());
    block
}

fn tag_of(block: &Block) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&block.as_bytes()[..8]);
    let tag = u64::from_le_bytes(bytes);
    assert!(
        tag != 0 || block.is_zero(),
        "a block no workload wrote (nonzero bytes after a zero tag)"
    );
    tag
}

#[derive(Clone, Copy, Debug)]
struct WriteEvent {
    addr: Addr,
    tag: u64,
    issued: u64,
    /// When it returned Ok (`None`: failed or cut short by a crash; it may still have landed).
    completed: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct ReadEvent {
    addr: Addr,
    tag: u64,
    started: u64,
    ended: u64,
}

#[derive(Default)]
struct RegisterHistory {
    clock: Clock,
    writes: StdMutex<Vec<WriteEvent>>,
    reads: StdMutex<Vec<ReadEvent>>,
    /// (started, ended) of every sync that returned Ok.
    syncs: StdMutex<Vec<(u64, u64)>>,
}

impl RegisterHistory {
    fn begin_write(&self, addr: Addr, tag: u64) -> usize {
        let issued = self.clock.now();
        let mut writes = lock(&self.writes);
        writes.push(WriteEvent {
            addr,
            tag,
            issued,
            completed: None,
        });
        writes.len() - 1
    }

    fn end_write(&self, index: usize) {
        let now = self.clock.now();
        lock(&self.writes)[index].completed = Some(now);
    }

    fn read(&self, addr: Addr, started: u64, block: &Block) {
        let ended = self.clock.now();
        lock(&self.reads).push(ReadEvent {
            addr,
            tag: tag_of(block),
            started,
            ended,
        });
    }

    /// Every read returned a value a linearizable register could have: the value of a write
    /// issued before the read ended that no write or read known to precede the read had
    /// superseded (zeros only if nothing preceded it).
    fn check_reads(&self) {
        let writes = lock(&self.writes).clone();
        let reads = lock(&self.reads).clone();
        for read in &reads {
            let preceding: Vec<&WriteEvent> = writes
                .iter()
                .filter(|w| w.addr == read.addr && w.completed.is_some_and(|c| c < read.started))
                .chain(
                    reads
                        .iter()
                        .filter(|r| r.addr == read.addr && r.ended < read.started && r.tag != 0)
                        .filter_map(|r| writes.iter().find(|w| w.tag == r.tag)),
                )
                .collect();
            if read.tag == 0 {
                assert!(
                    preceding.is_empty(),
                    "read of {} returned zeros after a write there had completed (or been read): {read:?}",
                    read.addr
                );
                continue;
            }
            let Some(value) = writes.iter().find(|w| w.tag == read.tag) else {
                panic!("read {read:?} returned a value no write issued")
            };
            assert!(
                value.addr == read.addr && value.issued < read.ended,
                "read {read:?} returned {value:?}, not issued at that address before the read ended"
            );
            if let Some(newer) = preceding
                .iter()
                .find(|b| value.completed.is_some_and(|c| c < b.issued))
            {
                panic!(
                    "read {read:?} returned {value:?}, which {newer:?} had overwritten before the read began"
                );
            }
            // An earlier read that began after this value's write completed, and saw another
            // value, ordered that other value after this one: a later read cannot go back.
            if let Some(earlier) = reads.iter().find(|r| {
                r.addr == read.addr
                    && r.ended < read.started
                    && r.tag != read.tag
                    && value.completed.is_some_and(|c| c < r.started)
            }) {
                panic!(
                    "read {read:?} returned {value:?}, older than what the earlier {earlier:?} saw"
                );
            }
        }
    }

    /// After a crash: `recovered` (the tag at `addr`) is a value written there that no durable
    /// write (completed before a successful sync began) had superseded; zeros only if no write
    /// there was durable.
    fn check_recovered(&self, addr: Addr, recovered: u64) {
        self.check_recovered_value(addr, recovered);
        if recovered != 0 {
            reached("recovered a written value");
        }
    }

    fn check_recovered_value(&self, addr: Addr, recovered: u64) {
        let writes = lock(&self.writes).clone();
        let syncs = lock(&self.syncs).clone();
        let durable: Vec<&WriteEvent> = writes
            .iter()
            .filter(|w| w.addr == addr)
            .filter(|w| {
                w.completed
                    .is_some_and(|c| syncs.iter().any(|(started, _)| c < *started))
            })
            .collect();
        if !durable.is_empty() {
            reached("a durable write before the crash");
        }
        if recovered == 0 {
            assert!(
                durable.is_empty(),
                "address {addr} recovered as zeros, but {:?} was durable",
                durable.first()
            );
            return;
        }
        let Some(value) = writes.iter().find(|w| w.tag == recovered) else {
            panic!("address {addr} recovered a value no write issued (tag {recovered:#x})")
        };
        assert_eq!(value.addr, addr, "address {addr} recovered {value:?}");
        if let Some(newer) = durable
            .iter()
            .find(|d| value.completed.is_some_and(|c| c < d.issued))
        {
            panic!("address {addr} recovered {value:?}, overwritten by the durable {newer:?}");
        }
    }
}

fn lock<T>(mutex: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The replicated disk

const PAIR_DATA_BLOCKS: u64 = 4;
const PAIR_CHUNK_BLOCKS: u32 = 2;
const PAIR_THREADS: u64 = 3;
const PAIR_OPS: u64 = 4;

type Pair = ReplicatedDisk<Arc<SimDisk>>;

fn new_pair() -> (Pair, Arc<SimDisk>, Arc<SimDisk>) {
    let size = txdisk_replicated::member_blocks_for(PAIR_DATA_BLOCKS, PAIR_CHUNK_BLOCKS)
        .unwrap_or_else(|| panic!("a valid layout"));
    let (d1, d2) = (Arc::new(SimDisk::new(size)), Arc::new(SimDisk::new(size)));
    let options = FormatOptions {
        pair_id: Some(0x5c4e),
        assume_equal: true,
        chunk_blocks: Some(PAIR_CHUNK_BLOCKS),
    };
    ReplicatedDisk::format(&d1, &d2, &options).unwrap_or_else(|e| panic!("format: {e}"));
    let pair = open_pair(&d1, &d2).unwrap_or_else(|e| panic!("open: {e}"));
    (pair, d1, d2)
}

fn open_pair(
    d1: &Arc<SimDisk>,
    d2: &Arc<SimDisk>,
) -> Result<Pair, txdisk_replicated::ReplicatedError> {
    let pair = ReplicatedDisk::open(Arc::clone(d1), Arc::clone(d2), &mut |_| {})?;
    // Bits cleared at the first sync that covers them: the short workload sets and clears them.
    pair.set_clear_after_idle_syncs(0);
    Ok(pair)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PairFault {
    None,
    /// d1 or d2 fails for good at a point the scheduler picks.
    MemberFails,
    /// The machine crashes (both members) at a point the scheduler picks.
    Crash,
}

/// One writer: writes, two-run batches, reads and syncs of overlapping addresses, recorded.
/// Stops at the first error, which only a fault may cause.
fn pair_worker(pair: &Pair, history: &RegisterHistory, thread_no: u64, fault: PairFault) {
    for step in 0..PAIR_OPS {
        let tag = (thread_no + 1) << 32 | (step + 1);
        let addr = choose(PAIR_DATA_BLOCKS);
        let outcome = match choose(4) {
            0 => {
                let index = history.begin_write(addr, tag);
                pair.write(addr, &tagged(tag))
                    .map(|()| history.end_write(index))
            }
            1 => {
                // A run of two over `addr` and the next address (wrapping to 0 at the end).
                let next = (addr + 1) % PAIR_DATA_BLOCKS;
                let (first, second) = (tagged(tag), tagged(tag | 1 << 31));
                let runs: Vec<(Addr, Vec<&Block>)> = if next == 0 {
                    vec![(addr, vec![&first]), (next, vec![&second])]
                } else {
                    vec![(addr, vec![&first, &second])]
                };
                let a = history.begin_write(addr, tag);
                let b = history.begin_write(next, tag | 1 << 31);
                let runs: Vec<(Addr, &[&Block])> = runs
                    .iter()
                    .map(|(at, blocks)| (*at, blocks.as_slice()))
                    .collect();
                pair.write_runs(&runs).map(|()| {
                    history.end_write(a);
                    history.end_write(b);
                })
            }
            2 => {
                let started = history.clock.now();
                pair.read(addr)
                    .map(|block| history.read(addr, started, &block))
            }
            _ => {
                let started = history.clock.now();
                pair.sync().map(|()| {
                    let ended = history.clock.now();
                    lock(&history.syncs).push((started, ended));
                })
            }
        };
        if let Err(error) = outcome {
            assert_eq!(
                fault,
                PairFault::Crash,
                "thread {thread_no} step {step}: {error} without a crash"
            );
            return;
        }
    }
}

/// Which situations the pair's run reached (see [`reached`]).
fn note_pair_coverage(history: &RegisterHistory, fault: PairFault, d1: &SimDisk) {
    let writes = lock(&history.writes).clone();
    let reads = lock(&history.reads).clone();
    let overlapped = reads.iter().any(|read| {
        writes.iter().any(|w| {
            w.tag == read.tag
                && !matches!(w.completed, Some(completed) if completed <= read.started)
        })
    });
    if overlapped {
        reached("a read returned a write still in flight");
    }
    if fault == PairFault::MemberFails {
        reached(if d1.is_failed() {
            "d1 failed"
        } else {
            "d2 failed"
        });
    }
    if !lock(&history.syncs).is_empty() {
        reached("a sync returned Ok");
    }
}

fn pair_body(fault: PairFault) {
    let (pair, d1, d2) = new_pair();
    let pair = Arc::new(pair);
    let history = Arc::new(RegisterHistory::default());
    let chaos = (fault != PairFault::None).then(|| {
        let (d1, d2) = (Arc::clone(&d1), Arc::clone(&d2));
        thread::spawn(move || {
            wander(40);
            match fault {
                // Either member: reads are served by d1, so its failure moves them to d2.
                PairFault::MemberFails if choose(2) == 0 => d1.fail_now(),
                PairFault::MemberFails => d2.fail_now(),
                _ => {
                    d1.crash_now();
                    d2.crash_now();
                }
            }
        })
    });
    let workers: Vec<_> = (0..PAIR_THREADS)
        .map(|thread_no| {
            let (pair, history) = (Arc::clone(&pair), Arc::clone(&history));
            thread::spawn(move || pair_worker(&pair, &history, thread_no, fault))
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .unwrap_or_else(|_| panic!("a pair worker panicked"));
    }
    if let Some(chaos) = chaos {
        chaos
            .join()
            .unwrap_or_else(|_| panic!("the chaos thread panicked"));
    }
    history.check_reads();
    note_pair_coverage(&history, fault, &d1);
    if fault == PairFault::Crash {
        drop(pair);
        let mut rng = crash_rng();
        let images = [
            d1.random_crash_state(&mut rng, false),
            d2.random_crash_state(&mut rng, false),
        ];
        if !images[0].diff(&images[1]).is_empty() {
            reached("members differed at the crash");
        }
        let d1 = Arc::new(SimDisk::from_image(&images[0]));
        let d2 = Arc::new(SimDisk::from_image(&images[1]));
        let pair = open_pair(&d1, &d2).unwrap_or_else(|e| panic!("open after the crash: {e}"));
        replicas_agree(&pair).unwrap_or_else(|v| panic!("after the crash: {v}"));
        for addr in 0..PAIR_DATA_BLOCKS {
            let value = pair
                .read(addr)
                .unwrap_or_else(|e| panic!("read {addr}: {e}"));
            history.check_recovered(addr, tag_of(&value));
        }
        return;
    }
    pair.sync().unwrap_or_else(|e| panic!("final sync: {e}"));
    replicas_agree(&pair).unwrap_or_else(|v| panic!("at rest: {v}"));
    for addr in 0..PAIR_DATA_BLOCKS {
        let started = history.clock.now();
        let block = pair
            .read(addr)
            .unwrap_or_else(|e| panic!("final read {addr}: {e}"));
        history.read(addr, started, &block);
        if fault == PairFault::MemberFails {
            let failed = if d1.is_failed() { Role::D1 } else { Role::D2 };
            assert_eq!(
                pair.status().replicas[failed.index()],
                ReplicaStatus::Failed
            );
        }
    }
    history.check_reads();
}

#[test]
fn replicated_writers_readers_and_syncs_are_linearizable() {
    explore(
        "replicated",
        budget(),
        &[
            "a read returned a write still in flight",
            "a sync returned Ok",
        ],
        || pair_body(PairFault::None),
    );
}

#[test]
fn replicated_with_a_member_failing_mid_schedule() {
    explore(
        "replicated, a member fails",
        budget(),
        &[
            "d1 failed",
            "d2 failed",
            "a read returned a write still in flight",
        ],
        || pair_body(PairFault::MemberFails),
    );
}

#[test]
fn replicated_crashed_mid_schedule_recovers_a_written_value_on_both() {
    explore(
        "replicated, crash",
        budget(),
        &[
            "members differed at the crash",
            "a durable write before the crash",
            "recovered a written value",
        ],
        || pair_body(PairFault::Crash),
    );
}

// ---------------------------------------------------------------------------------------------
// The seed's three questions

/// A pair holding `u` (tag 1) durably at address 0.
fn pair_holding_u() -> (Pair, Arc<SimDisk>, Arc<SimDisk>) {
    let (pair, d1, d2) = new_pair();
    pair.write(0, &tagged(1))
        .unwrap_or_else(|e| panic!("write u: {e}"));
    pair.sync().unwrap_or_else(|e| panic!("sync u: {e}"));
    (pair, d1, d2)
}

/// Crashes both members at a point the scheduler picks, while `work` runs on another thread.
fn crash_during(d1: &Arc<SimDisk>, d2: &Arc<SimDisk>, work: impl FnOnce() + Send + 'static) {
    let worker = thread::spawn(work);
    wander(30);
    d1.crash_now();
    d2.crash_now();
    worker
        .join()
        .unwrap_or_else(|_| panic!("the worker panicked"));
}

/// Opens the pair on a crash state of each member the schedule picks; notes whether the two
/// members held different values at data address 0 in it (a crash between the member writes).
fn recover(d1: &SimDisk, d2: &SimDisk) -> (Pair, Arc<SimDisk>, Arc<SimDisk>) {
    let mut rng = crash_rng();
    let images = [
        d1.random_crash_state(&mut rng, false),
        d2.random_crash_state(&mut rng, false),
    ];
    let at_zero = images
        .each_ref()
        .map(|image| image.block(txdisk_replicated::RESERVED_BLOCKS).map(tag_of));
    if at_zero[0] != at_zero[1] {
        reached("crashed between the member writes");
    }
    let d1 = Arc::new(SimDisk::from_image(&images[0]));
    let d2 = Arc::new(SimDisk::from_image(&images[1]));
    let pair = open_pair(&d1, &d2).unwrap_or_else(|e| panic!("open after the crash: {e}"));
    (pair, d1, d2)
}

/// Both members' tag at data address 0.
fn both_tags(pair: &Pair) -> [u64; 2] {
    [Role::D1, Role::D2].map(|role| {
        tag_of(
            &pair
                .read_replica(role, 0)
                .unwrap_or_else(|e| panic!("read {role}: {e}")),
        )
    })
}

/// Question 1: a crash between (or during, or after) the two member writes of `write(0, v)`:
/// recovery completes the write or erases it — both members hold u, or both v.
#[test]
fn seed_question_1_a_crash_between_the_two_member_writes() {
    let situations = [
        "crashed between the member writes",
        "recovered v",
        "recovered u",
    ];
    explore("question 1", budget(), &situations, || {
        let (pair, d1, d2) = pair_holding_u();
        let pair = Arc::new(pair);
        let writer = Arc::clone(&pair);
        crash_during(&d1, &d2, move || {
            let _ = writer.write(0, &tagged(2));
        });
        drop(pair);
        let (pair, _, _) = recover(&d1, &d2);
        let tags = both_tags(&pair);
        assert!(
            tags == [1, 1] || tags == [2, 2],
            "members hold {tags:?}: a mix of u and v"
        );
        reached(if tags[0] == 2 {
            "recovered v"
        } else {
            "recovered u"
        });
    });
}

/// Question 2: a read racing `write(0, v)` and a crash returns u or v, never anything else;
/// after recovery the address holds u or v on both members; and a read that began after the
/// write returned sees v.
#[test]
fn seed_question_2_a_read_racing_a_write_and_a_crash() {
    explore(
        "question 2",
        budget(),
        &["the read saw u", "the read saw v"],
        || {
            let (pair, d1, d2) = pair_holding_u();
            let pair = Arc::new(pair);
            let wrote = Arc::new(AtomicU64::new(0));
            let (writer, written) = (Arc::clone(&pair), Arc::clone(&wrote));
            let write = thread::spawn(move || {
                if writer.write(0, &tagged(2)).is_ok() {
                    written.store(1, Ordering::SeqCst);
                }
            });
            let reader = Arc::clone(&pair);
            crash_during(&d1, &d2, move || {
                let after_write = wrote.load(Ordering::SeqCst) == 1;
                if let Ok(block) = reader.read(0) {
                    let tag = tag_of(&block);
                    assert!(tag == 1 || tag == 2, "read returned tag {tag}");
                    assert!(
                        !after_write || tag == 2,
                        "a read after the write returned u"
                    );
                    reached(if tag == 2 {
                        "the read saw v"
                    } else {
                        "the read saw u"
                    });
                }
            });
            write
                .join()
                .unwrap_or_else(|_| panic!("the writer panicked"));
            drop(pair);
            let (pair, _, _) = recover(&d1, &d2);
            let tags = both_tags(&pair);
            assert!(tags == [1, 1] || tags == [2, 2], "members hold {tags:?}");
        },
    );
}

/// Question 3: disk 1 fails during the recovery of a crash that left the members different:
/// `open` goes on degraded from d2, which holds u or v; never a mix, never a panic.
#[test]
fn seed_question_3_disk_1_failing_during_recovery() {
    explore(
        "question 3",
        budget(),
        &["open went on degraded from d2"],
        || {
            let (pair, d1, d2) = pair_holding_u();
            let pair = Arc::new(pair);
            let writer = Arc::clone(&pair);
            crash_during(&d1, &d2, move || {
                let _ = writer.write(0, &tagged(2));
            });
            drop(pair);
            let mut rng = crash_rng();
            let c1 = Arc::new(SimDisk::from_image(&d1.random_crash_state(&mut rng, false)));
            let c2 = Arc::new(SimDisk::from_image(&d2.random_crash_state(&mut rng, false)));
            c1.schedule_fail_stop(choose(40));
            match open_pair(&c1, &c2) {
                Ok(pair) => {
                    let tag = tag_of(&pair.read(0).unwrap_or_else(|e| panic!("read: {e}")));
                    assert!(tag == 1 || tag == 2, "recovered tag {tag}");
                    // Every member still active holds the value the pair serves (a member that
                    // fails now is simply not asked).
                    for role in [Role::D1, Role::D2] {
                        if pair.status().replicas[role.index()] == ReplicaStatus::Active {
                            if let Ok(block) = pair.read_replica(role, 0) {
                                assert_eq!(tag_of(&block), tag, "{role} holds another value");
                            }
                        }
                    }
                    if pair.status().replicas[Role::D1.index()] == ReplicaStatus::Failed {
                        reached("open went on degraded from d2");
                    }
                }
                // d2 is healthy and current: recovery must go on from it whatever d1 does.
                Err(error) => panic!("open refused with d2 healthy: {error}"),
            }
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The log and the logical disk: the prefix oracle

/// Reads `addrs` through `read`: the recovered or final state.
fn read_state(addrs: u64, read: impl Fn(Addr) -> Block) -> BTreeMap<Addr, Block> {
    (0..addrs).map(|addr| (addr, read(addr))).collect()
}

const LOG_DISK_BLOCKS: u64 = 24;
const LOG_BLOCKS: u64 = 8;
const LOG_ADDRS: u64 = 4;

fn log_options() -> LogOptions {
    LogOptions {
        background_installer: true,
        install_threshold_pct: 25,
    }
}

/// A log committer: `durable` commits wait for their record; deferred ones are followed by an
/// explicit flush or installation now and then.
fn log_worker(log: &Log, history: &SerialHistory, thread_no: u64, durable: bool) {
    for step in 0..3u64 {
        let tag = (thread_no + 1) << 32 | (step + 1);
        let first = choose(LOG_ADDRS);
        let mut writes = vec![(first, tagged(tag))];
        if choose(2) == 0 {
            writes.push(((first + 1) % LOG_ADDRS, tagged(tag | 1 << 31)));
        }
        writes.sort_by_key(|(addr, _)| *addr);
        let Ok(Some(seq)) = log.append(writes.clone()) else {
            return;
        };
        history.committed(Committed {
            seq,
            writes,
            reads: Vec::new(),
        });
        let acked = if durable {
            log.wait_durable(seq).map(|()| seq)
        } else {
            match choose(3) {
                // A flush makes durable every record appended before it began.
                0 => {
                    let covered = history.newest_seq().max(seq);
                    log.flush().map(|()| covered)
                }
                1 => log.install().map(|_| 0),
                _ => Ok(0),
            }
        };
        match acked {
            Ok(seq) => history.acknowledged(seq),
            Err(_) => return,
        }
    }
}

fn log_body(crash: bool) {
    let disk = Arc::new(SimDisk::new(LOG_DISK_BLOCKS));
    Log::format(&*disk, LOG_BLOCKS, 0x5c4e).unwrap_or_else(|e| panic!("format: {e}"));
    let log =
        Arc::new(Log::open(disk.clone(), log_options()).unwrap_or_else(|e| panic!("open: {e}")));
    assert!(log.data_blocks() >= LOG_ADDRS);
    let history = Arc::new(SerialHistory::new());
    let chaos = crash.then(|| {
        let disk = Arc::clone(&disk);
        thread::spawn(move || {
            wander(60);
            disk.crash_now();
        })
    });
    let workers: Vec<_> = [true, true, false]
        .into_iter()
        .enumerate()
        .map(|(thread_no, durable)| {
            let (log, history) = (Arc::clone(&log), Arc::clone(&history));
            thread::spawn(move || log_worker(&log, &history, thread_no as u64, durable))
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .unwrap_or_else(|_| panic!("a committer panicked"));
    }
    if let Some(chaos) = chaos {
        chaos
            .join()
            .unwrap_or_else(|_| panic!("the chaos thread panicked"));
    }
    let log = Arc::into_inner(log).unwrap_or_else(|| panic!("the log is still shared"));
    let stats = log.stats();
    if stats.records_written > stats.flushes {
        reached("a group flush of several records");
    }
    if stats.installs > 0 {
        reached("an installation");
    }
    if crash && history.acknowledged_seq() > 0 {
        reached("a crash after an acknowledged commit");
    }
    let image = if crash {
        drop(log);
        disk.random_crash_state(&mut crash_rng(), false)
    } else {
        log.close().unwrap_or_else(|e| panic!("close: {e}"));
        // Every commit is durable after a clean close.
        history.acknowledged(u64::MAX);
        disk.durable_image()
    };
    let reopened = Arc::new(SimDisk::from_image(&image));
    let log = Log::open(reopened, log_options()).unwrap_or_else(|e| panic!("recovery: {e}"));
    let recovered = read_state(LOG_ADDRS, |addr| {
        log.read(addr)
            .unwrap_or_else(|e| panic!("read {addr}: {e}"))
    });
    let initial = read_state(LOG_ADDRS, |_| Block::zeroed());
    if crash && recovered != initial {
        reached("recovered a nonempty prefix");
    }
    history
        .check_recovered(&initial, &recovered)
        .unwrap_or_else(|v| panic!("log recovery: {v}"));
}

#[test]
fn log_group_commit_installer_and_close_keep_the_prefix() {
    explore(
        "log",
        budget(),
        &["a group flush of several records", "an installation"],
        || log_body(false),
    );
}

#[test]
fn log_crashed_mid_schedule_recovers_a_prefix_with_every_acknowledged_commit() {
    explore(
        "log, crash",
        budget(),
        &[
            "a crash after an acknowledged commit",
            "recovered a nonempty prefix",
        ],
        || log_body(true),
    );
}

// ---------------------------------------------------------------------------------------------
// The logical disk: serializability of the bank

const ACCOUNTS: u64 = 4;
const OPENING_BALANCE: u64 = 100;
const BANK_THREADS: u64 = 3;

/// An account block: its balance, and the tag of the attempt that wrote it.
fn account(balance: u64, tag: u64) -> Block {
    let mut block = tagged(tag);
    block.as_bytes_mut()[8..16].copy_from_slice(&balance.to_le_bytes());
    block
}

fn balance_of(block: &Block) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&block.as_bytes()[8..16]);
    u64::from_le_bytes(bytes)
}

/// One teller: transfers between two accounts (read both, write both), retried on conflict,
/// and an audit of every account now and then.
fn teller(disk: &LogicalDisk, history: &SerialHistory, thread_no: u64) {
    for step in 0..2u64 {
        if choose(3) == 0 {
            let newest_at_begin = history.newest_seq();
            let mut tx = disk.begin();
            let reads: Result<Vec<(Addr, Block)>, _> =
                (0..ACCOUNTS).map(|a| tx.read(a).map(|b| (a, b))).collect();
            if let Ok(reads) = reads {
                if tx.commit_ordered(false).is_ok() {
                    history.read_only(newest_at_begin, reads);
                }
            }
            continue;
        }
        let (from, to) = (choose(ACCOUNTS), choose(ACCOUNTS - 1));
        let to = if to >= from { to + 1 } else { to };
        for attempt in 0..4u64 {
            let tag = (thread_no + 1) << 32 | (step + 1) << 8 | (attempt + 1);
            let mut tx = disk.begin();
            let read = tx.read(from).and_then(|a| tx.read(to).map(|b| (a, b)));
            let Ok((a, b)) = read else {
                continue;
            };
            let amount = 1 + choose(balance_of(&a).clamp(1, 10));
            let amount = amount.min(balance_of(&a));
            let writes = vec![
                (from, account(balance_of(&a) - amount, tag)),
                (to, account(balance_of(&b) + amount, tag)),
            ];
            for (addr, block) in &writes {
                tx.write(*addr, block)
                    .unwrap_or_else(|e| panic!("write {addr}: {e}"));
            }
            let discarded: Vec<Block> = writes.iter().map(|(_, block)| block.clone()).collect();
            // Committed without waiting, so that the record's place is known even if a crash
            // stops the flush; durability, when wanted, from a flush (the log's own harness
            // covers durable commits).
            match tx.commit_ordered(false) {
                Ok(Some(seq)) => {
                    let mut writes = writes;
                    writes.sort_by_key(|(addr, _)| *addr);
                    history.committed(Committed {
                        seq,
                        writes,
                        reads: vec![(from, a), (to, b)],
                    });
                    if choose(2) == 0 {
                        let covered = history.newest_seq().max(seq);
                        match disk.flush() {
                            Ok(()) => history.acknowledged(covered),
                            Err(_) => return,
                        }
                    }
                    break;
                }
                Ok(None) => panic!("a transfer committed without a sequence number"),
                Err(error) if error.is_conflict() => {
                    history.discarded(discarded);
                    reached("a conflict");
                }
                // A crash: the attempt may or may not be in the log; it has no known place.
                Err(_) => return,
            }
        }
    }
}

/// Serializability: the logical crate's own check.
fn check_serializable(history: &SerialHistory, initial: &Contents) {
    history
        .check_serializable(initial)
        .unwrap_or_else(|v| panic!("not serializable: {v}"));
}

fn bank_body(crash: bool) {
    let disk = Arc::new(SimDisk::new(LOG_DISK_BLOCKS));
    // A fixed salt: a random one would make a printed schedule replay a different execution.
    Log::format(&*disk, LOG_BLOCKS, 0x5c4e).unwrap_or_else(|e| panic!("format: {e}"));
    let logical =
        LogicalDisk::open(disk.clone(), log_options()).unwrap_or_else(|e| panic!("open: {e}"));
    let mut opening = logical.begin();
    for addr in 0..ACCOUNTS {
        opening
            .write(addr, &account(OPENING_BALANCE, 0xba40 + addr))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    opening
        .commit()
        .unwrap_or_else(|e| panic!("opening balances: {e}"));
    let initial = read_state(ACCOUNTS, |addr| account(OPENING_BALANCE, 0xba40 + addr));
    let logical = Arc::new(logical);
    let history = Arc::new(SerialHistory::new());
    let chaos = crash.then(|| {
        let disk = Arc::clone(&disk);
        thread::spawn(move || {
            wander(60);
            disk.crash_now();
        })
    });
    let tellers: Vec<_> = (0..BANK_THREADS)
        .map(|thread_no| {
            let (logical, history) = (Arc::clone(&logical), Arc::clone(&history));
            thread::spawn(move || teller(&logical, &history, thread_no))
        })
        .collect();
    for teller in tellers {
        teller
            .join()
            .unwrap_or_else(|_| panic!("a teller panicked"));
    }
    if let Some(chaos) = chaos {
        chaos
            .join()
            .unwrap_or_else(|_| panic!("the chaos thread panicked"));
    }
    check_serializable(&history, &initial);
    if history.counts().1 > 0 {
        reached("an audit");
    }
    if crash && history.acknowledged_seq() > 0 {
        reached("a crash after an acknowledged transfer");
    }
    let logical = Arc::into_inner(logical).unwrap_or_else(|| panic!("the disk is still shared"));
    let image = if crash {
        drop(logical);
        disk.random_crash_state(&mut crash_rng(), false)
    } else {
        logical.close().unwrap_or_else(|e| panic!("close: {e}"));
        history.acknowledged(u64::MAX);
        disk.durable_image()
    };
    let reopened = LogicalDisk::open(Arc::new(SimDisk::from_image(&image)), log_options())
        .unwrap_or_else(|e| panic!("recovery: {e}"));
    let recovered = read_state(ACCOUNTS, |addr| {
        reopened
            .read_committed(addr)
            .unwrap_or_else(|e| panic!("read {addr}: {e}"))
    });
    history
        .check_recovered(&initial, &recovered)
        .unwrap_or_else(|v| panic!("logical recovery: {v}"));
}

#[test]
fn logical_bank_is_serializable() {
    explore(
        "logical bank",
        budget(),
        &["a conflict", "an audit"],
        || bank_body(false),
    );
}

#[test]
fn logical_bank_crashed_mid_schedule_recovers_a_serial_prefix() {
    explore(
        "logical bank, crash",
        budget(),
        &["a conflict", "a crash after an acknowledged transfer"],
        || bank_body(true),
    );
}

// ---------------------------------------------------------------------------------------------
// Planted concurrency bugs: each must be caught within the budget

fn replicated_bug(bug: txdisk_replicated::Bug) -> fn(bool) {
    match bug {
        txdisk_replicated::Bug::WriteWithoutAddressLock => |on| {
            txdisk_replicated::set_bug(
                on.then_some(txdisk_replicated::Bug::WriteWithoutAddressLock),
            )
        },
        other => panic!("{other:?} is not a concurrency variant"),
    }
}

#[test]
fn planted_pair_write_without_its_address_lock_is_caught() {
    for bug in txdisk_replicated::Bug::RACES {
        // The pair's write check (both members equal after a write), or the oracles.
        let expected = ["after a write", "at rest", "read"];
        caught(bug.name(), &expected, budget(), replicated_bug(bug), || {
            pair_body(PairFault::None)
        });
    }
}

#[test]
fn planted_logical_validation_outside_the_commit_lock_is_caught() {
    use txdisk_logical::bugs::{set, Bug};
    caught(
        Bug::ValidateOutsideCommitLock.name(),
        &["not serializable"],
        budget(),
        |on| set(on.then_some(Bug::ValidateOutsideCommitLock)),
        || bank_body(false),
    );
}

#[test]
fn planted_logical_commit_not_stamping_a_written_stripe_is_caught() {
    use txdisk_logical::bugs::{set, Bug};
    caught(
        Bug::UnstampedStripe.name(),
        &["not serializable"],
        budget(),
        |on| set(on.then_some(Bug::UnstampedStripe)),
        || bank_body(false),
    );
}

#[test]
fn planted_group_commit_acknowledging_late_joiners_is_caught() {
    use txdisk_log::bugs::{set, Bug};
    caught(
        Bug::AckLateJoiners.name(),
        // The prefix oracle, or the log's own invariant (its messages start "log:").
        &["log recovery", "log:"],
        budget(),
        |on| set(on.then_some(Bug::AckLateJoiners)),
        || log_body(true),
    );
}

#[test]
fn planted_installer_freeing_reserved_log_space_is_caught() {
    use txdisk_log::bugs::{set, Bug};
    caught(
        Bug::TailPastReservations.name(),
        &["log recovery", "log:"],
        budget(),
        |on| set(on.then_some(Bug::TailPastReservations)),
        || log_body(true),
    );
}
