//! Runs the benchmark on the floor and the peers: `cargo run --release -p txdisk-bench
//! --example bench -- [--quick] [--json] [--dir DIR] [--systems floor,sqlite,redb]
//! [--workloads durable-1blk-1thr,...] [--rounds N]`. The `txdisk bench` subcommand is the
//! same loop with the txdisk systems added.

use std::path::PathBuf;
use std::process::ExitCode;
use txdisk_bench::{all_systems, run, BenchConfig, SystemFactory, Workload};

struct Args {
    quick: bool,
    json: bool,
    dir: Option<PathBuf>,
    systems: Option<Vec<String>>,
    workloads: Option<Vec<String>>,
    rounds: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        json: false,
        dir: None,
        systems: None,
        workloads: None,
        rounds: None,
    };
    let mut iter = std::env::args().skip(1);
    let list = |value: Option<String>| -> Result<Vec<String>, String> {
        let value = value.ok_or("missing list")?;
        Ok(value.split(',').map(str::to_string).collect())
    };
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--json" => args.json = true,
            "--dir" => args.dir = Some(iter.next().ok_or("--dir needs a path")?.into()),
            "--systems" => args.systems = Some(list(iter.next())?),
            "--workloads" => args.workloads = Some(list(iter.next())?),
            "--rounds" => {
                let value = iter.next().ok_or("--rounds needs a number")?;
                args.rounds = Some(value.parse().map_err(|_| format!("bad --rounds {value}"))?);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    // Each cell runs in a re-executed copy of this program: hand it to the bench first.
    let all = all_systems();
    let systems: Vec<&dyn SystemFactory> = all.iter().map(|s| s.as_ref()).collect();
    if let Some(code) = txdisk_bench::child_entry(&systems) {
        return code;
    }
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<(), String> {
    let args = parse_args()?;
    // The default directory sits under the current one, which is on a disk (unlike /tmp on many
    // machines); it is removed at the end.
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
    let dir = scratch.path().to_path_buf();
    let mut config = if args.quick {
        BenchConfig::quick(dir)
    } else {
        BenchConfig::full(dir)
    };
    if let Some(rounds) = args.rounds {
        config.rounds = rounds;
    }
    if let Some(names) = &args.workloads {
        config.workloads = names
            .iter()
            .map(|name| Workload::from_name(name).ok_or(format!("unknown workload {name}")))
            .collect::<Result<_, _>>()?;
    }
    let all = all_systems();
    let systems: Vec<&dyn SystemFactory> = all
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| {
            args.systems
                .as_ref()
                .map_or(true, |names| names.iter().any(|n| n == s.name()))
        })
        .collect();
    let json = args.json;
    let report = run(&config, &systems, &mut |line| {
        if !json {
            eprintln!("{line}");
        }
    })
    .map_err(|e| e.to_string())?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
