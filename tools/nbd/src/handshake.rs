//! The server's side of the fixed-newstyle handshake (option haggling).
//!
//! Answered: `NBD_OPT_EXPORT_NAME`, `NBD_OPT_GO`, `NBD_OPT_INFO`, `NBD_OPT_LIST`,
//! `NBD_OPT_ABORT`. Every other option gets `NBD_REP_ERR_UNSUP` (TLS, structured replies and
//! metadata contexts are not offered), so the transmission phase uses simple replies only.
//! Every length the client sends is bounded before anything is allocated from it.

use std::io::{self, Read, Write};

use crate::proto::{self, be_u16, be_u32};

/// Longest option payload accepted: a GO with a 4096-byte name and a few information
/// requests fits many times over. A longer one closes the connection (the protocol lets a
/// server end a session it judges abusive).
pub const MAX_OPTION_DATA_BYTES: u32 = 16 * 1024;

/// Most options accepted on one connection before the server gives up on the client.
pub const MAX_OPTIONS_PER_CONNECTION: usize = 256;

/// What the handshake tells a client about the one export.
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
}

/// How a handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Enter the transmission phase.
    Transmission,
    /// Close the connection (client aborted, chose a missing export, or broke the protocol).
    Close(&'static str),
}

/// Runs the handshake on one connection. I/O errors (the client went away) are returned
/// as errors; protocol violations as `Outcome::Close`.
pub fn negotiate(
    r: &mut impl Read,
    w: &mut impl Write,
    export: &ExportInfo,
    stopping: &dyn Fn() -> bool,
) -> io::Result<Outcome> {
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&proto::INIT_MAGIC.to_be_bytes());
    hello.extend_from_slice(&proto::OPTS_MAGIC.to_be_bytes());
    hello.extend_from_slice(&(proto::FLAG_FIXED_NEWSTYLE | proto::FLAG_NO_ZEROES).to_be_bytes());
    w.write_all(&hello)?;

    let client_flags = proto::read_u32(r)?;
    if client_flags & !proto::KNOWN_CLIENT_FLAGS != 0 {
        return Ok(Outcome::Close("unknown client flags"));
    }
    let session = Session {
        fixed: client_flags & proto::FLAG_C_FIXED_NEWSTYLE != 0,
        no_zeroes: client_flags & proto::FLAG_C_NO_ZEROES != 0,
        export,
    };
    for _ in 0..MAX_OPTIONS_PER_CONNECTION {
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
        if let Some(outcome) = session.answer(w, option, &data, stopping())? {
            return Ok(outcome);
        }
    }
    Ok(Outcome::Close("too many options"))
}

struct Session<'a> {
    fixed: bool,
    no_zeroes: bool,
    export: &'a ExportInfo,
}

impl Session<'_> {
    /// Answers one option; `Some` ends the handshake.
    fn answer(
        &self,
        w: &mut impl Write,
        option: u32,
        data: &[u8],
        stopping: bool,
    ) -> io::Result<Option<Outcome>> {
        if option == proto::OPT_EXPORT_NAME {
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
        if stopping {
            proto::write_option_reply(w, option, proto::REP_ERR_SHUTDOWN, b"server shutting down")?;
            return Ok(None);
        }
        match option {
            proto::OPT_LIST => self.list(w, data).map(|()| None),
            proto::OPT_INFO | proto::OPT_GO => self.info_or_go(w, option, data),
            _ => {
                let msg: &[u8] = match option {
                    proto::OPT_STARTTLS => b"TLS is not supported",
                    proto::OPT_STRUCTURED_REPLY => b"only simple replies are supported",
                    _ => b"option not supported",
                };
                proto::write_option_reply(w, option, proto::REP_ERR_UNSUP, msg).map(|()| None)
            }
        }
    }

    fn name_matches(&self, name: &[u8]) -> bool {
        // The empty name selects the default export, which is our only one.
        name.is_empty() || name == self.export.name.as_bytes()
    }

    fn export_name(&self, w: &mut impl Write, name: &[u8], stopping: bool) -> io::Result<Outcome> {
        if stopping {
            return Ok(Outcome::Close("server shutting down"));
        }
        if !self.name_matches(name) {
            // EXPORT_NAME has no error reply: the protocol says to close.
            return Ok(Outcome::Close("unknown export name"));
        }
        let mut msg = Vec::with_capacity(10 + proto::EXPORT_NAME_ZEROES);
        msg.extend_from_slice(&self.export.size_bytes.to_be_bytes());
        msg.extend_from_slice(&self.export.transmission_flags.to_be_bytes());
        if !self.no_zeroes {
            msg.resize(msg.len() + proto::EXPORT_NAME_ZEROES, 0);
        }
        w.write_all(&msg)?;
        Ok(Outcome::Transmission)
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
        let name = self.export.name.as_bytes();
        let mut entry = Vec::with_capacity(4 + name.len());
        entry.extend_from_slice(&(name.len() as u32).to_be_bytes());
        entry.extend_from_slice(name);
        proto::write_option_reply(w, proto::OPT_LIST, proto::REP_SERVER, &entry)?;
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
        if !self.name_matches(name) {
            proto::write_option_reply(w, option, proto::REP_ERR_UNKNOWN, b"no such export")?;
            return Ok(None);
        }
        let e = self.export;
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
        Ok((option == proto::OPT_GO).then_some(Outcome::Transmission))
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
