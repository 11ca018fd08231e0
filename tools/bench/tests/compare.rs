//! Checks before-and-after comparisons on made-up runs: the ratio and noise-band arithmetic, the
//! verdicts (a run against itself is all within noise; clear changes are faster or slower, and
//! swapping the runs swaps them), the runs' differences in configuration, and saving and
//! finding runs by name or path.

use txdisk_bench::{
    compare, load_run, save_run, BenchError, Machine, Measurement, Report, RssMode, Verdict,
    Workload, DEFAULT_NOISE_FLOOR,
};

fn row(system: &str, workload: Workload, rounds_ops_per_s: &[f64]) -> Measurement {
    let mut sorted = rounds_ops_per_s.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[(sorted.len() - 1) / 2];
    Measurement {
        system: system.to_string(),
        workload,
        ops_per_s: median,
        mb_per_s: median * 0.004096,
        p50_us: 100.0,
        p99_us: 900.0,
        peak_rss_bytes: 8 << 20,
        syncs_per_op: Some(1.0),
        write_bytes_per_op: Some(12_288.0),
        read_bytes_per_op: None,
        cpu_us_per_op: 10.0,
        context_switches_per_op: Some(2.0),
        ops: 1000,
        latency_cdf_us: vec![(0.0, 50.0), (1.0, 1000.0)],
        rounds_ops_per_s: rounds_ops_per_s.to_vec(),
        rounds_mb_per_s: rounds_ops_per_s.iter().map(|r| r * 0.004096).collect(),
    }
}

fn run_of(results: Vec<Measurement>) -> Report {
    Report {
        machine: Machine {
            cpu_model: "Test CPU".into(),
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
        systems: vec![
            ("floor".into(), "raw file".into()),
            ("sqlite".into(), "WAL".into()),
        ],
        results,
    }
}

fn before() -> Report {
    run_of(vec![
        row("floor", Workload::DURABLE_1BLK_1THR, &[90.0, 100.0, 110.0]),
        row("sqlite", Workload::DURABLE_1BLK_1THR, &[45.0, 50.0, 55.0]),
        row("floor", Workload::durable(1, 4), &[380.0, 400.0, 420.0]),
        row("sqlite", Workload::durable(1, 4), &[95.0, 100.0, 105.0]),
    ])
}

#[test]
fn a_run_compared_with_itself_is_all_within_noise() {
    let run = before();
    let comparison = compare(&run, &run, DEFAULT_NOISE_FLOOR);
    assert_eq!(comparison.rows.len(), 4);
    for change in &comparison.rows {
        assert_eq!(change.ratio, 1.0, "{change:?}");
        assert_eq!(change.verdict, Verdict::WithinNoise, "{change:?}");
        assert!(
            change.band_low < 1.0 && change.band_high > 1.0,
            "{change:?}"
        );
    }
    assert_eq!(comparison.count(Verdict::WithinNoise), 4);
    assert!(comparison.only_in_a.is_empty() && comparison.only_in_b.is_empty());
    assert!(comparison.differences.is_empty());
    // Even a run of tight single rounds, against itself, is within noise.
    let single = run_of(vec![row("floor", Workload::DURABLE_1BLK_1THR, &[123.0])]);
    assert_eq!(
        compare(&single, &single, 0.0).rows[0].verdict,
        Verdict::WithinNoise
    );
}

#[test]
fn the_ratio_and_band_come_from_the_medians_and_the_extreme_rounds() {
    let after = run_of(vec![
        // Twice as fast in every round.
        row("floor", Workload::DURABLE_1BLK_1THR, &[180.0, 200.0, 220.0]),
        // Half as fast in every round.
        row("sqlite", Workload::DURABLE_1BLK_1THR, &[22.5, 25.0, 27.5]),
        // 8 % faster by the medians, but the rounds overlap.
        row("floor", Workload::durable(1, 4), &[400.0, 432.0, 460.0]),
        // 3 % faster in every round: tight, yet under the 5 % floor.
        row("sqlite", Workload::durable(1, 4), &[103.0, 103.0, 103.0]),
    ]);
    let comparison = compare(&before(), &after, DEFAULT_NOISE_FLOOR);
    let find = |system: &str, workload: Workload| {
        comparison
            .rows
            .iter()
            .find(|r| r.system == system && r.workload == workload)
            .expect("a shared row")
    };
    let faster = find("floor", Workload::DURABLE_1BLK_1THR);
    assert_eq!((faster.a, faster.b, faster.ratio), (100.0, 200.0, 2.0));
    assert_eq!(faster.band_low, 180.0 / 110.0);
    assert_eq!(faster.band_high, 220.0 / 90.0);
    assert_eq!(faster.verdict, Verdict::Faster);
    assert_eq!(faster.unit(), "ops/s");

    let slower = find("sqlite", Workload::DURABLE_1BLK_1THR);
    assert_eq!(slower.ratio, 0.5);
    assert_eq!(slower.band_high, 27.5 / 45.0);
    assert_eq!(slower.verdict, Verdict::Slower);

    let overlapping = find("floor", Workload::durable(1, 4));
    assert!((overlapping.ratio - 1.08).abs() < 1e-12);
    assert_eq!(overlapping.band_low, 400.0 / 420.0);
    assert_eq!(overlapping.verdict, Verdict::WithinNoise);

    let small = find("sqlite", Workload::durable(1, 4));
    assert_eq!(small.band_low, 103.0 / 105.0);
    assert_eq!(small.verdict, Verdict::WithinNoise);

    assert_eq!(comparison.count(Verdict::Faster), 1);
    assert_eq!(comparison.count(Verdict::Slower), 1);
    assert_eq!(comparison.count(Verdict::WithinNoise), 2);

    // Swapping the runs swaps the verdicts.
    let back = compare(&after, &before(), DEFAULT_NOISE_FLOOR);
    let verdicts: Vec<Verdict> = back.rows.iter().map(|r| r.verdict).collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Slower,
            Verdict::Faster,
            Verdict::WithinNoise,
            Verdict::WithinNoise
        ]
    );
}

#[test]
fn the_noise_floor_decides_a_tight_small_change() {
    let a = run_of(vec![row(
        "floor",
        Workload::DURABLE_1BLK_1THR,
        &[100.0, 100.0],
    )]);
    let b = run_of(vec![row(
        "floor",
        Workload::DURABLE_1BLK_1THR,
        &[103.0, 103.0],
    )]);
    assert_eq!(compare(&a, &b, 0.05).rows[0].verdict, Verdict::WithinNoise);
    assert_eq!(compare(&a, &b, 0.01).rows[0].verdict, Verdict::Faster);
    assert_eq!(compare(&b, &a, 0.01).rows[0].verdict, Verdict::Slower);
}

#[test]
fn recoveries_are_compared_in_mb_per_s_and_missing_rows_are_listed() {
    let mut a_row = row("floor", Workload::RecoverFullLog, &[10.0]);
    a_row.rounds_mb_per_s = vec![100.0];
    a_row.mb_per_s = 100.0;
    // As many recoveries per second, of a log three times the size.
    let mut b_row = a_row.clone();
    b_row.rounds_mb_per_s = vec![300.0];
    b_row.mb_per_s = 300.0;
    let a = run_of(vec![a_row, row("sqlite", Workload::ReadInstalled, &[5.0])]);
    let mut b = run_of(vec![b_row, row("redb", Workload::ReadInstalled, &[5.0])]);
    b.quick = true;
    b.cell_seconds = 0.4;
    let comparison = compare(&a, &b, DEFAULT_NOISE_FLOOR);
    assert_eq!(comparison.rows.len(), 1);
    assert_eq!(comparison.rows[0].ratio, 3.0);
    assert_eq!(comparison.rows[0].unit(), "MB/s");
    assert_eq!(comparison.rows[0].verdict, Verdict::Faster);
    assert_eq!(
        comparison.only_in_a,
        [("sqlite".to_string(), Workload::ReadInstalled)]
    );
    assert_eq!(
        comparison.only_in_b,
        [("redb".to_string(), Workload::ReadInstalled)]
    );

    let table = comparison.table("a.json", "b.json");
    assert!(
        table.contains("1 faster, 0 slower, 0 within noise"),
        "{table}"
    );
    assert!(
        table.contains("only in A: sqlite read-installed"),
        "{table}"
    );
    assert!(
        table.contains("12.0→12.0"),
        "bytes written per op of each: {table}"
    );
    let json = comparison.to_json("a.json", "b.json");
    assert_eq!(json["rows"][0]["a_write_bytes_per_op"], 12_288.0);
    assert_eq!(json["faster"], 1);
    assert_eq!(json["rows"][0]["verdict"], "faster");
    assert_eq!(json["rows"][0]["unit"], "MB/s");
}

#[test]
fn bytes_written_per_op_are_shown_beside_the_verdict_and_may_be_missing_in_an_old_run() {
    let mut old_row = row("floor", Workload::DURABLE_1BLK_1THR, &[100.0]);
    old_row.write_bytes_per_op = None;
    let mut new_row = row("floor", Workload::DURABLE_1BLK_1THR, &[100.0]);
    new_row.write_bytes_per_op = Some(2.5 * 1024.0);
    let comparison = compare(&run_of(vec![old_row]), &run_of(vec![new_row]), 0.05);
    let change = &comparison.rows[0];
    assert_eq!(
        change.verdict,
        Verdict::WithinNoise,
        "throughput alone decides"
    );
    assert_eq!(change.a_write_bytes_per_op, None);
    assert_eq!(change.b_write_bytes_per_op, Some(2560.0));
    let table = comparison.table("old.json", "new.json");
    assert!(table.contains("wr KiB/op A→B"), "{table}");
    assert!(table.contains(" -→2.5 "), "{table}");
    let json = comparison.to_json("old.json", "new.json");
    assert!(json["rows"][0]["a_write_bytes_per_op"].is_null());
    assert_eq!(json["rows"][0]["b_write_bytes_per_op"], 2560.0);
}

#[test]
fn a_saved_run_is_found_by_name_and_by_path() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let results = scratch.path().join("bench-results");
    let run = before();
    let path = save_run(&run, &results, "baseline").expect("saved");
    assert_eq!(path, results.join("baseline.json"));
    let (found, by_name) = load_run("baseline", &results).expect("found by name");
    assert_eq!(found, path);
    let (_, by_path) = load_run(&path.to_string_lossy(), &results).expect("found by path");
    assert_eq!(by_name, by_path);
    assert_eq!(by_name.to_json(), run.to_json());
    let comparison = compare(&run, &by_name, DEFAULT_NOISE_FLOOR);
    assert_eq!(comparison.count(Verdict::WithinNoise), run.results.len());
    // Saving again under the name replaces the run, leaving no partial file behind.
    save_run(&by_name, &results, "baseline").expect("saved again");
    let files = std::fs::read_dir(&results).expect("list").count();
    assert_eq!(files, 1);

    for bad in ["", "../escape", ".hidden", "a/b"] {
        assert!(
            matches!(
                save_run(&run, &results, bad),
                Err(BenchError::SavedRun { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        load_run("never-saved", &results),
        Err(BenchError::SavedRun { .. })
    ));
    let garbage = scratch.path().join("garbage.json");
    std::fs::write(&garbage, "{\"results\": 3}").expect("write");
    assert!(matches!(
        load_run(&garbage.to_string_lossy(), &results),
        Err(BenchError::SavedRun { .. })
    ));
}
