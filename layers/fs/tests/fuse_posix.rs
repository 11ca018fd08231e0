//! POSIX metadata through the FUSE mount, checked against the host's own file system.
//!
//! Every scenario is a function of a root directory and a `remount` cue. Each test runs it
//! twice: first on a fresh temporary directory of the host (ext4 where these tests run), the
//! reference, which proves the scenario's own logic and so must pass; then on a txdisk-fs
//! mount over a `MemStore`, where `remount` unmounts the session (every operation flushed, the
//! invariant checker passing), reopens the file system from the same store and mounts it again
//! at the same mount point. After the mount run the session is unmounted and
//! `check_invariants` must pass whether the scenario passed or not; a failure names the run
//! (reference or mount) it happened in. Where `/dev/fuse` is absent the mount runs are skipped
//! with the reason printed (the reference runs still run).
//!
//! Covered: `cp -a` of a tree holding every kind of file, mode bits, owners, hard links and
//! nanosecond mtimes, compared under lstat after a remount; chmod, chown and utime persisting,
//! ctime moving on chmod; rename replacing an entry, `RENAME_NOREPLACE` and `RENAME_EXCHANGE`
//! (`renameat2`); a directory of 100,000 entries; a listing that goes on while the directory
//! changes; long symlink targets; statfs. Timings are printed, never asserted. Where
//! randomness is used the seed is fixed and named in the failure messages.

#![cfg(feature = "fuse")]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::{c_char, c_int, c_uint, CString, OsStr, OsString};
use std::fmt::Display;
use std::fs::{self, Metadata, OpenOptions, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};
use txdisk_fs::{check_invariants, Fs, FsOptions, FsckReport, MemStore, MkfsOptions};

// Linux errno values, as the kernel returns them to the programs here.
const ENOENT: i32 = 2;
const EEXIST: i32 = 17;
const ENAMETOOLONG: i32 = 36;
const ENOTEMPTY: i32 = 39;

// ---- the two runs -----------------------------------------------------------------------------

/// The store a mount run formats.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    blocks: u64,
    max_tx_blocks: usize,
    inodes: Option<u64>,
}

/// 16 MiB of store, the default inode count.
const SMALL: Geometry = Geometry {
    blocks: 4096,
    max_tx_blocks: 256,
    inodes: None,
};

/// Unmounts the session and joins its thread (the session's type is `fuser`'s, which this
/// test does not name).
type Session = Box<dyn FnOnce() -> io::Result<()>>;

/// A file system on a `MemStore`, mounted at a temporary directory.
struct Mounted {
    // Declared first so that it drops first: a failed test unmounts before its mount point
    // is removed.
    session: Option<Session>,
    dir: tempfile::TempDir,
    store: Arc<MemStore>,
}

impl Mounted {
    fn new(geometry: Geometry) -> Mounted {
        let store = Arc::new(MemStore::new(geometry.blocks, geometry.max_tx_blocks));
        // The functional update keeps this compiling when the options grow fields.
        let options = MkfsOptions {
            inode_count: geometry.inodes,
            ..Default::default()
        };
        let fs = Fs::mkfs(Arc::clone(&store), &options).expect("mkfs");
        let mut mounted = Mounted {
            session: None,
            dir: tempfile::tempdir().expect("mount point"),
            store,
        };
        mounted.mount(fs);
        mounted
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn mount(&mut self, fs: Fs<Arc<MemStore>>) {
        let session =
            txdisk_fs::fuse::spawn_mount(Arc::new(fs), self.dir.path()).expect("mount over FUSE");
        self.session = Some(Box::new(move || session.umount_and_join()));
    }

    /// Unmounts (if mounted): every operation must then be flushed and the image consistent.
    fn unmount(&mut self) -> Result<FsckReport, String> {
        if let Some(unmount) = self.session.take() {
            unmount().map_err(|error| format!("unmount failed: {error}"))?;
        }
        let pending = self.store.pending_commits();
        if pending != 0 {
            return Err(format!(
                "{pending} commits still unflushed after unmounting"
            ));
        }
        check_invariants(&*self.store)
            .map_err(|violation| format!("check_invariants after unmounting: {violation}"))
    }

    /// Unmounts, reopens the file system from the same store and mounts it at the same place.
    fn remount(&mut self) {
        let report = self
            .unmount()
            .unwrap_or_else(|error| panic!("remount: {error}"));
        let fs = Fs::open(Arc::clone(&self.store), FsOptions::default())
            .expect("reopen the file system from its store");
        self.mount(fs);
        eprintln!(
            "  remounted ({} files, {} directories, {} blocks used)",
            report.files, report.directories, report.blocks_used
        );
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else {
        "(a panic without a message)".to_string()
    }
}

fn fs_type(path: &Path) -> String {
    let output = bash(
        "df --output=fstype \"$R\" | tail -n 1",
        &[("R", path.as_os_str())],
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Runs `scenario` on a fresh host directory (it must pass: it is the reference), then on a
/// fresh mount with `geometry`, unmounting and checking the invariants after it.
fn run_both(test: &str, geometry: Geometry, scenario: impl Fn(&Path, &mut dyn FnMut())) {
    let host = tempfile::tempdir().expect("host scratch dir");
    eprintln!(
        "{test}: reference run on the host ({}) at {}",
        fs_type(host.path()),
        host.path().display()
    );
    let started = Instant::now();
    if let Err(payload) =
        panic::catch_unwind(AssertUnwindSafe(|| scenario(host.path(), &mut || {})))
    {
        panic!(
            "{test}: the reference run on the host failed, so the scenario itself is wrong: {} \
             (full message above)",
            panic_text(&*payload).lines().next().unwrap_or_default()
        );
    }
    eprintln!("{test}: reference run passed in {:.2?}", started.elapsed());
    drop(host);

    if !Path::new("/dev/fuse").exists() {
        eprintln!("{test}: mount run skipped: /dev/fuse is absent on this machine");
        return;
    }
    let mut mounted = Mounted::new(geometry);
    let root = mounted.path();
    eprintln!("{test}: run on the txdisk-fs mount at {}", root.display());
    let started = Instant::now();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        scenario(&root, &mut || mounted.remount())
    }));
    let checked = mounted.unmount();
    match (outcome, checked) {
        (Ok(()), Ok(report)) => eprintln!(
            "{test}: mount run passed in {:.2?}; after unmounting the invariants hold ({} files, \
             {} directories)",
            started.elapsed(),
            report.files,
            report.directories
        ),
        (Ok(()), Err(error)) => panic!("{test}: on the txdisk-fs mount: {error}"),
        // The scenario's own panic message is printed above (in full); this names the run.
        (Err(payload), checked) => panic!(
            "{test}: failed on the txdisk-fs mount: {} (full message above)\n(after unmounting: {})",
            panic_text(&*payload).lines().next().unwrap_or_default(),
            match checked {
                Ok(_) => "every operation flushed and the invariants hold".to_string(),
                Err(error) => error,
            }
        ),
    }
}

// ---- helpers ------------------------------------------------------------------------------

/// Runs a bash script (`set -euo pipefail`, `TZ=UTC`, `LC_ALL=C`) with the given variables.
fn bash(script: &str, vars: &[(&str, &OsStr)]) -> Output {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .env("TZ", "UTC")
        .env("LC_ALL", "C");
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().expect("bash runs")
}

/// [`bash`], panicking with the script's output if it fails; returns its stdout.
fn sh(script: &str, vars: &[(&str, &OsStr)]) -> String {
    let output = bash(script, vars);
    assert!(
        output.status.success(),
        "script failed ({}):\n{script}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn lstat(path: &Path) -> Metadata {
    fs::symlink_metadata(path).unwrap_or_else(|error| panic!("lstat {}: {error}", path.display()))
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

fn is_not_found(path: &Path) -> bool {
    matches!(fs::symlink_metadata(path), Err(error) if error.kind() == io::ErrorKind::NotFound)
}

/// The errno of a failed call, or `None` if it succeeded.
fn errno_of<T>(result: io::Result<T>) -> Option<i32> {
    result.err().map(|error| error.raw_os_error().unwrap_or(-1))
}

/// splitmix64: a fixed seed gives the same bytes and picks on every run.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

extern "C" {
    /// glibc's wrapper of `renameat2(2)` (glibc 2.28 and later).
    fn renameat2(
        olddirfd: c_int,
        oldpath: *const c_char,
        newdirfd: c_int,
        newpath: *const c_char,
        flags: c_uint,
    ) -> c_int;
}

const AT_FDCWD: c_int = -100;
const RENAME_NOREPLACE: c_uint = 1;
const RENAME_EXCHANGE: c_uint = 2;

fn rename_with_flags(from: &Path, to: &Path, flags: c_uint) -> io::Result<()> {
    let from = CString::new(from.as_os_str().as_bytes()).expect("path without NUL");
    let to = CString::new(to.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: both paths are NUL-terminated strings that outlive the call, which only reads
    // them; AT_FDCWD makes the directory descriptors unused.
    let result = unsafe { renameat2(AT_FDCWD, from.as_ptr(), AT_FDCWD, to.as_ptr(), flags) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

// ---- 1. cp -a of a tree -------------------------------------------------------------------

/// The seed of the source tree's file contents.
const TREE_SEED: u64 = 0x7478_6469_736b_0001;

/// A source tree with every kind of file, mode, owner, link count and time of interest.
fn build_source_tree(src: &Path) {
    let vars = [("SRC", src.as_os_str())];
    sh(
        "cd \"$SRC\" && mkdir -p a/b/c d/e private sticky empty 'with space'",
        &vars,
    );
    let mut rng = SplitMix(TREE_SEED);
    let files: [(&str, usize); 17] = [
        ("zero", 0),
        ("one", 1),
        ("page", 4096),
        ("big", 70_000),
        ("x", 17),
        ("a/b/c/deep", 4097),
        ("d/e/odd", 12_345),
        ("with space/\u{fc}-name", 100),
        ("m600", 10),
        ("m640", 10),
        ("m755", 10),
        ("m444", 10),
        ("suid", 10),
        ("pair", 5000),
        ("triple", 3),
        ("private/secret", 64),
        ("sticky/shared", 64),
    ];
    for (name, len) in files {
        fs::write(src.join(name), rng.bytes(len))
            .unwrap_or_else(|error| panic!("write {name}: {error}"));
    }
    sh(
        r#"cd "$SRC"
        ln -s ../x a/rel
        ln -s /etc/hostname abs
        ln -s does/not/exist dangling
        ln -s a/b dirlink
        ln pair a/pair-link
        ln triple a/triple-2
        ln triple d/e/triple-3
        chmod 600 m600
        chmod 640 m640
        chmod 755 m755
        chmod 444 m444
        # Owners before modes: chown clears the setuid bit.
        chown 1234:5678 m640 suid big a/b
        chown -h 1234:5678 abs
        chmod 4755 suid
        chmod 700 private
        chmod 1777 sticky
        mkfifo fifo
        mkfifo -m 640 d/fifo2
        touch -d '2009-02-13 23:31:30.123456789' zero
        touch -d '1999-12-31 23:59:59.999999999' a/b/c/deep
        touch -d '1970-01-01 00:00:01.000000001' one
        touch -d '2004-04-04 04:04:04.444444444' pair
        touch -h -d '2001-09-09 01:46:40.5' abs
        touch -h -d '2002-02-02 02:02:02.020202020' dirlink
        touch -h -d '2003-03-03 03:03:03.3' fifo
        # Directories last: adding entries sets their mtime.
        touch -d '2005-05-05 05:05:05.555555555' a/b/c a/b a private sticky empty d/e d 'with space'
        touch -d '2010-01-01 00:00:00.25' ."#,
        &vars,
    );
}

/// Every path under `root` (relative; the root itself is the empty path), under lstat.
fn walk(root: &Path) -> BTreeMap<PathBuf, Metadata> {
    let mut tree = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let metadata = lstat(&path);
        if metadata.is_dir() {
            let entries = fs::read_dir(&path)
                .unwrap_or_else(|error| panic!("read_dir {}: {error}", path.display()));
            for entry in entries {
                let entry =
                    entry.unwrap_or_else(|error| panic!("read_dir {}: {error}", path.display()));
                stack.push(rel.join(entry.file_name()));
            }
        }
        tree.insert(rel, metadata);
    }
    tree
}

fn kind(metadata: &Metadata) -> &'static str {
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        "symlink"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_file() {
        "regular file"
    } else if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "unknown"
    }
}

fn show(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".to_string()
    } else {
        rel.display().to_string()
    }
}

/// A timestamp as seconds and nanoseconds: both are compared.
fn time(seconds: i64, nanoseconds: i64) -> String {
    format!("{seconds}.{nanoseconds:09}")
}

/// Records a difference of one field of one path.
fn field(diffs: &mut Vec<String>, rel: &Path, name: &str, want: impl Display, got: impl Display) {
    let (want, got) = (want.to_string(), got.to_string());
    if want != got {
        diffs.push(format!(
            "{}: {name}: expected {want}, found {got}",
            show(rel)
        ));
    }
}

/// The hard-link classes of the non-directories: the names that share one inode.
fn link_classes(
    tree: &BTreeMap<PathBuf, Metadata>,
    common: &BTreeSet<PathBuf>,
) -> BTreeSet<BTreeSet<PathBuf>> {
    let mut by_inode: HashMap<(u64, u64), BTreeSet<PathBuf>> = HashMap::new();
    for (rel, metadata) in tree {
        if !metadata.is_dir() && common.contains(rel) {
            by_inode
                .entry((metadata.dev(), metadata.ino()))
                .or_default()
                .insert(rel.clone());
        }
    }
    by_inode.into_values().collect()
}

/// Every difference between the trees under lstat: names, file type, mode (type and all 12
/// permission bits), nlink, owner, size (not of directories), mtime to the nanosecond,
/// symlink targets, file bytes, and which names are hard links of each other. Not compared:
/// atime, ctime, directory sizes, st_blocks.
fn compare_trees(expected: &Path, actual: &Path) -> Vec<String> {
    let want = walk(expected);
    let got = walk(actual);
    let mut diffs = Vec::new();
    for rel in want.keys().filter(|rel| !got.contains_key(*rel)) {
        diffs.push(format!("{}: missing", show(rel)));
    }
    for rel in got.keys().filter(|rel| !want.contains_key(*rel)) {
        diffs.push(format!("{}: not in the source", show(rel)));
    }
    let common: BTreeSet<PathBuf> = want
        .keys()
        .filter(|rel| got.contains_key(*rel))
        .cloned()
        .collect();
    for rel in &common {
        let (w, g) = (&want[rel], &got[rel]);
        let d = &mut diffs;
        field(d, rel, "file type", kind(w), kind(g));
        field(
            d,
            rel,
            "mode",
            format_args!("{:07o}", w.mode()),
            format_args!("{:07o}", g.mode()),
        );
        field(d, rel, "nlink", w.nlink(), g.nlink());
        field(d, rel, "uid", w.uid(), g.uid());
        field(d, rel, "gid", w.gid(), g.gid());
        if !w.is_dir() {
            field(d, rel, "size", w.size(), g.size());
        }
        field(
            d,
            rel,
            "mtime",
            time(w.mtime(), w.mtime_nsec()),
            time(g.mtime(), g.mtime_nsec()),
        );
        if w.file_type().is_symlink() && g.file_type().is_symlink() {
            let target = |root: &Path| match fs::read_link(root.join(rel)) {
                Ok(target) => format!("{target:?}"),
                Err(error) => format!("(readlink failed: {error})"),
            };
            field(d, rel, "symlink target", target(expected), target(actual));
        }
        if w.is_file() && g.is_file() {
            let (w_bytes, g_bytes) = (read(&expected.join(rel)), read(&actual.join(rel)));
            if w_bytes != g_bytes {
                let at = w_bytes
                    .iter()
                    .zip(&g_bytes)
                    .position(|(a, b)| a != b)
                    .unwrap_or(w_bytes.len().min(g_bytes.len()));
                d.push(format!(
                    "{}: contents: {} bytes expected, {} found, first difference at byte {at}",
                    show(rel),
                    w_bytes.len(),
                    g_bytes.len()
                ));
            }
        }
    }
    let (want_links, got_links) = (link_classes(&want, &common), link_classes(&got, &common));
    for class in want_links.difference(&got_links) {
        diffs.push(format!(
            "hard links: {class:?} are one inode in the source, not in the copy"
        ));
    }
    for class in got_links.difference(&want_links) {
        diffs.push(format!(
            "hard links: {class:?} are one inode in the copy, not in the source"
        ));
    }
    diffs
}

fn cp_a_scenario(root: &Path, remount: &mut dyn FnMut(), src: &Path) {
    let dst = root.join("dst");
    let copy = bash(
        "cp -a \"$SRC\" \"$DST\"",
        &[("SRC", src.as_os_str()), ("DST", dst.as_os_str())],
    );
    let copy_failure = (!copy.status.success()).then(|| {
        format!(
            "cp -a failed ({}):\n{}",
            copy.status,
            String::from_utf8_lossy(&copy.stderr)
        )
    });
    let before = compare_trees(src, &dst);
    remount();
    let after = compare_trees(src, &dst);
    // What the remount changed, by path and field (the values themselves may differ).
    let key = |diff: &String| diff.split(": expected").next().unwrap_or(diff).to_string();
    let after_keys: BTreeSet<String> = after.iter().map(key).collect();
    let before_keys: BTreeSet<String> = before.iter().map(key).collect();
    let before_note = format!(
        "before the remount: {} differences; only before: {:?}; only after: {:?}",
        before.len(),
        before_keys.difference(&after_keys).collect::<Vec<_>>(),
        after_keys.difference(&before_keys).collect::<Vec<_>>()
    );
    assert!(
        copy_failure.is_none() && after.is_empty(),
        "cp -a of the tree (contents seed {TREE_SEED:#x}): {}\n{} differences after the \
         remount:\n  {}\n({before_note})",
        copy_failure.as_deref().unwrap_or("cp -a succeeded"),
        after.len(),
        after.join("\n  ")
    );
}

#[test]
fn cp_a_tree_is_identical_after_remount() {
    let src = tempfile::tempdir().expect("source dir");
    build_source_tree(src.path());
    run_both(
        "cp_a_tree_is_identical_after_remount",
        SMALL,
        |root, remount| cp_a_scenario(root, remount, src.path()),
    );
}

// ---- 2. chmod, chown, utime ---------------------------------------------------------------

/// What lstat must show for one name.
struct Expected {
    name: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    atime: (i64, i64),
    mtime: (i64, i64),
}

fn attribute_diffs(root: &Path, expected: &[Expected]) -> Vec<String> {
    let mut diffs = Vec::new();
    for want in expected {
        let got = lstat(&root.join(want.name));
        let (d, rel) = (&mut diffs, Path::new(want.name));
        field(
            d,
            rel,
            "mode",
            format_args!("{:07o}", want.mode),
            format_args!("{:07o}", got.mode()),
        );
        field(d, rel, "uid", want.uid, got.uid());
        field(d, rel, "gid", want.gid, got.gid());
        field(
            d,
            rel,
            "atime",
            time(want.atime.0, want.atime.1),
            time(got.atime(), got.atime_nsec()),
        );
        field(
            d,
            rel,
            "mtime",
            time(want.mtime.0, want.mtime.1),
            time(got.mtime(), got.mtime_nsec()),
        );
    }
    diffs
}

fn attributes_scenario(root: &Path, remount: &mut dyn FnMut()) {
    let (f, d) = (root.join("f"), root.join("d"));
    fs::write(&f, b"payload").expect("write f");
    fs::create_dir(&d).expect("mkdir d");
    let mut diffs = Vec::new();
    // chmod must move ctime: the sleep outlasts the coarse clock ext4 stamps with, so the
    // new ctime is strictly later (which implies the ">=" POSIX asks for).
    let before = lstat(&f);
    std::thread::sleep(Duration::from_millis(50));
    fs::set_permissions(&f, Permissions::from_mode(0o640)).expect("chmod 640 f");
    let after = lstat(&f);
    if (after.ctime(), after.ctime_nsec()) <= (before.ctime(), before.ctime_nsec()) {
        diffs.push(format!(
            "f: ctime did not advance on chmod: {} before, {} after (50 ms later)",
            time(before.ctime(), before.ctime_nsec()),
            time(after.ctime(), after.ctime_nsec())
        ));
    }
    sh(
        r#"cd "$R"
        chmod 711 d
        chown 1234:5678 f d
        touch -d 2009-02-13 f
        touch -m -d '2009-02-13 23:31:30.123456789' f
        touch -d '2001-09-09 01:46:40.987654321' d"#,
        &[("R", root.as_os_str())],
    );
    // Nothing below reads f or lists d before the last check, so atime stays as set (ext4's
    // relatime would otherwise move it).
    let expected = [
        Expected {
            name: "f",
            mode: 0o100_640,
            uid: 1234,
            gid: 5678,
            atime: (1_234_483_200, 0),
            mtime: (1_234_567_890, 123_456_789),
        },
        Expected {
            name: "d",
            mode: 0o040_711,
            uid: 1234,
            gid: 5678,
            atime: (1_000_000_000, 987_654_321),
            mtime: (1_000_000_000, 987_654_321),
        },
    ];
    diffs.extend(attribute_diffs(root, &expected));
    assert!(
        diffs.is_empty(),
        "attributes as set, before the remount:\n  {}",
        diffs.join("\n  ")
    );
    remount();
    let diffs = attribute_diffs(root, &expected);
    assert!(
        diffs.is_empty(),
        "attributes after the remount:\n  {}",
        diffs.join("\n  ")
    );
    assert_eq!(read(&f), b"payload", "f's contents after the remount");
}

#[test]
fn chmod_chown_utime_persist_across_remount() {
    run_both(
        "chmod_chown_utime_persist_across_remount",
        SMALL,
        attributes_scenario,
    );
}

// ---- 3. rename ----------------------------------------------------------------------------

fn assert_contents(path: &Path, want: &str) {
    assert_eq!(
        String::from_utf8_lossy(&read(path)),
        want,
        "contents of {}",
        path.display()
    );
}

/// The state after the plain renames.
fn check_plain_renames(root: &Path, when: &str) {
    let p = |name: &str| root.join(name);
    assert_contents(&p("b"), "new");
    assert!(is_not_found(&p("a")), "{when}: a still exists after a -> b");
    assert_contents(&p("c"), "old");
    assert_eq!(lstat(&p("c")).nlink(), 1, "{when}: nlink of c");
    assert_eq!(lstat(&p("b")).nlink(), 1, "{when}: nlink of b");
    assert_ne!(
        lstat(&p("b")).ino(),
        lstat(&p("c")).ino(),
        "{when}: b and c are still one inode"
    );
    assert!(
        is_not_found(&p("d1")),
        "{when}: d1 still exists after d1 -> d2"
    );
    assert_contents(&p("d2/x"), "x");
    assert_contents(&p("d3/y"), "y");
    assert_contents(&p("d4/z"), "z");
    assert!(
        is_not_found(&p("d4/y")),
        "{when}: the failed rename moved d3/y into d4"
    );
}

/// The state after the renameat2 calls.
fn check_flagged_renames(root: &Path, when: &str) {
    let p = |name: &str| root.join(name);
    assert!(
        is_not_found(&p("p")),
        "{when}: p still exists after p -> p2"
    );
    assert_contents(&p("p2"), "Q");
    assert_contents(&p("q"), "P");
    assert!(lstat(&p("r")).is_dir(), "{when}: r is not the directory");
    assert_contents(&p("r/inner"), "I");
    assert!(lstat(&p("s")).is_file(), "{when}: s is not the file");
    assert_contents(&p("s"), "R");
    // Subdirectories of the root: d2, d3, d4 and r (the directory exchanged in).
    assert_eq!(lstat(root).nlink(), 2 + 4, "{when}: nlink of the root");
}

fn rename_scenario(root: &Path, remount: &mut dyn FnMut()) {
    let p = |name: &str| root.join(name);
    let write = |name: &str, contents: &str| {
        fs::write(p(name), contents).unwrap_or_else(|error| panic!("write {name}: {error}"))
    };
    // A file over a file that has another name.
    write("a", "new");
    write("b", "old");
    fs::hard_link(p("b"), p("c")).expect("ln b c");
    assert_eq!(lstat(&p("b")).nlink(), 2, "nlink of b after ln b c");
    fs::rename(p("a"), p("b")).expect("rename a over b");
    // A directory over an empty directory, and over a non-empty one.
    fs::create_dir(p("d1")).expect("mkdir d1");
    write("d1/x", "x");
    fs::create_dir(p("d2")).expect("mkdir d2");
    fs::rename(p("d1"), p("d2")).expect("rename d1 over the empty d2");
    fs::create_dir(p("d3")).expect("mkdir d3");
    write("d3/y", "y");
    fs::create_dir(p("d4")).expect("mkdir d4");
    write("d4/z", "z");
    assert_eq!(
        errno_of(fs::rename(p("d3"), p("d4"))),
        Some(ENOTEMPTY),
        "rename of d3 over the non-empty d4"
    );
    check_plain_renames(root, "before the remount");
    remount();
    check_plain_renames(root, "after the remount");

    write("p", "P");
    write("q", "Q");
    assert_eq!(
        errno_of(rename_with_flags(&p("p"), &p("q"), RENAME_NOREPLACE)),
        Some(EEXIST),
        "RENAME_NOREPLACE of p onto the existing q"
    );
    assert_contents(&p("p"), "P");
    assert_contents(&p("q"), "Q");
    rename_with_flags(&p("p"), &p("p2"), RENAME_NOREPLACE).expect("RENAME_NOREPLACE p -> p2");
    assert_eq!(
        errno_of(rename_with_flags(&p("p2"), &p("nothing"), RENAME_EXCHANGE)),
        Some(ENOENT),
        "RENAME_EXCHANGE with a missing name"
    );
    rename_with_flags(&p("p2"), &p("q"), RENAME_EXCHANGE)
        .expect("RENAME_EXCHANGE of two files p2 and q");
    write("r", "R");
    fs::create_dir(p("s")).expect("mkdir s");
    write("s/inner", "I");
    rename_with_flags(&p("r"), &p("s"), RENAME_EXCHANGE)
        .expect("RENAME_EXCHANGE of the file r and the directory s");
    check_flagged_renames(root, "before the remount");
    remount();
    check_flagged_renames(root, "after the remount");
    check_plain_renames(root, "after the second remount");
}

#[test]
fn rename_replaces_an_entry() {
    run_both("rename_replaces_an_entry", SMALL, rename_scenario);
}

// ---- 4. large directories -----------------------------------------------------------------

const ENTRIES: usize = 100_000;
const LOOKUP_SEED: u64 = 0x7478_6469_736b_0004;

fn entry_name(i: usize) -> String {
    format!("f{i:06}")
}

fn create_empty(path: &Path) {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .unwrap_or_else(|error| panic!("create {}: {error}", path.display()));
}

fn list(dir: &Path) -> Vec<OsString> {
    fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("read_dir {}: {error}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|error| panic!("read_dir {}: {error}", dir.display()))
                .file_name()
        })
        .collect()
}

fn big_directory_scenario(root: &Path, remount: &mut dyn FnMut()) {
    let dir = root.join("big");
    fs::create_dir(&dir).expect("mkdir big");
    let started = Instant::now();
    for i in 0..ENTRIES {
        create_empty(&dir.join(entry_name(i)));
        if (i + 1) % 20_000 == 0 {
            eprintln!("  created {} in {:.2?}", i + 1, started.elapsed());
        }
    }
    eprintln!("  create: {ENTRIES} files in {:.2?}", started.elapsed());
    remount();

    let started = Instant::now();
    let listed = list(&dir);
    eprintln!(
        "  list: {} entries in {:.2?}",
        listed.len(),
        started.elapsed()
    );
    let names: HashSet<&OsString> = listed.iter().collect();
    let missing: Vec<String> = (0..ENTRIES)
        .map(entry_name)
        .filter(|name| !names.contains(&OsString::from(name)))
        .collect();
    assert!(
        listed.len() == ENTRIES && names.len() == ENTRIES && missing.is_empty(),
        "read_dir of {ENTRIES} files: {} entries, {} distinct, {} names missing (first: {:?})",
        listed.len(),
        names.len(),
        missing.len(),
        &missing[..missing.len().min(10)]
    );

    let mut rng = SplitMix(LOOKUP_SEED);
    let started = Instant::now();
    for _ in 0..2000 {
        let name = entry_name(rng.below(ENTRIES));
        match fs::symlink_metadata(dir.join(&name)) {
            Ok(metadata) => assert!(
                metadata.is_file(),
                "lookup of {name} (seed {LOOKUP_SEED:#x}): a {}",
                kind(&metadata)
            ),
            Err(error) => panic!("lookup of {name} (seed {LOOKUP_SEED:#x}): {error}"),
        }
    }
    for _ in 0..100 {
        // Seven digits: never one of the six-digit names.
        let name = entry_name(ENTRIES + rng.below(900_000));
        assert!(
            is_not_found(&dir.join(&name)),
            "lookup of the absent {name} (seed {LOOKUP_SEED:#x}) did not fail with NotFound"
        );
    }
    eprintln!(
        "  lookup: 2000 present and 100 absent names in {:.2?}",
        started.elapsed()
    );

    let started = Instant::now();
    for i in 0..ENTRIES {
        let path = dir.join(entry_name(i));
        fs::remove_file(&path).unwrap_or_else(|error| panic!("unlink {}: {error}", path.display()));
    }
    eprintln!("  unlink: {ENTRIES} files in {:.2?}", started.elapsed());
    let left = list(&dir);
    assert!(
        left.is_empty(),
        "{} entries listed after unlinking them all (first: {:?})",
        left.len(),
        &left[..left.len().min(10)]
    );
    fs::remove_dir(&dir).expect("rmdir of the emptied directory");
}

#[test]
fn hundred_thousand_entry_directory() {
    // 256 MiB of store (a MemStore holds only the blocks written), 150,000 inodes.
    let geometry = Geometry {
        blocks: 64 * 1024,
        max_tx_blocks: 256,
        inodes: Some(150_000),
    };
    run_both(
        "hundred_thousand_entry_directory",
        geometry,
        big_directory_scenario,
    );
}

const CHURN_SEED: u64 = 0x7478_6469_736b_0005;

fn readdir_churn_scenario(root: &Path, remount: &mut dyn FnMut()) {
    let dir = root.join("churn");
    fs::create_dir(&dir).expect("mkdir churn");
    let original: BTreeSet<OsString> = (0..5000)
        .map(|i| OsString::from(format!("e{i:05}")))
        .collect();
    for name in &original {
        create_empty(&dir.join(name));
    }
    remount();

    let mut reader = fs::read_dir(&dir).expect("read_dir churn");
    let mut returned: Vec<OsString> = Vec::new();
    for _ in 0..2500 {
        let entry = reader
            .next()
            .expect("entries left after fewer than 2500")
            .expect("read_dir churn");
        returned.push(entry.file_name());
    }
    let created: BTreeSet<OsString> = (0..1000)
        .map(|i| OsString::from(format!("n{i:05}")))
        .collect();
    for name in &created {
        create_empty(&dir.join(name));
    }
    let seen: HashSet<&OsString> = returned.iter().collect();
    let mut unseen: Vec<&OsString> = original.iter().filter(|n| !seen.contains(n)).collect();
    let mut rng = SplitMix(CHURN_SEED);
    rng.shuffle(&mut unseen);
    let removed: BTreeSet<OsString> = unseen.into_iter().take(1000).cloned().collect();
    for name in &removed {
        fs::remove_file(dir.join(name)).expect("unlink during the listing");
    }
    for entry in reader {
        returned.push(
            entry
                .expect("read_dir churn, after the changes")
                .file_name(),
        );
    }

    let mut counts: HashMap<&OsString, usize> = HashMap::new();
    for name in &returned {
        *counts.entry(name).or_default() += 1;
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    let missing: Vec<_> = original
        .difference(&removed)
        .filter(|name| !counts.contains_key(name))
        .collect();
    let strangers: Vec<_> = counts
        .keys()
        .filter(|name| !original.contains(**name) && !created.contains(**name))
        .collect();
    assert!(
        duplicates.is_empty() && missing.is_empty() && strangers.is_empty(),
        "a listing of 5000 names with 1000 created and 1000 removed after the first 2500 (seed \
         {CHURN_SEED:#x}): {} names returned more than once (first: {:?}), {} names present \
         throughout not returned (first: {:?}), {} names never created (first: {:?})",
        duplicates.len(),
        &duplicates[..duplicates.len().min(5)],
        missing.len(),
        &missing[..missing.len().min(5)],
        strangers.len(),
        &strangers[..strangers.len().min(5)]
    );
    let now: BTreeSet<OsString> = list(&dir).into_iter().collect();
    let want: BTreeSet<OsString> = original
        .difference(&removed)
        .chain(&created)
        .cloned()
        .collect();
    assert!(
        now == want,
        "a fresh listing after the churn (seed {CHURN_SEED:#x}): {} names, expected {}",
        now.len(),
        want.len()
    );
}

#[test]
fn readdir_while_modifying_returns_each_entry_once() {
    // 6,000 names at most: more inodes than the default one per four blocks.
    let geometry = Geometry {
        inodes: Some(8192),
        ..SMALL
    };
    run_both(
        "readdir_while_modifying_returns_each_entry_once",
        geometry,
        readdir_churn_scenario,
    );
}

// ---- 5. symlinks --------------------------------------------------------------------------

fn check_symlinks(root: &Path, targets: &[(&str, &str)], when: &str) {
    for (name, target) in targets {
        let path = root.join(name);
        let metadata = lstat(&path);
        assert!(
            metadata.file_type().is_symlink(),
            "{when}: {name} is a {}",
            kind(&metadata)
        );
        assert_eq!(
            metadata.size(),
            target.len() as u64,
            "{when}: lstat size of {name}"
        );
        let got =
            fs::read_link(&path).unwrap_or_else(|error| panic!("{when}: readlink {name}: {error}"));
        assert!(
            got.as_os_str().as_bytes() == target.as_bytes(),
            "{when}: readlink {name}: {} bytes, expected the {}-byte target",
            got.as_os_str().len(),
            target.len()
        );
    }
}

fn symlink_scenario(root: &Path, remount: &mut dyn FnMut()) {
    let long = "d/".repeat(500);
    let longest = format!("{}y", "x/".repeat(2047));
    assert_eq!((long.len(), longest.len()), (1000, 4095));
    let targets = [("l1000", long.as_str()), ("l4095", longest.as_str())];
    sh(
        "ln -s \"$T1000\" \"$R/l1000\"\nln -s \"$T4095\" \"$R/l4095\"",
        &[
            ("R", root.as_os_str()),
            ("T1000", OsStr::new(&long)),
            ("T4095", OsStr::new(&longest)),
        ],
    );
    check_symlinks(root, &targets, "before the remount");

    let empty = bash("ln -s '' \"$R/empty\"", &[("R", root.as_os_str())]);
    assert!(
        !empty.status.success(),
        "ln -s with an empty target succeeded"
    );
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("", root.join("empty"))),
        Some(ENOENT),
        "symlink(2) with an empty target"
    );
    assert!(
        is_not_found(&root.join("empty")),
        "the empty symlink exists"
    );
    let too_long = "z".repeat(4096);
    assert_eq!(
        errno_of(std::os::unix::fs::symlink(&too_long, root.join("l4096"))),
        Some(ENAMETOOLONG),
        "symlink(2) with a 4096-byte target"
    );

    remount();
    check_symlinks(root, &targets, "after the remount");
}

#[test]
fn symlink_and_readlink() {
    run_both("symlink_and_readlink", SMALL, symlink_scenario);
}

// ---- 6. statfs ----------------------------------------------------------------------------

/// (fundamental block size, block size, free blocks) from `stat -f`.
fn statfs(root: &Path) -> (u64, u64, u64) {
    let out = sh("stat -f -c '%S %s %f' \"$R\"", &[("R", root.as_os_str())]);
    let numbers: Vec<u64> = out
        .split_whitespace()
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| panic!("stat -f printed {out:?}"))
        })
        .collect();
    assert_eq!(numbers.len(), 3, "stat -f printed {out:?}");
    (numbers[0], numbers[1], numbers[2])
}

fn statfs_scenario(root: &Path, remount: &mut dyn FnMut()) {
    // 10 MiB is 2560 blocks; the margin allows for other writers of a shared host disk.
    const MARGIN_BLOCKS: u64 = 2048;
    let vars = [("R", root.as_os_str())];
    sh("df -B 4096 \"$R\" > /dev/null", &vars);
    let (frsize, bsize, free_before) = statfs(root);
    assert_eq!(
        (frsize, bsize),
        (4096, 4096),
        "stat -f block sizes (%S, %s)"
    );
    sh(
        "head -c 10485760 /dev/urandom > \"$R/ten\"\nsync -f \"$R\"",
        &vars,
    );
    let (_, _, free_written) = statfs(root);
    assert!(
        free_written + MARGIN_BLOCKS <= free_before,
        "free blocks after writing 10 MiB: {free_before} before, {free_written} after"
    );
    remount();
    let (_, _, free_remounted) = statfs(root);
    assert!(
        free_remounted + MARGIN_BLOCKS <= free_before,
        "free blocks after the remount: {free_before} before writing, {free_remounted} now"
    );
    sh("rm \"$R/ten\"\nsync -f \"$R\"", &vars);
    let (_, _, free_removed) = statfs(root);
    assert!(
        free_removed >= free_remounted + MARGIN_BLOCKS,
        "free blocks after removing the 10 MiB: {free_remounted} before, {free_removed} after"
    );
}

#[test]
fn statfs_reports_usage() {
    // 64 MiB of store: room for the 10 MiB file.
    let geometry = Geometry {
        blocks: 16 * 1024,
        ..SMALL
    };
    run_both("statfs_reports_usage", geometry, statfs_scenario);
}
