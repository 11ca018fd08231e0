//! Checks the server against real NBD clients from Debian's packages — qemu-io and qemu-img
//! (qemu-utils), nbdinfo and nbdcopy (libnbd-bin) — serving a file from the test server
//! process, including data surviving a SIGKILL and restart. Each test prints SKIP and passes
//! only when its client program is not installed.

mod common;

use std::process::Command;

use common::{nbd_uri, pattern, run_ok, spawn_server, tool};

const MIB: u64 = 1 << 20;

fn qemu_io(uri: &str, cmds: &[String]) -> String {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in cmds {
        cmd.args(["-c", c]);
    }
    cmd.arg(uri);
    let out = run_ok(&mut cmd);
    assert!(
        !out.contains("Pattern verification failed") && !out.contains("failed"),
        "qemu-io reported a failure:\n{out}"
    );
    out
}

/// (offset, length, pattern byte): aligned, unaligned, sub-sector, block-straddling.
const WRITES: [(u64, u64, u8); 6] = [
    (0, 65536, 0x11),
    (65536 + 4096, 4096, 0x22),
    (200_001, 3, 0x33),
    (131_071, 2, 0x44),
    (300_000, 123_457, 0x55),
    (4 * MIB - 513, 513, 0x66),
];

#[test]
fn qemu_io_patterns_survive_kill_and_restart() {
    if tool("qemu-io").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let img_s = img.to_str().unwrap();
    let server = spawn_server(&["--file", img_s, "--create", &(4 * MIB).to_string()]);
    let uri = nbd_uri(server.addr());
    let mut cmds: Vec<String> = WRITES
        .iter()
        .map(|(o, l, p)| format!("write -P {p:#x} {o} {l}"))
        .collect();
    cmds.extend(
        WRITES
            .iter()
            .map(|(o, l, p)| format!("read -P {p:#x} {o} {l}")),
    );
    // Bytes around the writes stay zero.
    cmds.push("read -P 0 65536 4096".to_string());
    cmds.push("read -P 0 200004 1000".to_string());
    cmds.push("flush".to_string());
    let out = qemu_io(&uri, &cmds);
    assert_eq!(out.matches("wrote ").count(), WRITES.len(), "{out}");
    // A kill -9 after FLUSH loses nothing.
    server.kill9().unwrap();
    let server = spawn_server(&["--file", img_s]);
    let uri = nbd_uri(server.addr());
    let mut cmds: Vec<String> = WRITES
        .iter()
        .map(|(o, l, p)| format!("read -P {p:#x} {o} {l}"))
        .collect();
    // And the check itself can fail: a wrong pattern is reported.
    let out = qemu_io(&uri, &cmds);
    assert_eq!(out.matches("read ").count(), WRITES.len(), "{out}");
    cmds = vec!["read -P 0x99 0 512".to_string()];
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw", "-c", &cmds[0], &uri]);
    let out = common::run_limited(&mut cmd, std::time::Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Pattern verification failed"), "{text}");
    server
        .terminate(std::time::Duration::from_secs(30))
        .unwrap();
}

#[test]
fn qemu_img_convert_64_mib_in_and_out_is_byte_identical() {
    if tool("qemu-img").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    let back = dir.path().join("back.img");
    let img = dir.path().join("export.img");
    let data = pattern(7, (64 * MIB) as usize);
    std::fs::write(&src, &data).unwrap();
    let server = spawn_server(&[
        "--file",
        img.to_str().unwrap(),
        "--create",
        &(64 * MIB).to_string(),
    ]);
    let uri = nbd_uri(server.addr());
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw", "-O", "raw"])
            .arg(&src)
            .arg(&uri),
    );
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "raw", &uri])
            .arg(&back),
    );
    let status = server
        .terminate(std::time::Duration::from_secs(30))
        .unwrap();
    assert!(status.success(), "server exit: {status}");
    assert!(
        std::fs::read(&back).unwrap() == data,
        "qemu-img convert out differs"
    );
    assert!(
        std::fs::read(&img).unwrap() == data,
        "the served file differs"
    );
}

#[test]
fn nbdinfo_reports_size_and_flags() {
    if tool("nbdinfo").is_none() {
        return;
    }
    let server = spawn_server(&["--mem", "3000000"]);
    let out = run_ok(Command::new("nbdinfo").args(["--json", &nbd_uri(server.addr())]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let export = &json["exports"][0];
    assert_eq!(export["export-name"], "disk");
    assert_eq!(export["export-size"], 3_000_000);
    for (flag, want) in [
        ("can_flush", true),
        ("can_fua", true),
        ("can_trim", true),
        ("can_multi_conn", true),
        ("is_read_only", false),
        ("can_zero", false),
    ] {
        assert_eq!(export[flag], want, "{flag} in {out}");
    }
    assert_eq!(export["block_size_maximum"], 32 << 20);
    let list = run_ok(Command::new("nbdinfo").args([
        "--list",
        "--json",
        &format!("nbd://{}", server.addr()),
    ]));
    assert!(list.contains("\"disk\""), "{list}");
}

#[test]
fn nbdcopy_copies_in_and_out() {
    if tool("nbdcopy").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    let back = dir.path().join("back.img");
    let size = 16 * MIB;
    let data = pattern(11, size as usize);
    std::fs::write(&src, &data).unwrap();
    let server = spawn_server(&["--mem", &size.to_string()]);
    let uri = nbd_uri(server.addr());
    // nbdcopy uses several connections at once when the export allows multi-conn.
    run_ok(Command::new("nbdcopy").arg(&src).arg(&uri));
    std::fs::write(&back, b"").unwrap();
    run_ok(Command::new("nbdcopy").arg(&uri).arg(&back));
    assert!(
        std::fs::read(&back).unwrap() == data,
        "nbdcopy round trip differs"
    );
    server
        .terminate(std::time::Duration::from_secs(30))
        .unwrap();
}
