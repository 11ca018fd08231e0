//! Checks the runner end to end: the floor and both peers on a small disk in a scratch
//! directory (every supported cell measured once, unsupported ones left out, reads verified),
//! and an in-memory system that records what the runner asks of it (addresses inside each
//! thread's region, distinct within a transaction, never a repeated block) or lies on reads;
//! and thread sweeps: one row per (system, workload, thread count), each with its rounds; and
//! txdisk on one image and on a pair, whose images are the ones `txdisk::open` takes; and the
//! pair's floor, which writes everything twice and syncs once per transaction like the floor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use txdisk_bench::{
    baseline_systems, run, BenchConfig, BenchError, FloorFactory, Geometry, Isolation, ReadKind,
    Result, System, SystemFactory, TxdiskFactory, Workload,
};
use txdisk_disk::{Addr, Block};

fn tiny_config(dir: &Path) -> BenchConfig {
    let mut config = BenchConfig::quick(dir.to_path_buf());
    config.geometry = Geometry {
        disk_blocks: 1024,
        log_blocks: 64,
        max_threads: 8,
    };
    config.read_set_blocks = 64;
    config.rounds = 2;
    config.cell_duration = Duration::from_millis(30);
    config.warmup = Duration::from_millis(5);
    config.flush_every = 8;
    // The harness's logic is what is tested here, wherever the scratch directory lives.
    config.allow_memory_fs = true;
    // A test binary cannot re-execute itself as a cell's child.
    config.isolation = Isolation::InProcess;
    config
}

#[test]
fn floor_and_peers_run_every_supported_cell_once() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let config = tiny_config(scratch.path());
    let factories = baseline_systems();
    let systems: Vec<&dyn SystemFactory> = factories.iter().map(|s| s.as_ref()).collect();
    let report = run(&config, &systems, &mut |_| {}).expect("bench run");
    for system in &systems {
        for workload in Workload::ALL {
            let found = report
                .results
                .iter()
                .filter(|m| m.system == system.name() && m.workload == workload)
                .count();
            let expected = usize::from(system.supports(workload));
            assert_eq!(found, expected, "{} {workload}", system.name());
        }
    }
    assert!(report.find("redb", Workload::ReadLogged).is_none());
    assert!(report.find("sqlite", Workload::ReplicaResync).is_none());
    for m in &report.results {
        assert!(m.ops > 0, "{} {} measured nothing", m.system, m.workload);
        assert!(m.ops_per_s > 0.0, "{} {}", m.system, m.workload);
        assert!(m.p50_us <= m.p99_us, "{} {}", m.system, m.workload);
        assert!(m.peak_rss_bytes > 0, "{} {}", m.system, m.workload);
    }
    // The floor syncs exactly once per durable transaction, whatever the thread count.
    for workload in [Workload::DURABLE_1BLK_1THR, Workload::DURABLE_16BLK_8THR] {
        let floor = report.find("floor", workload).expect("floor ran");
        assert_eq!(floor.syncs_per_op, Some(1.0), "{workload}");
        // A header block and each data block per transaction, at least: other tests of this
        // process write at the same time, so only the lower bound holds here.
        let least = ((workload.blocks_per_txn() + 1) * 4096) as f64;
        assert!(
            floor.write_bytes_per_op >= Some(least),
            "{workload}: {:?}",
            floor.write_bytes_per_op
        );
    }
    for m in &report.results {
        assert!(
            m.write_bytes_per_op.is_some(),
            "{} {}",
            m.system,
            m.workload
        );
        assert!(m.read_bytes_per_op.is_some(), "{} {}", m.system, m.workload);
        // getrusage does not fail on Linux: every cell has a count, if not always a non-zero one
        // (a cell on tmpfs need not block).
        assert!(
            m.context_switches_per_op.is_some_and(|n| n >= 0.0),
            "{} {}",
            m.system,
            m.workload
        );
    }
    // A read of the floor is one pread of a block, at least (a lower bound, as above).
    let reads = report
        .find("floor", Workload::ReadInstalled)
        .expect("floor ran");
    assert!(reads.read_bytes_per_op >= Some(4096.0), "{reads:?}");
    let json = report.to_json();
    assert_eq!(
        json["results"].as_array().map(Vec::len),
        Some(report.results.len())
    );
    assert!(
        std::fs::read_dir(scratch.path())
            .expect("list")
            .next()
            .is_none(),
        "the systems' files are removed at the end"
    );
}

/// An in-memory system that checks the runner's promises to systems.
struct Recorder {
    geometry: Geometry,
    blocks: Mutex<HashMap<Addr, Block>>,
    violations: Mutex<Vec<String>>,
    lie_on_reads: bool,
}

impl Recorder {
    fn violation(&self, message: String) {
        self.violations.lock().expect("lock").push(message);
    }

    fn write(&self, thread: usize, addrs: &[Addr], data: &[Block]) {
        let region = self.geometry.region_start(thread)
            ..self.geometry.region_start(thread) + self.geometry.region_blocks();
        let mut blocks = self.blocks.lock().expect("lock");
        for (i, (addr, block)) in addrs.iter().zip(data).enumerate() {
            if !region.contains(addr) {
                self.violation(format!("thread {thread} wrote {addr} outside {region:?}"));
            }
            if addrs[..i].contains(addr) {
                self.violation(format!("address {addr} twice in one transaction"));
            }
            if blocks.get(addr) == Some(block) {
                self.violation(format!("block {addr} rewritten with its current content"));
            }
            blocks.insert(*addr, block.clone());
        }
    }
}

impl System for &'static Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn durable_txn(&self, thread: usize, addrs: &[Addr], data: &[Block]) -> Result<()> {
        self.write(thread, addrs, data);
        Ok(())
    }
    fn nosync_txn(&self, thread: usize, addrs: &[Addr], data: &[Block]) -> Result<()> {
        self.write(thread, addrs, data);
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    fn prepare_reads(&self, _kind: ReadKind, addrs: &[Addr], data: &[Block]) -> Result<()> {
        let mut blocks = self.blocks.lock().expect("lock");
        for (addr, block) in addrs.iter().zip(data) {
            blocks.insert(*addr, block.clone());
        }
        Ok(())
    }
    fn read(&self, _thread: usize, addr: Addr) -> Result<Block> {
        if self.lie_on_reads {
            return Ok(Block::filled(0xEE));
        }
        let blocks = self.blocks.lock().expect("lock");
        blocks.get(&addr).cloned().ok_or(BenchError::Missing {
            system: "recorder".into(),
            addr,
        })
    }
}

struct RecorderFactory(&'static Recorder);

impl SystemFactory for RecorderFactory {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn config_note(&self) -> String {
        "in memory".into()
    }
    fn supports(&self, workload: Workload) -> bool {
        !matches!(workload, Workload::RecoverFullLog | Workload::ReplicaResync)
    }
    fn create(&self, _dir: &Path, _geometry: &Geometry) -> Result<()> {
        Ok(())
    }
    fn open(&self, _dir: &Path, _geometry: &Geometry) -> Result<Box<dyn System>> {
        Ok(Box::new(self.0))
    }
}

fn recorder(geometry: Geometry, lie_on_reads: bool) -> &'static Recorder {
    Box::leak(Box::new(Recorder {
        geometry,
        blocks: Mutex::new(HashMap::new()),
        violations: Mutex::new(Vec::new()),
        lie_on_reads,
    }))
}

#[test]
fn writers_stay_in_their_regions_and_never_repeat_a_block() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let config = tiny_config(scratch.path());
    let recorder = recorder(config.geometry, false);
    let factory = RecorderFactory(recorder);
    let report = run(&config, &[&factory], &mut |_| {}).expect("bench run");
    let violations = recorder.violations.lock().expect("lock");
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(report.results.len(), 7, "two recoveries left out of nine");
    let written = recorder.blocks.lock().expect("lock").len();
    assert!(written > 64, "only {written} blocks written");
}

#[test]
fn a_read_returning_wrong_data_voids_the_run() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let mut config = tiny_config(scratch.path());
    config.workloads = vec![Workload::ReadInstalled];
    let factory = RecorderFactory(recorder(config.geometry, true));
    match run(&config, &[&factory], &mut |_| {}) {
        Err(BenchError::WrongData { system, .. }) => assert_eq!(system, "recorder"),
        other => panic!("expected WrongData, got {other:?}"),
    }
}

#[test]
fn a_disk_too_small_for_its_threads_is_refused() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let mut config = tiny_config(scratch.path());
    config.geometry.disk_blocks = 100;
    let factory = RecorderFactory(recorder(config.geometry, false));
    assert!(matches!(
        run(&config, &[&factory], &mut |_| {}),
        Err(BenchError::Config(_))
    ));
}

#[test]
fn a_thread_sweep_reports_one_row_per_system_workload_and_thread_count() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let mut config = tiny_config(scratch.path());
    config.workloads = vec![
        Workload::DURABLE_1BLK_1THR,
        Workload::DURABLE_1BLK_8THR,
        Workload::NOSYNC_1BLK_1THR,
        Workload::ReadInstalled,
    ];
    let threads = [1, 2, 4, 16];
    config.sweep_threads(&threads).expect("a valid sweep");
    assert_eq!(
        config.geometry.max_threads, 16,
        "room for the largest count"
    );
    let factories = baseline_systems();
    let systems: Vec<&dyn SystemFactory> = factories.iter().map(|s| s.as_ref()).collect();
    let report = run(&config, &systems, &mut |_| {}).expect("bench run");
    let json = report.to_json();
    let rows = json["results"].as_array().expect("results is a list");
    let count = |system: &str, workload: &str, threads: usize| {
        rows.iter()
            .filter(|row| {
                row["system"] == system && row["workload"] == workload && row["threads"] == threads
            })
            .count()
    };
    for system in ["floor", "sqlite", "redb"] {
        for t in threads {
            assert_eq!(
                count(system, &format!("durable-1blk-{t}thr"), t),
                1,
                "{system} {t}"
            );
            assert_eq!(
                count(system, &format!("nosync-1blk-{t}thr"), t),
                1,
                "{system} {t}"
            );
        }
        assert_eq!(
            count(system, "read-installed", 1),
            1,
            "{system}: reads are not swept"
        );
        // 8 threads was not asked for: the documented 8-thread workload became the sweep.
        assert_eq!(count(system, "durable-1blk-8thr", 8), 0, "{system}");
    }
    assert_eq!(rows.len(), 3 * (2 * threads.len() + 1));
    for row in rows {
        let rounds = row["rounds_ops_per_s"].as_array().expect("rounds listed");
        assert_eq!(rounds.len(), config.rounds, "{row}");
        let cdf = row["latency_cdf_us"].as_array().expect("a CDF");
        assert!(!cdf.is_empty(), "{row}");
    }
    for t in threads {
        let floor = report
            .find("floor", Workload::durable(1, t))
            .expect("floor ran");
        assert_eq!(floor.syncs_per_op, Some(1.0), "{t} threads");
    }
}

#[test]
fn a_sweep_without_room_for_its_threads_is_refused() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let mut config = tiny_config(scratch.path());
    assert!(matches!(
        config.sweep_threads(&[1, 0]),
        Err(BenchError::Config(_))
    ));
    assert!(matches!(
        config.sweep_threads(&[]),
        Err(BenchError::Config(_))
    ));
    // 1024 blocks among 32 threads leaves each fewer than the 64 a region needs.
    config.sweep_threads(&[1, 32]).expect("expands");
    let factory = RecorderFactory(recorder(config.geometry, false));
    assert!(matches!(
        run(&config, &[&factory], &mut |_| {}),
        Err(BenchError::Config(_))
    ));
}

/// The image files a factory made in `dir`, in name order (d1 before d2).
fn images_in(dir: &Path) -> Vec<PathBuf> {
    let mut images: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "img"))
        .collect();
    images.sort();
    images
}

#[test]
fn txdisk_and_its_pair_are_the_stack_users_open() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let config = tiny_config(scratch.path());
    for (replicated, count) in [(false, 1), (true, 2)] {
        let factory = TxdiskFactory { replicated };
        let dir = scratch.path().join(factory.name());
        std::fs::create_dir_all(&dir).expect("mkdir");
        factory.create(&dir, &config.geometry).expect("created");
        let images = images_in(&dir);
        assert_eq!(images.len(), count, "{}", factory.name());
        // Checksummed images of the current format: `txdisk::open` refuses any other.
        let stack = txdisk::open(&images, txdisk::OpenOptions::default()).expect("opens");
        for addr in [0, 5, config.geometry.disk_blocks - 1] {
            let block = stack.read_committed(addr).expect("verifies");
            assert_eq!(block, Block::filled(addr as u8), "prefilled {addr}");
        }
        assert_eq!(stack.pair().is_some(), replicated);
        stack.close().expect("closes");
    }
}

#[test]
fn txdisk_and_its_pair_run_every_supported_cell() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let mut config = tiny_config(scratch.path());
    config.rounds = 1;
    let factories = [
        TxdiskFactory { replicated: false },
        TxdiskFactory { replicated: true },
    ];
    let systems: Vec<&dyn SystemFactory> =
        factories.iter().map(|f| f as &dyn SystemFactory).collect();
    let report = run(&config, &systems, &mut |_| {}).expect("bench run");
    for system in &systems {
        for workload in Workload::ALL {
            let found = report.find(system.name(), workload);
            assert_eq!(
                found.is_some(),
                system.supports(workload),
                "{} {workload}",
                system.name()
            );
        }
    }
    assert!(report
        .find("txdisk-pair", Workload::ReplicaResync)
        .is_some());
    for m in &report.results {
        assert!(m.ops > 0, "{} {} measured nothing", m.system, m.workload);
        assert!(
            m.write_bytes_per_op.is_some(),
            "{} {}",
            m.system,
            m.workload
        );
    }
    // A durable transaction writes at least its block into the log before it returns.
    let durable = report
        .find("txdisk", Workload::DURABLE_1BLK_1THR)
        .expect("ran");
    assert!(durable.write_bytes_per_op >= Some(4096.0), "{durable:?}");
    // A rebuild formats the new member's checksums at least (it copies only the blocks
    // that differ, so no more can be said of a disk never written).
    let resync = report
        .find("txdisk-pair", Workload::ReplicaResync)
        .expect("ran");
    assert!(resync.write_bytes_per_op > Some(0.0), "{resync:?}");
}

#[test]
fn the_pair_floor_runs_every_cell_and_writes_each_block_to_both_files() {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let mut config = tiny_config(scratch.path());
    config.rounds = 1;
    let factories = [
        FloorFactory { replicated: false },
        FloorFactory { replicated: true },
    ];
    let systems: Vec<&dyn SystemFactory> =
        factories.iter().map(|f| f as &dyn SystemFactory).collect();
    let report = run(&config, &systems, &mut |_| {}).expect("bench run");
    for workload in Workload::ALL {
        assert!(report.find("floor-pair", workload).is_some(), "{workload}");
    }
    for workload in [Workload::DURABLE_1BLK_8THR, Workload::DURABLE_16BLK_1THR] {
        let pair = report.find("floor-pair", workload).expect("ran");
        // Two fdatasyncs at once per transaction, counted as the one pair sync they are.
        assert_eq!(pair.syncs_per_op, Some(1.0), "{workload}");
        let least = (2 * (workload.blocks_per_txn() + 1) * 4096) as f64;
        assert!(
            pair.write_bytes_per_op >= Some(least),
            "{workload}: {:?}",
            pair.write_bytes_per_op
        );
    }
    let table = report.table();
    assert!(table.contains("÷floor-pair"), "{table}");
    assert!(report
        .ratio("floor-pair", Workload::DURABLE_1BLK_1THR, "floor")
        .is_some());
}
