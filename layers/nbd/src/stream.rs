//! One NBD connection's byte stream: TCP, a Unix socket, or TLS over either.
//!
//! Both ends of NBD read on one thread while other threads write (pipelined requests, replies
//! out of order), so a stream is split with [`Stream::try_clone`]. A plain socket is simply
//! duplicated. A TLS session is one state machine, so its handles share it: a reader waits for
//! ciphertext on its own duplicate of the socket *without* holding the session, then takes the
//! session only to decrypt; a writer takes the send lock, encrypts under the session lock, and
//! sends the records after releasing the session, so a send blocked on a full socket never
//! stops the reader from draining the other direction. Records leave in the order they were
//! sealed because sealing and sending happen under one send lock.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use txdisk_disk::sync::Mutex;

use crate::error::{NbdError, Result};
use crate::uri::{Endpoint, NbdTarget};

/// Ciphertext read from the socket in one system call (a TLS record is at most ~16 KiB).
const CIPHERTEXT_READ_BYTES: usize = 64 * 1024;

/// A connection to a server (or, on the server's side, from a client).
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix socket.
    Unix(UnixStream),
    /// TLS over TCP or a Unix socket (after `NBD_OPT_STARTTLS`).
    Tls(TlsStream),
}

impl Stream {
    /// Connects, bounded by `timeout` (TCP: the connect itself; both: every read and write
    /// until the timeouts are changed). A TLS target is connected in plain text: TLS starts
    /// inside the handshake, with `NBD_OPT_STARTTLS`.
    pub fn connect(target: &NbdTarget, timeout: Duration) -> Result<Stream> {
        let connect_error = |source| NbdError::Connect {
            target: target.to_string(),
            source,
        };
        let stream = match &target.endpoint {
            Endpoint::Tcp { host, port } => {
                let addrs = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(connect_error)?;
                let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
                let mut connected = None;
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => {
                            connected = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = connected.ok_or_else(|| connect_error(last))?;
                // Requests are small and latency-bound: never wait to coalesce them.
                s.set_nodelay(true).map_err(connect_error)?;
                Stream::Tcp(s)
            }
            Endpoint::Unix { socket } => {
                Stream::Unix(UnixStream::connect(socket).map_err(connect_error)?)
            }
        };
        stream.set_timeouts(Some(timeout)).map_err(connect_error)?;
        Ok(stream)
    }

    /// Runs a TLS handshake over this plain stream and returns the TLS stream. The caller has
    /// sent or answered `NBD_OPT_STARTTLS`; the socket timeouts bound the handshake.
    pub fn start_tls(self, session: impl Into<rustls::Connection>) -> io::Result<Stream> {
        let mut raw = match self {
            Stream::Tls(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS is already running on this connection",
                ))
            }
            plain => plain,
        };
        let mut session = session.into();
        while session.is_handshaking() {
            session.complete_io(&mut raw)?;
        }
        // What the handshake left to send (a TLS 1.3 server's session tickets) goes now.
        while session.wants_write() {
            session.write_tls(&mut raw)?;
        }
        let send = raw.try_clone()?;
        Ok(Stream::Tls(TlsStream {
            shared: Arc::new(TlsShared {
                session: Mutex::new(session),
                send: Mutex::new(send),
            }),
            raw: Box::new(raw),
            ciphertext: Vec::new(),
            unread: 0..0,
            saw_eof: false,
        }))
    }

    /// True once TLS runs on this stream.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The certificates the peer presented in the TLS handshake, its own first (`None` for a
    /// plain stream or a peer that sent none).
    pub fn peer_certificates(&self) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
        match self {
            Stream::Tls(tls) => tls
                .shared
                .session
                .lock()
                .peer_certificates()
                .map(|certs| certs.to_vec()),
            _ => None,
        }
    }

    /// Bounds every later read and write by `timeout` (`None`: unbounded).
    pub fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)?;
        self.set_write_timeout(timeout)
    }

    /// Bounds every later read by `timeout` (`None`: unbounded).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(timeout),
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tls(s) => s.raw.set_read_timeout(timeout),
        }
    }

    /// Bounds every later write by `timeout` (`None`: unbounded).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(timeout),
            Stream::Unix(s) => s.set_write_timeout(timeout),
            Stream::Tls(s) => s.raw.set_write_timeout(timeout),
        }
    }

    /// A second handle of the same connection (one thread reads, others write). Over TLS the
    /// clone starts with no buffered ciphertext: keep reading from the handle that has read.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tls(s) => Stream::Tls(TlsStream {
                shared: s.shared.clone(),
                raw: Box::new(s.raw.try_clone()?),
                ciphertext: Vec::new(),
                unread: 0..0,
                saw_eof: false,
            }),
        })
    }

    /// Ends the connection both ways: a thread blocked reading or writing it returns at once.
    pub fn shutdown(&self) {
        self.shutdown_how(Shutdown::Both);
    }

    /// Ends the connection's incoming direction: a reader sees end of stream, while replies
    /// can still be sent.
    pub fn shutdown_read(&self) {
        self.shutdown_how(Shutdown::Read);
    }

    fn shutdown_how(&self, how: Shutdown) {
        // Already shut down or reset by the peer: either way it is ended.
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
            Stream::Tls(s) => {
                s.raw.shutdown_how(how);
                Ok(())
            }
        };
    }

    /// Tells a TLS peer that nothing more will be sent (a `close_notify` alert), so that it
    /// can tell a finished session from a cut one. Nothing for a plain stream.
    pub fn close_notify(&mut self) -> io::Result<()> {
        match self {
            Stream::Tls(s) => s
                .shared
                .seal_and_send(|session| {
                    session.send_close_notify();
                    Ok(0)
                })
                .map(|_| ()),
            _ => Ok(()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s
                .shared
                .seal_and_send(|session| session.writer().write(buf)),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One handle of a TLS session (see the module comment).
pub struct TlsStream {
    shared: Arc<TlsShared>,
    /// This handle's duplicate of the socket, for reading ciphertext.
    raw: Box<Stream>,
    /// Ciphertext read but not yet taken by the session.
    ciphertext: Vec<u8>,
    unread: std::ops::Range<usize>,
    saw_eof: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream").field("raw", &self.raw).finish()
    }
}

struct TlsShared {
    session: Mutex<rustls::Connection>,
    /// The socket records are sent on; held from sealing to sending (see the module comment).
    send: Mutex<Stream>,
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

impl TlsShared {
    /// Runs `seal` on the session and sends the records it produced, in order.
    fn seal_and_send(
        &self,
        seal: impl FnOnce(&mut rustls::Connection) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut socket = self.send.lock();
        let mut records = Vec::new();
        let taken = {
            let mut session = self.session.lock();
            let taken = seal(&mut session)?;
            while session.wants_write() {
                session.write_tls(&mut records)?;
            }
            taken
        };
        socket.write_all(&records)?;
        Ok(taken)
    }
}

impl TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let mut session = self.shared.session.lock();
            match session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.unread.is_empty() {
                let mut pending = &self.ciphertext[self.unread.clone()];
                let taken = session.read_tls(&mut pending)?;
                self.unread.start += taken;
                session.process_new_packets().map_err(tls_error)?;
                // An alert or a key update to answer goes out now, in order with the writers.
                let answer = session.wants_write();
                drop(session);
                if answer {
                    self.shared.seal_and_send(|_| Ok(0))?;
                }
                continue;
            }
            if self.saw_eof {
                // The session has had the end of stream and still has nothing: a cut session
                // (a clean one made the reader above return 0).
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection without a TLS close_notify",
                ));
            }
            drop(session);
            if self.ciphertext.is_empty() {
                self.ciphertext = vec![0; CIPHERTEXT_READ_BYTES];
            }
            let n = self.raw.read(&mut self.ciphertext)?;
            if n == 0 {
                self.saw_eof = true;
                let mut session = self.shared.session.lock();
                session.read_tls(&mut io::empty())?;
                session.process_new_packets().map_err(tls_error)?;
            }
            self.unread = 0..n;
        }
    }
}
