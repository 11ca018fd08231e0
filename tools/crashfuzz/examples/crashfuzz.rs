//! Runs a fuzzing campaign from the command line, for measuring speed and for long runs:
//! `cargo run --release -p txdisk-crashfuzz --example crashfuzz -- [--seed N] [--budget N|Ns]
//! [--exhaustive] [--replicated] [--torn] [--misdirect] [--bit-rot] [--lost-writes] [--depth N]
//! [--bug NAME] [--json] [--replay TOKEN]`.
//! (The `txdisk crashfuzz` subcommand is the user-facing front end.)

use std::process::ExitCode;
use txdisk_crashfuzz::{fuzz, replay, Budget, Bug, FuzzConfig};

fn main() -> ExitCode {
    let mut config = FuzzConfig::default();
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match arg.as_str() {
            "--seed" => config.seed = value().parse().unwrap_or(config.seed),
            "--budget" => config.budget = value().parse().unwrap_or(Budget::States(100_000)),
            "--depth" => config.depth = value().parse().unwrap_or(2),
            "--exhaustive" => config.exhaustive = true,
            "--replicated" => config.replicated = true,
            "--torn" => config.torn = true,
            "--misdirect" => config.misdirect = true,
            "--bit-rot" => config.bit_rot = true,
            "--lost-writes" => config.lost_writes = true,
            "--json" => json = true,
            "--bug" => config.bug = value().parse::<Bug>().ok(),
            "--replay" => {
                return match replay(&value()) {
                    Ok(report) => {
                        println!("{report}");
                        ExitCode::from(u8::from(report.reproduced()))
                    }
                    Err(error) => {
                        eprintln!("{error}");
                        ExitCode::from(2)
                    }
                };
            }
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    match fuzz(&config, &mut |_| {}) {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
                if let Some(cpu_s) = cpu_seconds() {
                    let per_cpu_s = report.crash_states as f64 / cpu_s.max(1e-9);
                    println!("{cpu_s:.1} CPU-seconds: {per_cpu_s:.0} states per CPU-second");
                }
            }
            ExitCode::from(u8::from(!report.violations.is_empty()))
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(2)
        }
    }
}

/// CPU time of this process (user + system) from `/proc/self/stat`, on Linux; the machine may be
/// shared, so wall-clock states per second understate the speed of one core.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux configuration in use.
    Some(ticks / 100.0)
}
