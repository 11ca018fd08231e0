//! Results: one [`Measurement`] per (system, workload), the median over rounds, the ratios, and
//! the two outputs — a table for people and one JSON object for programs — and the way back
//! from that JSON ([`Report::from_json`]) for comparing saved runs.
//!
//! The JSON only ever gains fields: the seven of the first version (`system`, `workload`,
//! `ops_per_s`, `mb_per_s`, `p50_us`, `p99_us`, `peak_rss_bytes`) keep their names and meaning,
//! and a run saved by an older version still loads (what it lacks is left empty).

use crate::probe::{self, Machine};
use crate::workload::{Workload, WorkloadKind};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One cell's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// The system measured.
    pub system: String,
    /// The workload measured.
    pub workload: Workload,
    /// Transactions (writes), reads, or recoveries per second.
    pub ops_per_s: f64,
    /// User data moved per second, in 10^6 bytes (data blocks only: headers and metadata are
    /// the system's overhead, not its output).
    pub mb_per_s: f64,
    /// Median operation latency in microseconds.
    pub p50_us: f64,
    /// 99th-percentile operation latency in microseconds.
    pub p99_us: f64,
    /// Peak resident set size in bytes ([`RssMode`] says how it was obtained).
    pub peak_rss_bytes: u64,
    /// Device syncs per operation, for systems that count them.
    pub syncs_per_op: Option<f64>,
    /// Bytes the cell's process handed to write system calls per operation (the `wchar` of
    /// /proc/self/io, the same counter for every system); None where the kernel does not count
    /// them, and in runs saved before it was measured.
    pub write_bytes_per_op: Option<f64>,
    /// Bytes the cell's process got from read system calls per operation (the `rchar` of
    /// /proc/self/io, page cache hits included; for a recovery, of its timed part only: for a
    /// reopen, what it read to serve its first block); None where the kernel does not count
    /// them, and in runs saved before it was measured.
    pub read_bytes_per_op: Option<f64>,
    /// Process CPU time (all threads) per operation.
    pub cpu_us_per_op: f64,
    /// Context switches of the cell's process (all threads, voluntary plus involuntary:
    /// getrusage's `ru_nvcsw + ru_nivcsw`) per operation, a count, over the same span as
    /// `cpu_us_per_op`; None where getrusage failed, and in runs saved before it was measured.
    pub context_switches_per_op: Option<f64>,
    /// Operations measured.
    pub ops: u64,
    /// The latency distribution: (quantile, latency µs) at [`CDF_QUANTILES`](crate::histogram::CDF_QUANTILES).
    pub latency_cdf_us: Vec<(f64, f64)>,
    /// Every round's ops/s, in run order (the figure above is their median round); the spread
    /// of these is the noise a comparison allows. One entry for a single cell.
    pub rounds_ops_per_s: Vec<f64>,
    /// Every round's MB/s, in run order.
    pub rounds_mb_per_s: Vec<f64>,
}

/// How `peak_rss_bytes` was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RssMode {
    /// Each cell ran in its own process: each figure is that process's VmHWM.
    PerProcess,
    /// VmHWM reset before each cell (via /proc/self/clear_refs): each figure is that cell's peak
    /// with only that system open.
    PerCell,
    /// The kernel refused the reset: each figure is the process's peak so far.
    Cumulative,
}

/// A whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The machine the run was measured on.
    pub machine: Machine,
    /// The bench directory.
    pub dir: String,
    /// Interleaved rounds run.
    pub rounds: usize,
    /// Measured seconds of each timed cell.
    pub cell_seconds: f64,
    /// A quick run (smaller sizes and shorter cells): its figures are for smoke tests only.
    pub quick: bool,
    /// How `peak_rss_bytes` was obtained.
    pub rss_mode: RssMode,
    /// When the run started, in seconds since the Unix epoch (0 when unknown).
    pub started_unix_s: u64,
    /// (system, how it is configured), in run order.
    pub systems: Vec<(String, String)>,
    /// One median measurement per (system, workload).
    pub results: Vec<Measurement>,
}

impl Measurement {
    /// The figure throughput is compared by: MB/s for recoveries (systems recover different
    /// amounts), ops/s otherwise.
    pub fn throughput(&self) -> f64 {
        if self.by_bytes() {
            self.mb_per_s
        } else {
            self.ops_per_s
        }
    }

    /// `throughput` of every round, in run order.
    pub fn rounds_throughput(&self) -> &[f64] {
        if self.by_bytes() {
            &self.rounds_mb_per_s
        } else {
            &self.rounds_ops_per_s
        }
    }

    fn by_bytes(&self) -> bool {
        matches!(self.workload.kind(), WorkloadKind::Recovery(_))
    }

    /// Every field, for handing a measurement from a child process to the runner.
    pub(crate) fn to_full_json(&self) -> Value {
        to_value(&FullJson {
            system: &self.system,
            workload: self.workload.name(),
            ops_per_s: self.ops_per_s,
            mb_per_s: self.mb_per_s,
            p50_us: self.p50_us,
            p99_us: self.p99_us,
            peak_rss_bytes: self.peak_rss_bytes,
            syncs_per_op: self.syncs_per_op,
            write_bytes_per_op: self.write_bytes_per_op,
            read_bytes_per_op: self.read_bytes_per_op,
            cpu_us_per_op: self.cpu_us_per_op,
            context_switches_per_op: self.context_switches_per_op,
            ops: self.ops,
            latency_cdf_us: &self.latency_cdf_us,
            rounds_ops_per_s: &self.rounds_ops_per_s,
            rounds_mb_per_s: &self.rounds_mb_per_s,
        })
    }

    /// The inverse of `to_full_json`; None for anything else.
    pub(crate) fn from_full_json(value: &Value) -> Option<Measurement> {
        let number = |key: &str| value.get(key).and_then(Value::as_f64);
        Some(Measurement {
            system: value.get("system")?.as_str()?.to_string(),
            workload: Workload::from_name(value.get("workload")?.as_str()?)?,
            ops_per_s: number("ops_per_s")?,
            mb_per_s: number("mb_per_s")?,
            p50_us: number("p50_us")?,
            p99_us: number("p99_us")?,
            peak_rss_bytes: value.get("peak_rss_bytes")?.as_u64()?,
            syncs_per_op: number("syncs_per_op"),
            write_bytes_per_op: number("write_bytes_per_op"),
            read_bytes_per_op: number("read_bytes_per_op"),
            cpu_us_per_op: number("cpu_us_per_op")?,
            context_switches_per_op: number("context_switches_per_op"),
            ops: value.get("ops")?.as_u64()?,
            latency_cdf_us: cdf_points(value.get("latency_cdf_us")?)?,
            rounds_ops_per_s: numbers(value.get("rounds_ops_per_s")?)?,
            rounds_mb_per_s: numbers(value.get("rounds_mb_per_s")?)?,
        })
    }

    /// A row of the report's `results`: the documented seven keys, then the later ones.
    fn to_row(&self) -> RowJson<'_> {
        let rounded = |values: &[f64]| values.iter().copied().map(round3).collect();
        RowJson {
            system: &self.system,
            workload: self.workload.name(),
            ops_per_s: round3(self.ops_per_s),
            mb_per_s: round3(self.mb_per_s),
            p50_us: round3(self.p50_us),
            p99_us: round3(self.p99_us),
            peak_rss_bytes: self.peak_rss_bytes,
            threads: self.workload.threads(),
            syncs_per_op: self.syncs_per_op.map(round3),
            write_bytes_per_op: self.write_bytes_per_op.map(round3),
            read_bytes_per_op: self.read_bytes_per_op.map(round3),
            cpu_us_per_op: round3(self.cpu_us_per_op),
            context_switches_per_op: self.context_switches_per_op.map(round3),
            ops: self.ops,
            rounds_ops_per_s: rounded(&self.rounds_ops_per_s),
            rounds_mb_per_s: rounded(&self.rounds_mb_per_s),
            latency_cdf_us: self
                .latency_cdf_us
                .iter()
                .map(|&(q, us)| [q, round3(us)])
                .collect(),
        }
    }

    /// A row of a saved run, of this version or an older one: the first version's seven keys
    /// are required; the later ones default to empty (one round: the median itself).
    fn from_row_json(value: &Value) -> Result<Measurement, String> {
        let text = |key: &str| value.get(key).and_then(Value::as_str);
        let number = |key: &str| value.get(key).and_then(Value::as_f64);
        let need =
            |key: &str| number(key).ok_or_else(|| format!("a result without {key}: {value}"));
        let system = text("system").ok_or_else(|| format!("a result without system: {value}"))?;
        let name = text("workload").ok_or_else(|| format!("a result without workload: {value}"))?;
        let workload =
            Workload::from_name(name).ok_or_else(|| format!("unknown workload {name}"))?;
        let (ops_per_s, mb_per_s) = (need("ops_per_s")?, need("mb_per_s")?);
        let listed = |key: &str, median: f64| {
            value
                .get(key)
                .and_then(numbers)
                .filter(|rounds| !rounds.is_empty())
                .unwrap_or_else(|| vec![median])
        };
        Ok(Measurement {
            system: system.to_string(),
            workload,
            ops_per_s,
            mb_per_s,
            p50_us: need("p50_us")?,
            p99_us: need("p99_us")?,
            peak_rss_bytes: value
                .get("peak_rss_bytes")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            syncs_per_op: number("syncs_per_op"),
            write_bytes_per_op: number("write_bytes_per_op"),
            read_bytes_per_op: number("read_bytes_per_op"),
            cpu_us_per_op: number("cpu_us_per_op").unwrap_or(0.0),
            context_switches_per_op: number("context_switches_per_op"),
            ops: value.get("ops").and_then(Value::as_u64).unwrap_or(0),
            latency_cdf_us: value
                .get("latency_cdf_us")
                .and_then(cdf_points)
                .unwrap_or_default(),
            rounds_ops_per_s: listed("rounds_ops_per_s", ops_per_s),
            rounds_mb_per_s: listed("rounds_mb_per_s", mb_per_s),
        })
    }
}

fn numbers(value: &Value) -> Option<Vec<f64>> {
    value.as_array()?.iter().map(Value::as_f64).collect()
}

fn cdf_points(value: &Value) -> Option<Vec<(f64, f64)>> {
    value
        .as_array()?
        .iter()
        .map(|point| Some((point.get(0)?.as_f64()?, point.get(1)?.as_f64()?)))
        .collect()
}

/// The round whose ops/s is the median (the lower middle for an even count), with the largest
/// peak RSS of all rounds (a memory bound should hold in every round) and every round's
/// throughput, in the order given, for the noise band of a comparison.
pub fn median_of_rounds(mut rounds: Vec<Measurement>) -> Option<Measurement> {
    if rounds.is_empty() {
        return None;
    }
    let peak_rss_bytes = rounds.iter().map(|m| m.peak_rss_bytes).max().unwrap_or(0);
    let rounds_ops_per_s = rounds.iter().map(|m| m.ops_per_s).collect();
    let rounds_mb_per_s = rounds.iter().map(|m| m.mb_per_s).collect();
    rounds.sort_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
    let mut median = rounds.swap_remove((rounds.len() - 1) / 2);
    median.peak_rss_bytes = peak_rss_bytes;
    median.rounds_ops_per_s = rounds_ops_per_s;
    median.rounds_mb_per_s = rounds_mb_per_s;
    Some(median)
}

/// Systems the table gives ratios against, when present: the floor first (the charts' baseline),
/// then the pair's own floor (what `txdisk-pair` is best read against), then the peers.
pub const BASELINES: [&str; 4] = ["floor", "floor-pair", "sqlite", "redb"];

impl Report {
    /// The measurement of `system` on `workload`, if the run has one.
    pub fn find(&self, system: &str, workload: Workload) -> Option<&Measurement> {
        self.results
            .iter()
            .find(|m| m.system == system && m.workload == workload)
    }

    /// `system`'s throughput on `workload` divided by `baseline`'s: above 1 is faster. Compared
    /// in MB/s for recoveries (systems recover different amounts) and in ops/s otherwise.
    pub fn ratio(&self, system: &str, workload: Workload, baseline: &str) -> Option<f64> {
        let mine = self.find(system, workload)?.throughput();
        let theirs = self.find(baseline, workload)?.throughput();
        (theirs > 0.0 && mine.is_finite()).then(|| mine / theirs)
    }

    /// The workloads that have results, in table order (by workload, then thread count).
    pub fn workloads(&self) -> Vec<Workload> {
        let mut workloads: Vec<Workload> = self.results.iter().map(|m| m.workload).collect();
        workloads.sort_unstable();
        workloads.dedup();
        workloads
    }

    /// The systems in run order, followed by any that have results but no configuration note.
    pub fn system_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.systems.iter().map(|(name, _)| name.clone()).collect();
        for m in &self.results {
            if !names.contains(&m.system) {
                names.push(m.system.clone());
            }
        }
        names
    }

    /// "2026-12-01 19:56 UTC" for the run's start, or "date unknown".
    pub fn started_utc(&self) -> String {
        probe::utc_date_time(self.started_unix_s)
    }

    /// The JSON object: `results` holds one row per (system, workload) — the first version's
    /// seven keys, then `threads`, `syncs_per_op`, `write_bytes_per_op`, `read_bytes_per_op`,
    /// `cpu_us_per_op`, `context_switches_per_op`, `ops`, the rounds' throughput and the latency
    /// CDF; the run's context sits beside it.
    pub fn to_json(&self) -> Value {
        to_value(&ReportJson {
            machine: &self.machine,
            run: RunJson {
                dir: &self.dir,
                rounds: self.rounds,
                cell_seconds: self.cell_seconds,
                quick: self.quick,
                peak_rss: rss_mode_name(self.rss_mode),
                started_unix_s: self.started_unix_s,
                started_utc: self.started_utc(),
            },
            // A later note for the same system replaces an earlier one, as JSON keys do.
            systems: self
                .systems
                .iter()
                .map(|(name, note)| (name.as_str(), note.as_str()))
                .collect(),
            results: self.results.iter().map(Measurement::to_row).collect(),
        })
    }

    /// A report from `to_json`'s output, of this version or an older one. Fields it lacks are
    /// left empty (an unknown machine, one round per row); a result it cannot read is an error.
    pub fn from_json(value: &Value) -> Result<Report, String> {
        let results = value
            .get("results")
            .and_then(Value::as_array)
            .ok_or("no results list: not a bench run")?
            .iter()
            .map(Measurement::from_row_json)
            .collect::<Result<Vec<_>, _>>()?;
        let run = &value["run"];
        let systems = systems_in_run_order(value.get("systems"), &results);
        Ok(Report {
            machine: machine_from_json(&value["machine"]),
            dir: run["dir"].as_str().unwrap_or("").to_string(),
            rounds: run["rounds"].as_u64().map_or(1, |n| n as usize),
            cell_seconds: run["cell_seconds"].as_f64().unwrap_or(0.0),
            quick: run["quick"].as_bool().unwrap_or(false),
            rss_mode: match run["peak_rss"].as_str() {
                Some("per-cell") => RssMode::PerCell,
                Some("cumulative") => RssMode::Cumulative,
                _ => RssMode::PerProcess,
            },
            started_unix_s: run["started_unix_s"].as_u64().unwrap_or(0),
            systems,
            results,
        })
    }

    /// The table for people: one block of rows per workload, ratios to each baseline present.
    pub fn table(&self) -> String {
        let baselines: Vec<&str> = BASELINES
            .into_iter()
            .filter(|b| self.results.iter().any(|m| m.system == *b))
            .collect();
        let mut out = String::new();
        let mut header = format!(
            "{:<22} {:<12} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9} {:>8} {:>7}",
            "workload",
            "system",
            "ops/s",
            "MB/s",
            "p50 µs",
            "p99 µs",
            "RSS MiB",
            "syncs/op",
            "wr KiB/op",
            "rd KiB/op",
            "CPU µs/op",
            "csw/op"
        );
        for baseline in &baselines {
            let _ = write!(header, " {:>9}", format!("÷{baseline}"));
        }
        let _ = writeln!(out, "{header}");
        let _ = writeln!(out, "{}", "-".repeat(header.chars().count()));
        for workload in self.workloads() {
            for m in self.results.iter().filter(|m| m.workload == workload) {
                let _ = write!(out, "{}", self.row(m));
                for baseline in &baselines {
                    let cell = match self.ratio(&m.system, workload, baseline) {
                        Some(r) if m.system != *baseline => format!("{r:.2}"),
                        _ => "-".to_string(),
                    };
                    let _ = write!(out, " {cell:>9}");
                }
                let _ = writeln!(out);
            }
        }
        let _ = writeln!(out, "\n{}", self.footer());
        out
    }

    fn row(&self, m: &Measurement) -> String {
        let syncs = m
            .syncs_per_op
            .map_or("-".to_string(), |s| format!("{s:.3}"));
        format!(
            "{:<22} {:<12} {:>10} {:>9.2} {:>9.1} {:>9.1} {:>8.1} {:>8} {:>9} {:>9} {:>8.1} {:>7}",
            m.workload.name(),
            m.system,
            format_ops(m.ops_per_s),
            m.mb_per_s,
            m.p50_us,
            m.p99_us,
            m.peak_rss_bytes as f64 / (1024.0 * 1024.0),
            syncs,
            format_kib(m.write_bytes_per_op),
            format_kib(m.read_bytes_per_op),
            m.cpu_us_per_op,
            format_per_op(m.context_switches_per_op)
        )
    }

    fn footer(&self) -> String {
        let mut out = format!(
            "machine: {} ({} cores), {:.1} GiB RAM, Linux {}, bench directory on {} ({})\n\
             run: {} round(s), interleaved, started {}; ~{:.1} s per cell; median round shown; \
             peak RSS {}\n\
             ÷X = throughput ÷ X's on the same workload (MB/s for recoveries, ops/s otherwise)\n\
             wr KiB/op = KiB the cell's process handed to write system calls per operation \
             (/proc/self/io wchar; of the timed part only for recoveries); what a system defers \
             past the cell (a log not yet installed, a WAL not yet checkpointed) is not in it\n\
             rd KiB/op = the same for read system calls (rchar, page cache hits included); for \
             reopen-after-crash, what the reopen read before it served its first block, whose \
             time is p50/p99\n\
             csw/op = context switches of the cell's process per operation (voluntary plus \
             involuntary, getrusage), over the same span as CPU µs/op\n",
            self.machine.cpu_model,
            self.machine.cores,
            self.machine.mem_total_bytes as f64 / (1u64 << 30) as f64,
            self.machine.kernel,
            self.machine.fs_type,
            self.dir,
            self.rounds,
            self.started_utc(),
            self.cell_seconds,
            match self.rss_mode {
                RssMode::PerProcess => "of each cell's own process",
                RssMode::PerCell => "per cell (VmHWM reset before each)",
                RssMode::Cumulative => "cumulative (VmHWM reset refused)",
            },
        );
        for (name, note) in &self.systems {
            let _ = writeln!(out, "{name}: {note}");
        }
        out
    }
}

/// [`Report`]'s JSON shape: the machine, the run's settings, each system's note by name, and
/// one row per measurement.
#[derive(Serialize)]
struct ReportJson<'a> {
    machine: &'a Machine,
    run: RunJson<'a>,
    systems: BTreeMap<&'a str, &'a str>,
    results: Vec<RowJson<'a>>,
}

/// The run's settings in a report's JSON.
#[derive(Serialize)]
struct RunJson<'a> {
    dir: &'a str,
    rounds: usize,
    cell_seconds: f64,
    quick: bool,
    /// How `peak_rss_bytes` was measured ([`rss_mode_name`]).
    peak_rss: &'static str,
    started_unix_s: u64,
    started_utc: String,
}

/// A row of a report's `results`, its figures rounded to three decimals.
#[derive(Serialize)]
struct RowJson<'a> {
    system: &'a str,
    workload: String,
    ops_per_s: f64,
    mb_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    peak_rss_bytes: u64,
    threads: usize,
    syncs_per_op: Option<f64>,
    write_bytes_per_op: Option<f64>,
    read_bytes_per_op: Option<f64>,
    cpu_us_per_op: f64,
    context_switches_per_op: Option<f64>,
    ops: u64,
    rounds_ops_per_s: Vec<f64>,
    rounds_mb_per_s: Vec<f64>,
    /// (quantile, latency µs) pairs.
    latency_cdf_us: Vec<[f64; 2]>,
}

/// A measurement with every field unrounded, as a child process hands it to the runner.
#[derive(Serialize)]
struct FullJson<'a> {
    system: &'a str,
    workload: String,
    ops_per_s: f64,
    mb_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    peak_rss_bytes: u64,
    syncs_per_op: Option<f64>,
    write_bytes_per_op: Option<f64>,
    read_bytes_per_op: Option<f64>,
    cpu_us_per_op: f64,
    context_switches_per_op: Option<f64>,
    ops: u64,
    /// (quantile, latency µs) pairs.
    latency_cdf_us: &'a [(f64, f64)],
    rounds_ops_per_s: &'a [f64],
    rounds_mb_per_s: &'a [f64],
}

/// A derived report as a JSON value, whose map keeps its keys sorted as the reports always
/// printed them.
pub(crate) fn to_value(report: &impl Serialize) -> Value {
    // The reports hold strings, numbers, options and lists under string keys: nothing that
    // serde_json's conversion can refuse (json! interpolation unwraps the same conversion).
    serde_json::to_value(report).expect("a derived report converts to a JSON value")
}

/// Bytes per operation in KiB: one decimal while that is readable, whole KiB past 100 000 (a
/// reopen reads GiB), "-" when not measured.
fn format_kib(bytes: Option<f64>) -> String {
    match bytes.map(|b| b / 1024.0) {
        None => "-".to_string(),
        Some(kib) if kib >= 100_000.0 => format!("{kib:.0}"),
        Some(kib) => format!("{kib:.1}"),
    }
}

/// A count per operation with two decimals (below one is a count shared by operations), "-"
/// when not measured.
fn format_per_op(count: Option<f64>) -> String {
    count.map_or("-".to_string(), |n| format!("{n:.2}"))
}

fn format_ops(ops_per_s: f64) -> String {
    if ops_per_s >= 100.0 {
        format!("{ops_per_s:.0}")
    } else {
        format!("{ops_per_s:.2}")
    }
}

/// Three decimals are more than any benchmark can claim, and keep the JSON readable.
fn round3(value: f64) -> f64 {
    if value.is_finite() {
        (value * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// (system, note) pairs in the order the run had them: a JSON object's keys come back sorted,
/// but the rows are in run order, so the systems' first rows give it.
fn systems_in_run_order(notes: Option<&Value>, results: &[Measurement]) -> Vec<(String, String)> {
    let note = |name: &str| {
        notes
            .and_then(|n| n.get(name))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut names: Vec<String> = Vec::new();
    let listed = notes
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|map| map.keys());
    for name in results.iter().map(|m| &m.system).chain(listed) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let n = note(&name);
            (name, n)
        })
        .collect()
}

fn rss_mode_name(mode: RssMode) -> &'static str {
    match mode {
        RssMode::PerProcess => "per-process",
        RssMode::PerCell => "per-cell",
        RssMode::Cumulative => "cumulative",
    }
}

fn machine_from_json(value: &Value) -> Machine {
    let text = |key: &str| value[key].as_str().unwrap_or("unknown").to_string();
    Machine {
        cpu_model: text("cpu_model"),
        cores: value["cores"].as_u64().map_or(0, |n| n as usize),
        mem_total_bytes: value["mem_total_bytes"].as_u64().unwrap_or(0),
        kernel: text("kernel"),
        fs_type: text("fs_type"),
    }
}
