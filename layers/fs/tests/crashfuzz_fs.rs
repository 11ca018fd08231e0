//! The file system as a layer of the crash-point fuzzer (`txdisk-crashfuzz`): random file
//! operations from the oracle's generator (each at most one transaction), a crash at every
//! disk operation of short workloads, recovery (crashed again), then the file system's
//! invariant checker and a contents oracle — the recovered tree is the model after some prefix
//! of the completed operations that includes every one before the last fsync. A fixed-seed CI
//! budget finds no violation; four deliberately wrong variants (three splitting an operation
//! into several transactions, one not decrementing the link count on unlink) are caught (by
//! the oracle, or by the invariant checker) and replay from their tokens; an ignored long run
//! reports its figures.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use txdisk_crashfuzz::{
    fuzz_layer, replay_layer, Budget, CommitKind, FuzzConfig, FuzzLayer, FuzzReport, ViolationKind,
};
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Disk, DiskError, SimDisk};
use txdisk_fs::bugs::{self, Bug};
use txdisk_fs::format::{bit, set_bit, BITS_PER_BLOCK};
use txdisk_fs::oracle::{self, dump, run_op, Model, Op, Out, Outcome, NAMES};
use txdisk_fs::{check_invariants, errno, Fs, FsError, FsOptions, Ino, MkfsOptions, StoreError};
use txdisk_fs::{Clock, Kind, Timestamp, ROOT_INO};
use txdisk_log::LogOptions;
use txdisk_logical::{LogicalDisk, LogicalError};

/// More crash points than any workload here makes: all of them are run.
const EVERY_POINT: u32 = 100_000;

/// Inodes of the fuzzed file system: far more than a workload of a few dozen operations creates.
const INODES: u64 = 64;

/// When an operation's transaction becomes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    /// `commit_nosync`, durable at the next fsync (or the fuzzer's flush of the logical disk).
    Deferred,
    /// `FsOptions::sync_every_op`: durable when the operation returns.
    EveryOp,
}

/// The file system as built, or deliberately wrong variants that split one operation into
/// several transactions (a crash between them leaves a state no prefix of the operations
/// explains, or one the invariant checker refuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Correct,
    /// Renaming a file links the new name, then unlinks the old one (or unlinks the file it
    /// replaces, then renames).
    RenameInTwoTransactions,
    /// A write past the end of a file first extends it with zeros (a truncate), then writes.
    ExtendThenWrite,
    /// Creating a file or directory first marks the lowest free inode in the inode bitmap in a
    /// transaction of its own, then hands it back in another before the create proper: a crash
    /// in between leaks the inode, which the invariant checker (not the oracle) sees.
    ReserveInodeApart,
    /// Removing a name leaves the link count as it was ([`Bug::UnlinkKeepsLinkCount`]): the
    /// last unlink of a file leaks its inode and a hard-linked file keeps a count too high.
    UnlinkKeepsLinkCount,
}

/// One generated operation, the time it runs at, and the outcome the model gave it when it
/// was generated.
#[derive(Clone)]
struct FsOp {
    op: Op,
    now: Timestamp,
    expect: Outcome,
}

impl fmt::Debug for FsOp {
    /// Short: read data as its length and a checksum, so a failure message stays readable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} -> {}", self.op, brief(&self.expect))
    }
}

fn brief(outcome: &Outcome) -> String {
    match outcome {
        Ok(Out::Data(bytes)) => {
            let sum = bytes.iter().fold(0u32, |acc, &b| {
                acc.wrapping_mul(31).wrapping_add(u32::from(b))
            });
            format!("Ok(Data({} bytes, sum {sum:#x}))", bytes.len())
        }
        Ok(out) => format!("Ok({out:?})"),
        Err(code) => format!("Err(errno {code})"),
    }
}

/// The file system on the logical disk, as a [`FuzzLayer`]. Its model is the oracle's tree.
struct FsLayer {
    durability: Durability,
    variant: Variant,
    /// Compare each operation's result with the outcome the model gave it when generated. Only
    /// sound with one epoch per workload: a second epoch runs on whatever prefix the crash
    /// left, not on the state its operations were generated from.
    check_outcomes: bool,
    /// Bytes one write transaction carries ([`Fs::write_chunk_bytes`]), learnt at set-up: the
    /// generator keeps every write inside one chunk, so that it is one transaction.
    chunk_bytes: AtomicU64,
}

impl FsLayer {
    fn new(durability: Durability, variant: Variant, check_outcomes: bool) -> FsLayer {
        FsLayer {
            durability,
            variant,
            check_outcomes,
            chunk_bytes: AtomicU64::new(0),
        }
    }

    /// A manual clock: the oracle predicts every time an operation stores.
    fn options(&self) -> FsOptions {
        FsOptions {
            sync_every_op: self.durability == Durability::EveryOp,
            clock: Clock::manual(0),
        }
    }

    /// Runs `op` at `now` the way this variant does.
    fn run(&self, fs: &Fs<&LogicalDisk>, op: &Op, now: Timestamp) -> Result<Out, FsError> {
        fs.clock().set_time(now);
        if self.variant == Variant::UnlinkKeepsLinkCount {
            bugs::set(Some(Bug::UnlinkKeepsLinkCount));
            let outcome = run_op(fs, op, now);
            bugs::set(None);
            return outcome;
        }
        let split = match (self.variant, op) {
            (Variant::RenameInTwoTransactions, Op::Rename(src, dst)) => {
                rename_in_two_transactions(fs, src, dst)
            }
            (
                Variant::ExtendThenWrite,
                Op::Write {
                    path, offset, len, ..
                },
            ) => extend_before_write(fs, path, offset + u64::from(*len)),
            (Variant::ReserveInodeApart, Op::Create(_) | Op::Mkdir(_)) => {
                reserve_and_release_inode(fs, self.durability).map(|()| false)
            }
            _ => Ok(false),
        };
        match split {
            // The variant ran the whole rename, in two transactions.
            Ok(true) if matches!(op, Op::Rename(..)) => Ok(Out::Unit),
            Ok(_) => run_op(fs, op, now),
            Err(error) => Err(error),
        }
    }
}

/// The names of a generated path (indices into [`NAMES`]).
fn names(path: &[u8]) -> Vec<&'static [u8]> {
    path.iter()
        .map(|&index| NAMES[usize::from(index) % NAMES.len()])
        .collect()
}

fn resolve(fs: &Fs<&LogicalDisk>, names: &[&[u8]]) -> Result<Ino, FsError> {
    names
        .iter()
        .try_fold(ROOT_INO, |dir, name| fs.lookup(dir, name))
}

/// The broken rename of a file, in two transactions: to a free name it links the new name and
/// then unlinks the old one; over another file it unlinks that file and then renames. Returns
/// whether it ran (otherwise the ordinary rename runs, and reports any error).
fn rename_in_two_transactions(
    fs: &Fs<&LogicalDisk>,
    src: &[u8],
    dst: &[u8],
) -> Result<bool, FsError> {
    let (src, dst) = (names(src), names(dst));
    let (Some((src_name, src_dir)), Some((dst_name, dst_dir))) =
        (src.split_last(), dst.split_last())
    else {
        return Ok(false);
    };
    let (Ok(ino), Ok(src_parent), Ok(dst_parent)) = (
        resolve(fs, &src),
        resolve(fs, src_dir),
        resolve(fs, dst_dir),
    ) else {
        return Ok(false);
    };
    if fs.stat(ino)?.kind != Kind::File {
        return Ok(false);
    }
    match fs.lookup(dst_parent, dst_name) {
        Err(FsError::NotFound) => {
            fs.link(ino, dst_parent, dst_name)?;
            fs.unlink(src_parent, src_name)?;
        }
        Ok(victim) if victim != ino && fs.stat(victim)?.kind == Kind::File => {
            fs.unlink(dst_parent, dst_name)?;
            fs.rename(src_parent, src_name, dst_parent, dst_name)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The broken write: extends the file to `end_bytes` in a transaction of its own first.
/// Returns false (the write then runs alone) when there is nothing to extend.
fn extend_before_write(
    fs: &Fs<&LogicalDisk>,
    path: &[u8],
    end_bytes: u64,
) -> Result<bool, FsError> {
    let Ok(ino) = resolve(fs, &names(path)) else {
        return Ok(false);
    };
    let stat = fs.stat(ino)?;
    if stat.kind != Kind::File || stat.size_bytes >= end_bytes {
        return Ok(false);
    }
    fs.truncate(ino, end_bytes)?;
    Ok(true)
}

/// The broken allocator: sets the lowest free inode's bit in one transaction and clears it in
/// the next, committed as the file system commits.
fn reserve_and_release_inode(fs: &Fs<&LogicalDisk>, durability: Durability) -> Result<(), FsError> {
    let sb = fs.superblock();
    let Some(ino) = (ROOT_INO + 1..sb.inode_count).find(|&ino| {
        let mut tx = fs.store().begin();
        let marked = tx
            .read(sb.inode_bitmap_start + ino / BITS_PER_BLOCK)
            .map(|block| bit(&block, ino % BITS_PER_BLOCK));
        tx.abort();
        matches!(marked, Ok(false))
    }) else {
        return Ok(());
    };
    for value in [true, false] {
        let addr = sb.inode_bitmap_start + ino / BITS_PER_BLOCK;
        let mut tx = fs.store().begin();
        let mut block = tx.read(addr).map_err(store_failure)?;
        set_bit(&mut block, ino % BITS_PER_BLOCK, value);
        tx.write(addr, &block).map_err(store_failure)?;
        match durability {
            Durability::EveryOp => tx.commit(),
            Durability::Deferred => tx.commit_nosync(),
        }
        .map_err(store_failure)?;
    }
    Ok(())
}

/// A logical-disk error as the file system passes one up.
fn store_failure(error: LogicalError) -> FsError {
    FsError::Store(StoreError::Other(Box::new(error)))
}

/// A failure of the file system that is no POSIX outcome, as the fuzzer's error type.
fn failure(message: String) -> LogicalError {
    LogicalError::Disk(DiskError::Io {
        op: "file system",
        addr: 0,
        source: std::io::Error::other(message),
    })
}

/// The logical disk's own error when the store passed one up; a crash as the disk's crash.
fn logical_error(error: FsError) -> LogicalError {
    match error {
        FsError::Store(StoreError::Other(source)) => match source.downcast::<LogicalError>() {
            Ok(logical) => *logical,
            Err(other) => failure(format!("store: {other}")),
        },
        FsError::Store(StoreError::Crashed) => LogicalError::Disk(DiskError::Crashed),
        other => failure(other.to_string()),
    }
}

/// Whether `error` is an answer a POSIX program may get from a healthy file system. Running
/// out of space is not: the fuzzing geometry is sized so that it never happens, and the model
/// does not know it.
fn is_posix_outcome(error: &FsError) -> bool {
    !matches!(
        error.errno(),
        errno::EIO | errno::EUCLEAN | errno::EBUSY | errno::ENOSPC
    )
}

fn is_read_only(op: &Op) -> bool {
    matches!(op, Op::Read { .. } | Op::Readdir(_) | Op::Stat(_))
}

impl FuzzLayer for FsLayer {
    type Op = FsOp;
    type Model = Model;

    fn name(&self) -> String {
        let durability = match self.durability {
            Durability::Deferred => "deferred",
            Durability::EveryOp => "sync",
        };
        let variant = match self.variant {
            Variant::Correct => "",
            Variant::RenameInTwoTransactions => "-rename-in-two-transactions",
            Variant::ExtendThenWrite => "-extend-then-write",
            Variant::ReserveInodeApart => "-reserve-inode-apart",
            Variant::UnlinkKeepsLinkCount => "-unlink-keeps-link-count",
        };
        format!("fs-{durability}{variant}")
    }

    fn initial_model(&self) -> Model {
        Model::default()
    }

    fn setup(&self, disk: &LogicalDisk) -> Result<(), LogicalError> {
        // A fixed hash key and a manual clock at 0: replays build the same image, and the
        // empty root is `Model::default()`.
        let options = MkfsOptions {
            inode_count: Some(INODES),
            hash_seed: Some([0xf5, 0x5eed]),
        };
        let fs = Fs::mkfs_with(disk, &options, self.options()).map_err(logical_error)?;
        self.chunk_bytes
            .store(fs.write_chunk_bytes(), Ordering::Relaxed);
        // mkfs commits its last transaction durably: the empty file system is the base image.
        Ok(())
    }

    fn random_op(&self, rng: &mut SplitMix64, model: &Model, _data_blocks: u64) -> FsOp {
        let chunk_bytes = self.chunk_bytes.load(Ordering::Relaxed);
        assert!(
            chunk_bytes > 0,
            "fs layer: an operation generated before set-up learnt the write chunk"
        );
        let op = oracle::random_op(rng, model, chunk_bytes);
        let now = oracle::op_time(rng.below(1 << 30));
        let expect = model.clone().apply(&op, now);
        FsOp { op, now, expect }
    }

    /// Every mutating operation counts as one commit, also when it fails with a POSIX error
    /// (then an empty one: the model does not change, and neither may the disk). An fsync is
    /// an empty durable commit: once it returns, every earlier one is durable.
    fn commit_kind(&self, op: &FsOp) -> CommitKind {
        match (&op.op, self.durability) {
            (op, _) if is_read_only(op) => CommitKind::None,
            (Op::Fsync, _) | (_, Durability::EveryOp) => CommitKind::Durable,
            (_, Durability::Deferred) => CommitKind::Deferred,
        }
    }

    fn model_apply(&self, model: &mut Model, op: &FsOp) {
        // An error leaves the model as it was, which is what the operation must do too.
        let _ = model.apply(&op.op, op.now);
    }

    fn apply(&self, disk: &LogicalDisk, op: &FsOp) -> Result<(), LogicalError> {
        let fs = Fs::open(disk, self.options()).map_err(logical_error)?;
        let found = match self.run(&fs, &op.op, op.now) {
            Ok(out) => Ok(out),
            Err(error) if is_posix_outcome(&error) => Err(error.errno()),
            Err(error) => return Err(logical_error(error)),
        };
        if self.check_outcomes && found != op.expect {
            return Err(failure(format!(
                "{:?}: the model gives {}, the file system {}",
                op.op,
                brief(&op.expect),
                brief(&found)
            )));
        }
        Ok(())
    }

    /// The file system has no recovery of its own (each operation is one transaction and the
    /// log replays them); it must open on whatever the log recovered.
    fn recover(&self, disk: &LogicalDisk) -> Result<(), String> {
        Fs::open(disk, FsOptions::default())
            .map(|_| ())
            .map_err(|error| format!("fs: open after recovery: {error}"))
    }

    fn check(&self, disk: &LogicalDisk) -> Result<(), String> {
        check_invariants(disk)
            .map(|_| ())
            .map_err(|violation| format!("fs invariant: {violation}"))
    }

    fn observe(&self, disk: &LogicalDisk) -> Result<Model, String> {
        let fs = Fs::open(disk, FsOptions::default())
            .map_err(|error| format!("fs: open after recovery: {error}"))?;
        let root = dump(&fs).map_err(|error| format!("fs: reading the tree: {error}"))?;
        Ok(Model::from_tree(&root))
    }

    /// Equal trees; a mismatch names the found tree and every allowed one in short form
    /// (paths, sizes and checksums, not bytes).
    fn match_prefix(
        &self,
        found: &Model,
        allowed: &[Model],
        min_index: usize,
    ) -> Result<usize, String> {
        if let Some(index) = (min_index..allowed.len()).find(|&index| allowed[index] == *found) {
            return Ok(index);
        }
        let listed: Vec<String> = allowed
            .get(min_index..)
            .unwrap_or(&[])
            .iter()
            .map(|model| oracle::summary(&model.tree()))
            .collect();
        Err(format!(
            "tree [{}] is none of the allowed states {min_index}..={}: {listed:?}",
            oracle::summary(&found.tree()),
            allowed.len().saturating_sub(1)
        ))
    }

    /// A write of half the length (same path and offset, so the same outcome).
    fn shrink_op(&self, op: &FsOp) -> Vec<FsOp> {
        match &op.op {
            Op::Write {
                path,
                offset,
                len,
                seed,
            } if *len > 1 => vec![FsOp {
                op: Op::Write {
                    path: path.clone(),
                    offset: *offset,
                    len: len / 2,
                    seed: *seed,
                },
                now: op.now,
                expect: op.expect.clone(),
            }],
            _ => Vec::new(),
        }
    }
}

/// The geometry every run here uses: a disk big enough that no workload runs out of blocks or
/// inodes (the model knows no ENOSPC), and a log small enough that it fills and installs often.
///
/// Every crash point of the first epoch is run (`crash_points` above any workload's count of
/// disk operations: the sampler then takes them all); each recovered state's recovery is
/// crashed at a few sampled operations. (`exhaustive` would crash each recovery at every disk
/// operation the check made after it too, reading the whole tree: a hundred states each, the
/// budget spent on two workloads.)
fn geometry(seed: u64, budget: Budget) -> FuzzConfig {
    FuzzConfig {
        seed,
        budget,
        crash_points: EVERY_POINT,
        recovery_points: 3,
        workload_len: 6,
        disk_blocks: 512,
        log_blocks: 40,
        ..FuzzConfig::default()
    }
}

fn fuzz(layer: &FsLayer, config: &FuzzConfig) -> FuzzReport {
    let report = fuzz_layer(layer, config, &mut |_| {})
        .unwrap_or_else(|error| panic!("{} seed {:#x}: {error}", layer.name(), config.seed));
    let disks = if config.replicated {
        "a replicated pair"
    } else {
        "one disk"
    };
    println!("{} on {disks}: {report}", layer.name());
    report
}

fn assert_clean(layer: &FsLayer, config: &FuzzConfig, report: &FuzzReport) {
    assert!(
        report.violations.is_empty(),
        "{} seed {:#x}: the file system failed:\n{report}",
        layer.name(),
        config.seed
    );
    if let Budget::States(states) = config.budget {
        assert!(
            report.crash_states >= states,
            "{} seed {:#x}: stopped at {} of {states} states",
            layer.name(),
            config.seed,
            report.crash_states
        );
    }
    assert!(report.workloads > 1, "one workload only: {report}");
    assert!(report.recovery_crashes > 0, "no recovery crashed: {report}");
}

/// Deferred durability with fsync, one epoch, each result checked against the model; then
/// durable operations over two epochs (the second runs on the recovered file system), with
/// crash states that tear pending writes at sectors.
#[test]
fn file_system_passes_the_ci_budget() {
    let deferred = FsLayer::new(Durability::Deferred, Variant::Correct, true);
    let config = FuzzConfig {
        epochs: 1,
        ..geometry(0xf5_0001, Budget::States(40_000))
    };
    let report = fuzz(&deferred, &config);
    assert_clean(&deferred, &config, &report);

    let durable = FsLayer::new(Durability::EveryOp, Variant::Correct, false);
    let config = FuzzConfig {
        torn: true,
        ..geometry(0xf5_0002, Budget::States(40_000))
    };
    let report = fuzz(&durable, &config);
    assert_clean(&durable, &config, &report);
}

/// A variant is caught within the CI budget with the given kind of violation, and its token
/// replays it on that variant (and is refused by the correct file system).
fn caught(variant: Variant, durability: Durability, seed: u64, kind: ViolationKind) {
    let layer = FsLayer::new(durability, variant, false);
    let config = FuzzConfig {
        max_violations: 1,
        workload_len: 12,
        ..geometry(seed, Budget::States(40_000))
    };
    let report = fuzz(&layer, &config);
    let violation = report.violations.first().unwrap_or_else(|| {
        panic!(
            "{} seed {seed:#x}: not caught in {} states",
            layer.name(),
            report.crash_states
        )
    });
    assert_eq!(violation.kind, kind, "{violation}");
    let replayed = replay_layer(&layer, &violation.token)
        .unwrap_or_else(|error| panic!("{}: replay: {error}", layer.name()));
    println!("{replayed}");
    assert_eq!(
        replayed.violation.as_ref().map(|(kind, _)| *kind),
        Some(kind),
        "{}: the token did not reproduce: {replayed}",
        layer.name()
    );
    let correct = FsLayer::new(durability, Variant::Correct, false);
    assert!(
        replay_layer(&correct, &violation.token).is_err(),
        "a token of {} replayed on {}",
        layer.name(),
        correct.name()
    );
}

#[test]
fn rename_split_in_two_transactions_is_caught() {
    caught(
        Variant::RenameInTwoTransactions,
        Durability::EveryOp,
        0xf5_0003,
        ViolationKind::Oracle,
    );
}

#[test]
fn write_extending_before_writing_is_caught() {
    caught(
        Variant::ExtendThenWrite,
        Durability::EveryOp,
        0xf5_0004,
        ViolationKind::Oracle,
    );
}

#[test]
fn unlink_keeping_the_link_count_is_caught_by_the_invariant() {
    caught(
        Variant::UnlinkKeepsLinkCount,
        Durability::Deferred,
        0xf5_0007,
        ViolationKind::Invariant,
    );
}

#[test]
fn inode_reserved_in_a_transaction_apart_is_caught_by_the_invariant() {
    caught(
        Variant::ReserveInodeApart,
        Durability::Deferred,
        0xf5_0006,
        ViolationKind::Invariant,
    );
}

/// The long run (`cargo test -p txdisk-fs --test crashfuzz_fs -- --ignored --nocapture`):
/// both durabilities over one disk with torn sectors, then over a replicated pair with
/// fail-stops and bad blocks; two epochs, longer workloads, a time budget each.
#[test]
#[ignore = "long run: minutes of crash states"]
fn long_run() {
    let runs = [
        (Durability::Deferred, false, 0xf5_1001),
        (Durability::EveryOp, false, 0xf5_1002),
        (Durability::Deferred, true, 0xf5_1003),
    ];
    let mut states = 0;
    for (durability, replicated, seed) in runs {
        let layer = FsLayer::new(durability, Variant::Correct, false);
        let config = FuzzConfig {
            workload_len: 10,
            torn: !replicated,
            replicated,
            ..geometry(seed, Budget::Seconds(80.0))
        };
        let report = fuzz(&layer, &config);
        assert_clean(&layer, &config, &report);
        states += report.crash_states;
    }
    println!("long run: {states} crash states, no violations");
}

/// The layer's plumbing on its own: operations applied through it change the file system as
/// the model says, and `observe` reads that back (so the fuzzer's oracle compares real trees).
#[test]
fn applied_operations_are_observed_as_the_model_says() {
    let sim = Arc::new(SimDisk::new(512));
    LogicalDisk::format(&*sim, 40).expect("format the log");
    let options = LogOptions {
        background_installer: false,
        ..LogOptions::default()
    };
    let disk = LogicalDisk::open(Arc::clone(&sim) as Arc<dyn Disk>, options)
        .expect("open the logical disk");
    let layer = FsLayer::new(Durability::Deferred, Variant::Correct, true);
    layer.setup(&disk).expect("mkfs");
    let mut rng = SplitMix64::new(0xf5_0005);
    let mut model = layer.initial_model();
    let mut changed = 0;
    for step in 0..40 {
        let op = layer.random_op(&mut rng, &model, 0);
        layer
            .apply(&disk, &op)
            .unwrap_or_else(|error| panic!("step {step} {op:?}: {error}"));
        if layer.commit_kind(&op) != CommitKind::None {
            let before = model.clone();
            layer.model_apply(&mut model, &op);
            changed += usize::from(model != before);
        }
        let found = layer.observe(&disk).expect("observe");
        assert_eq!(
            oracle::summary(&found.tree()),
            oracle::summary(&model.tree()),
            "step {step} {op:?}"
        );
        layer.check(&disk).expect("invariant");
    }
    assert!(
        changed >= 10,
        "only {changed} of 40 operations changed the tree"
    );
}
