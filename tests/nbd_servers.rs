//! The whole stack with a pair member on a real NBD server over a Unix socket on this machine:
//! qemu-nbd and nbdkit's file plugin as the remote member (format, open, transactions, close,
//! reopen, members equal); `kill -9` and `SIGSTOP` of the server mid-workload (the pair goes
//! degraded, keeps committing, loses no acknowledged write, and rebuilds the member when the
//! server is back); nbdkit's `error` filter (a read error on the remote member is repaired from
//! the local one) and `delay` filter. Skips, saying why, where a server binary is absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use txdisk::replicated::{replicas_agree, ReplicaStatus, Role};
use txdisk::{Block, Disk, FormatOptions, OpenOptions};

const OPTIONS: FormatOptions = FormatOptions {
    size_blocks: 2048,
    log_blocks: 256,
};

/// Every remote member of these tests fails within half a second of its server going silent.
fn short_timeout() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var(txdisk::NBD_TIMEOUT_ENV, "500"));
}

fn have(binary: &str) -> bool {
    short_timeout();
    let found = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        println!("skipped: {binary} is not installed (apt-get install nbdkit qemu-utils)");
    }
    found
}

/// A server process serving one file on a Unix socket; killed when dropped.
struct Server {
    child: Child,
    socket: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    QemuNbd,
    Nbdkit,
}

impl Server {
    fn start(kind: Kind, file: &Path, socket: &Path, filters: &[&str]) -> Server {
        let _ = std::fs::remove_file(socket);
        let mut cmd = match kind {
            Kind::QemuNbd => {
                let mut c = Command::new("qemu-nbd");
                // Persistent (-t): the stack connects more than once (format, then open);
                // --shared=1: one client at a time, the exclusive access a member needs.
                c.args(["-f", "raw", "-t", "--shared=1", "-x", "disk", "-k"]);
                c.arg(socket).arg(file);
                c
            }
            Kind::Nbdkit => {
                let mut c = Command::new("nbdkit");
                c.args(["-f", "--exit-with-parent", "-U"]).arg(socket);
                let (names, params): (Vec<&str>, Vec<&str>) =
                    filters.iter().partition(|f| f.starts_with("--filter="));
                c.args(names).arg("file").arg(file).args(params);
                c
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the NBD server");
        // Wait for the socket (a bound wait for start-up, not a measurement).
        let started = Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the NBD server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            socket: socket.into(),
        }
    }

    fn uri(&self) -> String {
        format!("nbd+unix:///disk?socket={}", self.socket.display())
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn kill9(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    local: PathBuf,
    remote_file: PathBuf,
    socket: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let remote_file = dir.path().join("remote.img");
    std::fs::File::create(&remote_file)
        .unwrap()
        .set_len(OPTIONS.size_blocks * 4096)
        .unwrap();
    Setup {
        local: dir.path().join("local.img"),
        socket: dir.path().join("nbd.sock"),
        remote_file,
        _dir: dir,
    }
}

fn value(addr: u64, round: u32) -> Block {
    let mut block = Block::filled(round as u8);
    block.as_bytes_mut()[..8].copy_from_slice(&addr.to_le_bytes());
    block.as_bytes_mut()[8..12].copy_from_slice(&round.to_le_bytes());
    block
}

/// Commits `count` two-block transactions from `round`, recording what was acknowledged.
fn commit(stack: &txdisk::Stack, round: u32, count: u32, acked: &mut BTreeMap<u64, Block>) {
    for i in round..round + count {
        let addrs = [u64::from(i) % 700, 700 + u64::from(i * 7) % 700];
        stack
            .transaction(|tx| {
                for &a in &addrs {
                    tx.write(a, &value(a, i))?;
                }
                Ok::<_, txdisk::LogicalError>(())
            })
            .expect("a commit with one member alive");
        for a in addrs {
            acked.insert(a, value(a, i));
        }
    }
}

fn check(stack: &txdisk::Stack, acked: &BTreeMap<u64, Block>) {
    for (addr, block) in acked {
        assert_eq!(
            &stack.read(*addr).unwrap(),
            block,
            "acknowledged write at {addr} lost"
        );
    }
}

fn members_equal(stack: &txdisk::Stack) {
    let pair = stack.pair().expect("a pair");
    assert_eq!(pair.replica_status(Role::D1), ReplicaStatus::Active);
    assert_eq!(pair.replica_status(Role::D2), ReplicaStatus::Active);
    replicas_agree(pair).expect("members equal");
}

fn full_stack_over(kind: Kind) {
    let s = setup();
    let server = Server::start(kind, &s.remote_file, &s.socket, &[]);
    let images = [s.local.to_string_lossy().into_owned(), server.uri()];
    txdisk::format(&images, &OPTIONS).unwrap();
    let mut acked = BTreeMap::new();
    let stack = txdisk::open(&images, OpenOptions::default()).unwrap();
    commit(&stack, 0, 200, &mut acked);
    check(&stack, &acked);
    members_equal(&stack);
    stack.close().unwrap();
    let stack = txdisk::open(&images, OpenOptions::default()).unwrap();
    check(&stack, &acked);
    members_equal(&stack);
    stack.close().unwrap();
}

#[test]
fn a_pair_with_a_qemu_nbd_member() {
    if have("qemu-nbd") {
        full_stack_over(Kind::QemuNbd);
    }
}

#[test]
fn a_pair_with_an_nbdkit_member() {
    if have("nbdkit") {
        full_stack_over(Kind::Nbdkit);
    }
}

/// Runs a workload, stops the server with `stop` part-way, and checks the pair degrades,
/// keeps committing, loses nothing, and rebuilds the member once a server is back.
fn server_lost_mid_workload(kind: Kind, stop: impl FnOnce(Server) -> Option<Server>) {
    short_timeout();
    let s = setup();
    let server = Server::start(kind, &s.remote_file, &s.socket, &[]);
    let images = [s.local.to_string_lossy().into_owned(), server.uri()];
    txdisk::format(&images, &OPTIONS).unwrap();
    let stack = txdisk::open(&images, OpenOptions::default()).unwrap();
    let mut acked = BTreeMap::new();
    commit(&stack, 0, 50, &mut acked);
    let stopped = stop(server);
    commit(&stack, 50, 100, &mut acked);
    let pair = stack.pair().unwrap();
    assert_eq!(pair.replica_status(Role::D2), ReplicaStatus::Failed);
    assert_eq!(pair.replica_status(Role::D1), ReplicaStatus::Active);
    check(&stack, &acked);
    drop(stopped);
    // The server comes back (on the same file, with what it had): rebuilt, never trusted.
    let server = Server::start(kind, &s.remote_file, &s.socket, &[]);
    let member = txdisk::open_member(Path::new(&server.uri())).unwrap();
    pair.rebuild(member, &mut |_| {}).unwrap();
    commit(&stack, 150, 20, &mut acked);
    members_equal(&stack);
    check(&stack, &acked);
    stack.close().unwrap();
    let stack = txdisk::open(&images, OpenOptions::default()).unwrap();
    check(&stack, &acked);
    members_equal(&stack);
    stack.close().unwrap();
}

#[test]
fn kill_9_of_qemu_nbd_degrades_the_pair_and_loses_nothing() {
    if have("qemu-nbd") {
        server_lost_mid_workload(Kind::QemuNbd, |server| {
            server.kill9();
            None
        });
    }
}

#[test]
fn kill_9_of_nbdkit_degrades_the_pair_and_loses_nothing() {
    if have("nbdkit") {
        server_lost_mid_workload(Kind::Nbdkit, |server| {
            server.kill9();
            None
        });
    }
}

#[test]
fn a_stopped_server_is_failed_within_the_timeout_not_waited_for() {
    if have("nbdkit") {
        // The stopped process keeps its socket open and answers nothing while the pair runs
        // on; it is killed before a new server takes the socket.
        server_lost_mid_workload(Kind::Nbdkit, |server| {
            server.signal("STOP");
            Some(server)
        });
    }
}

#[test]
fn read_errors_of_the_remote_member_are_repaired_from_the_local_one() {
    if !have("nbdkit") {
        return;
    }
    let s = setup();
    let inject = s.socket.with_extension("inject");
    let inject_s = format!("error-pread-file={}", inject.display());
    let filters = ["--filter=error", "error-pread-rate=100%", inject_s.as_str()];
    let server = Server::start(Kind::Nbdkit, &s.remote_file, &s.socket, &filters);
    // The remote member first: reads are served from d1, so its errors are what reads meet.
    let images = [server.uri(), s.local.to_string_lossy().into_owned()];
    txdisk::format(&images, &OPTIONS).unwrap();
    let stack = txdisk::open(&images, OpenOptions::default()).unwrap();
    let mut acked = BTreeMap::new();
    commit(&stack, 0, 100, &mut acked);
    stack.install().unwrap();
    std::fs::write(&inject, b"").unwrap(); // every read of the remote member fails from here
    let direct = txdisk::NbdDisk::open_uri(&server.uri(), &txdisk::nbd_options()).unwrap();
    assert!(matches!(
        direct.read(0),
        Err(txdisk::disk::DiskError::ReadError { addr: 0 })
    ));
    drop(direct);
    for _ in 0..2 {
        check(&stack, &acked);
    }
    std::fs::remove_file(&inject).unwrap();
    let pair = stack.pair().unwrap();
    assert_eq!(
        pair.replica_status(Role::D1),
        ReplicaStatus::Active,
        "a read error is not a failure"
    );
    members_equal(&stack);
    stack.close().unwrap();
}

#[test]
fn a_slow_server_is_slow_not_wrong() {
    if !have("nbdkit") {
        return;
    }
    let s = setup();
    let filters = ["--filter=delay", "delay-read=2ms", "delay-write=2ms"];
    let server = Server::start(Kind::Nbdkit, &s.remote_file, &s.socket, &filters);
    let images = [s.local.to_string_lossy().into_owned(), server.uri()];
    txdisk::format(&images, &OPTIONS).unwrap();
    let stack = txdisk::open(&images, OpenOptions::default()).unwrap();
    let mut acked = BTreeMap::new();
    commit(&stack, 0, 40, &mut acked);
    check(&stack, &acked);
    members_equal(&stack);
    stack.close().unwrap();
}

#[test]
fn format_refuses_an_export_of_the_wrong_size_or_not_blank() {
    if !have("nbdkit") {
        return;
    }
    let s = setup();
    let server = Server::start(Kind::Nbdkit, &s.remote_file, &s.socket, &[]);
    let images = [s.local.to_string_lossy().into_owned(), server.uri()];
    let wrong = FormatOptions {
        size_blocks: OPTIONS.size_blocks / 2,
        ..OPTIONS
    };
    let err = txdisk::format(&images, &wrong).unwrap_err();
    assert!(err.to_string().contains("2048 blocks"), "{err}");
    assert!(!s.local.exists(), "a refused format leaves nothing behind");
    txdisk::format(&images, &OPTIONS).unwrap();
    std::fs::remove_file(&s.local).unwrap();
    let err = txdisk::format(&images, &OPTIONS).unwrap_err();
    assert!(err.to_string().contains("not blank"), "{err}");
}
