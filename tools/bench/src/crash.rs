//! A writer killed mid-write, for the reopen-after-crash workloads.
//!
//! The parent ([`crash_writer`]) re-executes the current program with [`WRITER_ENV`] set (JSON:
//! the images' directory, whether they are a pair, the disk's size and a seed). The child
//! ([`writer_entry`], reached through [`crate::child_entry`]) opens the stack as a user would,
//! commits one block at a time, durably, and prints a line after [`COMMITTED_MARKER`] after each
//! commit; the parent reads those lines and, once the child has made the commits it was asked
//! for, kills it with SIGKILL while it writes the next. No destructor of the stack runs: the
//! images are left as a crash leaves them.
//!
//! Commit `i` writes [`commit_block`]`(seed, i)` at [`commit_addr`]`(seed, i)`, both functions of
//! the seed and the commit alone, so the parent knows what any commit wrote without being told
//! and can check a block read after the crash ([`check_recovered`]).

use crate::error::{BenchError, Result};
use crate::isolation::CELL_ENV;
use crate::system::SystemFactory;
use crate::txdisk_system::{self, TxdiskFactory};
use serde::Serialize;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use txdisk_disk::rng::SplitMix64;
use txdisk_disk::{Addr, Block};

/// The environment variable that makes a process the writer a reopen workload kills.
pub const WRITER_ENV: &str = "TXDISK_BENCH_CRASH_WRITER";
/// Starts the writer's line on stdout after each durable commit; the commit's number follows.
pub const COMMITTED_MARKER: &str = "txdisk-bench-committed ";
/// The most commits a writer makes before it gives up waiting to be killed: far more than any
/// parent asks for, so reaching it means the parent is gone or stuck, and the scratch images
/// must not grow without end.
const MAX_WRITER_COMMITS: u64 = 1 << 24;
/// Bytes of a block's stamp: the seed, the commit number and the address, little-endian.
const STAMP_BYTES: usize = 24;

/// What a writer child is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WriterSpec {
    /// The directory holding the images (as `txdisk_system` names them).
    pub dir: PathBuf,
    /// Two images, a replicated pair, rather than one.
    pub replicated: bool,
    /// Blocks of the logical disk: every commit writes one of `0..disk_blocks`.
    pub disk_blocks: u64,
    /// Chooses the addresses and data of every commit.
    pub seed: u64,
}

#[derive(Serialize)]
struct WriterJson<'a> {
    dir: &'a str,
    replicated: bool,
    disk_blocks: u64,
    seed: u64,
}

impl WriterSpec {
    /// The benchmarked system whose images these are.
    fn system_name(&self) -> &'static str {
        TxdiskFactory {
            replicated: self.replicated,
        }
        .name()
    }

    fn to_json(&self) -> String {
        crate::report::to_value(&WriterJson {
            dir: &self.dir.to_string_lossy(),
            replicated: self.replicated,
            disk_blocks: self.disk_blocks,
            seed: self.seed,
        })
        .to_string()
    }

    fn from_json(text: &str) -> Option<WriterSpec> {
        let value: Value = serde_json::from_str(text).ok()?;
        Some(WriterSpec {
            dir: PathBuf::from(value.get("dir")?.as_str()?),
            replicated: value.get("replicated")?.as_bool()?,
            disk_blocks: value.get("disk_blocks")?.as_u64().filter(|&n| n > 0)?,
            seed: value.get("seed")?.as_u64()?,
        })
    }
}

/// The address commit `commit` writes.
pub(crate) fn commit_addr(seed: u64, commit: u64, disk_blocks: u64) -> Addr {
    SplitMix64::new(seed ^ commit.wrapping_mul(0x9E37_79B9_7F4A_7C15)).below(disk_blocks)
}

/// The block commit `commit` writes at `addr`: random bytes (nothing to compress) after a stamp
/// of the seed, the commit and the address, which says which commit a block read back is from.
pub(crate) fn commit_block(seed: u64, commit: u64, addr: Addr) -> Block {
    let mut block = Block::zeroed();
    let mut rng = SplitMix64::new(seed.rotate_left(17) ^ commit ^ 0x5EED);
    rng.fill_bytes(block.as_bytes_mut());
    let stamp = [seed, commit, addr];
    for (slot, value) in block.as_bytes_mut()[..STAMP_BYTES]
        .chunks_exact_mut(8)
        .zip(stamp)
    {
        slot.copy_from_slice(&value.to_le_bytes());
    }
    block
}

/// Checks that `found`, read at `addr` after the crash, is what commit `committed` (durable
/// before the kill) wrote there, or what a later commit to the same address wrote: anything
/// else — an older value, zeros, another address's block — voids the run.
pub(crate) fn check_recovered(
    system: &str,
    spec: &WriterSpec,
    committed: u64,
    addr: Addr,
    found: &Block,
) -> Result<()> {
    let stamp = |index: usize| {
        let bytes = &found.as_bytes()[index * 8..index * 8 + 8];
        u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]))
    };
    let commit = stamp(1);
    let later_or_same = stamp(0) == spec.seed
        && commit >= committed
        && stamp(2) == addr
        && commit_addr(spec.seed, commit, spec.disk_blocks) == addr
        && *found == commit_block(spec.seed, commit, addr);
    if later_or_same {
        return Ok(());
    }
    Err(BenchError::WrongData {
        system: system.to_string(),
        addr,
        expected: commit_block(spec.seed, committed, addr).fingerprint(),
        found: found.fingerprint(),
    })
}

/// Runs the writer when this process is one (the program calls it through
/// [`crate::child_entry`]): None in any other process; otherwise the exit code to leave `main`
/// with, which only a failure reaches — a writer's normal end is SIGKILL.
pub(crate) fn writer_entry() -> Option<ExitCode> {
    let text = std::env::var(WRITER_ENV).ok()?;
    let Some(spec) = WriterSpec::from_json(&text) else {
        eprintln!("bench writer: bad {WRITER_ENV}: {text}");
        return Some(ExitCode::FAILURE);
    };
    match write_until_killed(&spec) {
        Ok(()) => Some(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("bench writer: {error}");
            Some(ExitCode::FAILURE)
        }
    }
}

/// Durable one-block commits, each announced on stdout, until the process is killed; ends
/// early (Ok) when stdout is closed — the parent is gone, so nobody will kill this writer.
fn write_until_killed(spec: &WriterSpec) -> Result<()> {
    let name = spec.system_name();
    let (disk, _bottom) = txdisk_system::open_for_writer(name, &spec.dir, spec.replicated)?;
    let mut stdout = std::io::stdout().lock();
    for commit in 0..MAX_WRITER_COMMITS {
        let addr = commit_addr(spec.seed, commit, spec.disk_blocks);
        let mut tx = disk.begin();
        tx.write(addr, &commit_block(spec.seed, commit, addr))
            .map_err(|e| txdisk_system::system_error(name, e))?;
        tx.commit()
            .map_err(|e| txdisk_system::system_error(name, e))?;
        // Written and flushed per line: the parent counts commits as they become durable.
        if writeln!(stdout, "{COMMITTED_MARKER}{commit}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(());
        }
    }
    Err(BenchError::Config(format!(
        "made {MAX_WRITER_COMMITS} commits and was never killed"
    )))
}

/// A child that is killed and reaped however the parent leaves its scope.
struct KillOnDrop(Child);

impl KillOnDrop {
    /// SIGKILL (a no-op error if it is already dead), then its exit status.
    fn kill_and_wait(&mut self) -> std::io::Result<ExitStatus> {
        // An error means it has exited already; `wait` reaps it either way.
        let _ = self.0.kill();
        self.0.wait()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // On an early return: the writer must not outlive the images it writes.
        let _ = self.kill_and_wait();
    }
}

/// Starts a writer on the images `spec` names and kills it with SIGKILL once it has made
/// `commits` durable commits (at least one), while it makes the next. Returns the number of the
/// last commit it announced, durable before the kill. Untimed: no deadline, however slow the
/// device.
pub(crate) fn crash_writer(spec: &WriterSpec, commits: u64) -> Result<u64> {
    if std::env::var_os(WRITER_ENV).is_some() {
        return Err(BenchError::Config(format!(
            "{WRITER_ENV} is set: a writer does not start writers (the program did not call \
             txdisk_bench::child_entry first)"
        )));
    }
    let program =
        std::env::current_exe().map_err(|e| BenchError::io("current_exe", Path::new("."), e))?;
    let child = Command::new(&program)
        .env(WRITER_ENV, spec.to_json())
        // A cell's child starts writers: they must not take themselves for the cell.
        .env_remove(CELL_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| BenchError::io("spawn a writer", &program, e))?;
    let mut child = KillOnDrop(child);
    let stdout =
        child.0.stdout.take().ok_or_else(|| {
            BenchError::Config("the writer's stdout was not captured".to_string())
        })?;
    let target = commits.max(1) - 1;
    let mut last = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| BenchError::io("read the writer's output", &program, e))?;
        let Some(commit) = line
            .strip_prefix(COMMITTED_MARKER)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        last = Some(commit);
        if commit >= target {
            break;
        }
    }
    let status = child
        .kill_and_wait()
        .map_err(|e| BenchError::io("wait for the writer", &program, e))?;
    match last {
        Some(commit) if commit >= target => Ok(commit),
        _ => Err(BenchError::System {
            system: spec.system_name().to_string(),
            message: format!(
                "the writer ended ({status}) after {} of {commits} commits",
                last.map_or(0, |c| c + 1)
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_spec_survives_the_environment() {
        let spec = WriterSpec {
            dir: PathBuf::from("/bench/dir/txdisk-pair/.tmpAbC"),
            replicated: true,
            disk_blocks: 1 << 22,
            seed: u64::MAX - 1,
        };
        assert_eq!(WriterSpec::from_json(&spec.to_json()), Some(spec));
        assert_eq!(WriterSpec::from_json("{}"), None);
        assert_eq!(
            WriterSpec::from_json(
                r#"{"dir": "/d", "replicated": false, "disk_blocks": 0, "seed": 1}"#
            ),
            None,
            "a disk of no blocks"
        );
    }

    #[test]
    fn a_recovered_block_is_the_last_announced_commit_or_a_later_one() {
        let spec = WriterSpec {
            dir: PathBuf::from("/d"),
            replicated: false,
            disk_blocks: 2048,
            seed: 42,
        };
        let addr = commit_addr(spec.seed, 10, spec.disk_blocks);
        assert!(addr < spec.disk_blocks);
        let block = commit_block(spec.seed, 10, addr);
        assert!(check_recovered("txdisk", &spec, 10, addr, &block).is_ok());
        assert!(
            check_recovered("txdisk", &spec, 11, addr, &block).is_err(),
            "older than what was durable"
        );
        assert!(check_recovered("txdisk", &spec, 10, addr, &Block::zeroed()).is_err());
        let elsewhere = (addr + 1) % spec.disk_blocks;
        assert!(
            check_recovered("txdisk", &spec, 10, elsewhere, &block).is_err(),
            "another address's block"
        );
        let mut torn = block.clone();
        torn.as_bytes_mut()[4000] ^= 1;
        assert!(check_recovered("txdisk", &spec, 10, addr, &torn).is_err());
        // A later commit to the same address, whichever it is, is as good.
        let later = (11..100_000)
            .find(|&c| commit_addr(spec.seed, c, spec.disk_blocks) == addr)
            .expect("2048 addresses repeat within 100 000 commits");
        let newer = commit_block(spec.seed, later, addr);
        assert!(check_recovered("txdisk", &spec, 10, addr, &newer).is_ok());
    }
}
