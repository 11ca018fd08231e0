//! `txdisk serve`'s network safety from the command line: a non-loopback listen without TLS
//! refused (allowed with `--insecure`, with a warning), Unix sockets created 0600,
//! `--read-only` leaving the image's bytes as they were, PSK refused with the reason, and a
//! pair whose remote member is reached over TLS (qemu-nbd with X.509 credentials, through an
//! `nbds+unix://` URI). Checks that need a client program skip, saying why, where it is absent.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use txdisk_nbd::certs::{self, CertRequest, Generated};
use txdisk_nbd::testkit::clients::{find_tool, run_limited, run_ok};
use txdisk_nbd::testkit::ServerProcess;

fn txdisk_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_txdisk"));
    cmd.env("TXDISK_NBD_TIMEOUT_MS", "5000");
    cmd
}

fn txdisk(args: &[&str]) -> Output {
    txdisk_cmd().args(args).output().expect("run txdisk")
}

fn format(dir: &Path, name: &str) -> PathBuf {
    let image = dir.join(name);
    let out = txdisk(&[
        "format",
        image.to_str().unwrap(),
        "--size",
        "16M",
        "--log",
        "1M",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

fn credentials(dir: &Path) -> Generated {
    certs::generate(
        dir,
        &CertRequest {
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            clients: vec!["alice".into()],
        },
    )
    .expect("credentials")
}

fn missing(tools: &[&str]) -> bool {
    let absent: Vec<_> = tools.iter().filter(|t| find_tool(t).is_none()).collect();
    if !absent.is_empty() {
        println!("skipped: {absent:?} not installed (Debian packages qemu-utils, libnbd-bin)");
    }
    !absent.is_empty()
}

fn serve(args: &[&str]) -> ServerProcess {
    let mut cmd = txdisk_cmd();
    cmd.arg("serve").args(args).stderr(Stdio::piped());
    ServerProcess::spawn(cmd, Duration::from_secs(60)).expect("txdisk serve started")
}

fn stop(server: ServerProcess) {
    let status = server
        .terminate(Duration::from_secs(60))
        .expect("serve stopped");
    assert!(status.success(), "serve exited {status}");
}

#[test]
fn a_listen_other_machines_can_reach_needs_tls_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let image = format(dir.path(), "a.img");
    let image = image.to_str().unwrap();
    let out = txdisk(&["serve", image, "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "not one line: {stderr}");
    assert!(
        stderr.contains("without TLS") && stderr.contains("--insecure"),
        "{stderr}"
    );
    // TLS merely offered is not enough: a client could still skip it.
    let creds = credentials(&dir.path().join("creds"));
    let server_dir = creds.server_dir.to_str().unwrap();
    let args = [
        "serve",
        image,
        "--listen",
        "0.0.0.0:0",
        "--tls",
        "on",
        "--tls-certificates",
        server_dir,
    ];
    let out = txdisk(&args);
    assert_eq!(out.status.code(), Some(8), "{out:?}");

    let mut cmd = txdisk_cmd();
    cmd.args(["serve", image, "--listen", "0.0.0.0:0", "--insecure"])
        .stderr(Stdio::piped());
    let server = ServerProcess::spawn(cmd, Duration::from_secs(60)).expect("--insecure serves");
    assert!(!server.addr().ip().is_loopback());
    stop(server);

    // Required TLS makes the same address acceptable without --insecure.
    let server = serve(&[
        image,
        "--listen",
        "0.0.0.0:0",
        "--tls-certificates",
        server_dir,
    ]);
    stop(server);
}

#[test]
fn insecure_serving_warns_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let image = format(dir.path(), "a.img");
    let child: Child = txdisk_cmd()
        .args([
            "serve",
            image.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
            "--insecure",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("anyone who can"),
        "no warning: {stderr}"
    );
}

#[test]
fn a_unix_socket_is_for_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let image = format(dir.path(), "a.img");
    let socket = dir.path().join("nbd.sock");
    let mut child = txdisk_cmd()
        .args([
            "serve",
            image.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !socket.exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    if !missing(&["nbdinfo"]) {
        let uri = format!("nbd+unix:///txdisk?socket={}", socket.display());
        let info = run_ok(Command::new("nbdinfo").arg(&uri)).expect("nbdinfo over the socket");
        assert!(info.contains("export-size"), "{info}");
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert!(!socket.exists(), "the socket file was left behind");
}

fn file_hash(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(path).unwrap().hash(&mut h);
    h.finish()
}

fn qemu_io(addr: std::net::SocketAddr, read_only: bool, commands: &[&str]) -> Command {
    let mut cmd = Command::new("qemu-io");
    if read_only {
        cmd.arg("-r");
    }
    cmd.args(["-f", "raw"]).arg(format!("nbd://{addr}/txdisk"));
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd
}

#[test]
fn a_read_only_export_leaves_the_image_as_it_was() {
    if missing(&["qemu-io"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = format(dir.path(), "a.img");
    let image_arg = image.to_str().unwrap();
    let server = serve(&[image_arg, "--listen", "127.0.0.1:0"]);
    run_ok(&mut qemu_io(
        server.addr(),
        false,
        &["write -P 0x77 64k 64k"],
    ))
    .expect("write");
    stop(server);
    let before = file_hash(&image);

    let server = serve(&[image_arg, "--listen", "127.0.0.1:0", "--read-only"]);
    run_ok(&mut qemu_io(server.addr(), true, &["read -P 0x77 64k 64k"])).expect("read");
    // qemu opens a read-only export read-only, so ask for a write explicitly through a
    // writable open too: both must fail.
    let out = run_limited(
        &mut qemu_io(server.addr(), false, &["write -P 0x11 0 4k"]),
        Duration::from_secs(60),
    )
    .expect("qemu-io");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("Permission denied") || text.contains("read-only"),
        "a write was not refused: {text}"
    );
    run_ok(&mut qemu_io(
        server.addr(),
        true,
        &["read -P 0x77 64k 64k", "read -P 0 0 4k"],
    ))
    .expect("the data is unchanged");
    stop(server);
    assert_eq!(
        file_hash(&image),
        before,
        "serving read-only changed the image"
    );
}

#[test]
fn pre_shared_keys_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let image = format(dir.path(), "a.img");
    let key = dir.path().join("keys.psk");
    std::fs::write(&key, "alice:0123456789abcdef\n").unwrap();
    let out = txdisk(&[
        "serve",
        image.to_str().unwrap(),
        "--tls-psk",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(8));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pre-shared keys") && stderr.contains("X.509"),
        "{stderr}"
    );
    let uri = format!("nbds://127.0.0.1/x?tls-psk-file={}", key.display());
    let out = txdisk(&["fsck", image.to_str().unwrap(), &uri]);
    assert!(!out.status.success());
    let all =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(all.contains("pre-shared keys"), "{all}");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_pair_member_is_reached_over_tls() {
    if missing(&["qemu-nbd"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials(&dir.path().join("creds"));
    let remote = dir.path().join("remote.img");
    std::fs::File::create(&remote)
        .unwrap()
        .set_len(4096 * 4096)
        .unwrap();
    let socket = dir.path().join("qemu.sock");
    let child = Command::new("qemu-nbd")
        .arg("--object")
        .arg(format!(
            "tls-creds-x509,id=tls0,endpoint=server,dir={}",
            creds.server_dir.display()
        ))
        .args([
            "--tls-creds",
            "tls0",
            "-f",
            "raw",
            "-x",
            "disk",
            "--persistent",
            "-k",
        ])
        .arg(&socket)
        .arg(&remote)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-nbd");
    let _server = Killed(child);
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "qemu-nbd did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let alice = &creds.client_dirs[0].1;
    let plain = format!("nbd+unix:///disk?socket={}", socket.display());
    let uri = format!(
        "nbds+unix:///disk?socket={}&tls-certificates={}",
        socket.display(),
        alice.display()
    );
    let local = dir.path().join("local.img");
    let local = local.to_str().unwrap();
    // qemu-nbd with TLS refuses plain clients: the URI must say nbds.
    let out = txdisk(&["format", local, &plain, "--size", "4096", "--log", "256"]);
    assert!(
        !out.status.success(),
        "a plain client was served by a TLS server"
    );
    let out = txdisk(&["format", local, &uri, "--size", "4096", "--log", "256"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = txdisk(&["fsck", local, &uri]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = txdisk(&["scrub", local, &uri]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn format_pair(dir: &Path) -> (String, String) {
    let (d1, d2) = (dir.join("d1.img"), dir.join("d2.img"));
    let (d1, d2) = (d1.to_str().unwrap(), d2.to_str().unwrap());
    let out = txdisk(&["format", d1, d2, "--size", "16M", "--log", "1M"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (d1.to_string(), d2.to_string())
}

#[test]
fn the_control_socket_is_for_its_owner_only_and_never_beside_a_read_only_export() {
    let dir = tempfile::tempdir().unwrap();
    let (d1, d2) = format_pair(dir.path());
    let control = dir.path().join("control.sock");
    let control_s = control.to_str().unwrap();
    let out = txdisk(&["serve", &d1, &d2, "--read-only", "--control", control_s]);
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("read-only"), "{stderr}");
    assert!(
        !control.exists(),
        "a control socket was made for a read-only export"
    );

    let server = serve(&[&d1, &d2, "--listen", "127.0.0.1:0", "--control", control_s]);
    let meta = std::fs::metadata(&control).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    stop(server);
}
