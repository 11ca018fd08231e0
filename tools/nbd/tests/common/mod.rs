//! Helpers shared by the integration tests: in-process servers, and the test server binary
//! started as a process over a file or a journal.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use txdisk_nbd::testkit::clients::{CheckResult, Outcome};
use txdisk_nbd::testkit::{ServerProcess, Start};
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
pub fn try_spawn_server(args: &[String]) -> io::Result<ServerProcess> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nbd-test-server"));
    cmd.args(args).stderr(Stdio::null());
    ServerProcess::spawn(cmd, Duration::from_secs(20))
}

pub fn spawn_server(args: &[&str]) -> ServerProcess {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    try_spawn_server(&args).expect("spawn nbd-test-server")
}

/// Which backend the test server process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A plain file (`FileBackend`): durable, not atomic.
    File,
    /// The journalled backend: durable and all-or-nothing per write.
    Journal,
}

/// A `Spawn` for the testkit checks: fresh images and restarts in `dir`.
pub fn spawner(dir: &Path, kind: Kind) -> impl FnMut(Start) -> io::Result<ServerProcess> {
    let path: PathBuf = dir.join(match kind {
        Kind::File => "disk.img",
        Kind::Journal => "journal",
    });
    let mut size_bytes = 0u64;
    move |start| {
        let p = path.to_string_lossy().into_owned();
        if let Start::Fresh { min_size_bytes } = start {
            size_bytes = min_size_bytes;
            let _ = std::fs::remove_file(&path);
        }
        let args = match (kind, start) {
            (Kind::File, Start::Fresh { .. }) => vec![
                "--file".into(),
                p,
                "--create".into(),
                size_bytes.to_string(),
            ],
            (Kind::File, Start::Again) => vec!["--file".into(), p],
            (Kind::Journal, _) => vec![
                "--journal".into(),
                p,
                "--size".into(),
                size_bytes.to_string(),
            ],
        };
        try_spawn_server(&args)
    }
}

/// Passes on `Passed`, prints the reason on `Skipped`, panics on Err.
pub fn check(result: CheckResult) {
    match result {
        Ok(Outcome::Passed) => {}
        Ok(Outcome::Skipped(why)) => println!("SKIP: {why}"),
        Err(e) => panic!("{e}"),
    }
}
