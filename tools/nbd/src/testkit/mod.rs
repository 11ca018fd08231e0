//! Test support for NBD servers run as real processes: spawn one, kill it with SIGKILL or
//! stop it with SIGTERM ([`ServerProcess`]); the FUA crash workload ([`fua_crash_rounds`]);
//! and the checks with real clients ([`clients`]: qemu-io, qemu-img, nbdinfo, nbdcopy).
//!
//! Public so that other crates can run the same checks against their own server binary
//! (for instance the logical disk behind `txdisk serve`): each check starts servers through
//! a [`Spawn`] callback that knows how to make a fresh image and serve it.

pub mod clients;
mod crash;

pub use crash::{fua_crash_rounds, CrashOptions, CrashReport};

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A deterministic pseudo-random sequence (SplitMix64), so every run replays from its seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`: the same seed gives the same sequence.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 pseudo-random bits.
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

    /// Fills `buf` with pseudo-random bytes.
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
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining, so later output never meets a closed pipe (EPIPE would make a
            // server's final message fail, and with it a clean exit).
            let _ = io::copy(&mut reader, &mut io::sink());
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

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server process's id, for sending it signals.
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

pub(crate) fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) takes plain integers; it touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What a check asks of its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Serve a new image whose export reads as zeroes and holds at least this many bytes.
    Fresh {
        /// The export's smallest acceptable size in bytes.
        min_size_bytes: u64,
    },
    /// Serve the image of the previous start again (after a kill or a stop).
    Again,
}

/// Starts a server as a check asks; it must print `listening on ADDR` (see
/// [`ServerProcess::spawn`]) and serve the export the check names.
pub type Spawn<'a> = dyn FnMut(Start) -> io::Result<ServerProcess> + 'a;
