//! One connection in the transmission phase: requests are sent by the calling threads and
//! matched to their replies by handle, so that many requests are in flight at once
//! (pipelining) and a reply may come in any order.
//!
//! ```text
//!  callers ──submit──► writer (one lock: each request contiguous) ──► socket ──► server
//!     ▲                                                                  │
//!     └──wait(handle, deadline)◄── pending[handle] ◄── the reading caller ◄┘
//! ```
//!
//! **Who reads.** There is no reader thread: a caller waiting for a reply (or for a free
//! request slot) reads the socket itself when nobody else is, one reply at a time, handing
//! other callers' replies to them through `pending`; the others wait on a condvar, and one
//! takes over when it stops. A reply thus reaches a lone caller without a thread hand-off,
//! which on a round trip of tens of microseconds is a share worth saving.
//!
//! **Never a hang.** Every write has the socket's write timeout; every wait for a reply has a
//! deadline of `timeout` after its request was sent, and the reading caller's socket read is
//! bounded by its own deadline. A deadline that passes, a broken socket or a reply that breaks
//! the protocol *kills* the connection: the reason is recorded, every waiter wakes with it, and
//! the socket is shut down both ways, which also returns a blocked read at once. A dead
//! connection never comes back.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use txdisk_disk::sync::{Condvar, Mutex, MutexGuard};

use crate::handshake::Stream;
use crate::proto::{self, be_u16, be_u32, be_u64, ChunkHeader, Request};

/// Longest error chunk payload accepted: error value, message length, a message of the
/// protocol's longest string, an offset.
const MAX_ERROR_CHUNK_BYTES: u32 = 4 + 2 + proto::MAX_STRING_BYTES as u32 + 8;

/// Why a connection is dead (for the log and for `NbdDisk::failure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dead(pub String);

/// How the server answered one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Success, with the data read (empty for anything but READ).
    Done(Vec<u8>),
    /// The server's NBD error value.
    Errno(u32),
}

struct Pending {
    kind: u16,
    offset: u64,
    len: u32,
    /// A READ's buffer; the reader takes it out while it fills it from the socket.
    data: Vec<u8>,
    /// Bytes of a READ that structured chunks have described so far.
    covered_bytes: u64,
    errno: Option<u32>,
    done: bool,
}

struct State {
    next_handle: u64,
    pending: HashMap<u64, Pending>,
    dead: Option<Dead>,
    /// A caller is reading the socket (at most one at a time).
    reading: bool,
    /// Requests sent and not yet answered: what the slot limit bounds. An answered request
    /// stays in `pending` until its caller collects it, without holding a slot, so that a
    /// caller with a batch in flight can read its own replies to free slots for the rest.
    in_flight: usize,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// The other handle of the socket, to shut it down from any thread.
    control: Stream,
    name: String,
}

impl Shared {
    fn kill(&self, reason: String) {
        let mut state = self.state.lock();
        if state.dead.is_none() {
            tracing::warn!(server = %self.name, "nbd: connection failed: {reason}");
            state.dead = Some(Dead(reason));
        }
        self.changed.notify_all();
        drop(state);
        self.control.shutdown();
    }
}

/// One connection to the server, in the transmission phase.
pub struct Conn {
    writer: Mutex<Stream>,
    shared: Arc<Shared>,
    /// The read side, used by whichever caller reads (see the module doc).
    reader: Mutex<Stream>,
    structured_replies: bool,
    timeout: Duration,
    max_inflight_requests: usize,
}

impl Conn {
    /// Takes over a connection whose handshake is done.
    pub fn start(
        stream: Stream,
        name: String,
        structured_replies: bool,
        timeout: Duration,
        max_inflight_requests: usize,
    ) -> io::Result<Conn> {
        // A read gets the reading caller's remaining time, set before each reply.
        stream.set_write_timeout(Some(timeout))?;
        // The handle that ran the handshake stays the reader: over TLS it may hold ciphertext
        // already read from the socket, which a clone would not have.
        let writer_stream = stream.try_clone()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_handle: 1,
                pending: HashMap::new(),
                dead: None,
                reading: false,
                in_flight: 0,
            }),
            changed: Condvar::new(),
            control: stream.try_clone()?,
            name,
        });
        Ok(Conn {
            writer: Mutex::new(writer_stream),
            shared,
            reader: Mutex::new(stream),
            structured_replies,
            timeout,
            max_inflight_requests,
        })
    }

    /// Why the connection is dead, if it is.
    pub fn dead(&self) -> Option<Dead> {
        self.shared.state.lock().dead.clone()
    }

    /// Kills the connection (every waiter wakes with `reason`).
    pub fn kill(&self, reason: String) {
        self.shared.kill(reason);
    }

    /// Sends one request; returns its handle and the deadline of its reply.
    pub fn submit(
        &self,
        kind: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) -> Result<(u64, Instant), Dead> {
        let deadline = Instant::now() + self.timeout;
        let handle = {
            let mut state = self.shared.state.lock();
            // A bounded queue: the server's own limits are unknown, and a caller's memory is not.
            let max = self.max_inflight_requests;
            while state.dead.is_none() && state.in_flight >= max {
                // Reading is how a slot frees when this caller's own requests hold them.
                state = self.progress(
                    state,
                    deadline,
                    |s| s.in_flight < max,
                    || self.late("a free request slot", kind, offset),
                );
            }
            if let Some(dead) = &state.dead {
                return Err(dead.clone());
            }
            let handle = state.next_handle;
            state.next_handle += 1;
            let data = if kind == proto::CMD_READ {
                vec![0u8; len as usize]
            } else {
                Vec::new()
            };
            state.pending.insert(
                handle,
                Pending {
                    kind,
                    offset,
                    len,
                    data,
                    covered_bytes: 0,
                    errno: None,
                    done: false,
                },
            );
            state.in_flight += 1;
            handle
        };
        let header = Request {
            flags: 0,
            kind,
            handle,
            offset,
            length: len,
        }
        .encode();
        let mut msg = Vec::with_capacity(header.len() + payload.len());
        msg.extend_from_slice(&header);
        msg.extend_from_slice(payload);
        let sent = self.writer.lock().write_all(&msg);
        if let Err(e) = sent {
            // Part of a request may be on the wire: the stream is out of step for good.
            self.kill(format!("sending {} failed: {e}", command_name(kind)));
            return Err(self.dead().unwrap_or_else(|| Dead("killed".into())));
        }
        Ok((handle, deadline))
    }

    /// Waits for the reply to `handle` until `deadline`; past it the connection is killed.
    pub fn wait(&self, handle: u64, deadline: Instant) -> Result<Outcome, Dead> {
        let mut state = self.shared.state.lock();
        let (kind, offset) = state
            .pending
            .get(&handle)
            .map_or((0, 0), |p| (p.kind, p.offset));
        loop {
            if state.pending.get(&handle).is_some_and(|p| p.done) {
                let p = state
                    .pending
                    .remove(&handle)
                    .ok_or_else(|| Dead("lost a reply".into()))?;
                self.shared.changed.notify_all(); // a request slot is free
                return Ok(match p.errno {
                    Some(errno) => Outcome::Errno(errno),
                    None => Outcome::Done(p.data),
                });
            }
            if let Some(dead) = &state.dead {
                return Err(dead.clone());
            }
            state = self.progress(
                state,
                deadline,
                |s| s.pending.get(&handle).is_some_and(|p| p.done),
                || self.late("a reply", kind, offset),
            );
        }
    }

    /// One step towards `done` (checked under the lock): read one reply when nobody is
    /// reading, else wait for whoever is. Past `deadline` the connection is killed with
    /// `late()`. Returns the lock again.
    fn progress<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        deadline: Instant,
        done: impl Fn(&State) -> bool,
        late: impl Fn() -> String,
    ) -> MutexGuard<'a, State> {
        if done(&state) || state.dead.is_some() {
            return state;
        }
        if state.reading {
            if self
                .shared
                .changed
                .wait_until(&mut state, deadline)
                .timed_out()
                && !done(&state)
                && state.dead.is_none()
            {
                drop(state);
                self.kill(late());
                return self.shared.state.lock();
            }
            return state;
        }
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero());
        let Some(remaining) = remaining else {
            drop(state);
            self.kill(late());
            return self.shared.state.lock();
        };
        state.reading = true;
        drop(state);
        let result = {
            let mut stream = self.reader.lock();
            match stream.set_read_timeout(Some(remaining)) {
                Ok(()) => read_one(&mut stream, &self.shared, self.structured_replies),
                Err(e) => Err(format!("setting the read timeout failed: {e}")),
            }
        };
        let mut state = self.shared.state.lock();
        state.reading = false;
        // Whoever waits: its reply may be in, or it is its turn to read.
        self.shared.changed.notify_all();
        if let Err(reason) = result {
            drop(state);
            let reason = if Instant::now() >= deadline {
                late()
            } else {
                reason
            };
            self.kill(reason);
            state = self.shared.state.lock();
        }
        state
    }

    fn late(&self, what: &str, kind: u16, offset: u64) -> String {
        format!(
            "no {what} to {} at byte {offset} within {} ms: the server is stopped, gone or unreachable",
            command_name(kind),
            self.timeout.as_millis()
        )
    }

    /// Checks the connection's bookkeeping. Panics on a broken invariant.
    pub fn check_rep(&self) {
        let state = self.shared.state.lock();
        assert!(
            state.in_flight <= self.max_inflight_requests,
            "nbd conn: {} requests in flight, limit {}",
            state.in_flight,
            self.max_inflight_requests
        );
        if state.dead.is_none() {
            let unanswered = state.pending.values().filter(|p| !p.done).count();
            assert_eq!(
                state.in_flight, unanswered,
                "nbd conn: requests in flight counted against those unanswered"
            );
        }
        for (handle, p) in &state.pending {
            assert!(
                *handle < state.next_handle,
                "nbd conn: handle {handle} was never issued"
            );
            assert!(
                p.covered_bytes <= u64::from(p.len),
                "nbd conn: handle {handle} covered {} of {} bytes",
                p.covered_bytes,
                p.len
            );
            if p.done && p.errno.is_none() && p.kind == proto::CMD_READ {
                assert_eq!(
                    p.data.len(),
                    p.len as usize,
                    "nbd conn: handle {handle}'s read buffer"
                );
            }
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.dead().is_none() {
            // A polite goodbye; the write is bounded by the socket's timeout.
            let disc = Request {
                flags: 0,
                kind: proto::CMD_DISC,
                handle: 0,
                offset: 0,
                length: 0,
            }
            .encode();
            let _ = self.writer.lock().write_all(&disc);
        }
        self.shared.kill("the disk was closed".into());
    }
}

pub fn command_name(kind: u16) -> &'static str {
    match kind {
        proto::CMD_READ => "READ",
        proto::CMD_WRITE => "WRITE",
        proto::CMD_FLUSH => "FLUSH",
        proto::CMD_TRIM => "TRIM",
        proto::CMD_DISC => "DISC",
        _ => "a request",
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "the server closed the connection".into(),
        _ => format!("reading a reply failed: {e}"),
    }
}

fn read_exact(stream: &mut Stream, buf: &mut [u8]) -> Result<(), String> {
    stream.read_exact(buf).map_err(|e| io_reason(&e))
}

/// Reads one simple reply or one structured chunk and applies it to its request.
fn read_one(stream: &mut Stream, shared: &Shared, structured: bool) -> Result<(), String> {
    let mut magic = [0u8; 4];
    read_exact(stream, &mut magic)?;
    match u32::from_be_bytes(magic) {
        proto::SIMPLE_REPLY_MAGIC => read_simple(stream, shared),
        proto::STRUCTURED_REPLY_MAGIC if structured => {
            let mut b = [0u8; proto::STRUCTURED_REPLY_HEADER_BYTES];
            b[0..4].copy_from_slice(&magic);
            read_exact(stream, &mut b[4..])?;
            let header =
                ChunkHeader::decode(&b).map_err(|m| format!("bad chunk magic {:#x}", m.0))?;
            read_chunk(stream, shared, &header)
        }
        other => Err(format!(
            "protocol violation: a reply starting {other:#010x}"
        )),
    }
}

/// Takes a pending request's buffer out (so the socket is read without the lock held).
fn take_pending(shared: &Shared, handle: u64) -> Result<(u16, u64, u32, Vec<u8>), String> {
    let mut state = shared.state.lock();
    match state.pending.get_mut(&handle) {
        Some(p) if !p.done => Ok((p.kind, p.offset, p.len, std::mem::take(&mut p.data))),
        Some(_) => Err(format!(
            "protocol violation: a second reply to handle {handle}"
        )),
        None => Err(format!(
            "protocol violation: a reply to handle {handle}, which is not in flight"
        )),
    }
}

fn finish(
    shared: &Shared,
    handle: u64,
    data: Vec<u8>,
    update: impl FnOnce(&mut Pending) -> Result<(), String>,
) -> Result<(), String> {
    let mut state = shared.state.lock();
    let p = state
        .pending
        .get_mut(&handle)
        .ok_or_else(|| format!("handle {handle} vanished"))?;
    p.data = data;
    update(p)?;
    if p.done {
        state.in_flight -= 1;
        shared.changed.notify_all();
    }
    Ok(())
}

fn read_simple(stream: &mut Stream, shared: &Shared) -> Result<(), String> {
    let mut b = [0u8; 12];
    read_exact(stream, &mut b)?;
    let errno = be_u32(&b[0..4]);
    let handle = be_u64(&b[4..12]);
    let (kind, _, len, mut data) = take_pending(shared, handle)?;
    if errno == 0 && kind == proto::CMD_READ {
        data.resize(len as usize, 0);
        read_exact(stream, &mut data)?;
    }
    finish(shared, handle, data, |p| {
        p.errno = (errno != 0).then_some(errno);
        p.covered_bytes = u64::from(p.len);
        p.done = true;
        Ok(())
    })
}

/// The range `[offset, offset + len)` of a READ of `req_len` bytes at `req_offset`, as a slice
/// range of its buffer; an error when the server describes bytes that were not asked for.
fn range_in(
    req_offset: u64,
    req_len: u32,
    offset: u64,
    len: u64,
) -> Result<std::ops::Range<usize>, String> {
    let start = offset.checked_sub(req_offset);
    let end = start.and_then(|s| s.checked_add(len));
    match (start, end) {
        (Some(s), Some(e)) if e <= u64::from(req_len) => Ok(s as usize..e as usize),
        _ => Err(format!(
            "protocol violation: a chunk for bytes {offset}+{len} of a read of {req_offset}+{req_len}"
        )),
    }
}

fn read_chunk(stream: &mut Stream, shared: &Shared, h: &ChunkHeader) -> Result<(), String> {
    let (kind, req_offset, req_len, mut data) = take_pending(shared, h.handle)?;
    let mut covered = 0u64;
    let mut errno = None;
    match h.kind {
        proto::REPLY_TYPE_NONE if h.length == 0 && h.is_done() => {}
        proto::REPLY_TYPE_OFFSET_DATA if kind == proto::CMD_READ && h.length >= 8 => {
            let mut off = [0u8; 8];
            read_exact(stream, &mut off)?;
            let range = range_in(
                req_offset,
                req_len,
                u64::from_be_bytes(off),
                u64::from(h.length - 8),
            )?;
            covered = range.len() as u64;
            read_exact(stream, &mut data[range])?;
        }
        proto::REPLY_TYPE_OFFSET_HOLE if kind == proto::CMD_READ && h.length == 12 => {
            let mut b = [0u8; 12];
            read_exact(stream, &mut b)?;
            let range = range_in(
                req_offset,
                req_len,
                be_u64(&b[0..8]),
                u64::from(be_u32(&b[8..12])),
            )?;
            covered = range.len() as u64;
            data[range].fill(0);
        }
        t if t & proto::REPLY_TYPE_ERROR_BIT != 0
            && (6..=MAX_ERROR_CHUNK_BYTES).contains(&h.length) =>
        {
            let mut b = vec![0u8; h.length as usize];
            read_exact(stream, &mut b)?;
            let message_len = usize::from(be_u16(&b[4..6]));
            if 6 + message_len > b.len() {
                return Err("protocol violation: an error chunk's message overruns it".into());
            }
            let value = be_u32(&b[0..4]);
            if value == 0 {
                return Err("protocol violation: an error chunk with error value 0".into());
            }
            tracing::debug!(
                "nbd: server error {value} on {}: {}",
                command_name(kind),
                String::from_utf8_lossy(&b[6..6 + message_len])
            );
            errno = Some(value);
        }
        t => {
            return Err(format!(
                "protocol violation: chunk type {t} of {} bytes (flags {:#x}) in a reply to {}",
                h.length,
                h.flags,
                command_name(kind)
            ))
        }
    }
    let done = h.is_done();
    finish(shared, h.handle, data, |p| {
        p.covered_bytes += covered;
        if p.covered_bytes > u64::from(p.len) {
            return Err("protocol violation: chunks describe more bytes than were read".into());
        }
        if p.errno.is_none() {
            p.errno = errno;
        }
        if done {
            if p.errno.is_none() && p.kind == proto::CMD_READ && p.covered_bytes != u64::from(p.len)
            {
                return Err(format!(
                    "protocol violation: a read reply described {} of {} bytes",
                    p.covered_bytes, p.len
                ));
            }
            p.done = true;
        }
        Ok(())
    })
}
