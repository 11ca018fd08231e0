//! Checks the server against real NBD clients from Debian's packages — qemu-io and qemu-img
//! (qemu-utils), nbdinfo and nbdcopy (libnbd-bin) — with the test server process serving a
//! file, including data surviving a SIGKILL and restart. The checks live in
//! `testkit::clients`, so other server binaries can run them too. Each test prints SKIP and
//! passes only when its client program is not installed.

mod common;

use common::{check, spawner, Kind};
use txdisk_nbd::testkit::clients;

const MIB: u64 = 1 << 20;

#[test]
fn qemu_io_patterns_survive_kill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut spawn = spawner(dir.path(), Kind::File);
    check(clients::qemu_io_patterns_survive_kill(&mut spawn, "disk"));
}

#[test]
fn qemu_img_convert_64_mib_in_and_out_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let mut spawn = spawner(dir.path(), Kind::File);
    check(clients::qemu_img_convert_round_trip(
        &mut spawn,
        "disk",
        64 * MIB,
        dir.path(),
    ));
}

#[test]
fn nbdinfo_reports_size_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let mut spawn = spawner(dir.path(), Kind::File);
    check(clients::nbdinfo_reports_size_and_flags(&mut spawn, "disk"));
}

#[test]
fn nbdcopy_copies_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut spawn = spawner(dir.path(), Kind::Journal);
    check(clients::nbdcopy_round_trip(
        &mut spawn,
        "disk",
        16 * MIB,
        dir.path(),
    ));
}

#[test]
fn the_checks_fail_against_a_server_that_loses_data() {
    // A memory server restarted empty: the qemu-io check must notice the lost patterns.
    if clients::find_tool("qemu-io").is_none() {
        println!("SKIP: qemu-io not installed");
        return;
    }
    let mut spawn = |_| common::try_spawn_server(&["--mem".into(), (4 * MIB).to_string()]);
    let result = clients::qemu_io_patterns_survive_kill(&mut spawn, "disk");
    assert!(result.is_err(), "{result:?}");
}
