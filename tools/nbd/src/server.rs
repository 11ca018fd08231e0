//! The listening server: accepts connections, one thread each, until told to stop.
//!
//! Stopping (the flag passed to [`Server::serve_until`] turns true): stop accepting, shut the
//! read side of every connection so its reader sees end of stream, let in-flight requests
//! finish and be answered (bounded by `stop_grace`; after it, sockets are closed outright),
//! join every connection thread, then flush the backend once. Only then does `serve_until`
//! return, so a caller that exits 0 afterwards has made every acknowledged write durable.

use std::collections::HashMap;
use std::io::{self, BufReader};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::backend::ExportBackend;
use crate::error::{NbdError, Result};
use crate::handshake::{self, ExportInfo, Outcome};
use crate::proto;
use crate::transmission::{self, Counters, End, ReplyWriter};

/// Tunables of a server; the defaults suit qemu and libnbd clients.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Threads per connection running requests against the backend.
    pub workers_per_connection: usize,
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Largest READ or WRITE accepted (advertised as the maximum block size). Over a
    /// transactional backend, lower it to what one transaction can hold (an unaligned write
    /// touches one block more than its length suggests).
    pub max_payload_bytes: u32,
    /// Payload bytes one connection may hold in flight.
    pub max_inflight_bytes: u64,
    /// Requests one connection may have in flight.
    pub max_inflight_requests: usize,
    /// A client that does not take a reply within this time is disconnected.
    pub reply_timeout: Duration,
    /// A client that has not finished the handshake within this time is disconnected (in
    /// transmission a client may stay idle as long as it likes).
    pub handshake_timeout: Duration,
    /// How long a stop waits for in-flight requests before closing sockets outright.
    pub stop_grace: Duration,
    /// How often the accept loop looks at the stop flag.
    pub poll_interval: Duration,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            workers_per_connection: 4,
            max_connections: 64,
            // What qemu and libnbd clients assume when nothing is advertised.
            max_payload_bytes: 32 * 1024 * 1024,
            max_inflight_bytes: 64 * 1024 * 1024,
            max_inflight_requests: 64,
            reply_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
            poll_interval: Duration::from_millis(10),
        }
    }
}

/// Totals of one `serve_until` run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Connections accepted and served.
    pub connections: u64,
    /// Connections closed unserved because `max_connections` were open.
    pub refused_connections: u64,
    /// Requests answered, successfully or not.
    pub requests: u64,
    /// Requests answered with an NBD error value.
    pub error_replies: u64,
    /// Connections closed because the client broke the protocol.
    pub protocol_violations: u64,
}

/// Transmission flags of every export: flush, FUA and trim are supported, and every
/// connection shares one backend whose flush covers all of them (so multi-conn is safe).
pub const TRANSMISSION_FLAGS: u16 = proto::TFLAG_HAS_FLAGS
    | proto::TFLAG_SEND_FLUSH
    | proto::TFLAG_SEND_FUA
    | proto::TFLAG_SEND_TRIM
    | proto::TFLAG_CAN_MULTI_CONN;

/// An NBD server with one named export over one backend.
pub struct Server<B: ExportBackend> {
    listener: TcpListener,
    export_name: String,
    backend: Arc<B>,
    opts: ServerOptions,
}

struct Shared<B> {
    backend: Arc<B>,
    export: ExportInfo,
    opts: ServerOptions,
    stopping: AtomicBool,
    counters: Counters,
    violations: AtomicU64,
    /// Connections accepted so far; also the next connection's id.
    connections: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    refused: AtomicU64,
    /// Read/write clones of every open connection's socket, to stop them.
    open: Mutex<HashMap<u64, TcpStream>>,
}

impl<B: ExportBackend> Server<B> {
    /// Listens on `addr` (e.g. `127.0.0.1:10809`; port 0 picks a free one).
    pub fn bind(addr: &str, export_name: &str, backend: Arc<B>) -> Result<Server<B>> {
        if export_name.len() > proto::MAX_STRING_BYTES {
            return Err(NbdError::NameTooLong {
                len: export_name.len(),
            });
        }
        let listener = TcpListener::bind(addr).map_err(|source| NbdError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        Ok(Server {
            listener,
            export_name: export_name.to_string(),
            backend,
            opts: ServerOptions::default(),
        })
    }

    /// Replaces the default options. Err if they break the protocol's rules on block sizes
    /// (the maximum payload must be at least 4096 bytes, or the whole export if smaller) or
    /// cannot hold one maximum request in flight.
    pub fn with_options(mut self, opts: ServerOptions) -> Result<Server<B>> {
        let floor = self.backend.size_bytes().clamp(1, 4096);
        if u64::from(opts.max_payload_bytes) < floor {
            return Err(NbdError::BadOptions(format!(
                "max_payload_bytes {} is below {floor}",
                opts.max_payload_bytes
            )));
        }
        if opts.max_inflight_bytes < u64::from(opts.max_payload_bytes) {
            return Err(NbdError::BadOptions(format!(
                "max_inflight_bytes {} is below max_payload_bytes {}",
                opts.max_inflight_bytes, opts.max_payload_bytes
            )));
        }
        self.opts = opts;
        Ok(self)
    }

    /// The address actually bound (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` turns true, then drains, closes and flushes the backend (see the
    /// module comment). Errors: the listener failed, or the final flush did.
    pub fn serve_until(self, stop: &AtomicBool) -> Result<ServeStats> {
        let shared = Arc::new(Shared {
            export: ExportInfo {
                name: self.export_name.clone(),
                size_bytes: self.backend.size_bytes(),
                transmission_flags: TRANSMISSION_FLAGS,
                min_block_bytes: 1,
                preferred_block_bytes: 4096,
                max_payload_bytes: self.opts.max_payload_bytes,
            },
            backend: self.backend,
            opts: self.opts,
            stopping: AtomicBool::new(false),
            counters: Counters::default(),
            violations: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        });
        self.listener.set_nonblocking(true)?;
        let mut threads = Vec::new();
        let accepted = accept_loop(&self.listener, &shared, stop, &mut threads);
        drop(self.listener);
        stop_connections(&shared, threads);
        shared.backend.flush()?;
        accepted?;
        Ok(ServeStats {
            connections: shared.connections.load(Ordering::SeqCst),
            refused_connections: shared.refused.load(Ordering::SeqCst),
            requests: shared.counters.requests.load(Ordering::SeqCst),
            error_replies: shared.counters.error_replies.load(Ordering::SeqCst),
            protocol_violations: shared.violations.load(Ordering::SeqCst),
        })
    }
}

fn accept_loop<B: ExportBackend>(
    listener: &TcpListener,
    shared: &Arc<Shared<B>>,
    stop: &AtomicBool,
    threads: &mut Vec<JoinHandle<()>>,
) -> io::Result<()> {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                threads.retain(|t| !t.is_finished());
                if shared.open.lock().len() >= shared.opts.max_connections {
                    // Refused before the greeting: each connection costs threads.
                    tracing::warn!(
                        "nbd: refusing {peer}: {} connections open",
                        shared.opts.max_connections
                    );
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                    continue;
                }
                let id = shared.connections.fetch_add(1, Ordering::SeqCst);
                match start_connection(stream, id, shared) {
                    Ok(t) => threads.push(t),
                    Err(e) => tracing::warn!("nbd: cannot start connection from {peer}: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(shared.opts.poll_interval)
            }
            Err(e) if is_transient_accept_error(&e) => thread::sleep(shared.opts.poll_interval),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Errors after which accepting again is the right thing (a client that gave up, or a
/// passing shortage of descriptors).
fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS)
    )
}

fn start_connection<B: ExportBackend>(
    stream: TcpStream,
    id: u64,
    shared: &Arc<Shared<B>>,
) -> io::Result<JoinHandle<()>> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(shared.opts.reply_timeout))?;
    shared.open.lock().insert(id, stream.try_clone()?);
    let conn_shared = shared.clone();
    let spawned = thread::Builder::new()
        .name(format!("nbd-conn-{id}"))
        .spawn(move || {
            serve_connection(stream, &conn_shared);
            conn_shared.open.lock().remove(&id);
        });
    if spawned.is_err() {
        // The thread never started: forget the socket, which closes it.
        shared.open.lock().remove(&id);
    }
    spawned
}

fn serve_connection<B: ExportBackend>(stream: TcpStream, shared: &Shared<B>) {
    let (read_half, mut write_half) = match stream.try_clone() {
        Ok(r) => (r, stream),
        Err(e) => {
            tracing::warn!("nbd: cannot clone socket: {e}");
            return;
        }
    };
    // Buffered reads: one syscall brings in many pipelined request headers.
    let mut reader = BufReader::with_capacity(256 * 1024, read_half);
    let stopping = || shared.stopping.load(Ordering::SeqCst);
    // The timeout bounds each read of the handshake; with at most
    // MAX_OPTIONS_PER_CONNECTION options that bounds the whole handshake too.
    let _ = write_half.set_read_timeout(Some(shared.opts.handshake_timeout));
    let negotiated = handshake::negotiate(&mut reader, &mut write_half, &shared.export, &stopping);
    if write_half.set_read_timeout(None).is_err() {
        return;
    }
    match negotiated {
        Ok(Outcome::Transmission) => {}
        Ok(Outcome::Close(why)) => {
            tracing::debug!("nbd: handshake ended: {why}");
            if why != "client aborted" {
                shared.violations.fetch_add(1, Ordering::Relaxed);
            }
            let _ = write_half.shutdown(Shutdown::Both);
            return;
        }
        Err(e) => {
            tracing::debug!("nbd: handshake I/O failed: {e}");
            return;
        }
    }
    let replies = Arc::new(ReplyWriter::new(write_half));
    let end = transmission::run(
        &mut reader,
        replies.clone(),
        shared.backend.clone(),
        &shared.opts,
        &shared.counters,
    );
    if let End::Violation(why) = end {
        tracing::debug!("nbd: connection dropped: {why}");
        shared.violations.fetch_add(1, Ordering::Relaxed);
    }
    replies.break_connection();
}

/// Ends every connection: read sides first so in-flight requests still get replies, then,
/// after the grace period, whole sockets.
fn stop_connections<B>(shared: &Shared<B>, threads: Vec<JoinHandle<()>>) {
    shared.stopping.store(true, Ordering::SeqCst);
    for s in shared.open.lock().values() {
        let _ = s.shutdown(Shutdown::Read);
    }
    let deadline = Instant::now() + shared.opts.stop_grace;
    while !threads.iter().all(|t| t.is_finished()) && Instant::now() < deadline {
        thread::sleep(shared.opts.poll_interval);
    }
    for s in shared.open.lock().values() {
        let _ = s.shutdown(Shutdown::Both);
    }
    for t in threads {
        // A connection thread panics only through a bug; it holds nothing to clean up.
        let _ = t.join();
    }
}
