//! A concurrent campaign from the command line: schedules × crash points × crash states.
//! `cargo run --release -p txdisk-crashfuzz --features shuttle --example schedules --
//! [--threads N] [--transactions N] [--schedules N] [--crash-states N] [--seed N]
//! [--replicated] [--replay SCHEDULE]`. A violation prints the failing schedule (on stderr);
//! `--replay` with that string (same other options) runs exactly that execution again.

use std::process::ExitCode;
use txdisk_crashfuzz::schedules::{fuzz_schedules, replay_schedule, ScheduleConfig};

fn main() -> ExitCode {
    let mut config = ScheduleConfig::default();
    let mut replay = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--replicated" {
            config.replicated = true;
            continue;
        }
        let value = args.next().unwrap_or_default();
        let number = || value.parse::<u64>();
        let parsed = match arg.as_str() {
            "--threads" => number().map(|n| config.threads = n),
            "--transactions" => number().map(|n| config.transactions_per_thread = n),
            "--schedules" => number().map(|n| config.schedules = n as usize),
            "--crash-states" => number().map(|n| config.crash_states = n),
            "--seed" => number().map(|n| config.seed = n),
            "--replay" => {
                replay = Some(value.clone());
                Ok(())
            }
            other => {
                eprintln!("unknown option {other}");
                return ExitCode::from(2);
            }
        };
        if parsed.is_err() {
            eprintln!("{arg} needs a number, got {value:?}");
            return ExitCode::from(2);
        }
    }
    let outcome = match replay {
        Some(schedule) => replay_schedule(&config, &schedule).map(|()| "replayed: no violation".to_string()),
        None => fuzz_schedules(&config).map(|report| {
            format!(
                "{} schedules ({} crashed), {} recoveries checked, {} commits, {} discarded attempts, {:.1} s, {:.0} schedules/s, 0 violations",
                report.schedules,
                report.crashed_schedules,
                report.recoveries_checked,
                report.commits,
                report.discarded,
                report.seconds,
                report.schedules as f64 / report.seconds
            )
        }),
    };
    match outcome {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(violation) => {
            eprintln!("violation: {violation}");
            ExitCode::from(1)
        }
    }
}
