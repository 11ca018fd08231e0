//! Checks the reopen-after-crash workloads end to end on an 8 MiB disk: a writer child killed
//! with SIGKILL mid-write, then the timed reopen of its images and the first block read back
//! and checked, for txdisk on one image and on a pair, each cell in a child process of its own
//! as `txdisk bench` runs it; the other systems leave the workload out, every round's scratch
//! images are gone after it, and the row carries the bytes the reopen read.
//!
//! This test has its own `main` (`harness = false`): the workload re-executes the program as
//! the writer it kills and as each cell's child, so `main` must hand those over to
//! `txdisk_bench::child_entry` first, as the `txdisk` program does. No timing is checked.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use txdisk_bench::{all_systems, child_entry, run, BenchConfig, Geometry, SystemFactory, Workload};

fn main() -> ExitCode {
    let factories = all_systems();
    let systems: Vec<&dyn SystemFactory> = factories.iter().map(|s| s.as_ref()).collect();
    if let Some(code) = child_entry(&systems) {
        return code;
    }
    reopen_after_crash_runs_on_txdisk_and_its_pair_only(&systems);
    println!("test reopen_after_crash_runs_on_txdisk_and_its_pair_only ... ok");
    ExitCode::SUCCESS
}

fn reopen_after_crash_runs_on_txdisk_and_its_pair_only(systems: &[&dyn SystemFactory]) {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let mut config = BenchConfig::quick(scratch.path().to_path_buf());
    config.geometry = Geometry {
        disk_blocks: 1024,
        log_blocks: 64,
        max_threads: 8,
    };
    config.read_set_blocks = 64;
    config.cell_duration = Duration::from_millis(30);
    config.warmup = Duration::from_millis(5);
    // 8 MiB: a size that is no whole number of GiB, named in MiB.
    let workload = Workload::from_name("reopen-after-crash-8m").expect("a reopen workload");
    config.workloads = vec![workload];
    config.rounds = 2;
    config.allow_memory_fs = true;
    // Kept, to see that each round removed its own scratch images.
    config.remove_files = false;
    let report = run(&config, systems, &mut |_| {}).expect("bench run");
    let names: Vec<&str> = report.results.iter().map(|m| m.system.as_str()).collect();
    assert_eq!(names, ["txdisk", "txdisk-pair"], "only txdisk reopens");
    for m in &report.results {
        assert_eq!(m.workload, workload);
        assert_eq!(m.ops, 1, "{}: one reopen per round", m.system);
        assert_eq!(m.rounds_ops_per_s.len(), 2, "{}", m.system);
        assert!(m.p50_us > 0.0, "{}", m.system);
        assert_eq!(m.p50_us, m.p99_us, "{}: one reopen, one latency", m.system);
        // At least the block served and the log's metadata; a pair also compares its members.
        let read = m.read_bytes_per_op.expect("Linux counts read bytes");
        assert!(read >= 8192.0, "{}: read {read} bytes", m.system);
        assert!(m.mb_per_s > 0.0, "{}: MB/s of what was read", m.system);
    }
    let json = report.to_json();
    for row in json["results"].as_array().expect("results is a list") {
        assert!(row["read_bytes_per_op"].is_f64(), "{row}");
        assert_eq!(row["workload"], "reopen-after-crash-8m");
    }
    for name in ["txdisk", "txdisk-pair"] {
        assert_eq!(
            entries(&scratch.path().join(name)),
            if name == "txdisk" {
                vec!["txdisk.img".to_string()]
            } else {
                vec!["d1.img".to_string(), "d2.img".to_string()]
            },
            "{name}: only the images the run made remain"
        );
    }
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
