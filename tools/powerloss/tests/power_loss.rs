//! The power-loss file system keeps exactly what was synced; the stack, the pair, the NBD
//! server and the file system survive power losses through it with nothing acknowledged lost;
//! and a `FileDisk` whose `sync` skips `fdatasync` is caught, with a token that replays it.
//! Every test skips, saying why, where FUSE cannot be mounted.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;
use txdisk_disk::bugs::{self, Bug};
use txdisk_powerloss::campaign::{self, Run, Target};
use txdisk_powerloss::{unavailable, Loss, PowerLossMount, PAGE_BYTES, SECTOR_BYTES};

fn skip() -> bool {
    match unavailable() {
        Some(reason) => {
            println!("skipped: {reason}");
            true
        }
        None => false,
    }
}

fn mounted(dir: &Path) -> PowerLossMount {
    let backing = dir.join("backing");
    let mountpoint = dir.join("mnt");
    std::fs::create_dir(&backing).unwrap();
    std::fs::create_dir(&mountpoint).unwrap();
    PowerLossMount::mount(&backing, &mountpoint).expect("mount")
}

/// A file of `pages` pages: the first half synced as 0x11, then all of it rewritten as 0x22
/// and left unsynced.
fn half_synced(mount: &PowerLossMount, name: &str, pages: usize) -> std::fs::File {
    let path = mount.path().join(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    file.write_all_at(&vec![0x11; pages / 2 * PAGE_BYTES], 0)
        .unwrap();
    file.sync_data().unwrap();
    file.write_all_at(&vec![0x22; pages * PAGE_BYTES], 0)
        .unwrap();
    let mut back = vec![0; pages * PAGE_BYTES];
    file.read_exact_at(&mut back, 0).unwrap();
    assert!(back.iter().all(|&b| b == 0x22), "reads see unsynced writes");
    file
}

fn contents(mount: &PowerLossMount, name: &str) -> Vec<u8> {
    std::fs::read(mount.path().join(name)).unwrap()
}

#[test]
fn a_power_loss_keeps_exactly_what_was_synced() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = mounted(dir.path());
    let file = half_synced(&mount, "f", 8);
    assert_eq!(mount.pending_pages(), 8);
    let report = mount.lose_power(Loss::All).unwrap();
    assert_eq!(report.pending_pages, 8);
    // The handle died with the power.
    let error = file.write_all_at(b"x", 0).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}");
    drop(file);
    let after = contents(&mount, "f");
    assert_eq!(
        after.len(),
        4 * PAGE_BYTES,
        "the unsynced extension is gone"
    );
    assert!(after.iter().all(|&b| b == 0x11), "only synced bytes remain");
}

#[test]
fn a_seeded_loss_keeps_whole_pages_or_torn_sectors() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = mounted(dir.path());
    drop(half_synced(&mount, "pages", 16));
    drop(half_synced(&mount, "sectors", 16));
    // One loss covers both files; run it twice on fresh files to see each kind.
    let report = mount.lose_power(Loss::Blocks { seed: 5 }).unwrap();
    assert_eq!(report.pending_pages, 32);
    assert!(
        report.kept_pages > 0 && report.kept_pages < 32,
        "{report:?}"
    );
    for name in ["pages", "sectors"] {
        for (index, page) in contents(&mount, name).chunks(PAGE_BYTES).enumerate() {
            let first = page[0];
            // Past the synced half a dropped page is a hole below a kept one: zeros.
            let old = if index < 8 { 0x11 } else { 0x00 };
            assert!(first == old || first == 0x22, "page {index} of other bytes");
            assert!(page.iter().all(|&b| b == first), "a page kept in part");
        }
    }
    drop(half_synced(&mount, "torn", 16));
    let report = mount.lose_power(Loss::TornSectors { seed: 9 }).unwrap();
    assert!(report.kept_sectors > 0, "{report:?}");
    let torn = contents(&mount, "torn");
    let mixed = torn.chunks(PAGE_BYTES).any(|page| {
        let sectors: Vec<u8> = page.chunks(SECTOR_BYTES).map(|s| s[0]).collect();
        sectors.iter().any(|&s| s != sectors[0])
    });
    assert!(mixed, "no page was torn between old and new sectors");
    for sector in torn.chunks(SECTOR_BYTES) {
        assert!(
            sector.iter().all(|&b| b == sector[0]),
            "a sector kept in part"
        );
    }
}

#[test]
fn names_survive_and_a_missing_file_is_not_found() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = mounted(dir.path());
    std::fs::write(mount.path().join("a"), b"data").unwrap();
    std::fs::rename(mount.path().join("a"), mount.path().join("b")).unwrap();
    mount.lose_power(Loss::All).unwrap();
    let names: Vec<_> = std::fs::read_dir(mount.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["b"]);
    assert_eq!(std::fs::metadata(mount.path().join("b")).unwrap().len(), 0);
    let error = std::fs::read(mount.path().join("a")).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
    std::fs::remove_file(mount.path().join("b")).unwrap();
}

/// The CI budget: seeds per target, the loss kinds in turn.
const SEEDS: u64 = 6;

fn campaign(target: Target) {
    if skip() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let kinds = ["all", "blocks", "torn"];
    let mut total = campaign::RunReport::default();
    for seed in 0..SEEDS {
        let run = Run {
            target,
            loss: kinds[seed as usize % kinds.len()],
            seed,
        };
        let report = campaign::run(&run, scratch.path()).unwrap_or_else(|v| panic!("{v}"));
        assert_eq!(report.losses, campaign::ROUNDS, "{}", run.token());
        total.losses += report.losses;
        total.committed += report.committed;
        total.pending_pages += report.pending_pages;
        total.syncs += report.syncs;
    }
    println!("{}: {total:?}", target.name());
    assert!(
        total.pending_pages > 0,
        "no loss ever found anything to drop"
    );
    assert!(total.syncs > 0, "nothing was ever synced through the mount");
}

#[test]
fn file_disk_survives_power_losses() {
    campaign(Target::File);
}

#[test]
fn replicated_pair_survives_power_losses() {
    campaign(Target::Pair);
}

#[test]
fn nbd_server_survives_power_losses() {
    campaign(Target::Serve);
}

#[test]
fn file_system_survives_power_losses() {
    campaign(Target::Fs);
}

#[test]
fn a_sync_without_fdatasync_is_caught_and_its_token_replays() {
    if skip() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    bugs::set_under(Bug::SyncWithoutFdatasync, scratch.path());
    let caught = (0..SEEDS).find_map(|seed| {
        let run = Run {
            target: Target::File,
            loss: "all",
            seed,
        };
        campaign::run(&run, scratch.path()).err()
    });
    let violation = caught.expect("the CI budget did not catch a sync without fdatasync");
    println!("caught: {violation}");
    assert!(
        violation.message.contains("acknowledged durable")
            || violation.message.contains("after a power loss"),
        "{violation}"
    );
    let again = campaign::replay(&violation.token, scratch.path())
        .expect_err("the token did not replay the violation");
    assert_eq!(again.token, violation.token);
    bugs::clear_under(scratch.path());
    campaign::replay(&violation.token, scratch.path())
        .unwrap_or_else(|v| panic!("the correct stack fails the same run: {v}"));
}

#[test]
fn tokens_round_trip_and_bad_ones_are_refused() {
    let run = Run {
        target: Target::Serve,
        loss: "torn",
        seed: 42,
    };
    assert_eq!(Run::from_token(&run.token()), Ok(run));
    for bad in [
        "",
        "plt1-file-all",
        "plt1-disk-all-1",
        "plt1-file-some-1",
        "txf1-file-all-1",
        "plt1-file-all-1-2",
    ] {
        assert!(Run::from_token(bad).is_err(), "{bad:?} accepted");
    }
}
