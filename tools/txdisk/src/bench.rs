//! `txdisk bench`: the floor (of one file and of a pair), txdisk (one image and a pair), SQLite and redb side by side; runs
//! saved by name and compared before and after.

use crate::output;
use clap::Args;
use std::path::{Path, PathBuf};
use txdisk_bench::plot::write_charts;
use txdisk_bench::{
    all_systems, compare, load_run, run as run_bench, save_run, BenchConfig, Comparison, Report,
    SystemFactory, Verdict, Workload, DEFAULT_NOISE_FLOOR, RESULTS_DIR,
};

/// The exit code of `--fail-on-regression` when a row got slower (as a failed test would).
const EXIT_REGRESSION: i32 = 1;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A run of under a minute (one round of short cells on a small disk).
    #[arg(long)]
    quick: bool,
    /// Directory to run in (on the disk to measure; not tmpfs). Default: the current one.
    /// Saved runs live in its bench-results folder.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Systems to run, comma-separated (floor, floor-pair, txdisk, txdisk-pair, txdisk-pair-nbd,
    /// sqlite, redb).
    #[arg(long, value_delimiter = ',')]
    systems: Option<Vec<String>>,
    /// Workloads to run, comma-separated (e.g. durable-1blk-1thr,durable-16blk-8thr); also
    /// reopen-after-crash-1g and reopen-after-crash-16g (txdisk and txdisk-pair), run only when
    /// named here.
    #[arg(long, value_delimiter = ',')]
    workloads: Option<Vec<String>>,
    /// Rounds (the median round is reported).
    #[arg(long)]
    rounds: Option<usize>,
    /// Thread counts to sweep the durable and deferred workloads over, comma-separated
    /// (e.g. 1,2,4,8,16): one row per system, workload and count, all in one interleaved run.
    #[arg(long, value_delimiter = ',')]
    threads: Option<Vec<usize>>,
    /// Write SVG charts of the run into DIR: throughput against threads, latency CDFs of the
    /// durable workloads, ratios to the floor.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    /// With --plot: draw the saved run NAME (or a JSON file a run printed) instead of running.
    #[arg(long, value_name = "NAME", requires = "plot", conflicts_with_all = ["compare", "baseline", "save"])]
    from: Option<String>,
    /// Keep this run's JSON as bench-results/NAME.json (under --dir, or the current directory).
    #[arg(long, value_name = "NAME")]
    save: Option<String>,
    /// After the run, compare it with the saved run NAME (or a JSON file) as `--compare` does.
    #[arg(long, value_name = "NAME", conflicts_with = "compare")]
    baseline: Option<String>,
    /// Compare two runs instead of running: each a saved name or a JSON file; prints every
    /// row's ratio B/A, its noise band from the rounds, and faster / slower / within noise.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    compare: Option<Vec<String>>,
    /// With --compare or --baseline: exit 1 when any row is slower.
    #[arg(long)]
    fail_on_regression: bool,
    /// The smallest change, in per cent, that counts as faster or slower even when the rounds
    /// are tighter than that.
    #[arg(long, value_name = "PCT", default_value_t = DEFAULT_NOISE_FLOOR * 100.0)]
    noise_floor: f64,
}

/// The bench re-executes this program for each measured cell: let it take over first.
pub fn child_entry() -> Option<std::process::ExitCode> {
    let all = all_systems();
    let systems: Vec<&dyn SystemFactory> = all.iter().map(|s| s.as_ref()).collect();
    txdisk_bench::child_entry(&systems)
}

pub fn run(args: &BenchArgs, json: bool) -> i32 {
    match try_run(args, json) {
        Ok(code) => code,
        Err(message) => output::fail(json, &format!("bench: {message}")),
    }
}

fn try_run(args: &BenchArgs, json: bool) -> Result<i32, String> {
    let parent = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().map_err(|e| format!("current directory: {e}"))?,
    };
    let results_dir = parent.join(RESULTS_DIR);
    if !(args.noise_floor.is_finite() && args.noise_floor >= 0.0) {
        return Err(format!(
            "--noise-floor {} is not a percentage",
            args.noise_floor
        ));
    }
    if let Some([a, b]) = args.compare.as_deref() {
        let (a_path, before) = load_run(a, &results_dir).map_err(|e| e.to_string())?;
        let (b_path, after) = load_run(b, &results_dir).map_err(|e| e.to_string())?;
        let labels = (label(&a_path, &before), label(&b_path, &after));
        let comparison = compare(&before, &after, args.noise_floor / 100.0);
        if json {
            println!("{}", comparison.to_json(&labels.0, &labels.1));
        } else {
            print!("{}", comparison.table(&labels.0, &labels.1));
        }
        return Ok(exit_code(args, &comparison));
    }
    let report = match &args.from {
        Some(name) => load_run(name, &results_dir).map_err(|e| e.to_string())?.1,
        None => measure(args, json, &parent)?,
    };
    if let Some(dir) = &args.plot {
        let charts = write_charts(&report, dir).map_err(|e| e.to_string())?;
        if !json {
            eprintln!("{} chart(s) in {}", charts.len(), dir.display());
        }
        if args.from.is_some() {
            return Ok(0);
        }
    }
    if let Some(name) = &args.save {
        let path = save_run(&report, &results_dir, name).map_err(|e| e.to_string())?;
        if !json {
            eprintln!("saved as {}", path.display());
        }
    }
    let Some(name) = &args.baseline else {
        print_report(&report, None, json);
        return Ok(0);
    };
    let (base_path, base) = load_run(name, &results_dir).map_err(|e| e.to_string())?;
    let comparison = compare(&base, &report, args.noise_floor / 100.0);
    let labels = (
        label(&base_path, &base),
        format!("this run, {}", report.started_utc()),
    );
    print_report(&report, Some((&comparison, &labels.0, &labels.1)), json);
    Ok(exit_code(args, &comparison))
}

/// Runs the bench as the arguments say, in a scratch directory under `parent`.
fn measure(args: &BenchArgs, json: bool, parent: &Path) -> Result<Report, String> {
    let scratch = tempfile::Builder::new()
        .prefix("txdisk-bench-")
        .tempdir_in(parent)
        .map_err(|e| {
            format!(
                "cannot make a scratch directory in {}: {e}",
                parent.display()
            )
        })?;
    let config = config(args, scratch.path())?;
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
    Ok(report)
}

fn config(args: &BenchArgs, scratch: &Path) -> Result<BenchConfig, String> {
    let mut config = if args.quick {
        BenchConfig::quick(scratch.to_path_buf())
    } else {
        BenchConfig::full(scratch.to_path_buf())
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
    Ok(config)
}

fn print_report(report: &Report, comparison: Option<(&Comparison, &str, &str)>, json: bool) {
    if json {
        let mut value = report.to_json();
        if let Some((comparison, a, b)) = comparison {
            value["comparison"] = comparison.to_json(a, b);
        }
        println!("{value}");
        return;
    }
    print!("{}", report.table());
    if let Some((comparison, a, b)) = comparison {
        print!("\n{}", comparison.table(a, b));
    }
}

/// "bench-results/baseline.json (2026-12-01 19:56 UTC, 3 rounds)".
fn label(path: &Path, report: &Report) -> String {
    format!(
        "{} ({}, {} round(s))",
        path.display(),
        report.started_utc(),
        report.rounds
    )
}

fn exit_code(args: &BenchArgs, comparison: &Comparison) -> i32 {
    if args.fail_on_regression && comparison.count(Verdict::Slower) > 0 {
        EXIT_REGRESSION
    } else {
        0
    }
}
