//! Helpers shared by the integration tests: in-process servers, server processes, and
//! external clients run with a time limit.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use txdisk_nbd::testkit::ServerProcess;
use txdisk_nbd::{ExportBackend, ServeStats, Server, ServerOptions};

/// A server running on a thread of the test process.
pub struct InProcess<B: ExportBackend> {
    pub addr: SocketAddr,
    pub backend: Arc<B>,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<txdisk_nbd::Result<ServeStats>>,
}

impl<B: ExportBackend> InProcess<B> {
    pub fn start(backend: Arc<B>) -> InProcess<B> {
        InProcess::start_with(backend, ServerOptions::default())
    }

    pub fn start_with(backend: Arc<B>, opts: ServerOptions) -> InProcess<B> {
        let server = Server::bind("127.0.0.1:0", "disk", backend.clone())
            .expect("bind")
            .with_options(opts)
            .expect("options");
        let addr = server.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || server.serve_until(&flag));
        InProcess {
            addr,
            backend,
            stop,
            handle,
        }
    }

    /// Stops the server and waits (bounded) for `serve_until` to return.
    pub fn stop(self) -> ServeStats {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.handle.is_finished() {
            assert!(Instant::now() < deadline, "server did not stop within 30 s");
            thread::sleep(Duration::from_millis(5));
        }
        self.handle
            .join()
            .expect("server thread")
            .expect("serve_until")
    }
}

/// Starts the test server binary with `args`.
pub fn spawn_server(args: &[&str]) -> ServerProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nbd-test-server"));
    cmd.args(args).stderr(Stdio::null());
    ServerProcess::spawn(cmd, Duration::from_secs(20)).expect("spawn nbd-test-server")
}

/// The path of an external program, or None (after saying why the test is skipped).
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        println!("SKIP: {name} is not installed (Debian: qemu-utils / libnbd-bin)");
    }
    found
}

/// Runs `cmd` to completion, killing it after `limit`; panics on timeout.
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for client"),
        Err(_) => {
            // SAFETY: kill(2) takes plain integers and touches no memory of ours.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

/// Runs `cmd` and asserts it exited 0; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run_limited(cmd, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn nbd_uri(addr: SocketAddr) -> String {
    format!("nbd://{addr}/disk")
}

/// Deterministic test content: mostly pseudo-random, with some all-zero stretches.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = txdisk_nbd::testkit::SplitMix64::new(seed);
    let mut data = vec![0u8; len];
    rng.fill(&mut data);
    for chunk in data.chunks_mut(1 << 20).step_by(5) {
        chunk.fill(0);
    }
    data
}
