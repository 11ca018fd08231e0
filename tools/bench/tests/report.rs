//! Checks the report: the JSON object's exact shape and names, ratio arithmetic (ops/s for
//! transactions, MB/s for recoveries), the median-of-rounds choice, and the table's contents,
//! on hand-made measurements.

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
        cpu_us_per_op: 12.5,
        ops: 1000,
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
        measurement("floor", Workload::Durable1Blk1Thr, 200.0, 0.8192),
        measurement("sqlite", Workload::Durable1Blk1Thr, 100.0, 0.4096),
        measurement("redb", Workload::Durable1Blk1Thr, 50.0, 0.2048),
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
    let workloads: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
    for result in results {
        let object = result.as_object().expect("each result is an object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "mb_per_s",
                "ops_per_s",
                "p50_us",
                "p99_us",
                "peak_rss_bytes",
                "system",
                "workload"
            ]
        );
        assert!(systems.contains(&object["system"].as_str().expect("system is a string")));
        assert!(workloads.contains(&object["workload"].as_str().expect("workload is a string")));
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
    let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
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
        assert_eq!(Workload::from_name(workload.name()), Some(workload));
    }
    assert_eq!(Workload::from_name("durable"), None);
}

#[test]
fn ratios_divide_ops_for_transactions_and_bytes_for_recoveries() {
    let report = sample_report();
    assert_eq!(
        report.ratio("sqlite", Workload::Durable1Blk1Thr, "floor"),
        Some(0.5)
    );
    assert_eq!(
        report.ratio("floor", Workload::Durable1Blk1Thr, "redb"),
        Some(4.0)
    );
    assert_eq!(
        report.ratio("redb", Workload::Durable1Blk1Thr, "redb"),
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
        report.ratio("txdisk", Workload::Durable1Blk1Thr, "floor"),
        None
    );
}

#[test]
fn a_zero_baseline_gives_no_ratio() {
    let report = report(vec![
        measurement("floor", Workload::Durable1Blk1Thr, 0.0, 0.0),
        measurement("sqlite", Workload::Durable1Blk1Thr, 10.0, 0.04),
    ]);
    assert_eq!(
        report.ratio("sqlite", Workload::Durable1Blk1Thr, "floor"),
        None
    );
}

#[test]
fn median_round_is_chosen_by_ops_and_keeps_the_largest_peak_rss() {
    let mut rounds = vec![
        measurement("sqlite", Workload::Durable1Blk1Thr, 300.0, 1.2),
        measurement("sqlite", Workload::Durable1Blk1Thr, 100.0, 0.4),
        measurement("sqlite", Workload::Durable1Blk1Thr, 200.0, 0.8),
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
    // workload system ops MB/s p50 p99 rss syncs cpu ÷floor ÷sqlite ÷redb
    assert_eq!(fields[2], "100");
    assert_eq!(fields[9], "0.50");
    assert_eq!(fields[10], "-", "no ratio of a system to itself");
    assert_eq!(fields[11], "2.00");
    assert!(table.contains("sqlite: WAL, synchronous=FULL"));
    assert!(table.contains("on ext4"));
}
