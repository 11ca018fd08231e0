//! Exclusive access to an image: a whole-file lock held for the lifetime of a `FileDisk`.
//!
//! Two writers on one image lose acknowledged data (each one's recovery moves the log under the
//! other), and a repair run under a live writer rewrites metadata the writer relies on. So every
//! handle locks its image: a writer exclusively, a read-only inspection shared.
//!
//! The lock is `flock`, which belongs to the open file description, not a POSIX record lock:
//! a record lock belongs to the process and is dropped when *any* descriptor of the file
//! closes, and two handles in one process never conflict — exactly the cases we must catch.
//! A `flock` conflicts between two opens of the file even in one process, and the kernel
//! releases it when the descriptor closes, including when the process dies (no stale lock
//! after a `kill -9`). OFD locks (`F_OFD_SETLK`) behave the same, but `/proc/locks` lists them
//! without a pid; a `flock` is listed with the pid that took it, which the error then names.
//! Block devices opened for writing also get `O_EXCL`, as md and mkfs use it, so a mounted
//! device or one another program holds exclusively is refused by the kernel.

use crate::error::{DiskError, LockMode, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

/// How often, and how far apart, a conflicting lock is tried again before it is refused.
const LOCK_ATTEMPTS: u32 = 10;
const LOCK_RETRY_MS: u64 = 10;

/// Takes `mode` on the whole of `file`; `Locked` if another handle conflicts. A conflict is
/// tried again for up to `LOCK_ATTEMPTS × LOCK_RETRY_MS` (100 ms) before it is refused: a
/// process that forks holds a duplicate of every descriptor until the child's `exec` closes it
/// (they are close-on-exec), and for that instant a handle closed in the parent still holds
/// its lock. A real holder is refused all the same, a tenth of a second later.
pub(crate) fn lock_image(file: &File, path: &str, mode: LockMode) -> Result<()> {
    let operation = match mode {
        LockMode::Exclusive => libc::LOCK_EX,
        LockMode::Shared => libc::LOCK_SH,
    } | libc::LOCK_NB;
    for attempt in 1..=LOCK_ATTEMPTS {
        // SAFETY: the descriptor is open and owned by `file` for the whole call.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(DiskError::Open {
                path: path.to_string(),
                source: error,
            });
        }
        if attempt < LOCK_ATTEMPTS {
            std::thread::sleep(std::time::Duration::from_millis(LOCK_RETRY_MS));
        }
    }
    Err(DiskError::Locked {
        path: path.to_string(),
        wanted: mode,
        holder_pid: lock_holder(file),
    })
}

/// How many times `/proc/locks` is read before the holder is given up as unknown.
const HOLDER_READS: u32 = 3;

/// The pid of a process holding a lock on `file`, from `/proc/locks` (best effort). The file is
/// read again, a little later, when it names no holder: it is generated a page at a time, so a
/// line can be missed while other locks of the system come and go, and a suite under load once
/// saw a refusal whose holder `/proc/locks` did not list.
fn lock_holder(file: &File) -> Option<u32> {
    let metadata = file.metadata().ok()?;
    let (major, minor) = split_dev(metadata.dev());
    let wanted = format!("{major:02x}:{minor:02x}:{}", metadata.ino());
    (0..HOLDER_READS).find_map(|read| {
        if read > 0 {
            std::thread::sleep(std::time::Duration::from_millis(LOCK_RETRY_MS));
        }
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        holder_in(&locks, &wanted)
    })
}

/// Finds the pid of the first lock on `device_inode` ("maj:min:inode") in a `/proc/locks` text.
fn holder_in(locks: &str, device_inode: &str) -> Option<u32> {
    locks.lines().find_map(|line| {
        // "1: OFDLCK ADVISORY  WRITE 2087 fd:01:1234 0 EOF"; blocked waiters start with "->".
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields.iter().position(|field| *field == device_inode)?;
        if fields.get(1) == Some(&"->") {
            return None;
        }
        // An OFD lock shows pid -1, which does not parse: no holder named.
        fields.get(at.checked_sub(1)?)?.parse().ok()
    })
}

/// glibc's `major`/`minor` encoding of a `dev_t`.
fn split_dev(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_name_the_holder() {
        let text = "1: POSIX  ADVISORY  WRITE 11 08:01:77 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 99 fd:01:1234 0 EOF\n\
                    3: OFDLCK ADVISORY  WRITE -1 fd:01:55 0 EOF\n";
        assert_eq!(holder_in(text, "fd:01:1234"), Some(4242));
        assert_eq!(holder_in(text, "08:01:77"), Some(11));
        assert_eq!(holder_in(text, "08:01:78"), None);
        assert_eq!(holder_in(text, "fd:01:55"), None);
    }

    #[test]
    fn device_numbers_split_as_glibc_does() {
        assert_eq!(split_dev(0xfd01), (0xfd, 0x01));
        assert_eq!(split_dev((259 << 8) | 3), (259, 3));
    }
}
