//! Checks with real NBD clients from Debian's packages: qemu-io and qemu-img (qemu-utils),
//! nbdinfo and nbdcopy (libnbd-bin). Each check returns `Skipped` when its program is not
//! installed, `Passed`, or Err with what went wrong. Every external program runs under a
//! time limit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::{ServerProcess, Spawn, SplitMix64, Start};
use crate::client::Client;
use crate::proto;

/// How a check ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The client did everything the check asked and the data came back right.
    Passed,
    /// The client program is missing; the reason says which package brings it.
    Skipped(String),
}

/// A check's result: how it ended, or why it failed.
pub type CheckResult = Result<Outcome, String>;

/// Longest any one client run may take.
const CLIENT_TIME_LIMIT: Duration = Duration::from_secs(120);
const MIB: u64 = 1 << 20;

/// The path of `name` on PATH.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn require(tools: &[&str]) -> Option<Outcome> {
    let missing: Vec<_> = tools.iter().filter(|t| find_tool(t).is_none()).collect();
    (!missing.is_empty()).then(|| {
        Outcome::Skipped(format!(
            "{missing:?} not installed (Debian packages qemu-utils, libnbd-bin)"
        ))
    })
}

/// Runs `cmd` to completion; SIGKILL and Err after `limit`.
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.map_err(|e| format!("{cmd:?}: {e}")),
        Err(_) => {
            let _ = super::send_signal(pid, libc::SIGKILL);
            Err(format!("{cmd:?} did not finish within {limit:?}"))
        }
    }
}

/// Runs `cmd`; Err unless it exits 0. Returns its stdout.
pub fn run_ok(cmd: &mut Command) -> Result<String, String> {
    let out = run_limited(cmd, CLIENT_TIME_LIMIT)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// The `nbd://` URI of `export` on `server`, as qemu and nbdkit's tools take it.
pub fn nbd_uri(server: &ServerProcess, export: &str) -> String {
    format!("nbd://{}/{export}", server.addr())
}

/// Deterministic test content: pseudo-random, with every fifth MiB all zeroes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut data = vec![0u8; len];
    rng.fill(&mut data);
    for chunk in data.chunks_mut(MIB as usize).step_by(5) {
        chunk.fill(0);
    }
    data
}

fn export_size(server: &ServerProcess, export: &str) -> Result<u64, String> {
    Client::info(server.addr(), export)
        .map(|(size, _)| size)
        .map_err(|e| format!("NBD_OPT_INFO: {e}"))
}

fn qemu_io(uri: &str, cmds: &[String]) -> Result<String, String> {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in cmds {
        cmd.args(["-c", c]);
    }
    let out = run_ok(cmd.arg(uri))?;
    if out.contains("Pattern verification failed") || out.contains("failed") {
        return Err(format!("qemu-io reported a failure:\n{out}"));
    }
    Ok(out)
}

/// qemu-io writes patterns at aligned, unaligned, sub-sector and block-straddling offsets
/// (and at the very end of the export), reads each back with pattern verification, checks
/// the bytes around them stay zero, flushes; then the server is killed with SIGKILL and
/// restarted, and every pattern must still be there. Also checks that a wrong pattern is
/// reported, so the verification itself can fail.
pub fn qemu_io_patterns_survive_kill(spawn: &mut Spawn<'_>, export: &str) -> CheckResult {
    if let Some(skip) = require(&["qemu-io"]) {
        return Ok(skip);
    }
    let server = spawn(Start::Fresh {
        min_size_bytes: 4 * MIB,
    })
    .map_err(|e| e.to_string())?;
    let size = export_size(&server, export)?;
    let writes: [(u64, u64, u8); 6] = [
        (0, 65536, 0x11),
        (65536 + 4096, 4096, 0x22),
        (131_071, 2, 0x44),
        (200_001, 3, 0x33),
        (300_000, 123_457, 0x55),
        (size - 513, 513, 0x66),
    ];
    let reads = |writes: &[(u64, u64, u8)]| -> Vec<String> {
        writes
            .iter()
            .map(|(o, l, p)| format!("read -P {p:#x} {o} {l}"))
            .collect()
    };
    let mut cmds: Vec<String> = writes
        .iter()
        .map(|(o, l, p)| format!("write -P {p:#x} {o} {l}"))
        .collect();
    cmds.extend(reads(&writes));
    cmds.extend(["read -P 0 65536 4096", "read -P 0 200004 1000", "flush"].map(String::from));
    let out = qemu_io(&nbd_uri(&server, export), &cmds)?;
    if out.matches("wrote ").count() != writes.len() {
        return Err(format!("not every write was done:\n{out}"));
    }
    server.kill9().map_err(|e| e.to_string())?;
    let server = spawn(Start::Again).map_err(|e| e.to_string())?;
    let uri = nbd_uri(&server, export);
    let out = qemu_io(&uri, &reads(&writes))?;
    if out.matches("read ").count() != writes.len() {
        return Err(format!("not every read was done after the restart:\n{out}"));
    }
    let mut wrong = Command::new("qemu-io");
    wrong.args(["-f", "raw", "-c", "read -P 0x99 0 512", &uri]);
    let out = run_limited(&mut wrong, CLIENT_TIME_LIMIT)?;
    if !String::from_utf8_lossy(&out.stdout).contains("Pattern verification failed") {
        return Err("qemu-io did not notice a wrong pattern".to_string());
    }
    stop(server)?;
    Ok(Outcome::Passed)
}

fn stop(server: ServerProcess) -> Result<(), String> {
    let status = server
        .terminate(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("server exited with {status} after SIGTERM"));
    }
    Ok(())
}

/// Err unless `file` holds `data` followed by zeroes only (exports may be larger than asked).
fn compare_file(file: &Path, data: &[u8], what: &str) -> Result<(), String> {
    let got = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if got.len() < data.len() {
        return Err(format!(
            "{what}: {} bytes, expected at least {}",
            got.len(),
            data.len()
        ));
    }
    if got[..data.len()] != *data {
        let at = got.iter().zip(data).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!("{what}: differs from the source at byte {at}"));
    }
    if got[data.len()..].iter().any(|b| *b != 0) {
        return Err(format!("{what}: non-zero bytes past the copied data"));
    }
    Ok(())
}

/// `qemu-img convert` of a raw image of `size_bytes` into the export and back out into a
/// file, byte-identical; the server must then stop with exit 0 on SIGTERM.
pub fn qemu_img_convert_round_trip(
    spawn: &mut Spawn<'_>,
    export: &str,
    size_bytes: u64,
    work_dir: &Path,
) -> CheckResult {
    if let Some(skip) = require(&["qemu-img"]) {
        return Ok(skip);
    }
    let (src, back) = (
        work_dir.join("convert-src.img"),
        work_dir.join("convert-back.img"),
    );
    let data = pattern(7, size_bytes as usize);
    std::fs::write(&src, &data).map_err(|e| e.to_string())?;
    let server = spawn(Start::Fresh {
        min_size_bytes: size_bytes,
    })
    .map_err(|e| e.to_string())?;
    let uri = nbd_uri(&server, export);
    let raw = ["-f", "raw", "-O", "raw"];
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-n"])
            .args(raw)
            .arg(&src)
            .arg(&uri),
    )?;
    run_ok(
        Command::new("qemu-img")
            .arg("convert")
            .args(raw)
            .arg(&uri)
            .arg(&back),
    )?;
    stop(server)?;
    compare_file(&back, &data, "qemu-img convert out of the export")?;
    Ok(Outcome::Passed)
}

/// `nbdinfo --json` reports the size and flags the server sends, with FLUSH and FUA
/// supported and the export writable; `nbdinfo --list` lists the export.
pub fn nbdinfo_reports_size_and_flags(spawn: &mut Spawn<'_>, export: &str) -> CheckResult {
    if let Some(skip) = require(&["nbdinfo"]) {
        return Ok(skip);
    }
    let server = spawn(Start::Fresh {
        min_size_bytes: 3_000_000,
    })
    .map_err(|e| e.to_string())?;
    let (size, flags) = Client::info(server.addr(), export).map_err(|e| e.to_string())?;
    let out = run_ok(Command::new("nbdinfo").args(["--json", &nbd_uri(&server, export)]))?;
    let field = |name: &str| json_field(&out, name).ok_or(format!("no {name} in {out}"));
    if field("export-size")? != size.to_string() {
        return Err(format!(
            "nbdinfo size {} but the server sent {size}",
            field("export-size")?
        ));
    }
    for (name, bit, required) in [
        ("can_flush", proto::TFLAG_SEND_FLUSH, true),
        ("can_fua", proto::TFLAG_SEND_FUA, true),
        ("can_trim", proto::TFLAG_SEND_TRIM, false),
        ("can_multi_conn", proto::TFLAG_CAN_MULTI_CONN, false),
        ("is_read_only", proto::TFLAG_READ_ONLY, false),
    ] {
        let want = if flags & bit != 0 { "true" } else { "false" };
        let got = field(name)?;
        if got != want || (required && got != "true") {
            return Err(format!("nbdinfo {name} = {got}, flags {flags:#x}"));
        }
    }
    if field("is_read_only")? != "false" {
        return Err("the export is read-only".to_string());
    }
    let list_uri = format!("nbd://{}", server.addr());
    let list = run_ok(Command::new("nbdinfo").args(["--list", "--json", &list_uri]))?;
    if !list.contains(&format!("\"{export}\"")) {
        return Err(format!("nbdinfo --list does not show {export}: {list}"));
    }
    stop(server)?;
    Ok(Outcome::Passed)
}

/// The value of `"name": value` in nbdinfo's JSON (flat fields only), without quotes.
fn json_field(json: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\":");
    let rest = json[json.find(&key)? + key.len()..].trim_start();
    let end = rest.find([',', '\n', '}'])?;
    Some(rest[..end].trim().trim_matches('"').to_string())
}

/// `nbdcopy` of a file of `size_bytes` into the export (several connections at once when
/// the export allows multi-conn) and back out, byte-identical.
pub fn nbdcopy_round_trip(
    spawn: &mut Spawn<'_>,
    export: &str,
    size_bytes: u64,
    work_dir: &Path,
) -> CheckResult {
    if let Some(skip) = require(&["nbdcopy"]) {
        return Ok(skip);
    }
    let (src, back) = (
        work_dir.join("nbdcopy-src.img"),
        work_dir.join("nbdcopy-back.img"),
    );
    let data = pattern(11, size_bytes as usize);
    std::fs::write(&src, &data).map_err(|e| e.to_string())?;
    std::fs::write(&back, b"").map_err(|e| e.to_string())?;
    let server = spawn(Start::Fresh {
        min_size_bytes: size_bytes,
    })
    .map_err(|e| e.to_string())?;
    let uri = nbd_uri(&server, export);
    run_ok(Command::new("nbdcopy").arg(&src).arg(&uri))?;
    run_ok(Command::new("nbdcopy").arg(&uri).arg(&back))?;
    stop(server)?;
    compare_file(&back, &data, "nbdcopy out of the export")?;
    Ok(Outcome::Passed)
}

/// Best (in, out) MiB/s over `runs` rounds of `qemu-img convert` of the raw image `src`
/// into the export at `uri` and back out into `back` (checked equal to `src` each round).
pub fn qemu_img_convert_mib_per_s(
    uri: &str,
    src: &Path,
    back: &Path,
    runs: usize,
) -> Result<(f64, f64), String> {
    let data = std::fs::read(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let size_mib = data.len() as f64 / MIB as f64;
    let raw = ["-f", "raw", "-O", "raw"];
    let (mut best_in, mut best_out) = (0f64, 0f64);
    for _ in 0..runs {
        let start = std::time::Instant::now();
        run_ok(
            Command::new("qemu-img")
                .args(["convert", "-n"])
                .args(raw)
                .arg(src)
                .arg(uri),
        )?;
        let t_in = start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        run_ok(
            Command::new("qemu-img")
                .arg("convert")
                .args(raw)
                .arg(uri)
                .arg(back),
        )?;
        let t_out = start.elapsed().as_secs_f64();
        compare_file(back, &data, uri)?;
        best_in = best_in.max(size_mib / t_in);
        best_out = best_out.max(size_mib / t_out);
    }
    Ok((best_in, best_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_are_found_with_or_without_quotes() {
        let j = "{\n \"export-size\": 3000000,\n \"can_fua\": true,\n \"export-name\": \"disk\"\n}";
        assert_eq!(json_field(j, "export-size").as_deref(), Some("3000000"));
        assert_eq!(json_field(j, "can_fua").as_deref(), Some("true"));
        assert_eq!(json_field(j, "export-name").as_deref(), Some("disk"));
        assert_eq!(json_field(j, "can_zero"), None);
    }
}
