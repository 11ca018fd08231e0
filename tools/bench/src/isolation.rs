//! Running a cell in a child process, so that its peak RSS is its own.
//!
//! The runner re-executes the current program with the cell described in the environment
//! variable [`CELL_ENV`] (JSON: system, workload, round and the whole configuration). The
//! program must call [`child_entry`] first thing in `main`; the child then measures that one
//! cell, prints it on one stdout line after [`RESULT_MARKER`], and exits. A child that reaches
//! [`crate::run`] instead (the call was forgotten) fails at once rather than start a nested run.
//!
//! [`child_entry`] also runs the writer that the reopen-after-crash workloads start and kill
//! (see `crash.rs`, environment variable [`crate::crash::WRITER_ENV`]).

use crate::crash::{self, WRITER_ENV};
use crate::error::{BenchError, Result};
use crate::report::{to_value, Measurement};
use crate::runner::{run_cell, BenchConfig};
use crate::system::SystemFactory;
use crate::workload::{Geometry, Workload};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// The environment variable that makes a process a cell's child.
pub const CELL_ENV: &str = "TXDISK_BENCH_CELL";
/// Starts the child's result line on stdout.
pub const RESULT_MARKER: &str = "txdisk-bench-cell-result ";

/// Where each cell of a run executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// A child process per cell (the default): each cell's peak RSS is its own.
    ChildProcess,
    /// This process, with VmHWM reset per cell (tests; programs that cannot re-execute).
    InProcess,
}

/// Call first in `main` of any program that runs the bench with [`Isolation::ChildProcess`],
/// with the same systems it passes to [`crate::run`]. Returns None in a normal process; in a
/// cell's child, measures the cell and returns the exit code to leave `main` with.
pub fn child_entry(systems: &[&dyn SystemFactory]) -> Option<ExitCode> {
    // The writer first: a cell's child starts writers without its own variable, and a writer
    // must never take itself for the cell even if that variable reached it.
    if let Some(code) = crash::writer_entry() {
        return Some(code);
    }
    let spec = std::env::var(CELL_ENV).ok()?;
    match run_child(&spec, systems) {
        Ok(measurement) => {
            println!("{RESULT_MARKER}{}", measurement.to_full_json());
            Some(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("bench cell: {error}");
            Some(ExitCode::FAILURE)
        }
    }
}

fn run_child(spec: &str, systems: &[&dyn SystemFactory]) -> Result<Measurement> {
    let bad = |what: &str| BenchError::Config(format!("bad {CELL_ENV}: {what}"));
    let cell: Value = serde_json::from_str(spec).map_err(|e| bad(&e.to_string()))?;
    let (config, system_name, workload, round) = decode_cell(&cell).ok_or_else(|| bad(spec))?;
    let system = systems
        .iter()
        .find(|s| s.name() == system_name)
        .ok_or_else(|| bad(&format!("no system named {system_name}")))?;
    run_cell(&config, *system, workload, round)
}

/// Errs when this process is a cell's child or a reopen workload's writer: `run` must not start
/// again inside either.
pub(crate) fn refuse_nested_run() -> Result<()> {
    for variable in [CELL_ENV, WRITER_ENV] {
        if std::env::var_os(variable).is_some() {
            return Err(BenchError::Config(format!(
                "{variable} is set but the program did not call txdisk_bench::child_entry first"
            )));
        }
    }
    Ok(())
}

/// Measures one cell in a child process of this program.
pub(crate) fn run_in_child(
    config: &BenchConfig,
    system: &dyn SystemFactory,
    workload: Workload,
    round: usize,
) -> Result<Measurement> {
    let fail = |message: String| BenchError::Child {
        system: system.name().to_string(),
        workload: workload.name(),
        message,
    };
    let program = std::env::current_exe().map_err(|e| fail(format!("current_exe: {e}")))?;
    let output = Command::new(&program)
        .args(std::env::args_os().skip(1))
        .env(
            CELL_ENV,
            encode_cell(config, system.name(), workload, round).to_string(),
        )
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| fail(format!("spawn {}: {e}", program.display())))?;
    if !output.status.success() {
        return Err(fail(format!("exited with {}", output.status)));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(RESULT_MARKER))
        .and_then(|json| serde_json::from_str(json).ok())
        .and_then(|value| Measurement::from_full_json(&value))
        .ok_or_else(|| fail(format!("no result line in its output: {stdout:?}")))
}

/// The cell and every configuration field a child needs, as JSON.
pub(crate) fn encode_cell(
    config: &BenchConfig,
    system: &str,
    workload: Workload,
    round: usize,
) -> Value {
    to_value(&CellJson {
        system,
        workload: workload.name(),
        round,
        dir: config.dir.to_string_lossy().into_owned(),
        disk_blocks: config.geometry.disk_blocks,
        log_blocks: config.geometry.log_blocks,
        max_threads: config.geometry.max_threads,
        cell_us: config.cell_duration.as_micros() as u64,
        warmup_us: config.warmup.as_micros() as u64,
        flush_every: config.flush_every,
        read_set_blocks: config.read_set_blocks,
        seed: config.seed,
        quick: config.quick,
    })
}

/// One cell and its configuration, as the runner hands it to a child process; durations in
/// microseconds.
#[derive(Serialize)]
struct CellJson<'a> {
    system: &'a str,
    workload: String,
    round: usize,
    dir: String,
    disk_blocks: u64,
    log_blocks: u64,
    max_threads: usize,
    cell_us: u64,
    warmup_us: u64,
    flush_every: usize,
    read_set_blocks: u64,
    seed: u64,
    quick: bool,
}

/// The inverse of `encode_cell`: (config, system, workload, round).
pub(crate) fn decode_cell(cell: &Value) -> Option<(BenchConfig, String, Workload, usize)> {
    let uint = |key: &str| cell.get(key).and_then(Value::as_u64);
    let dir = PathBuf::from(cell.get("dir")?.as_str()?);
    let mut config = BenchConfig::quick(dir);
    config.geometry = Geometry {
        disk_blocks: uint("disk_blocks")?,
        log_blocks: uint("log_blocks")?,
        max_threads: usize::try_from(uint("max_threads")?).ok()?,
    };
    config.workloads = Vec::new();
    config.rounds = 1;
    config.cell_duration = Duration::from_micros(uint("cell_us")?);
    config.warmup = Duration::from_micros(uint("warmup_us")?);
    config.flush_every = usize::try_from(uint("flush_every")?).ok()?;
    config.read_set_blocks = uint("read_set_blocks")?;
    config.seed = uint("seed")?;
    config.quick = cell.get("quick")?.as_bool()?;
    config.isolation = Isolation::InProcess;
    config.remove_files = false;
    let system = cell.get("system")?.as_str()?.to_string();
    let workload = Workload::from_name(cell.get("workload")?.as_str()?)?;
    let round = usize::try_from(uint("round")?).ok()?;
    Some((config, system, workload, round))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cell_survives_encoding_for_the_child() {
        let mut config = BenchConfig::full(PathBuf::from("/bench/dir"));
        config.flush_every = 17;
        config.seed = u64::MAX - 3;
        config.cell_duration = Duration::from_micros(1_234_567);
        let cell = encode_cell(&config, "sqlite", Workload::DURABLE_16BLK_8THR, 2);
        let text = cell.to_string();
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        let (decoded, system, workload, round) = decode_cell(&parsed).expect("decodes");
        assert_eq!(system, "sqlite");
        assert_eq!(workload, Workload::DURABLE_16BLK_8THR);
        assert_eq!(round, 2);
        assert_eq!(decoded.dir, config.dir);
        assert_eq!(decoded.geometry, config.geometry);
        assert_eq!(decoded.cell_duration, config.cell_duration);
        assert_eq!(decoded.warmup, config.warmup);
        assert_eq!(decoded.flush_every, 17);
        assert_eq!(decoded.read_set_blocks, config.read_set_blocks);
        assert_eq!(decoded.seed, u64::MAX - 3);
        assert!(!decoded.quick);
        assert_eq!(
            decoded.isolation,
            Isolation::InProcess,
            "a child never forks again"
        );
    }

    #[test]
    fn a_measurement_survives_the_trip_back() {
        let measurement = Measurement {
            system: "redb".into(),
            workload: Workload::nosync(1, 4),
            ops_per_s: 1234.5,
            mb_per_s: 5.056,
            p50_us: 12.25,
            p99_us: 4000.0,
            peak_rss_bytes: 77 << 20,
            syncs_per_op: None,
            write_bytes_per_op: None,
            read_bytes_per_op: None,
            cpu_us_per_op: 33.0,
            context_switches_per_op: None,
            ops: 999,
            latency_cdf_us: vec![(0.0, 3.5), (0.5, 12.25), (1.0, 4100.0)],
            rounds_ops_per_s: vec![1234.5],
            rounds_mb_per_s: vec![5.056],
        };
        let text = measurement.to_full_json().to_string();
        let value: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(
            Measurement::from_full_json(&value),
            Some(measurement.clone())
        );
        let with_syncs = Measurement {
            syncs_per_op: Some(0.125),
            write_bytes_per_op: Some(12_345.5),
            read_bytes_per_op: Some(1.5e9),
            context_switches_per_op: Some(2.0 / 3.0),
            ..measurement
        };
        assert_eq!(
            Measurement::from_full_json(&with_syncs.to_full_json()),
            Some(with_syncs.clone()),
            "unrounded: the runner takes the child's figures as they are"
        );
        // A child without the counter (getrusage failed) hands back null, read as None.
        let mut unswitched = with_syncs.to_full_json();
        unswitched["context_switches_per_op"] = Value::Null;
        assert_eq!(
            Measurement::from_full_json(&unswitched).map(|m| m.context_switches_per_op),
            Some(None)
        );
        assert_eq!(Measurement::from_full_json(&json!({"system": "x"})), None);
    }
}
