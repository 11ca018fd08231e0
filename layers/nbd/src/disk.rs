//! [`NbdDisk`]: the `Disk` trait over one NBD export.

use std::time::{Duration, Instant};
use txdisk_disk::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use txdisk_disk::sync::Mutex;
use txdisk_disk::{Addr, Block, Disk, DiskError, BLOCK_SIZE};

use crate::conn::{command_name, Conn, Dead, Outcome};
use crate::error::{NbdError, Result};
use crate::handshake::{self, ExportInfo, Stream};
use crate::proto;
use crate::uri::NbdTarget;

/// How a client disk talks to its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdOptions {
    /// A request not answered within this long, a write the socket cannot take within it, or a
    /// handshake step slower than it fails the disk for good (`DiskError::Failed`): the bound on
    /// how long a dead or stopped server can hold up the stack.
    pub timeout_ms: u64,
    /// Connections to open when the server advertises multi-conn (one otherwise).
    pub connections: usize,
    /// Requests in flight on one connection before a caller waits for a reply.
    pub max_inflight_requests: usize,
}

impl Default for NbdOptions {
    fn default() -> NbdOptions {
        NbdOptions {
            timeout_ms: 10_000,
            connections: 2,
            max_inflight_requests: 64,
        }
    }
}

/// A [`Disk`] whose blocks live on an NBD server (qemu-nbd, nbdkit, rbd-nbd, `txdisk serve`).
///
/// Fail-stop: a server that goes away, stops answering for `timeout_ms`, or breaks the protocol
/// fails the disk, and every later call returns [`DiskError::Failed`]; it is never reconnected
/// (a member that comes back is rebuilt by the pair, not trusted).
pub struct NbdDisk {
    target: NbdTarget,
    info: ExportInfo,
    conns: Vec<Conn>,
    next_conn: AtomicUsize,
    size_blocks: u64,
    /// Blocks of the largest WRITE sent (the server's maximum payload, in whole blocks).
    max_run_blocks: usize,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl std::fmt::Debug for NbdDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdDisk")
            .field("target", &self.target.to_string())
            .field("size_blocks", &self.size_blocks)
            .field("connections", &self.conns.len())
            .finish()
    }
}

impl NbdDisk {
    /// Connects to the export `uri` names (`nbd://host[:port]/export` or
    /// `nbd+unix:///export?socket=PATH`).
    pub fn open_uri(uri: &str, options: &NbdOptions) -> Result<NbdDisk> {
        NbdDisk::connect(&NbdTarget::parse(uri)?, options)
    }

    /// Connects to `target`: the handshake, then the export's checks (flush, writable, whole
    /// blocks, block sizes that allow 4096-byte requests). Every step is bounded by
    /// `options.timeout_ms`.
    pub fn connect(target: &NbdTarget, options: &NbdOptions) -> Result<NbdDisk> {
        if options.timeout_ms == 0 || options.connections == 0 || options.max_inflight_requests == 0
        {
            return Err(NbdError::BadOptions(format!(
                "timeout_ms, connections and max_inflight_requests must be at least 1: {options:?}"
            )));
        }
        let timeout = Duration::from_millis(options.timeout_ms);
        let (first, info) = handshake_one(target, options)?;
        let mut streams = vec![first];
        if info.has(proto::TFLAG_CAN_MULTI_CONN) {
            for _ in 1..options.connections {
                // The extra connections only add throughput: a server that limits its clients
                // (nbdkit's limit filter, to keep a member to one user) is served on fewer.
                let (stream, other) = match handshake_one(target, options) {
                    Ok(opened) => opened,
                    Err(error) => {
                        tracing::info!(server = %target, "nbd: no further connection ({error}); going on with {}", streams.len());
                        break;
                    }
                };
                if other.size_bytes != info.size_bytes
                    || other.transmission_flags != info.transmission_flags
                {
                    return Err(NbdError::Protocol {
                        target: target.to_string(),
                        expected: format!("the same export on every connection ({info:?})"),
                        found: format!("{other:?}"),
                    });
                }
                streams.push(stream);
            }
        }
        let conns = streams
            .into_iter()
            .map(|s| {
                Conn::start(
                    s,
                    target.to_string(),
                    info.structured_replies,
                    timeout,
                    options.max_inflight_requests,
                )
            })
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|source| NbdError::Io {
                target: target.to_string(),
                source,
            })?;
        let max_run_blocks = (info.max_payload_bytes as usize / BLOCK_SIZE).clamp(1, 1024);
        let disk = NbdDisk {
            target: target.clone(),
            size_blocks: info.size_bytes / BLOCK_SIZE as u64,
            info,
            conns,
            next_conn: AtomicUsize::new(0),
            max_run_blocks,
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        };
        tracing::info!(
            server = %disk.target,
            size_blocks = disk.size_blocks,
            connections = disk.conns.len(),
            structured_replies = info.structured_replies,
            "nbd: export open"
        );
        #[cfg(debug_assertions)]
        disk.check_rep();
        Ok(disk)
    }

    /// The export, as a URI.
    pub fn target(&self) -> &NbdTarget {
        &self.target
    }

    /// What the handshake said about the export.
    pub fn export_info(&self) -> ExportInfo {
        self.info
    }

    /// Connections in use (more than one only when the server advertises multi-conn).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Why the disk failed, once it has.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }

    fn pick(&self) -> &Conn {
        let i = self.next_conn.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        &self.conns[i]
    }

    fn alive(&self) -> Result<(), DiskError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(DiskError::Failed);
        }
        Ok(())
    }

    /// Fails the whole disk: one dead connection means writes may be missing from the server,
    /// so no other connection may go on as if they were not.
    fn fail(&self, dead: Dead) -> DiskError {
        let mut failure = self.failure.lock();
        if failure.is_none() {
            tracing::error!(server = %self.target, "nbd: disk failed: {}", dead.0);
            *failure = Some(dead.0.clone());
        }
        self.failed.store(true, Ordering::Release);
        drop(failure);
        for conn in &self.conns {
            conn.kill(format!("another connection failed: {}", dead.0));
        }
        DiskError::Failed
    }

    fn call(
        &self,
        conn: &Conn,
        kind: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) -> Result<Outcome, DiskError> {
        let (handle, deadline) = conn
            .submit(kind, offset, len, payload)
            .map_err(|d| self.fail(d))?;
        conn.wait(handle, deadline).map_err(|d| self.fail(d))
    }

    /// Sends every WRITE of `runs` (split at the server's maximum payload) before waiting for
    /// any reply, so a batch costs about one round trip.
    fn write_batch(&self, runs: &[(Addr, &[&Block])]) -> Result<(), DiskError> {
        self.alive()?;
        for (start, blocks) in runs {
            if let Some(last) = (blocks.len() as u64).checked_sub(1) {
                self.check_addr(start.saturating_add(last))?;
            }
        }
        let conn = self.pick();
        let mut sent: Vec<(Addr, u64, Instant)> = Vec::new();
        let mut first_error = None;
        'send: for (start, blocks) in runs {
            for (i, chunk) in blocks.chunks(self.max_run_blocks).enumerate() {
                let addr = start + (i * self.max_run_blocks) as u64;
                let mut payload = Vec::with_capacity(chunk.len() * BLOCK_SIZE);
                for block in chunk {
                    payload.extend_from_slice(block.as_bytes());
                }
                let len = payload.len() as u32; // at most 1024 blocks: 4 MiB
                match conn.submit(proto::CMD_WRITE, addr * BLOCK_SIZE as u64, len, &payload) {
                    Ok((handle, deadline)) => sent.push((addr, handle, deadline)),
                    Err(dead) => {
                        first_error = Some(self.fail(dead));
                        break 'send;
                    }
                }
            }
        }
        // Every reply is collected even after an error, so no request is left unanswered.
        for (addr, handle, deadline) in sent {
            let result = match conn.wait(handle, deadline) {
                Ok(Outcome::Done(_)) => Ok(()),
                Ok(Outcome::Errno(errno)) => Err(errno_error("write", addr, errno)),
                Err(dead) => Err(self.fail(dead)),
            };
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        let result = first_error.map_or(Ok(()), Err);
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }
}

/// The disk error for an NBD error value the server sent.
fn errno_error(op: &'static str, addr: Addr, errno: u32) -> DiskError {
    let what = match errno {
        proto::EIO => "input/output error",
        proto::ENOSPC => "no space left on the server",
        proto::EPERM => "operation not permitted",
        proto::EINVAL => "invalid request",
        proto::ESHUTDOWN => "the server is shutting down",
        _ => "error",
    };
    DiskError::Io {
        op,
        addr,
        source: std::io::Error::other(format!(
            "the NBD server answered {what} (NBD error {errno})"
        )),
    }
}

fn handshake_one(target: &NbdTarget, options: &NbdOptions) -> Result<(Stream, ExportInfo)> {
    let mut stream = Stream::connect(target, Duration::from_millis(options.timeout_ms))?;
    let info = handshake::negotiate(&mut stream, target, options.timeout_ms);
    match info {
        Ok(info) => Ok((stream, info)),
        Err(e) => {
            // Tell a server we are going (best effort), rather than leave it waiting.
            let mut abort = Vec::new();
            if proto::write_option(&mut abort, proto::OPT_ABORT, &[]).is_ok() {
                let _ = std::io::Write::write_all(&mut stream, &abort);
            }
            stream.shutdown();
            Err(e)
        }
    }
}

impl Disk for NbdDisk {
    fn size_blocks(&self) -> u64 {
        self.size_blocks
    }

    fn read(&self, addr: Addr) -> Result<Block, DiskError> {
        self.alive()?;
        self.check_addr(addr)?;
        let outcome = self.call(
            self.pick(),
            proto::CMD_READ,
            addr * BLOCK_SIZE as u64,
            BLOCK_SIZE as u32,
            &[],
        )?;
        let result = match outcome {
            Outcome::Done(data) => Block::from_bytes(&data),
            Outcome::Errno(errno) => {
                // The server could not read this block; the device is otherwise alive, and a
                // pair reads the other copy and writes this one back.
                tracing::warn!(server = %self.target, addr, errno, "nbd: read error");
                Err(DiskError::ReadError { addr })
            }
        };
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn write(&self, addr: Addr, block: &Block) -> Result<(), DiskError> {
        self.write_batch(&[(addr, &[block])])
    }

    fn write_run(&self, start: Addr, blocks: &[&Block]) -> Result<(), DiskError> {
        self.write_batch(&[(start, blocks)])
    }

    fn write_runs(&self, runs: &[(Addr, &[&Block])]) -> Result<(), DiskError> {
        self.write_batch(runs)
    }

    fn sync(&self) -> Result<(), DiskError> {
        self.alive()?;
        // Every write this disk acknowledged has had its reply, so one FLUSH covers them all:
        // on its own connection, and (multi-conn) on every other.
        let outcome = self.call(&self.conns[0], proto::CMD_FLUSH, 0, 0, &[])?;
        let result = match outcome {
            Outcome::Done(_) => Ok(()),
            Outcome::Errno(errno) => {
                tracing::error!(server = %self.target, errno, "nbd: {} failed", command_name(proto::CMD_FLUSH));
                Err(DiskError::SyncFailed)
            }
        };
        #[cfg(debug_assertions)]
        self.check_rep();
        result
    }

    fn check_rep(&self) {
        assert!(
            !self.conns.is_empty(),
            "nbd disk {}: no connection",
            self.target
        );
        if self.conns.len() > 1 {
            assert!(
                self.info.has(proto::TFLAG_CAN_MULTI_CONN),
                "nbd disk {}: {} connections to a server without multi-conn",
                self.target,
                self.conns.len()
            );
        }
        assert_eq!(
            self.size_blocks * BLOCK_SIZE as u64,
            self.info.size_bytes,
            "nbd disk {}: size in blocks",
            self.target
        );
        assert!(self.size_blocks > 0, "nbd disk {}: empty", self.target);
        assert!(
            self.info.has(proto::TFLAG_SEND_FLUSH),
            "nbd disk {}: no flush",
            self.target
        );
        if self.failed.load(Ordering::Acquire) {
            assert!(
                self.failure.lock().is_some(),
                "nbd disk {}: failed without a reason",
                self.target
            );
        }
        for conn in &self.conns {
            conn.check_rep();
        }
    }
}
