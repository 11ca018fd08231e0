//! The control socket of a served pair: a Unix socket on which an operator asks for the pair's
//! state and replaces a failed member while the export keeps serving.
//!
//! One request per connection, one line each way:
//!
//! ```text
//!  → status\n                 ← {"ok":true,"degraded":false,"replicas":["active","active"],...}\n
//!  → replace IMAGE\n          ← {"ok":true,"replica":"d2","scanned_blocks":N,"copied_blocks":N}\n
//!                             ← {"ok":false,"error":"..."}\n    (any refusal)
//! ```
//!
//! `replace` opens IMAGE (a path or an NBD URI, blank or not: whatever it holds is
//! overwritten) and runs `ReplicatedDisk::rebuild` onto it: the member that failed (or is
//! missing) is replaced, every write keeps reaching both while the copy runs, and the new
//! member serves reads only once the copy is durable. A request line is bounded
//! ([`MAX_REQUEST_BYTES`]) and so is the wait for it ([`REQUEST_TIMEOUT`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use txdisk::replicated::{ReplicaStatus, ReplicatedDisk};

/// Longest request line accepted.
pub const MAX_REQUEST_BYTES: u64 = 8192;
/// A client that has not sent its request within this long is dropped.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the accept loop looks at the stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A running control socket; [`Control::stop`] ends it (and removes the socket file).
pub struct Control {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Control {
    /// Listens on `path` (which must not exist; made with mode 0600: whoever can connect can
    /// copy the disk to any image it names) for requests about `pair`.
    pub fn start(
        path: &Path,
        pair: Arc<ReplicatedDisk<txdisk::Image>>,
    ) -> std::io::Result<Control> {
        let listener = crate::server::bind_unix_private(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("txdisk-control".into())
            .spawn(move || accept_loop(&listener, &pair, &flag))?;
        Ok(Control {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// Stops accepting, waits for a request in progress (a rebuild runs to its end), removes
    /// the socket file.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            // A panic in a request is a bug below; the server is stopping either way.
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: &UnixListener, pair: &ReplicatedDisk<txdisk::Image>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => handle(stream, pair),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(POLL_INTERVAL)
            }
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                std::thread::sleep(POLL_INTERVAL);
            }
        }
    }
}

fn handle(stream: UnixStream, pair: &ReplicatedDisk<txdisk::Image>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut line = String::new();
    let read = BufReader::new(reader.take(MAX_REQUEST_BYTES)).read_line(&mut line);
    let reply = match read {
        Ok(_) => answer(line.trim_end_matches(['\r', '\n']), pair),
        Err(e) => error_json(&format!("reading the request: {e}")),
    };
    let mut stream = stream;
    let _ = stream.write_all(format!("{reply}\n").as_bytes());
}

/// The reply line to one request.
pub fn answer(request: &str, pair: &ReplicatedDisk<txdisk::Image>) -> String {
    let (command, argument) = request.split_once(' ').unwrap_or((request, ""));
    match command {
        "status" => status_json(pair),
        "replace" if !argument.is_empty() => {
            tracing::info!(image = argument, "control: replacing a member");
            let member = match txdisk::open_member(Path::new(argument)) {
                Ok(member) => member,
                Err(e) => return error_json(&format!("{argument}: {e}")),
            };
            let before = pair.status().replicas;
            match pair.rebuild(member, &mut |_| {}) {
                Ok(report) => {
                    let replica = if before[0] == ReplicaStatus::Active {
                        "d2"
                    } else {
                        "d1"
                    };
                    format!(
                        "{{\"ok\":true,\"replica\":\"{replica}\",\"scanned_blocks\":{},\"copied_blocks\":{}}}",
                        report.scanned_blocks, report.copied_blocks
                    )
                }
                Err(e) => error_json(&format!("rebuild onto {argument}: {e}")),
            }
        }
        _ => error_json("unknown request: `status` or `replace IMAGE`"),
    }
}

fn status_name(status: ReplicaStatus) -> &'static str {
    match status {
        ReplicaStatus::Active => "active",
        ReplicaStatus::Rebuilding => "rebuilding",
        ReplicaStatus::Failed => "failed",
        ReplicaStatus::Missing => "missing",
    }
}

fn status_json(pair: &ReplicatedDisk<txdisk::Image>) -> String {
    let s = pair.status();
    format!(
        "{{\"ok\":true,\"degraded\":{},\"replicas\":[\"{}\",\"{}\"],\"events\":{},\"data_size_blocks\":{}}}",
        s.is_degraded(),
        status_name(s.replicas[0]),
        status_name(s.replicas[1]),
        s.events,
        s.data_size_blocks
    )
}

fn error_json(message: &str) -> String {
    let escaped: String = message
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => vec![' '],
            c => vec![c],
        })
        .collect();
    format!("{{\"ok\":false,\"error\":\"{escaped}\"}}")
}

/// Sends one request to the control socket at `path` and returns the reply line. The wait is
/// bounded only by the request itself: a rebuild takes as long as the copy.
pub fn request(path: &Path, request: &str) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream.take(1 << 20)).read_line(&mut reply)?;
    Ok(reply.trim_end().to_string())
}
