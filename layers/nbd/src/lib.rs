//! # txdisk-nbd-disk: a disk on another machine, over NBD
//!
//! **What it offers.** [`NbdDisk`], a [`Disk`](txdisk_disk::Disk) whose blocks live on an NBD
//! server (qemu-nbd, nbdkit and whatever it fronts, rbd-nbd, `txdisk serve`), so that a
//! replicated pair's member can be on another host; [`NbdTarget`], the NBD URIs
//! (`nbd://host[:port]/export`, `nbd+unix:///export?socket=PATH`, and over TLS `nbds://` and
//! `nbds+unix://` with `tls-certificates=DIR`); and what the server of `txdisk-nbd` uses too —
//! [`proto`] (the wire protocol), [`stream`] (TCP, Unix and TLS streams) and [`tls`] (X.509
//! credentials in qemu's file layout, and a client certificate's identity) — one copy of each,
//! in a layer crate, because a layer may not depend on a tool.
//!
//! ```text
//!  Disk::read/write/sync ─► NbdDisk ─► Conn × 1..n ─► socket ─► server
//!  (a pair member)          (fail-stop) (pipelined,     (TCP or Unix)
//!                                        the waiting caller reads)
//! ```
//!
//! * **Handshake** (`handshake`): fixed newstyle; for an `nbds` target `NBD_OPT_STARTTLS` and
//!   the TLS handshake first (rustls; the server's certificate checked against the CA in
//!   `tls-certificates`, the client's own presented), everything after it inside TLS; structured replies when the server offers
//!   them; `NBD_OPT_GO` asking for block sizes (`NBD_OPT_EXPORT_NAME` for a server without GO).
//!   Refused with a clear [`NbdError`]: no such export, no FLUSH (nothing could be durable), a
//!   read-only export, a size that is not whole 4096-byte blocks, block sizes that forbid
//!   4096-byte requests, a server that requires TLS of a plain URI, credentials that cannot be
//!   loaded, a failed TLS handshake, and anything that is not the protocol.
//! * **Requests**: `read` is one READ of a block; `write`, `write_run` and `write_runs` send
//!   every WRITE of the batch (a run split at the server's maximum payload) before waiting for
//!   any reply; `sync` is one FLUSH, sent after every write it covers was acknowledged, which
//!   covers them on every connection when the server advertises multi-conn (the only case in
//!   which more than one connection is opened).
//! * **Errors**: an error reply to a READ is a per-block [`DiskError::ReadError`] (a pair
//!   repairs it from the other copy); to a WRITE, [`DiskError::Io`]; to a FLUSH,
//!   [`DiskError::SyncFailed`]. A server that closes, stops answering for
//!   [`NbdOptions::timeout_ms`], or breaks the protocol makes the disk fail-stop:
//!   [`DiskError::Failed`] from then on, never a hang and never a reconnect.
//!
//! [`DiskError::ReadError`]: txdisk_disk::DiskError::ReadError
//! [`DiskError::Io`]: txdisk_disk::DiskError::Io
//! [`DiskError::SyncFailed`]: txdisk_disk::DiskError::SyncFailed
//! [`DiskError::Failed`]: txdisk_disk::DiskError::Failed
//!
//! **Rep invariant (`check_rep`, after every operation in debug builds).** At least one
//! connection, more only to a multi-conn server; the size is whole blocks, at least one; the
//! export flushes; a failed disk has a recorded reason; on each connection at most
//! `max_inflight_requests` requests are pending, every pending handle was issued, and no
//! structured reply has described more bytes than its READ asked for.
//!
//! **Crash invariant.** The server's: what a FLUSH acknowledged is durable there, and what was
//! written after it may or may not be — the disk layer's model, with the server's storage as the
//! medium. The client keeps nothing of its own: a dead connection loses only unacknowledged
//! requests, whose callers got an error.

#![deny(missing_docs)]

mod conn;
mod disk;
pub mod error;
pub mod handshake;
pub mod member;
pub mod proto;
pub mod stream;
pub mod tls;
pub mod uri;

pub use disk::{NbdDisk, NbdOptions};
pub use error::{NbdError, Result};
pub use handshake::ExportInfo;
pub use member::{nbd_options, nbd_target, Member, OpenError, NBD_TIMEOUT_ENV};
pub use stream::Stream;
pub use uri::{Endpoint, NbdTarget, TargetTls, DEFAULT_PORT};
