//! Wire constants and message layouts of the NBD protocol (all integers big-endian), shared by
//! the client disk of this crate and the server of `txdisk-nbd`: one copy of the protocol.
//!
//! What is here: the fixed-newstyle handshake with the options either side speaks, the request
//! header, the simple reply and the structured reply chunks (which the client accepts and the
//! server does not offer). Extended headers, metadata contexts and TLS are spoken by neither,
//! so their constants are listed only where a side must recognise them to refuse them.

use std::io::{self, Read, Write};

/// `NBDMAGIC`, the first eight bytes the server sends.
pub const INIT_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: the newstyle magic, also the prefix of every option the client sends.
pub const OPTS_MAGIC: u64 = 0x4948_4156_454f_5054;
/// Prefix of every fixed-newstyle option reply.
pub const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Prefix of every transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Prefix of every simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Prefix of every structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
/// What an oldstyle server sends where a newstyle one sends [`OPTS_MAGIC`].
pub const OLDSTYLE_MAGIC: u64 = 0x0000_4202_8186_1253;

// Handshake flags (server → client, 16 bits).
/// Handshake flag: the server speaks fixed newstyle (options get replies).
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag: the server may omit the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;

// Client flags (client → server, 32 bits).
/// Client flag: the client speaks fixed newstyle.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag: the client accepts the omitted zero bytes of [`FLAG_NO_ZEROES`].
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;
/// Every client flag the server understands; any other bit ends the handshake.
pub const KNOWN_CLIENT_FLAGS: u32 = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES;

// Transmission flags (16 bits).
/// Transmission flag: always set, the other flags are meaningful.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
/// Transmission flag: the export refuses writes.
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
/// Transmission flag: the export accepts `NBD_CMD_FLUSH`.
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
/// Transmission flag: the export honours `NBD_CMD_FLAG_FUA` on writes.
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
/// Transmission flag: the export behaves like a rotating disk (schedulers may sort requests).
pub const TFLAG_ROTATIONAL: u16 = 1 << 4;
/// Transmission flag: the export accepts `NBD_CMD_TRIM`.
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
/// Transmission flag: the export accepts `NBD_CMD_WRITE_ZEROES`.
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// Transmission flag: a flush on one connection covers writes completed on every other.
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;

// Options.
/// Option: select an export by name and start transmission, without a reply on error.
pub const OPT_EXPORT_NAME: u32 = 1;
/// Option: the client ends the handshake.
pub const OPT_ABORT: u32 = 2;
/// Option: list the exports.
pub const OPT_LIST: u32 = 3;
/// Option: upgrade the connection to TLS; the handshake goes on inside it.
pub const OPT_STARTTLS: u32 = 5;
/// Option: describe an export without selecting it.
pub const OPT_INFO: u32 = 6;
/// Option: describe and select an export, then start transmission.
pub const OPT_GO: u32 = 7;
/// Option: use structured replies (refused: simple replies only).
pub const OPT_STRUCTURED_REPLY: u32 = 8;

// Option reply types.
/// Option reply: the option is done.
pub const REP_ACK: u32 = 1;
/// Option reply to `NBD_OPT_LIST`: one export's name.
pub const REP_SERVER: u32 = 2;
/// Option reply to `NBD_OPT_INFO`/`NBD_OPT_GO`: one information item.
pub const REP_INFO: u32 = 3;
const REP_ERR_BIT: u32 = 1 << 31;
/// Option error: the option is unknown or not supported.
pub const REP_ERR_UNSUP: u32 = REP_ERR_BIT | 1;
/// Option error: refused by the server's policy.
pub const REP_ERR_POLICY: u32 = REP_ERR_BIT | 2;
/// Option error: the option is malformed.
pub const REP_ERR_INVALID: u32 = REP_ERR_BIT | 3;
/// Option error: the server requires TLS before this option.
pub const REP_ERR_TLS_REQD: u32 = REP_ERR_BIT | 5;
/// Option error: no export of that name.
pub const REP_ERR_UNKNOWN: u32 = REP_ERR_BIT | 6;
/// Option error: the server is shutting down.
pub const REP_ERR_SHUTDOWN: u32 = REP_ERR_BIT | 7;

/// True for every option reply type that reports an error.
pub fn is_rep_error(reply_type: u32) -> bool {
    reply_type & REP_ERR_BIT != 0
}

// Information types of `NBD_OPT_INFO` / `NBD_OPT_GO`.
/// Information item: the export's size in bytes and its transmission flags.
pub const INFO_EXPORT: u16 = 0;
/// Information item: the export's canonical name.
pub const INFO_NAME: u16 = 1;
/// Information item: a description of the export for people.
pub const INFO_DESCRIPTION: u16 = 2;
/// Information item: the minimum, preferred and maximum block sizes in bytes.
pub const INFO_BLOCK_SIZE: u16 = 3;

// Commands.
/// Command: read `length` bytes at `offset`.
pub const CMD_READ: u16 = 0;
/// Command: write the `length` bytes of payload that follow at `offset`.
pub const CMD_WRITE: u16 = 1;
/// Command: disconnect once the requests in flight are answered.
pub const CMD_DISC: u16 = 2;
/// Command: make every completed write durable.
pub const CMD_FLUSH: u16 = 3;
/// Command: the client no longer needs `length` bytes at `offset`.
pub const CMD_TRIM: u16 = 4;
/// Command: write `length` zero bytes at `offset` (not advertised; answered with [`EINVAL`]).
pub const CMD_WRITE_ZEROES: u16 = 6;

// Structured reply chunks.
/// Structured reply flag: the last chunk of its reply.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
/// Chunk type: no payload (ends a reply that had nothing more to say).
pub const REPLY_TYPE_NONE: u16 = 0;
/// Chunk type: an offset (8 bytes) and the data read there.
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
/// Chunk type: an offset (8 bytes) and the length (4 bytes) of a range that reads as zeros.
pub const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
/// Bit set in every error chunk type.
pub const REPLY_TYPE_ERROR_BIT: u16 = 1 << 15;
/// Chunk type: an error value (4 bytes), a message length (2) and the message.
pub const REPLY_TYPE_ERROR: u16 = REPLY_TYPE_ERROR_BIT | 1;
/// Chunk type: as [`REPLY_TYPE_ERROR`], followed by the offset (8 bytes) it concerns.
pub const REPLY_TYPE_ERROR_OFFSET: u16 = REPLY_TYPE_ERROR_BIT | 2;
/// Bytes of a structured reply chunk header: magic 4, flags 2, type 2, handle 8, length 4.
pub const STRUCTURED_REPLY_HEADER_BYTES: usize = 20;

// Command flags.
/// Command flag: the write is durable before its reply (force unit access).
pub const CMD_FLAG_FUA: u16 = 1 << 0;

// Error values of the simple reply (the protocol's fixed numbering, not the host's errno).
/// Reply error: operation not permitted (a write to a read-only export).
pub const EPERM: u32 = 1;
/// Reply error: input/output error.
pub const EIO: u32 = 5;
/// Reply error: out of memory (listed for completeness; not sent here).
pub const ENOMEM: u32 = 12;
/// Reply error: invalid request (bad flags, an oversized or out-of-range read, an unknown command).
pub const EINVAL: u32 = 22;
/// Reply error: no space (the backend is full, or a write or trim reaches past the export's end).
pub const ENOSPC: u32 = 28;
/// Reply error: a value too large for its type (listed for completeness; not sent here).
pub const EOVERFLOW: u32 = 75;
/// Reply error: the command is not supported.
pub const ENOTSUP: u32 = 95;
/// Reply error: the server is shutting down.
pub const ESHUTDOWN: u32 = 108;

/// Bytes of a request header: magic 4, flags 2, type 2, handle 8, offset 8, length 4.
pub const REQUEST_HEADER_BYTES: usize = 28;
/// Bytes of a simple reply header: magic 4, error 4, handle 8.
pub const SIMPLE_REPLY_HEADER_BYTES: usize = 16;
/// Bytes of an option header after the magic: option 4, length 4.
pub const OPTION_HEADER_BYTES: usize = 16;
/// Reserved zeroes after an `NBD_OPT_EXPORT_NAME` reply unless `NO_ZEROES` was agreed.
pub const EXPORT_NAME_ZEROES: usize = 124;
/// Longest string (export name, message) the protocol allows.
pub const MAX_STRING_BYTES: usize = 4096;

/// One transmission request header as sent by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Command flags ([`CMD_FLAG_FUA`]).
    pub flags: u16,
    /// The command (`CMD_*`).
    pub kind: u16,
    /// Chosen by the client; its reply carries the same.
    pub handle: u64,
    /// Byte offset into the export.
    pub offset: u64,
    /// Bytes to read, write or trim.
    pub length: u32,
}

/// A request header that did not start with `REQUEST_MAGIC` (the stream is out of step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadMagic(pub u32);

impl Request {
    /// The header as sent on the wire.
    pub fn encode(&self) -> [u8; REQUEST_HEADER_BYTES] {
        let mut b = [0u8; REQUEST_HEADER_BYTES];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.handle.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Parses a header; [`BadMagic`] when it does not start with [`REQUEST_MAGIC`].
    pub fn decode(b: &[u8; REQUEST_HEADER_BYTES]) -> Result<Request, BadMagic> {
        let magic = be_u32(&b[0..4]);
        if magic != REQUEST_MAGIC {
            return Err(BadMagic(magic));
        }
        Ok(Request {
            flags: be_u16(&b[4..6]),
            kind: be_u16(&b[6..8]),
            handle: be_u64(&b[8..16]),
            offset: be_u64(&b[16..24]),
            length: be_u32(&b[24..28]),
        })
    }
}

/// The header of one structured reply chunk, as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// [`REPLY_FLAG_DONE`] on the last chunk of a reply.
    pub flags: u16,
    /// The chunk type (`REPLY_TYPE_*`).
    pub kind: u16,
    /// The request this chunk answers.
    pub handle: u64,
    /// Bytes of payload that follow.
    pub length: u32,
}

impl ChunkHeader {
    /// Parses the 20 bytes of a chunk header, the magic included; the magic found when it is
    /// not [`STRUCTURED_REPLY_MAGIC`].
    pub fn decode(b: &[u8; STRUCTURED_REPLY_HEADER_BYTES]) -> Result<ChunkHeader, BadMagic> {
        let magic = be_u32(&b[0..4]);
        if magic != STRUCTURED_REPLY_MAGIC {
            return Err(BadMagic(magic));
        }
        Ok(ChunkHeader {
            flags: be_u16(&b[4..6]),
            kind: be_u16(&b[6..8]),
            handle: be_u64(&b[8..16]),
            length: be_u32(&b[16..20]),
        })
    }

    /// The header as a server sends it (tests build replies with it).
    pub fn encode(&self) -> [u8; STRUCTURED_REPLY_HEADER_BYTES] {
        let mut b = [0u8; STRUCTURED_REPLY_HEADER_BYTES];
        b[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.handle.to_be_bytes());
        b[16..20].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// True for the last chunk of its reply.
    pub fn is_done(&self) -> bool {
        self.flags & REPLY_FLAG_DONE != 0
    }
}

/// The 16-byte header of a simple reply.
pub fn simple_reply_header(error: u32, handle: u64) -> [u8; SIMPLE_REPLY_HEADER_BYTES] {
    let mut b = [0u8; SIMPLE_REPLY_HEADER_BYTES];
    b[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..16].copy_from_slice(&handle.to_be_bytes());
    b
}

/// Writes one fixed-newstyle option reply (header and data) in a single call.
pub fn write_option_reply(
    w: &mut impl Write,
    option: u32,
    reply_type: u32,
    data: &[u8],
) -> io::Result<()> {
    let data_len = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "option reply too long"))?;
    let mut msg = Vec::with_capacity(20 + data.len());
    msg.extend_from_slice(&OPT_REPLY_MAGIC.to_be_bytes());
    msg.extend_from_slice(&option.to_be_bytes());
    msg.extend_from_slice(&reply_type.to_be_bytes());
    msg.extend_from_slice(&data_len.to_be_bytes());
    msg.extend_from_slice(data);
    w.write_all(&msg)
}

/// Writes one option request (`IHAVEOPT`, option, length, data) in a single call.
pub fn write_option(w: &mut impl Write, option: u32, data: &[u8]) -> io::Result<()> {
    let data_len = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "option data too long"))?;
    let mut msg = Vec::with_capacity(OPTION_HEADER_BYTES + data.len());
    msg.extend_from_slice(&OPTS_MAGIC.to_be_bytes());
    msg.extend_from_slice(&option.to_be_bytes());
    msg.extend_from_slice(&data_len.to_be_bytes());
    msg.extend_from_slice(data);
    w.write_all(&msg)
}

/// Reads a big-endian u16.
pub fn read_u16(r: &mut impl Read) -> io::Result<u16> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

/// Reads a big-endian u32.
pub fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

/// Reads a big-endian u64.
pub fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

/// Big-endian u16 from the first two bytes of `b` (callers pass exact-length slices).
pub fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Big-endian u32 from the first four bytes of `b`.
pub fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Big-endian u64 from the first eight bytes of `b`.
pub fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[0..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_and_rejects_bad_magic() {
        let req = Request {
            flags: CMD_FLAG_FUA,
            kind: CMD_WRITE,
            handle: 0x0102_0304_0506_0708,
            offset: 0xdead_beef_0000,
            length: 4097,
        };
        let bytes = req.encode();
        assert_eq!(Request::decode(&bytes), Ok(req));
        let mut bad = bytes;
        bad[0] ^= 1;
        assert_eq!(
            Request::decode(&bad),
            Err(BadMagic(REQUEST_MAGIC ^ (1 << 24)))
        );
    }

    #[test]
    fn option_reply_layout() {
        let mut out = Vec::new();
        write_option_reply(&mut out, OPT_LIST, REP_ACK, b"xy").unwrap();
        assert_eq!(be_u64(&out[0..8]), OPT_REPLY_MAGIC);
        assert_eq!(be_u32(&out[8..12]), OPT_LIST);
        assert_eq!(be_u32(&out[12..16]), REP_ACK);
        assert_eq!(be_u32(&out[16..20]), 2);
        assert_eq!(&out[20..], b"xy");
        assert!(is_rep_error(REP_ERR_UNSUP));
        assert!(!is_rep_error(REP_INFO));
    }
}
