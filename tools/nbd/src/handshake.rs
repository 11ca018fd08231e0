//! The server's side of the fixed-newstyle handshake (option haggling).
//!
//! Answered: `NBD_OPT_EXPORT_NAME`, `NBD_OPT_GO`, `NBD_OPT_INFO`, `NBD_OPT_LIST`,
//! `NBD_OPT_ABORT` and, when the server has TLS credentials, `NBD_OPT_STARTTLS`. Every other
//! option gets `NBD_REP_ERR_UNSUP` (structured replies and metadata contexts are not offered),
//! so the transmission phase uses simple replies only. Every length the client sends is
//! bounded before anything is allocated from it.
//!
//! **Policy.** With [`TlsMode::Require`], every option but STARTTLS and ABORT is refused with
//! `NBD_REP_ERR_TLS_REQD` until TLS runs (EXPORT_NAME, which has no error reply, closes the
//! connection), so nothing of an export — not even its name or size — is told in plain text.
//! An export with an allow-list is seen and selected only by a client whose TLS certificate
//! names one of its identities; others are told `NBD_REP_ERR_POLICY` and do not see it in LIST.

use std::io::{self, Read, Write};

use crate::proto::{self, be_u16, be_u32};

/// Longest option payload accepted: a GO with a 4096-byte name and a few information
/// requests fits many times over. A longer one closes the connection (the protocol lets a
/// server end a session it judges abusive).
pub const MAX_OPTION_DATA_BYTES: u32 = 16 * 1024;

/// Most options accepted on one connection before the server gives up on the client.
pub const MAX_OPTIONS_PER_CONNECTION: usize = 256;

/// Whether a server speaks TLS, and whether it insists on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// No TLS: STARTTLS is refused as unsupported.
    #[default]
    Off,
    /// TLS for clients that ask; plain text for the others.
    On,
    /// TLS before anything else (see the module comment).
    Require,
}

/// What the handshake tells a client about one export, and who may use it.
#[derive(Debug, Clone)]
pub struct ExportInfo {
    /// The export's name.
    pub name: String,
    /// The export's size in bytes.
    pub size_bytes: u64,
    /// Transmission flags (`proto::TFLAG_*`).
    pub transmission_flags: u16,
    /// Smallest request alignment in bytes the client should use.
    pub min_block_bytes: u32,
    /// Request size in bytes that performs best.
    pub preferred_block_bytes: u32,
    /// Largest READ or WRITE payload in bytes the server accepts.
    pub max_payload_bytes: u32,
    /// The client identities (TLS certificate common names) that may use the export; `None`:
    /// every client that got through the handshake's other checks.
    pub allow: Option<Vec<String>>,
}

/// How a round of option haggling ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Enter the transmission phase on this export (an index into the exports).
    Transmission(usize),
    /// STARTTLS was acknowledged: run the TLS handshake, call
    /// [`Negotiation::tls_started`], and go on haggling inside TLS.
    StartTls,
    /// Close the connection (client aborted, chose a missing export, or broke the protocol).
    Close(&'static str),
}

/// One connection's handshake, which may run in two parts (before and after STARTTLS).
pub struct Negotiation<'a> {
    exports: &'a [ExportInfo],
    tls_mode: TlsMode,
    fixed: bool,
    no_zeroes: bool,
    tls_active: bool,
    identity: Option<String>,
    options_seen: usize,
}

/// Sends the greeting and reads the client's flags: the start of every handshake. `Err`
/// holds the reason to close for a client that broke the protocol.
pub fn greet<'a>(
    r: &mut impl Read,
    w: &mut impl Write,
    exports: &'a [ExportInfo],
    tls_mode: TlsMode,
) -> io::Result<Result<Negotiation<'a>, &'static str>> {
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&proto::INIT_MAGIC.to_be_bytes());
    hello.extend_from_slice(&proto::OPTS_MAGIC.to_be_bytes());
    hello.extend_from_slice(&(proto::FLAG_FIXED_NEWSTYLE | proto::FLAG_NO_ZEROES).to_be_bytes());
    w.write_all(&hello)?;

    let client_flags = proto::read_u32(r)?;
    if client_flags & !proto::KNOWN_CLIENT_FLAGS != 0 {
        return Ok(Err("unknown client flags"));
    }
    Ok(Ok(Negotiation {
        exports,
        tls_mode,
        fixed: client_flags & proto::FLAG_C_FIXED_NEWSTYLE != 0,
        no_zeroes: client_flags & proto::FLAG_C_NO_ZEROES != 0,
        tls_active: false,
        identity: None,
        options_seen: 0,
    }))
}

/// Runs a whole handshake on a connection that cannot start TLS: greeting, then options.
pub fn negotiate(
    r: &mut impl Read,
    w: &mut impl Write,
    exports: &[ExportInfo],
    stopping: &dyn Fn() -> bool,
) -> io::Result<Outcome> {
    match greet(r, w, exports, TlsMode::Off)? {
        Ok(mut negotiation) => negotiation.options(r, w, stopping),
        Err(why) => Ok(Outcome::Close(why)),
    }
}

impl Negotiation<'_> {
    /// Records that TLS now runs, with the identity the client's certificate gave it.
    pub fn tls_started(&mut self, identity: Option<String>) {
        assert!(!self.tls_active, "nbd handshake: TLS started twice");
        self.tls_active = true;
        self.identity = identity;
    }

    /// The client's identity, once TLS runs and its certificate named one.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// Answers options until one ends this round. I/O errors (the client went away) are
    /// returned as errors; protocol violations as `Outcome::Close`.
    pub fn options(
        &mut self,
        r: &mut impl Read,
        w: &mut impl Write,
        stopping: &dyn Fn() -> bool,
    ) -> io::Result<Outcome> {
        while self.options_seen < MAX_OPTIONS_PER_CONNECTION {
            self.options_seen += 1;
            if proto::read_u64(r)? != proto::OPTS_MAGIC {
                return Ok(Outcome::Close("bad option magic"));
            }
            let option = proto::read_u32(r)?;
            let len = proto::read_u32(r)?;
            if len > MAX_OPTION_DATA_BYTES {
                return Ok(Outcome::Close("option data too long"));
            }
            let mut data = vec![0u8; len as usize];
            r.read_exact(&mut data)?;
            if let Some(outcome) = self.answer(w, option, &data, stopping())? {
                return Ok(outcome);
            }
        }
        Ok(Outcome::Close("too many options"))
    }

    /// Answers one option; `Some` ends this round.
    fn answer(
        &self,
        w: &mut impl Write,
        option: u32,
        data: &[u8],
        stopping: bool,
    ) -> io::Result<Option<Outcome>> {
        let tls_missing = self.tls_mode == TlsMode::Require && !self.tls_active;
        if option == proto::OPT_EXPORT_NAME {
            if tls_missing {
                // EXPORT_NAME has no error reply: the protocol says to close.
                return Ok(Some(Outcome::Close(
                    "EXPORT_NAME before STARTTLS, TLS required",
                )));
            }
            return self.export_name(w, data, stopping).map(Some);
        }
        if !self.fixed {
            // Without fixed newstyle the client cannot read option replies.
            return Ok(Some(Outcome::Close(
                "option other than EXPORT_NAME without fixed newstyle",
            )));
        }
        if option == proto::OPT_ABORT {
            proto::write_option_reply(w, option, proto::REP_ACK, &[])?;
            return Ok(Some(Outcome::Close("client aborted")));
        }
        if option == proto::OPT_STARTTLS {
            return self.start_tls(w, data);
        }
        if tls_missing {
            let msg = b"this server requires TLS: send NBD_OPT_STARTTLS first";
            proto::write_option_reply(w, option, proto::REP_ERR_TLS_REQD, msg)?;
            return Ok(None);
        }
        if stopping {
            proto::write_option_reply(w, option, proto::REP_ERR_SHUTDOWN, b"server shutting down")?;
            return Ok(None);
        }
        match option {
            proto::OPT_LIST => self.list(w, data).map(|()| None),
            proto::OPT_INFO | proto::OPT_GO => self.info_or_go(w, option, data),
            _ => {
                let msg: &[u8] = match option {
                    proto::OPT_STRUCTURED_REPLY => b"only simple replies are supported",
                    _ => b"option not supported",
                };
                proto::write_option_reply(w, option, proto::REP_ERR_UNSUP, msg).map(|()| None)
            }
        }
    }

    fn start_tls(&self, w: &mut impl Write, data: &[u8]) -> io::Result<Option<Outcome>> {
        let (reply, msg): (u32, &[u8]) = if self.tls_mode == TlsMode::Off {
            (proto::REP_ERR_UNSUP, b"TLS is not enabled on this server")
        } else if self.tls_active {
            (proto::REP_ERR_INVALID, b"TLS is already running")
        } else if !data.is_empty() {
            (proto::REP_ERR_INVALID, b"STARTTLS takes no data")
        } else {
            proto::write_option_reply(w, proto::OPT_STARTTLS, proto::REP_ACK, &[])?;
            return Ok(Some(Outcome::StartTls));
        };
        proto::write_option_reply(w, proto::OPT_STARTTLS, reply, msg)?;
        Ok(None)
    }

    /// True when this client may see and use `export`.
    fn allowed(&self, export: &ExportInfo) -> bool {
        match &export.allow {
            None => true,
            Some(identities) => self
                .identity
                .as_ref()
                .is_some_and(|id| identities.iter().any(|allowed| allowed == id)),
        }
    }

    /// The export `name` selects: the empty name is the first (default) export.
    fn find(&self, name: &[u8]) -> Option<usize> {
        if name.is_empty() {
            return (!self.exports.is_empty()).then_some(0);
        }
        self.exports.iter().position(|e| e.name.as_bytes() == name)
    }

    fn export_name(&self, w: &mut impl Write, name: &[u8], stopping: bool) -> io::Result<Outcome> {
        if stopping {
            return Ok(Outcome::Close("server shutting down"));
        }
        let Some(index) = self.find(name) else {
            // EXPORT_NAME has no error reply: the protocol says to close.
            return Ok(Outcome::Close("unknown export name"));
        };
        let export = &self.exports[index];
        if !self.allowed(export) {
            return Ok(Outcome::Close("export not allowed to this client"));
        }
        let mut msg = Vec::with_capacity(10 + proto::EXPORT_NAME_ZEROES);
        msg.extend_from_slice(&export.size_bytes.to_be_bytes());
        msg.extend_from_slice(&export.transmission_flags.to_be_bytes());
        if !self.no_zeroes {
            msg.resize(msg.len() + proto::EXPORT_NAME_ZEROES, 0);
        }
        w.write_all(&msg)?;
        Ok(Outcome::Transmission(index))
    }

    fn list(&self, w: &mut impl Write, data: &[u8]) -> io::Result<()> {
        if !data.is_empty() {
            return proto::write_option_reply(
                w,
                proto::OPT_LIST,
                proto::REP_ERR_INVALID,
                b"LIST takes no data",
            );
        }
        for export in self.exports.iter().filter(|e| self.allowed(e)) {
            let name = export.name.as_bytes();
            let mut entry = Vec::with_capacity(4 + name.len());
            entry.extend_from_slice(&(name.len() as u32).to_be_bytes());
            entry.extend_from_slice(name);
            proto::write_option_reply(w, proto::OPT_LIST, proto::REP_SERVER, &entry)?;
        }
        proto::write_option_reply(w, proto::OPT_LIST, proto::REP_ACK, &[])
    }

    fn info_or_go(
        &self,
        w: &mut impl Write,
        option: u32,
        data: &[u8],
    ) -> io::Result<Option<Outcome>> {
        let Some((name, requests)) = parse_info_request(data) else {
            let msg = b"malformed INFO/GO request";
            proto::write_option_reply(w, option, proto::REP_ERR_INVALID, msg)?;
            return Ok(None);
        };
        let Some(index) = self.find(name) else {
            proto::write_option_reply(w, option, proto::REP_ERR_UNKNOWN, b"no such export")?;
            return Ok(None);
        };
        let e = &self.exports[index];
        if !self.allowed(e) {
            let msg = b"this client is not allowed to use the export";
            proto::write_option_reply(w, option, proto::REP_ERR_POLICY, msg)?;
            return Ok(None);
        }
        let mut info = Vec::with_capacity(12);
        info.extend_from_slice(&proto::INFO_EXPORT.to_be_bytes());
        info.extend_from_slice(&e.size_bytes.to_be_bytes());
        info.extend_from_slice(&e.transmission_flags.to_be_bytes());
        proto::write_option_reply(w, option, proto::REP_INFO, &info)?;
        if requests.contains(&proto::INFO_NAME) {
            let mut info = proto::INFO_NAME.to_be_bytes().to_vec();
            info.extend_from_slice(e.name.as_bytes());
            proto::write_option_reply(w, option, proto::REP_INFO, &info)?;
        }
        // Block sizes are sent whether asked or not (the protocol allows it): they tell the
        // client the largest request this server takes.
        let mut info = proto::INFO_BLOCK_SIZE.to_be_bytes().to_vec();
        info.extend_from_slice(&e.min_block_bytes.to_be_bytes());
        info.extend_from_slice(&e.preferred_block_bytes.to_be_bytes());
        info.extend_from_slice(&e.max_payload_bytes.to_be_bytes());
        proto::write_option_reply(w, option, proto::REP_INFO, &info)?;
        proto::write_option_reply(w, option, proto::REP_ACK, &[])?;
        Ok((option == proto::OPT_GO).then_some(Outcome::Transmission(index)))
    }
}

/// Splits INFO/GO data into (export name, information requests); None if the lengths
/// inside disagree with the option length.
fn parse_info_request(data: &[u8]) -> Option<(&[u8], Vec<u16>)> {
    if data.len() < 6 {
        return None;
    }
    let name_len = be_u32(&data[0..4]) as usize;
    if name_len > data.len() - 6 || name_len > proto::MAX_STRING_BYTES {
        return None;
    }
    let name = &data[4..4 + name_len];
    let count = be_u16(&data[4 + name_len..6 + name_len]) as usize;
    let list = &data[6 + name_len..];
    if list.len() != 2 * count {
        return None;
    }
    Some((name, list.chunks_exact(2).map(be_u16).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go_data(name: &[u8], requests: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name);
        d.extend_from_slice(&(requests.len() as u16).to_be_bytes());
        for r in requests {
            d.extend_from_slice(&r.to_be_bytes());
        }
        d
    }

    #[test]
    fn info_request_parsing_checks_every_length() {
        let d = go_data(b"disk", &[proto::INFO_NAME, proto::INFO_BLOCK_SIZE]);
        let (name, reqs) = parse_info_request(&d).unwrap();
        assert_eq!(name, b"disk");
        assert_eq!(reqs, vec![proto::INFO_NAME, proto::INFO_BLOCK_SIZE]);
        // Truncated list, extra byte, name longer than the data, too short.
        assert!(parse_info_request(&d[..d.len() - 1]).is_none());
        let mut long = d.clone();
        long.push(0);
        assert!(parse_info_request(&long).is_none());
        let mut bad_name = d.clone();
        bad_name[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_info_request(&bad_name).is_none());
        assert!(parse_info_request(&[0, 0, 0, 0, 0]).is_none());
        assert_eq!(parse_info_request(&go_data(b"", &[])).unwrap().0, b"");
    }
}
