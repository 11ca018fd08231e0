//! Checks the handshake, the transmission commands and the answers to bad input, by talking
//! to an in-process server over raw TCP (and with the bundled client) and then inspecting
//! the in-memory backend directly.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::InProcess;
use parking_lot::{Condvar, Mutex};
use txdisk_nbd::proto::{self, be_u32, be_u64};
use txdisk_nbd::{BackendError, Client, ExportBackend, MemBackend, NbdError, TRANSMISSION_FLAGS};

const SIZE: usize = 1 << 20;

fn mem_server() -> InProcess<MemBackend> {
    InProcess::start(Arc::new(MemBackend::new(SIZE)))
}

/// Opens a connection and completes the greeting with the given client flags.
fn greet(addr: SocketAddr, client_flags: u32) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(be_u64(&hello[0..8]), proto::INIT_MAGIC);
    assert_eq!(be_u64(&hello[8..16]), proto::OPTS_MAGIC);
    let flags = proto::be_u16(&hello[16..18]);
    assert_eq!(flags, proto::FLAG_FIXED_NEWSTYLE | proto::FLAG_NO_ZEROES);
    s.write_all(&client_flags.to_be_bytes()).unwrap();
    s
}

fn send_option(s: &mut TcpStream, option: u32, data: &[u8]) {
    let mut msg = proto::OPTS_MAGIC.to_be_bytes().to_vec();
    msg.extend_from_slice(&option.to_be_bytes());
    msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
    msg.extend_from_slice(data);
    s.write_all(&msg).unwrap();
}

/// Reads one option reply: (option, reply type, data).
fn option_reply(s: &mut TcpStream) -> (u32, u32, Vec<u8>) {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).unwrap();
    assert_eq!(be_u64(&h[0..8]), proto::OPT_REPLY_MAGIC);
    let mut data = vec![0u8; be_u32(&h[16..20]) as usize];
    s.read_exact(&mut data).unwrap();
    (be_u32(&h[8..12]), be_u32(&h[12..16]), data)
}

fn go_data(name: &str) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&0u16.to_be_bytes());
    d
}

/// GO on an open haggling connection; returns the stream in transmission.
fn go(mut s: TcpStream) -> TcpStream {
    send_option(&mut s, proto::OPT_GO, &go_data("disk"));
    loop {
        let (opt, ty, _) = option_reply(&mut s);
        assert_eq!(opt, proto::OPT_GO);
        if ty == proto::REP_ACK {
            return s;
        }
        assert_eq!(ty, proto::REP_INFO);
    }
}

/// True if the server closed the connection (end of stream or reset) within 10 s.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a final reply may precede the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // timed out: still open
        }
    }
}

fn request(s: &mut TcpStream, kind: u16, flags: u16, handle: u64, offset: u64, len: u32) {
    let req = proto::Request {
        flags,
        kind,
        handle,
        offset,
        length: len,
    };
    s.write_all(&req.encode()).unwrap();
}

/// Reads a simple reply header: (errno, handle).
fn reply(s: &mut TcpStream) -> (u32, u64) {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).unwrap();
    assert_eq!(be_u32(&h[0..4]), proto::SIMPLE_REPLY_MAGIC);
    (be_u32(&h[4..8]), be_u64(&h[8..16]))
}

#[test]
fn list_info_go_and_export_name_all_reach_the_export() {
    let srv = mem_server();
    assert_eq!(
        Client::list_exports(srv.addr).unwrap(),
        vec!["disk".to_string()]
    );
    assert_eq!(
        Client::info(srv.addr, "disk").unwrap(),
        (SIZE as u64, TRANSMISSION_FLAGS)
    );
    let mut c = Client::connect(srv.addr, "disk").unwrap();
    assert_eq!(c.size_bytes(), SIZE as u64);
    c.write(4095, b"hello", false).unwrap();
    c.disconnect().unwrap();
    // The empty name is the default export; EXPORT_NAME is the old way in.
    let mut c = Client::connect_with_export_name(srv.addr, "").unwrap();
    assert_eq!(c.transmission_flags(), TRANSMISSION_FLAGS);
    assert_eq!(c.read(4095, 5).unwrap(), b"hello");
    c.disconnect().unwrap();
    let stats = srv.stop();
    assert_eq!(stats.connections, 4);
    assert_eq!(stats.protocol_violations, 0);
}

#[test]
fn go_reports_export_and_block_sizes() {
    let srv = mem_server();
    let mut s = greet(
        srv.addr,
        proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES,
    );
    let mut data = (4u32).to_be_bytes().to_vec();
    data.extend_from_slice(b"disk");
    data.extend_from_slice(&2u16.to_be_bytes());
    data.extend_from_slice(&proto::INFO_NAME.to_be_bytes());
    data.extend_from_slice(&proto::INFO_BLOCK_SIZE.to_be_bytes());
    send_option(&mut s, proto::OPT_INFO, &data);
    let mut infos = Vec::new();
    loop {
        let (_, ty, d) = option_reply(&mut s);
        if ty == proto::REP_ACK {
            break;
        }
        assert_eq!(ty, proto::REP_INFO);
        infos.push(d);
    }
    let export = infos
        .iter()
        .find(|d| proto::be_u16(d) == proto::INFO_EXPORT)
        .unwrap();
    assert_eq!(be_u64(&export[2..10]), SIZE as u64);
    assert_eq!(proto::be_u16(&export[10..12]), TRANSMISSION_FLAGS);
    let name = infos
        .iter()
        .find(|d| proto::be_u16(d) == proto::INFO_NAME)
        .unwrap();
    assert_eq!(&name[2..], b"disk");
    let bs = infos
        .iter()
        .find(|d| proto::be_u16(d) == proto::INFO_BLOCK_SIZE)
        .unwrap();
    assert_eq!(
        (be_u32(&bs[2..6]), be_u32(&bs[6..10]), be_u32(&bs[10..14])),
        (1, 4096, 32 << 20)
    );
    // INFO does not end the handshake: GO still works on the same connection.
    let mut s = go(s);
    request(&mut s, proto::CMD_FLUSH, 0, 7, 0, 0);
    assert_eq!(reply(&mut s), (0, 7));
    srv.stop();
}

#[test]
fn unknown_and_malformed_options_get_error_replies_and_haggling_continues() {
    let srv = mem_server();
    let mut s = greet(srv.addr, proto::FLAG_C_FIXED_NEWSTYLE);
    for (option, data, want) in [
        (99u32, vec![1, 2, 3], proto::REP_ERR_UNSUP),
        (proto::OPT_STARTTLS, vec![], proto::REP_ERR_UNSUP),
        (proto::OPT_STRUCTURED_REPLY, vec![], proto::REP_ERR_UNSUP),
        (proto::OPT_LIST, vec![0], proto::REP_ERR_INVALID),
        (proto::OPT_GO, go_data("nope"), proto::REP_ERR_UNKNOWN),
        (
            proto::OPT_GO,
            vec![0, 0, 0, 9, b'd', 0, 0],
            proto::REP_ERR_INVALID,
        ),
        (proto::OPT_INFO, vec![0, 0], proto::REP_ERR_INVALID),
    ] {
        send_option(&mut s, option, &data);
        let (opt, ty, _) = option_reply(&mut s);
        assert_eq!(
            (opt, ty),
            (option, want),
            "option {option} with data {data:?}"
        );
    }
    let mut s = go(s);
    request(&mut s, proto::CMD_READ, 0, 1, 0, 4);
    assert_eq!(reply(&mut s), (0, 1));
    srv.stop();
}

#[test]
fn handshake_violations_close_the_connection_and_the_server_keeps_serving() {
    let srv = mem_server();
    // Unknown client flag bits.
    let mut s = greet(srv.addr, 1 << 7);
    assert!(closed_by_server(&mut s));
    // Wrong option magic.
    let mut s = greet(srv.addr, proto::FLAG_C_FIXED_NEWSTYLE);
    s.write_all(&[0u8; 16]).unwrap();
    assert!(closed_by_server(&mut s));
    // An option length of 1 GiB: closed without the server waiting for (or allocating) it.
    let mut s = greet(srv.addr, proto::FLAG_C_FIXED_NEWSTYLE);
    let mut msg = proto::OPTS_MAGIC.to_be_bytes().to_vec();
    msg.extend_from_slice(&proto::OPT_GO.to_be_bytes());
    msg.extend_from_slice(&(1u32 << 30).to_be_bytes());
    s.write_all(&msg).unwrap();
    assert!(closed_by_server(&mut s));
    // EXPORT_NAME of a missing export can only be answered by closing.
    let mut s = greet(srv.addr, proto::FLAG_C_FIXED_NEWSTYLE);
    send_option(&mut s, proto::OPT_EXPORT_NAME, b"nope");
    assert!(closed_by_server(&mut s));
    // Non-fixed newstyle: anything but EXPORT_NAME closes.
    let mut s = greet(srv.addr, 0);
    send_option(&mut s, proto::OPT_LIST, &[]);
    assert!(closed_by_server(&mut s));
    // A client that hangs up halfway through its flags.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).unwrap();
    s.write_all(&[0, 0]).unwrap();
    drop(s);
    // ABORT is acknowledged, then closed.
    let mut s = greet(srv.addr, proto::FLAG_C_FIXED_NEWSTYLE);
    send_option(&mut s, proto::OPT_ABORT, &[]);
    assert_eq!(option_reply(&mut s).1, proto::REP_ACK);
    assert!(closed_by_server(&mut s));

    // Non-fixed newstyle EXPORT_NAME gets the 124 zero bytes.
    let mut s = greet(srv.addr, 0);
    send_option(&mut s, proto::OPT_EXPORT_NAME, b"disk");
    let mut answer = [0u8; 10 + 124];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(be_u64(&answer[0..8]), SIZE as u64);
    assert!(answer[10..].iter().all(|b| *b == 0));
    let mut c = Client::connect(srv.addr, "disk").unwrap();
    c.write(0, b"still serving", true).unwrap();
    let stats = srv.stop();
    assert_eq!(stats.protocol_violations, 5);
}

#[test]
fn out_of_range_oversized_and_unknown_requests_get_errors_not_writes() {
    let srv = mem_server();
    let mut s = go(greet(srv.addr, proto::FLAG_C_FIXED_NEWSTYLE));
    let size = SIZE as u64;
    // Read past the end, read overflowing u64, read longer than the maximum payload.
    request(&mut s, proto::CMD_READ, 0, 1, size - 1, 2);
    assert_eq!(reply(&mut s), (proto::EINVAL, 1));
    request(&mut s, proto::CMD_READ, 0, 2, u64::MAX, 2);
    assert_eq!(reply(&mut s), (proto::EINVAL, 2));
    request(&mut s, proto::CMD_READ, 0, 3, 0, (32 << 20) + 1);
    assert_eq!(reply(&mut s), (proto::EINVAL, 3));
    // Write past the end: the payload is consumed, ENOSPC, nothing written.
    request(&mut s, proto::CMD_WRITE, 0, 4, size - 2, 4);
    s.write_all(&[0xee; 4]).unwrap();
    assert_eq!(reply(&mut s), (proto::ENOSPC, 4));
    // Unknown flag on a write: payload consumed, EINVAL, stream still in step.
    request(&mut s, proto::CMD_WRITE, 1 << 9, 5, 0, 3);
    s.write_all(&[0xee; 3]).unwrap();
    assert_eq!(reply(&mut s), (proto::EINVAL, 5));
    // Unknown command, flush with a length, trim past the end.
    request(&mut s, 42, 0, 6, 0, 0);
    assert_eq!(reply(&mut s), (proto::EINVAL, 6));
    request(&mut s, proto::CMD_FLUSH, 0, 7, 0, 512);
    assert_eq!(reply(&mut s), (proto::EINVAL, 7));
    request(&mut s, proto::CMD_TRIM, 0, 8, size, 1);
    assert_eq!(reply(&mut s), (proto::ENOSPC, 8));
    // Still usable.
    request(&mut s, proto::CMD_READ, 0, 9, size - 4, 4);
    assert_eq!(reply(&mut s), (0, 9));
    let mut data = [0u8; 4];
    s.read_exact(&mut data).unwrap();
    assert_eq!(data, [0; 4]);
    // A write longer than the maximum: EINVAL and the connection is closed (its payload
    // cannot be skipped safely).
    request(&mut s, proto::CMD_WRITE, 0, 10, 0, (32 << 20) + 1);
    s.write_all(&[0xee; 4096]).unwrap();
    assert_eq!(reply(&mut s), (proto::EINVAL, 10));
    assert!(closed_by_server(&mut s));
    // A request with a bad magic closes the connection.
    let mut s = go(greet(srv.addr, proto::FLAG_C_FIXED_NEWSTYLE));
    s.write_all(&[0x55; 28]).unwrap();
    assert!(closed_by_server(&mut s));
    let backend = srv.backend.clone();
    let stats = srv.stop();
    assert_eq!(stats.error_replies, 9);
    assert_eq!(stats.protocol_violations, 2);
    assert!(
        backend.snapshot().iter().all(|b| *b == 0),
        "a refused write reached the backend"
    );
}

#[test]
fn a_client_silent_during_the_handshake_is_dropped_after_the_timeout() {
    let opts = txdisk_nbd::ServerOptions {
        handshake_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let srv = InProcess::start_with(Arc::new(MemBackend::new(SIZE)), opts);
    let mut s = greet(srv.addr, proto::FLAG_C_FIXED_NEWSTYLE);
    // Half an option header, then nothing.
    s.write_all(&proto::OPTS_MAGIC.to_be_bytes()).unwrap();
    assert!(closed_by_server(&mut s), "the silent client was kept");
    // A client in transmission may idle longer than the handshake timeout.
    let mut c = Client::connect(srv.addr, "disk").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    c.write(0, b"late", true).unwrap();
    // Zero-length write and trim succeed without touching anything.
    c.write(SIZE as u64, b"", false).unwrap();
    c.trim(5, 0, false).unwrap();
    assert_eq!(c.read(0, 4).unwrap(), b"late");
    srv.stop();
}

#[test]
fn a_smaller_maximum_payload_is_advertised_and_enforced_and_bad_options_are_refused() {
    let opts = txdisk_nbd::ServerOptions {
        max_payload_bytes: 64 * 1024,
        ..Default::default()
    };
    let bad = txdisk_nbd::ServerOptions {
        max_payload_bytes: 4095,
        ..Default::default()
    };
    let backend = Arc::new(MemBackend::new(SIZE));
    let server = txdisk_nbd::Server::bind("127.0.0.1:0", "disk", backend.clone()).unwrap();
    assert!(matches!(
        server.with_options(bad),
        Err(NbdError::BadOptions(_))
    ));
    let srv = InProcess::start_with(backend, opts);
    let mut s = greet(srv.addr, proto::FLAG_C_FIXED_NEWSTYLE);
    send_option(&mut s, proto::OPT_GO, &go_data("disk"));
    let mut max = None;
    loop {
        let (_, ty, d) = option_reply(&mut s);
        if ty == proto::REP_ACK {
            break;
        }
        if proto::be_u16(&d) == proto::INFO_BLOCK_SIZE {
            max = Some(be_u32(&d[10..14]));
        }
    }
    assert_eq!(max, Some(64 * 1024));
    request(&mut s, proto::CMD_READ, 0, 1, 0, 64 * 1024 + 1);
    assert_eq!(reply(&mut s), (proto::EINVAL, 1));
    request(&mut s, proto::CMD_WRITE, 0, 2, 0, 64 * 1024 + 1);
    assert_eq!(reply(&mut s), (proto::EINVAL, 2));
    assert!(closed_by_server(&mut s));
    srv.stop();
}

#[test]
fn connections_past_the_limit_are_closed_and_served_again_once_one_leaves() {
    let opts = txdisk_nbd::ServerOptions {
        max_connections: 2,
        ..Default::default()
    };
    let srv = InProcess::start_with(Arc::new(MemBackend::new(SIZE)), opts);
    let first = Client::connect(srv.addr, "disk").unwrap();
    let mut second = Client::connect(srv.addr, "disk").unwrap();
    assert!(
        Client::connect(srv.addr, "disk").is_err(),
        "a third connection was served"
    );
    first.disconnect().unwrap();
    // The slot frees once the first connection's thread has finished (bounded wait).
    let mut third = None;
    for _ in 0..500 {
        if let Ok(c) = Client::connect(srv.addr, "disk") {
            third = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut third = third.expect("no connection served after one left");
    third.write(0, b"third", false).unwrap();
    assert_eq!(second.read(0, 5).unwrap(), b"third");
    let stats = srv.stop();
    assert!(stats.refused_connections >= 1, "{stats:?}");
}

#[test]
fn a_client_that_disconnects_mid_write_leaves_no_partial_write() {
    let srv = mem_server();
    let mut s = go(greet(srv.addr, proto::FLAG_C_FIXED_NEWSTYLE));
    request(
        &mut s,
        proto::CMD_WRITE,
        proto::CMD_FLAG_FUA,
        1,
        8192,
        65536,
    );
    s.write_all(&[0xab; 40000]).unwrap();
    drop(s);
    // Mid-header, too.
    let mut s = go(greet(srv.addr, proto::FLAG_C_FIXED_NEWSTYLE));
    s.write_all(&proto::REQUEST_MAGIC.to_be_bytes()).unwrap();
    drop(s);
    let backend = srv.backend.clone();
    srv.stop(); // joins every connection thread: nothing can still be on its way
    assert!(
        backend.snapshot().iter().all(|b| *b == 0),
        "a partial write reached the backend"
    );
    assert_eq!(backend.fua_write_count(), 0);
}

#[test]
fn pipelined_requests_are_all_answered_with_the_right_data() {
    let srv = mem_server();
    let mut c = Client::connect(srv.addr, "disk").unwrap();
    let chunk = 3000usize; // unaligned on purpose
    let mut reads = std::collections::HashMap::new();
    for i in 0..100u64 {
        let data = vec![i as u8 + 1; chunk];
        c.send_request(proto::CMD_WRITE, 0, i * chunk as u64, chunk as u32, &data)
            .unwrap();
    }
    for i in 0..100u64 {
        let h = c
            .send_request(proto::CMD_READ, 0, i * chunk as u64 + 7, 100, &[])
            .unwrap();
        reads.insert(h, i);
    }
    let mut answered = std::collections::HashSet::new();
    for _ in 0..200 {
        let (r, data) = c
            .receive_reply(|h| if reads.contains_key(&h) { 100 } else { 0 })
            .unwrap();
        assert_eq!(r.errno, 0);
        assert!(
            answered.insert(r.handle),
            "handle {} answered twice",
            r.handle
        );
        // A read pipelined behind a write to the same bytes may run before it (the
        // protocol lets the server reorder): it sees all-old or all-new, never a mix.
        if let Some(i) = reads.get(&r.handle) {
            let new = vec![*i as u8 + 1; 100];
            assert!(
                data == new || data == vec![0; 100],
                "read {i} saw a mixed write"
            );
        }
    }
    assert_eq!(answered.len(), 200);
    let snap = srv.backend.snapshot();
    for i in 0..100usize {
        assert!(snap[i * chunk..(i + 1) * chunk]
            .iter()
            .all(|b| *b == i as u8 + 1));
    }
    c.disconnect().unwrap();
    srv.stop();
}

#[test]
fn several_clients_write_concurrently_and_flush_and_fua_reach_the_backend() {
    let srv = mem_server();
    let addr = srv.addr;
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr, "disk").unwrap();
                for i in 0..50u64 {
                    let off = u64::from(t) * 250_000 + i * 4001;
                    c.write(off, &[t + 1; 4001], i % 10 == 0).unwrap();
                }
                c.flush().unwrap();
                c.trim(u64::from(t) * 250_000, 4001, false).unwrap();
                c.disconnect().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let backend = srv.backend.clone();
    srv.stop();
    let snap = backend.snapshot();
    for t in 0..4usize {
        let base = t * 250_000;
        assert!(
            snap[base..base + 4001].iter().all(|b| *b == 0),
            "trim of client {t}"
        );
        assert!(snap[base + 4001..base + 50 * 4001]
            .iter()
            .all(|b| *b == t as u8 + 1));
    }
    assert_eq!(backend.fua_write_count(), 4 * 5);
    // One FLUSH per client, plus the final flush of the stop.
    assert_eq!(backend.flush_count(), 4 + 1);
}

/// Reads at offset 0 wait until a read at offset 4096 has entered the backend (or give up
/// after 10 s with EIO), so a server that ran a connection's requests one by one fails.
struct GateBackend {
    inner: MemBackend,
    second_entered: Mutex<bool>,
    cv: Condvar,
}

impl ExportBackend for GateBackend {
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let mut entered = self.second_entered.lock();
        if offset == 4096 {
            *entered = true;
            self.cv.notify_all();
        } else if offset == 0 && !*entered {
            let timed_out = self
                .cv
                .wait_for(&mut entered, Duration::from_secs(10))
                .timed_out();
            if timed_out && !*entered {
                return Err(BackendError::Io(std::io::ErrorKind::TimedOut.into()));
            }
        }
        drop(entered);
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        self.inner.write_at(offset, data, fua)
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.inner.flush()
    }
}

#[test]
fn requests_on_one_connection_run_concurrently() {
    let backend = Arc::new(GateBackend {
        inner: MemBackend::new(SIZE),
        second_entered: Mutex::new(false),
        cv: Condvar::new(),
    });
    let srv = InProcess::start(backend);
    let mut c = Client::connect(srv.addr, "disk").unwrap();
    let first = c.send_request(proto::CMD_READ, 0, 0, 512, &[]).unwrap();
    let second = c.send_request(proto::CMD_READ, 0, 4096, 512, &[]).unwrap();
    let (r1, _) = c.receive_reply(|_| 512).unwrap();
    let (r2, _) = c.receive_reply(|_| 512).unwrap();
    // The first read succeeds only if the second entered the backend while it waited.
    let mut handles = [r1.handle, r2.handle];
    handles.sort();
    assert_eq!(handles, [first, second]);
    assert_eq!(
        (r1.errno, r2.errno),
        (0, 0),
        "the reads ran one after the other"
    );
    c.disconnect().unwrap();
    srv.stop();
}

#[test]
fn stopping_answers_in_flight_requests_and_closes_idle_connections() {
    let srv = mem_server();
    let mut idle = Client::connect(srv.addr, "disk").unwrap();
    idle.write(0, b"acknowledged", false).unwrap();
    let backend = srv.backend.clone();
    let flushes_before = backend.flush_count();
    let stats = srv.stop();
    assert_eq!(stats.connections, 1);
    assert_eq!(
        backend.flush_count(),
        flushes_before + 1,
        "stop must flush once"
    );
    assert!(matches!(idle.read(0, 12), Err(NbdError::Io(_))));
    assert_eq!(&backend.snapshot()[..12], b"acknowledged");
}

#[test]
fn a_read_only_export_answers_writes_and_trims_with_eperm() {
    let backend = Arc::new(MemBackend::new(SIZE));
    let export = txdisk_nbd::Export {
        read_only: true,
        ..txdisk_nbd::Export::new("disk", backend.clone())
    };
    let server = txdisk_nbd::Server::bind_exports(
        &txdisk_nbd::Listen::Tcp("127.0.0.1:0".into()),
        vec![export],
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || server.serve_until(&flag));

    let mut s = greet(addr, proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES);
    send_option(&mut s, proto::OPT_GO, &go_data("disk"));
    let (_, ty, info) = option_reply(&mut s);
    assert_eq!(ty, proto::REP_INFO);
    let flags = proto::be_u16(&info[10..12]);
    assert_ne!(
        flags & proto::TFLAG_READ_ONLY,
        0,
        "not advertised read-only"
    );
    let mut s = rest_of_go(s);
    request(&mut s, proto::CMD_WRITE, 0, 1, 0, 4096);
    s.write_all(&[0xaa; 4096]).unwrap();
    assert_eq!(reply(&mut s), (proto::EPERM, 1));
    request(&mut s, proto::CMD_TRIM, 0, 2, 0, 4096);
    assert_eq!(reply(&mut s), (proto::EPERM, 2));
    request(&mut s, proto::CMD_READ, 0, 3, 0, 4096);
    assert_eq!(reply(&mut s), (0, 3));
    let mut data = [0u8; 4096];
    s.read_exact(&mut data).unwrap();
    assert_eq!(data, [0u8; 4096]);
    request(&mut s, proto::CMD_FLUSH, 0, 4, 0, 0);
    assert_eq!(reply(&mut s), (0, 4));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    handle.join().unwrap().unwrap();
    assert!(
        backend.snapshot().iter().all(|&b| b == 0),
        "the read-only export was written"
    );
}

/// Reads the rest of a GO's replies after its first, up to its ACK: the stream is then in
/// transmission.
fn rest_of_go(mut s: TcpStream) -> TcpStream {
    loop {
        let (opt, ty, _) = option_reply(&mut s);
        assert_eq!(opt, proto::OPT_GO);
        if ty == proto::REP_ACK {
            return s;
        }
    }
}
