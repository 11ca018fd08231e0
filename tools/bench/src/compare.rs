//! Before and after: the rows two runs share, each row's throughput ratio B ÷ A, and whether
//! the change stands out of what the rounds of the two runs vary by.
//!
//! The noise band of a row is every round of B against every round of A: from
//! `min(B) / max(A)` to `max(B) / min(A)`. A row is *faster* when even the low end is above
//! `1 + noise_floor`, *slower* when even the high end is below `1 / (1 + noise_floor)`, and
//! *within noise* otherwise. The floor covers what rounds cannot show: a run of one round has a
//! band of a single point, and a file system's mood drifts between runs more than within one.
//! Slower is the mirror of faster: comparing B with A gives the opposite verdicts.
//!
//! Beside the throughput, each row shows the bytes written per operation of each run, where
//! both measured it: a change of the write path shows there before it shows in the timing. It
//! takes no part in the verdict.

use crate::report::{to_value, Measurement, Report};
use crate::workload::{Workload, WorkloadKind};
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;

/// Five per cent: below that, a change between two runs on a virtual disk shared with other
/// work is not worth a reader's attention, however tight the rounds were (`--noise-floor`
/// sets another).
pub const DEFAULT_NOISE_FLOOR: f64 = 0.05;

/// What a row's change is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Even the slowest round of B against the fastest of A is faster, by more than the floor.
    Faster,
    /// Even the fastest round of B against the slowest of A is slower, by more than the floor.
    Slower,
    /// Neither: the band straddles the noise floor.
    WithinNoise,
}

impl Verdict {
    /// The verdict as the table and the JSON show it.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::WithinNoise => "within noise",
        }
    }
}

/// One row present in both runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RowChange {
    /// The system measured.
    pub system: String,
    /// The workload measured.
    pub workload: Workload,
    /// The median throughput of each run: MB/s for recoveries, ops/s otherwise.
    pub a: f64,
    /// B's median throughput, in the unit of `a`.
    pub b: f64,
    /// `b / a`: above 1 is faster.
    pub ratio: f64,
    /// The lowest and highest ratio any round of B gives against any round of A.
    pub band_low: f64,
    /// See `band_low`.
    pub band_high: f64,
    /// What the band says of the change.
    pub verdict: Verdict,
    /// Bytes written per operation in A, if A measured them (runs saved before it did not).
    pub a_write_bytes_per_op: Option<f64>,
    /// Bytes written per operation in B, if B measured them.
    pub b_write_bytes_per_op: Option<f64>,
}

impl RowChange {
    /// The unit of `a` and `b`.
    pub fn unit(&self) -> &'static str {
        if matches!(self.workload.kind(), WorkloadKind::Recovery(_)) {
            "MB/s"
        } else {
            "ops/s"
        }
    }
}

/// Two runs compared row by row.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The rows both runs have, in the runs' order.
    pub rows: Vec<RowChange>,
    /// (system, workload) rows that only one of the runs has.
    pub only_in_a: Vec<(String, Workload)>,
    /// (system, workload) rows that only B has.
    pub only_in_b: Vec<(String, Workload)>,
    /// The fraction a change must exceed to count (0.05 is five per cent).
    pub noise_floor: f64,
    /// How the two runs differ in machine or configuration: a change there explains a ratio
    /// as well as a change of code would.
    pub differences: Vec<String>,
}

/// Compares run `b` against run `a` (the earlier one, or the baseline).
pub fn compare(a: &Report, b: &Report, noise_floor: f64) -> Comparison {
    let mut rows = Vec::new();
    let mut only_in_a = Vec::new();
    for before in &a.results {
        match b.find(&before.system, before.workload) {
            Some(after) => rows.push(row_change(before, after, noise_floor)),
            None => only_in_a.push((before.system.clone(), before.workload)),
        }
    }
    let only_in_b = b
        .results
        .iter()
        .filter(|after| a.find(&after.system, after.workload).is_none())
        .map(|after| (after.system.clone(), after.workload))
        .collect();
    Comparison {
        rows,
        only_in_a,
        only_in_b,
        noise_floor,
        differences: differences(a, b),
    }
}

/// "cell seconds: 2 → 0.4", one line per machine or configuration field that differs.
fn differences(a: &Report, b: &Report) -> Vec<String> {
    let (ma, mb) = (&a.machine, &b.machine);
    let fields = [
        ("CPU", ma.cpu_model.clone(), mb.cpu_model.clone()),
        ("cores", ma.cores.to_string(), mb.cores.to_string()),
        ("kernel", ma.kernel.clone(), mb.kernel.clone()),
        ("file system", ma.fs_type.clone(), mb.fs_type.clone()),
        ("quick", a.quick.to_string(), b.quick.to_string()),
        ("rounds", a.rounds.to_string(), b.rounds.to_string()),
        (
            "cell seconds",
            a.cell_seconds.to_string(),
            b.cell_seconds.to_string(),
        ),
    ];
    fields
        .into_iter()
        .filter(|(_, before, after)| before != after)
        .map(|(what, before, after)| format!("{what}: {before} → {after}"))
        .collect()
}

fn row_change(before: &Measurement, after: &Measurement, noise_floor: f64) -> RowChange {
    let (a_low, a_high) = extremes(before);
    let (b_low, b_high) = extremes(after);
    let (band_low, band_high) = (b_low / a_high, b_high / a_low);
    // NaN (no throughput at all on either side) compares false both ways: within noise.
    let verdict = if band_low > 1.0 + noise_floor {
        Verdict::Faster
    } else if band_high < 1.0 / (1.0 + noise_floor) {
        Verdict::Slower
    } else {
        Verdict::WithinNoise
    };
    RowChange {
        system: before.system.clone(),
        workload: before.workload,
        a: before.throughput(),
        b: after.throughput(),
        ratio: after.throughput() / before.throughput(),
        band_low,
        band_high,
        verdict,
        a_write_bytes_per_op: before.write_bytes_per_op,
        b_write_bytes_per_op: after.write_bytes_per_op,
    }
}

/// The slowest and fastest round (the median alone for a row without rounds).
fn extremes(m: &Measurement) -> (f64, f64) {
    let rounds = m.rounds_throughput();
    if rounds.is_empty() {
        return (m.throughput(), m.throughput());
    }
    rounds
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &r| {
            (low.min(r), high.max(r))
        })
}

impl Comparison {
    /// Rows with this verdict.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.rows.iter().filter(|r| r.verdict == verdict).count()
    }

    /// The table for people: one line per shared row, in the runs' order, then the totals.
    pub fn table(&self, a_label: &str, b_label: &str) -> String {
        let mut out = format!("A = {a_label}\nB = {b_label}\n\n");
        let header = format!(
            "{:<22} {:<12} {:>5} {:>11} {:>11} {:>7} {:>15} {:>19}  verdict",
            "workload", "system", "unit", "A", "B", "B÷A", "noise band", "wr KiB/op A→B"
        );
        let _ = writeln!(out, "{header}\n{}", "-".repeat(header.chars().count()));
        for row in &self.rows {
            let band = format!("{:.2}–{:.2}", row.band_low, row.band_high);
            let kib = |bytes: Option<f64>| {
                bytes.map_or("-".to_string(), |b| format!("{:.1}", b / 1024.0))
            };
            let written = format!(
                "{}→{}",
                kib(row.a_write_bytes_per_op),
                kib(row.b_write_bytes_per_op)
            );
            let _ = writeln!(
                out,
                "{:<22} {:<12} {:>5} {:>11.1} {:>11.1} {:>7.3} {:>15} {:>19}  {}",
                row.workload.name(),
                row.system,
                row.unit(),
                row.a,
                row.b,
                row.ratio,
                band,
                written,
                row.verdict.name()
            );
        }
        let _ = writeln!(
            out,
            "\n{} faster, {} slower, {} within noise (a row changes when every round of B \
             against every round of A differs by more than {:.0} %)",
            self.count(Verdict::Faster),
            self.count(Verdict::Slower),
            self.count(Verdict::WithinNoise),
            self.noise_floor * 100.0
        );
        if !self.differences.is_empty() {
            let _ = writeln!(out, "the runs differ in: {}", self.differences.join("; "));
        }
        for (label, missing) in [("A", &self.only_in_a), ("B", &self.only_in_b)] {
            if !missing.is_empty() {
                let names: Vec<String> = missing.iter().map(|(s, w)| format!("{s} {w}")).collect();
                let _ = writeln!(out, "only in {label}: {}", names.join(", "));
            }
        }
        out
    }

    /// One JSON object: every shared row with its ratio, band and verdict, and the totals.
    pub fn to_json(&self, a_label: &str, b_label: &str) -> Value {
        let named = |rows: &[(String, Workload)]| -> Vec<NamedRowJson> {
            rows.iter()
                .map(|(system, workload)| NamedRowJson {
                    system: system.clone(),
                    workload: workload.name(),
                })
                .collect()
        };
        to_value(&ComparisonJson {
            a: a_label,
            b: b_label,
            noise_floor: self.noise_floor,
            faster: self.count(Verdict::Faster),
            slower: self.count(Verdict::Slower),
            within_noise: self.count(Verdict::WithinNoise),
            rows: self.rows.iter().map(RowChangeJson::from).collect(),
            only_in_a: named(&self.only_in_a),
            only_in_b: named(&self.only_in_b),
            differences: &self.differences,
        })
    }
}

/// [`Comparison`]'s JSON shape: the two runs' labels, the totals, and the rows.
#[derive(Serialize)]
struct ComparisonJson<'a> {
    a: &'a str,
    b: &'a str,
    noise_floor: f64,
    faster: usize,
    slower: usize,
    within_noise: usize,
    rows: Vec<RowChangeJson<'a>>,
    only_in_a: Vec<NamedRowJson>,
    only_in_b: Vec<NamedRowJson>,
    differences: &'a [String],
}

/// A row only one run has.
#[derive(Serialize)]
struct NamedRowJson {
    system: String,
    workload: String,
}

/// A shared row as JSON, with its workload's name and thread count and the unit of `a` and `b`.
#[derive(Serialize)]
struct RowChangeJson<'a> {
    system: &'a str,
    workload: String,
    threads: usize,
    unit: &'static str,
    a: f64,
    b: f64,
    ratio: f64,
    band_low: f64,
    band_high: f64,
    verdict: &'static str,
    a_write_bytes_per_op: Option<f64>,
    b_write_bytes_per_op: Option<f64>,
}

impl<'a> From<&'a RowChange> for RowChangeJson<'a> {
    fn from(row: &'a RowChange) -> RowChangeJson<'a> {
        RowChangeJson {
            system: &row.system,
            workload: row.workload.name(),
            threads: row.workload.threads(),
            unit: row.unit(),
            a: row.a,
            b: row.b,
            ratio: row.ratio,
            band_low: row.band_low,
            band_high: row.band_high,
            verdict: row.verdict.name(),
            a_write_bytes_per_op: row.a_write_bytes_per_op,
            b_write_bytes_per_op: row.b_write_bytes_per_op,
        }
    }
}
