//! The checksums are crash-safe across the stack: the log over one checksummed disk, and over
//! a replicated pair of checksummed members, crashed at every operation of a workload of
//! commits, flushes and installations, in every crash state (torn sectors too, sampled past a
//! cap), and recovered — then crashed again at every operation of that recovery and recovered
//! once more. After the last recovery:
//!
//! * the data equals the contents after a prefix of the commits that holds every
//!   acknowledged one (the log's crash invariant), and
//! * **every block of every member verifies**: a crash between a block and its checksum never
//!   leaves a good block that looks corrupt (nor, by the first point, a corrupt one that looks
//!   good).

use std::sync::Arc;
use txdisk::disk::rng::SplitMix64;
use txdisk::disk::{Disk, DiskError, DiskImage, SimDisk};
use txdisk::integrity::IntegrityDisk;
use txdisk::log::{Log, LogOptions};
use txdisk::replicated::{FormatOptions, ReplicatedDisk};
use txdisk::Block;

const LOG_BLOCKS: u64 = 8;
/// Raw blocks of each device: integrity metadata (3) + pair metadata (2) and bitmap (1, on a
/// pair; a single image has them as 3 more data blocks) + log superblock and headers (3) +
/// log + 6 data blocks.
const RAW_BLOCKS: u64 = 3 + 2 + 1 + 3 + LOG_BLOCKS + 6;
const STATE_CAP: u128 = 2048;
const SAMPLES: usize = 96;
const DEPTH2_STATES: usize = 2;

#[derive(Clone, Debug)]
enum Step {
    Commit(Vec<(u64, u8)>),
    CommitNoSync(Vec<(u64, u8)>),
    Flush,
    Install,
}

fn workload() -> Vec<Step> {
    vec![
        Step::Commit(vec![(0, 1), (5, 2)]),
        Step::CommitNoSync(vec![(1, 3)]),
        Step::CommitNoSync(vec![(0, 4), (2, 5)]),
        Step::Flush,
        Step::Install,
        Step::Commit(vec![(5, 6), (3, 7), (4, 8)]),
        Step::Commit(vec![(1, 9)]),
    ]
}

fn options() -> LogOptions {
    LogOptions {
        background_installer: false,
        ..LogOptions::default()
    }
}

/// The devices under test, rebuilt from images after each crash.
trait Rig {
    fn sims(&self) -> Vec<Arc<SimDisk>>;
    /// The stack's disk under the log (running the pair's own recovery first).
    fn open(&self) -> Result<Arc<dyn Disk>, String>;
}

struct Single(Arc<SimDisk>);
struct Pair([Arc<SimDisk>; 2]);

impl Rig for Single {
    fn sims(&self) -> Vec<Arc<SimDisk>> {
        vec![self.0.clone()]
    }
    fn open(&self) -> Result<Arc<dyn Disk>, String> {
        let disk = IntegrityDisk::open(self.0.clone()).map_err(|e| e.to_string())?;
        Ok(Arc::new(disk))
    }
}

impl Rig for Pair {
    fn sims(&self) -> Vec<Arc<SimDisk>> {
        self.0.to_vec()
    }
    fn open(&self) -> Result<Arc<dyn Disk>, String> {
        let member =
            |sim: &Arc<SimDisk>| IntegrityDisk::open(sim.clone()).map_err(|e| e.to_string());
        let pair = ReplicatedDisk::open(member(&self.0[0])?, member(&self.0[1])?, &mut |_| {})
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(pair))
    }
}

fn rig_of(images: &[DiskImage]) -> Box<dyn Rig> {
    let sims: Vec<Arc<SimDisk>> = images
        .iter()
        .map(|i| Arc::new(SimDisk::from_image(i)))
        .collect();
    match sims.as_slice() {
        [one] => Box::new(Single(one.clone())),
        [a, b] => Box::new(Pair([a.clone(), b.clone()])),
        _ => unreachable!("one or two devices"),
    }
}

fn formatted(devices: usize) -> Vec<DiskImage> {
    let sims: Vec<Arc<SimDisk>> = (0..devices)
        .map(|_| Arc::new(SimDisk::new(RAW_BLOCKS)))
        .collect();
    let checked: Vec<IntegrityDisk<Arc<SimDisk>>> = sims
        .iter()
        .enumerate()
        .map(|(i, sim)| {
            IntegrityDisk::format_with_salt(sim.clone(), 0x5a17 + i as u64).expect("format")
        })
        .collect();
    match checked.as_slice() {
        [one] => {
            Log::format(one, LOG_BLOCKS, 0x106).expect("log format");
        }
        [a, b] => {
            let pair_options = FormatOptions {
                pair_id: Some(0x9a1e),
                assume_equal: true,
                ..Default::default()
            };
            ReplicatedDisk::format(a, b, &pair_options).expect("pair format");
            drop(checked);
            let rig = Pair([sims[0].clone(), sims[1].clone()]);
            let disk = rig.open().expect("pair open");
            Log::format(&*disk, LOG_BLOCKS, 0x106).expect("log format");
            disk.sync().expect("sync");
        }
        _ => unreachable!(),
    }
    sims.iter().map(|sim| sim.durable_image()).collect()
}

/// Contents after each prefix of the commits: `prefixes[k]` after the first k.
fn prefixes(steps: &[Step], data_blocks: usize) -> Vec<Vec<u8>> {
    let mut contents = vec![0u8; data_blocks];
    let mut all = vec![contents.clone()];
    for step in steps {
        if let Step::Commit(writes) | Step::CommitNoSync(writes) = step {
            for (addr, byte) in writes {
                contents[*addr as usize] = *byte;
            }
            all.push(contents.clone());
        }
    }
    all
}

/// Runs the workload; returns how many commits were acknowledged durable (a durable commit,
/// or a flush after it, returned Ok) before the first error.
fn run(log: &Log, steps: &[Step]) -> usize {
    let (mut committed, mut durable) = (0, 0);
    for step in steps {
        let result = match step {
            Step::Commit(writes) => log.append(block_writes(writes)).and_then(|_| log.flush()),
            Step::CommitNoSync(writes) => log.append(block_writes(writes)).map(|_| ()),
            Step::Flush => log.flush(),
            Step::Install => log.install().map(|_| ()),
        };
        if result.is_err() {
            return durable;
        }
        match step {
            Step::Commit(_) => {
                committed += 1;
                durable = committed;
            }
            Step::CommitNoSync(_) => committed += 1,
            Step::Flush => durable = committed,
            Step::Install => {}
        }
    }
    durable
}

fn block_writes(writes: &[(u64, u8)]) -> Vec<(u64, Block)> {
    writes
        .iter()
        .map(|(a, b)| (*a, Block::filled(*b)))
        .collect()
}

/// Checks a recovered stack: contents are a prefix holding the acknowledged commits, and
/// every block of every member verifies.
fn check(rig: &dyn Rig, log: &Log, acknowledged: usize, context: &str) {
    let data_blocks = 6;
    let found: Vec<u8> = (0..data_blocks)
        .map(|addr| {
            let block = log
                .read(addr)
                .unwrap_or_else(|e| panic!("{context}: read {addr}: {e}"));
            block.as_bytes()[0]
        })
        .collect();
    let all = prefixes(&workload(), data_blocks as usize);
    assert!(
        all[acknowledged..].contains(&found),
        "{context}: contents {found:?} are no prefix with the {acknowledged} acknowledged commits"
    );
    for (index, sim) in rig.sims().iter().enumerate() {
        let member = IntegrityDisk::open(sim.clone()).expect("member opens");
        for addr in 0..member.size_blocks() {
            if let Err(error) = member.read(addr) {
                panic!("{context}: device {index} block {addr} fails after recovery: {error}");
            }
        }
    }
}

/// States a crash now may leave on every device (the product, capped; sampled past it).
fn crash_images(sims: &[Arc<SimDisk>], torn: bool, rng: &mut SplitMix64) -> Vec<Vec<DiskImage>> {
    let per_device: Vec<Vec<DiskImage>> = sims
        .iter()
        .map(|sim| match sim.crash_states_capped(torn, STATE_CAP) {
            Ok(states) => states.collect(),
            Err(_) => (0..SAMPLES)
                .map(|_| sim.random_crash_state(rng, torn))
                .collect(),
        })
        .collect();
    let mut combos: Vec<Vec<DiskImage>> = vec![Vec::new()];
    for states in &per_device {
        combos = combos
            .into_iter()
            .flat_map(|prefix| {
                states.iter().map(move |state| {
                    let mut next = prefix.clone();
                    next.push(state.clone());
                    next
                })
            })
            .collect();
    }
    if combos.len() as u128 > STATE_CAP {
        let picked = (0..SAMPLES).map(|_| combos[rng.below(combos.len() as u64) as usize].clone());
        return picked.collect();
    }
    combos
}

#[derive(Debug, Default)]
struct Tally {
    crash_points: u64,
    states: u64,
    depth2_states: u64,
}

/// Recovers `images` and checks.
fn recover_and_check(images: &[DiskImage], acknowledged: usize, context: &str) {
    let rig = rig_of(images);
    let disk = rig
        .open()
        .unwrap_or_else(|e| panic!("{context}: open: {e}"));
    let log = Log::open(disk, options()).unwrap_or_else(|e| panic!("{context}: recovery: {e}"));
    check(&*rig, &log, acknowledged, context);
}

fn crash_everywhere(devices: usize, torn: bool, seed: u64) -> Tally {
    let base = formatted(devices);
    let steps = workload();
    let total_ops = {
        let rig = rig_of(&base);
        let log = Log::open(rig.open().expect("open"), options()).expect("open log");
        run(&log, &steps);
        rig.sims()[0].ops()
    };
    let mut rng = SplitMix64::new(seed);
    let mut tally = Tally::default();
    for crash_at in 0..total_ops {
        let rig = rig_of(&base);
        rig.sims()[0].schedule_crash(crash_at);
        let acknowledged = match rig.open() {
            Ok(disk) => match Log::open(disk, options()) {
                Ok(log) => run(&log, &steps),
                Err(_) => 0,
            },
            Err(_) => 0,
        };
        for sim in rig.sims() {
            sim.crash_now();
        }
        tally.crash_points += 1;
        let context = format!("devices {devices} torn {torn} seed {seed} crash at {crash_at}");
        for (index, images) in crash_images(&rig.sims(), torn, &mut rng).iter().enumerate() {
            tally.states += 1;
            recover_and_check(images, acknowledged, &context);
            // Depth two, from the first state of each point: the recovery itself crashed at
            // each of its operations.
            if index == 0 {
                tally.depth2_states += depth_two(images, acknowledged, torn, &mut rng, &context);
            }
        }
    }
    tally
}

/// Crashes the recovery of `images` at every operation of device 0, recovers each crash state
/// (a few, sampled) again and checks. Returns the states checked.
fn depth_two(
    images: &[DiskImage],
    acknowledged: usize,
    torn: bool,
    rng: &mut SplitMix64,
    context: &str,
) -> u64 {
    let recovery_ops = {
        let rig = rig_of(images);
        let start = rig.sims()[0].ops();
        let Ok(disk) = rig.open() else { return 0 };
        if Log::open(disk, options()).is_err() {
            return 0;
        }
        rig.sims()[0].ops() - start
    };
    let mut checked = 0;
    for crash_at in 0..recovery_ops {
        let rig = rig_of(images);
        rig.sims()[0].schedule_crash(crash_at);
        if let Ok(disk) = rig.open() {
            let _ = Log::open(disk, options());
        }
        for sim in rig.sims() {
            sim.crash_now();
        }
        for _ in 0..DEPTH2_STATES {
            let again: Vec<DiskImage> = rig
                .sims()
                .iter()
                .map(|sim| sim.random_crash_state(rng, torn))
                .collect();
            let context = format!("{context}, recovery crashed at {crash_at}");
            recover_and_check(&again, acknowledged, &context);
            checked += 1;
        }
    }
    checked
}

#[test]
fn one_checksummed_disk_every_crash_state_recovers_verified() {
    let tally = crash_everywhere(1, false, 1);
    println!("single, whole blocks: {tally:?}");
    assert!(
        tally.crash_points >= 20 && tally.depth2_states > 0,
        "{tally:?}"
    );
}

#[test]
fn one_checksummed_disk_torn_sectors_recover_verified() {
    let tally = crash_everywhere(1, true, 2);
    println!("single, torn sectors: {tally:?}");
    assert!(tally.states > tally.crash_points, "{tally:?}");
}

#[test]
fn a_pair_of_checksummed_members_every_crash_state_recovers_verified() {
    let tally = crash_everywhere(2, false, 3);
    println!("pair, whole blocks: {tally:?}");
    assert!(
        tally.crash_points >= 20 && tally.depth2_states > 0,
        "{tally:?}"
    );
}

#[test]
fn a_pair_of_checksummed_members_torn_sectors_recover_verified() {
    let tally = crash_everywhere(2, true, 4);
    println!("pair, torn sectors: {tally:?}");
    assert!(tally.states > tally.crash_points, "{tally:?}");
}

/// The check can fail: with verification skipped below the log, a block damaged at rest is
/// served as if good, and the contents check above sees the wrong bytes.
#[test]
fn the_check_catches_a_stack_that_serves_damaged_bytes() {
    let images = formatted(1);
    let rig = rig_of(&images);
    let log = Log::open(rig.open().expect("open"), options()).expect("log");
    run(&log, &workload());
    log.install().expect("install");
    let sim = &rig.sims()[0];
    let checked = IntegrityDisk::open(sim.clone()).expect("open");
    let home = checked.superblock().data_start + log.superblock().data_start + 1;
    let mut block = sim.read(home).expect("raw read");
    block.as_bytes_mut()[0] ^= 0x80;
    sim.write(home, &block).expect("raw write");
    sim.sync().expect("sync");
    drop(log);
    let log = Log::open(rig.open().expect("open"), options()).expect("log");
    assert!(matches!(
        log.read(1),
        Err(txdisk::log::LogError::DamagedBlock {
            addr: 1,
            source: DiskError::Corrupt { .. }
        })
    ));
    txdisk::integrity::bugs::set(Some(txdisk::integrity::bugs::Bug::SkipVerify));
    let served = log.read(1);
    txdisk::integrity::bugs::set(None);
    assert_eq!(
        served.expect("served").as_bytes()[0],
        9 ^ 0x80,
        "the variant serves rot"
    );
}
