//! What the process costs and where it runs: peak RSS (VmHWM) with its reset, CPU time,
//! context switches, bytes handed to write system calls and got from read ones, and a
//! description of the machine and file system, from /proc and libc (Linux).

use std::path::Path;
use std::time::Duration;

/// Resets the kernel's peak-RSS mark (VmHWM) to the current RSS by writing "5" to
/// /proc/self/clear_refs. False when the kernel or the sandbox does not allow it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Returns freed heap memory to the kernel (glibc keeps it otherwise, and the RSS of a cell
/// would include what earlier cells freed).
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; no pointer is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The process's peak resident set (VmHWM) in bytes, if /proc says.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_kib(&status, "VmHWM:").map(|kib| kib * 1024)
}

/// The value in KiB of a `Key:   123 kB` line of `/proc/<pid>/status` or /proc/meminfo.
pub fn status_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(key))?;
    let mut fields = line[key.len()..].split_whitespace();
    let value = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => Some(value),
        _ => None,
    }
}

/// User plus system CPU time of the whole process (every thread) so far.
pub fn cpu_time() -> Duration {
    let Some(usage) = rusage_self() else {
        return Duration::ZERO;
    };
    let micros = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// Context switches of the whole process (every thread, exited ones included) so far: the
/// voluntary ones (a thread blocked — on a sync, a lock, a condition variable) plus the
/// involuntary ones (a thread preempted), `ru_nvcsw + ru_nivcsw` of getrusage. They show how
/// much of a cell's time its threads spend handing the CPU over rather than working. None if
/// getrusage fails.
pub fn context_switches() -> Option<u64> {
    let usage = rusage_self()?;
    let voluntary = u64::try_from(usage.ru_nvcsw).ok()?;
    let involuntary = u64::try_from(usage.ru_nivcsw).ok()?;
    voluntary.checked_add(involuntary)
}

/// Context switches between two readings of [`context_switches`], with the limits of
/// [`written_between`] (either missing, or the count went backwards: None).
pub fn switches_between(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    written_between(before, after)
}

/// getrusage(RUSAGE_SELF): the resource use of every thread of the process, exited ones
/// included; None if the call fails.
fn rusage_self() -> Option<libc::rusage> {
    // SAFETY: getrusage writes only into the struct we pass; a zeroed rusage is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF is a valid target and `usage` a valid out-pointer.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    (rc == 0).then_some(usage)
}

/// Bytes this process (all its threads, exited ones included) has handed to write system calls
/// so far — `write`, `pwrite`, `pwritev` and the like, on any file — from the `wchar` line of
/// /proc/self/io. The same counter for every system, whatever its I/O path; stores through a
/// memory map are not in it. None where the kernel keeps no task I/O accounting.
pub fn written_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io_counter(&io, "wchar")
}

/// Bytes this process (all its threads, exited ones included) has got from read system calls so
/// far — `read`, `pread`, `preadv` and the like, on any file, from the page cache or the device
/// alike — from the `rchar` line of /proc/self/io: the read counterpart of [`written_bytes`],
/// with the same limits (loads through a memory map are not in it). None where the kernel keeps
/// no task I/O accounting.
pub fn read_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io_counter(&io, "rchar")
}

/// The value of a `key: 123` line of `/proc/<pid>/io` (the whole key: `write_bytes` is not
/// `cancelled_write_bytes`).
pub fn io_counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim() != key {
            return None;
        }
        value.trim().parse().ok()
    })
}

/// The bytes written between two readings of [`written_bytes`] (or read between two readings of
/// [`read_bytes`]): None when either is missing, or when the counter went backwards (two
/// readings of different processes, never one's).
pub fn written_between(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    after?.checked_sub(before?)
}

/// `total` bytes over `ops` operations; None when the total is unknown or there were no
/// operations to divide among.
pub fn bytes_per_op(total: Option<u64>, ops: u64) -> Option<f64> {
    match (total, ops) {
        (_, 0) | (None, _) => None,
        (Some(total), ops) => Some(total as f64 / ops as f64),
    }
}

/// Seconds since the Unix epoch now (0 if the clock is before it).
pub fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `unix_s` as "YYYY-MM-DD HH:MM UTC" ("date unknown" for 0), without a calendar crate: the
/// days-to-civil conversion of the proleptic Gregorian calendar (H. Hinnant's algorithm).
pub fn utc_date_time(unix_s: u64) -> String {
    if unix_s == 0 {
        return "date unknown".to_string();
    }
    let (days, seconds) = ((unix_s / 86_400) as i64, unix_s % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        seconds / 3600,
        seconds % 3600 / 60
    )
}

/// The machine a run happened on, for the report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Machine {
    /// The CPU model as /proc/cpuinfo names it.
    pub cpu_model: String,
    /// Logical CPUs available.
    pub cores: usize,
    /// Physical memory in bytes.
    pub mem_total_bytes: u64,
    /// The kernel release.
    pub kernel: String,
    /// File system type of the bench directory (`ext4`, `xfs`, `tmpfs`, ...).
    pub fs_type: String,
}

impl Machine {
    /// The machine this process runs on, with the file system that `dir` is on.
    pub fn describe(dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split(':').nth(1))
            .map_or_else(|| "unknown".to_string(), |model| model.trim().to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total_bytes: status_kib(&meminfo, "MemTotal:").unwrap_or(0) * 1024,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_string(), |s| s.trim().to_string()),
            fs_type: fs_type(dir),
        }
    }
}

/// The file system type holding `dir`, from statfs's magic number.
pub fn fs_type(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return "unknown".to_string();
    };
    // SAFETY: statfs writes only into the struct we pass; a zeroed statfs is a valid value.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `stats` a valid out-pointer.
    if unsafe { libc::statfs(path.as_ptr(), &mut stats) } != 0 {
        return "unknown".to_string();
    }
    fs_name(stats.f_type as u64).to_string()
}

/// Names of the file-system magic numbers of linux/magic.h that a bench is likely to meet.
pub fn fs_name(magic: u64) -> &'static str {
    match magic {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x0102_1994 => "tmpfs",
        0x8584_58F6 => "ramfs",
        0x794C_7630 => "overlayfs",
        0x6969 => "nfs",
        0x6573_5546 => "fuse",
        _ => "unknown",
    }
}

/// File systems whose "durable" writes never reach a disk: a bench there measures memory.
pub fn is_memory_fs(fs_type: &str) -> bool {
    matches!(fs_type, "tmpfs" | "ramfs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse_in_kib() {
        let status = "Name:\tbench\nVmPeak:\t  3060 kB\nVmHWM:\t    1684 kB\nThreads:\t1\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(1684));
        assert_eq!(status_kib(status, "VmPeak:"), Some(3060));
        assert_eq!(status_kib(status, "VmRSS:"), None);
        assert_eq!(
            status_kib(status, "Threads:"),
            None,
            "a line without kB is not a size"
        );
    }

    #[test]
    fn this_process_has_a_peak_rss_and_cpu_time() {
        let peak = peak_rss_bytes().expect("Linux /proc/self/status has VmHWM");
        assert!(peak > 0);
        let before = cpu_time();
        let mut spin = 0u64;
        for i in 0..20_000_000u64 {
            spin = spin.wrapping_add(i ^ (spin >> 3));
        }
        std::hint::black_box(spin);
        assert!(cpu_time() > before, "CPU time must grow while spinning");
    }

    #[test]
    fn this_process_counts_its_context_switches() {
        let before = context_switches().expect("getrusage works on Linux");
        // Each sleep blocks the thread: at least one voluntary switch apiece.
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let after = context_switches().expect("getrusage works on Linux");
        assert!(
            switches_between(Some(before), Some(after)) >= Some(3),
            "{before} → {after}"
        );
        assert_eq!(
            switches_between(Some(after), Some(before)),
            None,
            "never a wrap"
        );
        assert_eq!(switches_between(None, Some(after)), None);
    }

    #[test]
    fn io_lines_parse_by_their_whole_key() {
        let io = "rchar: 6976\nwchar: 123456789\nsyscr: 10\nsyscw: 3\nread_bytes: 0\n\
                  write_bytes: 4096\ncancelled_write_bytes: 8192\n";
        assert_eq!(io_counter(io, "wchar"), Some(123_456_789));
        assert_eq!(io_counter(io, "rchar"), Some(6976));
        assert_eq!(
            io_counter(io, "write_bytes"),
            Some(4096),
            "not cancelled_write_bytes"
        );
        assert_eq!(io_counter(io, "cancelled_write_bytes"), Some(8192));
        assert_eq!(
            io_counter(io, "char"),
            None,
            "a key is matched whole, not as a suffix"
        );
        assert_eq!(io_counter("", "wchar"), None);
        assert_eq!(io_counter("wchar: lots\n", "wchar"), None, "not a number");
        assert_eq!(io_counter("wchar 12\n", "wchar"), None, "no colon");
        assert_eq!(
            io_counter("wchar:18446744073709551615\n", "wchar"),
            Some(u64::MAX)
        );
    }

    #[test]
    fn bytes_per_op_divides_what_was_written_between_two_readings() {
        assert_eq!(written_between(Some(1000), Some(9192)), Some(8192));
        assert_eq!(written_between(Some(5), Some(5)), Some(0));
        assert_eq!(written_between(Some(10), Some(9)), None, "never a wrap");
        assert_eq!(written_between(None, Some(9)), None);
        assert_eq!(written_between(Some(9), None), None);
        assert_eq!(bytes_per_op(Some(8192 * 10), 10), Some(8192.0));
        assert_eq!(bytes_per_op(Some(3), 2), Some(1.5));
        assert_eq!(bytes_per_op(Some(0), 7), Some(0.0));
        assert_eq!(bytes_per_op(Some(4096), 0), None, "no operations");
        assert_eq!(bytes_per_op(None, 10), None);
    }

    #[test]
    fn this_process_counts_the_bytes_it_writes() {
        let before = written_bytes().expect("Linux /proc/self/io has wchar");
        let scratch = tempfile::tempdir().expect("scratch directory");
        std::fs::write(scratch.path().join("f"), vec![7u8; 10_000]).expect("write");
        let after = written_bytes().expect("Linux /proc/self/io has wchar");
        // At least: other tests of this process may write at the same time.
        assert!(
            written_between(Some(before), Some(after)) >= Some(10_000),
            "{before} → {after}"
        );
    }

    #[test]
    fn this_process_counts_the_bytes_it_reads() {
        let scratch = tempfile::tempdir().expect("scratch directory");
        let path = scratch.path().join("f");
        std::fs::write(&path, vec![7u8; 10_000]).expect("write");
        let before = read_bytes().expect("Linux /proc/self/io has rchar");
        assert_eq!(std::fs::read(&path).expect("read").len(), 10_000);
        let after = read_bytes().expect("Linux /proc/self/io has rchar");
        assert!(
            written_between(Some(before), Some(after)) >= Some(10_000),
            "{before} → {after}"
        );
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc_date_time(0), "date unknown");
        assert_eq!(utc_date_time(86_399), "1970-01-01 23:59 UTC");
        assert_eq!(utc_date_time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_date_time(1_798_487_808), "2026-12-28 19:56 UTC");
    }

    #[test]
    fn memory_file_systems_are_recognised() {
        assert_eq!(fs_name(0x0102_1994), "tmpfs");
        assert!(is_memory_fs("tmpfs"));
        assert!(!is_memory_fs(fs_name(0xEF53)));
    }
}
