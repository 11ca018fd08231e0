//! Throws seeded random and mutated byte streams at an in-process server — during the
//! handshake and in transmission — and checks that no server thread panics, that the server
//! still serves correctly afterwards, and that a stop still drains and returns.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::InProcess;
use txdisk_nbd::proto;
use txdisk_nbd::testkit::SplitMix64;
use txdisk_nbd::{Client, MemBackend, ServerOptions};

static PANICS: AtomicUsize = AtomicUsize::new(0);

const SIZE: usize = 256 * 1024;
const SEED: u64 = 0xf022_0001;

/// A valid client prefix (greeting answered, GO sent) so the garbage lands in transmission.
fn transmission_prefix() -> Vec<u8> {
    let mut m = proto::FLAG_C_FIXED_NEWSTYLE.to_be_bytes().to_vec();
    m.extend_from_slice(&proto::OPTS_MAGIC.to_be_bytes());
    m.extend_from_slice(&proto::OPT_GO.to_be_bytes());
    m.extend_from_slice(&10u32.to_be_bytes());
    m.extend_from_slice(&4u32.to_be_bytes());
    m.extend_from_slice(b"disk");
    m.extend_from_slice(&0u16.to_be_bytes());
    m
}

/// Requests with random fields, mostly valid magic, some with payload.
fn random_requests(rng: &mut SplitMix64) -> Vec<u8> {
    let mut m = Vec::new();
    for _ in 0..1 + rng.below(20) {
        let kind = [0u16, 1, 3, 4, 5, 6, 7, 99][rng.below(8) as usize];
        let near_end = SIZE as u64 - rng.below(8192);
        let offset =
            [0, rng.below(SIZE as u64), near_end, u64::MAX - rng.below(4)][rng.below(4) as usize];
        let length = [0u32, rng.below(70_000) as u32, u32::MAX, 33 << 20][rng.below(4) as usize];
        let req = proto::Request {
            flags: [0u16, proto::CMD_FLAG_FUA, rng.next_u64() as u16][rng.below(3) as usize],
            kind,
            handle: rng.next_u64(),
            offset,
            length,
        };
        let mut bytes = req.encode();
        if rng.below(20) == 0 {
            bytes[rng.below(28) as usize] ^= 0xff;
        }
        m.extend_from_slice(&bytes);
        if kind == proto::CMD_WRITE {
            // Sometimes the whole payload, sometimes a cut one.
            let n = (length as u64).min(70_000).min(rng.below(80_000));
            m.extend((0..n).map(|i| i as u8));
        }
    }
    m
}

fn hammer(addr: std::net::SocketAddr, bytes: &[u8]) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(30)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(bytes);
    // Read whatever comes back for a moment, then hang up.
    let mut sink = vec![0u8; 1 << 16];
    for _ in 0..20 {
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

#[test]
fn random_input_never_panics_the_server_and_it_keeps_serving() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let opts = ServerOptions {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let srv = InProcess::start_with(Arc::new(MemBackend::new(SIZE)), opts);
    let mut rng = SplitMix64::new(SEED);
    for round in 0..150 {
        let mut bytes = match round % 3 {
            // Pure noise from the first byte.
            0 => {
                let mut b = vec![0u8; rng.below(200) as usize];
                rng.fill(&mut b);
                b
            }
            // A valid handshake prefix with one byte flipped, then requests.
            1 => {
                let mut b = transmission_prefix();
                let i = rng.below(b.len() as u64) as usize;
                b[i] ^= 1 << rng.below(8);
                b
            }
            _ => transmission_prefix(),
        };
        if round % 3 != 0 {
            bytes.extend(random_requests(&mut rng));
        }
        hammer(srv.addr, &bytes);
    }
    let mut c = Client::connect(srv.addr, "disk").expect("server still accepts");
    c.write(100, b"after the storm", true).unwrap();
    assert_eq!(c.read(100, 15).unwrap(), b"after the storm");
    c.disconnect().unwrap();
    let stats = srv.stop();
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "seed {SEED:#x}: a server thread panicked"
    );
    assert!(stats.connections > 150, "{stats:?}");
    assert!(
        stats.error_replies > 0 && stats.protocol_violations > 0,
        "{stats:?}"
    );
}
