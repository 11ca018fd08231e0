//! Errors of the NBD server and of the backends it serves.

use crate::proto;

/// What a backend reports; the server turns it into an NBD error value for the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The range lies (partly) past the end of the export.
    #[error("range {offset_bytes}+{len_bytes} is past the end of the export ({size_bytes} bytes)")]
    OutOfRange {
        /// First byte of the range.
        offset_bytes: u64,
        /// Length of the range in bytes.
        len_bytes: u64,
        /// The export's size in bytes.
        size_bytes: u64,
    },

    /// The backend has no room for the write (log full, quota): the client sees `ENOSPC`.
    #[error("no space left: {0}")]
    NoSpace(String),

    /// A request the backend cannot take as given (e.g. a transaction larger than its log).
    #[error("invalid request: {0}")]
    Invalid(String),

    /// The export is read-only.
    #[error("the export is read-only")]
    ReadOnly,

    /// The backend is shutting down or has failed for good.
    #[error("the backend is shut down")]
    Shutdown,

    /// Any failure of the storage below (a device error, a failed flush).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl BackendError {
    /// The NBD error value sent to the client for this error.
    pub fn nbd_errno(&self) -> u32 {
        match self {
            BackendError::OutOfRange { .. } | BackendError::Invalid(_) => proto::EINVAL,
            BackendError::NoSpace(_) => proto::ENOSPC,
            BackendError::ReadOnly => proto::EPERM,
            BackendError::Shutdown => proto::ESHUTDOWN,
            BackendError::Io(e) => match e.raw_os_error() {
                // The protocol asks servers to report quota and file-size limits as ENOSPC.
                Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => proto::ENOSPC,
                _ => proto::EIO,
            },
        }
    }
}

/// Errors of the server itself (binding, accepting) and of the bundled client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NbdError {
    #[error("cannot listen on {addr}: {source}")]
    /// The listening socket could not be bound.
    Bind {
        /// The address asked for.
        addr: String,
        #[source]
        /// Why binding failed.
        source: std::io::Error,
    },

    #[error("network I/O failed: {0}")]
    /// Reading from or writing to a connection failed.
    Io(#[from] std::io::Error),

    #[error("export name is {len} bytes; the protocol allows at most 4096")]
    /// The export name is longer than the protocol allows.
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
    },

    #[error("invalid server options: {0}")]
    /// [`crate::ServerOptions`] the server cannot work with (a payload limit below one block, an
    /// in-flight limit below one payload).
    BadOptions(String),

    /// The peer broke the protocol: a wrong magic number, an impossible length.
    #[error("protocol violation: expected {expected}, found {found}")]
    Protocol {
        /// What the protocol requires at that point.
        expected: String,
        /// What the peer sent.
        found: String,
    },

    /// The server refused an option with this fixed-newstyle error reply.
    #[error("option {option} refused with reply type {reply_type:#x}: {message}")]
    OptionRefused {
        /// The option (`proto::OPT_*`).
        option: u32,
        /// The error reply type (`proto::REP_ERR_*`).
        reply_type: u32,
        /// The server's message, if any.
        message: String,
    },

    /// A transmission request failed on the server with this NBD error value.
    #[error("request failed with NBD error {errno}")]
    Request {
        /// The NBD error value (`proto::EIO`...).
        errno: u32,
    },

    #[error("backend failed: {0}")]
    /// The backend failed while the server flushed or closed it.
    Backend(#[from] BackendError),
}

/// The crate's result type: an [`NbdError`] unless said otherwise.
pub type Result<T, E = NbdError> = std::result::Result<T, E>;
