//! Crash campaigns through the real I/O path: the stack on images in a [`PowerLossMount`],
//! a seeded workload, a power loss, a reopen (recovery through `pread`/`pwrite`/`fdatasync` on
//! what survived), and the prefix oracle; several rounds per run, each from the state the last
//! recovered.
//!
//! | target | what runs on the mount | a transaction is | durable when |
//! |---|---|---|---|
//! | `file` | `txdisk::open` of one image (`FileDisk`) | a logical-disk transaction | a durable commit or a flush returns |
//! | `pair` | the same over a replicated pair of two images | the same | the same |
//! | `serve` | `txdisk_nbd::serve` (what `txdisk serve` runs) on one image, written by an `NbdDisk` client | one NBD WRITE | a FLUSH returns |
//! | `fs` | the example file system over the logical disk | a file-system operation | an `fsync` returns |
//!
//! Each round's power loss is armed at a seeded write or sync of the round
//! ([`PowerLossMount::arm`]), so it falls between the stack's `pwrite`s and their `fdatasync`,
//! in its own calls or in its background installer's; the step it strikes is in flight (kept
//! or not). A round whose loss did not strike ends with one.
//!
//! A run is named by a token, `plt1-TARGET-LOSS-SEED` ([`Run::token`]); [`replay`] reruns it
//! exactly (the workload, the step of each loss and what the loss keeps all come from the
//! seed; only the stack's own background threads are not scheduled by it).

use crate::oracle::{stamp_block, BlockOracle};
use crate::{Loss, PowerLossError, PowerLossMount};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use txdisk::{Block, Disk, FormatOptions, OpenOptions};
use txdisk_disk::rng::SplitMix64;

/// What a campaign crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The stack on one image file.
    File,
    /// The stack on a replicated pair of image files.
    Pair,
    /// The NBD server on one image, written by a client over a Unix socket.
    Serve,
    /// The file system on the stack on one image.
    Fs,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 4] = [Target::File, Target::Pair, Target::Serve, Target::Fs];

    /// The target's name in tokens.
    pub fn name(self) -> &'static str {
        match self {
            Target::File => "file",
            Target::Pair => "pair",
            Target::Serve => "serve",
            Target::Fs => "fs",
        }
    }

    fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One seeded run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// What runs on the mount.
    pub target: Target,
    /// What each power loss keeps: `all`, `blocks` or `torn` ([`Loss::kind`]).
    pub loss: &'static str,
    /// The workload, the loss points and what each loss keeps.
    pub seed: u64,
}

/// Rounds (power losses) per run.
pub const ROUNDS: usize = 3;
/// Steps of a round; the power goes out after a seeded number of them, at least half.
pub const STEPS_PER_ROUND: u64 = 40;
const IMAGE: FormatOptions = FormatOptions {
    size_blocks: 1024,
    log_blocks: 48,
};

impl Run {
    /// `plt1-TARGET-LOSS-SEED`.
    pub fn token(&self) -> String {
        format!("plt1-{}-{}-{}", self.target.name(), self.loss, self.seed)
    }

    /// The run a token names.
    pub fn from_token(token: &str) -> Result<Run, String> {
        let bad = || format!("{token:?} is not a power-loss token (plt1-TARGET-LOSS-SEED)");
        let mut parts = token.split('-');
        if parts.next() != Some("plt1") {
            return Err(bad());
        }
        let target = parts.next().and_then(Target::from_name).ok_or_else(bad)?;
        let loss = parts.next().ok_or_else(bad)?;
        let loss = ["all", "blocks", "torn"]
            .into_iter()
            .find(|k| *k == loss)
            .ok_or_else(bad)?;
        let seed = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Run { target, loss, seed })
    }

    fn loss_for_round(&self, round: usize) -> Loss {
        let seed = self.seed.wrapping_mul(1000).wrapping_add(round as u64);
        Loss::from_kind(self.loss, seed).expect("the kind was checked when the run was made")
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Power losses survived.
    pub losses: usize,
    /// Transactions (or operations) that returned Ok.
    pub committed: usize,
    /// Pages pending at the losses, summed.
    pub pending_pages: u64,
    /// `fsync`/`fdatasync` calls the mount served.
    pub syncs: u64,
}

/// A run that broke the oracle, with the token that replays it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (replay: {token})")]
pub struct Violation {
    /// The run's token.
    pub token: String,
    /// What the oracle found.
    pub message: String,
}

/// Runs `run` in a fresh directory under `scratch`.
pub fn run(run: &Run, scratch: &Path) -> Result<RunReport, Violation> {
    let violation = |message: String| Violation {
        token: run.token(),
        message,
    };
    let scratch_dir = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(scratch)
        .map_err(|e| violation(format!("scratch directory: {e}")))?;
    let dir = scratch_dir.path();
    let backing = dir.join("backing");
    let mountpoint = dir.join("mnt");
    for d in [&backing, &mountpoint] {
        std::fs::create_dir(d).map_err(|e| violation(format!("{}: {e}", d.display())))?;
    }
    let mount = PowerLossMount::mount(&backing, &mountpoint)
        .map_err(|e: PowerLossError| violation(e.to_string()))?;
    let mut rng = SplitMix64::new(run.seed);
    let result = match run.target {
        Target::File => block_run(run, &mount, &[mountpoint.join("one.img")], &mut rng),
        Target::Pair => {
            let images = [mountpoint.join("d1.img"), mountpoint.join("d2.img")];
            block_run(run, &mount, &images, &mut rng)
        }
        Target::Serve => serve_run(run, &mount, &dir.join("nbd.sock"), &mut rng),
        Target::Fs => fs_run(run, &mount, &mountpoint.join("fs.img"), &mut rng),
    };
    let syncs = mount.syncs();
    drop(mount);
    drop(scratch_dir);
    result
        .map(|report| RunReport { syncs, ..report })
        .map_err(violation)
}

/// Reruns the run a token names.
pub fn replay(token: &str, scratch: &Path) -> Result<RunReport, Violation> {
    let parsed = Run::from_token(token).map_err(|message| Violation {
        token: token.to_string(),
        message,
    })?;
    run(&parsed, scratch)
}

/// Addresses over the whole data region: a third near either end (the last block included),
/// a third in a hot set of three blocks, the rest anywhere.
fn pick_addr(rng: &mut SplitMix64, data_blocks: u64) -> u64 {
    let near = 4.min(data_blocks);
    match rng.next_u64() % 6 {
        0 => rng.next_u64() % near,
        1 => data_blocks - 1 - rng.next_u64() % near,
        2 | 3 => data_blocks / 2 + rng.next_u64() % 3.min(data_blocks - data_blocks / 2),
        _ => rng.next_u64() % data_blocks,
    }
}

fn pick_addrs(rng: &mut SplitMix64, data_blocks: u64) -> Vec<u64> {
    let count = 1 + rng.next_u64() % 3;
    let mut addrs: Vec<u64> = (0..count).map(|_| pick_addr(rng, data_blocks)).collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs
}

/// Why a step did not complete.
enum StepError {
    /// The stack failed (an error reply, EIO): right if the armed loss struck, a violation
    /// otherwise.
    Failed(String),
    /// The result was wrong whatever happened to the disk: a violation.
    Wrong(String),
}

/// One round: a power loss armed at a seeded write or sync of the round (it may fall in the
/// stack's background work as well as in the steps' own calls), then `steps` steps until one
/// fails because it struck; a round whose loss did not strike ends with one.
fn round_with_loss(
    run: &Run,
    mount: &PowerLossMount,
    round: usize,
    rng: &mut SplitMix64,
    report: &mut RunReport,
    mut step: impl FnMut(&mut SplitMix64) -> Result<(), StepError>,
) -> Result<(), String> {
    let loss = run.loss_for_round(round);
    mount.arm(1 + rng.next_u64() % (3 * STEPS_PER_ROUND), loss);
    let steps = STEPS_PER_ROUND / 2 + rng.next_u64() % (STEPS_PER_ROUND / 2 + 1);
    let mut struck = None;
    for _ in 0..steps {
        match step(rng) {
            Ok(()) => report.committed += 1,
            Err(StepError::Wrong(message)) => return Err(message),
            Err(StepError::Failed(error)) => {
                let lost = mount.disarm();
                struck = Some(lost.ok_or_else(|| format!("{error}, with no power loss"))?);
                break;
            }
        }
    }
    let lost = match struck.or_else(|| mount.disarm()) {
        Some(lost) => lost,
        None => mount.lose_power(loss).map_err(|e| e.to_string())?,
    };
    report.losses += 1;
    report.pending_pages += lost.pending_pages;
    Ok(())
}

fn open_stack(images: &[PathBuf]) -> Result<txdisk::Stack, String> {
    txdisk::open(images, OpenOptions::default())
        .map_err(|e| format!("open after a power loss: {e}"))
}

/// The stack on `images`: transactions (durable or deferred) and flushes, a power loss, a
/// reopen and the oracle, [`ROUNDS`] times.
fn block_run(
    run: &Run,
    mount: &PowerLossMount,
    images: &[PathBuf],
    rng: &mut SplitMix64,
) -> Result<RunReport, String> {
    txdisk::format(images, &IMAGE).map_err(|e| format!("format: {e}"))?;
    let mut oracle = BlockOracle::default();
    let mut report = RunReport::default();
    let mut stack = open_stack(images)?;
    for round in 0..ROUNDS {
        let data_blocks = stack.size_blocks();
        round_with_loss(run, mount, round, rng, &mut report, |rng| {
            block_step(&stack, &mut oracle, data_blocks, rng).map_err(StepError::Failed)
        })?;
        drop(stack);
        stack = open_stack(images)?;
        oracle.check_recovered(|addr| stack.read(addr).map_err(|e| e.to_string()))?;
        stack.check_rep();
    }
    stack.close().map_err(|e| format!("close: {e}"))?;
    Ok(report)
}

/// One step of a block workload: a flush, or a transaction of one to three blocks committed
/// durably or deferred.
fn block_step(
    stack: &txdisk::Stack,
    oracle: &mut BlockOracle,
    data_blocks: u64,
    rng: &mut SplitMix64,
) -> Result<(), String> {
    let choice = rng.next_u64() % 8;
    if choice == 0 {
        stack.flush().map_err(|e| format!("flush: {e}"))?;
        oracle.flushed();
        return Ok(());
    }
    let addrs = pick_addrs(rng, data_blocks);
    let stamp = oracle.next_stamp();
    let durable = choice <= 2;
    oracle.issue(&addrs);
    let body = |tx: &mut txdisk::Transaction<'_>| {
        for &addr in &addrs {
            tx.write(addr, &stamp_block(addr, stamp))?;
        }
        Ok::<_, txdisk::LogicalError>(())
    };
    let committed = if durable {
        stack.transaction(body)
    } else {
        stack.transaction_nosync(body)
    };
    committed.map_err(|e| format!("commit: {e}"))?;
    oracle.committed(durable);
    Ok(())
}

/// A running `txdisk_nbd::serve` on a Unix socket.
struct Server {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<txdisk_nbd::ServeStats, String>>,
    uri: String,
}

impl Server {
    fn start(image: &Path, socket: &Path) -> Result<Server, String> {
        let _ = std::fs::remove_file(socket);
        let config = txdisk_nbd::ServeConfig {
            listen: txdisk_nbd::Listen::Unix(socket.to_path_buf()),
            exports: vec![txdisk_nbd::ImageExport {
                name: "txdisk".into(),
                images: vec![image.to_path_buf()],
                read_only: false,
                allow: None,
            }],
            control: None,
            tls_mode: txdisk_nbd::TlsMode::Off,
            tls: None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            txdisk_nbd::serve(&config, &flag, &mut |_| {
                let _ = ready_tx.send(());
            })
        });
        if ready_rx.recv().is_err() {
            let why = thread
                .join()
                .map_err(|_| "the server thread panicked".to_string())
                .and_then(|r| r.map(|_| ()));
            return Err(format!("the server did not start: {why:?}"));
        }
        Ok(Server {
            stop,
            thread,
            uri: format!("nbd+unix:///txdisk?socket={}", socket.display()),
        })
    }

    /// Stops it; after a power loss its last flush fails, which is expected.
    fn stop(self) -> Result<(), String> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.join() {
            Ok(_) => Ok(()),
            Err(_) => Err("the server thread panicked".into()),
        }
    }
}

fn client(uri: &str) -> Result<txdisk::NbdDisk, String> {
    txdisk::NbdDisk::open_uri(uri, &txdisk::NbdOptions::default())
        .map_err(|e| format!("connect {uri}: {e}"))
}

/// One step of the NBD workload: a FLUSH, or one WRITE of one to three blocks.
fn nbd_step(
    disk: &txdisk::NbdDisk,
    oracle: &mut BlockOracle,
    data_blocks: u64,
    rng: &mut SplitMix64,
) -> Result<(), String> {
    if rng.next_u64() % 4 == 0 {
        disk.sync().map_err(|e| format!("FLUSH: {e}"))?;
        oracle.flushed();
        return Ok(());
    }
    let count = 1 + rng.next_u64() % 3;
    let start = pick_addr(rng, data_blocks).min(data_blocks - count);
    let addrs: Vec<u64> = (start..start + count).collect();
    let stamp = oracle.next_stamp();
    let blocks: Vec<Block> = addrs.iter().map(|&a| stamp_block(a, stamp)).collect();
    let refs: Vec<&Block> = blocks.iter().collect();
    oracle.issue(&addrs);
    disk.write_run(start, &refs)
        .map_err(|e| format!("WRITE: {e}"))?;
    oracle.committed(false);
    Ok(())
}

/// The NBD server on one image: runs of one to three blocks, each one WRITE (one atomic
/// transaction of the server), and FLUSHes; a power loss, a server restart and the oracle
/// through a new client.
fn serve_run(
    run: &Run,
    mount: &PowerLossMount,
    socket: &Path,
    rng: &mut SplitMix64,
) -> Result<RunReport, String> {
    let image = mount.path().join("served.img");
    txdisk::format(std::slice::from_ref(&image), &IMAGE).map_err(|e| format!("format: {e}"))?;
    let mut oracle = BlockOracle::default();
    let mut report = RunReport::default();
    for round in 0..ROUNDS {
        let server = Server::start(&image, socket)?;
        let disk = client(&server.uri)?;
        if round > 0 {
            oracle.check_recovered(|addr| disk.read(addr).map_err(|e| e.to_string()))?;
        }
        let data_blocks = disk.size_blocks();
        round_with_loss(run, mount, round, rng, &mut report, |rng| {
            nbd_step(&disk, &mut oracle, data_blocks, rng).map_err(StepError::Failed)
        })?;
        drop(disk);
        server.stop()?;
    }
    let server = Server::start(&image, socket)?;
    let disk = client(&server.uri)?;
    oracle.check_recovered(|addr| disk.read(addr).map_err(|e| e.to_string()))?;
    drop(disk);
    server.stop()?;
    Ok(report)
}

/// The file system on one image: a seeded workload of file-system operations (fsync among
/// them) checked by the file system's own recorder, one power loss per file system made; the
/// recovered tree must be the state after a prefix of the operations that includes every one
/// before the last fsync that returned.
fn fs_run(
    run: &Run,
    mount: &PowerLossMount,
    image: &Path,
    rng: &mut SplitMix64,
) -> Result<RunReport, String> {
    use txdisk_fs::oracle::{workload, OracleError, Recorder};
    use txdisk_fs::{Clock, Fs, FsOptions, LogicalStore, MkfsOptions};
    let images = [image.to_path_buf()];
    txdisk::format(&images, &IMAGE).map_err(|e| format!("format: {e}"))?;
    let mut report = RunReport::default();
    let mkfs = MkfsOptions {
        inode_count: Some(64),
        hash_seed: Some([rng.next_u64(), rng.next_u64()]),
    };
    // The oracle predicts every time an operation stores: the clock is set by hand.
    let manual = || FsOptions {
        clock: Clock::manual(0),
        ..FsOptions::default()
    };
    let fs = Fs::mkfs_with(LogicalStore(open_stack(&images)?), &mkfs, manual())
        .map_err(|e| format!("mkfs: {e}"))?;
    fs.fsync().map_err(|e| format!("fsync after mkfs: {e}"))?;
    let mut fs = Some(fs);
    for round in 0..ROUNDS {
        let current = fs.take().expect("a file system is open between rounds");
        // The recorder starts from an empty tree: each round makes a fresh one.
        let current = if round == 0 {
            current
        } else {
            Fs::mkfs_with(current.into_store(), &mkfs, manual())
                .map_err(|e| format!("mkfs: {e}"))?
        };
        current
            .fsync()
            .map_err(|e| format!("fsync after mkfs: {e}"))?;
        let mut recorder = Recorder::new(&current, false).map_err(|e| e.to_string())?;
        let mut ops = workload(rng.next_u64(), STEPS_PER_ROUND as usize).into_iter();
        round_with_loss(run, mount, round, rng, &mut report, |_| {
            let Some(op) = ops.next() else {
                return Ok(());
            };
            recorder.run(&current, &op).map_err(|error| match error {
                OracleError::StoreFailed { .. } => StepError::Failed(error.to_string()),
                other => StepError::Wrong(other.to_string()),
            })
        })?;
        drop(current);
        let reopened = Fs::open(LogicalStore(open_stack(&images)?), FsOptions::default())
            .map_err(|e| format!("fs open after a power loss: {e}"))?;
        recorder
            .check_recovered(&reopened)
            .map_err(|e| e.to_string())?;
        fs = Some(reopened);
    }
    if let Some(fs) = fs {
        fs.fsync().map_err(|e| format!("fsync: {e}"))?;
    }
    Ok(report)
}
