//! `txdisk serve --control` and `txdisk replace`: a pair whose second member is an nbdkit
//! export is served; the server is killed with SIGKILL, a write through the export degrades
//! the pair, `replace` with no image reports it, and `replace URI` rebuilds onto a new export
//! while serving, after which both members are active. Skips, saying why, where nbdkit is
//! absent.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use txdisk_nbd::client::Client;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nbdkit(file: &Path, socket: &Path) -> Option<Proc> {
    std::fs::File::create(file)
        .unwrap()
        .set_len(4096 * 4096)
        .unwrap();
    let child = Command::new("nbdkit")
        .args(["-f", "--exit-with-parent", "-U"])
        .arg(socket)
        .arg("file")
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let server = Proc(child);
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nbdkit did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

fn txdisk(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_txdisk"))
        .args(args)
        .env("TXDISK_NBD_TIMEOUT_MS", "1000")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn replace_rebuilds_a_failed_remote_member_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, socket) = (dir.path().join("remote.img"), dir.path().join("nbd.sock"));
    let Some(server) = nbdkit(&remote, &socket) else {
        println!("skipped: nbdkit is not installed (apt-get install nbdkit)");
        return;
    };
    let local = dir.path().join("local.img");
    let local = local.to_str().unwrap();
    let uri = format!("nbd+unix:///disk?socket={}", socket.display());
    let (code, out) = txdisk(&["format", local, &uri, "--size", "4096", "--log", "256"]);
    assert_eq!(code, 0, "{out}");
    let control = dir.path().join("control.sock");
    let control_s = control.to_str().unwrap();
    let serve = Command::new(env!("CARGO_BIN_EXE_txdisk"))
        .args([
            "serve",
            local,
            &uri,
            "--listen",
            "127.0.0.1:0",
            "--control",
            control_s,
        ])
        .env("TXDISK_NBD_TIMEOUT_MS", "1000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut serve = Proc(serve);
    let mut line = String::new();
    BufReader::new(serve.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .trim_start_matches("listening on ")
        .parse()
        .unwrap();
    let (code, out) = txdisk(&["replace", "--control", control_s]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"degraded\":false"), "{out}");

    drop(server); // SIGKILL: the remote member is gone
    let mut client = Client::connect(addr, "txdisk").unwrap();
    client.write(0, &[7u8; 4096], false).unwrap();
    client.flush().unwrap(); // served by the local member alone
    let (code, out) = txdisk(&["replace", "--control", control_s]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"degraded\":true"), "{out}");

    let (remote2, socket2) = (dir.path().join("remote2.img"), dir.path().join("nbd2.sock"));
    let _server2 = nbdkit(&remote2, &socket2).unwrap();
    let uri2 = format!("nbd+unix:///disk?socket={}", socket2.display());
    let (code, out) = txdisk(&["replace", "--control", control_s, &uri2]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"replica\":\"d2\""), "{out}");
    let (code, out) = txdisk(&["replace", "--control", control_s]);
    assert!(
        out.contains("\"replicas\":[\"active\",\"active\"]"),
        "{code} {out}"
    );
    assert_eq!(client.read(0, 4096).unwrap(), vec![7u8; 4096]);
    client.disconnect().unwrap();
    // A refused request is an error reply, not a crash of the server.
    let (code, out) = txdisk(&["replace", "--control", control_s, "nbd+unix:///x"]);
    assert_eq!(code, 8, "{out}");
    assert!(out.contains("socket=PATH"), "{out}");
}
