//! A small blocking NBD client: enough for tests, crash workloads and scripts that need to
//! know exactly which requests the server acknowledged. Simple replies only, like the server.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::{NbdError, Result};
use crate::proto::{self, be_u16, be_u64, Request};

/// Largest option reply the client takes (a name, a message, an info item).
const MAX_OPTION_REPLY_BYTES: u32 = 64 * 1024;
/// Every socket read or write of the client gives up after this long.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection in the transmission phase.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    size_bytes: u64,
    transmission_flags: u16,
    next_handle: u64,
}

/// The header of one simple reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The request this reply answers.
    pub handle: u64,
    /// 0 for success, else an NBD error value (`proto::EINVAL`...).
    pub errno: u32,
}

/// A connection during option haggling.
struct Haggle {
    stream: TcpStream,
    no_zeroes: bool,
}

fn open(addr: SocketAddr) -> Result<Haggle> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    expect_u64(&mut stream, proto::INIT_MAGIC, "NBDMAGIC")?;
    expect_u64(&mut stream, proto::OPTS_MAGIC, "IHAVEOPT")?;
    let server_flags = proto::read_u16(&mut stream)?;
    if server_flags & proto::FLAG_FIXED_NEWSTYLE == 0 {
        return Err(protocol(
            "fixed newstyle",
            format!("flags {server_flags:#x}"),
        ));
    }
    let no_zeroes = server_flags & proto::FLAG_NO_ZEROES != 0;
    let mut client_flags = proto::FLAG_C_FIXED_NEWSTYLE;
    if no_zeroes {
        client_flags |= proto::FLAG_C_NO_ZEROES;
    }
    stream.write_all(&client_flags.to_be_bytes())?;
    Ok(Haggle { stream, no_zeroes })
}

fn protocol(expected: &str, found: String) -> NbdError {
    NbdError::Protocol {
        expected: expected.to_string(),
        found,
    }
}

fn expect_u64(r: &mut impl Read, want: u64, what: &str) -> Result<()> {
    let got = proto::read_u64(r)?;
    if got != want {
        return Err(protocol(what, format!("{got:#x}")));
    }
    Ok(())
}

impl Haggle {
    fn send_option(&mut self, option: u32, data: &[u8]) -> Result<()> {
        let mut msg = proto::OPTS_MAGIC.to_be_bytes().to_vec();
        msg.extend_from_slice(&option.to_be_bytes());
        msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
        msg.extend_from_slice(data);
        self.stream.write_all(&msg)?;
        Ok(())
    }

    /// Reads one option reply: (reply type, data). Error replies become errors.
    fn read_reply(&mut self, option: u32) -> Result<(u32, Vec<u8>)> {
        expect_u64(
            &mut self.stream,
            proto::OPT_REPLY_MAGIC,
            "option reply magic",
        )?;
        let echoed = proto::read_u32(&mut self.stream)?;
        if echoed != option {
            return Err(protocol(
                &format!("reply to option {option}"),
                echoed.to_string(),
            ));
        }
        let reply_type = proto::read_u32(&mut self.stream)?;
        let len = proto::read_u32(&mut self.stream)?;
        if len > MAX_OPTION_REPLY_BYTES {
            return Err(protocol("a short option reply", format!("{len} bytes")));
        }
        let mut data = vec![0u8; len as usize];
        self.stream.read_exact(&mut data)?;
        if proto::is_rep_error(reply_type) {
            return Err(NbdError::OptionRefused {
                option,
                reply_type,
                message: String::from_utf8_lossy(&data).into_owned(),
            });
        }
        Ok((reply_type, data))
    }

    /// Sends INFO or GO; returns (size, transmission flags) from `NBD_INFO_EXPORT`.
    fn info_or_go(&mut self, option: u32, export: &str) -> Result<(u64, u16)> {
        let mut data = (export.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(export.as_bytes());
        data.extend_from_slice(&1u16.to_be_bytes());
        data.extend_from_slice(&proto::INFO_BLOCK_SIZE.to_be_bytes());
        self.send_option(option, &data)?;
        let mut export_info = None;
        loop {
            let (reply_type, data) = self.read_reply(option)?;
            match reply_type {
                proto::REP_ACK => break,
                proto::REP_INFO
                    if data.len() == 12 && be_u16(&data[0..2]) == proto::INFO_EXPORT =>
                {
                    export_info = Some((be_u64(&data[2..10]), be_u16(&data[10..12])));
                }
                proto::REP_INFO => {} // other information items are optional
                other => return Err(protocol("NBD_REP_INFO or NBD_REP_ACK", other.to_string())),
            }
        }
        export_info.ok_or_else(|| protocol("NBD_INFO_EXPORT", "none".to_string()))
    }

    fn into_client(self, size_bytes: u64, transmission_flags: u16) -> Result<Client> {
        Ok(Client {
            reader: BufReader::new(self.stream.try_clone()?),
            writer: self.stream,
            size_bytes,
            transmission_flags,
            next_handle: 1,
        })
    }
}

impl Client {
    /// Connects and enters transmission with `NBD_OPT_GO`.
    pub fn connect(addr: SocketAddr, export: &str) -> Result<Client> {
        let mut h = open(addr)?;
        let (size, flags) = h.info_or_go(proto::OPT_GO, export)?;
        h.into_client(size, flags)
    }

    /// Connects and enters transmission with the old `NBD_OPT_EXPORT_NAME`.
    pub fn connect_with_export_name(addr: SocketAddr, export: &str) -> Result<Client> {
        let mut h = open(addr)?;
        h.send_option(proto::OPT_EXPORT_NAME, export.as_bytes())?;
        let size = proto::read_u64(&mut h.stream)?;
        let flags = proto::read_u16(&mut h.stream)?;
        if !h.no_zeroes {
            let mut zeroes = [0u8; proto::EXPORT_NAME_ZEROES];
            h.stream.read_exact(&mut zeroes)?;
        }
        h.into_client(size, flags)
    }

    /// Asks with `NBD_OPT_INFO` for an export's (size, transmission flags), then aborts.
    pub fn info(addr: SocketAddr, export: &str) -> Result<(u64, u16)> {
        let mut h = open(addr)?;
        let info = h.info_or_go(proto::OPT_INFO, export)?;
        h.send_option(proto::OPT_ABORT, &[])?;
        Ok(info)
    }

    /// The export names `NBD_OPT_LIST` returns.
    pub fn list_exports(addr: SocketAddr) -> Result<Vec<String>> {
        let mut h = open(addr)?;
        h.send_option(proto::OPT_LIST, &[])?;
        let mut names = Vec::new();
        loop {
            let (reply_type, data) = h.read_reply(proto::OPT_LIST)?;
            match reply_type {
                proto::REP_ACK => break,
                proto::REP_SERVER if data.len() >= 4 => {
                    let len = (proto::be_u32(&data[0..4]) as usize).min(data.len() - 4);
                    names.push(String::from_utf8_lossy(&data[4..4 + len]).into_owned());
                }
                other => return Err(protocol("NBD_REP_SERVER or NBD_REP_ACK", other.to_string())),
            }
        }
        h.send_option(proto::OPT_ABORT, &[])?;
        Ok(names)
    }

    /// The export's size in bytes, as the handshake gave it.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The export's transmission flags (`proto::TFLAG_*`), as the handshake gave it.
    pub fn transmission_flags(&self) -> u16 {
        self.transmission_flags
    }

    /// Sends one request (with `payload` after the header, for writes); returns its handle.
    /// Replies are collected with [`Client::receive_reply`], so requests can be pipelined.
    pub fn send_request(
        &mut self,
        kind: u16,
        flags: u16,
        offset: u64,
        length: u32,
        payload: &[u8],
    ) -> Result<u64> {
        let handle = self.next_handle;
        self.next_handle += 1;
        let req = Request {
            flags,
            kind,
            handle,
            offset,
            length,
        };
        let mut msg = req.encode().to_vec();
        msg.extend_from_slice(payload);
        self.writer.write_all(&msg)?;
        Ok(handle)
    }

    /// Reads the next reply. `read_len(handle)` says how many data bytes follow a successful
    /// reply to that handle (the READ length; 0 for anything else).
    pub fn receive_reply(
        &mut self,
        read_len: impl FnOnce(u64) -> usize,
    ) -> Result<(Reply, Vec<u8>)> {
        let mut header = [0u8; proto::SIMPLE_REPLY_HEADER_BYTES];
        self.reader.read_exact(&mut header)?;
        let magic = proto::be_u32(&header[0..4]);
        if magic != proto::SIMPLE_REPLY_MAGIC {
            return Err(protocol("simple reply magic", format!("{magic:#x}")));
        }
        let reply = Reply {
            errno: proto::be_u32(&header[4..8]),
            handle: be_u64(&header[8..16]),
        };
        let mut data = Vec::new();
        if reply.errno == 0 {
            data.resize(read_len(reply.handle), 0);
            self.reader.read_exact(&mut data)?;
        }
        Ok((reply, data))
    }

    fn call(
        &mut self,
        kind: u16,
        flags: u16,
        offset: u64,
        length: u32,
        payload: &[u8],
    ) -> Result<Vec<u8>> {
        let handle = self.send_request(kind, flags, offset, length, payload)?;
        let want = if kind == proto::CMD_READ {
            length as usize
        } else {
            0
        };
        let (reply, data) = self.receive_reply(|_| want)?;
        if reply.handle != handle {
            return Err(protocol(
                &format!("reply to handle {handle}"),
                reply.handle.to_string(),
            ));
        }
        if reply.errno != 0 {
            return Err(NbdError::Request { errno: reply.errno });
        }
        Ok(data)
    }

    /// Reads `len` bytes at byte `offset`; an error reply is [`NbdError::Request`].
    pub fn read(&mut self, offset: u64, len: u32) -> Result<Vec<u8>> {
        self.call(proto::CMD_READ, 0, offset, len, &[])
    }

    /// Writes `data` at byte `offset`, with FUA when `fua` (durable before the reply).
    pub fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> Result<()> {
        let len = u32::try_from(data.len())
            .map_err(|_| protocol("a write under 4 GiB", data.len().to_string()))?;
        let flags = if fua { proto::CMD_FLAG_FUA } else { 0 };
        self.call(proto::CMD_WRITE, flags, offset, len, data)
            .map(drop)
    }

    /// Makes every completed write durable (`NBD_CMD_FLUSH`).
    pub fn flush(&mut self) -> Result<()> {
        self.call(proto::CMD_FLUSH, 0, 0, 0, &[]).map(drop)
    }

    /// Trims `len` bytes at byte `offset`, with FUA when `fua`.
    pub fn trim(&mut self, offset: u64, len: u32, fua: bool) -> Result<()> {
        let flags = if fua { proto::CMD_FLAG_FUA } else { 0 };
        self.call(proto::CMD_TRIM, flags, offset, len, &[])
            .map(drop)
    }

    /// Sends `NBD_CMD_DISC` (no reply) and closes.
    pub fn disconnect(mut self) -> Result<()> {
        self.send_request(proto::CMD_DISC, 0, 0, 0, &[])?;
        Ok(())
    }
}
