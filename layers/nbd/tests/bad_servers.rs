//! NbdDisk against an in-process fake NBD server on loopback: the handshake's refusals (wrong
//! export name, too-small export, no flush, read-only, bad block sizes, garbage, silence), and
//! the transmission phase's failures (garbage replies, silence, a closed connection, error
//! replies), each a clear error value — never a panic or a hang — plus the good paths: simple
//! and structured replies, pipelined writes, multi-conn.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use txdisk_disk::{Block, Disk, DiskError};
use txdisk_nbd_disk::proto::{self, be_u32, ChunkHeader, Request};
use txdisk_nbd_disk::{NbdDisk, NbdError, NbdOptions};

/// How the fake server behaves.
#[derive(Clone)]
struct Fake {
    export: &'static str,
    size_bytes: u64,
    flags: u16,
    block_sizes: Option<(u32, u32, u32)>,
    structured: bool,
    /// Sent instead of the greeting (garbage in the handshake).
    greeting: Option<Vec<u8>>,
    /// Never answers GO (a server that stops during the handshake).
    silent_handshake: bool,
    /// What to do with request number n (from 0) of the transmission phase.
    misbehave: Option<(usize, Misbehave)>,
    /// Reads this many requests before answering any (proves the client pipelines).
    batch: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Misbehave {
    Garbage,
    Silence,
    Close,
    ReadEio,
    /// A structured data chunk longer than the read asked for.
    Overlong,
}

impl Default for Fake {
    fn default() -> Fake {
        Fake {
            export: "disk",
            size_bytes: 64 * 4096,
            flags: proto::TFLAG_HAS_FLAGS | proto::TFLAG_SEND_FLUSH,
            block_sizes: Some((512, 4096, 1 << 20)),
            structured: false,
            greeting: None,
            silent_handshake: false,
            misbehave: None,
            batch: 1,
        }
    }
}

fn options() -> NbdOptions {
    NbdOptions {
        timeout_ms: 300,
        ..NbdOptions::default()
    }
}

/// Starts the fake; returns its URI. Every accepted connection is served on its own thread
/// against one shared in-memory export; the request counter is shared too.
fn start(fake: Fake) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let data = Arc::new(Mutex::new(HashMap::<u64, Vec<u8>>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (fake, data, count) = (fake.clone(), data.clone(), count.clone());
            thread::spawn(move || serve(stream, &fake, &data, &count));
        }
    });
    format!("nbd://127.0.0.1:{port}/{}", "disk")
}

fn read_n(s: &mut TcpStream, n: usize) -> Option<Vec<u8>> {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).ok()?;
    Some(b)
}

fn serve(mut s: TcpStream, fake: &Fake, data: &Mutex<HashMap<u64, Vec<u8>>>, count: &AtomicUsize) {
    if let Some(g) = &fake.greeting {
        let _ = s.write_all(g);
        // Keep the socket open: the client must give up on what it read, not on a close.
        let _ = read_n(&mut s, 1 << 16);
        return;
    }
    let mut hello = proto::INIT_MAGIC.to_be_bytes().to_vec();
    hello.extend_from_slice(&proto::OPTS_MAGIC.to_be_bytes());
    hello.extend_from_slice(&(proto::FLAG_FIXED_NEWSTYLE | proto::FLAG_NO_ZEROES).to_be_bytes());
    if s.write_all(&hello).is_err() || read_n(&mut s, 4).is_none() {
        return;
    }
    let mut structured = false;
    loop {
        let Some(h) = read_n(&mut s, 16) else { return };
        let option = be_u32(&h[8..12]);
        let Some(body) = read_n(&mut s, be_u32(&h[12..16]) as usize) else {
            return;
        };
        match option {
            proto::OPT_STRUCTURED_REPLY if fake.structured => {
                structured = true;
                proto::write_option_reply(&mut s, option, proto::REP_ACK, &[]).unwrap();
            }
            proto::OPT_GO => {
                if fake.silent_handshake {
                    let _ = read_n(&mut s, 1 << 16);
                    return;
                }
                let name_len = be_u32(&body[0..4]) as usize;
                if &body[4..4 + name_len] != fake.export.as_bytes() {
                    proto::write_option_reply(
                        &mut s,
                        option,
                        proto::REP_ERR_UNKNOWN,
                        b"no such export",
                    )
                    .unwrap();
                    continue;
                }
                let mut info = proto::INFO_EXPORT.to_be_bytes().to_vec();
                info.extend_from_slice(&fake.size_bytes.to_be_bytes());
                info.extend_from_slice(&fake.flags.to_be_bytes());
                proto::write_option_reply(&mut s, option, proto::REP_INFO, &info).unwrap();
                if let Some((min, pref, max)) = fake.block_sizes {
                    let mut info = proto::INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                    for v in [min, pref, max] {
                        info.extend_from_slice(&v.to_be_bytes());
                    }
                    proto::write_option_reply(&mut s, option, proto::REP_INFO, &info).unwrap();
                }
                proto::write_option_reply(&mut s, option, proto::REP_ACK, &[]).unwrap();
                break;
            }
            proto::OPT_ABORT => return,
            _ => proto::write_option_reply(&mut s, option, proto::REP_ERR_UNSUP, b"no").unwrap(),
        }
    }
    transmission(s, fake, structured, data, count);
}

fn transmission(
    mut s: TcpStream,
    fake: &Fake,
    structured: bool,
    data: &Mutex<HashMap<u64, Vec<u8>>>,
    count: &AtomicUsize,
) {
    loop {
        let mut batch = Vec::new();
        for _ in 0..fake.batch {
            let Some(h) = read_n(&mut s, proto::REQUEST_HEADER_BYTES) else {
                return;
            };
            let req = Request::decode(&h.try_into().unwrap()).unwrap();
            let payload = if req.kind == proto::CMD_WRITE {
                let Some(p) = read_n(&mut s, req.length as usize) else {
                    return;
                };
                p
            } else {
                Vec::new()
            };
            if req.kind == proto::CMD_DISC {
                return;
            }
            batch.push((req, payload));
        }
        for (req, payload) in batch {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let misbehave = fake.misbehave.filter(|(at, _)| *at == n).map(|(_, m)| m);
            match misbehave {
                Some(Misbehave::Garbage) => {
                    let _ = s.write_all(b"this is not an NBD reply at all....");
                    let _ = read_n(&mut s, 1 << 16);
                    return;
                }
                Some(Misbehave::Silence) => {
                    let _ = read_n(&mut s, 1 << 20);
                    return;
                }
                Some(Misbehave::Close) => return,
                _ => {}
            }
            let reply = answer(&req, &payload, structured, misbehave, data);
            if s.write_all(&reply).is_err() {
                return;
            }
        }
    }
}

fn answer(
    req: &Request,
    payload: &[u8],
    structured: bool,
    misbehave: Option<Misbehave>,
    data: &Mutex<HashMap<u64, Vec<u8>>>,
) -> Vec<u8> {
    let mut data = data.lock().unwrap();
    match req.kind {
        proto::CMD_WRITE => {
            for (i, block) in payload.chunks(4096).enumerate() {
                data.insert(req.offset / 4096 + i as u64, block.to_vec());
            }
        }
        proto::CMD_READ if misbehave == Some(Misbehave::ReadEio) => {
            if !structured {
                return proto::simple_reply_header(proto::EIO, req.handle).to_vec();
            }
            let mut body = proto::EIO.to_be_bytes().to_vec();
            body.extend_from_slice(&3u16.to_be_bytes());
            body.extend_from_slice(b"bad");
            let h = ChunkHeader {
                flags: proto::REPLY_FLAG_DONE,
                kind: proto::REPLY_TYPE_ERROR,
                handle: req.handle,
                length: body.len() as u32,
            };
            let mut msg = h.encode().to_vec();
            msg.extend_from_slice(&body);
            return msg;
        }
        proto::CMD_READ => {
            let block = data.get(&(req.offset / 4096)).cloned();
            if !structured {
                let mut msg = proto::simple_reply_header(0, req.handle).to_vec();
                msg.extend_from_slice(&block.unwrap_or_else(|| vec![0; 4096]));
                return msg;
            }
            let extra = if misbehave == Some(Misbehave::Overlong) {
                8
            } else {
                0
            };
            return match block {
                // Zeros as a hole; data in two chunks, second half first (out of order).
                None if extra == 0 => {
                    let mut body = req.offset.to_be_bytes().to_vec();
                    body.extend_from_slice(&4096u32.to_be_bytes());
                    let h = ChunkHeader {
                        flags: proto::REPLY_FLAG_DONE,
                        kind: proto::REPLY_TYPE_OFFSET_HOLE,
                        handle: req.handle,
                        length: 12,
                    };
                    let mut msg = h.encode().to_vec();
                    msg.extend_from_slice(&body);
                    msg
                }
                block => {
                    let block = block.unwrap_or_else(|| vec![0; 4096]);
                    let mut msg = Vec::new();
                    for (i, (at, part)) in [(2048usize, &block[2048..]), (0, &block[..2048])]
                        .into_iter()
                        .enumerate()
                    {
                        let h = ChunkHeader {
                            flags: if i == 1 { proto::REPLY_FLAG_DONE } else { 0 },
                            kind: proto::REPLY_TYPE_OFFSET_DATA,
                            handle: req.handle,
                            length: 8 + part.len() as u32 + extra,
                        };
                        msg.extend_from_slice(&h.encode());
                        msg.extend_from_slice(&(req.offset + at as u64).to_be_bytes());
                        msg.extend_from_slice(part);
                        msg.extend_from_slice(&vec![0u8; extra as usize]);
                    }
                    msg
                }
            };
        }
        _ => {}
    }
    if structured {
        let h = ChunkHeader {
            flags: proto::REPLY_FLAG_DONE,
            kind: proto::REPLY_TYPE_NONE,
            handle: req.handle,
            length: 0,
        };
        return h.encode().to_vec();
    }
    proto::simple_reply_header(0, req.handle).to_vec()
}

fn open(fake: Fake) -> Result<NbdDisk, NbdError> {
    NbdDisk::open_uri(&start(fake), &options())
}

#[test]
fn a_wrong_export_name_is_refused_by_name() {
    let uri = start(Fake::default()).replace("/disk", "/other");
    let err = NbdDisk::open_uri(&uri, &options()).unwrap_err();
    assert!(
        matches!(&err, NbdError::UnknownExport { export, .. } if export == "other"),
        "{err}"
    );
}

#[test]
fn exports_that_are_not_a_disk_of_whole_blocks_are_refused() {
    for size_bytes in [0, 100, 4096 + 512] {
        let err = open(Fake {
            size_bytes,
            ..Fake::default()
        })
        .unwrap_err();
        assert!(
            matches!(err, NbdError::BadSize { .. }),
            "{size_bytes}: {err}"
        );
    }
    let err = open(Fake {
        block_sizes: Some((8192, 8192, 1 << 20)),
        ..Fake::default()
    })
    .unwrap_err();
    assert!(matches!(err, NbdError::BadBlockSizes { .. }), "{err}");
}

#[test]
fn a_server_without_flush_or_that_is_read_only_is_refused() {
    let err = open(Fake {
        flags: proto::TFLAG_HAS_FLAGS,
        ..Fake::default()
    })
    .unwrap_err();
    assert!(matches!(err, NbdError::NoFlush { .. }), "{err}");
    assert!(err.to_string().contains("FLUSH"), "{err}");
    let flags = proto::TFLAG_HAS_FLAGS | proto::TFLAG_SEND_FLUSH | proto::TFLAG_READ_ONLY;
    let err = open(Fake {
        flags,
        ..Fake::default()
    })
    .unwrap_err();
    assert!(matches!(err, NbdError::ReadOnly { .. }), "{err}");
}

#[test]
fn garbage_or_silence_in_the_handshake_is_an_error_not_a_hang() {
    let err = open(Fake {
        greeting: Some(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
        ..Fake::default()
    })
    .unwrap_err();
    assert!(matches!(err, NbdError::Protocol { .. }), "{err}");
    let mut oldstyle = proto::INIT_MAGIC.to_be_bytes().to_vec();
    oldstyle.extend_from_slice(&proto::OLDSTYLE_MAGIC.to_be_bytes());
    let err = open(Fake {
        greeting: Some(oldstyle),
        ..Fake::default()
    })
    .unwrap_err();
    assert!(matches!(err, NbdError::Protocol { .. }), "{err}");
    assert!(err.to_string().contains("oldstyle"), "{err}");
    // A greeting cut short, then nothing.
    let err = open(Fake {
        greeting: Some(proto::INIT_MAGIC.to_be_bytes()[..5].to_vec()),
        ..Fake::default()
    })
    .unwrap_err();
    assert!(matches!(err, NbdError::Timeout { .. }), "{err}");
    let err = open(Fake {
        silent_handshake: true,
        ..Fake::default()
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            NbdError::Timeout {
                timeout_ms: 300,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn nobody_listening_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = NbdDisk::open_uri(&format!("nbd://127.0.0.1:{port}/disk"), &options()).unwrap_err();
    assert!(matches!(err, NbdError::Connect { .. }), "{err}");
    let err =
        NbdDisk::open_uri("nbd+unix:///disk?socket=/nonexistent/nbd.sock", &options()).unwrap_err();
    assert!(matches!(err, NbdError::Connect { .. }), "{err}");
}

fn round_trip(disk: &NbdDisk) {
    assert_eq!(disk.size_blocks(), 64);
    assert!(disk.read(3).unwrap().is_zero());
    disk.write(3, &Block::filled(7)).unwrap();
    let blocks: Vec<Block> = (0..20u8).map(Block::filled).collect();
    let refs: Vec<&Block> = blocks.iter().collect();
    disk.write_run(10, &refs).unwrap();
    disk.sync().unwrap();
    assert_eq!(disk.read(3).unwrap(), Block::filled(7));
    for (i, b) in blocks.iter().enumerate() {
        assert_eq!(&disk.read(10 + i as u64).unwrap(), b);
    }
    assert!(matches!(disk.read(64), Err(DiskError::OutOfRange { .. })));
    assert!(matches!(
        disk.write_run(60, &refs),
        Err(DiskError::OutOfRange { .. })
    ));
    disk.check_rep();
}

#[test]
fn simple_and_structured_replies_round_trip() {
    round_trip(&open(Fake::default()).unwrap());
    let disk = open(Fake {
        structured: true,
        ..Fake::default()
    })
    .unwrap();
    assert!(disk.export_info().structured_replies);
    round_trip(&disk);
}

#[test]
fn a_run_is_pipelined_and_split_at_the_maximum_payload() {
    // The server reads four requests before it answers any: a client that waited for each
    // reply before the next request would time out. 16 KiB maximum: 16 blocks are 4 WRITEs.
    let fake = Fake {
        batch: 4,
        block_sizes: Some((512, 4096, 16 * 1024)),
        ..Fake::default()
    };
    let disk = open(fake).unwrap();
    let blocks: Vec<Block> = (0..16u8).map(Block::filled).collect();
    let refs: Vec<&Block> = blocks.iter().collect();
    disk.write_run(0, &refs).unwrap();
    assert_eq!(disk.failure(), None);
}

#[test]
fn multi_conn_opens_several_connections() {
    let flags = proto::TFLAG_HAS_FLAGS | proto::TFLAG_SEND_FLUSH | proto::TFLAG_CAN_MULTI_CONN;
    let disk = open(Fake {
        flags,
        ..Fake::default()
    })
    .unwrap();
    assert_eq!(disk.connections(), 2);
    round_trip(&disk);
    assert_eq!(open(Fake::default()).unwrap().connections(), 1);
}

#[test]
fn a_read_error_reply_is_a_bad_block_and_the_disk_lives_on() {
    for structured in [false, true] {
        let disk = open(Fake {
            structured,
            misbehave: Some((1, Misbehave::ReadEio)),
            ..Fake::default()
        })
        .unwrap();
        disk.write(5, &Block::filled(5)).unwrap();
        let err = disk.read(5).unwrap_err();
        assert!(matches!(err, DiskError::ReadError { addr: 5 }), "{err}");
        assert!(err.is_bad_block());
        assert_eq!(disk.read(5).unwrap(), Block::filled(5));
    }
}

#[test]
fn garbage_silence_or_a_close_in_transmission_fail_the_disk_for_good() {
    let cases = [
        (false, Misbehave::Garbage),
        (false, Misbehave::Silence),
        (false, Misbehave::Close),
        (true, Misbehave::Garbage),
        (true, Misbehave::Overlong),
    ];
    for (structured, misbehave) in cases {
        let disk = open(Fake {
            structured,
            misbehave: Some((1, misbehave)),
            ..Fake::default()
        })
        .unwrap();
        disk.write(1, &Block::filled(1)).unwrap();
        let err = disk.read(1).unwrap_err();
        assert!(matches!(err, DiskError::Failed), "{err}");
        assert!(err.is_fatal());
        let reason = disk.failure().unwrap();
        assert!(!reason.is_empty());
        // Fail-stop: every later call fails at once, whatever it is.
        assert!(matches!(disk.read(2), Err(DiskError::Failed)));
        assert!(matches!(
            disk.write(2, &Block::filled(2)),
            Err(DiskError::Failed)
        ));
        assert!(matches!(disk.sync(), Err(DiskError::Failed)));
        disk.check_rep();
    }
}

#[test]
fn a_silent_flush_fails_the_disk() {
    let disk = open(Fake {
        misbehave: Some((1, Misbehave::Silence)),
        ..Fake::default()
    })
    .unwrap();
    disk.write(1, &Block::filled(1)).unwrap();
    assert!(matches!(disk.sync(), Err(DiskError::Failed)));
    assert!(
        disk.failure().unwrap().contains("FLUSH"),
        "{:?}",
        disk.failure()
    );
}

#[test]
fn bad_options_are_refused() {
    let uri = start(Fake::default());
    let err = NbdDisk::open_uri(
        &uri,
        &NbdOptions {
            timeout_ms: 0,
            ..options()
        },
    )
    .unwrap_err();
    assert!(matches!(err, NbdError::BadOptions(_)), "{err}");
    let err = NbdDisk::open_uri("nbd://", &options()).unwrap_err();
    assert!(matches!(err, NbdError::BadUri { .. }), "{err}");
}

#[test]
fn a_batch_larger_than_the_request_slots_frees_its_own() {
    // One block per WRITE and two slots: the caller must read its own replies to send more.
    let fake = Fake {
        block_sizes: Some((512, 4096, 4096)),
        structured: true,
        ..Fake::default()
    };
    let options = NbdOptions {
        max_inflight_requests: 2,
        ..options()
    };
    let disk = NbdDisk::open_uri(&start(fake), &options).unwrap();
    let blocks: Vec<Block> = (0..16u8).map(Block::filled).collect();
    let refs: Vec<&Block> = blocks.iter().collect();
    disk.write_run(0, &refs).unwrap();
    for (i, b) in blocks.iter().enumerate() {
        assert_eq!(&disk.read(i as u64).unwrap(), b);
    }
    disk.check_rep();
}

#[test]
fn many_threads_share_one_connection() {
    let disk = std::sync::Arc::new(
        open(Fake {
            structured: true,
            ..Fake::default()
        })
        .unwrap(),
    );
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let disk = disk.clone();
            thread::spawn(move || {
                for round in 0..20u8 {
                    let addr = u64::from(t) * 8 + u64::from(round % 8);
                    let block = Block::filled(t.wrapping_mul(31).wrapping_add(round));
                    disk.write(addr, &block).unwrap();
                    assert_eq!(disk.read(addr).unwrap(), block);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    disk.sync().unwrap();
    assert_eq!(disk.failure(), None);
}
