//! The concurrent campaign in CI: fixed seed and budget, zero violations on the correct stack
//! (one disk and a pair), and a planted serializability bug caught.

use txdisk_crashfuzz::schedules::{fuzz_schedules, ScheduleConfig};

fn campaign(replicated: bool) -> ScheduleConfig {
    ScheduleConfig {
        replicated,
        schedules: 300,
        ..ScheduleConfig::default()
    }
}

fn run(config: &ScheduleConfig) {
    let report = fuzz_schedules(config).unwrap_or_else(|v| panic!("seed {:#x}: {v}", config.seed));
    println!("{config:?}: {report:?}");
    assert_eq!(report.schedules, 2 * config.schedules as u64);
    assert!(report.crashed_schedules > 0, "no schedule crashed");
    assert!(
        report.recoveries_checked > report.crashed_schedules,
        "recoveries not checked"
    );
    assert!(
        report.discarded > 0,
        "no transaction ever aborted or conflicted"
    );
    assert!(
        report.commits > report.schedules,
        "few transactions committed"
    );
}

#[test]
fn concurrent_campaign_on_one_disk_finds_nothing() {
    run(&campaign(false));
}

#[test]
fn concurrent_campaign_on_a_pair_finds_nothing() {
    run(&campaign(true));
}

#[test]
fn concurrent_campaign_catches_an_unstamped_stripe() {
    use txdisk_logical::bugs::{set, Bug};
    set(Some(Bug::UnstampedStripe));
    let outcome = fuzz_schedules(&campaign(false));
    set(None);
    let violation = outcome.expect_err("the unstamped stripe went unseen");
    assert!(
        violation.contains("not serializable") || violation.contains("recovery"),
        "{violation}"
    );
    println!("caught: {violation}");
}
