//! Checks the report: the JSON object's exact shape and names, ratio arithmetic (ops/s for
//! transactions, MB/s for recoveries), the median-of-rounds choice, and the table's contents,
//! its way back from JSON (this version's and the first version's), on hand-made measurements.

use serde_json::Value;
use txdisk_bench::{median_of_rounds, Machine, Measurement, Report, RssMode, Workload};

fn measurement(system: &str, workload: Workload, ops_per_s: f64, mb_per_s: f64) -> Measurement {
    Measurement {
        system: system.to_string(),
        workload,
        ops_per_s,
        mb_per_s,
        p50_us: 100.0,
        p99_us: 900.0,
        peak_rss_bytes: 8 << 20,
        syncs_per_op: None,
        write_bytes_per_op: Some(8192.0),
        read_bytes_per_op: Some(4096.0),
        cpu_us_per_op: 12.5,
        context_switches_per_op: Some(1.23456),
        ops: 1000,
        latency_cdf_us: vec![(0.0, 50.0), (0.5, 100.0), (0.99, 900.0), (1.0, 1200.0)],
        rounds_ops_per_s: vec![ops_per_s],
        rounds_mb_per_s: vec![mb_per_s],
    }
}

fn report(results: Vec<Measurement>) -> Report {
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
        rss_mode: RssMode::PerCell,
        started_unix_s: 1_798_487_808,
        systems: vec![
            ("floor".into(), "raw file".into()),
            ("sqlite".into(), "WAL, synchronous=FULL".into()),
            ("redb".into(), "defaults".into()),
        ],
        results,
    }
}

fn sample_report() -> Report {
    report(vec![
        measurement("floor", Workload::DURABLE_1BLK_1THR, 200.0, 0.8192),
        measurement("sqlite", Workload::DURABLE_1BLK_1THR, 100.0, 0.4096),
        measurement("redb", Workload::DURABLE_1BLK_1THR, 50.0, 0.2048),
        measurement("floor", Workload::RecoverFullLog, 100.0, 400.0),
        measurement("sqlite", Workload::RecoverFullLog, 100.0, 100.0),
    ])
}

#[test]
fn json_results_have_exactly_the_documented_keys_and_names() {
    let json = sample_report().to_json();
    let results = json["results"].as_array().expect("results is a list");
    assert_eq!(results.len(), 5);
    let systems = ["floor", "txdisk", "txdisk-pair", "sqlite", "redb"];
    let workloads: Vec<String> = Workload::ALL.iter().map(|w| w.name()).collect();
    for result in results {
        let object = result.as_object().expect("each result is an object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        // The first version's seven keys, then only additions: old readers keep working.
        assert_eq!(
            keys,
            [
                "context_switches_per_op",
                "cpu_us_per_op",
                "latency_cdf_us",
                "mb_per_s",
                "ops",
                "ops_per_s",
                "p50_us",
                "p99_us",
                "peak_rss_bytes",
                "read_bytes_per_op",
                "rounds_mb_per_s",
                "rounds_ops_per_s",
                "syncs_per_op",
                "system",
                "threads",
                "workload",
                "write_bytes_per_op"
            ]
        );
        assert!(systems.contains(&object["system"].as_str().expect("system is a string")));
        let workload = object["workload"].as_str().expect("workload is a string");
        assert!(workloads.iter().any(|w| w == workload));
        assert!(object["threads"].is_u64());
        assert!(object["rounds_ops_per_s"].is_array());
        assert!(object["latency_cdf_us"].is_array());
        for key in ["ops_per_s", "mb_per_s", "p50_us", "p99_us"] {
            assert!(object[key].is_f64(), "{key} is a number: {}", object[key]);
        }
        assert!(object["peak_rss_bytes"].is_u64());
    }
    assert_eq!(results[1]["system"], "sqlite");
    assert_eq!(results[1]["workload"], "durable-1blk-1thr");
    assert_eq!(results[1]["ops_per_s"], 100.0);
    assert_eq!(results[1]["peak_rss_bytes"], 8u64 << 20);
}

#[test]
fn json_round_trips_through_text_and_names_the_run() {
    let text = sample_report().to_json().to_string();
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(json["machine"]["fs_type"], "ext4");
    assert_eq!(json["run"]["rounds"], 3);
    assert_eq!(json["run"]["peak_rss"], "per-cell");
    assert_eq!(json["systems"]["sqlite"], "WAL, synchronous=FULL");
}

#[test]
fn workload_names_are_the_documented_ones_and_parse_back() {
    let names: Vec<String> = Workload::ALL.iter().map(|w| w.name()).collect();
    assert_eq!(
        names,
        [
            "durable-1blk-1thr",
            "durable-1blk-8thr",
            "durable-16blk-1thr",
            "durable-16blk-8thr",
            "nosync-1blk-1thr",
            "read-installed",
            "read-logged",
            "recover-full-log",
            "replica-resync",
        ]
    );
    for workload in Workload::ALL {
        assert_eq!(Workload::from_name(&workload.name()), Some(workload));
    }
    // The reopen workloads, run only when named: their size in GiB, or in MiB where it is not
    // a whole number of GiB (a test's disk).
    let reopen: Vec<String> = Workload::REOPEN.iter().map(|w| w.name()).collect();
    assert_eq!(reopen, ["reopen-after-crash-1g", "reopen-after-crash-16g"]);
    for workload in Workload::REOPEN {
        assert_eq!(Workload::from_name(&workload.name()), Some(workload));
        assert!(!Workload::ALL.contains(&workload), "not in the default set");
        assert_eq!(workload.threads(), 1);
    }
    let small = Workload::ReopenAfterCrash { disk_mib: 8 };
    assert_eq!(small.name(), "reopen-after-crash-8m");
    assert_eq!(Workload::from_name("reopen-after-crash-8m"), Some(small));
    assert_eq!(
        Workload::from_name("reopen-after-crash-1536m"),
        Some(Workload::ReopenAfterCrash { disk_mib: 1536 })
    );
    assert_eq!(Workload::from_name("durable"), None);
    // Sweeps name their points the same way, and only the one spelling parses.
    assert_eq!(
        Workload::from_name("durable-1blk-16thr"),
        Some(Workload::durable(1, 16))
    );
    assert_eq!(
        Workload::from_name("nosync-1blk-4thr"),
        Some(Workload::nosync(1, 4))
    );
    assert_eq!(Workload::durable(16, 2).name(), "durable-16blk-2thr");
    assert_eq!(Workload::durable(16, 2).family(), "durable-16blk");
    for bad in [
        "durable-0blk-1thr",
        "durable-1blk-0thr",
        "durable-01blk-1thr",
        "nosync-1blk-thr",
        "durable-+1blk-1thr",
        "read-installed-2thr",
        "reopen-after-crash-1024m",
        "reopen-after-crash-0g",
        "reopen-after-crash-01g",
        "reopen-after-crash-1",
        "reopen-after-crash-1t",
        "reopen-after-crash-99999999999999g",
    ] {
        assert_eq!(Workload::from_name(bad), None, "{bad}");
    }
}

#[test]
fn ratios_divide_ops_for_transactions_and_bytes_for_recoveries() {
    let report = sample_report();
    assert_eq!(
        report.ratio("sqlite", Workload::DURABLE_1BLK_1THR, "floor"),
        Some(0.5)
    );
    assert_eq!(
        report.ratio("floor", Workload::DURABLE_1BLK_1THR, "redb"),
        Some(4.0)
    );
    assert_eq!(
        report.ratio("redb", Workload::DURABLE_1BLK_1THR, "redb"),
        Some(1.0)
    );
    // Same recoveries per second, but the floor moved four times the bytes.
    assert_eq!(
        report.ratio("sqlite", Workload::RecoverFullLog, "floor"),
        Some(0.25)
    );
    assert_eq!(
        report.ratio("redb", Workload::RecoverFullLog, "floor"),
        None
    );
    assert_eq!(
        report.ratio("txdisk", Workload::DURABLE_1BLK_1THR, "floor"),
        None
    );
}

#[test]
fn a_zero_baseline_gives_no_ratio() {
    let report = report(vec![
        measurement("floor", Workload::DURABLE_1BLK_1THR, 0.0, 0.0),
        measurement("sqlite", Workload::DURABLE_1BLK_1THR, 10.0, 0.04),
    ]);
    assert_eq!(
        report.ratio("sqlite", Workload::DURABLE_1BLK_1THR, "floor"),
        None
    );
}

#[test]
fn median_round_is_chosen_by_ops_and_keeps_the_largest_peak_rss() {
    let mut rounds = vec![
        measurement("sqlite", Workload::DURABLE_1BLK_1THR, 300.0, 1.2),
        measurement("sqlite", Workload::DURABLE_1BLK_1THR, 100.0, 0.4),
        measurement("sqlite", Workload::DURABLE_1BLK_1THR, 200.0, 0.8),
    ];
    rounds[0].peak_rss_bytes = 99 << 20;
    rounds[2].p99_us = 777.0;
    let median = median_of_rounds(rounds).expect("three rounds");
    assert_eq!(median.ops_per_s, 200.0);
    assert_eq!(median.p99_us, 777.0, "the whole median row is kept");
    assert_eq!(median.peak_rss_bytes, 99 << 20);
    assert_eq!(median_of_rounds(Vec::new()), None);

    let two = vec![
        measurement("redb", Workload::ReadInstalled, 10.0, 0.0),
        measurement("redb", Workload::ReadInstalled, 20.0, 0.0),
    ];
    assert_eq!(median_of_rounds(two).map(|m| m.ops_per_s), Some(10.0));
}

#[test]
fn the_table_shows_every_row_ratio_and_configuration() {
    let table = sample_report().table();
    assert!(table.contains("÷floor"), "{table}");
    assert!(table.contains("÷sqlite"), "{table}");
    assert!(table.contains("÷redb"), "{table}");
    let sqlite_row = table
        .lines()
        .find(|line| line.starts_with("durable-1blk-1thr") && line.contains(" sqlite "))
        .expect("a sqlite row");
    let fields: Vec<&str> = sqlite_row.split_whitespace().collect();
    // workload system ops MB/s p50 p99 rss syncs wr-KiB rd-KiB cpu csw ÷floor ÷sqlite ÷redb
    assert_eq!(fields[2], "100");
    assert_eq!(fields[7], "-", "sqlite counts no syncs");
    assert_eq!(fields[8], "8.0", "8192 bytes written per op");
    assert_eq!(fields[9], "4.0", "4096 bytes read per op");
    assert_eq!(fields[11], "1.23", "context switches per op");
    assert_eq!(fields[12], "0.50");
    assert_eq!(fields[13], "-", "no ratio of a system to itself");
    assert_eq!(fields[14], "2.00");
    assert!(table.contains("wr KiB/op"), "{table}");
    assert!(table.contains("csw/op"), "{table}");
    assert!(table.contains("rd KiB/op"), "{table}");
    assert!(
        !table.contains("÷floor-pair"),
        "no column for a baseline that did not run"
    );
    assert!(table.contains("sqlite: WAL, synchronous=FULL"));
    assert!(table.contains("on ext4"));
}

#[test]
fn a_run_loads_back_from_its_json_and_a_first_version_run_still_loads() {
    let original = sample_report();
    let text = original.to_json().to_string();
    let loaded =
        Report::from_json(&serde_json::from_str(&text).expect("valid JSON")).expect("loads");
    // The JSON keeps three decimals, so the loaded run is the original at that precision.
    assert_eq!(loaded.to_json(), original.to_json());
    assert_eq!(loaded.results.len(), original.results.len());
    assert_eq!(loaded.results[1].mb_per_s, 0.41);
    assert_eq!(
        loaded.results[1].latency_cdf_us,
        original.results[1].latency_cdf_us
    );
    assert_eq!(loaded.results[1].write_bytes_per_op, Some(8192.0));
    assert_eq!(loaded.results[1].read_bytes_per_op, Some(4096.0));
    assert_eq!(
        loaded.results[1].context_switches_per_op,
        Some(1.235),
        "three decimals, as the other figures"
    );
    assert_eq!(loaded.machine, original.machine);
    // In run order (floor, sqlite, redb), not the JSON object's sorted keys.
    assert_eq!(loaded.systems, original.systems);
    assert_eq!(loaded.started_unix_s, original.started_unix_s);
    assert_eq!(loaded.started_utc(), "2026-12-28 19:56 UTC");

    // What the first version wrote: the seven keys and nothing else.
    let old = serde_json::json!({
        "machine": {"cpu_model": "Old CPU", "cores": 2},
        "run": {"rounds": 3},
        "systems": {"floor": "raw file"},
        "results": [{"system": "floor", "workload": "durable-1blk-8thr", "ops_per_s": 7786.0,
                     "mb_per_s": 31.89, "p50_us": 905.0, "p99_us": 4882.0,
                     "peak_rss_bytes": 4_000_000}]
    });
    let loaded = Report::from_json(&old).expect("an old run loads");
    let row = &loaded.results[0];
    assert_eq!(row.workload, Workload::DURABLE_1BLK_8THR);
    assert_eq!(
        row.rounds_ops_per_s,
        [7786.0],
        "one round: the median itself"
    );
    assert!(row.latency_cdf_us.is_empty());
    assert_eq!(row.write_bytes_per_op, None, "not measured then");
    assert_eq!(row.read_bytes_per_op, None, "not measured then");
    assert_eq!(row.context_switches_per_op, None, "not measured then");
    assert!(
        loaded
            .table()
            .lines()
            .any(|line| line.starts_with("durable-1blk-8thr")),
        "an old run still makes a table"
    );
    assert_eq!(loaded.started_utc(), "date unknown");

    let unknown = serde_json::json!({"results": [{"system": "floor", "workload": "fast",
        "ops_per_s": 1.0, "mb_per_s": 1.0, "p50_us": 1.0, "p99_us": 1.0}]});
    assert!(Report::from_json(&unknown).is_err());
    assert!(Report::from_json(&serde_json::json!({"error": "x"})).is_err());
}

#[test]
fn context_switches_are_null_when_unmeasured_and_absent_before_they_were() {
    let mut original = sample_report();
    original.results[0].context_switches_per_op = None;
    let json = original.to_json();
    assert!(json["results"][0]["context_switches_per_op"].is_null());
    assert_eq!(json["results"][1]["context_switches_per_op"], 1.235);
    let loaded = Report::from_json(&json).expect("loads");
    assert_eq!(loaded.results[0].context_switches_per_op, None);
    assert_eq!(loaded.results[1].context_switches_per_op, Some(1.235));
    let unmeasured = loaded
        .table()
        .lines()
        .find(|line| line.starts_with("durable-1blk-1thr") && line.contains(" floor "))
        .map(|line| line.split_whitespace().nth(11).unwrap_or("").to_string());
    assert_eq!(unmeasured.as_deref(), Some("-"), "no figure, no number");

    // A run saved by the version before the counter: every other key, but not this one.
    let mut older = sample_report().to_json();
    for row in older["results"].as_array_mut().expect("results is a list") {
        let removed = row
            .as_object_mut()
            .expect("each result is an object")
            .remove("context_switches_per_op");
        assert!(removed.is_some());
    }
    let loaded = Report::from_json(&older).expect("a run of the version before loads");
    assert!(loaded
        .results
        .iter()
        .all(|m| m.context_switches_per_op.is_none()));
    assert_eq!(
        loaded.results[1].cpu_us_per_op, 12.5,
        "the rest reads as before"
    );
}
