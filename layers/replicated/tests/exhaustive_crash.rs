//! Exhaustive crash test of the pair over two `SimDisk`s: a small workload is crashed at every
//! operation of either disk, in every crash state of both disks; then d1 or d2 fail-stops at
//! every one of its operations (and the machine crashes at every later one); each state is
//! recovered by `open`, which is itself crashed at every operation and failed at every
//! operation once more (depth 2). Every recovered state must satisfy the crash invariant
//! (`recovered_from`): both replicas equal, every block a value written there. Further passes:
//! an online rebuild crashed at every operation of the survivor and the replacement, and
//! sampled crash states with writes torn at sector boundaries.

use std::collections::HashSet;
use std::sync::Arc;
use txdisk_disk::{Block, Disk, DiskError, DiskImage, SimDisk};
use txdisk_replicated::{
    differences_marked, recovered_from, BitmapLayout, FormatOptions, MetaState, ReplicaMeta,
    ReplicatedDisk, ReplicatedError, Slot, WriteHistory, RESERVED_BLOCKS,
};

const DATA_BLOCKS: u64 = 4;
/// Two chunks of two blocks: the workload sets, clears and sets again both bits.
const CHUNK_BLOCKS: u32 = 2;

/// Blocks of each member: slots, data, bitmap.
fn member_blocks() -> u64 {
    BitmapLayout::new(DATA_BLOCKS, u64::from(CHUNK_BLOCKS))
        .map(|layout| layout.member_blocks())
        .unwrap_or_else(|| panic!("a valid layout"))
}

/// Opens the pair with bits cleared at the first sync that covers their writes, so that the
/// short workload exercises every bitmap update: set, lazy clear, set again.
fn open_pair(d1: &Arc<SimDisk>, d2: &Arc<SimDisk>) -> Result<Pair, ReplicatedError> {
    let pair = ReplicatedDisk::open(Arc::clone(d1), Arc::clone(d2), &mut |_| {})?;
    pair.set_clear_after_idle_syncs(0);
    Ok(pair)
}
const PAIR_ID: u64 = 0x7035_b05f_6d6a_abc0;

#[derive(Clone, Copy, Debug)]
enum Op {
    Write(u64, u8),
    /// Must return the newest value written there (zeros if none).
    Read(u64),
    Sync,
    /// A clean close (an event: the Clean mark), then `open` again (the next write is the
    /// Dirty mark, another event).
    CloseAndReopen,
}

/// Six writes over four addresses, syncs between some, two reads, a clean close and reopen.
const WORKLOAD: &[Op] = &[
    Op::Write(0, 1),
    Op::Write(1, 2),
    Op::Sync,
    Op::Write(0, 3),
    Op::Read(0),
    Op::Write(2, 4),
    Op::Sync,
    Op::CloseAndReopen,
    Op::Write(3, 5),
    Op::Write(0, 6),
    Op::Read(1),
];

/// Faults scheduled on `[d1, d2]` by each disk's own operation numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Faults {
    crash: [Option<u64>; 2],
    fail: [Option<u64>; 2],
}

type Pair = ReplicatedDisk<Arc<SimDisk>>;

#[derive(Default)]
struct Stats {
    workload_runs: u64,
    crash_points: u64,
    recoveries: u64,
    states_checked: u64,
    refused: u64,
    undetectable: u64,
    enumerated: u64,
    diverged: u64,
    bitmaps_checked: u64,
    bitmap_decided: u64,
}

fn formatted_images() -> (DiskImage, DiskImage) {
    let size = member_blocks();
    let (d1, d2) = (SimDisk::new(size), SimDisk::new(size));
    let options = FormatOptions {
        pair_id: Some(PAIR_ID),
        assume_equal: true,
        chunk_blocks: Some(CHUNK_BLOCKS),
    };
    ReplicatedDisk::format(&d1, &d2, &options).expect("format on fresh SimDisks");
    (d1.durable_image(), d2.durable_image())
}

fn disks(images: [&DiskImage; 2], faults: Faults, dead: [bool; 2]) -> [Arc<SimDisk>; 2] {
    let disks = [
        Arc::new(SimDisk::from_image(images[0])),
        Arc::new(SimDisk::from_image(images[1])),
    ];
    for (index, disk) in disks.iter().enumerate() {
        if let Some(op) = faults.crash[index] {
            disk.schedule_crash(op);
        }
        if let Some(op) = faults.fail[index] {
            disk.schedule_fail_stop(op);
        }
        if dead[index] {
            disk.fail_now();
        }
    }
    disks
}

fn value(tag: u8) -> Block {
    Block::filled(tag)
}

fn expect_crash(error: &DiskError, faults: Faults) {
    assert!(
        matches!(error, DiskError::Crashed),
        "faults {faults:?}: expected a crash, got {error}"
    );
}

/// Runs the workload under `faults`, then crashes the machine. Returns the disks and what was
/// written.
fn run_workload(
    start: &(DiskImage, DiskImage),
    faults: Faults,
) -> ([Arc<SimDisk>; 2], WriteHistory) {
    let disks = disks([&start.0, &start.1], faults, [false; 2]);
    let mut history = WriteHistory::new();
    match open_pair(&disks[0], &disks[1]) {
        Err(error) => assert!(
            matches!(error, ReplicatedError::Disk(DiskError::Crashed)),
            "faults {faults:?}: open: {error}"
        ),
        Ok(pair) => run_ops(pair, &disks, &mut history, faults),
    }
    for disk in &disks {
        disk.crash_now();
    }
    (disks, history)
}

fn run_ops(mut pair: Pair, disks: &[Arc<SimDisk>; 2], history: &mut WriteHistory, faults: Faults) {
    for op in WORKLOAD {
        match *op {
            Op::Write(addr, tag) => {
                history.write(addr, &value(tag));
                if let Err(error) = pair.write(addr, &value(tag)) {
                    return expect_crash(&error, faults);
                }
            }
            Op::Read(addr) => match pair.read(addr) {
                Ok(found) => {
                    let newest = history.allowed(addr).pop().unwrap_or_else(Block::zeroed);
                    assert_eq!(
                        found, newest,
                        "faults {faults:?}: read of block {addr} is not the newest write"
                    );
                }
                Err(error) => return expect_crash(&error, faults),
            },
            Op::Sync => match pair.sync() {
                Ok(()) => history.sync_ok(),
                Err(error) => return expect_crash(&error, faults),
            },
            Op::CloseAndReopen => {
                match pair.close() {
                    Ok(()) => history.sync_ok(),
                    Err(error) => return expect_crash(&error.into(), faults),
                }
                let reopened = open_pair(&disks[0], &disks[1]);
                pair = match reopened {
                    Ok(pair) => pair,
                    Err(error) => return expect_crash(&error.into(), faults),
                };
            }
        }
    }
}

fn fingerprints(image: &DiskImage) -> Vec<u64> {
    (0..image.size_blocks())
        .filter_map(|addr| image.block(addr))
        .map(Block::fingerprint)
        .collect()
}

/// The newest valid metadata of an image, if any.
fn meta_of(image: &DiskImage) -> Option<ReplicaMeta> {
    (0..RESERVED_BLOCKS)
        .filter_map(|addr| match Slot::decode(image.block(addr)?) {
            Slot::Valid(meta) => Some(meta),
            _ => None,
        })
        .max_by_key(|meta| meta.seq)
}

/// Whether `role`'s image is the only one that may serve as a source (the other is dead,
/// stale or half-rebuilt), so that losing it may rightly lose the pair.
fn sole_current(images: [&DiskImage; 2], dead: [bool; 2], index: usize) -> bool {
    let other = 1 - index;
    if dead[other] {
        return true;
    }
    match (meta_of(images[index]), meta_of(images[other])) {
        (Some(mine), Some(theirs)) => {
            theirs.state == MetaState::Rebuilding || theirs.events < mine.events
        }
        (_, None) => true,
        (None, Some(_)) => false,
    }
}

/// A recovered state is explored once per (images, dead members, depth, what the history allows).
type SeenKey = (Vec<u64>, Vec<u64>, [bool; 2], u32, Vec<Vec<u64>>);

struct Explorer<'a> {
    history: &'a WriteHistory,
    history_key: Vec<Vec<u64>>,
    seen: &'a mut HashSet<SeenKey>,
    stats: &'a mut Stats,
    context: String,
}

impl Explorer<'_> {
    /// Opens (recovers) the pair on these images and checks the crash invariant; with depth
    /// left, also crashes and fails that recovery at every operation and explores the results.
    fn explore(&mut self, images: [&DiskImage; 2], dead: [bool; 2], depth: u32) {
        self.stats.enumerated += 1;
        let (f1, f2) = (fingerprints(images[0]), fingerprints(images[1]));
        let data = RESERVED_BLOCKS as usize..(RESERVED_BLOCKS + DATA_BLOCKS) as usize;
        if f1[data.clone()] != f2[data] {
            self.stats.diverged += 1;
        }
        let key = (f1, f2, dead, depth, self.history_key.clone());
        if !self.seen.insert(key) {
            return;
        }
        // The bitmap's crash invariant, on the crash state itself (on copies, so that the
        // recovery's operation numbers stay its own): recovery will copy every chunk where
        // the members differ.
        let [c1, c2] = disks(images, Faults::default(), dead);
        match differences_marked(&*c1, &*c2) {
            Err(violation) => {
                panic!(
                    "{} (dead={dead:?}, depth {depth}): {violation}",
                    self.context
                )
            }
            Ok(check) if check.compared => {
                self.stats.bitmaps_checked += 1;
                // The states where the bitmap decided something: members differing inside a
                // marked chunk while recovery skips another.
                if check.differing_in_marked > 0 && check.skipped_chunks > 0 {
                    self.stats.bitmap_decided += 1;
                }
            }
            Ok(_) => {}
        }
        let [d1, d2] = disks(images, Faults::default(), dead);
        self.stats.recoveries += 1;
        let pair = match ReplicatedDisk::open(Arc::clone(&d1), Arc::clone(&d2), &mut |_| {}) {
            Ok(pair) => pair,
            Err(error) => panic!(
                "{}: recovery on dead={dead:?} failed: {error}",
                self.context
            ),
        };
        let ops = [d1.ops(), d2.ops()];
        self.check(&pair, dead, depth);
        drop(pair);
        if depth > 1 {
            self.crash_recovery(images, dead, ops, depth);
            self.fail_recovery(images, dead, ops);
        }
    }

    fn check(&mut self, pair: &Pair, dead: [bool; 2], depth: u32) {
        if let Err(violation) = recovered_from(pair, self.history) {
            panic!(
                "{} (dead={dead:?}, depth {depth}, status {:?}): {violation}",
                self.context,
                pair.status(),
            );
        }
        self.stats.states_checked += 1;
    }

    /// Crashes the recovery at every pair of per-disk operation numbers it reaches.
    fn crash_recovery(
        &mut self,
        images: [&DiskImage; 2],
        dead: [bool; 2],
        ops: [u64; 2],
        depth: u32,
    ) {
        let mut stops = HashSet::new();
        for c1 in 0..=ops[0] {
            for c2 in 0..=ops[1] {
                let faults = Faults {
                    crash: [Some(c1), Some(c2)],
                    fail: [None; 2],
                };
                let [d1, d2] = disks(images, faults, dead);
                if let Err(error) =
                    ReplicatedDisk::open(Arc::clone(&d1), Arc::clone(&d2), &mut |_| {})
                {
                    assert!(
                        matches!(error, ReplicatedError::Disk(DiskError::Crashed)),
                        "{}: recovery {faults:?}: {error}",
                        self.context
                    );
                }
                d1.crash_now();
                d2.crash_now();
                if !stops.insert((d1.ops(), d2.ops())) {
                    continue;
                }
                self.stats.crash_points += 1;
                for s1 in d1.crash_states(false) {
                    for s2 in d2.crash_states(false) {
                        self.explore([&s1, &s2], dead, depth - 1);
                    }
                }
            }
        }
    }

    /// Fails d1 or d2 at every operation of the recovery: it must finish on the other (or,
    /// when the failed one was the only current replica, refuse with an error).
    fn fail_recovery(&mut self, images: [&DiskImage; 2], dead: [bool; 2], ops: [u64; 2]) {
        for index in 0..2 {
            if dead[index] {
                continue;
            }
            for op in 0..ops[index] {
                if op < RESERVED_BLOCKS && sole_current(images, dead, index) {
                    // The only current replica is dead before its metadata is read: the stale
                    // one cannot know it is stale (no counter survives to say so). This is the
                    // documented limit of any two-member event scheme; skip it.
                    self.stats.undetectable += 1;
                    continue;
                }
                let mut faults = Faults::default();
                faults.fail[index] = Some(op);
                let [d1, d2] = disks(images, faults, dead);
                match ReplicatedDisk::open(Arc::clone(&d1), Arc::clone(&d2), &mut |_| {}) {
                    Ok(pair) => {
                        let mut now_dead = dead;
                        now_dead[index] = [&d1, &d2][index].is_failed();
                        self.check(&pair, now_dead, 1);
                    }
                    Err(
                        ReplicatedError::AllReplicasFailed { .. }
                        | ReplicatedError::NoCurrentReplica { .. },
                    ) if sole_current(images, dead, index) => self.stats.refused += 1,
                    Err(error) => panic!("{}: recovery with {faults:?}: {error}", self.context),
                }
            }
        }
    }
}

/// Runs the workload under `faults`, crashes, and explores every crash state (with the failed
/// disk, if any, both still dead and brought back with its stale contents).
struct Memo {
    stops: HashSet<(u64, u64, [bool; 2])>,
    seen: HashSet<SeenKey>,
}

fn history_key(history: &WriteHistory) -> Vec<Vec<u64>> {
    (0..DATA_BLOCKS)
        .map(|addr| {
            history
                .allowed(addr)
                .iter()
                .map(Block::fingerprint)
                .collect()
        })
        .collect()
}

fn explore_run(start: &(DiskImage, DiskImage), faults: Faults, memo: &mut Memo, stats: &mut Stats) {
    stats.workload_runs += 1;
    let ([d1, d2], history) = run_workload(start, faults);
    let failed = [d1.is_failed(), d2.is_failed()];
    if !memo.stops.insert((d1.ops(), d2.ops(), failed)) {
        return;
    }
    stats.crash_points += 1;
    let history_key = history_key(&history);
    let mut explorer = Explorer {
        history: &history,
        history_key,
        seen: &mut memo.seen,
        stats,
        context: format!("workload faults {faults:?}"),
    };
    let deads: Vec<[bool; 2]> = if failed == [false, false] {
        vec![failed]
    } else {
        vec![failed, [false, false]]
    };
    for s1 in d1.crash_states(false) {
        for s2 in d2.crash_states(false) {
            for dead in &deads {
                explorer.explore([&s1, &s2], *dead, 2);
            }
        }
    }
}

fn reference_ops(start: &(DiskImage, DiskImage)) -> [u64; 2] {
    let ([d1, d2], _) = run_workload(start, Faults::default());
    [d1.ops(), d2.ops()]
}

fn print(pass: &str, stats: &Stats) {
    println!(
        "{pass}: {} crash states enumerated ({} with the replicas' data diverged, {} bitmaps checked against the differences), {} workload runs, {} distinct crash points (workload and recovery), {} recoveries, {} recovered states checked, {} refusals (only current replica lost), {} skipped (only current replica dead before it was read), 0 violations",
        stats.enumerated, stats.diverged, stats.bitmaps_checked, stats.workload_runs, stats.crash_points, stats.recoveries, stats.states_checked, stats.refused, stats.undetectable
    );
}

/// The crash pass: the workload crashed at every pair of operation numbers of the two disks,
/// every crash state explored.
fn crash_pass() -> Stats {
    let start = formatted_images();
    let ops = reference_ops(&start);
    let mut stats = Stats::default();
    let mut memo = Memo {
        stops: HashSet::new(),
        seen: HashSet::new(),
    };
    for c1 in 0..=ops[0] {
        for c2 in 0..=ops[1] {
            let faults = Faults {
                crash: [Some(c1), Some(c2)],
                fail: [None; 2],
            };
            explore_run(&start, faults, &mut memo, &mut stats);
        }
    }
    stats
}

/// The deliberately wrong variant that clears a chunk's bit before the sync that makes its
/// writes durable on both members is caught: some crash state has the members differing in a
/// chunk neither bitmap marks.
#[test]
fn a_bit_cleared_before_the_sync_is_caught() {
    txdisk_replicated::set_bug(Some(txdisk_replicated::Bug::ClearBeforeSync));
    let caught = std::panic::catch_unwind(crash_pass);
    txdisk_replicated::set_bug(None);
    let Err(panic) = caught else {
        panic!("the clear-before-sync variant passed the exhaustive crash test");
    };
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("marked on neither bitmap"),
        "caught, but not by the bitmap's crash invariant: {message}"
    );
    println!("clear-before-sync caught: {message}");
}

#[test]
fn crash_at_every_operation_in_every_state_recovers() {
    let stats = crash_pass();
    assert!(
        stats.bitmap_decided > 0,
        "no crash state had the members differ in a marked chunk while another was skipped: \
         the bitmap check is vacuous ({} bitmaps compared)",
        stats.bitmaps_checked
    );
    println!(
        "bitmap: {} crash states compared, {} where it decided (differences marked, other chunks skipped)",
        stats.bitmaps_checked, stats.bitmap_decided
    );
    print("crash pass", &stats);
    assert!(
        stats.diverged > 0,
        "no crash state left the replicas diverged: the test explores nothing"
    );
    assert!(
        stats.states_checked > 1000,
        "too few states checked: {}",
        stats.states_checked
    );
}

#[test]
fn fail_stop_of_either_disk_at_every_operation_recovers() {
    let start = formatted_images();
    let ops = reference_ops(&start);
    let mut stats = Stats::default();
    let mut memo = Memo {
        stops: HashSet::new(),
        seen: HashSet::new(),
    };
    for index in 0..2 {
        for fail_at in 0..ops[index] {
            // The machine crashes at every later point of either disk, or at the end.
            for c1 in 0..=ops[0] + 1 {
                let mut faults = Faults::default();
                faults.fail[index] = Some(fail_at);
                faults.crash = [Some(c1), None];
                explore_run(&start, faults, &mut memo, &mut stats);
            }
            for c2 in 0..=ops[1] + 1 {
                let mut faults = Faults::default();
                faults.fail[index] = Some(fail_at);
                faults.crash = [None, Some(c2)];
                explore_run(&start, faults, &mut memo, &mut stats);
            }
        }
    }
    print("fail-stop pass", &stats);
    assert!(
        stats.states_checked > 1000,
        "too few states checked: {}",
        stats.states_checked
    );
}

/// Whether every 512-byte sector of `found` comes from one of the `allowed` values (what a torn
/// write may leave).
fn sectors_allowed(found: &Block, allowed: &[Block]) -> bool {
    (0..txdisk_disk::SECTORS_PER_BLOCK)
        .all(|s| allowed.iter().any(|v| v.sector(s) == found.sector(s)))
}

/// Torn writes: at every crash point of the workload, sampled crash states in which every
/// pending write may be torn at sector boundaries (the full product is too large). The
/// metadata must always decode (one slot is in flight at most), `open` must succeed, the
/// replicas must agree, and every sector must come from a value written there.
#[test]
fn torn_writes_at_every_crash_point_never_break_the_metadata() {
    const SAMPLES_PER_POINT: u64 = 24;
    let seed = 0x7035_b05f_u64;
    let start = formatted_images();
    let ops = reference_ops(&start);
    let mut rng = txdisk_disk::rng::SplitMix64::new(seed);
    let mut stops = HashSet::new();
    let mut checked = 0u64;
    for c1 in 0..=ops[0] {
        for c2 in 0..=ops[1] {
            let faults = Faults {
                crash: [Some(c1), Some(c2)],
                fail: [None; 2],
            };
            let ([d1, d2], history) = run_workload(&start, faults);
            if !stops.insert((d1.ops(), d2.ops())) {
                continue;
            }
            for _ in 0..SAMPLES_PER_POINT {
                let images = [
                    d1.random_crash_state(&mut rng, true),
                    d2.random_crash_state(&mut rng, true),
                ];
                let [r1, r2] = disks([&images[0], &images[1]], Faults::default(), [false; 2]);
                let pair = ReplicatedDisk::open(r1, r2, &mut |_| {}).unwrap_or_else(|e| {
                    panic!("seed {seed:x}, faults {faults:?}: open after a torn crash: {e}")
                });
                txdisk_replicated::replicas_agree(&pair)
                    .unwrap_or_else(|v| panic!("seed {seed:x}, faults {faults:?}: {v}"));
                for addr in 0..DATA_BLOCKS {
                    let found = pair.read(addr).unwrap();
                    assert!(
                        sectors_allowed(&found, &history.allowed(addr)),
                        "seed {seed:x}, faults {faults:?}: block {addr} holds a sector never written there"
                    );
                }
                checked += 1;
            }
        }
    }
    println!(
        "torn pass: {} crash points, {checked} sampled torn states recovered, 0 violations",
        stops.len()
    );
    assert!(checked > 100);
}

/// A degraded pair (d2 failed after a sync, d1 written on alone) rebuilt onto a blank
/// replacement: returns d1, the replacement and the history, with the rebuild's operations
/// crashed at `crash` (per disk, counted from the start of the rebuild).
fn run_rebuild(
    start: &(DiskImage, DiskImage),
    crash: [Option<u64>; 2],
) -> ([Arc<SimDisk>; 2], WriteHistory, [u64; 2]) {
    let [d1, d2] = disks([&start.0, &start.1], Faults::default(), [false; 2]);
    let mut history = WriteHistory::new();
    let pair = ReplicatedDisk::open(Arc::clone(&d1), Arc::clone(&d2), &mut |_| {}).expect("open");
    for (addr, tag) in [(0, 1), (1, 2), (2, 3)] {
        history.write(addr, &value(tag));
        pair.write(addr, &value(tag)).expect("write");
    }
    pair.sync().expect("sync");
    history.sync_ok();
    d2.fail_now();
    for (addr, tag) in [(1, 4), (3, 5)] {
        history.write(addr, &value(tag));
        pair.write(addr, &value(tag)).expect("degraded write");
    }
    let replacement = Arc::new(SimDisk::new(member_blocks()));
    let d1_before = d1.ops();
    if let Some(op) = crash[0] {
        d1.schedule_crash(d1.ops() + op);
    }
    if let Some(op) = crash[1] {
        replacement.schedule_crash(op);
    }
    if let Err(error) = pair.rebuild(Arc::clone(&replacement), &mut |_| {}) {
        assert!(
            matches!(error, ReplicatedError::Disk(DiskError::Crashed)),
            "rebuild crashed at {crash:?}: {error}"
        );
    }
    let rebuild_ops = [d1.ops() - d1_before, replacement.ops()];
    d1.crash_now();
    replacement.crash_now();
    ([d1, replacement], history, rebuild_ops)
}

/// An online rebuild crashed at every operation of the survivor and of the replacement, in
/// every crash state of both, each recovered (and that recovery crashed, depth 2): the
/// replacement is never taken for current before its copy is durable.
#[test]
fn rebuild_crashed_at_every_operation_recovers() {
    let start = formatted_images();
    let (_, _, ops) = run_rebuild(&start, [None, None]);
    let mut stats = Stats::default();
    let mut memo = Memo {
        stops: HashSet::new(),
        seen: HashSet::new(),
    };
    for c1 in 0..=ops[0] + 1 {
        for c2 in 0..=ops[1] + 1 {
            stats.workload_runs += 1;
            let ([d1, new], history, _) = run_rebuild(&start, [Some(c1), Some(c2)]);
            if !memo.stops.insert((d1.ops(), new.ops(), [false; 2])) {
                continue;
            }
            stats.crash_points += 1;
            let history_key = history_key(&history);
            let context = format!("rebuild crashed at {:?}", [c1, c2]);
            let mut explorer = Explorer {
                history: &history,
                history_key,
                seen: &mut memo.seen,
                stats: &mut stats,
                context,
            };
            for s1 in d1.crash_states(false) {
                for s2 in new.crash_states(false) {
                    explorer.explore([&s1, &s2], [false, false], 2);
                }
            }
        }
    }
    print("rebuild pass", &stats);
    assert!(
        stats.states_checked > 100,
        "too few states checked: {}",
        stats.states_checked
    );
}

/// After a crash at every operation of the workload, in every crash state of both disks: one
/// member is lost for a while and the other runs alone — it acknowledges a write (synced) and
/// the machine crashes again — then both come back. The write the lone member acknowledged
/// must be on both members after `open`, whichever member ran alone and however far the
/// other had got with its metadata (a crash between two members' Clean or Dirty marks leaves
/// one an event ahead without any data the other lacks).
#[test]
fn a_lone_run_after_every_crash_keeps_its_acknowledged_writes() {
    let start = formatted_images();
    let ops = reference_ops(&start);
    let mut seen = HashSet::new();
    let mut lone_runs = 0u64;
    for c1 in 0..=ops[0] {
        for c2 in 0..=ops[1] {
            let faults = Faults {
                crash: [Some(c1), Some(c2)],
                fail: [None; 2],
            };
            let ([d1, d2], _history) = run_workload(&start, faults);
            for s1 in d1.crash_states(false) {
                for s2 in d2.crash_states(false) {
                    if !seen.insert((fingerprints(&s1), fingerprints(&s2))) {
                        continue;
                    }
                    for alone in [0, 1] {
                        lone_runs += lone_run(&s1, &s2, alone, faults);
                    }
                }
            }
        }
    }
    println!("lone-run pass: {lone_runs} lone runs after distinct crash states, 0 violations");
    assert!(lone_runs > 50, "too few lone runs: {lone_runs}");
}

/// Runs member `alone` of the crash state alone (a synced write to block 0), crashes, reopens
/// both; returns 1 if the run happened (0 if that member cannot be opened alone).
fn lone_run(s1: &DiskImage, s2: &DiskImage, alone: usize, faults: Faults) -> u64 {
    let images = [s1, s2];
    let lone = Arc::new(SimDisk::from_image(images[alone]));
    let Ok(pair) = ReplicatedDisk::open_degraded(Arc::clone(&lone), &mut |_| {}) else {
        return 0;
    };
    let acknowledged = value(0xa0);
    if pair.write(0, &acknowledged).is_err() || pair.sync().is_err() {
        return 0;
    }
    drop(pair);
    let mut after = [images[0].clone(), images[1].clone()];
    after[alone] = lone.durable_image();
    let disks = after.map(|image| Arc::new(SimDisk::from_image(&image)));
    let context = format!("workload faults {faults:?}, member {} ran alone", alone + 1);
    let pair = open_pair(&disks[0], &disks[1])
        .unwrap_or_else(|error| panic!("{context}: reopen refused: {error}"));
    for role in [txdisk_replicated::Role::D1, txdisk_replicated::Role::D2] {
        assert_eq!(
            pair.read_replica(role, 0).unwrap(),
            acknowledged,
            "{context}: {role} lost the write acknowledged while running alone"
        );
    }
    1
}
