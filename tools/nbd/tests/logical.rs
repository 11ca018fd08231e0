//! The logical disk served over NBD (the test server's `--txdisk` mode, the code behind
//! `txdisk serve`) against real clients: qemu-io patterns surviving SIGKILL and restart,
//! qemu-img convert of 64 MiB in and out, nbdinfo and nbdcopy; and FUA writes with SIGKILL at
//! random moments: every acknowledged write survives and every write is all-or-nothing.
//! Client checks print SKIP and pass only when the client program is not installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use txdisk_nbd::testkit::clients;
use txdisk_nbd::testkit::{fua_crash_rounds, CrashOptions};
use txdisk_nbd::testkit::{ServerProcess, Start};

const MIB: u64 = 1 << 20;

/// Spawns the test server on the logical disk over `images` in `dir`, formatting on `Fresh`.
fn txdisk_spawner(dir: &Path, pair: bool) -> impl FnMut(Start) -> std::io::Result<ServerProcess> {
    let images: Vec<PathBuf> = if pair {
        vec![dir.join("d1.img"), dir.join("d2.img")]
    } else {
        vec![dir.join("single.img")]
    };
    move |start| {
        let joined = images
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nbd-test-server"));
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--export",
            "disk",
            "--txdisk",
            &joined,
        ]);
        if let Start::Fresh { min_size_bytes } = start {
            for image in &images {
                let _ = std::fs::remove_file(image);
            }
            cmd.args(["--create", &min_size_bytes.to_string()]);
        }
        ServerProcess::spawn(cmd, Duration::from_secs(60))
    }
}

#[test]
fn qemu_io_patterns_survive_kill_on_a_replicated_pair() {
    let dir = tempfile::tempdir().unwrap();
    let mut spawn = txdisk_spawner(dir.path(), true);
    common::check(clients::qemu_io_patterns_survive_kill(&mut spawn, "disk"));
}

#[test]
fn qemu_img_convert_64_mib_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut spawn = txdisk_spawner(dir.path(), false);
    common::check(clients::qemu_img_convert_round_trip(
        &mut spawn,
        "disk",
        64 * MIB,
        dir.path(),
    ));
}

#[test]
fn nbdinfo_and_nbdcopy() {
    let dir = tempfile::tempdir().unwrap();
    let mut spawn = txdisk_spawner(dir.path(), false);
    common::check(clients::nbdinfo_reports_size_and_flags(&mut spawn, "disk"));
    common::check(clients::nbdcopy_round_trip(
        &mut spawn,
        "disk",
        16 * MIB,
        dir.path(),
    ));
}

#[test]
fn fua_writes_survive_sigkill_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut spawn = txdisk_spawner(dir.path(), false);
    let options = CrashOptions {
        seed: 0x7d15,
        rounds: 12,
        region_bytes: 256 * 1024,
        max_write_bytes: 64 * 1024,
        max_kill_delay_us: 200_000,
        atomic_writes: true,
        export: "disk".into(),
    };
    let report = fua_crash_rounds(&mut spawn, &options)
        .unwrap_or_else(|e| panic!("seed {:#x}: {e}", options.seed));
    println!("{report:?}");
    assert!(
        report.acked_writes > 0,
        "no write was acknowledged: {report:?}"
    );
    assert_eq!(report.interrupted_torn, 0, "a write was torn: {report:?}");
}
