//! Checks `plot::write_charts` on a made-up sweep: which SVG files it writes, that each parses
//! as XML, and that each chart holds one line (or one set of bars) per system in that system's
//! colour, going the way the figures go, with the system names in the legend, labelled axes
//! and the machine and date in the caption.

use roxmltree::{Document, Node};
use std::collections::BTreeSet;
use std::path::Path;
use txdisk_bench::histogram::CDF_QUANTILES;
use txdisk_bench::plot::{system_colour, write_charts};
use txdisk_bench::{Machine, Measurement, Report, RssMode, Workload};

const SYSTEMS: [&str; 3] = ["floor", "txdisk", "sqlite"];
const THREADS: [usize; 4] = [1, 2, 4, 8];

fn row(system: &str, workload: Workload, ops_per_s: f64, latency_scale_us: f64) -> Measurement {
    Measurement {
        system: system.to_string(),
        workload,
        ops_per_s,
        mb_per_s: ops_per_s * 0.004096,
        p50_us: latency_scale_us,
        p99_us: latency_scale_us * 4.0,
        peak_rss_bytes: 8 << 20,
        syncs_per_op: None,
        write_bytes_per_op: None,
        read_bytes_per_op: None,
        cpu_us_per_op: 10.0,
        context_switches_per_op: None,
        ops: 1000,
        // Latency grows with the quantile: a CDF that rises from left to right.
        latency_cdf_us: CDF_QUANTILES
            .iter()
            .map(|&q| (q, latency_scale_us * (0.5 + 4.0 * q * q)))
            .collect(),
        // The median round and a slower and a faster one around it.
        rounds_ops_per_s: vec![ops_per_s * 0.9, ops_per_s, ops_per_s * 1.2],
        rounds_mb_per_s: vec![ops_per_s * 0.004096],
    }
}

/// The floor scales with threads, txdisk more so, sqlite stays flat.
fn sweep() -> Report {
    let mut results = Vec::new();
    for (s, system) in SYSTEMS.iter().enumerate() {
        for t in THREADS {
            let ops = match *system {
                "floor" => 1000.0 * t as f64,
                "txdisk" => 1500.0 * t as f64,
                _ => 800.0,
            };
            results.push(row(
                system,
                Workload::durable(1, t),
                ops,
                100.0 * (s + 1) as f64,
            ));
            results.push(row(system, Workload::nosync(1, t), ops * 10.0, 10.0));
        }
        results.push(row(system, Workload::ReadInstalled, 1e5, 1.0));
    }
    results.sort_by_key(|m| m.workload);
    Report {
        machine: Machine {
            cpu_model: "Test CPU & Co".into(),
            cores: 2,
            mem_total_bytes: 1 << 30,
            kernel: "6.0".into(),
            fs_type: "ext4".into(),
        },
        dir: "/bench".into(),
        rounds: 3,
        cell_seconds: 2.0,
        quick: false,
        rss_mode: RssMode::PerProcess,
        started_unix_s: 1_798_487_808,
        systems: SYSTEMS
            .iter()
            .map(|s| (s.to_string(), String::new()))
            .collect(),
        results,
    }
}

fn hex(system: &str) -> String {
    let c = system_colour(system);
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

fn parse(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn texts(doc: &Document) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect()
}

fn points(node: &Node) -> Vec<(f64, f64)> {
    node.attribute("points")
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|pair| {
            let (x, y) = pair.split_once(',')?;
            Some((x.parse().ok()?, y.parse().ok()?))
        })
        .collect()
}

/// The polylines drawn in `system`'s colour and line width, with more than the 2 points of a
/// legend swatch.
fn data_lines<'a>(doc: &'a Document, system: &str) -> Vec<Node<'a, 'a>> {
    let width = if system == "floor" { "3" } else { "2" };
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter(|n| n.attribute("stroke") == Some(&hex(system)))
        .filter(|n| n.attribute("stroke-width") == Some(width))
        .filter(|n| points(n).len() > 2)
        .collect()
}

fn assert_framed(doc: &Document, name: &str) {
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg", "{name}");
    assert!(root.attribute("width").is_some() && root.attribute("height").is_some());
    let texts = texts(doc);
    let caption = texts
        .iter()
        .find(|t| t.contains("Test CPU & Co"))
        .unwrap_or_else(|| panic!("{name}: no caption with the machine in {texts:?}"));
    assert!(
        caption.contains("2026-12-28 19:56 UTC"),
        "{name}: {caption}"
    );
    assert!(caption.contains("ext4"), "{name}: {caption}");
}

#[test]
fn a_sweep_gets_throughput_latency_and_ratio_charts() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let dir = scratch.path().join("charts");
    let written = write_charts(&sweep(), &dir).expect("charts written");
    let names: BTreeSet<String> = written
        .iter()
        .map(|p| {
            p.file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut expected: BTreeSet<String> =
        ["throughput-durable-1blk.svg", "throughput-nosync-1blk.svg"]
            .into_iter()
            .map(String::from)
            .collect();
    expected.extend(THREADS.map(|t| format!("latency-cdf-durable-1blk-{t}thr.svg")));
    expected.insert("ratio-to-floor.svg".into());
    assert_eq!(names, expected);
    for name in &names {
        let text = parse(&dir, name);
        let doc = Document::parse(&text).unwrap_or_else(|e| panic!("{name} is not XML: {e}"));
        assert_framed(&doc, name);
    }
}

#[test]
fn throughput_has_one_line_per_system_rising_as_its_figures_do() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    write_charts(&sweep(), scratch.path()).expect("charts written");
    let text = parse(scratch.path(), "throughput-durable-1blk.svg");
    let doc = Document::parse(&text).expect("XML");
    let texts = texts(&doc);
    for label in [
        "threads (log scale); bars span the slowest to the fastest round",
        "throughput (transactions/s)",
        "1",
        "2",
        "4",
        "8",
    ] {
        assert!(
            texts.iter().any(|t| t == label),
            "no {label:?} in {texts:?}"
        );
    }
    assert!(texts.iter().any(|t| t == "floor (raw device)"), "{texts:?}");
    for system in SYSTEMS {
        assert!(
            texts.iter().any(|t| t.starts_with(system)),
            "{system} not in the legend"
        );
        let lines = data_lines(&doc, system);
        assert_eq!(lines.len(), 1, "{system}: one line");
        let line = points(&lines[0]);
        assert_eq!(
            line.len(),
            THREADS.len(),
            "{system}: a point per thread count"
        );
        assert!(
            line.windows(2).all(|w| w[0].0 < w[1].0),
            "{system}: x is threads"
        );
        // SVG's y grows downwards: a rising figure is a falling y.
        let ys: Vec<f64> = line.iter().map(|p| p.1).collect();
        if system == "sqlite" {
            assert!(
                ys.windows(2).all(|w| w[0] == w[1]),
                "sqlite is flat: {ys:?}"
            );
        } else {
            assert!(ys.windows(2).all(|w| w[0] > w[1]), "{system} rises: {ys:?}");
        }
    }
    // Each point has a vertical bar through it from the slowest round to the fastest.
    for system in SYSTEMS {
        let line = points(&data_lines(&doc, system)[0]);
        let thin: Vec<Vec<(f64, f64)>> = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter(|n| n.attribute("stroke") == Some(&hex(system)))
            .filter(|n| n.attribute("stroke-width") == Some("1"))
            .map(|n| points(&n))
            .collect();
        for point in &line {
            // (The floor's black is also the axes': only lines through the point count.)
            let bars: Vec<&Vec<(f64, f64)>> = thin
                .iter()
                .filter(|bar| bar.len() == 2 && bar.iter().all(|p| p.0 == point.0))
                .collect();
            assert_eq!(bars.len(), 1, "{system}: one bar through {point:?}");
            // Slowest round (larger y) below the median, fastest above, further (1.2 > 1/0.9).
            let (below, above) = (bars[0][0].1 - point.1, point.1 - bars[0][1].1);
            assert!(
                below > 0.0 && above > below,
                "{system}: {bars:?} around {point:?}"
            );
        }
    }
    // txdisk is above the floor at every count, as its figures are.
    let txdisk = points(&data_lines(&doc, "txdisk")[0]);
    let floor = points(&data_lines(&doc, "floor")[0]);
    assert!(txdisk.iter().zip(&floor).all(|(t, f)| t.1 < f.1));
}

#[test]
fn latency_cdfs_have_one_rising_curve_per_system() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    write_charts(&sweep(), scratch.path()).expect("charts written");
    let text = parse(scratch.path(), "latency-cdf-durable-1blk-4thr.svg");
    let doc = Document::parse(&text).expect("XML");
    let texts = texts(&doc);
    for label in ["latency (log scale)", "transactions completed within (%)"] {
        assert!(
            texts.iter().any(|t| t == label),
            "no {label:?} in {texts:?}"
        );
    }
    for system in SYSTEMS {
        assert!(
            texts.iter().any(|t| t.starts_with(system)),
            "{system} not in the legend"
        );
        let lines = data_lines(&doc, system);
        assert_eq!(lines.len(), 1, "{system}: one curve");
        let curve = points(&lines[0]);
        assert_eq!(curve.len(), CDF_QUANTILES.len());
        assert!(curve
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 >= w[1].1));
    }
    // The floor's latencies are the smallest: its curve lies left of the others.
    let left = |system: &str| points(&data_lines(&doc, system)[0])[0].0;
    assert!(left("floor") < left("txdisk") && left("txdisk") < left("sqlite"));
}

#[test]
fn ratios_are_bars_per_system_beside_the_floor_line() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    write_charts(&sweep(), scratch.path()).expect("charts written");
    let text = parse(scratch.path(), "ratio-to-floor.svg");
    let doc = Document::parse(&text).expect("XML");
    let texts = texts(&doc);
    let workloads = 2 * THREADS.len() + 1;
    for system in ["txdisk", "sqlite"] {
        let bars = doc
            .descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some(&hex(system)))
            .count();
        assert_eq!(
            bars,
            workloads + 1,
            "{system}: a bar per workload and a legend swatch"
        );
        assert!(
            texts.iter().any(|t| t == system),
            "{system} not in the legend"
        );
    }
    assert!(texts.iter().any(|t| t == "floor (raw device) = 1"));
    assert!(texts.iter().any(|t| t == "durable-1blk-8thr"), "{texts:?}");
    let floor_bars = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some(&hex("floor")))
        .count();
    assert_eq!(floor_bars, 0, "the floor is the line at 1, not bars");
}

#[test]
fn a_run_without_a_sweep_or_a_floor_gets_only_latency_charts() {
    let mut report = sweep();
    report
        .results
        .retain(|m| m.system != "floor" && m.workload.threads() == 1);
    report.systems.retain(|(s, _)| s != "floor");
    let scratch = tempfile::tempdir().expect("scratch directory");
    let written = write_charts(&report, scratch.path()).expect("charts written");
    let names: Vec<String> = written
        .iter()
        .map(|p| {
            p.file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["latency-cdf-durable-1blk-1thr.svg"]);
}
