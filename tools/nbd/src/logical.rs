//! The logical disk as an NBD export: every WRITE one atomic transaction.
//!
//! A WRITE of any offset and length becomes one transaction over the blocks it touches: whole
//! blocks are written fresh, partial ones are read and patched inside the transaction, so two
//! concurrent partial writes to one block serialise (the loser retries on conflict) and a crash
//! leaves the write all there or not at all — a raw disk promises neither. Without FUA the
//! transaction commits without waiting for the disk (`commit_nosync`); FLUSH makes every
//! acknowledged write durable with one group flush; FUA commits durably before the reply.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use txdisk::{Block, Disk, LogicalError, Transaction, BLOCK_SIZE};

use crate::backend::check_range;
use crate::error::BackendError;
use crate::handshake::TlsMode;
use crate::server::{Export, Listen, ListenAddr, ServeStats, Server, ServerOptions};
use crate::ExportBackend;
use txdisk_nbd_disk::tls::ServerTls;

/// An export over an assembled txdisk stack (one image or a replicated pair).
pub struct LogicalBackend {
    stack: txdisk::Stack,
    size_bytes: u64,
}

/// One block of a byte range: the block, the byte range inside it, the range in the buffer.
struct Span {
    addr: u64,
    in_block: std::ops::Range<usize>,
    in_buf: std::ops::Range<usize>,
}

/// The blocks `[offset, offset + len)` touches, in order.
fn spans(offset: u64, len: u64) -> impl Iterator<Item = Span> {
    let block = BLOCK_SIZE as u64;
    let end = offset + len;
    let first = offset / block;
    let last = if len == 0 {
        first
    } else {
        (end - 1) / block + 1
    };
    (first..last).map(move |addr| {
        let start = (addr * block).max(offset);
        let stop = ((addr + 1) * block).min(end);
        Span {
            addr,
            in_block: (start - addr * block) as usize..(stop - addr * block) as usize,
            in_buf: (start - offset) as usize..(stop - offset) as usize,
        }
    })
}

fn backend_error(error: LogicalError) -> BackendError {
    match error {
        LogicalError::TooLarge { .. } | LogicalError::OutOfRange { .. } => {
            BackendError::Invalid(error.to_string())
        }
        other => BackendError::Io(std::io::Error::other(other.to_string())),
    }
}

impl LogicalBackend {
    /// Exports `stack`: its size is the logical disk's, in 4096-byte blocks.
    pub fn new(stack: txdisk::Stack) -> LogicalBackend {
        let size_bytes = stack.size_blocks() * BLOCK_SIZE as u64;
        LogicalBackend { stack, size_bytes }
    }

    /// The largest WRITE that fits one transaction: an unaligned write touches one more block
    /// than its length in blocks.
    pub fn max_payload_bytes(&self) -> u32 {
        let blocks = self.stack.max_tx_blocks().saturating_sub(1) as u64;
        (blocks * BLOCK_SIZE as u64).min(32 << 20) as u32
    }

    /// Flushes, installs and closes the stack (a replicated pair is marked clean).
    pub fn close(self) -> Result<(), txdisk::Error> {
        self.stack.close()
    }
}

impl ExportBackend for LogicalBackend {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        check_range(offset, buf.len() as u64, self.size_bytes)?;
        // A read-only transaction: the blocks of one READ come from one consistent state.
        self.stack
            .transaction_nosync(|tx: &mut Transaction<'_>| {
                for span in spans(offset, buf.len() as u64) {
                    let block = tx.read(span.addr)?;
                    buf[span.in_buf].copy_from_slice(&block.as_bytes()[span.in_block]);
                }
                Ok::<(), LogicalError>(())
            })
            .map_err(backend_error)
    }

    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        check_range(offset, data.len() as u64, self.size_bytes)?;
        if data.is_empty() {
            return Ok(());
        }
        let body = |tx: &mut Transaction<'_>| {
            for span in spans(offset, data.len() as u64) {
                let mut block = if span.in_block.len() == BLOCK_SIZE {
                    Block::zeroed()
                } else {
                    tx.read(span.addr)?
                };
                block.as_bytes_mut()[span.in_block].copy_from_slice(&data[span.in_buf]);
                tx.write(span.addr, &block)?;
            }
            Ok::<(), LogicalError>(())
        };
        let result = if fua {
            self.stack.transaction(body)
        } else {
            self.stack.transaction_nosync(body)
        };
        result.map_err(backend_error)
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.stack.flush().map_err(backend_error)
    }
}

/// One export of [`serve`]: a name, its image (or pair), and its access rules.
#[derive(Debug, Clone)]
pub struct ImageExport {
    /// The export's name.
    pub name: String,
    /// One image, or two for a replicated pair.
    pub images: Vec<PathBuf>,
    /// Open the images read-only (nothing is ever written to them) and refuse writes.
    pub read_only: bool,
    /// The client identities (TLS certificate common names) that may use it; `None`: any.
    pub allow: Option<Vec<String>>,
}

/// What [`serve`] serves, where, and to whom.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen.
    pub listen: Listen,
    /// The exports; the first is the default (and the one a control socket manages).
    pub exports: Vec<ImageExport>,
    /// A control socket for the first export's pair (see [`crate::control`]).
    pub control: Option<PathBuf>,
    /// Whether clients may, or must, use TLS.
    pub tls_mode: TlsMode,
    /// The server's TLS credentials (needed unless `tls_mode` is off).
    pub tls: Option<ServerTls>,
}

/// Opens `images` (one, or two for a pair), serves them on `listen` as `export` until `stop`
/// is set, then flushes and closes the stack cleanly. `on_listening` gets the bound address.
pub fn serve_images(
    images: &[impl AsRef<Path>],
    listen: &str,
    export: &str,
    stop: &AtomicBool,
    on_listening: &mut dyn FnMut(std::net::SocketAddr),
) -> Result<ServeStats, String> {
    serve_images_with_control(images, listen, export, None, stop, on_listening)
}

/// As [`serve_images`], with a control socket at `control` (a pair only; see
/// [`crate::control`]) through which a failed member is replaced while the export serves.
pub fn serve_images_with_control(
    images: &[impl AsRef<Path>],
    listen: &str,
    export: &str,
    control: Option<&Path>,
    stop: &AtomicBool,
    on_listening: &mut dyn FnMut(std::net::SocketAddr),
) -> Result<ServeStats, String> {
    let config = ServeConfig {
        listen: Listen::Tcp(listen.to_string()),
        exports: vec![ImageExport {
            name: export.to_string(),
            images: images.iter().map(|i| i.as_ref().to_path_buf()).collect(),
            read_only: false,
            allow: None,
        }],
        control: control.map(Path::to_path_buf),
        tls_mode: TlsMode::Off,
        tls: None,
    };
    serve(&config, stop, &mut |addr| {
        if let ListenAddr::Tcp(addr) = addr {
            on_listening(*addr)
        }
    })
}

fn open_stack(export: &ImageExport) -> Result<txdisk::Stack, String> {
    let options = txdisk::OpenOptions {
        read_only: export.read_only,
        ..txdisk::OpenOptions::default()
    };
    txdisk::open(&export.images, options).map_err(|e| format!("export {:?}: {e}", export.name))
}

/// Opens every export's images, serves them as `config` says until `stop` is set, then
/// flushes and closes every stack cleanly. `on_listening` gets the bound address.
pub fn serve(
    config: &ServeConfig,
    stop: &AtomicBool,
    on_listening: &mut dyn FnMut(&ListenAddr),
) -> Result<ServeStats, String> {
    let mut stacks = Vec::with_capacity(config.exports.len());
    for export in &config.exports {
        stacks.push(open_stack(export)?);
    }
    let control = match (
        &config.control,
        stacks.first().and_then(|s| s.pair_handle()),
    ) {
        (None, _) => None,
        (Some(_), Some(_)) if config.exports.first().is_some_and(|e| e.read_only) => {
            return Err(
                "a control socket cannot serve a read-only export: `replace` writes a member"
                    .into(),
            )
        }
        (Some(path), Some(pair)) => Some(
            crate::control::Control::start(path, pair)
                .map_err(|e| format!("control socket {}: {e}", path.display()))?,
        ),
        (Some(_), None) => {
            return Err("a control socket needs a replicated pair (two images)".into())
        }
    };
    let backends: Vec<Arc<LogicalBackend>> = stacks
        .into_iter()
        .map(|stack| Arc::new(LogicalBackend::new(stack)))
        .collect();
    let max_payload_bytes = backends
        .iter()
        .map(|b| b.max_payload_bytes())
        .min()
        .unwrap_or(BLOCK_SIZE as u32);
    let options = ServerOptions {
        max_payload_bytes,
        tls_mode: config.tls_mode,
        tls: config.tls.clone(),
        ..ServerOptions::default()
    };
    let exports = config
        .exports
        .iter()
        .zip(&backends)
        .map(|(export, backend)| Export {
            name: export.name.clone(),
            backend: backend.clone(),
            read_only: export.read_only,
            allow: export.allow.clone(),
        })
        .collect();
    let served = Server::bind_exports(&config.listen, exports)
        .and_then(|server| server.with_options(options))
        .map_err(|e| e.to_string())
        .and_then(|server| {
            on_listening(&server.listen_addr().map_err(|e| e.to_string())?);
            server.serve_until(stop).map_err(|e| e.to_string())
        });
    // The control thread holds the pair: it ends before the pair is closed.
    if let Some(control) = control {
        control.stop();
    }
    let stats = served?;
    for backend in backends {
        let backend = Arc::try_unwrap(backend)
            .map_err(|_| "an export is still in use after the server stopped".to_string())?;
        backend.close().map_err(|e| e.to_string())?;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_the_range_exactly() {
        for (offset, len) in [
            (0u64, 4096u64),
            (1, 1),
            (4095, 2),
            (100, 10_000),
            (8192, 0),
            (4096 * 3 + 7, 4096 * 2),
        ] {
            let spans: Vec<Span> = spans(offset, len).collect();
            let covered: usize = spans.iter().map(|s| s.in_buf.len()).sum();
            assert_eq!(covered as u64, len, "offset {offset} len {len}");
            let mut next = 0;
            for span in &spans {
                assert_eq!(span.in_buf.start, next);
                assert_eq!(span.in_block.len(), span.in_buf.len());
                next = span.in_buf.end;
            }
        }
    }
}
