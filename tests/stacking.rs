//! Stacking: a `LogicalDisk` is itself a `Disk`, so a second log can run on top of it. The
//! upper log's `atomic_two_write` must stay all-or-nothing across crashes of the simulated disk
//! at the very bottom, at every disk operation, with both logs recovered in order.

use std::sync::Arc;
use txdisk::disk::rng::SplitMix64;
use txdisk::disk::{DiskImage, SimDisk};
use txdisk::log::{Log, LogOptions};
use txdisk::{Block, Disk, LogicalDisk};

const LOWER_LOG: u64 = 32;
const UPPER_LOG: u64 = 8;
const SIZE: u64 = 3 + LOWER_LOG + 3 + UPPER_LOG + 8;

fn quiet() -> LogOptions {
    LogOptions {
        background_installer: false,
        ..LogOptions::default()
    }
}

fn open_both(sim: Arc<SimDisk>) -> Result<Log, String> {
    let lower = LogicalDisk::open(sim, quiet()).map_err(|e| e.to_string())?;
    Log::open(Arc::new(lower), quiet()).map_err(|e| e.to_string())
}

fn base() -> DiskImage {
    let sim = Arc::new(SimDisk::new(SIZE));
    LogicalDisk::format(&*sim, LOWER_LOG).unwrap();
    let lower = LogicalDisk::open(sim.clone(), quiet()).unwrap();
    Log::format(&lower, UPPER_LOG, 42).unwrap();
    drop(lower);
    let upper = open_both(sim.clone()).unwrap();
    upper
        .atomic_two_write(1, &Block::filled(0x11), 5, &Block::filled(0x55))
        .unwrap();
    drop(upper);
    sim.durable_image()
}

fn pair_of(upper: &Log) -> (Block, Block) {
    (upper.read(1).unwrap(), upper.read(5).unwrap())
}

#[test]
fn upper_log_is_atomic_across_crashes_of_the_bottom_disk() {
    let base = base();
    let (old, new) = (
        (Block::filled(0x11), Block::filled(0x55)),
        (Block::filled(0xa1), Block::filled(0xa5)),
    );
    let run = |sim: Arc<SimDisk>| -> Result<(), String> {
        let upper = open_both(sim)?;
        upper
            .atomic_two_write(1, &new.0, 5, &new.1)
            .map_err(|e| e.to_string())?;
        upper.install().map_err(|e| e.to_string())?;
        Ok(())
    };
    let total_ops = {
        let sim = Arc::new(SimDisk::from_image(&base));
        run(sim.clone()).unwrap();
        sim.ops()
    };
    let mut rng = SplitMix64::new(7);
    let mut checked = 0;
    for crash_op in 0..=total_ops {
        let sim = Arc::new(SimDisk::from_image(&base));
        sim.schedule_crash(crash_op);
        let returned = run(sim.clone()).is_ok();
        for _ in 0..8 {
            let image = sim.random_crash_state(&mut rng, false);
            let upper = open_both(Arc::new(SimDisk::from_image(&image)))
                .unwrap_or_else(|e| panic!("crash at op {crash_op}: recovery failed: {e}"));
            let found = pair_of(&upper);
            assert!(
                found == old || found == new,
                "crash at op {crash_op}: a mix of old and new: {found:?}"
            );
            if returned {
                assert_eq!(
                    found, new,
                    "crash at op {crash_op}: a committed write was lost"
                );
            }
            checked += 1;
        }
    }
    println!("{checked} crash states over {total_ops} bottom-disk operations");
    assert!(checked > 100);
}

#[test]
fn logical_disk_under_a_log_reads_back() {
    let sim = Arc::new(SimDisk::new(SIZE));
    LogicalDisk::format(&*sim, LOWER_LOG).unwrap();
    let lower = Arc::new(LogicalDisk::open(sim, quiet()).unwrap());
    Log::format(&*lower, UPPER_LOG, 1).unwrap();
    let upper = Log::open(lower.clone(), quiet()).unwrap();
    for addr in 0..upper.data_blocks() {
        upper
            .atomic_two_write(
                addr,
                &Block::filled(addr as u8 + 1),
                (addr + 1) % upper.data_blocks(),
                &Block::filled(9),
            )
            .unwrap();
    }
    assert_eq!(upper.read(0).unwrap(), Block::filled(9));
    assert_eq!(upper.read(3).unwrap(), Block::filled(4));
    assert_eq!(lower.size_blocks(), SIZE - 3 - LOWER_LOG);
}
