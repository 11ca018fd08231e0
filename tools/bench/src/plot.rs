//! Charts of a run, as SVG files: throughput against threads per system with the floor drawn
//! as a black line, the latency CDF of each durable workload, and every system's throughput as
//! a ratio to the floor's.
//!
//! SVG only: plotters draws text into a bitmap only through a font rasterizer (its `ttf`
//! feature needs the system's fontconfig and FreeType; `ab_glyph` needs a font file shipped
//! with the program), while an SVG's text is laid out by whatever displays it. Each system has
//! one colour in every chart ([`system_colour`]).

use crate::error::{BenchError, Result};
use crate::report::{Measurement, Report, BASELINES};
use crate::workload::Workload;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;
use std::path::{Path, PathBuf};

const WIDTH: u32 = 960;
const HEIGHT: u32 = 600;
/// Pixels under each chart for the machine and the date.
const CAPTION_PX: u32 = 30;
const FONT: &str = "sans-serif";

/// A system's colour in every chart: the floor black, the pair's floor grey, the others fixed by name, so a system
/// looks the same in every chart and every run. Systems not known here get one of a few more
/// colours, chosen by their name.
pub fn system_colour(system: &str) -> RGBColor {
    match system {
        "floor" => RGBColor(0x00, 0x00, 0x00),
        "floor-pair" => RGBColor(0x7F, 0x7F, 0x7F),
        "txdisk" => RGBColor(0x1F, 0x77, 0xB4),
        "txdisk-pair" => RGBColor(0x94, 0x67, 0xBD),
        "sqlite" => RGBColor(0x2C, 0xA0, 0x2C),
        "redb" => RGBColor(0xD6, 0x27, 0x28),
        other => {
            const MORE: [RGBColor; 4] = [
                RGBColor(0x8C, 0x56, 0x4B),
                RGBColor(0xE3, 0x77, 0xC2),
                RGBColor(0xBC, 0xBD, 0x22),
                RGBColor(0x17, 0xBE, 0xCF),
            ];
            let hash = other
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31) + b as usize);
            MORE[hash % MORE.len()]
        }
    }
}

/// What a system is called in a legend.
fn legend_name(system: &str) -> String {
    if system == "floor" {
        "floor (raw device)".to_string()
    } else {
        system.to_string()
    }
}

fn line_style(system: &str) -> ShapeStyle {
    let width = if system == "floor" { 3 } else { 2 };
    system_colour(system).stroke_width(width)
}

/// Writes every chart the run has data for into `dir` (made if missing) and returns their
/// paths: `throughput-FAMILY.svg` for each writing workload run at two or more thread counts,
/// `latency-cdf-WORKLOAD.svg` for each durable workload, and `ratio-to-floor.svg` when the floor
/// ran.
pub fn write_charts(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io("mkdir", dir, e))?;
    let mut charts: Vec<(String, String)> = Vec::new();
    for family in swept_families(report) {
        let name = format!("throughput-{family}.svg");
        let svg = render(&name, (WIDTH, HEIGHT), |root| {
            throughput_chart(root, report, &family)
        })?;
        charts.push((name, svg));
    }
    for workload in report.workloads().into_iter().filter(|w| w.is_durable()) {
        let name = format!("latency-cdf-{workload}.svg");
        let svg = render(&name, (WIDTH, HEIGHT), |root| {
            latency_chart(root, report, workload)
        })?;
        charts.push((name, svg));
    }
    let groups = ratio_groups(report);
    if !groups.is_empty() {
        let name = "ratio-to-floor.svg".to_string();
        // 11 px per bar, so a full run's hundred bars stay readable.
        let bars: usize = groups.iter().map(|(_, r)| r.len() + 1).sum();
        let height = HEIGHT.max(140 + 11 * bars as u32);
        let svg = render(&name, (WIDTH, height), |root| ratio_chart(root, report))?;
        charts.push((name, svg));
    }
    let mut written = Vec::with_capacity(charts.len());
    for (name, svg) in charts {
        let path = dir.join(name);
        std::fs::write(&path, svg).map_err(|e| BenchError::io("write", &path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// A linear axis whose ticks are exactly the values given (the thread counts run, the decades
/// of latency, the bar groups), where plotters would pick round numbers of its own.
#[derive(Clone)]
struct TickedAxis {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        if span <= 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        let fraction = (value - self.range.start) / span;
        limit.0 + (fraction * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // The ticks are the bold mesh lines; no light lines between them.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = std::result::Result<(), String>;

/// Draws one chart of `size` pixels into an SVG string; `name` is for the error.
fn render(
    name: &str,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let outcome = draw(&root).and_then(|()| root.present().map_err(|e| e.to_string()));
        outcome.map_err(|message| BenchError::Plot {
            path: PathBuf::from(name),
            message,
        })?;
    }
    Ok(svg)
}

/// White background, the machine and date along the bottom; returns the area above it.
fn framed<'a>(root: &Area<'a>, report: &Report) -> std::result::Result<Area<'a>, String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (_, height) = root.dim_in_pixel();
    let (chart, bottom) = root.split_vertically(height.saturating_sub(CAPTION_PX));
    let text = Text::new(
        caption(report),
        (12, 8),
        (FONT, 13).into_font().color(&BLACK),
    );
    bottom.draw(&text).map_err(|e| e.to_string())?;
    Ok(chart)
}

/// "AMD EPYC (2 cores), 23.5 GiB RAM, Linux 6.18, ext4 · 2026-12-01 19:56 UTC · 3 rounds of 2.0 s
/// cells, median round".
pub fn caption(report: &Report) -> String {
    let m = &report.machine;
    format!(
        "{} ({} cores), {:.1} GiB RAM, Linux {}, {} · {} · {} round(s) of {:.1} s cells, median round",
        m.cpu_model,
        m.cores,
        m.mem_total_bytes as f64 / (1u64 << 30) as f64,
        m.kernel,
        m.fs_type,
        report.started_utc(),
        report.rounds,
        report.cell_seconds
    )
}

/// Writing-workload families (`durable-1blk`) with results at two or more thread counts.
fn swept_families(report: &Report) -> Vec<String> {
    let mut families: Vec<String> = Vec::new();
    for workload in report.workloads() {
        if workload.with_threads(1).is_none() || families.contains(&workload.family()) {
            continue;
        }
        if thread_counts(report, &workload.family()).len() >= 2 {
            families.push(workload.family());
        }
    }
    families
}

fn thread_counts(report: &Report, family: &str) -> Vec<usize> {
    let mut counts: Vec<usize> = report
        .workloads()
        .into_iter()
        .filter(|w| w.with_threads(1).is_some() && w.family() == family)
        .map(Workload::threads)
        .collect();
    counts.sort_unstable();
    counts.dedup();
    counts
}

fn family_rows<'a>(report: &'a Report, family: &str, system: &str) -> Vec<&'a Measurement> {
    let mut rows: Vec<&Measurement> = report
        .results
        .iter()
        .filter(|m| m.system == system && m.workload.family() == family)
        .filter(|m| m.workload.with_threads(1).is_some())
        .collect();
    rows.sort_by_key(|m| m.workload.threads());
    rows
}

fn title_of(family: &str) -> String {
    let (kind, blocks) = family.split_once('-').unwrap_or((family, ""));
    let blocks = blocks.trim_end_matches("blk");
    let kind = if kind == "nosync" {
        "deferred-durability"
    } else {
        kind
    };
    format!("{family}: {kind} transactions of {blocks} block(s), throughput against threads")
}

/// x: threads on a log scale (ticks at the counts run); y: transactions per second.
fn throughput_chart(root: &Area<'_>, report: &Report, family: &str) -> DrawResult {
    let area = framed(root, report)?;
    let counts = thread_counts(report, family);
    let (lowest, highest) = (counts[0] as f64, counts[counts.len() - 1] as f64);
    let x_range = (lowest.ln() - 0.15)..(highest.ln() + 0.15);
    let ticks: Vec<f64> = counts.iter().map(|&t| (t as f64).ln()).collect();
    let systems = report.system_names();
    let most = systems
        .iter()
        .flat_map(|system| family_rows(report, family, system))
        .flat_map(|m| m.rounds_ops_per_s.iter().copied().chain([m.ops_per_s]))
        .fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(&area)
        .caption(title_of(family), (FONT, 20))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(
            TickedAxis {
                range: x_range,
                ticks,
            },
            0.0..(most * 1.1).max(1.0),
        )
        .map_err(|e| e.to_string())?;
    let threads = |x: &f64| format!("{}", x.exp().round());
    chart
        .configure_mesh()
        .x_desc("threads (log scale); bars span the slowest to the fastest round")
        .y_desc("throughput (transactions/s)")
        .x_label_formatter(&threads)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (index, system) in systems.iter().enumerate() {
        // Systems sit a little apart at each count, so their round bars do not hide each other.
        let nudge = (index as f64 - (systems.len() as f64 - 1.0) / 2.0) * 0.02;
        let points: Vec<Point> = family_rows(report, family, system)
            .iter()
            .map(|m| Point {
                x: (m.workload.threads() as f64).ln() + nudge,
                median: m.ops_per_s,
                rounds: extremes(&m.rounds_ops_per_s).unwrap_or((m.ops_per_s, m.ops_per_s)),
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        draw_line(&mut chart, system, &points)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

type KeyedChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<TickedAxis, plotters::coord::types::RangedCoordf64>,
>;

/// One measured point of a throughput line: the median round and the range of all rounds.
struct Point {
    x: f64,
    median: f64,
    rounds: (f64, f64),
}

/// The slowest and fastest of `rounds`; None when there are none.
fn extremes(rounds: &[f64]) -> Option<(f64, f64)> {
    let low = rounds.iter().copied().reduce(f64::min)?;
    let high = rounds.iter().copied().reduce(f64::max)?;
    Some((low, high))
}

/// One system's line through its medians, a dot at each, a thin bar from its slowest to its
/// fastest round (how far to trust the dot), and its legend entry.
fn draw_line(chart: &mut KeyedChart<'_, '_>, system: &str, points: &[Point]) -> DrawResult {
    let style = line_style(system);
    let colour = system_colour(system);
    let medians: Vec<(f64, f64)> = points.iter().map(|p| (p.x, p.median)).collect();
    chart
        .draw_series(LineSeries::new(medians.clone(), style))
        .map_err(|e| e.to_string())?
        .label(legend_name(system))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    chart
        .draw_series(
            medians
                .into_iter()
                .map(|p| Circle::new(p, 3, colour.filled())),
        )
        .map_err(|e| e.to_string())?;
    let bars = points.iter().map(|p| {
        PathElement::new(
            vec![(p.x, p.rounds.0), (p.x, p.rounds.1)],
            colour.stroke_width(1),
        )
    });
    chart.draw_series(bars).map_err(|e| e.to_string())?;
    Ok(())
}

fn legend<'a, 'b: 'a, X: Ranged<ValueType = f64>, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

/// x: latency on a log scale (ticks at each decade); y: share of transactions completed within.
fn latency_chart(root: &Area<'_>, report: &Report, workload: Workload) -> DrawResult {
    let area = framed(root, report)?;
    let rows: Vec<&Measurement> = report
        .results
        .iter()
        .filter(|m| m.workload == workload && !m.latency_cdf_us.is_empty())
        .collect();
    // Latencies below 0.1 µs are below the clock's resolution anyway: clamp for the log scale.
    let log_us = |us: f64| us.max(0.1).log10();
    let all = rows
        .iter()
        .flat_map(|m| m.latency_cdf_us.iter().map(|p| log_us(p.1)));
    let (low, high) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    let (low, high) = if low.is_finite() {
        (low.floor(), high.ceil().max(low.floor() + 1.0))
    } else {
        (0.0, 1.0)
    };
    let decades: Vec<f64> = (low as i32..=high as i32).map(f64::from).collect();
    let mut chart = ChartBuilder::on(&area)
        .caption(
            format!("{workload}: latency distribution of durable transactions"),
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(
            TickedAxis {
                range: low..high,
                ticks: decades,
            },
            0.0..100.0,
        )
        .map_err(|e| e.to_string())?;
    let latency = |x: &f64| format_latency(10f64.powf(*x));
    chart
        .configure_mesh()
        .x_desc("latency (log scale)")
        .y_desc("transactions completed within (%)")
        .x_label_formatter(&latency)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for system in report.system_names() {
        let Some(row) = rows.iter().find(|m| m.system == system) else {
            continue;
        };
        let points: Vec<(f64, f64)> = row
            .latency_cdf_us
            .iter()
            .map(|&(q, us)| (log_us(us), q * 100.0))
            .collect();
        let style = line_style(&system);
        chart
            .draw_series(LineSeries::new(points, style))
            .map_err(|e| e.to_string())?
            .label(legend_name(&system))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// "100 µs", "10 ms", "1 s".
fn format_latency(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", (us / 1e6).round())
    } else if us >= 1e3 {
        format!("{} ms", (us / 1e3).round())
    } else if us >= 1.0 {
        format!("{} µs", us.round())
    } else {
        format!("{us:.1} µs")
    }
}

/// Per workload the floor ran, the other systems' throughput ÷ the floor's.
fn ratio_groups(report: &Report) -> Vec<(Workload, Vec<(String, f64)>)> {
    let others: Vec<String> = report
        .system_names()
        .into_iter()
        .filter(|s| s != BASELINES[0])
        .collect();
    report
        .workloads()
        .into_iter()
        .filter_map(|workload| {
            let ratios: Vec<(String, f64)> = others
                .iter()
                .filter_map(|s| Some((s.clone(), report.ratio(s, workload, BASELINES[0])?)))
                .collect();
            (!ratios.is_empty()).then_some((workload, ratios))
        })
        .collect()
}

/// Horizontal bars, one group per workload (top to bottom in table order), one bar per system;
/// the floor is the vertical line at 1.
fn ratio_chart(root: &Area<'_>, report: &Report) -> DrawResult {
    let area = framed(root, report)?;
    let groups = ratio_groups(report);
    let systems: Vec<String> = report
        .system_names()
        .into_iter()
        .filter(|s| {
            groups
                .iter()
                .any(|(_, r)| r.iter().any(|(name, _)| name == s))
        })
        .collect();
    // Each group is one unit per system plus one unit of space; y counts down from the top.
    let per_group = systems.len() as f64 + 1.0;
    let top = groups.len() as f64 * per_group;
    let centre = |g: usize| top - g as f64 * per_group - systems.len() as f64 / 2.0;
    let most = groups
        .iter()
        .flat_map(|(_, r)| r.iter().map(|(_, v)| *v))
        .fold(1.0, f64::max);
    let label_centres: Vec<f64> = (0..groups.len()).map(centre).collect();
    let mut chart = ChartBuilder::on(&area)
        .caption("throughput as a ratio to the floor's", (FONT, 20))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(150)
        .build_cartesian_2d(
            0.0..most * 1.1,
            TickedAxis {
                range: 0.0..top,
                ticks: label_centres,
            },
        )
        .map_err(|e| e.to_string())?;
    let group_name = |y: &f64| {
        let g = ((top - systems.len() as f64 / 2.0 - y) / per_group).round();
        groups
            .get(g.max(0.0) as usize)
            .map_or(String::new(), |(w, _)| w.name())
    };
    chart
        .configure_mesh()
        .x_desc("throughput ÷ the floor's (MB/s for recoveries, transactions or reads/s otherwise)")
        .y_desc("workload")
        .y_label_formatter(&group_name)
        .x_label_formatter(&|x| format!("{x:.1}"))
        .disable_y_mesh()
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (j, system) in systems.iter().enumerate() {
        let colour = system_colour(system);
        let bars = groups.iter().enumerate().filter_map(|(g, (_, ratios))| {
            let (_, ratio) = ratios.iter().find(|(name, _)| name == system)?;
            let high = top - g as f64 * per_group - j as f64;
            Some(Rectangle::new(
                [(0.0, high - 0.9), (*ratio, high - 0.1)],
                colour.filled(),
            ))
        });
        chart
            .draw_series(bars)
            .map_err(|e| e.to_string())?
            .label(legend_name(system))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
    }
    let floor_style = line_style(BASELINES[0]);
    chart
        .draw_series(LineSeries::new(vec![(1.0, 0.0), (1.0, top)], floor_style))
        .map_err(|e| e.to_string())?
        .label("floor (raw device) = 1")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], floor_style));
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}
