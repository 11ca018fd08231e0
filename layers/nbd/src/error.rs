//! The NBD client's errors: every way a server, a link or a URI can fail an open.
//!
//! Once a disk is open, failures are [`DiskError`](txdisk_disk::DiskError)s (the `Disk` trait's
//! errors): a dead or silent server is `Failed`, an error reply to a read is a per-block
//! `ReadError`. These are the errors of getting there.

/// Why an NBD export could not be opened as a disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NbdError {
    /// A string that is not an NBD URI this client speaks.
    #[error("{uri}: not an NBD URI this client accepts: {reason}")]
    BadUri {
        /// The string given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The server could not be reached.
    #[error("{target}: cannot connect: {source}")]
    Connect {
        /// The server (as a URI).
        target: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// Reading from or writing to the server failed during the handshake (it closed the
    /// connection, or the link broke).
    #[error("{target}: connection failed during the handshake: {source}")]
    Io {
        /// The server (as a URI).
        target: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// The server did not answer within the timeout.
    #[error("{target}: no answer within {timeout_ms} ms while waiting for {waiting_for}")]
    Timeout {
        /// The server (as a URI).
        target: String,
        /// What the client was waiting for.
        waiting_for: String,
        /// The timeout that expired.
        timeout_ms: u64,
    },

    /// The server broke the protocol: a wrong magic number, an impossible length, a reply to
    /// something that was not asked.
    #[error("{target}: not a valid NBD server: expected {expected}, found {found}")]
    Protocol {
        /// The server (as a URI).
        target: String,
        /// What the protocol requires at that point.
        expected: String,
        /// What the server sent.
        found: String,
    },

    /// The server has no export of that name.
    #[error("{target}: the server has no export named {export:?}: {message}")]
    UnknownExport {
        /// The server (as a URI).
        target: String,
        /// The name asked for.
        export: String,
        /// The server's message.
        message: String,
    },

    /// The server refused an option the client needs.
    #[error("{target}: the server refused option {option} (reply {reply_type:#x}): {message}")]
    OptionRefused {
        /// The server (as a URI).
        target: String,
        /// The option (`proto::OPT_*`).
        option: u32,
        /// The error reply (`proto::REP_ERR_*`).
        reply_type: u32,
        /// The server's message.
        message: String,
    },

    /// The server serves nothing before TLS and the URI did not ask for it.
    #[error(
        "{target}: the server requires TLS: use an nbds:// (or nbds+unix://) URI with \
         tls-certificates=DIR naming the client's credentials"
    )]
    TlsRequired {
        /// The server (as a URI).
        target: String,
    },

    /// The export cannot flush: nothing written to it could ever be called durable.
    #[error(
        "{target}: the export does not support FLUSH, so no write to it can be made durable \
         (qemu-nbd and nbdkit flush unless told not to: check the server's cache options)"
    )]
    NoFlush {
        /// The server (as a URI).
        target: String,
    },

    /// The export refuses writes.
    #[error("{target}: the export is read-only")]
    ReadOnly {
        /// The server (as a URI).
        target: String,
    },

    /// The export's size is not a disk of whole 4096-byte blocks, or smaller than asked for.
    #[error("{target}: the export has {size_bytes} bytes: {reason}")]
    BadSize {
        /// The server (as a URI).
        target: String,
        /// The size the server gave.
        size_bytes: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// The export's block size constraints do not allow 4096-byte requests.
    #[error(
        "{target}: the export's block sizes (minimum {min_bytes}, preferred {preferred_bytes}, \
         maximum {max_bytes}) do not allow 4096-byte blocks"
    )]
    BadBlockSizes {
        /// The server (as a URI).
        target: String,
        /// Smallest request alignment.
        min_bytes: u32,
        /// Preferred request size.
        preferred_bytes: u32,
        /// Largest request payload.
        max_bytes: u32,
    },

    /// Options the client cannot work with.
    #[error("invalid NBD client options: {0}")]
    BadOptions(String),

    /// A TLS credentials file that cannot be read or used.
    #[error("TLS credentials {path}: {reason}")]
    TlsCredentials {
        /// The file (or directory).
        path: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// The TLS handshake with the server failed, or the server refused to start TLS.
    #[error("{target}: TLS failed: {reason}")]
    Tls {
        /// The server and export.
        target: String,
        /// What went wrong.
        reason: String,
    },
}

/// The crate's result type: an [`NbdError`] unless said otherwise.
pub type Result<T, E = NbdError> = std::result::Result<T, E>;
