//! The FUA crash workload: SIGKILL at random moments, then check what survived.

use std::thread;
use std::time::Duration;

use super::{send_signal, ServerProcess, Spawn, SplitMix64, Start};
use crate::client::Client;

/// Parameters of [`fua_crash_rounds`].
#[derive(Debug, Clone)]
pub struct CrashOptions {
    /// Seeds the writes and the kill times.
    pub seed: u64,
    /// Kill-and-restart rounds to run.
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
    /// The export to connect to.
    pub export: String,
}

/// What the rounds saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Writes acknowledged before their round's kill, all of which must have survived.
    pub acked_writes: u64,
    /// Rounds where a write was in flight at the kill, and how they resolved.
    pub interrupted: u64,
    /// Interrupted writes found fully applied after the restart.
    pub interrupted_applied: u64,
    /// Interrupted writes found not applied at all.
    pub interrupted_lost: u64,
    /// Interrupted writes found partly applied (allowed only without `atomic_writes`).
    pub interrupted_torn: u64,
}

/// Runs `opts.rounds` rounds of: start the server (`spawn`), check the export holds exactly
/// what every acknowledged FUA write put there, write with FUA until the server is killed
/// with SIGKILL at a random moment. A final start checks the last round. Every write is
/// FUA, so an acknowledged one must survive; the one in flight at the kill may land or not.
/// The first start asks for a fresh image, the others for the same one again.
/// Err describes the first violation, with the seed to replay.
pub fn fua_crash_rounds(spawn: &mut Spawn<'_>, opts: &CrashOptions) -> Result<CrashReport, String> {
    let mut rng = SplitMix64::new(opts.seed);
    let mut shadow = vec![0u8; opts.region_bytes as usize];
    let mut pending: Option<(u64, Vec<u8>)> = None;
    let mut report = CrashReport::default();
    let fail = |round: usize, what: String| format!("seed {} round {round}: {what}", opts.seed);
    for round in 0..=opts.rounds {
        let start = if round == 0 {
            Start::Fresh {
                min_size_bytes: u64::from(opts.region_bytes),
            }
        } else {
            Start::Again
        };
        let server: ServerProcess = spawn(start).map_err(|e| fail(round, format!("spawn: {e}")))?;
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
