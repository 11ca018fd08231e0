//! The report's JSON shape, budgets in states and seconds, progress callbacks, and replay
//! tokens: a violation's token reproduces it, a mistyped token is refused with a clear error.

use txdisk_crashfuzz::{fuzz, replay, Budget, Bug, FuzzConfig, FuzzError, LogBug};

#[test]
fn json_has_the_required_keys() {
    let config = FuzzConfig {
        seed: 7,
        budget: Budget::States(500),
        ..FuzzConfig::default()
    };
    let report = fuzz(&config, &mut |_| {}).expect("fuzz");
    let json = report.to_json();
    for key in [
        "seed",
        "workloads",
        "crash_points",
        "crash_states",
        "states_per_s",
        "violations",
    ] {
        assert!(json.get(key).is_some(), "JSON report lacks {key}: {json}");
    }
    assert_eq!(json["seed"], 7);
    assert!(
        json["violations"].as_array().is_some_and(Vec::is_empty),
        "{json}"
    );
    assert!(
        json["crash_states"]
            .as_u64()
            .is_some_and(|states| states >= 500),
        "{json}"
    );
}

#[test]
fn violations_in_json_carry_their_tokens() {
    let config = FuzzConfig {
        seed: 8,
        bug: Some(Bug::Log(LogBug::CommitWithoutFlush)),
        max_violations: 2,
        ..FuzzConfig::default()
    };
    let report = fuzz(&config, &mut |_| {}).expect("fuzz");
    let json = report.to_json();
    let violations = json["violations"].as_array().expect("a list of violations");
    assert_eq!(violations.len(), 2, "{json}");
    for (violation, object) in report.violations.iter().zip(violations) {
        assert_eq!(object["token"], violation.token.as_str());
        assert_eq!(object["kind"], violation.kind.name());
    }
}

#[test]
fn budgets_parse_and_a_time_budget_ends() {
    assert_eq!("20s".parse::<Budget>().ok(), Some(Budget::Seconds(20.0)));
    assert_eq!("1000".parse::<Budget>().ok(), Some(Budget::States(1000)));
    assert!("ten".parse::<Budget>().is_err());
    assert!("-1s".parse::<Budget>().is_err());
    let mut calls = 0;
    let config = FuzzConfig {
        seed: 9,
        budget: Budget::Seconds(0.3),
        ..FuzzConfig::default()
    };
    let report = fuzz(&config, &mut |progress| {
        calls += 1;
        assert!(
            (0.0..=1.0).contains(&progress.fraction),
            "fraction {}",
            progress.fraction
        );
    })
    .expect("fuzz");
    assert!(report.crash_states > 0);
    assert!(calls >= 1, "no progress reported");
}

#[test]
fn tokens_round_trip_and_refuse_damage() {
    let config = FuzzConfig {
        seed: 10,
        bug: Some(Bug::Log(LogBug::HeaderBeforeInstallDurable)),
        max_violations: 1,
        ..FuzzConfig::default()
    };
    let report = fuzz(&config, &mut |_| {}).expect("fuzz");
    let violation = report.violations.first().expect("the variant is caught");
    let token = &violation.token;
    let config_back = txdisk_crashfuzz::token_config(token, "tx").expect("decode");
    assert_eq!(config_back.seed, config.seed);
    assert_eq!(config_back.bug, config.bug);
    let again = replay(token).expect("replay");
    assert_eq!(
        again
            .violation
            .as_ref()
            .map(|(_, message)| message.as_str()),
        Some(violation.message.as_str())
    );
    // Replaying twice gives the same report: replays are deterministic.
    assert_eq!(replay(token).expect("replay again"), again);
    let mut damaged: Vec<char> = token.chars().collect();
    let last = damaged.len() - 3;
    damaged[last] = if damaged[last] == '0' { '1' } else { '0' };
    let damaged: String = damaged.into_iter().collect();
    assert!(
        matches!(replay(&damaged), Err(FuzzError::BadToken { .. })),
        "a damaged token was accepted"
    );
    assert!(matches!(
        replay("not-a-token"),
        Err(FuzzError::BadToken { .. })
    ));
}

#[test]
fn a_bad_configuration_is_an_error() {
    let config = FuzzConfig {
        depth: 0,
        ..FuzzConfig::default()
    };
    assert!(matches!(
        fuzz(&config, &mut |_| {}),
        Err(FuzzError::BadConfig { .. })
    ));
    let config = FuzzConfig {
        bug: Some(Bug::ReplicatedSkipsD2),
        ..FuzzConfig::default()
    };
    assert!(matches!(
        fuzz(&config, &mut |_| {}),
        Err(FuzzError::BadConfig { .. })
    ));
    let config = FuzzConfig {
        disk_blocks: 8,
        log_blocks: 12,
        ..FuzzConfig::default()
    };
    assert!(matches!(
        fuzz(&config, &mut |_| {}),
        Err(FuzzError::Setup { .. })
    ));
}

#[test]
fn variants_parse_by_name() {
    for bug in Bug::all() {
        assert_eq!(bug.name().parse::<Bug>().ok(), Some(bug));
    }
    assert!(matches!(
        "no-such-bug".parse::<Bug>(),
        Err(FuzzError::BadConfig { .. })
    ));
}
