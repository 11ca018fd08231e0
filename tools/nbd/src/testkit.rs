//! Test support for NBD servers run as real processes: spawn one, kill it with SIGKILL or
//! stop it with SIGTERM, and the FUA crash workload that checks what a kill may lose.
//!
//! Public so that other crates can run the same crash check against their own server
//! binary (for instance the logical disk behind `txdisk serve`).

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::Client;

/// A deterministic pseudo-random sequence (SplitMix64), so every run replays from its seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A server process that printed `listening on ADDR` on its first line of stdout.
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Spawns `cmd` and waits (at most `timeout`) for its `listening on ADDR` line.
    pub fn spawn(mut cmd: Command, timeout: Duration) -> io::Result<ServerProcess> {
        let mut child = cmd.stdout(Stdio::piped()).spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(timeout) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(
                    "server did not report its address in time",
                ));
            }
        };
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok());
        match addr {
            Some(addr) => Ok(ServerProcess { child, addr }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::other(format!("unexpected first line {line:?}")))
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill9(mut self) -> io::Result<ExitStatus> {
        self.child.kill()?;
        self.child.wait()
    }

    /// SIGTERM, then [`ServerProcess::wait_exit`].
    pub fn terminate(self, timeout: Duration) -> io::Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        self.wait_exit(timeout)
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) to the server.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        send_signal(self.child.id(), signal)
    }

    /// Waits at most `timeout` for the server to exit; after that, SIGKILL and an error.
    pub fn wait_exit(mut self, timeout: Duration) -> io::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "server did not exit in time",
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) takes plain integers; it touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Parameters of [`fua_crash_rounds`].
#[derive(Debug, Clone)]
pub struct CrashOptions {
    pub seed: u64,
    pub rounds: usize,
    /// The workload writes inside `[0, region_bytes)` of the export.
    pub region_bytes: u32,
    /// Each write is 1..=max_write_bytes long, at any byte offset.
    pub max_write_bytes: u32,
    /// The kill lands 0..max_kill_delay_us after the workload starts.
    pub max_kill_delay_us: u64,
    /// Require every write to be all-or-nothing (a transactional backend); otherwise only
    /// require each byte of the interrupted write to be old or new.
    pub atomic_writes: bool,
    pub export: String,
}

/// What the rounds saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashReport {
    pub acked_writes: u64,
    /// Rounds where a write was in flight at the kill, and how they resolved.
    pub interrupted: u64,
    pub interrupted_applied: u64,
    pub interrupted_lost: u64,
    pub interrupted_torn: u64,
}

/// Runs `opts.rounds` rounds of: start the server (`spawn`), check the export holds exactly
/// what every acknowledged FUA write put there, write with FUA until the server is killed
/// with SIGKILL at a random moment. A final start checks the last round. Every write is
/// FUA, so an acknowledged one must survive; the one in flight at the kill may land or not.
/// The export must read as zeroes in `[0, region_bytes)` before the first start (a freshly
/// created image per call), and every `spawn` must serve the same image.
/// Err describes the first violation, with the seed to replay.
pub fn fua_crash_rounds(
    spawn: &mut dyn FnMut() -> io::Result<ServerProcess>,
    opts: &CrashOptions,
) -> Result<CrashReport, String> {
    let mut rng = SplitMix64::new(opts.seed);
    let mut shadow = vec![0u8; opts.region_bytes as usize];
    let mut pending: Option<(u64, Vec<u8>)> = None;
    let mut report = CrashReport::default();
    let fail = |round: usize, what: String| format!("seed {} round {round}: {what}", opts.seed);
    for round in 0..=opts.rounds {
        let server = spawn().map_err(|e| fail(round, format!("spawn: {e}")))?;
        let mut client = Client::connect(server.addr(), &opts.export)
            .map_err(|e| fail(round, format!("connect: {e}")))?;
        let image = client
            .read(0, opts.region_bytes)
            .map_err(|e| fail(round, format!("read back: {e}")))?;
        if let Some((offset, data)) = pending.take() {
            resolve(
                &mut shadow,
                &image,
                offset,
                &data,
                opts.atomic_writes,
                &mut report,
            )
            .map_err(|e| fail(round, e))?;
        }
        if image != shadow {
            let at = first_difference(&image, &shadow);
            return Err(fail(
                round,
                format!("acknowledged data lost: first difference at byte {at}"),
            ));
        }
        if round == opts.rounds {
            let _ = server.kill9();
            break;
        }
        let delay = Duration::from_micros(rng.below(opts.max_kill_delay_us.max(1)));
        let pid = server.pid();
        let killer = thread::spawn(move || {
            thread::sleep(delay);
            let _ = send_signal(pid, libc::SIGKILL);
        });
        pending = write_until_killed(&mut client, &mut rng, &mut shadow, opts, &mut report)
            .map_err(|e| fail(round, e))?;
        let _ = killer.join();
        let _ = server.kill9();
    }
    Ok(report)
}

/// Writes with FUA until the connection dies; returns the write in flight at that moment.
fn write_until_killed(
    client: &mut Client,
    rng: &mut SplitMix64,
    shadow: &mut [u8],
    opts: &CrashOptions,
    report: &mut CrashReport,
) -> Result<Option<(u64, Vec<u8>)>, String> {
    // Bounded: the killer fires within max_kill_delay_us, long before this runs out.
    for _ in 0..1_000_000 {
        let len = 1 + rng.below(u64::from(opts.max_write_bytes.min(opts.region_bytes))) as usize;
        let offset = rng.below(u64::from(opts.region_bytes) - len as u64 + 1);
        let mut data = vec![0u8; len];
        rng.fill(&mut data);
        match client.write(offset, &data, true) {
            Ok(()) => {
                shadow[offset as usize..offset as usize + len].copy_from_slice(&data);
                report.acked_writes += 1;
            }
            Err(crate::NbdError::Request { errno }) => {
                return Err(format!(
                    "write {offset}+{len} failed with NBD error {errno}"
                ));
            }
            Err(_) => return Ok(Some((offset, data))),
        }
    }
    Err("the server was never killed".to_string())
}

/// Checks the interrupted write landed whole, not at all, or (if allowed) byte by byte
/// old-or-new; updates the shadow to what is on the export.
fn resolve(
    shadow: &mut [u8],
    image: &[u8],
    offset: u64,
    data: &[u8],
    atomic: bool,
    report: &mut CrashReport,
) -> Result<(), String> {
    report.interrupted += 1;
    let range = offset as usize..offset as usize + data.len();
    let found = &image[range.clone()];
    if found == data {
        report.interrupted_applied += 1;
    } else if found == &shadow[range.clone()] {
        report.interrupted_lost += 1;
    } else {
        let mixed_ok = found
            .iter()
            .zip(data)
            .zip(&shadow[range.clone()])
            .all(|((f, new), old)| f == new || f == old);
        if atomic || !mixed_ok {
            return Err(format!(
                "interrupted write {offset}+{} is torn (neither all old nor all new)",
                data.len()
            ));
        }
        report.interrupted_torn += 1;
    }
    shadow[range].copy_from_slice(found);
    Ok(())
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}
