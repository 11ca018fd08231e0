//! Fault injection on `SimDisk`: a crash or fail-stop scheduled at operation k refuses call k
//! and every later one and freezes the disk (ops() stays k); per-block read errors until the
//! block is rewritten; a failing sync returns SyncFailed and loses the unsynced writes; a
//! misdirected write lands at the other address. Each checks contents, counters and crash states.

mod common;

use common::tagged;
use txdisk_disk::{Disk, DiskError, FaultPlan, OpKind, SimDisk};

/// Three numbered operations: write 0, write 1, sync (ops 0..3), then write 2 (op 3).
fn run_prefix(disk: &SimDisk) {
    disk.write(0, &tagged(10)).unwrap();
    disk.write(1, &tagged(11)).unwrap();
    disk.sync().unwrap();
    disk.write(2, &tagged(12)).unwrap();
}

fn assert_all_refused(disk: &SimDisk, is_expected: fn(&DiskError) -> bool) {
    let results = [
        disk.read(0).err(),
        disk.write(3, &tagged(99)).err(),
        disk.sync().err(),
        disk.read(3).err(),
    ];
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Some(error) => assert!(is_expected(&error), "call {index}: wrong error {error}"),
            None => panic!("call {index} succeeded after the disk stopped"),
        }
    }
}

#[test]
fn crash_at_op_k_refuses_call_k_and_freezes() {
    for k in 0..=4u64 {
        let disk = SimDisk::new(4);
        disk.schedule_crash(k);
        let calls: [&dyn Fn() -> Result<(), DiskError>; 5] = [
            &|| disk.write(0, &tagged(10)),
            &|| disk.write(1, &tagged(11)),
            &|| disk.sync(),
            &|| disk.write(2, &tagged(12)),
            &|| disk.read(2).map(drop),
        ];
        for (op, call) in calls.iter().enumerate() {
            let result = call();
            if (op as u64) < k {
                assert!(
                    result.is_ok(),
                    "k={k}: op {op} before the crash failed: {result:?}"
                );
            } else {
                assert!(
                    matches!(result, Err(DiskError::Crashed)),
                    "k={k}: op {op}: {result:?}"
                );
            }
        }
        assert_eq!(disk.ops(), k, "k={k}: ops() after the crash");
        assert_eq!(disk.trace().len() as u64, k);
        assert!(disk.is_crashed());
        assert!(!disk.is_failed());
        let (durable, states) = (disk.durable_image(), disk.crash_state_count(false));
        assert_all_refused(&disk, |e| matches!(e, DiskError::Crashed));
        assert_eq!(disk.ops(), k, "k={k}: refused calls were numbered");
        assert_eq!(
            disk.durable_image(),
            durable,
            "k={k}: durable image changed after crash"
        );
        assert_eq!(
            disk.crash_state_count(false),
            states,
            "k={k}: value sets changed"
        );
    }
}

#[test]
fn crash_keeps_pending_writes_as_candidates() {
    let disk = SimDisk::new(4);
    run_prefix(&disk);
    disk.schedule_crash(4);
    assert!(matches!(
        disk.write(3, &tagged(13)),
        Err(DiskError::Crashed)
    ));
    assert_eq!(
        disk.trace(),
        vec![OpKind::Write, OpKind::Write, OpKind::Sync, OpKind::Write]
    );
    // Blocks 0 and 1 were synced; block 2 is pending; the refused write to 3 never happened.
    let states: Vec<_> = disk.crash_states(false).collect();
    assert_eq!(states.len(), 2);
    for state in &states {
        assert_eq!(state.block(0), Some(&tagged(10)));
        assert_eq!(state.block(1), Some(&tagged(11)));
        assert!(state.block(3).is_some_and(|b| b.is_zero()));
    }
    assert!(states.iter().any(|s| s.block(2) == Some(&tagged(12))));
    assert!(states
        .iter()
        .any(|s| s.block(2).is_some_and(|b| b.is_zero())));
}

#[test]
fn fail_stop_at_op_k() {
    let disk = SimDisk::new(4);
    disk.schedule_fail_stop(3);
    disk.write(0, &tagged(10)).unwrap();
    disk.write(1, &tagged(11)).unwrap();
    disk.sync().unwrap();
    assert!(matches!(disk.write(2, &tagged(12)), Err(DiskError::Failed)));
    assert!(disk.is_failed());
    assert!(!disk.is_crashed());
    assert_eq!(disk.ops(), 3);
    assert_all_refused(&disk, |e| matches!(e, DiskError::Failed) && e.is_fatal());
    assert_eq!(disk.ops(), 3);
    assert_eq!(
        disk.pending_writes(),
        0,
        "the refused write must not be pending"
    );
    assert_eq!(disk.durable_image().block(1), Some(&tagged(11)));
    // A crash request on a failed disk leaves it failed.
    disk.crash_now();
    assert!(disk.is_failed());
}

#[test]
fn fail_now_and_crash_now_stop_at_the_current_op() {
    let disk = SimDisk::new(2);
    disk.write(0, &tagged(1)).unwrap();
    disk.fail_now();
    assert!(matches!(disk.read(0), Err(DiskError::Failed)));
    assert_eq!(disk.ops(), 1);
    let other = SimDisk::new(2);
    other.write(0, &tagged(1)).unwrap();
    other.crash_now();
    assert!(matches!(other.read(0), Err(DiskError::Crashed)));
    assert_eq!(other.ops(), 1);
    assert_eq!(
        other.pending_writes(),
        1,
        "a crash keeps the value sets for enumeration"
    );
}

#[test]
fn read_errors_until_the_block_is_rewritten() {
    let disk = SimDisk::new(4);
    disk.write(1, &tagged(1)).unwrap();
    disk.inject_read_error(1);
    match disk.read(1) {
        Err(DiskError::ReadError { addr }) => assert_eq!(addr, 1),
        other => panic!("expected ReadError at 1, got {other:?}"),
    }
    assert!(!DiskError::ReadError { addr: 1 }.is_fatal());
    assert!(disk.read(0).unwrap().is_zero(), "other blocks still read");
    assert!(disk.read(1).is_err(), "the error persists until a write");
    disk.sync().unwrap();
    assert!(disk.read(1).is_err(), "a sync does not clear a read error");
    disk.write(1, &tagged(2)).unwrap();
    assert_eq!(
        disk.read(1).unwrap(),
        tagged(2),
        "a write remaps the bad block"
    );
}

#[test]
fn read_errors_from_a_fault_plan() {
    let disk = SimDisk::new(4);
    let plan = FaultPlan {
        read_errors: [0, 3].into_iter().collect(),
        ..FaultPlan::default()
    };
    disk.set_faults(plan);
    assert!(matches!(
        disk.read(0),
        Err(DiskError::ReadError { addr: 0 })
    ));
    assert!(matches!(
        disk.read(3),
        Err(DiskError::ReadError { addr: 3 })
    ));
    assert!(disk.read(2).is_ok());
}

#[test]
fn failed_sync_loses_unsynced_writes() {
    let disk = SimDisk::new(4);
    run_prefix(&disk); // blocks 0, 1 synced; block 2 pending
    disk.write(0, &tagged(20)).unwrap(); // op 4
    disk.schedule_sync_failure(5);
    assert!(matches!(disk.sync(), Err(DiskError::SyncFailed)));
    let stats = disk.stats();
    assert_eq!((stats.syncs, stats.failed_syncs), (1, 1));
    // Neither readable nor durable nor a crash candidate: only the last good sync remains.
    assert_eq!(disk.read(0).unwrap(), tagged(10));
    assert!(disk.read(2).unwrap().is_zero());
    assert_eq!(disk.pending_writes(), 0);
    assert_eq!(disk.crash_state_count(false), 1);
    assert_eq!(disk.durable_image().block(0), Some(&tagged(10)));
    assert_eq!(disk.durable_image().block(1), Some(&tagged(11)));
    // The disk still works; a later good sync makes new writes durable.
    disk.write(2, &tagged(22)).unwrap();
    disk.sync().unwrap();
    assert_eq!(disk.durable_image().block(2), Some(&tagged(22)));
    assert_eq!(disk.stats().syncs, 2);
}

#[test]
fn sync_failure_scheduled_on_a_write_does_nothing() {
    let disk = SimDisk::new(2);
    disk.schedule_sync_failure(0);
    disk.write(0, &tagged(1)).unwrap(); // op 0 is a write, not a sync
    disk.sync().unwrap();
    assert_eq!(disk.durable_image().block(0), Some(&tagged(1)));
    assert_eq!(disk.stats().failed_syncs, 0);
}

#[test]
fn misdirected_write_lands_at_the_other_address() {
    let disk = SimDisk::new(4);
    disk.write(0, &tagged(1)).unwrap(); // op 0
    disk.schedule_misdirected_write(1, 3);
    disk.write(2, &tagged(2)).unwrap(); // op 1: meant for 2, lands at 3
    disk.write(2, &tagged(4)).unwrap(); // op 2: lands where it should
    assert_eq!(disk.read(3).unwrap(), tagged(2));
    assert_eq!(disk.read(2).unwrap(), tagged(4));
    let pending = disk.pending_summary();
    assert_eq!(pending.get(&3), Some(&1));
    assert_eq!(pending.get(&2), Some(&1));
    disk.sync().unwrap();
    assert_eq!(disk.durable_image().block(3), Some(&tagged(2)));
}

#[test]
fn misdirected_write_leaves_its_own_address_untouched() {
    let disk = SimDisk::new(4);
    disk.inject_read_error(1);
    let plan = FaultPlan {
        misdirect_write_at_op: Some((0, 2)),
        read_errors: [1].into_iter().collect(),
        ..FaultPlan::default()
    };
    disk.set_faults(plan);
    disk.write(1, &tagged(5)).unwrap();
    assert!(disk.read(2).is_ok_and(|b| b == tagged(5)));
    assert!(
        matches!(disk.read(1), Err(DiskError::ReadError { addr: 1 })),
        "1 never written"
    );
}

#[test]
#[should_panic(expected = "misdirect target")]
fn fault_plan_with_out_of_range_misdirect_is_rejected() {
    let disk = SimDisk::new(4);
    disk.set_faults(FaultPlan {
        misdirect_write_at_op: Some((0, 4)),
        ..FaultPlan::default()
    });
}
