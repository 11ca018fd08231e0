//! The CLI takes NBD URIs wherever it takes an image: `format`, `fsck` and `scrub` of a pair
//! whose second member is an nbdkit export on a Unix socket, and a clear error for a URI that
//! is not one. Skips, saying why, where nbdkit is absent.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn txdisk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_txdisk"))
        .args(args)
        .env("TXDISK_NBD_TIMEOUT_MS", "2000")
        .output()
        .expect("run txdisk")
}

struct Nbdkit(Child);

impl Drop for Nbdkit {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nbdkit(file: &Path, socket: &Path) -> Option<Nbdkit> {
    let child = Command::new("nbdkit")
        .args(["-f", "--exit-with-parent", "-U"])
        .arg(socket)
        .arg("file")
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        println!("skipped: nbdkit is not installed (apt-get install nbdkit)");
        return None;
    };
    let server = Nbdkit(child);
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

#[test]
fn format_fsck_and_scrub_take_an_nbd_uri() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote.img");
    std::fs::File::create(&remote)
        .unwrap()
        .set_len(4096 * 4096)
        .unwrap();
    let socket = dir.path().join("nbd.sock");
    let Some(_server) = nbdkit(&remote, &socket) else {
        return;
    };
    let local = dir.path().join("local.img");
    let local = local.to_str().unwrap();
    let uri = format!("nbd+unix:///disk?socket={}", socket.display());
    let run = txdisk(&["format", local, &uri, "--size", "4096", "--log", "256"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let run = txdisk(&["fsck", local, &uri]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    let run = txdisk(&["scrub", local, &uri]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
}

#[test]
fn a_bad_uri_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local.img");
    let run = txdisk(&[
        "format",
        local.to_str().unwrap(),
        "nbd+unix:///disk",
        "--size",
        "4096",
    ]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("socket=PATH"), "{stderr}");
    assert!(!local.exists(), "a refused format leaves nothing behind");
}
