//! Kills the test server with SIGKILL at random moments while a client writes with FUA, and
//! checks after each restart that every acknowledged write is there and that the write in
//! flight landed whole or not at all (journalled backend) or at worst byte-wise old-or-new
//! (plain file). Also checks that SIGTERM and SIGINT stop the server cleanly with exit 0.

mod common;

use std::time::Duration;

use common::{spawn_server, spawner, Kind};
use txdisk_nbd::testkit::{fua_crash_rounds, CrashOptions};
use txdisk_nbd::Client;

const REGION_BYTES: u32 = 1 << 20;

fn options(seed: u64, atomic_writes: bool) -> CrashOptions {
    CrashOptions {
        seed,
        rounds: 16,
        region_bytes: REGION_BYTES,
        max_write_bytes: 256 * 1024,
        max_kill_delay_us: 60_000,
        atomic_writes,
        export: "disk".to_string(),
    }
}

#[test]
fn journalled_backend_keeps_every_fua_write_and_each_write_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut spawn = spawner(dir.path(), Kind::Journal);
    let report =
        fua_crash_rounds(&mut spawn, &options(0x5eed_0001, true)).unwrap_or_else(|e| panic!("{e}"));
    println!("journal: {report:?}");
    assert!(report.acked_writes > 0, "the workload never got a write in");
    assert_eq!(report.interrupted_torn, 0);
}

#[test]
fn file_backend_keeps_every_fua_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut spawn = spawner(dir.path(), Kind::File);
    let report = fua_crash_rounds(&mut spawn, &options(0x5eed_0002, false))
        .unwrap_or_else(|e| panic!("{e}"));
    println!("file: {report:?}");
    assert!(report.acked_writes > 0, "the workload never got a write in");
}

#[test]
fn sigterm_and_sigint_stop_cleanly_with_exit_0_and_keep_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let img_s = img.to_str().unwrap();
    for (round, signal) in [libc::SIGTERM, libc::SIGINT].into_iter().enumerate() {
        let server = if round == 0 {
            spawn_server(&["--file", img_s, "--create", "1048576"])
        } else {
            spawn_server(&["--file", img_s])
        };
        let mut c = Client::connect(server.addr(), "disk").unwrap();
        let tag = format!("written before signal {signal}");
        c.write(1000 * round as u64, tag.as_bytes(), false).unwrap();
        server.signal(signal).unwrap();
        // The open connection does not hold the stop up: the server closes it.
        let status = server.wait_exit(Duration::from_secs(30)).unwrap();
        assert_eq!(status.code(), Some(0), "exit status after signal {signal}");
        assert!(
            c.read(0, 1).is_err(),
            "connection still open after the stop"
        );
        let data = std::fs::read(&img).unwrap();
        let at = 1000 * round;
        assert_eq!(&data[at..at + tag.len()], tag.as_bytes());
    }
}
