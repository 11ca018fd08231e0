//! The transmission phase of one connection.
//!
//! ```text
//!   socket ──► reader (this thread) ──jobs──► worker pool ──► backend
//!                 │  bounded by Budget          │
//!                 └── error replies ──► ReplyWriter (one lock) ◄── replies
//! ```
//!
//! The reader validates each request and reads a WRITE's whole payload before anything
//! reaches the backend, so a client that disconnects mid-request causes no write at all.
//! Workers run requests concurrently and reply out of order, as the protocol allows; one
//! lock around the socket keeps each reply (header and READ data) contiguous. The budget
//! bounds what is in flight, so a client cannot make the server buffer more than
//! `max_inflight_bytes` of payload.

use std::io::{self, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use parking_lot::{Condvar, Mutex};
use txdisk_nbd_disk::Stream;

use crate::backend::{check_range, ExportBackend};
use crate::proto::{self, Request};
use crate::server::ServerOptions;

/// Why a connection's transmission phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client sent `NBD_CMD_DISC`.
    Disconnect,
    /// The socket closed or failed (client gone, or the server is stopping).
    Closed,
    /// The client broke the protocol; the connection was dropped.
    Violation(&'static str),
}

/// Counters one connection adds to the server's totals.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub error_replies: AtomicU64,
}

/// One request admitted for a worker.
enum Op {
    Read {
        offset: u64,
        len: usize,
    },
    Write {
        offset: u64,
        data: Vec<u8>,
        fua: bool,
    },
    Flush,
    Trim {
        offset: u64,
        len: u64,
        fua: bool,
    },
}

struct Job {
    handle: u64,
    op: Op,
    cost_bytes: u64,
}

/// Serialises replies on the socket; once broken, every later reply is dropped.
pub struct ReplyWriter {
    stream: Mutex<Stream>,
    broken: AtomicBool,
}

impl ReplyWriter {
    pub fn new(stream: Stream) -> ReplyWriter {
        ReplyWriter {
            stream: Mutex::new(stream),
            broken: AtomicBool::new(false),
        }
    }

    /// Sends one whole reply message; a failure breaks the connection (both directions).
    pub fn send(&self, msg: &[u8]) {
        if self.broken.load(Ordering::SeqCst) {
            return;
        }
        let mut s = self.stream.lock();
        if let Err(e) = s.write_all(msg) {
            tracing::debug!("nbd: reply failed, dropping connection: {e}");
            self.break_connection_locked(&s);
        }
    }

    /// Sends a reply without data: success if `errno` is 0.
    fn send_error(&self, handle: u64, errno: u32) {
        self.send(&proto::simple_reply_header(errno, handle));
    }

    /// Stops all traffic: the reader sees end of stream and later replies are dropped.
    pub fn break_connection(&self) {
        let s = self.stream.lock();
        self.break_connection_locked(&s);
    }

    fn break_connection_locked(&self, s: &Stream) {
        self.broken.store(true, Ordering::SeqCst);
        s.shutdown();
    }

    /// Ends a connection whose transmission is over: a TLS client is told the session ended
    /// cleanly (`close_notify`), then the socket is closed both ways.
    pub fn finish(&self) {
        let mut s = self.stream.lock();
        if !self.broken.load(Ordering::SeqCst) {
            // The client may be gone already; the socket is closed next either way.
            let _ = s.close_notify();
        }
        self.break_connection_locked(&s);
    }
}

/// Bounds the requests and payload bytes in flight on one connection.
struct Budget {
    used: Mutex<(usize, u64)>,
    freed: Condvar,
    max_requests: usize,
    max_bytes: u64,
}

impl Budget {
    fn acquire(&self, bytes: u64) {
        let mut used = self.used.lock();
        // A request larger than the whole byte budget still runs, alone.
        while used.0 >= self.max_requests || (used.0 > 0 && used.1 + bytes > self.max_bytes) {
            self.freed.wait(&mut used);
        }
        used.0 += 1;
        used.1 += bytes;
    }

    fn release(&self, bytes: u64) {
        let mut used = self.used.lock();
        assert!(
            used.0 > 0 && used.1 >= bytes,
            "nbd budget: releasing {bytes} bytes with {} requests / {} bytes in flight",
            used.0,
            used.1
        );
        used.0 -= 1;
        used.1 -= bytes;
        self.freed.notify_all();
    }
}

/// What the reader decided about one request.
enum Admit {
    Run(Op),
    /// Nothing to do (a zero-length write or trim): reply success at once.
    Done,
    Error(u32),
    /// Reply with this error, then drop the connection (the stream cannot be resynchronised).
    ErrorAndClose(u32, &'static str),
    Disconnect,
}

/// Runs the transmission phase until the client disconnects or the socket closes; returns
/// after every admitted request has been answered.
pub fn run<B: ExportBackend>(
    reader: &mut impl Read,
    replies: Arc<ReplyWriter>,
    backend: Arc<B>,
    read_only: bool,
    opts: &ServerOptions,
    counters: &Counters,
) -> End {
    let budget = Arc::new(Budget {
        used: Mutex::new((0, 0)),
        freed: Condvar::new(),
        max_requests: opts.max_inflight_requests.max(1),
        max_bytes: opts.max_inflight_bytes,
    });
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let workers: Vec<_> = (0..opts.workers_per_connection.max(1))
        .map(|_| {
            let (rx, replies, backend, budget) =
                (rx.clone(), replies.clone(), backend.clone(), budget.clone());
            thread::spawn(move || worker(&rx, &replies, &*backend, &budget))
        })
        .collect();
    let limits = Limits { opts, read_only };
    let end = read_loop(reader, &tx, &replies, &*backend, &limits, counters, &budget);
    drop(tx);
    for w in workers {
        // A worker only panics through a bug outside the catch below; the connection is
        // finished either way.
        let _ = w.join();
    }
    end
}

/// What the reader checks each request against.
struct Limits<'a> {
    opts: &'a ServerOptions,
    read_only: bool,
}

fn read_loop<B: ExportBackend>(
    reader: &mut impl Read,
    tx: &mpsc::Sender<Job>,
    replies: &ReplyWriter,
    backend: &B,
    limits: &Limits<'_>,
    counters: &Counters,
    budget: &Budget,
) -> End {
    let opts = limits.opts;
    loop {
        let mut header = [0u8; proto::REQUEST_HEADER_BYTES];
        if reader.read_exact(&mut header).is_err() {
            return End::Closed;
        }
        let Ok(req) = Request::decode(&header) else {
            replies.break_connection();
            return End::Violation("bad request magic");
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let cost_bytes = if matches!(req.kind, proto::CMD_READ | proto::CMD_WRITE) {
            u64::from(req.length.min(opts.max_payload_bytes))
        } else {
            0
        };
        budget.acquire(cost_bytes);
        let admitted = match admit(reader, &req, backend.size_bytes(), limits) {
            Ok(a) => a,
            Err(_) => {
                budget.release(cost_bytes);
                return End::Closed; // the client went away mid-payload: nothing was written
            }
        };
        match admitted {
            Admit::Run(op) => {
                let job = Job {
                    handle: req.handle,
                    op,
                    cost_bytes,
                };
                if tx.send(job).is_err() {
                    // Every worker is gone, which only a panic outside the catch can cause.
                    budget.release(cost_bytes);
                    replies.break_connection();
                    return End::Violation("worker pool died");
                }
            }
            Admit::Done => {
                budget.release(cost_bytes);
                replies.send_error(req.handle, 0);
            }
            Admit::Error(errno) => {
                budget.release(cost_bytes);
                counters.error_replies.fetch_add(1, Ordering::Relaxed);
                replies.send_error(req.handle, errno);
            }
            Admit::ErrorAndClose(errno, why) => {
                budget.release(cost_bytes);
                counters.error_replies.fetch_add(1, Ordering::Relaxed);
                replies.send_error(req.handle, errno);
                replies.break_connection();
                return End::Violation(why);
            }
            Admit::Disconnect => {
                budget.release(cost_bytes);
                return End::Disconnect;
            }
        }
    }
}

/// Validates one request and, for WRITE, reads its payload. Errors are socket errors.
fn admit(
    reader: &mut impl Read,
    req: &Request,
    size_bytes: u64,
    limits: &Limits<'_>,
) -> io::Result<Admit> {
    let opts = limits.opts;
    let fua = req.flags & proto::CMD_FLAG_FUA != 0;
    // FUA is valid on every command; no other flag was negotiated.
    let bad_flags = req.flags & !proto::CMD_FLAG_FUA != 0;
    let len = u64::from(req.length);
    let in_range = check_range(req.offset, len, size_bytes).is_ok();
    Ok(match req.kind {
        proto::CMD_READ if bad_flags => Admit::Error(proto::EINVAL),
        proto::CMD_READ if req.length > opts.max_payload_bytes => Admit::Error(proto::EINVAL),
        proto::CMD_READ if !in_range => Admit::Error(proto::EINVAL),
        proto::CMD_READ => Admit::Run(Op::Read {
            offset: req.offset,
            len: req.length as usize,
        }),
        proto::CMD_WRITE if req.length > opts.max_payload_bytes => {
            Admit::ErrorAndClose(proto::EINVAL, "write payload larger than the maximum")
        }
        proto::CMD_WRITE => {
            // Bounded by max_payload_bytes above, and counted in the budget.
            let mut data = vec![0u8; req.length as usize];
            reader.read_exact(&mut data)?;
            if bad_flags {
                Admit::Error(proto::EINVAL)
            } else if limits.read_only {
                Admit::Error(proto::EPERM)
            } else if !in_range {
                Admit::Error(proto::ENOSPC)
            } else if data.is_empty() {
                Admit::Done
            } else {
                Admit::Run(Op::Write {
                    offset: req.offset,
                    data,
                    fua,
                })
            }
        }
        proto::CMD_FLUSH if bad_flags || req.offset != 0 || req.length != 0 => {
            Admit::Error(proto::EINVAL)
        }
        proto::CMD_FLUSH => Admit::Run(Op::Flush),
        proto::CMD_TRIM if bad_flags => Admit::Error(proto::EINVAL),
        proto::CMD_TRIM if limits.read_only => Admit::Error(proto::EPERM),
        proto::CMD_TRIM if !in_range => Admit::Error(proto::ENOSPC),
        proto::CMD_TRIM if len == 0 => Admit::Done,
        proto::CMD_TRIM => Admit::Run(Op::Trim {
            offset: req.offset,
            len,
            fua,
        }),
        proto::CMD_DISC => Admit::Disconnect,
        // Unknown commands carry no payload we could know of.
        _ => Admit::Error(proto::EINVAL),
    })
}

fn worker<B: ExportBackend>(
    rx: &Mutex<mpsc::Receiver<Job>>,
    replies: &ReplyWriter,
    backend: &B,
    budget: &Budget,
) {
    loop {
        let job = match rx.lock().recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let cost_bytes = job.cost_bytes;
        let handle = job.handle;
        let outcome = catch_unwind(AssertUnwindSafe(|| execute(job, backend)));
        budget.release(cost_bytes);
        match outcome {
            Ok(reply) => replies.send(&reply),
            Err(_) => {
                // A panic is a broken invariant below us: answer nothing more on this
                // connection rather than guess what reached the backend.
                tracing::error!("nbd: backend panicked on request {handle:#x}; closing connection");
                replies.break_connection();
            }
        }
    }
}

/// Runs one request against the backend and builds its whole reply message.
fn execute<B: ExportBackend>(job: Job, backend: &B) -> Vec<u8> {
    let h = job.handle;
    let result = match job.op {
        Op::Read { offset, len } => {
            let mut msg = vec![0u8; proto::SIMPLE_REPLY_HEADER_BYTES + len];
            match backend.read_at(offset, &mut msg[proto::SIMPLE_REPLY_HEADER_BYTES..]) {
                Ok(()) => {
                    msg[..proto::SIMPLE_REPLY_HEADER_BYTES]
                        .copy_from_slice(&proto::simple_reply_header(0, h));
                    return msg;
                }
                Err(e) => Err(e),
            }
        }
        Op::Write { offset, data, fua } => backend.write_at(offset, &data, fua),
        Op::Flush => backend.flush(),
        Op::Trim { offset, len, fua } => backend.trim(offset, len, fua),
    };
    let errno = match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::warn!("nbd: request {h:#x} failed: {e}");
            e.nbd_errno()
        }
    };
    proto::simple_reply_header(errno, h).to_vec()
}
