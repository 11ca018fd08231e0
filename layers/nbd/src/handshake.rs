//! The client's side of the fixed-newstyle handshake: connect, negotiate structured replies
//! where the server offers them, select the export with `NBD_OPT_GO` (falling back to
//! `NBD_OPT_EXPORT_NAME` for a server without it), and check that the export can be a disk.
//!
//! Every read and write of the handshake is bounded by the socket timeouts set before the
//! first byte, and every length the server sends is bounded before anything is allocated.

use std::io::{self, Read, Write};

use txdisk_disk::BLOCK_SIZE;

use crate::error::{NbdError, Result};
use crate::proto::{self, be_u16, be_u32, be_u64};
pub use crate::stream::Stream;
use crate::tls::ClientTls;
use crate::uri::NbdTarget;

/// Largest option reply the client takes (an information item, a name, a message).
const MAX_OPTION_REPLY_BYTES: u32 = 64 * 1024;
/// Most option replies to one option before the client gives up on the server.
const MAX_REPLIES_PER_OPTION: usize = 64;
/// The largest request payload a client may assume when the server advertises none.
pub const DEFAULT_MAX_PAYLOAD_BYTES: u32 = 32 * 1024 * 1024;

/// What the handshake learnt about the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportInfo {
    /// The export's size in bytes.
    pub size_bytes: u64,
    /// Transmission flags (`proto::TFLAG_*`).
    pub transmission_flags: u16,
    /// Smallest request alignment in bytes (1 when the server gave none).
    pub min_block_bytes: u32,
    /// Request size in bytes that performs best (4096 when the server gave none).
    pub preferred_block_bytes: u32,
    /// Largest READ or WRITE payload in bytes.
    pub max_payload_bytes: u32,
    /// True when the server agreed to structured replies.
    pub structured_replies: bool,
}

impl ExportInfo {
    /// True when the export has transmission flag `flag`.
    pub fn has(&self, flag: u16) -> bool {
        self.transmission_flags & flag != 0
    }
}

/// Runs the handshake on a fresh connection and checks the export can be a disk.
pub fn negotiate(stream: &mut Stream, target: &NbdTarget, timeout_ms: u64) -> Result<ExportInfo> {
    let mut h = Haggle {
        stream,
        target,
        timeout_ms,
    };
    let no_zeroes = h.hello()?;
    h.start_tls()?;
    let structured_replies = h.structured_replies()?;
    let mut info = match h.go()? {
        Some(info) => info,
        None => h.export_name(no_zeroes)?,
    };
    info.structured_replies = structured_replies;
    check_export(target, &info)?;
    Ok(info)
}

struct Haggle<'a> {
    stream: &'a mut Stream,
    target: &'a NbdTarget,
    timeout_ms: u64,
}

impl Haggle<'_> {
    fn io_error(&self, waiting_for: &str, source: io::Error) -> NbdError {
        let target = self.target.to_string();
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => NbdError::Timeout {
                target,
                waiting_for: waiting_for.to_string(),
                timeout_ms: self.timeout_ms,
            },
            _ => NbdError::Io { target, source },
        }
    }

    fn protocol(&self, expected: &str, found: String) -> NbdError {
        NbdError::Protocol {
            target: self.target.to_string(),
            expected: expected.to_string(),
            found,
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], waiting_for: &str) -> Result<()> {
        self.stream
            .read_exact(buf)
            .map_err(|e| self.io_error(waiting_for, e))
    }

    fn read_u64(&mut self, waiting_for: &str) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b, waiting_for)?;
        Ok(u64::from_be_bytes(b))
    }

    fn send(&mut self, bytes: &[u8], what: &str) -> Result<()> {
        self.stream
            .write_all(bytes)
            .map_err(|e| self.io_error(what, e))
    }

    /// The server's greeting; sends the client flags. True when the zero padding is omitted.
    fn hello(&mut self) -> Result<bool> {
        let magic = self.read_u64("the server's greeting (NBDMAGIC)")?;
        if magic != proto::INIT_MAGIC {
            return Err(self.protocol("NBDMAGIC", format!("{magic:#018x}")));
        }
        let magic = self.read_u64("the server's greeting (IHAVEOPT)")?;
        if magic == proto::OLDSTYLE_MAGIC {
            return Err(self.protocol("a newstyle server", "the oldstyle handshake".into()));
        }
        if magic != proto::OPTS_MAGIC {
            return Err(self.protocol("IHAVEOPT", format!("{magic:#018x}")));
        }
        let mut b = [0u8; 2];
        self.read_exact(&mut b, "the server's handshake flags")?;
        let server_flags = u16::from_be_bytes(b);
        if server_flags & proto::FLAG_FIXED_NEWSTYLE == 0 {
            return Err(self.protocol("fixed newstyle", format!("flags {server_flags:#x}")));
        }
        let no_zeroes = server_flags & proto::FLAG_NO_ZEROES != 0;
        let mut client_flags = proto::FLAG_C_FIXED_NEWSTYLE;
        if no_zeroes {
            client_flags |= proto::FLAG_C_NO_ZEROES;
        }
        self.send(&client_flags.to_be_bytes(), "sending the client flags")?;
        Ok(no_zeroes)
    }

    fn send_option(&mut self, option: u32, data: &[u8]) -> Result<()> {
        let mut msg = Vec::new();
        proto::write_option(&mut msg, option, data).map_err(|e| self.io_error("an option", e))?;
        self.send(&msg, "sending an option")
    }

    /// One option reply: (reply type, data), error replies included.
    fn read_reply(&mut self, option: u32) -> Result<(u32, Vec<u8>)> {
        let waiting_for = format!("the reply to option {option}");
        let mut header = [0u8; 20];
        self.read_exact(&mut header, &waiting_for)?;
        let magic = be_u64(&header[0..8]);
        if magic != proto::OPT_REPLY_MAGIC {
            return Err(self.protocol("the option reply magic", format!("{magic:#018x}")));
        }
        let echoed = be_u32(&header[8..12]);
        if echoed != option {
            return Err(self.protocol(
                &format!("a reply to option {option}"),
                format!("a reply to option {echoed}"),
            ));
        }
        let reply_type = be_u32(&header[12..16]);
        let len = be_u32(&header[16..20]);
        if len > MAX_OPTION_REPLY_BYTES {
            return Err(self.protocol("an option reply of at most 64 KiB", format!("{len} bytes")));
        }
        let mut data = vec![0u8; len as usize];
        self.read_exact(&mut data, &waiting_for)?;
        Ok((reply_type, data))
    }

    fn refused(&self, option: u32, reply_type: u32, data: &[u8]) -> NbdError {
        let message = String::from_utf8_lossy(data).into_owned();
        if reply_type == proto::REP_ERR_TLS_REQD && self.target.tls.is_none() {
            return NbdError::TlsRequired {
                target: self.target.to_string(),
            };
        }
        if reply_type == proto::REP_ERR_UNKNOWN {
            return NbdError::UnknownExport {
                target: self.target.to_string(),
                export: self.target.export.clone(),
                message,
            };
        }
        NbdError::OptionRefused {
            target: self.target.to_string(),
            option,
            reply_type,
            message,
        }
    }

    /// For an `nbds` target: `NBD_OPT_STARTTLS`, then the TLS handshake, after which the rest
    /// of the handshake and the whole transmission run inside TLS.
    fn start_tls(&mut self) -> Result<()> {
        let Some(tls) = &self.target.tls else {
            return Ok(());
        };
        let target = self.target.to_string();
        let failed = |reason: String| NbdError::Tls {
            target: target.clone(),
            reason,
        };
        let session = ClientTls::load(&tls.certificates)?
            .session(&self.target.tls_hostname())
            .map_err(&failed)?;
        self.send_option(proto::OPT_STARTTLS, &[])?;
        let (reply_type, data) = self.read_reply(proto::OPT_STARTTLS)?;
        match reply_type {
            proto::REP_ACK => {}
            t if proto::is_rep_error(t) => {
                return Err(failed(format!(
                    "the server refused NBD_OPT_STARTTLS (reply {t:#x}): {}",
                    String::from_utf8_lossy(&data)
                )))
            }
            t => {
                return Err(self.protocol(
                    "NBD_REP_ACK or an error to STARTTLS",
                    format!("reply type {t:#x}"),
                ))
            }
        }
        let plain = self
            .stream
            .try_clone()
            .map_err(|e| self.io_error("TLS", e))?;
        *self.stream = plain
            .start_tls(session)
            .map_err(|e| failed(format!("handshake: {e}")))?;
        Ok(())
    }

    /// Asks for structured replies; false when the server does not offer them.
    fn structured_replies(&mut self) -> Result<bool> {
        self.send_option(proto::OPT_STRUCTURED_REPLY, &[])?;
        let (reply_type, data) = self.read_reply(proto::OPT_STRUCTURED_REPLY)?;
        match reply_type {
            proto::REP_ACK if data.is_empty() => Ok(true),
            // Any refusal (unsupported, policy) leaves simple replies, which every server speaks.
            t if proto::is_rep_error(t) => Ok(false),
            t => Err(self.protocol(
                "NBD_REP_ACK or an error to STRUCTURED_REPLY",
                format!("reply type {t:#x}"),
            )),
        }
    }

    /// `NBD_OPT_GO`; `None` when the server does not know it (then EXPORT_NAME is used).
    fn go(&mut self) -> Result<Option<ExportInfo>> {
        let name = self.target.export.as_bytes();
        let mut data = (name.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(name);
        data.extend_from_slice(&1u16.to_be_bytes());
        data.extend_from_slice(&proto::INFO_BLOCK_SIZE.to_be_bytes());
        self.send_option(proto::OPT_GO, &data)?;
        let mut export = None;
        let mut sizes = None;
        for _ in 0..MAX_REPLIES_PER_OPTION {
            let (reply_type, data) = self.read_reply(proto::OPT_GO)?;
            match reply_type {
                proto::REP_ACK => {
                    let Some((size_bytes, transmission_flags)) = export else {
                        return Err(
                            self.protocol("NBD_INFO_EXPORT before NBD_REP_ACK", "none".into())
                        );
                    };
                    let (min, preferred, max) =
                        sizes.unwrap_or((1, BLOCK_SIZE as u32, DEFAULT_MAX_PAYLOAD_BYTES));
                    return Ok(Some(ExportInfo {
                        size_bytes,
                        transmission_flags,
                        min_block_bytes: min,
                        preferred_block_bytes: preferred,
                        max_payload_bytes: max,
                        structured_replies: false,
                    }));
                }
                proto::REP_INFO if data.len() < 2 => {
                    return Err(
                        self.protocol("an information item", format!("{} bytes", data.len()))
                    );
                }
                proto::REP_INFO => match be_u16(&data[0..2]) {
                    proto::INFO_EXPORT if data.len() == 12 => {
                        export = Some((be_u64(&data[2..10]), be_u16(&data[10..12])));
                    }
                    proto::INFO_BLOCK_SIZE if data.len() == 14 => {
                        sizes = Some((
                            be_u32(&data[2..6]),
                            be_u32(&data[6..10]),
                            be_u32(&data[10..14]),
                        ));
                    }
                    proto::INFO_EXPORT | proto::INFO_BLOCK_SIZE => {
                        return Err(self.protocol(
                            "an information item of its size",
                            format!("{} bytes", data.len()),
                        ));
                    }
                    _ => {} // other items (name, description) are for people
                },
                proto::REP_ERR_UNSUP => return Ok(None),
                t if proto::is_rep_error(t) => return Err(self.refused(proto::OPT_GO, t, &data)),
                t => {
                    return Err(
                        self.protocol("NBD_REP_INFO or NBD_REP_ACK", format!("reply type {t:#x}"))
                    )
                }
            }
        }
        Err(self.protocol(
            "NBD_REP_ACK",
            format!("more than {MAX_REPLIES_PER_OPTION} replies"),
        ))
    }

    /// The old `NBD_OPT_EXPORT_NAME`: no error reply (a wrong name closes the connection).
    fn export_name(&mut self, no_zeroes: bool) -> Result<ExportInfo> {
        let name = self.target.export.clone();
        self.send_option(proto::OPT_EXPORT_NAME, name.as_bytes())?;
        let mut b = [0u8; 10];
        self.stream.read_exact(&mut b).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => NbdError::UnknownExport {
                target: self.target.to_string(),
                export: name.clone(),
                message: "the server closed the connection at NBD_OPT_EXPORT_NAME".into(),
            },
            _ => self.io_error("the reply to NBD_OPT_EXPORT_NAME", e),
        })?;
        if !no_zeroes {
            let mut zeroes = [0u8; proto::EXPORT_NAME_ZEROES];
            self.read_exact(&mut zeroes, "the reply to NBD_OPT_EXPORT_NAME")?;
        }
        Ok(ExportInfo {
            size_bytes: be_u64(&b[0..8]),
            transmission_flags: be_u16(&b[8..10]),
            min_block_bytes: 1,
            preferred_block_bytes: BLOCK_SIZE as u32,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            structured_replies: false,
        })
    }
}

/// Refuses an export that cannot be a crash-safe disk of 4096-byte blocks.
fn check_export(target: &NbdTarget, info: &ExportInfo) -> Result<()> {
    let target_s = target.to_string();
    if !info.has(proto::TFLAG_HAS_FLAGS) {
        return Err(NbdError::Protocol {
            target: target_s,
            expected: "NBD_FLAG_HAS_FLAGS in the transmission flags".into(),
            found: format!("{:#x}", info.transmission_flags),
        });
    }
    if !info.has(proto::TFLAG_SEND_FLUSH) {
        return Err(NbdError::NoFlush { target: target_s });
    }
    if info.has(proto::TFLAG_READ_ONLY) {
        return Err(NbdError::ReadOnly { target: target_s });
    }
    let block = BLOCK_SIZE as u64;
    let reason = if info.size_bytes < block {
        Some("a disk needs at least one 4096-byte block".to_string())
    } else if info.size_bytes % block != 0 {
        Some("not a whole number of 4096-byte blocks".to_string())
    } else {
        None
    };
    if let Some(reason) = reason {
        return Err(NbdError::BadSize {
            target: target_s,
            size_bytes: info.size_bytes,
            reason,
        });
    }
    let min = info.min_block_bytes;
    let sizes_fit = min != 0
        && min.is_power_of_two()
        && min <= BLOCK_SIZE as u32
        && info.max_payload_bytes >= BLOCK_SIZE as u32
        && info.preferred_block_bytes >= min;
    if !sizes_fit {
        return Err(NbdError::BadBlockSizes {
            target: target_s,
            min_bytes: min,
            preferred_bytes: info.preferred_block_bytes,
            max_bytes: info.max_payload_bytes,
        });
    }
    Ok(())
}
