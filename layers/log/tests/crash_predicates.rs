//! The crash predicates themselves can fail: `log_intact` accepts the old state and the new
//! state of a two-block transaction and rejects each mix, naming the address that gives it
//! away; `matches_prefix` rejects states before the last durable commit and states that are no
//! prefix at all; absent and zero blocks are the same. Built from small hand-made contents.

use txdisk_disk::Block;
use txdisk_log::tooling::{first_difference, log_intact, matches_prefix, Contents};

fn contents(pairs: &[(u64, u8)]) -> Contents {
    pairs
        .iter()
        .map(|&(addr, fill)| (addr, Block::filled(fill)))
        .collect()
}

#[test]
fn log_intact_accepts_old_and_new_rejects_mixes() {
    let old = contents(&[(1, 0x11), (3, 0x33)]);
    let new = contents(&[(1, 0xa1), (3, 0xa3)]);
    log_intact(&old, &old, &new).expect("the old state is allowed");
    log_intact(&new, &old, &new).expect("the new state is allowed");
    for (mix, tell) in [
        (contents(&[(1, 0xa1), (3, 0x33)]), [1, 3]),
        (contents(&[(1, 0x11), (3, 0xa3)]), [1, 3]),
    ] {
        let violation =
            log_intact(&mix, &old, &new).expect_err("a mix of old and new must be rejected");
        assert!(
            tell.contains(&violation.addr),
            "violation names address {}",
            violation.addr
        );
        assert!(
            violation.detail.contains("expected"),
            "{}",
            violation.detail
        );
        assert!(violation
            .to_string()
            .contains(&format!("address {}", violation.addr)));
    }
    // A value that is neither old nor new, and a change to an address outside the transaction.
    let foreign = contents(&[(1, 0x11), (3, 0x33), (5, 0x55)]);
    let stray = log_intact(&foreign, &old, &new).expect_err("a stray write");
    assert!([1, 3, 5].contains(&stray.addr), "{stray}");
    let garbage = contents(&[(1, 0xff), (3, 0xa3)]);
    let garbled = log_intact(&garbage, &old, &new).expect_err("garbage");
    assert_eq!(garbled.addr, 1, "{garbled}");
}

#[test]
fn absent_and_zero_blocks_are_the_same() {
    let with_zero = contents(&[(1, 0x11), (2, 0)]);
    let without = contents(&[(1, 0x11)]);
    assert_eq!(first_difference(&with_zero, &without), None);
    log_intact(&with_zero, &without, &without).expect("zero equals absent");
    assert_eq!(
        first_difference(&contents(&[(4, 1), (2, 1)]), &Contents::new()),
        Some(2),
        "the lowest differing address"
    );
}

#[test]
fn matches_prefix_respects_the_durable_bound() {
    let states = [
        Contents::new(),
        contents(&[(0, 1)]),
        contents(&[(0, 1), (1, 2)]),
        contents(&[(0, 3), (1, 2)]),
    ];
    for (index, state) in states.iter().enumerate() {
        assert_eq!(matches_prefix(state, &states, 0).expect("a prefix"), index);
        assert_eq!(
            matches_prefix(state, &states, index).expect("at the bound"),
            index
        );
    }
    // Losing a durable commit is a violation even though the state was once valid.
    let lost =
        matches_prefix(&states[1], &states, 2).expect_err("state 1 is older than durable commit 2");
    assert_eq!(lost.addr, 0);
    // A hole: the third commit without the second is no prefix.
    let hole = contents(&[(0, 3)]);
    assert!(matches_prefix(&hole, &states, 0).is_err());
    // Nothing allowed at all past the end.
    assert!(matches_prefix(&states[3], &states, 4).is_err());
}
