//! TLS and access control, against real clients (libnbd's nbdinfo and nbdcopy, qemu-io, and
//! the project's own `nbds://` client) and against clients that break the handshake on
//! purpose. Credentials are made fresh for each test by `txdisk_nbd::certs`. Checks that need
//! a client program skip, saying why, where it is not installed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use txdisk::{Block, Disk, NbdDisk, NbdOptions};
use txdisk_nbd::certs::{self, CertRequest, Generated};
use txdisk_nbd::proto;
use txdisk_nbd::testkit::clients::{find_tool, pattern, run_limited, run_ok};
use txdisk_nbd::{
    Export, Listen, MemBackend, ServeStats, Server, ServerOptions, ServerTls, TlsMode,
};

const MIB: usize = 1 << 20;
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// Fresh credentials: a CA, a server certificate for localhost and 127.0.0.1, and clients
/// alice and bob.
fn credentials(dir: &Path) -> Generated {
    certs::generate(
        dir,
        &CertRequest {
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            clients: vec!["alice".into(), "bob".into()],
        },
    )
    .expect("make credentials")
}

fn client_dir(made: &Generated, name: &str) -> PathBuf {
    made.client_dirs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, dir)| dir.clone())
        .expect("client made")
}

struct Running {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<txdisk_nbd::Result<ServeStats>>,
}

impl Running {
    fn stop(self) -> ServeStats {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .join()
            .expect("server thread")
            .expect("serve_until")
    }
}

fn serve(exports: Vec<Export<MemBackend>>, tls_mode: TlsMode, server_dir: &Path) -> Running {
    serve_with(exports, tls_mode, server_dir, ServerOptions::default())
}

fn serve_with(
    exports: Vec<Export<MemBackend>>,
    tls_mode: TlsMode,
    server_dir: &Path,
    opts: ServerOptions,
) -> Running {
    let opts = ServerOptions {
        tls_mode,
        tls: Some(ServerTls::load(server_dir).expect("load server credentials")),
        ..opts
    };
    let server = Server::bind_exports(&Listen::Tcp("127.0.0.1:0".into()), exports)
        .expect("bind")
        .with_options(opts)
        .expect("options");
    let addr = server.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || server.serve_until(&flag));
    Running { addr, stop, handle }
}

fn one_export(backend: &Arc<MemBackend>) -> Vec<Export<MemBackend>> {
    vec![Export::new("disk", backend.clone())]
}

fn nbds(addr: SocketAddr, export: &str, creds: &Path) -> String {
    format!(
        "nbds://{addr}/{export}?tls-certificates={}",
        creds.display()
    )
}

fn missing(tools: &[&str]) -> bool {
    let absent: Vec<_> = tools.iter().filter(|t| find_tool(t).is_none()).collect();
    if !absent.is_empty() {
        println!("skipped: {absent:?} not installed (Debian packages libnbd-bin, qemu-utils)");
    }
    !absent.is_empty()
}

fn qemu_io(addr: SocketAddr, export: &str, creds: Option<&Path>, commands: &[&str]) -> Command {
    let mut cmd = Command::new("qemu-io");
    let mut opts = format!(
        "driver=nbd,host={},port={},export={export}",
        addr.ip(),
        addr.port()
    );
    if let Some(dir) = creds {
        cmd.arg("--object").arg(format!(
            "tls-creds-x509,id=tls0,dir={},endpoint=client",
            dir.display()
        ));
        opts.push_str(",tls-creds=tls0");
    }
    cmd.arg("--image-opts").arg(opts);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd
}

#[test]
fn real_clients_read_and_write_over_tls() {
    if missing(&["nbdinfo", "nbdcopy", "qemu-io"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let made = credentials(&dir.path().join("creds"));
    let alice = client_dir(&made, "alice");
    let backend = Arc::new(MemBackend::new(8 * MIB));
    let server = serve(one_export(&backend), TlsMode::Require, &made.server_dir);
    let uri = nbds(server.addr, "disk", &alice);

    let info = run_ok(Command::new("nbdinfo").arg(&uri)).expect("nbdinfo over TLS");
    assert!(info.contains("with TLS"), "nbdinfo did not use TLS: {info}");
    assert!(info.contains("export-size: 8388608"), "{info}");

    let data = pattern(22, 4 * MIB);
    let src = dir.path().join("in.bin");
    let back = dir.path().join("out.bin");
    std::fs::write(&src, &data).unwrap();
    run_ok(Command::new("nbdcopy").arg(&src).arg(&uri)).expect("nbdcopy into the export");
    assert_eq!(&backend.snapshot()[..4 * MIB], &data[..], "nbdcopy's bytes");
    run_ok(Command::new("nbdcopy").arg(&uri).arg(&back)).expect("nbdcopy out of the export");
    assert_eq!(&std::fs::read(&back).unwrap()[..4 * MIB], &data[..]);

    let mut io = qemu_io(
        server.addr,
        "disk",
        Some(&alice),
        &["write -P 0x5a 5M 64k", "read -P 0x5a 5M 64k"],
    );
    let out = run_ok(&mut io).expect("qemu-io over TLS");
    assert!(!out.contains("Pattern verification failed"), "{out}");
    assert!(backend.snapshot()[5 * MIB..5 * MIB + 65536]
        .iter()
        .all(|&b| b == 0x5a));

    // The project's own client, as a remote member would use it.
    let disk = NbdDisk::open_uri(&uri, &NbdOptions::default()).expect("nbds:// client");
    disk.write(3, &Block::filled(0xc3)).unwrap();
    disk.sync().unwrap();
    assert_eq!(disk.read(3).unwrap(), Block::filled(0xc3));
    drop(disk);
    assert!(backend.snapshot()[3 * 4096..4 * 4096]
        .iter()
        .all(|&b| b == 0xc3));
    let stats = server.stop();
    assert_eq!(stats.tls_failures, 0, "{stats:?}");
}

#[test]
fn without_tls_or_with_the_wrong_key_nothing_is_readable() {
    if missing(&["nbdinfo", "nbdcopy", "qemu-io"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let made = credentials(&dir.path().join("creds"));
    // A client certificate from another CA, with the right CA to trust the server: the
    // server must refuse it. And a client that trusts another CA: it must refuse the server.
    let other = credentials(&dir.path().join("other"));
    let wrong_key = dir.path().join("wrong-key");
    std::fs::create_dir(&wrong_key).unwrap();
    let other_alice = client_dir(&other, "alice");
    for file in ["client-cert.pem", "client-key.pem"] {
        std::fs::copy(other_alice.join(file), wrong_key.join(file)).unwrap();
    }
    std::fs::copy(
        client_dir(&made, "alice").join("ca-cert.pem"),
        wrong_key.join("ca-cert.pem"),
    )
    .unwrap();

    let backend = Arc::new(MemBackend::from_bytes(pattern(7, 4 * MIB)));
    let server = serve(one_export(&backend), TlsMode::Require, &made.server_dir);
    let plain = format!("nbd://{}/disk", server.addr);
    let out_file = dir.path().join("leak.bin");
    let refused = |cmd: &mut Command, what: &str| {
        let out = run_limited(cmd, CLIENT_LIMIT).expect("client ran");
        assert!(!out.status.success(), "{what} succeeded: {out:?}");
    };
    refused(Command::new("nbdinfo").arg(&plain), "plain nbdinfo");
    refused(
        Command::new("nbdcopy").arg(&plain).arg(&out_file),
        "plain nbdcopy",
    );
    refused(
        &mut qemu_io(server.addr, "disk", None, &["read 0 4k"]),
        "plain qemu-io",
    );
    // The project's own client without TLS is told what to do about it.
    match NbdDisk::open_uri(&plain, &NbdOptions::default()) {
        Ok(_) => panic!("a plain nbd:// client was served by a TLS-only server"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("requires TLS") && message.contains("nbds://"),
                "unclear refusal: {message}"
            );
        }
    }
    for creds in [&wrong_key, &client_dir(&other, "bob")] {
        let uri = nbds(server.addr, "disk", creds);
        refused(Command::new("nbdinfo").arg(&uri), "nbdinfo, wrong key");
        refused(
            Command::new("nbdcopy").arg(&uri).arg(&out_file),
            "nbdcopy, wrong key",
        );
        refused(
            &mut qemu_io(server.addr, "disk", Some(creds), &["read 0 4k"]),
            "qemu-io, wrong key",
        );
        assert!(
            NbdDisk::open_uri(&uri, &NbdOptions::default()).is_err(),
            "nbds:// client with a wrong key"
        );
    }
    let leaked = std::fs::read(&out_file).unwrap_or_default();
    assert!(
        leaked.iter().all(|&b| b == 0),
        "export bytes reached a refused client"
    );
    let stats = server.stop();
    assert_eq!(
        stats.requests, 0,
        "a refused client reached transmission: {stats:?}"
    );
    assert!(stats.tls_failures >= 4, "{stats:?}");
}

/// A raw handshake: greeting read, fixed-newstyle flags sent.
fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting).unwrap();
    let flags = proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES;
    s.write_all(&flags.to_be_bytes()).unwrap();
    s
}

fn send_option(s: &mut TcpStream, option: u32, data: &[u8]) {
    let mut msg = Vec::new();
    proto::write_option(&mut msg, option, data).unwrap();
    s.write_all(&msg).unwrap();
}

/// One option reply: (option echoed, reply type, data).
fn read_reply(s: &mut TcpStream) -> (u32, u32, Vec<u8>) {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).unwrap();
    assert_eq!(
        u64::from_be_bytes(h[0..8].try_into().unwrap()),
        proto::OPT_REPLY_MAGIC
    );
    let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
    let mut data = vec![0u8; len as usize];
    s.read_exact(&mut data).unwrap();
    (
        u32::from_be_bytes(h[8..12].try_into().unwrap()),
        u32::from_be_bytes(h[12..16].try_into().unwrap()),
        data,
    )
}

fn go_data(name: &str) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&0u16.to_be_bytes());
    d
}

/// True when the server closed the connection (end of stream or reset) within the read
/// timeout; whatever it sent first (a TLS alert) is skipped.
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

#[test]
fn options_before_starttls_are_refused_when_tls_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let made = credentials(&dir.path().join("creds"));
    let backend = Arc::new(MemBackend::new(MIB));
    let server = serve(one_export(&backend), TlsMode::Require, &made.server_dir);

    let mut s = raw_client(server.addr);
    for (option, data) in [
        (proto::OPT_GO, go_data("disk")),
        (proto::OPT_INFO, go_data("")),
        (proto::OPT_LIST, Vec::new()),
        (proto::OPT_STRUCTURED_REPLY, Vec::new()),
    ] {
        send_option(&mut s, option, &data);
        let (echoed, reply, message) = read_reply(&mut s);
        assert_eq!(
            (echoed, reply),
            (option, proto::REP_ERR_TLS_REQD),
            "option {option}"
        );
        assert!(
            !message.windows(4).any(|w| w == b"disk"),
            "the refusal names the export"
        );
    }
    // EXPORT_NAME has no error reply: the server closes.
    send_option(&mut s, proto::OPT_EXPORT_NAME, b"disk");
    assert!(
        closed(&mut s),
        "EXPORT_NAME before STARTTLS was not refused"
    );

    // With TLS merely on, the same client is served in plain text.
    let on = serve(one_export(&backend), TlsMode::On, &made.server_dir);
    let mut s = raw_client(on.addr);
    send_option(&mut s, proto::OPT_GO, &go_data("disk"));
    let (_, reply, _) = read_reply(&mut s);
    assert_eq!(reply, proto::REP_INFO);
    drop(s);
    let stats = server.stop();
    assert_eq!(stats.requests, 0);
    on.stop();
}

#[test]
fn broken_tls_handshakes_end_cleanly_and_others_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let made = credentials(&dir.path().join("creds"));
    let backend = Arc::new(MemBackend::new(MIB));
    let opts = ServerOptions {
        handshake_timeout: Duration::from_millis(800),
        ..ServerOptions::default()
    };
    let server = serve_with(
        one_export(&backend),
        TlsMode::Require,
        &made.server_dir,
        opts,
    );
    let starttls = |addr| {
        let mut s = raw_client(addr);
        send_option(&mut s, proto::OPT_STARTTLS, &[]);
        let (_, reply, _) = read_reply(&mut s);
        assert_eq!(reply, proto::REP_ACK);
        s
    };
    // A ClientHello's record header promising 512 bytes, then a few of them, then gone.
    let mut cut = starttls(server.addr);
    cut.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
        .unwrap();
    drop(cut);
    // Garbage where the TLS records should be.
    let mut garbage = starttls(server.addr);
    garbage.write_all(&[0xee; 300]).unwrap();
    assert!(closed(&mut garbage), "garbage records were not refused");
    // Plain text sent straight after STARTTLS, before the reply could be read: an injection.
    let mut injected = raw_client(server.addr);
    let mut both = Vec::new();
    proto::write_option(&mut both, proto::OPT_STARTTLS, &[]).unwrap();
    proto::write_option(&mut both, proto::OPT_GO, &go_data("disk")).unwrap();
    injected.write_all(&both).unwrap();
    // A client that never starts its handshake.
    let mut silent = starttls(server.addr);
    let silent_since = Instant::now();
    // A client that trickles a ClientHello a byte at a time, each inside the per-read timeout:
    // the whole handshake is bounded too.
    let mut trickle = starttls(server.addr);
    let trickle_since = Instant::now();
    let trickler = {
        let mut s = trickle.try_clone().unwrap();
        thread::spawn(move || {
            let hello = [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
            for byte in hello.iter().cycle().take(40) {
                if s.write_all(&[*byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(300));
            }
        })
    };

    // Meanwhile a good client is served.
    let uri = nbds(server.addr, "disk", &client_dir(&made, "alice"));
    let disk = NbdDisk::open_uri(&uri, &NbdOptions::default()).expect("a good client");
    disk.write(1, &Block::filled(9)).unwrap();
    disk.sync().unwrap();
    drop(disk);

    assert!(closed(&mut silent), "a silent TLS client was never dropped");
    let waited = silent_since.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "the handshake timeout did not apply: {waited:?}"
    );
    assert!(closed(&mut trickle), "a trickling client was never dropped");
    let waited = trickle_since.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "the handshake as a whole was not bounded: {waited:?}"
    );
    trickler.join().unwrap();
    let (_, reply, _) = read_reply(&mut injected);
    assert_eq!(reply, proto::REP_ACK, "STARTTLS itself was answered");
    assert!(
        closed(&mut injected),
        "plain text after STARTTLS was accepted"
    );
    let stats = server.stop();
    // The injected bytes are caught before TLS starts when they arrived with STARTTLS, and
    // fail the TLS handshake as garbage when they arrived after it.
    assert!(stats.tls_failures >= 3, "{stats:?}");
    assert!(
        stats.tls_failures + stats.protocol_violations >= 4,
        "{stats:?}"
    );
    assert!(backend.snapshot()[4096..8192].iter().all(|&b| b == 9));
}

#[test]
fn allow_lists_choose_exports_by_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let made = credentials(&dir.path().join("creds"));
    let private = Arc::new(MemBackend::new(MIB));
    let shared = Arc::new(MemBackend::new(MIB));
    let exports = vec![
        Export {
            allow: Some(vec!["alice".into()]),
            ..Export::new("alice-only", private.clone())
        },
        Export {
            read_only: true,
            ..Export::new("shared", shared.clone())
        },
    ];
    let server = serve(exports, TlsMode::Require, &made.server_dir);
    let alice = client_dir(&made, "alice");
    let bob = client_dir(&made, "bob");
    let open = |export: &str, creds: &Path| {
        NbdDisk::open_uri(&nbds(server.addr, export, creds), &NbdOptions::default())
    };
    let disk = open("alice-only", &alice).expect("alice opens her export");
    disk.write(0, &Block::filled(1)).unwrap();
    disk.sync().unwrap();
    drop(disk);
    let refused = open("alice-only", &bob).expect_err("bob opened alice's export");
    assert!(
        refused.to_string().contains("not allowed"),
        "unclear refusal: {refused}"
    );
    // The read-only export is refused as a member (the client needs a writable disk), and
    // writes to it are refused with EPERM by real clients.
    let ro = open("shared", &bob).expect_err("a read-only export became a member");
    assert!(ro.to_string().contains("read-only"), "{ro}");
    if !missing(&["nbdinfo", "qemu-io"]) {
        let list = format!("nbds://{}?tls-certificates={}", server.addr, bob.display());
        let listed = run_ok(Command::new("nbdinfo").args(["--list", &list])).expect("list");
        assert!(
            listed.contains("shared") && !listed.contains("alice-only"),
            "{listed}"
        );
        let mut io = qemu_io(server.addr, "shared", Some(&bob), &["write -P 1 0 4k"]);
        let out = run_limited(&mut io, CLIENT_LIMIT).expect("qemu-io");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success()
                || text.contains("Operation not permitted")
                || text.contains("read-only"),
            "a write to a read-only export went through: {text}"
        );
    }
    server.stop();
    assert!(private.snapshot()[..4096].iter().all(|&b| b == 1));
    assert!(
        shared.snapshot().iter().all(|&b| b == 0),
        "the read-only export was written"
    );
}
