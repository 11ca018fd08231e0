//! Results: one [`Measurement`] per (system, workload), the median over rounds, the ratios, and
//! the two outputs — a table for people and one JSON object for programs.

use crate::probe::Machine;
use crate::workload::{Workload, WorkloadKind};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// One cell's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    pub system: String,
    pub workload: Workload,
    /// Transactions (writes), reads, or recoveries per second.
    pub ops_per_s: f64,
    /// User data moved per second, in 10^6 bytes (data blocks only: headers and metadata are
    /// the system's overhead, not its output).
    pub mb_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub peak_rss_bytes: u64,
    /// Device syncs per operation, for systems that count them.
    pub syncs_per_op: Option<f64>,
    /// Process CPU time (all threads) per operation.
    pub cpu_us_per_op: f64,
    /// Operations measured.
    pub ops: u64,
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
    pub machine: Machine,
    pub dir: String,
    pub rounds: usize,
    pub cell_seconds: f64,
    pub quick: bool,
    pub rss_mode: RssMode,
    /// (system, how it is configured), in run order.
    pub systems: Vec<(String, String)>,
    pub results: Vec<Measurement>,
}

impl Measurement {
    /// Every field, for handing a measurement from a child process to the runner.
    pub(crate) fn to_full_json(&self) -> Value {
        json!({
            "system": self.system,
            "workload": self.workload.name(),
            "ops_per_s": self.ops_per_s,
            "mb_per_s": self.mb_per_s,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "peak_rss_bytes": self.peak_rss_bytes,
            "syncs_per_op": self.syncs_per_op,
            "cpu_us_per_op": self.cpu_us_per_op,
            "ops": self.ops,
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
            cpu_us_per_op: number("cpu_us_per_op")?,
            ops: value.get("ops")?.as_u64()?,
        })
    }
}

/// The round whose ops/s is the median (the lower middle for an even count), with the largest
/// peak RSS of all rounds: a memory bound should hold in every round.
pub fn median_of_rounds(mut rounds: Vec<Measurement>) -> Option<Measurement> {
    if rounds.is_empty() {
        return None;
    }
    let peak_rss_bytes = rounds.iter().map(|m| m.peak_rss_bytes).max().unwrap_or(0);
    rounds.sort_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
    let mut median = rounds.swap_remove((rounds.len() - 1) / 2);
    median.peak_rss_bytes = peak_rss_bytes;
    Some(median)
}

/// Systems the table gives ratios against, when present.
pub const BASELINES: [&str; 3] = ["floor", "sqlite", "redb"];

impl Report {
    pub fn find(&self, system: &str, workload: Workload) -> Option<&Measurement> {
        self.results
            .iter()
            .find(|m| m.system == system && m.workload == workload)
    }

    /// `system`'s throughput on `workload` divided by `baseline`'s: above 1 is faster. Compared
    /// in MB/s for recoveries (systems recover different amounts) and in ops/s otherwise.
    pub fn ratio(&self, system: &str, workload: Workload, baseline: &str) -> Option<f64> {
        let mine = self.find(system, workload)?;
        let theirs = self.find(baseline, workload)?;
        let by_bytes = matches!(workload.kind(), WorkloadKind::Recovery(_));
        let (a, b) = if by_bytes {
            (mine.mb_per_s, theirs.mb_per_s)
        } else {
            (mine.ops_per_s, theirs.ops_per_s)
        };
        (b > 0.0 && a.is_finite()).then(|| a / b)
    }

    /// The JSON object: `results` holds exactly the seven documented keys per entry; the run's
    /// context sits beside it.
    pub fn to_json(&self) -> Value {
        let results: Vec<Value> = self
            .results
            .iter()
            .map(|m| {
                json!({
                    "system": m.system,
                    "workload": m.workload.name(),
                    "ops_per_s": round3(m.ops_per_s),
                    "mb_per_s": round3(m.mb_per_s),
                    "p50_us": round3(m.p50_us),
                    "p99_us": round3(m.p99_us),
                    "peak_rss_bytes": m.peak_rss_bytes,
                })
            })
            .collect();
        let systems: serde_json::Map<String, Value> = self
            .systems
            .iter()
            .map(|(name, note)| (name.clone(), Value::String(note.clone())))
            .collect();
        json!({
            "machine": {
                "cpu_model": self.machine.cpu_model,
                "cores": self.machine.cores,
                "mem_total_bytes": self.machine.mem_total_bytes,
                "kernel": self.machine.kernel,
                "fs_type": self.machine.fs_type,
            },
            "run": {
                "dir": self.dir,
                "rounds": self.rounds,
                "cell_seconds": self.cell_seconds,
                "quick": self.quick,
                "peak_rss": match self.rss_mode {
                    RssMode::PerProcess => "per-process",
                    RssMode::PerCell => "per-cell",
                    RssMode::Cumulative => "cumulative",
                },
            },
            "systems": systems,
            "results": results,
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
            "{:<19} {:<12} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
            "workload",
            "system",
            "ops/s",
            "MB/s",
            "p50 µs",
            "p99 µs",
            "RSS MiB",
            "syncs/op",
            "CPU µs/op"
        );
        for baseline in &baselines {
            let _ = write!(header, " {:>9}", format!("÷{baseline}"));
        }
        let _ = writeln!(out, "{header}");
        let _ = writeln!(out, "{}", "-".repeat(header.chars().count()));
        for workload in Workload::ALL {
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
            "{:<19} {:<12} {:>10} {:>9.2} {:>9.1} {:>9.1} {:>8.1} {:>8} {:>8.1}",
            m.workload.name(),
            m.system,
            format_ops(m.ops_per_s),
            m.mb_per_s,
            m.p50_us,
            m.p99_us,
            m.peak_rss_bytes as f64 / (1024.0 * 1024.0),
            syncs,
            m.cpu_us_per_op
        )
    }

    fn footer(&self) -> String {
        let mut out = format!(
            "machine: {} ({} cores), {:.1} GiB RAM, Linux {}, bench directory on {} ({})\n\
             run: {} round(s), interleaved; ~{:.1} s per cell; median round shown; peak RSS {}\n\
             ÷X = throughput ÷ X's on the same workload (MB/s for recoveries, ops/s otherwise)\n",
            self.machine.cpu_model,
            self.machine.cores,
            self.machine.mem_total_bytes as f64 / (1u64 << 30) as f64,
            self.machine.kernel,
            self.machine.fs_type,
            self.dir,
            self.rounds,
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
