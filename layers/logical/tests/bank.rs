//! Serializability: 8 threads run thousands of bank transfers over a few hundred accounts
//! (one block each). Read-only transactions summing every account during the run must always
//! see the same total; after a crash at a random point of a `SimDisk`-backed run and recovery,
//! the total is still the same. A concurrent run on a `FileDisk` checks the same and reports
//! flushes per commit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Block, FileDisk, SimDisk};
use txdisk_log::LogOptions;
use txdisk_logical::{LogicalDisk, LogicalError, Transaction};

const ACCOUNTS: u64 = 300;
const INITIAL: u64 = 1000;
const THREADS: usize = 8;

fn balance(block: &Block) -> u64 {
    u64::from_le_bytes(block.as_bytes()[..8].try_into().expect("8 bytes"))
}

fn amount_block(value: u64) -> Block {
    Block::with_prefix(&value.to_le_bytes()).expect("8 bytes fit a block")
}

fn fund(disk: &LogicalDisk) {
    for chunk in (0..ACCOUNTS).collect::<Vec<_>>().chunks(50) {
        disk.transaction(|tx: &mut Transaction<'_>| {
            for &account in chunk {
                tx.write(account, &amount_block(INITIAL))?;
            }
            Ok::<_, LogicalError>(())
        })
        .expect("fund accounts");
    }
}

fn total(disk: &LogicalDisk) -> Result<u64, LogicalError> {
    disk.transaction(|tx| {
        let mut sum = 0;
        for account in 0..ACCOUNTS {
            sum += balance(&tx.read(account)?);
        }
        Ok(sum)
    })
}

fn transfer(tx: &mut Transaction<'_>, from: u64, to: u64, amount: u64) -> Result<(), LogicalError> {
    let from_balance = balance(&tx.read(from)?);
    if from_balance < amount {
        return Ok(());
    }
    let to_balance = balance(&tx.read(to)?);
    tx.write(from, &amount_block(from_balance - amount))?;
    tx.write(to, &amount_block(to_balance + amount))?;
    Ok(())
}

/// Runs the transfer threads and a checker thread; stops at the first non-conflict error
/// (a crash). Returns (transfers committed, total checks made).
fn run_bank(disk: &LogicalDisk, transfers_per_thread: usize, seed: u64) -> (u64, u64) {
    let committed = AtomicU64::new(0);
    let checks = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let committed = &committed;
                scope.spawn(move || {
                    let mut rng = SplitMix64::new(seed ^ ((thread as u64 + 1) * 0x9e37));
                    for index in 0..transfers_per_thread {
                        let from = rng.below(ACCOUNTS);
                        let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
                        let amount = 1 + rng.below(50);
                        let body = |tx: &mut Transaction<'_>| transfer(tx, from, to, amount);
                        let result = if index % 4 == 0 {
                            disk.transaction(body)
                        } else {
                            disk.transaction_nosync(body)
                        };
                        if result.is_err() {
                            return;
                        }
                        committed.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let checker = scope.spawn(|| {
            while !done.load(Ordering::Acquire) {
                match total(disk) {
                    Ok(sum) => assert_eq!(
                        sum,
                        ACCOUNTS * INITIAL,
                        "a read-only transaction saw money appear or vanish"
                    ),
                    Err(_) => return,
                }
                checks.fetch_add(1, Ordering::Relaxed);
            }
        });
        for worker in workers {
            worker.join().expect("transfer thread");
        }
        done.store(true, Ordering::Release);
        checker.join().expect("checker thread");
    });
    (
        committed.load(Ordering::Relaxed),
        checks.load(Ordering::Relaxed),
    )
}

#[test]
fn transfers_conserve_money_and_survive_a_crash() {
    let seed = 0xba4c;
    let sim = Arc::new(SimDisk::new(3 + 256 + ACCOUNTS));
    LogicalDisk::format(&*sim, 256).unwrap();
    let disk = LogicalDisk::open(sim.clone(), LogOptions::default()).unwrap();
    fund(&disk);
    disk.flush().unwrap();
    let crash_op = sim.ops() + 20_000 + SplitMix64::new(seed).below(20_000);
    sim.schedule_crash(crash_op);
    let (committed, checks) = run_bank(&disk, 2_000, seed);
    println!("seed {seed:#x}: crash at op {crash_op}: {committed} transfers committed, {checks} total checks");
    assert!(
        sim.is_crashed(),
        "the run ended before the scheduled crash at op {crash_op}"
    );
    assert!(checks > 0, "no read-only check ran");
    drop(disk);
    let mut rng = SplitMix64::new(seed);
    for round in 0..5 {
        let image = sim.random_crash_state(&mut rng, round % 2 == 1);
        let recovered =
            LogicalDisk::open(Arc::new(SimDisk::from_image(&image)), LogOptions::default())
                .unwrap();
        assert_eq!(
            total(&recovered).unwrap(),
            ACCOUNTS * INITIAL,
            "seed {seed:#x} round {round}: total changed across the crash"
        );
    }
}

#[test]
fn transfers_on_a_file_disk_share_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let file = FileDisk::create(dir.path().join("bank.img"), 3 + 1024 + ACCOUNTS).unwrap();
    LogicalDisk::format(&file, 1024).unwrap();
    let disk = LogicalDisk::open(Arc::new(file), LogOptions::default()).unwrap();
    fund(&disk);
    let before = disk.stats();
    let (committed, checks) = run_bank(&disk, 500, 7);
    disk.flush().unwrap();
    let after = disk.stats();
    let commits = after.commits - before.commits;
    let flushes = after.flushes - before.flushes;
    println!("{committed} transfers, {checks} checks, {flushes} flushes for {commits} commits ({:.3} per commit)", flushes as f64 / commits as f64);
    assert_eq!(committed, (THREADS * 500) as u64);
    assert!(
        flushes < commits,
        "no group commit: {flushes} flushes for {commits} commits"
    );
    assert_eq!(total(&disk).unwrap(), ACCOUNTS * INITIAL);
}
