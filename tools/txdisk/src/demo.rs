//! `txdisk demo`: the whole story on temporary files, told step by step in plain words.
//! Every step is a call into the libraries; this file only orchestrates and prints.

use crate::output::json_value;
use crate::DemoArgs;
use serde::Serialize;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use txdisk::{Block, LogOptions, OpenOptions};
use txdisk_disk::rng::SplitMix64;
use txdisk_inspect::CheckOptions;

/// Accounts (one block each, balance in the first 8 bytes) and the money they hold in total.
const ACCOUNTS: u64 = 64;
const OPENING_BALANCE: u64 = 1000;
/// Each writer thread counts its acknowledged transfers in block `COUNTER_BASE + thread`.
const COUNTER_BASE: u64 = ACCOUNTS;
const THREADS: u64 = 4;
const SIZE_BLOCKS: u64 = 4096;
const LOG_BLOCKS: u64 = 1024;
/// The crash step kills the writer once it has acknowledged this many transfers.
const ACKS_BEFORE_KILL: u64 = 150;

fn value(block: &Block) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&block.as_bytes()[..8]);
    u64::from_le_bytes(word)
}

fn block_of(value: u64) -> Block {
    let mut block = Block::zeroed();
    block.as_bytes_mut()[..8].copy_from_slice(&value.to_le_bytes());
    block
}

/// Prints a step as it happens (text), or keeps it for the final JSON.
struct Story {
    json: bool,
    steps: Vec<StepJson>,
}

/// One step of the demo in its JSON: its name, what it printed, and its figures.
#[derive(Serialize)]
struct StepJson {
    step: String,
    text: String,
    data: Value,
}

/// The demo's whole JSON, printed at the end.
#[derive(Serialize)]
struct DemoJson<'a> {
    steps: &'a [StepJson],
    exit_code: i32,
}

impl Story {
    fn say(&mut self, step: &str, text: &str, data: impl Serialize) {
        if self.json {
            self.steps.push(StepJson {
                step: step.to_string(),
                text: text.to_string(),
                data: json_value(&data),
            });
        } else {
            println!("{text}");
        }
    }
}

pub fn run(args: &DemoArgs, json: bool) -> i32 {
    let mut story = Story {
        json,
        steps: Vec::new(),
    };
    let (dir, _temp) = match workdir(args) {
        Ok(dir) => dir,
        Err(message) => return crate::output::fail(json, &message),
    };
    let outcome = tell(&dir, args, &mut story);
    let code = match outcome {
        Ok(()) => 0,
        Err(message) => {
            story.say(
                "failed",
                &format!("demo failed: {message}"),
                FailedJson { error: &message },
            );
            1
        }
    };
    if json {
        crate::output::print_json(&DemoJson {
            steps: &story.steps,
            exit_code: code,
        });
    }
    code
}

fn workdir(args: &DemoArgs) -> Result<(PathBuf, Option<tempfile::TempDir>), String> {
    match &args.keep {
        Some(dir) => {
            std::fs::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            Ok((dir.clone(), None))
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("txdisk-demo")
                .tempdir()
                .map_err(|e| format!("temporary directory: {e}"))?;
            Ok((temp.path().to_path_buf(), Some(temp)))
        }
    }
}

fn tell(dir: &Path, args: &DemoArgs, story: &mut Story) -> Result<(), String> {
    let images = [dir.join("d1.img"), dir.join("d2.img")];
    let started = Instant::now();
    step_format(&images, story)?;
    step_transactions(&images, args.transactions, story)?;
    let acked = step_crash(&images, story)?;
    step_fsck(
        &images,
        false,
        4,
        "4. fsck, read-only: what did the crash leave?",
        story,
    )?;
    step_fsck(
        &images,
        true,
        1,
        "5. fsck --repair: replica recovery, then log recovery.",
        story,
    )?;
    step_fsck(
        &images,
        false,
        0,
        "6. fsck again: the pair must now be clean.",
        story,
    )?;
    step_verify(&images, &acked, story)?;
    step_crashfuzz(story)?;
    let text = format!(
        "Done in {:.1} s. The images are in {} (deleted unless --keep).",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    story.say(
        "done",
        &text,
        DoneJson {
            seconds: started.elapsed().as_secs_f64(),
        },
    );
    Ok(())
}

fn step_format(images: &[PathBuf; 2], story: &mut Story) -> Result<(), String> {
    let options = txdisk::FormatOptions {
        size_blocks: SIZE_BLOCKS,
        log_blocks: LOG_BLOCKS,
    };
    txdisk::format(images, &options).map_err(|e| format!("format: {e}"))?;
    let text = format!(
        "1. Formatted a replicated pair: {} and {}, {} MiB each, with a {}-block write-ahead log.\n   Every write goes to both; either file alone could carry on.",
        images[0].display(),
        images[1].display(),
        (SIZE_BLOCKS * 4096) >> 20,
        LOG_BLOCKS
    );
    story.say(
        "format",
        &text,
        FormatJson {
            size_blocks: SIZE_BLOCKS,
            log_blocks: LOG_BLOCKS,
        },
    );
    Ok(())
}

/// One transfer between two random accounts, counted in the thread's counter block; durable
/// when it returns. Returns the thread's new count.
fn transfer(
    disk: &txdisk::LogicalDisk,
    rng: &mut SplitMix64,
    thread: u64,
) -> Result<u64, txdisk::LogicalError> {
    let from = rng.next_u64() % ACCOUNTS;
    let to = (from + 1 + rng.next_u64() % (ACCOUNTS - 1)) % ACCOUNTS;
    let amount = rng.next_u64() % 50;
    disk.transaction(|tx| {
        let (a, b) = (value(&tx.read(from)?), value(&tx.read(to)?));
        let moved = amount.min(a);
        tx.write(from, &block_of(a - moved))?;
        tx.write(to, &block_of(b + moved))?;
        let count = value(&tx.read(COUNTER_BASE + thread)?) + 1;
        tx.write(COUNTER_BASE + thread, &block_of(count))?;
        Ok(count)
    })
}

fn total(disk: &txdisk::LogicalDisk) -> Result<u64, String> {
    let mut sum = 0;
    for account in 0..ACCOUNTS {
        sum += value(&disk.read_committed(account).map_err(|e| e.to_string())?);
    }
    Ok(sum)
}

fn step_transactions(
    images: &[PathBuf; 2],
    per_thread: u64,
    story: &mut Story,
) -> Result<(), String> {
    let stack = txdisk::open(images, OpenOptions::default()).map_err(|e| format!("open: {e}"))?;
    stack
        .transaction(|tx| {
            (0..ACCOUNTS).try_for_each(|account| tx.write(account, &block_of(OPENING_BALANCE)))
        })
        .map_err(|e| format!("opening balances: {e}"))?;
    let started = Instant::now();
    let failures = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (stack, failures) = (&stack, &failures);
            scope.spawn(move || {
                let mut rng = SplitMix64::new(thread + 1);
                for _ in 0..per_thread {
                    if transfer(stack, &mut rng, thread).is_err() {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let elapsed_ms = started.elapsed().as_millis();
    let (sum, stats) = (total(&stack)?, stack.stats());
    if failures.load(Ordering::Relaxed) > 0 || sum != ACCOUNTS * OPENING_BALANCE {
        return Err(format!(
            "{} transfers failed; total {sum}",
            failures.load(Ordering::Relaxed)
        ));
    }
    stack.close().map_err(|e| format!("close: {e}"))?;
    let text = format!(
        "2. Ran {} threads x {per_thread} transfers between {ACCOUNTS} accounts, concurrently, each a serializable\n   transaction durable on return: {} commits in {} ms, sharing {} log flushes (group commit).\n   The total is still {sum}: no transfer was lost or half-applied. Closed cleanly.",
        THREADS, stats.commits, elapsed_ms, stats.flushes
    );
    let data = TransactionsJson {
        commits: stats.commits,
        flushes: stats.flushes,
        ms: elapsed_ms as u64,
        total: sum,
    };
    story.say("transactions", &text, data);
    Ok(())
}

/// Runs the writer child, kills it with SIGKILL once it has acknowledged enough transfers, and
/// returns the acknowledged count of each thread.
fn step_crash(images: &[PathBuf; 2], story: &mut Story) -> Result<Vec<u64>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
    let mut child = Command::new(exe)
        .arg("demo-writer")
        .args(images)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting the writer: {e}"))?;
    let stdout = child.stdout.take().ok_or("the writer has no stdout")?;
    // The newest count each thread acknowledged (its counter carries on from step 2), and how
    // many acknowledgements came in all.
    let mut acked = vec![0u64; THREADS as usize];
    let mut acks = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading the writer: {e}"))?;
        let mut words = line.split_whitespace().skip(1).map(str::parse::<u64>);
        if let (Some(Ok(thread)), Some(Ok(count))) = (words.next(), words.next()) {
            if let Some(slot) = acked.get_mut(thread as usize) {
                *slot = (*slot).max(count);
                acks += 1;
            }
        }
        if acks >= ACKS_BEFORE_KILL {
            break;
        }
    }
    child
        .kill()
        .map_err(|e| format!("killing the writer: {e}"))?;
    let _ = child.wait();
    let text = format!(
        "3. Crash: a second process (txdisk demo-writer) committed transfers from {THREADS} threads with\n   installation off, so they stay in the log; it was killed with SIGKILL in the middle of\n   committing, after acknowledging {acks} transfers (thread counters acknowledged: {acked:?})."
    );
    story.say(
        "crash",
        &text,
        CrashJson {
            acknowledgements: acks,
            acknowledged_counters: &acked,
        },
    );
    if acks < ACKS_BEFORE_KILL {
        return Err(format!("the writer stopped after {acks} acknowledgements"));
    }
    Ok(acked)
}

/// The hidden `demo-writer` subcommand: open the pair and commit transfers until killed.
pub fn writer(d1: &Path, d2: &Path) -> i32 {
    let options = OpenOptions {
        log: LogOptions {
            background_installer: false,
            ..LogOptions::default()
        },
        ..OpenOptions::default()
    };
    let stack = match txdisk::open(&[d1, d2], options) {
        Ok(stack) => stack,
        Err(error) => return crate::output::fail(false, &format!("demo-writer: {error}")),
    };
    let stdout = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (stack, stdout) = (&stack, &stdout);
            scope.spawn(move || {
                let mut rng = SplitMix64::new(100 + thread);
                while let Ok(count) = transfer(stack, &mut rng, thread) {
                    let mut out = stdout
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    if writeln!(out, "acked {thread} {count}")
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    1
}

fn step_fsck(
    images: &[PathBuf; 2],
    repair: bool,
    expected: i32,
    title: &str,
    story: &mut Story,
) -> Result<(), String> {
    let options = CheckOptions {
        repair,
        ..CheckOptions::default()
    };
    let report = txdisk_inspect::check(images, &options).map_err(|e| format!("fsck: {e}"))?;
    let mut lines: Vec<String> = Vec::new();
    if let Some(repair) = &report.repair {
        lines.extend(repair.actions.iter().map(|a| format!("repair: {a}")));
    }
    lines.extend(
        report
            .findings
            .iter()
            .map(|f| format!("{}: {}", f.severity.name(), f.message)),
    );
    if let (false, Some(log)) = (repair, &report.log) {
        lines.extend(pending_lines(&images[0], log.records.len())?);
    }
    // The summary without the (long, temporary) image names.
    let summary = report.summary();
    let verdict = summary
        .split_once(".img: ")
        .map_or(summary.as_str(), |(_, rest)| rest);
    lines.push(format!("exit code {}: {verdict}", report.exit_code()));
    let text = format!(
        "{title}\n{}",
        lines
            .iter()
            .map(|l| format!("   {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    story.say(
        if repair { "fsck-repair" } else { "fsck" },
        &text,
        report.to_json(),
    );
    if report.exit_code() != expected {
        return Err(format!(
            "fsck gave exit code {}, expected {expected}",
            report.exit_code()
        ));
    }
    Ok(())
}

/// The first pending transactions as `txdisk logdump` shows them.
fn pending_lines(image: &Path, pending: usize) -> Result<Vec<String>, String> {
    const SHOWN: usize = 3;
    if pending == 0 {
        return Ok(Vec::new());
    }
    let options = txdisk_inspect::DumpOptions {
        max_records: Some(SHOWN),
        ..txdisk_inspect::DumpOptions::default()
    };
    let dump = txdisk_inspect::logdump(image, &options).map_err(|e| format!("logdump: {e}"))?;
    let mut lines = vec![format!(
        "the log, as `txdisk logdump` shows it (first {SHOWN} of {pending}):"
    )];
    for shown in &dump.records {
        let r = &shown.record;
        lines.push(format!(
            "  sequence {} at log position {}: home blocks {:?}, checksum {:#010x} valid",
            r.seq, r.pos, r.addrs, r.crc
        ));
    }
    lines.push(format!("  ... the log ends at {}", dump.stop));
    Ok(lines)
}

fn step_verify(images: &[PathBuf; 2], acked: &[u64], story: &mut Story) -> Result<(), String> {
    let stack = txdisk::open(images, OpenOptions::default()).map_err(|e| format!("reopen: {e}"))?;
    let sum = total(&stack)?;
    let mut counts = Vec::new();
    for thread in 0..THREADS {
        counts.push(value(
            &stack
                .read_committed(COUNTER_BASE + thread)
                .map_err(|e| e.to_string())?,
        ));
    }
    stack.close().map_err(|e| format!("close: {e}"))?;
    let kept = counts
        .iter()
        .zip(acked)
        .all(|(count, acked)| count >= acked);
    let text = format!(
        "7. Reopened: every acknowledged transfer survived (thread counters on disk {counts:?}, acknowledged\n   {acked:?}; a few more may have been durable when the kill came), and the total is {sum}."
    );
    story.say(
        "verify",
        &text,
        VerifyJson {
            on_disk: &counts,
            acknowledged: acked,
            total: sum,
        },
    );
    if !kept || sum != ACCOUNTS * OPENING_BALANCE {
        return Err("the recovered pair lost an acknowledged transfer or money".into());
    }
    Ok(())
}

/// Seconds of crash-point fuzzing in the demo: enough for thousands of crash states.
const FUZZ_SECONDS: f64 = 2.0;

fn step_crashfuzz(story: &mut Story) -> Result<(), String> {
    let config = txdisk_crashfuzz::FuzzConfig {
        budget: txdisk_crashfuzz::Budget::Seconds(FUZZ_SECONDS),
        replicated: true,
        ..txdisk_crashfuzz::FuzzConfig::default()
    };
    let report =
        txdisk_crashfuzz::fuzz(&config, &mut |_| {}).map_err(|e| format!("crashfuzz: {e}"))?;
    let text = format!(
        "8. Crash-point fuzzing, {FUZZ_SECONDS} s: random transaction workloads on a simulated replicated pair,\n   crashed at {} points (with disk failures and bad blocks), {} crash states recovered and\n   checked against the oracle, {} recoveries crashed again: {} violation(s).",
        report.crash_points,
        report.crash_states,
        report.recovery_crashes,
        report.violations.len()
    );
    story.say("crashfuzz", &text, report.to_json());
    match report.violations.first() {
        Some(violation) => Err(format!("crashfuzz found a violation: {violation}")),
        None => Ok(()),
    }
}

// The figures of each step in the demo's JSON.

/// `failed`: why the demo stopped.
#[derive(Serialize)]
struct FailedJson<'a> {
    error: &'a str,
}

/// `done`: the demo's wall-clock time in seconds.
#[derive(Serialize)]
struct DoneJson {
    seconds: f64,
}

/// `format`: the pair's size and log size in 4096-byte blocks.
#[derive(Serialize)]
struct FormatJson {
    size_blocks: u64,
    log_blocks: u64,
}

/// `transactions`: commits and the log flushes they shared, the time they took in
/// milliseconds, and the accounts' total after them.
#[derive(Serialize)]
struct TransactionsJson {
    commits: u64,
    flushes: u64,
    ms: u64,
    total: u64,
}

/// `crash`: transfers acknowledged before the kill, and each thread's acknowledged counter.
#[derive(Serialize)]
struct CrashJson<'a> {
    acknowledgements: u64,
    acknowledged_counters: &'a [u64],
}

/// `verify`: each thread's counter as recovered and as acknowledged, and the accounts' total.
#[derive(Serialize)]
struct VerifyJson<'a> {
    on_disk: &'a [u64],
    acknowledged: &'a [u64],
    total: u64,
}
