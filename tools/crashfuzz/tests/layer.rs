//! A user's own layer is fuzzed the same way: the example counter layer passes (damage on a
//! pair included; damage on a single disk is refused for a layer that cannot read a damaged
//! block as missing), and a broken variant of it (its two blocks updated by two transactions)
//! is caught by its invariant, with a token that replays on that layer only. The built-in
//! layer's workloads reach both ends of the data region, read, and conflict.

use txdisk_crashfuzz::{
    fuzz_layer, replay, replay_layer, Budget, CommitKind, CounterLayer, CounterOp, FuzzConfig,
    FuzzError, FuzzLayer,
};
use txdisk_disk::rng::SplitMix64;
use txdisk_logical::{LogicalDisk, LogicalError};

/// The counter layer with a crash bug: the counter and its complement are written by two
/// separate transactions, so a crash between them breaks the invariant.
struct SplitCounter;

impl FuzzLayer for SplitCounter {
    type Op = CounterOp;
    type Model = u64;

    fn name(&self) -> String {
        "split-counter".into()
    }
    fn initial_model(&self) -> u64 {
        CounterLayer.initial_model()
    }
    fn setup(&self, disk: &LogicalDisk) -> Result<(), LogicalError> {
        CounterLayer.setup(disk)
    }
    fn random_op(&self, rng: &mut SplitMix64, model: &u64, data_blocks: u64) -> CounterOp {
        CounterLayer.random_op(rng, model, data_blocks)
    }
    fn commit_kind(&self, op: &CounterOp) -> CommitKind {
        CounterLayer.commit_kind(op)
    }
    fn model_apply(&self, model: &mut u64, op: &CounterOp) {
        CounterLayer.model_apply(model, op);
    }
    fn apply(&self, disk: &LogicalDisk, op: &CounterOp) -> Result<(), LogicalError> {
        let mut first = disk.begin();
        let value = u64::from_le_bytes(
            first.read(0)?.as_bytes()[..8]
                .try_into()
                .unwrap_or_default(),
        ) + op.amount;
        let block = |v: u64| txdisk_disk::Block::with_prefix(&v.to_le_bytes()).unwrap_or_default();
        first.write(0, &block(value))?;
        first.commit_nosync()?;
        let mut second = disk.begin();
        second.write(1, &block(!value))?;
        if op.durable {
            second.commit()
        } else {
            second.commit_nosync()
        }
    }
    fn check(&self, disk: &LogicalDisk) -> Result<(), String> {
        CounterLayer.check(disk)
    }
    fn observe(&self, disk: &LogicalDisk) -> Result<u64, String> {
        CounterLayer.observe(disk)
    }
}

#[test]
fn counter_layer_passes() {
    let config = FuzzConfig {
        seed: 0xc0_0017,
        budget: Budget::States(8_000),
        ..FuzzConfig::default()
    };
    let report = fuzz_layer(&CounterLayer, &config, &mut |_| {}).expect("fuzz the counter layer");
    println!("{report}");
    assert!(
        report.violations.is_empty(),
        "seed {}: {report}",
        config.seed
    );
    assert!(report.crash_states >= 8_000);
    assert_eq!(report.layer, "counter");
}

#[test]
fn broken_layer_is_caught_and_replays_on_its_layer_only() {
    let config = FuzzConfig {
        seed: 0xc0_0018,
        max_violations: 1,
        ..FuzzConfig::default()
    };
    let report = fuzz_layer(&SplitCounter, &config, &mut |_| {}).expect("fuzz the split counter");
    println!("{report}");
    let violation = report
        .violations
        .first()
        .unwrap_or_else(|| panic!("seed {}: split counter not caught", config.seed));
    let replayed =
        replay_layer(&SplitCounter, &violation.token).expect("replay on the split counter");
    println!("{replayed}");
    assert_eq!(
        replayed.violation.as_ref().map(|(kind, _)| *kind),
        Some(violation.kind)
    );
    assert!(
        matches!(replay(&violation.token), Err(FuzzError::WrongLayer { .. })),
        "a split-counter token replayed on the tx layer"
    );
}

#[test]
fn counter_layer_passes_damage_on_a_pair_and_refuses_it_on_one_disk() {
    let config = FuzzConfig {
        seed: 0xc0_0019,
        budget: Budget::States(2_000),
        replicated: true,
        bit_rot: true,
        crash_points: 4,
        samples: 2,
        ..FuzzConfig::default()
    };
    let report = fuzz_layer(&CounterLayer, &config, &mut |_| {}).expect("fuzz the counter layer");
    println!("{report}");
    assert!(
        report.violations.is_empty(),
        "seed {}: {report}",
        config.seed
    );
    assert!(report.bit_rot_workloads > 0, "{report}");
    let single = FuzzConfig {
        replicated: false,
        ..config
    };
    assert!(
        matches!(
            fuzz_layer(&CounterLayer, &single, &mut |_| {}),
            Err(FuzzError::BadConfig { .. })
        ),
        "damage on one disk under a layer that cannot read damaged blocks"
    );
}

/// The built-in workload reaches both ends of the data region and reads and conflicts: the
/// blind spots of a workload that wrote the first eight blocks blindly.
#[test]
fn tx_workloads_span_the_region_and_read_and_conflict() {
    use txdisk_crashfuzz::{TxLayer, TxOp};
    let layer = TxLayer::default();
    let data_blocks = 49;
    let mut rng = SplitMix64::new(0x5eed);
    let model = layer.initial_model();
    let (mut first, mut last, mut updates, mut conflicts) = (0, 0, 0, 0);
    for _ in 0..400 {
        let op = layer.random_op(&mut rng, &model, data_blocks);
        let addrs: Vec<u64> = match &op {
            TxOp::Commit { writes, .. } | TxOp::Abort { writes } => {
                writes.iter().map(|(addr, _)| *addr).collect()
            }
            TxOp::Update { reads, writes, .. } => {
                updates += 1;
                reads.iter().chain(writes).copied().collect()
            }
            TxOp::Conflict {
                reads, interloper, ..
            } => {
                conflicts += 1;
                assert!(
                    reads.contains(&interloper[0].0),
                    "the interloper overlaps the reads: {op:?}"
                );
                reads.clone()
            }
        };
        assert!(addrs.iter().all(|&addr| addr < data_blocks), "{op:?}");
        first += usize::from(addrs.contains(&0));
        last += usize::from(addrs.contains(&(data_blocks - 1)));
    }
    assert!(first > 10, "block 0 in {first} of 400 operations");
    assert!(last > 10, "the last block in {last} of 400 operations");
    assert!(updates > 40, "{updates} updates in 400 operations");
    assert!(
        conflicts > 20,
        "{conflicts} conflicting transactions in 400 operations"
    );
}
