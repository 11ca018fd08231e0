//! `txdisk bench`: the floor, txdisk (one image and a pair), SQLite and redb side by side.

use crate::output;
use clap::Args;
use std::path::PathBuf;
use txdisk_bench::{all_systems, run as run_bench, BenchConfig, SystemFactory, Workload};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A run of under a minute (one round of short cells on a small disk).
    #[arg(long)]
    quick: bool,
    /// Directory to run in (on the disk to measure; not tmpfs). Default: the current one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Systems to run, comma-separated (floor, txdisk, txdisk-pair, sqlite, redb).
    #[arg(long, value_delimiter = ',')]
    systems: Option<Vec<String>>,
    /// Workloads to run, comma-separated (e.g. durable-1blk-1thr,durable-16blk-8thr).
    #[arg(long, value_delimiter = ',')]
    workloads: Option<Vec<String>>,
    /// Rounds (the median round is reported).
    #[arg(long)]
    rounds: Option<usize>,
    /// Thread counts to sweep the durable and deferred workloads over, comma-separated
    /// (e.g. 1,2,4,8,16): one row per system, workload and count, all in one interleaved run.
    #[arg(long, value_delimiter = ',')]
    threads: Option<Vec<usize>>,
}

/// The bench re-executes this program for each measured cell: let it take over first.
pub fn child_entry() -> Option<std::process::ExitCode> {
    let all = all_systems();
    let systems: Vec<&dyn SystemFactory> = all.iter().map(|s| s.as_ref()).collect();
    txdisk_bench::child_entry(&systems)
}

pub fn run(args: &BenchArgs, json: bool) -> i32 {
    match try_run(args, json) {
        Ok(()) => 0,
        Err(message) => output::fail(json, &format!("bench: {message}")),
    }
}

fn try_run(args: &BenchArgs, json: bool) -> Result<(), String> {
    let parent = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().map_err(|e| format!("current directory: {e}"))?,
    };
    let scratch = tempfile::Builder::new()
        .prefix("txdisk-bench-")
        .tempdir_in(&parent)
        .map_err(|e| {
            format!(
                "cannot make a scratch directory in {}: {e}",
                parent.display()
            )
        })?;
    let mut config = if args.quick {
        BenchConfig::quick(scratch.path().to_path_buf())
    } else {
        BenchConfig::full(scratch.path().to_path_buf())
    };
    if let Some(names) = &args.workloads {
        config.workloads = names
            .iter()
            .map(|name| Workload::from_name(name).ok_or_else(|| format!("unknown workload {name}")))
            .collect::<Result<_, _>>()?;
    }
    if let Some(rounds) = args.rounds {
        config.rounds = rounds;
    }
    if let Some(threads) = &args.threads {
        config.sweep_threads(threads).map_err(|e| e.to_string())?;
    }
    let all = all_systems();
    let chosen: Vec<&dyn SystemFactory> = match &args.systems {
        None => all.iter().map(|s| s.as_ref()).collect(),
        Some(names) => names
            .iter()
            .map(|name| {
                all.iter()
                    .find(|s| s.name() == name)
                    .map(|s| s.as_ref())
                    .ok_or_else(|| format!("unknown system {name}"))
            })
            .collect::<Result<_, _>>()?,
    };
    let mut bar = output::Bar::new(json);
    let total = (config.workloads.len() * chosen.len() * config.rounds) as u64;
    let mut done = 0u64;
    let report = run_bench(&config, &chosen, &mut |cell: &str| {
        done += 1;
        bar.update(cell, done.min(total), total);
    })
    .map_err(|e| e.to_string())?;
    bar.finish();
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
