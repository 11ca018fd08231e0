//! An NBD (Network Block Device) server for txdisk, generic over what it exports.
//!
//! ```text
//!  qemu / nbdkit / the kernel ──TCP, Unix, TLS──► Server ─► connection thread ─► worker pool ─► ExportBackend
//!                                      (accept)   (handshake, read     (concurrent     (MemBackend,
//!                                                  requests, bound      requests,       FileBackend,
//!                                                  every length)        replies)        the logical disk)
//! ```
//!
//! The protocol follows the NBD project's `doc/proto.md`: the fixed-newstyle handshake with
//! `NBD_OPT_GO`/`NBD_OPT_INFO`, `NBD_OPT_LIST`, `NBD_OPT_EXPORT_NAME`, `NBD_OPT_ABORT` and
//! `NBD_OPT_STARTTLS` (X.509, [`TlsMode`] off, on or require); commands READ, WRITE (with FUA),
//! FLUSH, TRIM and DISC; simple replies. One server serves several named [`Export`]s, each
//! read-only or not and with an allow-list of client certificate identities; [`certs`] makes
//! the credentials.
//!
//! What a WRITE means is up to the backend: the server hands each WRITE to
//! [`ExportBackend::write_at`] whole, after its payload has fully arrived, and replies only
//! when that call returns. Over a transactional backend each WRITE is therefore one atomic
//! transaction; over [`FileBackend`] it is a plain `pwrite`, which a crash can tear.
//!
//! ```no_run
//! use std::sync::{atomic::AtomicBool, Arc};
//! use txdisk_nbd::{MemBackend, Server};
//!
//! let backend = Arc::new(MemBackend::new(64 << 20));
//! let server = Server::bind("127.0.0.1:10809", "disk", backend)?;
//! let stop = txdisk_nbd::signal::stop_on_signals()?;
//! server.serve_until(stop)?; // returns after SIGINT/SIGTERM, with the backend flushed
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod backend;
pub mod certs;
pub mod client;
pub mod control;
pub mod error;
pub mod handshake;
pub mod logical;
pub mod proto;
pub mod server;
pub mod signal;
#[cfg(feature = "test-support")]
pub mod testkit;
mod transmission;

pub use backend::{ExportBackend, FileBackend, MemBackend};
pub use client::Client;
pub use error::{BackendError, NbdError, Result};
pub use handshake::TlsMode;
pub use logical::{
    serve, serve_images, serve_images_with_control, ImageExport, LogicalBackend, ServeConfig,
};
pub use server::{
    Export, Listen, ListenAddr, ServeStats, Server, ServerOptions, READ_ONLY_TRANSMISSION_FLAGS,
    TRANSMISSION_FLAGS,
};
pub use txdisk_nbd_disk::tls::{ClientTls, ServerTls};
