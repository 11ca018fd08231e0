//! Shared crash-test machinery for the log: workloads as data, a model of the prefix states,
//! and a driver that crashes a run at every disk operation, enumerates (or samples) the crash
//! states, crashes recovery again, and checks the recovered contents against the model.

#![allow(dead_code)]

use std::sync::Arc;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Block, Disk, DiskImage, SimDisk};
use txdisk_log::tooling::{matches_prefix, Contents, WalChecker};
use txdisk_log::{log_recover, Log, LogError, LogOptions};

/// One step of a workload.
#[derive(Clone, Debug)]
pub enum Step {
    /// A transaction: (data address, fill byte) pairs; durable or deferred commit.
    Commit {
        writes: Vec<(u64, u8)>,
        durable: bool,
    },
    Flush,
    Install,
}

/// A block recognisable in failure messages: the fill byte, with the address in byte 0.
pub fn value(addr: u64, fill: u8) -> Block {
    let mut block = Block::filled(fill);
    block.as_bytes_mut()[0] = addr as u8;
    block
}

/// The contents after each prefix of the commits of `steps`, starting from `initial`.
pub fn prefix_states(initial: &Contents, steps: &[Step]) -> Vec<Contents> {
    let mut states = vec![initial.clone()];
    for step in steps {
        if let Step::Commit { writes, .. } = step {
            let mut next = states[states.len() - 1].clone();
            for &(addr, fill) in writes {
                next.insert(addr, value(addr, fill));
            }
            states.push(next);
        }
    }
    states
}

/// How far a run got before it crashed: commits called, and commits known durable.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub commits_called: usize,
    pub durable_commits: usize,
}

/// Runs `steps` on a log opened over `disk`, stopping at the first error.
pub fn run_steps(disk: Arc<dyn Disk>, steps: &[Step]) -> (Progress, Result<(), LogError>) {
    let mut progress = Progress::default();
    let log = match Log::open(
        disk,
        LogOptions {
            background_installer: false,
            ..LogOptions::default()
        },
    ) {
        Ok(log) => log,
        Err(error) => return (progress, Err(error)),
    };
    for step in steps {
        if let Err(error) = run_step(&log, step, &mut progress) {
            return (progress, Err(error));
        }
    }
    (progress, Ok(()))
}

/// Runs one step on an open log, counting commits called and commits known durable.
pub fn run_step(log: &Log, step: &Step, progress: &mut Progress) -> Result<(), LogError> {
    match step {
        Step::Commit { writes, durable } => {
            let mut tx = log.begin();
            for &(addr, fill) in writes {
                tx.write(addr, &value(addr, fill))?;
            }
            progress.commits_called += 1;
            let result = if *durable {
                tx.commit()
            } else {
                tx.commit_nosync()
            };
            if result.is_ok() && *durable {
                progress.durable_commits = progress.commits_called;
            }
            result.map(|_| ())
        }
        Step::Flush => {
            let result = log.flush();
            if result.is_ok() {
                progress.durable_commits = progress.commits_called;
            }
            result
        }
        Step::Install => log.install().map(|_| ()),
    }
}

/// A formatted image of `size_blocks` with a `log_blocks` log and the given salt.
pub fn formatted(size_blocks: u64, log_blocks: u64, salt: u64) -> DiskImage {
    let sim = SimDisk::new(size_blocks);
    Log::format(&sim, log_blocks, salt).expect("format a fresh SimDisk");
    sim.durable_image()
}

/// Runs recovery to completion on `image` and returns the logical contents.
pub fn recovered_contents(image: &DiskImage) -> Contents {
    let sim = SimDisk::from_image(image);
    log_recover(&sim).expect("recovery of a crash state");
    read_contents(&sim)
}

/// The data region of a fully installed disk, as contents (zero blocks omitted).
pub fn read_contents(disk: &dyn Disk) -> Contents {
    let sb = txdisk_log::tooling::read_superblock(disk).expect("superblock");
    let mut contents = Contents::new();
    for addr in 0..sb.data_blocks {
        let block = disk.read(sb.data_start + addr).expect("read data block");
        if !block.is_zero() {
            contents.insert(addr, block);
        }
    }
    contents
}

/// Limits of one crash campaign.
#[derive(Clone, Copy, Debug)]
pub struct Campaign {
    pub torn: bool,
    /// Enumerate every crash state of a crash point when there are at most this many.
    pub state_cap: u128,
    /// Otherwise, sample this many.
    pub samples: usize,
    /// Crash recovery again at every one of its operations (depth 2).
    pub depth2: bool,
    /// Crash states of the crashed recovery to follow, at most.
    pub depth2_states: usize,
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub crash_points: u64,
    pub states: u64,
    pub recoveries: u64,
    pub sampled_points: u64,
}

/// The crash states of a crashed `SimDisk`: all of them, or a seeded sample past the cap.
pub fn states_of(
    sim: &SimDisk,
    torn: bool,
    cap: u128,
    samples: usize,
    rng: &mut SplitMix64,
) -> (Vec<DiskImage>, bool) {
    match sim.crash_states_capped(torn, cap) {
        Ok(states) => (states.collect(), false),
        Err(_) => (
            (0..samples)
                .map(|_| sim.random_crash_state(rng, torn))
                .collect(),
            true,
        ),
    }
}

/// Crashes `steps` (run from `base`) at every disk operation and checks every resulting state.
pub fn crash_everywhere(base: &DiskImage, steps: &[Step], campaign: Campaign) -> Tally {
    let initial = recovered_contents(base);
    let states = prefix_states(&initial, steps);
    let total_ops = {
        let sim = Arc::new(SimDisk::from_image(base));
        let (_, result) = run_steps(Arc::new(WalChecker::new(Arc::clone(&sim), true)), steps);
        result.expect("the workload runs without a crash");
        sim.ops()
    };
    let mut rng = SplitMix64::new(campaign.seed);
    let mut tally = Tally::default();
    for crash_op in 0..=total_ops {
        let sim = Arc::new(SimDisk::from_image(base));
        sim.schedule_crash(crash_op);
        let (progress, _) = run_steps(Arc::new(WalChecker::new(Arc::clone(&sim), true)), steps);
        let (crash_states, sampled) = states_of(
            &sim,
            campaign.torn,
            campaign.state_cap,
            campaign.samples,
            &mut rng,
        );
        tally.crash_points += 1;
        tally.sampled_points += u64::from(sampled);
        let allowed = &states[..=progress.commits_called];
        for state in crash_states {
            let context = format!(
                "seed {} crash at op {crash_op} of {total_ops}",
                campaign.seed
            );
            check_recovery(&state, allowed, progress.durable_commits, &context);
            tally.states += 1;
            tally.recoveries += 1;
            if campaign.depth2 {
                tally.recoveries += crash_recovery(
                    &state,
                    allowed,
                    progress.durable_commits,
                    campaign,
                    &mut rng,
                    &context,
                );
            }
        }
    }
    tally
}

/// Recovers `state` to the end (under the write-ahead checker) and checks it against the model.
pub fn check_recovery(state: &DiskImage, allowed: &[Contents], durable: usize, context: &str) {
    let sim = Arc::new(SimDisk::from_image(state));
    let checker = WalChecker::new(Arc::clone(&sim), true);
    if let Err(error) = log_recover(&checker) {
        panic!("{context}: recovery failed: {error}");
    }
    let contents = read_contents(&*sim);
    if let Err(violation) = matches_prefix(&contents, allowed, durable) {
        panic!("{context}: {violation}");
    }
    // Idempotence: recovering again changes nothing.
    log_recover(&*sim).unwrap_or_else(|e| panic!("{context}: second recovery failed: {e}"));
    assert_eq!(
        read_contents(&*sim),
        contents,
        "{context}: second recovery changed the contents"
    );
}

/// Crashes the recovery of `state` at every one of its operations, then recovers each crash
/// state of that (all, or a sample) to the end and checks it. Returns recoveries run.
fn crash_recovery(
    state: &DiskImage,
    allowed: &[Contents],
    durable: usize,
    campaign: Campaign,
    rng: &mut SplitMix64,
    context: &str,
) -> u64 {
    let recovery_ops = {
        let sim = SimDisk::from_image(state);
        log_recover(&sim).expect("recovery");
        sim.ops()
    };
    let mut recoveries = 0;
    for crash_op in 0..recovery_ops {
        let sim = Arc::new(SimDisk::from_image(state));
        sim.schedule_crash(crash_op);
        let _ = log_recover(&WalChecker::new(Arc::clone(&sim), true));
        let (second, _) = states_of(
            &sim,
            campaign.torn,
            campaign.depth2_states as u128,
            campaign.depth2_states,
            rng,
        );
        for image in second {
            check_recovery(
                &image,
                allowed,
                durable,
                &format!("{context}, recovery crashed at op {crash_op}"),
            );
            recoveries += 1;
        }
    }
    recoveries
}

/// A chain of `depth` crashes: each recovery crashed at a random operation and a random crash
/// state kept, then a final recovery; checked against the model.
pub fn random_deep_crash(
    state: &DiskImage,
    allowed: &[Contents],
    durable: usize,
    depth: usize,
    torn: bool,
    rng: &mut SplitMix64,
    context: &str,
) {
    let mut image = state.clone();
    for level in 0..depth {
        let ops = {
            let sim = SimDisk::from_image(&image);
            log_recover(&sim)
                .unwrap_or_else(|e| panic!("{context}: recovery at depth {level} failed: {e}"));
            sim.ops()
        };
        let sim = SimDisk::from_image(&image);
        sim.schedule_crash(rng.below(ops.max(1)));
        let _ = log_recover(&sim);
        image = sim.random_crash_state(rng, torn);
    }
    check_recovery(&image, allowed, durable, context);
}

/// A random workload over `data_addrs` addresses.
pub fn random_steps(
    rng: &mut SplitMix64,
    count: usize,
    data_addrs: u64,
    max_tx_blocks: u64,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for index in 0..count {
        match rng.below(10) {
            0 => steps.push(Step::Flush),
            1 => steps.push(Step::Install),
            _ => {
                let len = 1 + rng.below(max_tx_blocks);
                let mut writes = Vec::new();
                for _ in 0..len {
                    let addr = rng.below(data_addrs);
                    if !writes.iter().any(|&(a, _)| a == addr) {
                        writes.push((addr, (index as u8).wrapping_mul(7).wrapping_add(1)));
                    }
                }
                steps.push(Step::Commit {
                    writes,
                    durable: rng.chance(1, 2),
                });
            }
        }
    }
    steps
}

/// Two epochs: `first` crashed at every operation and every crash state, recovered, then
/// `second` run to completion with durable commits and recovered again. The final contents
/// must be the first recovery's contents plus all of `second`: a stale record left by the
/// first crash must never come back to life. Returns states checked.
pub fn crash_then_continue(base: &DiskImage, first: &[Step], second: &[Step], seed: u64) -> u64 {
    let total_ops = {
        let sim = Arc::new(SimDisk::from_image(base));
        run_steps(sim.clone(), first).1.expect("clean first epoch");
        sim.ops()
    };
    let mut rng = SplitMix64::new(seed);
    let mut checked = 0;
    for crash_op in 0..=total_ops {
        let sim = Arc::new(SimDisk::from_image(base));
        sim.schedule_crash(crash_op);
        let _ = run_steps(sim.clone(), first);
        let (states, _) = states_of(&sim, false, 1 << 12, 256, &mut rng);
        for state in states {
            let recovered = recovered_contents(&state);
            let expected = prefix_states(&recovered, second)
                .pop()
                .expect("at least the start state");
            let next = Arc::new(SimDisk::from_image(&state));
            let (_, result) = run_steps(Arc::new(WalChecker::new(next.clone(), true)), second);
            result.unwrap_or_else(|e| {
                panic!("seed {seed} crash at op {crash_op}: second epoch failed: {e}")
            });
            let found = recovered_contents(&next.durable_image());
            if let Err(violation) = matches_prefix(&found, &[expected], 0) {
                panic!("seed {seed} crash at op {crash_op}: after the second epoch: {violation}");
            }
            checked += 1;
        }
    }
    checked
}

/// A group flush of two records can leave the first torn and the second complete. After
/// recovery, a new record of the same length lands where the torn one was; the complete stale
/// record right behind it must not be replayed after the next recovery.
pub fn stale_group_steps() -> (Vec<Step>, Vec<Step>) {
    let first = vec![
        Step::Commit {
            writes: vec![(0, 0x10)],
            durable: false,
        },
        Step::Commit {
            writes: vec![(1, 0x20)],
            durable: false,
        },
        Step::Flush,
    ];
    let second = vec![Step::Commit {
        writes: vec![(2, 0x30)],
        durable: true,
    }];
    (first, second)
}
