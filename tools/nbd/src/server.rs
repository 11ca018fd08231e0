//! The listening server: accepts connections, one thread each, until told to stop.
//!
//! Stopping (the flag passed to [`Server::serve_until`] turns true): stop accepting, shut the
//! read side of every connection so its reader sees end of stream, let in-flight requests
//! finish and be answered (bounded by `stop_grace`; after it, sockets are closed outright),
//! join every connection thread, then flush every export's backend once. Only then does `serve_until`
//! return, so a caller that exits 0 afterwards has made every acknowledged write durable.

use std::collections::HashMap;
use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use txdisk_nbd_disk::tls::{certificate_identity, ServerTls};
use txdisk_nbd_disk::Stream;

use crate::backend::ExportBackend;
use crate::error::{NbdError, Result};
use crate::handshake::{self, ExportInfo, Outcome, TlsMode};
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
    /// A client that has not finished the handshake (TLS included) within this time is
    /// disconnected (in transmission a client may stay idle as long as it likes).
    pub handshake_timeout: Duration,
    /// How long a stop waits for in-flight requests before closing sockets outright.
    pub stop_grace: Duration,
    /// How often the accept loop looks at the stop flag.
    pub poll_interval: Duration,
    /// Whether clients may, or must, start TLS (see [`crate::handshake`]).
    pub tls_mode: TlsMode,
    /// The server's TLS credentials: needed unless `tls_mode` is off.
    pub tls: Option<ServerTls>,
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
            tls_mode: TlsMode::Off,
            tls: None,
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
    /// Connections whose TLS handshake failed (wrong credentials, a cut or garbled handshake).
    pub tls_failures: u64,
}

/// Transmission flags of every writable export: flush, FUA and trim are supported, and every
/// connection shares one backend whose flush covers all of them (so multi-conn is safe).
pub const TRANSMISSION_FLAGS: u16 = proto::TFLAG_HAS_FLAGS
    | proto::TFLAG_SEND_FLUSH
    | proto::TFLAG_SEND_FUA
    | proto::TFLAG_SEND_TRIM
    | proto::TFLAG_CAN_MULTI_CONN;

/// Transmission flags of a read-only export: no writes, no trim (WRITE and TRIM get `EPERM`).
pub const READ_ONLY_TRANSMISSION_FLAGS: u16 = proto::TFLAG_HAS_FLAGS
    | proto::TFLAG_READ_ONLY
    | proto::TFLAG_SEND_FLUSH
    | proto::TFLAG_CAN_MULTI_CONN;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address, e.g. `127.0.0.1:10809` (port 0 picks a free one).
    Tcp(String),
    /// A Unix socket at this path, created with mode 0600 (only its owner can connect).
    Unix(PathBuf),
}

/// The address a server is listening on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket.
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// One export of a server: a name, what it serves, and who may use it how.
pub struct Export<B> {
    /// The export's name (the first export is also the default, selected by the empty name).
    pub name: String,
    /// What it serves.
    pub backend: Arc<B>,
    /// WRITE and TRIM refused with `EPERM`, and the export advertised read-only.
    pub read_only: bool,
    /// The client identities (TLS certificate common names) that may use it; `None`: any.
    pub allow: Option<Vec<String>>,
}

impl<B> Export<B> {
    /// A writable export open to every client.
    pub fn new(name: &str, backend: Arc<B>) -> Export<B> {
        Export {
            name: name.to_string(),
            backend,
            read_only: false,
            allow: None,
        }
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            // The socket file is ours (bind refuses an existing path); nobody can connect now.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds a Unix socket that only this user can connect to: the umask is narrowed around the
/// bind, so the socket never exists with wider permissions, even for an instant.
pub(crate) fn bind_unix_private(path: &Path) -> io::Result<UnixListener> {
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    bound
}

/// An NBD server with one or more named exports.
pub struct Server<B: ExportBackend> {
    listener: Listener,
    exports: Vec<Export<B>>,
    opts: ServerOptions,
}

struct Shared<B> {
    backends: Vec<Arc<B>>,
    exports: Vec<ExportInfo>,
    read_only: Vec<bool>,
    opts: ServerOptions,
    stopping: AtomicBool,
    counters: Counters,
    violations: AtomicU64,
    tls_failures: AtomicU64,
    /// Connections accepted so far; also the next connection's id.
    connections: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    refused: AtomicU64,
    /// Handles of every open connection's socket, to stop them.
    open: Mutex<HashMap<u64, Stream>>,
}

impl<B: ExportBackend> Server<B> {
    /// Listens on `addr` (e.g. `127.0.0.1:10809`; port 0 picks a free one) with one export.
    pub fn bind(addr: &str, export_name: &str, backend: Arc<B>) -> Result<Server<B>> {
        Server::bind_exports(
            &Listen::Tcp(addr.to_string()),
            vec![Export::new(export_name, backend)],
        )
    }

    /// Listens on `listen` with `exports` (at least one; names distinct).
    pub fn bind_exports(listen: &Listen, exports: Vec<Export<B>>) -> Result<Server<B>> {
        check_exports(&exports)?;
        let listener = match listen {
            Listen::Tcp(addr) => {
                Listener::Tcp(TcpListener::bind(addr).map_err(|source| NbdError::Bind {
                    addr: addr.clone(),
                    source,
                })?)
            }
            Listen::Unix(path) => Listener::Unix(
                bind_unix_private(path).map_err(|source| NbdError::Bind {
                    addr: path.display().to_string(),
                    source,
                })?,
                path.clone(),
            ),
        };
        Ok(Server {
            listener,
            exports,
            opts: ServerOptions::default(),
        })
    }

    /// Replaces the default options. Err if they break the protocol's rules on block sizes
    /// (the maximum payload must be at least 4096 bytes, or the whole export if smaller),
    /// cannot hold one maximum request in flight, or ask for TLS without credentials.
    pub fn with_options(mut self, opts: ServerOptions) -> Result<Server<B>> {
        for export in &self.exports {
            let floor = export.backend.size_bytes().clamp(1, 4096);
            if u64::from(opts.max_payload_bytes) < floor {
                return Err(NbdError::BadOptions(format!(
                    "max_payload_bytes {} is below {floor}",
                    opts.max_payload_bytes
                )));
            }
        }
        if opts.max_inflight_bytes < u64::from(opts.max_payload_bytes) {
            return Err(NbdError::BadOptions(format!(
                "max_inflight_bytes {} is below max_payload_bytes {}",
                opts.max_inflight_bytes, opts.max_payload_bytes
            )));
        }
        if opts.tls_mode != TlsMode::Off && opts.tls.is_none() {
            return Err(NbdError::BadOptions(
                "TLS is on but no credentials were given".into(),
            ));
        }
        if opts.tls_mode == TlsMode::Off && self.exports.iter().any(|e| e.allow.is_some()) {
            return Err(NbdError::BadOptions(
                "an allow-list names TLS client identities: it needs TLS on or required".into(),
            ));
        }
        self.opts = opts;
        Ok(self)
    }

    /// The TCP address actually bound (useful after binding port 0); Err for a Unix socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr(),
            Listener::Unix(..) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the server listens on a Unix socket",
            )),
        }
    }

    /// Where the server listens.
    pub fn listen_addr(&self) -> io::Result<ListenAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(_, path) => Ok(ListenAddr::Unix(path.clone())),
        }
    }

    /// Serves until `stop` turns true, then drains, closes and flushes every backend (see
    /// the module comment). Errors: the listener failed, or a final flush did.
    pub fn serve_until(self, stop: &AtomicBool) -> Result<ServeStats> {
        let Server {
            listener,
            exports,
            opts,
        } = self;
        let infos = exports
            .iter()
            .map(|e| ExportInfo {
                name: e.name.clone(),
                size_bytes: e.backend.size_bytes(),
                transmission_flags: if e.read_only {
                    READ_ONLY_TRANSMISSION_FLAGS
                } else {
                    TRANSMISSION_FLAGS
                },
                min_block_bytes: 1,
                preferred_block_bytes: 4096,
                max_payload_bytes: opts.max_payload_bytes,
                allow: e.allow.clone(),
            })
            .collect();
        let shared = Arc::new(Shared {
            read_only: exports.iter().map(|e| e.read_only).collect(),
            backends: exports.into_iter().map(|e| e.backend).collect(),
            exports: infos,
            opts,
            stopping: AtomicBool::new(false),
            counters: Counters::default(),
            violations: AtomicU64::new(0),
            tls_failures: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        });
        let mut threads = Vec::new();
        let accepted = accept_loop(&listener, &shared, stop, &mut threads);
        drop(listener);
        stop_connections(&shared, threads);
        for backend in &shared.backends {
            backend.flush()?;
        }
        accepted?;
        Ok(ServeStats {
            connections: shared.connections.load(Ordering::SeqCst),
            refused_connections: shared.refused.load(Ordering::SeqCst),
            requests: shared.counters.requests.load(Ordering::SeqCst),
            error_replies: shared.counters.error_replies.load(Ordering::SeqCst),
            protocol_violations: shared.violations.load(Ordering::SeqCst),
            tls_failures: shared.tls_failures.load(Ordering::SeqCst),
        })
    }
}

fn check_exports<B>(exports: &[Export<B>]) -> Result<()> {
    if exports.is_empty() {
        return Err(NbdError::BadOptions(
            "a server needs at least one export".into(),
        ));
    }
    for (i, export) in exports.iter().enumerate() {
        if export.name.len() > proto::MAX_STRING_BYTES {
            return Err(NbdError::NameTooLong {
                len: export.name.len(),
            });
        }
        if exports[..i].iter().any(|e| e.name == export.name) {
            return Err(NbdError::BadOptions(format!(
                "two exports are named {:?}",
                export.name
            )));
        }
    }
    Ok(())
}

impl Listener {
    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l, _) => l.set_nonblocking(true),
        }
    }

    /// One connection and a name for the log, or the accept error.
    fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept()?;
                stream.set_nonblocking(false)?;
                stream.set_nodelay(true)?;
                Ok((Stream::Tcp(stream), peer.to_string()))
            }
            Listener::Unix(l, path) => {
                let (stream, _) = l.accept()?;
                stream.set_nonblocking(false)?;
                Ok((Stream::Unix(stream), format!("unix:{}", path.display())))
            }
        }
    }
}

fn accept_loop<B: ExportBackend>(
    listener: &Listener,
    shared: &Arc<Shared<B>>,
    stop: &AtomicBool,
    threads: &mut Vec<JoinHandle<()>>,
) -> io::Result<()> {
    listener.set_nonblocking()?;
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
                match start_connection(stream, peer.clone(), id, shared) {
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
    stream: Stream,
    peer: String,
    id: u64,
    shared: &Arc<Shared<B>>,
) -> io::Result<JoinHandle<()>> {
    stream.set_write_timeout(Some(shared.opts.reply_timeout))?;
    shared.open.lock().insert(id, stream.try_clone()?);
    let conn_shared = shared.clone();
    let spawned = thread::Builder::new()
        .name(format!("nbd-conn-{id}"))
        .spawn(move || {
            serve_connection(stream, &peer, &conn_shared);
            conn_shared.open.lock().remove(&id);
        });
    if spawned.is_err() {
        // The thread never started: forget the socket, which closes it.
        shared.open.lock().remove(&id);
    }
    spawned
}

/// A connection's stream split for the handshake: a buffered reader and the writer.
struct Halves {
    reader: BufReader<Stream>,
    writer: Stream,
}

impl Halves {
    fn new(stream: Stream) -> io::Result<Halves> {
        Ok(Halves {
            // Buffered reads: one syscall brings in many pipelined request headers.
            reader: BufReader::with_capacity(256 * 1024, stream.try_clone()?),
            writer: stream,
        })
    }
}

/// How the handshake of one connection ended.
enum Handshake {
    Transmission(usize, Halves),
    Closed,
}

/// Closes `stream` unless the handshake ends (the returned sender is dropped or sent to)
/// within `limit`: a client that trickles its bytes, each read inside the per-read timeout,
/// must not hold a connection slot for longer than a handshake may take.
fn handshake_watchdog(
    stream: &Stream,
    limit: Duration,
    peer: &str,
) -> io::Result<std::sync::mpsc::Sender<()>> {
    let guard = stream.try_clone()?;
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let peer = peer.to_string();
    std::thread::Builder::new()
        .name("nbd-handshake-watchdog".into())
        .spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(limit) {
                tracing::warn!(
                    "nbd: handshake with {peer} not finished within {} ms: closed",
                    limit.as_millis()
                );
                guard.shutdown();
            }
        })?;
    Ok(done)
}

fn serve_connection<B: ExportBackend>(stream: Stream, peer: &str, shared: &Shared<B>) {
    // The timeout bounds each read of the handshake, TLS's included, and the watchdog the
    // whole of it.
    if stream
        .set_read_timeout(Some(shared.opts.handshake_timeout))
        .is_err()
    {
        return;
    }
    let watchdog = match handshake_watchdog(&stream, shared.opts.handshake_timeout, peer) {
        Ok(watchdog) => watchdog,
        Err(e) => {
            tracing::warn!("nbd: cannot watch the handshake with {peer}: {e}");
            return;
        }
    };
    let halves = match Halves::new(stream) {
        Ok(halves) => halves,
        Err(e) => {
            tracing::warn!("nbd: cannot clone socket: {e}");
            return;
        }
    };
    let handshake = handshake(halves, peer, shared);
    // Done: the watchdog stands down (a send after it fired fails, which is fine).
    let _ = watchdog.send(());
    let (index, mut halves) = match handshake {
        Handshake::Transmission(index, halves) => (index, halves),
        Handshake::Closed => return,
    };
    if halves.writer.set_read_timeout(None).is_err() {
        return;
    }
    let replies = Arc::new(ReplyWriter::new(halves.writer));
    let end = transmission::run(
        &mut halves.reader,
        replies.clone(),
        shared.backends[index].clone(),
        shared.read_only[index],
        &shared.opts,
        &shared.counters,
    );
    if let End::Violation(why) = end {
        tracing::debug!("nbd: connection from {peer} dropped: {why}");
        shared.violations.fetch_add(1, Ordering::Relaxed);
    }
    replies.finish();
}

/// Runs the handshake, starting TLS when the client asks and the server allows it.
fn handshake<B>(mut halves: Halves, peer: &str, shared: &Shared<B>) -> Handshake {
    let stopping = || shared.stopping.load(Ordering::SeqCst);
    let close = |halves: &Halves, why: &str| {
        tracing::debug!("nbd: handshake with {peer} ended: {why}");
        if why != "client aborted" {
            shared.violations.fetch_add(1, Ordering::Relaxed);
        }
        halves.writer.shutdown();
        Handshake::Closed
    };
    let greeted = handshake::greet(
        &mut halves.reader,
        &mut halves.writer,
        &shared.exports,
        shared.opts.tls_mode,
    );
    let mut negotiation = match greeted {
        Ok(Ok(negotiation)) => negotiation,
        Ok(Err(why)) => return close(&halves, why),
        Err(e) => {
            tracing::debug!("nbd: handshake with {peer} failed: {e}");
            return Handshake::Closed;
        }
    };
    loop {
        match negotiation.options(&mut halves.reader, &mut halves.writer, &stopping) {
            Ok(Outcome::Transmission(index)) => return Handshake::Transmission(index, halves),
            Ok(Outcome::Close(why)) => return close(&halves, why),
            Ok(Outcome::StartTls) => {
                if !halves.reader.buffer().is_empty() {
                    // Bytes sent before the TLS handshake could be an injection: a client must
                    // wait for STARTTLS's reply before it starts TLS.
                    return close(&halves, "data after STARTTLS before the TLS handshake");
                }
                match start_tls(halves, shared) {
                    Ok((upgraded, identity)) => {
                        tracing::debug!(
                            "nbd: TLS with {peer}, identity {}",
                            identity.as_deref().unwrap_or("(none)")
                        );
                        negotiation.tls_started(identity);
                        halves = upgraded;
                    }
                    Err(e) => {
                        tracing::warn!("nbd: TLS handshake with {peer} failed: {e}");
                        shared.tls_failures.fetch_add(1, Ordering::Relaxed);
                        return Handshake::Closed;
                    }
                }
            }
            Err(e) => {
                tracing::debug!("nbd: handshake with {peer} failed: {e}");
                return Handshake::Closed;
            }
        }
    }
}

/// The TLS handshake on a connection whose client was told yes to STARTTLS: the upgraded
/// halves and the identity the client's certificate gives it.
fn start_tls<B>(halves: Halves, shared: &Shared<B>) -> io::Result<(Halves, Option<String>)> {
    let Some(tls) = &shared.opts.tls else {
        unreachable!("nbd: STARTTLS acknowledged without credentials (checked in with_options)");
    };
    let session = tls.session().map_err(io::Error::other)?;
    let Halves { reader, writer } = halves;
    drop(reader);
    let stream = writer.start_tls(session)?;
    let identity = stream
        .peer_certificates()
        .and_then(|certs| certs.first().and_then(certificate_identity));
    Ok((Halves::new(stream)?, identity))
}

/// Ends every connection: read sides first so in-flight requests still get replies, then,
/// after the grace period, whole sockets.
fn stop_connections<B>(shared: &Shared<B>, threads: Vec<JoinHandle<()>>) {
    shared.stopping.store(true, Ordering::SeqCst);
    for s in shared.open.lock().values() {
        s.shutdown_read();
    }
    let deadline = Instant::now() + shared.opts.stop_grace;
    while !threads.iter().all(|t| t.is_finished()) && Instant::now() < deadline {
        thread::sleep(shared.opts.poll_interval);
    }
    for s in shared.open.lock().values() {
        s.shutdown();
    }
    for t in threads {
        // A connection thread panics only through a bug; it holds nothing to clean up.
        let _ = t.join();
    }
}
