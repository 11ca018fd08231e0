//! Helpers the CLI's end-to-end tests share: a FUSE mount of `txdisk fs mount` brought up and
//! told to stop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `mountpoint` is in `/proc/mounts`.
pub fn is_mounted(mountpoint: &Path) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .contains(mountpoint.to_str().unwrap_or("\0"))
}

/// Starts `txdisk fs mount IMAGE MOUNTPOINT` and waits (30 s at most) until it is mounted.
/// `Err` carries the mount's stderr when it exits or does not come up in time.
pub fn mount(image: &str, mountpoint: &Path) -> Result<Child, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_txdisk"))
        .args(["fs", "mount", image])
        .arg(mountpoint)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| error.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_mounted(mountpoint) {
        let exited = child
            .try_wait()
            .map_err(|error| error.to_string())?
            .is_some();
        if exited || Instant::now() > deadline {
            let _ = child.kill();
            let output = child
                .wait_with_output()
                .map_err(|error| error.to_string())?;
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

/// Whether a mount's failure only says FUSE mounts are not permitted here (a reason to skip).
pub fn not_permitted(stderr: &str) -> bool {
    stderr.contains("Permission denied") || stderr.contains("Operation not permitted")
}

/// Sends SIGTERM to `child` (a graceful stop: unmount, flush, close).
pub fn terminate(child: &Child) {
    // SAFETY: `kill` takes a pid and a signal number and touches no memory of ours.
    unsafe { kill(child.id() as i32, 15) };
}

extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}
