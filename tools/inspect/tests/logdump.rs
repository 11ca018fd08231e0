//! The log dump shows the chain the log parser finds — sequence, position, home addresses and
//! checksum of each record — honours `-n`, `-b` and `--raw`, and says why the chain ends.

use txdisk_inspect::damaged::{make, Damage};
use txdisk_inspect::{logdump, DumpOptions};

#[test]
fn dump_shows_every_pending_record() {
    let dir = tempfile::tempdir().unwrap();
    let images = make(Damage::PendingPair, dir.path()).unwrap();
    let dump = logdump(&images[0], &DumpOptions::default()).unwrap();
    assert_eq!(
        dump.offset_blocks, 2,
        "a pair member's log starts after its metadata"
    );
    assert_eq!(dump.chain_records, 3);
    let homes: Vec<Vec<u64>> = dump
        .records
        .iter()
        .map(|r| r.record.addrs.clone())
        .collect();
    assert_eq!(homes, vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
    let text = dump.render_text();
    assert!(text.contains("home blocks: 2 3"), "{text}");
    assert!(text.contains("end of log: position"), "{text}");
    assert_eq!(
        dump.to_json()["stop_kind"],
        "unused",
        "nothing was ever written past the chain"
    );
    let json = dump.to_json();
    assert_eq!(json["records"].as_array().unwrap().len(), 3);
}

#[test]
fn count_and_block_filters() {
    let dir = tempfile::tempdir().unwrap();
    let images = make(Damage::PendingSingle, dir.path()).unwrap();
    let first_two = logdump(
        &images[0],
        &DumpOptions {
            max_records: Some(2),
            ..DumpOptions::default()
        },
    )
    .unwrap();
    assert_eq!(first_two.records.len(), 2);
    let touching = logdump(
        &images[0],
        &DumpOptions {
            block: Some(3),
            ..DumpOptions::default()
        },
    )
    .unwrap();
    assert_eq!(touching.records.len(), 1);
    assert_eq!(touching.records[0].record.addrs, vec![2, 3]);
    let none = logdump(
        &images[0],
        &DumpOptions {
            block: Some(99),
            ..DumpOptions::default()
        },
    )
    .unwrap();
    assert!(none.records.is_empty());
}

#[test]
fn raw_dump_holds_the_record_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let images = make(Damage::PendingSingle, dir.path()).unwrap();
    let dump = logdump(
        &images[0],
        &DumpOptions {
            raw: true,
            ..DumpOptions::default()
        },
    )
    .unwrap();
    let first = &dump.records[0];
    assert_eq!(first.raw.len() as u64, first.record.len_blocks);
    assert_eq!(
        &first.raw[0].block.as_bytes()[..8],
        b"TXDRECRD",
        "the first block is the descriptor"
    );
    assert!(
        first.raw[1].block.as_bytes().iter().all(|&b| b == 1),
        "the data block as committed"
    );
    let text = dump.render_text();
    assert!(
        text.contains("|TXDRECRD"),
        "hex dump shows the magic: {text}"
    );
    assert!(dump.stop_block.is_some());
}

#[test]
fn the_stop_reason_names_the_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let images = make(Damage::TornTail, dir.path()).unwrap();
    let dump = logdump(&images[0], &DumpOptions::default()).unwrap();
    assert_eq!(dump.chain_records, 1);
    let stop = dump.stop.to_string();
    assert!(stop.contains("checksum mismatch"), "{stop}");
    assert_eq!(txdisk_inspect::stop_kind(&dump.stop).0, "torn");
    assert!(dump.render_text().contains("its write never completed"));
    assert!(dump.corruption.is_none());
    let broken = make(Damage::BrokenChain, &dir.path().join("b").tap_mkdir()).unwrap();
    let dump = logdump(&broken[0], &DumpOptions::default()).unwrap();
    assert!(
        dump.corruption.is_some(),
        "a damaged acknowledged record is corruption"
    );
    assert_eq!(dump.beyond_stop.len(), 2);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn a_record_before_the_last_recovery_is_called_stale() {
    let dir = tempfile::tempdir().unwrap();
    let images = make(Damage::TornTail, dir.path()).unwrap();
    // Recovery replays the valid record and moves the sequence numbers past the torn one,
    // which stays where the next record will go: a stale record now, never a torn one.
    let options = txdisk_inspect::CheckOptions {
        repair: true,
        ..Default::default()
    };
    assert_eq!(
        txdisk_inspect::check(&images, &options)
            .unwrap()
            .exit_code(),
        1
    );
    let dump = logdump(&images[0], &DumpOptions::default()).unwrap();
    assert_eq!(dump.chain_records, 0);
    assert_eq!(
        txdisk_inspect::stop_kind(&dump.stop).0,
        "stale",
        "{}",
        dump.stop
    );
    assert!(
        dump.stop.to_string().contains("expected sequence"),
        "{}",
        dump.stop
    );
}
