//! The txdisk file system through a real FUSE mount, beside ext4 on the same machine.
//!
//! One run formats a txdisk image (a file on the ext4 file system under `--dir`), makes a file
//! system on it with `Fs::mkfs`, mounts it over FUSE, and times the same metadata-heavy
//! workloads against a fresh directory on that ext4 file system and a fresh directory in the
//! mount, interleaved: each workload runs on one target and then on the other, and which target
//! goes first alternates from round to round. Per round, in this order:
//!
//! 1. `create`: create `--files` empty files in one directory (`O_CREAT|O_EXCL`, then close);
//! 2. `stat`: 2,000 `lstat` calls on names from step 1, picked by a fixed-seed generator;
//! 3. `untar`: `tar -xf` of a generated source-like tree (`--tree-files` files in nested
//!    directories, mostly 200 bytes to 24 KiB, a few up to 1 MiB), tarred once per run;
//! 4. `rm-r`: `rm -r` of the extracted tree.
//!
//! Nothing is synced or dropped between workloads (one `sync` after the setup, before the first
//! measurement): ext4 runs on the page cache as mounted, the txdisk file system commits each
//! operation with `commit_nosync`. The first step's files are
//! removed between rounds (not timed). The result is a Markdown table of medians over the
//! rounds with the ratio txdisk ÷ ext4 (`--json`: the same, and every sample, as JSON).
//!
//! Needs root and `/dev/fuse`, and `tar` and `rm` on the PATH. Run it with
//!
//! ```text
//! cargo run --release -p txdisk-cli --example fs_vs_ext4 -- --rounds 3
//! ```
//!
//! and `--files 2000 --tree-files 500 --rounds 1` for a quick run. An error unmounts and
//! removes the scratch directory; a killed run leaves its mount (`umount` it) and directory.

use clap::Parser;
use serde::Serialize;
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;
use txdisk_fs::{Fs, LogicalStore, MkfsOptions};

/// The statfs magic of ext2, ext3 and ext4.
const EXT4_SUPER_MAGIC: i64 = 0xEF53;
/// Random `lstat` calls in the stat workload.
const STAT_CALLS: usize = 2_000;
/// Files per directory of the generated tree, on average (5,000 files: 50 directories).
const FILES_PER_TREE_DIR: u64 = 100;
/// File sizes of the generated tree: most between these two ...
const SMALL_FILE_BYTES: (u64, u64) = (200, 24 << 10);
/// ... and one in `LARGE_FILE_ONE_IN` between these two.
const LARGE_FILE_BYTES: (u64, u64) = (24 << 10, 1 << 20);
const LARGE_FILE_ONE_IN: u64 = 40;
const BLOCK_BYTES: u64 = txdisk::BLOCK_SIZE as u64;

#[derive(Parser, Debug)]
#[command(
    name = "fs_vs_ext4",
    about = "The txdisk file system over FUSE beside ext4: create, stat, untar, rm -r"
)]
struct Args {
    /// Rounds; the table shows the median of each workload over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Empty files the create workload makes in one directory.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    files: u64,
    /// Files in the generated tree that the untar and rm -r workloads extract and remove.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    tree_files: u64,
    /// An ext4 directory: the scratch directory (ext4 target, txdisk image, mount point, tar)
    /// is made in it and removed at the end. Default: the system's temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Size of the txdisk image, in MiB.
    #[arg(long, default_value_t = 2048)]
    image_mib: u64,
    /// Size of its log, in MiB (64: the journal mke2fs gives ext4 of 2 GiB).
    #[arg(long, default_value_t = 64)]
    log_mib: u64,
    /// Seed of the generated tree and of the stat workload's picks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the results as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
}

/// Why the run stopped: printed by `main`'s `Err` as the message itself.
struct Failure(String);

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure(message)
    }
}

type Result<T, E = String> = std::result::Result<T, E>;

fn main() -> Result<(), Failure> {
    let args = Args::parse();
    run(&args).map_err(|message| Failure(format!("fs_vs_ext4: {message}")))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Ext4,
    Txdisk,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Ext4 => "ext4",
            Target::Txdisk => "txdisk",
        }
    }
}

/// The workloads, in the order each round runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Create,
    Stat,
    Untar,
    RmR,
}

const WORKLOADS: [Workload; 4] = [
    Workload::Create,
    Workload::Stat,
    Workload::Untar,
    Workload::RmR,
];

fn run(args: &Args) -> Result<()> {
    let blocks_per_mib = (1 << 20) / BLOCK_BYTES;
    let image_blocks = args
        .image_mib
        .checked_mul(blocks_per_mib)
        .ok_or_else(|| format!("--image-mib {} is too large", args.image_mib))?;
    let log_blocks = args
        .log_mib
        .checked_mul(blocks_per_mib)
        .ok_or_else(|| format!("--log-mib {} is too large", args.log_mib))?;
    check_privileges()?;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };
    let host = Host::probe(&dir)?;
    if host.fs_magic != EXT4_SUPER_MAGIC {
        eprintln!(
            "warning: {} is on {} (statfs magic {:#x}), not ext4: the comparison is against that",
            dir.display(),
            host.fs_type,
            host.fs_magic
        );
    }
    let command_line = command_line();
    if !args.json {
        print_header(&command_line, &host, args);
    }

    let scratch = tempfile::Builder::new()
        .prefix("fs_vs_ext4-")
        .tempdir_in(&dir)
        .map_err(|e| format!("making a scratch directory in {}: {e}", dir.display()))?;
    let root = scratch.path();
    progress(format_args!("scratch directory {}", root.display()));

    progress(format_args!(
        "generating a tree of {} files and tarring it",
        args.tree_files
    ));
    let tree = generate_tree(&root.join("source"), args.tree_files, args.seed)?;
    let tar = root.join("tree.tar");
    run_program(
        Command::new("tar")
            .arg("-C")
            .arg(root.join("source"))
            .arg("-cf")
            .arg(&tar)
            .arg(TREE_NAME),
    )?;

    let ext4_root = root.join("ext4");
    let mount_point = root.join("mnt");
    for made in [&ext4_root, &mount_point] {
        fs::create_dir(made).map_err(|e| format!("{}: {e}", made.display()))?;
    }
    let image = root.join("image");
    // As many inodes as one round keeps at once, and room to spare.
    let inode_count = args.files + tree.files + tree.dirs + 1024;
    progress(format_args!(
        "formatting {} ({} blocks, log of {log_blocks}), mkfs with {inode_count} inodes, mounting at {}",
        image.display(),
        image_blocks,
        mount_point.display()
    ));
    let fs = make_fs(&image, image_blocks, log_blocks, inode_count)?;
    same_file_system(&image, &ext4_root)?;
    let session = txdisk_fs::fuse::spawn_mount(Arc::clone(&fs), &mount_point)
        .map_err(|e| format!("mounting at {}: {e}", mount_point.display()))?;
    let mount = Mounted::new(session, |session| session.umount_and_join());
    // One flush of the setup's writes (the tree, the tar, the new image) before the first
    // measurement, so that writeback of the setup does not land in it; none after that.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };

    let mut samples = Samples::default();
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [Target::Ext4, Target::Txdisk]
        } else {
            [Target::Txdisk, Target::Ext4]
        };
        let mut rounds: Vec<Round> = Vec::new();
        for target in order {
            let base = match target {
                Target::Ext4 => &ext4_root,
                Target::Txdisk => &mount_point,
            };
            rounds.push(Round::new(
                target,
                base.join(format!("round{}", round + 1)),
                args.files,
            )?);
        }
        let picks = stat_picks(args.files, args.seed ^ (round + 1));
        for workload in WORKLOADS {
            for round_dir in &rounds {
                let ms = round_dir.time(workload, &picks, &tar, &tree)?;
                progress(format_args!(
                    "round {}/{}  {:<12} {:<7} {ms:>10.1} ms",
                    round + 1,
                    args.rounds,
                    label(workload, args, &tree),
                    round_dir.target.name()
                ));
                samples.push(workload, round_dir.target, ms);
            }
        }
        if round + 1 < args.rounds {
            progress(format_args!("removing round {}'s files", round + 1));
            for round_dir in &rounds {
                round_dir.remove()?;
            }
        }
    }

    progress(format_args!("unmounting"));
    mount
        .unmount()
        .map_err(|e| format!("unmounting {}: {e}", mount_point.display()))?;
    let fs = Arc::try_unwrap(fs)
        .map_err(|_| "the file system is still in use after unmounting".to_string())?;
    fs.fsync()
        .map_err(|e| format!("flushing the file system: {e}"))?;
    fs.into_store()
        .0
        .close()
        .map_err(|e| format!("closing {}: {e}", image.display()))?;
    let scratch_path = root.to_path_buf();
    scratch
        .close()
        .map_err(|e| format!("removing {}: {e}", scratch_path.display()))?;

    let rows: Vec<Row> = WORKLOADS
        .iter()
        .map(|&workload| Row::new(workload, args, &tree, &samples))
        .collect();
    if args.json {
        let report = Report {
            command: &command_line,
            host: &host,
            rounds: args.rounds,
            files: args.files,
            stat_calls: STAT_CALLS as u64,
            tree: &tree,
            image_bytes: image_blocks * BLOCK_BYTES,
            log_bytes: log_blocks * BLOCK_BYTES,
            inode_count,
            workloads: &rows,
        };
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| format!("writing the JSON report: {e}"))?;
        println!("{text}");
    } else {
        print_table(&rows, &tree);
    }
    Ok(())
}

/// FUSE needs root here (the mount is made with mount(2), not a setuid helper) and the device.
fn check_privileges() -> Result<()> {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!(
            "must run as root (effective uid is {euid}): the FUSE mount is made with mount(2)"
        ));
    }
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map(drop)
        .map_err(|e| {
            format!(
                "cannot open /dev/fuse ({e}): load the fuse module (modprobe fuse), or give a \
                 container the device (--device /dev/fuse)"
            )
        })
}

/// Formats the image as `txdisk format` does, opens the stack and makes the file system.
fn make_fs(
    image: &Path,
    size_blocks: u64,
    log_blocks: u64,
    inode_count: u64,
) -> Result<Arc<Fs<LogicalStore<txdisk::Stack>>>> {
    let images = [image];
    txdisk::format(
        &images,
        &txdisk::FormatOptions {
            size_blocks,
            log_blocks,
        },
    )
    .map_err(|e| format!("format {}: {e}", image.display()))?;
    let stack = txdisk::open(&images, txdisk::OpenOptions::default())
        .map_err(|e| format!("open {}: {e}", image.display()))?;
    // Only the inode count is chosen: the defaults of any option added later still apply.
    let options = MkfsOptions {
        inode_count: Some(inode_count),
        ..Default::default()
    };
    let fs = Fs::mkfs(LogicalStore(stack), &options)
        .map_err(|e| format!("mkfs on {}: {e}", image.display()))?;
    Ok(Arc::new(fs))
}

/// The image and the ext4 target must share a file system, or the comparison is not like for
/// like.
fn same_file_system(image: &Path, ext4: &Path) -> Result<()> {
    let device = |path: &Path| {
        fs::metadata(path)
            .map(|m| m.dev())
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    if device(image)? != device(ext4)? {
        return Err(format!(
            "{} and {} are on different file systems",
            image.display(),
            ext4.display()
        ));
    }
    Ok(())
}

/// A mounted file system, unmounted on drop too: an error never leaves a mount behind, nor lets
/// the scratch directory's removal walk into it.
struct Mounted<T, F: FnOnce(T) -> io::Result<()>> {
    session: Option<(T, F)>,
}

impl<T, F: FnOnce(T) -> io::Result<()>> Mounted<T, F> {
    fn new(session: T, unmount: F) -> Mounted<T, F> {
        Mounted {
            session: Some((session, unmount)),
        }
    }

    fn unmount(mut self) -> io::Result<()> {
        match self.session.take() {
            Some((session, unmount)) => unmount(session),
            None => Ok(()),
        }
    }
}

impl<T, F: FnOnce(T) -> io::Result<()>> Drop for Mounted<T, F> {
    fn drop(&mut self) {
        if let Some((session, unmount)) = self.session.take() {
            if let Err(e) = unmount(session) {
                eprintln!("fs_vs_ext4: unmounting after an error: {e}");
            }
        }
    }
}

/// One round's directory on one target, and the paths of the create workload's files in it.
struct Round {
    target: Target,
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Round {
    /// Makes the round's directories (not timed) and names the files.
    fn new(target: Target, dir: PathBuf, count: u64) -> Result<Round> {
        let files_dir = dir.join("files");
        for made in [&dir, &files_dir] {
            fs::create_dir(made).map_err(|e| format!("{}: {e}", made.display()))?;
        }
        let files = (0..count)
            .map(|i| files_dir.join(format!("f{i:06}")))
            .collect();
        Ok(Round { target, dir, files })
    }

    /// Removes the round's directories and the files the create workload made (not timed; the
    /// tree is gone already). By name, not by reading the directory: unlinking while reading
    /// a large directory of the txdisk mount skips entries.
    fn remove(&self) -> Result<()> {
        for path in &self.files {
            fs::remove_file(path).map_err(|e| format!("cleaning up {}: {e}", path.display()))?;
        }
        for dir in [self.dir.join("files"), self.dir.clone()] {
            fs::remove_dir(&dir).map_err(|e| format!("cleaning up {}: {e}", dir.display()))?;
        }
        Ok(())
    }

    /// Runs `workload` on this round's directory; its wall-clock time in milliseconds.
    fn time(&self, workload: Workload, picks: &[usize], tar: &Path, tree: &Tree) -> Result<f64> {
        let extracted = self.dir.join(TREE_NAME);
        let start = Instant::now();
        match workload {
            Workload::Create => {
                for path in &self.files {
                    fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(path)
                        .map_err(|e| format!("create {}: {e}", path.display()))?;
                }
            }
            Workload::Stat => {
                for &pick in picks {
                    let path = &self.files[pick];
                    let metadata = fs::symlink_metadata(path)
                        .map_err(|e| format!("lstat {}: {e}", path.display()))?;
                    if !metadata.is_file() {
                        return Err(format!("{} is not a regular file", path.display()));
                    }
                }
            }
            Workload::Untar => run_program(
                Command::new("tar")
                    .arg("-C")
                    .arg(&self.dir)
                    .arg("-xf")
                    .arg(tar),
            )?,
            Workload::RmR => run_program(Command::new("rm").arg("-r").arg(&extracted))?,
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        // One cheap check, not timed, that the workload did what it says.
        match workload {
            Workload::Untar => {
                let (relative, size) = &tree.sample;
                let path = self.dir.join(relative);
                let found = fs::symlink_metadata(&path)
                    .map_err(|e| format!("after untar: {}: {e}", path.display()))?
                    .len();
                if found != *size {
                    return Err(format!(
                        "after untar: {} has {found} bytes, not {size}",
                        path.display()
                    ));
                }
            }
            Workload::RmR => {
                if fs::symlink_metadata(&extracted).is_ok() {
                    return Err(format!(
                        "{} is still there after rm -r",
                        extracted.display()
                    ));
                }
            }
            Workload::Create | Workload::Stat => {}
        }
        Ok(ms)
    }
}

/// Runs a program to completion; its stderr in the error if it fails.
fn run_program(command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let head: Vec<&str> = stderr.lines().take(10).collect();
    Err(format!(
        "{command:?} failed ({}): {}",
        output.status,
        head.join(" / ")
    ))
}

/// The stat workload's picks: indices into the create workload's files.
fn stat_picks(files: u64, seed: u64) -> Vec<usize> {
    let mut rng = XorShift::new(seed);
    (0..STAT_CALLS).map(|_| rng.below(files) as usize).collect()
}

/// The name of the generated tree's top directory, in the tar and in each target.
const TREE_NAME: &str = "tree";

/// The generated source-like tree.
#[derive(Serialize)]
struct Tree {
    files: u64,
    /// Directories, the top one included.
    dirs: u64,
    bytes: u64,
    largest_bytes: u64,
    /// One file (its path under the extraction directory) and its size, checked after untar.
    #[serde(skip)]
    sample: (PathBuf, u64),
}

/// Writes a deterministic tree of `files` files under `parent/tree`: one directory per
/// `FILES_PER_TREE_DIR` files, nested (each below a random earlier one), files spread over
/// them at random with text contents and source-like sizes.
fn generate_tree(parent: &Path, files: u64, seed: u64) -> Result<Tree> {
    const DIR_NAMES: [&str; 12] = [
        "src", "lib", "core", "util", "net", "io", "fs", "mm", "drivers", "include", "tests",
        "arch",
    ];
    const STEMS: [&str; 10] = [
        "main", "mod", "util", "parse", "alloc", "buffer", "config", "error", "table", "queue",
    ];
    const EXTENSIONS: [&str; 6] = ["rs", "c", "h", "txt", "md", "toml"];
    let mut rng = XorShift::new(seed);
    let dir_count = (files / FILES_PER_TREE_DIR).max(1);
    let mut dirs = vec![PathBuf::from(TREE_NAME)];
    for i in 1..dir_count {
        let parent_dir = &dirs[rng.below(i) as usize];
        let name = format!(
            "{}{i}",
            DIR_NAMES[rng.below(DIR_NAMES.len() as u64) as usize]
        );
        dirs.push(parent_dir.join(name));
    }
    for dir in &dirs {
        let path = parent.join(dir);
        fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut tree = Tree {
        files,
        dirs: dir_count,
        bytes: 0,
        largest_bytes: 0,
        sample: (PathBuf::new(), 0),
    };
    for j in 0..files {
        let dir = &dirs[rng.below(dir_count) as usize];
        let name = format!(
            "{}_{j:05}.{}",
            STEMS[rng.below(STEMS.len() as u64) as usize],
            EXTENSIONS[rng.below(EXTENSIONS.len() as u64) as usize]
        );
        let (lo, hi) = if rng.below(LARGE_FILE_ONE_IN) == 0 {
            LARGE_FILE_BYTES
        } else {
            SMALL_FILE_BYTES
        };
        let size = rng.log_uniform(lo, hi);
        let relative = dir.join(name);
        let path = parent.join(&relative);
        fs::write(&path, source_text(&mut rng, size as usize))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        tree.bytes += size;
        if size > tree.largest_bytes {
            tree.largest_bytes = size;
            tree.sample = (relative, size);
        }
    }
    Ok(tree)
}

/// `len` bytes of printable text in lines of 20 to 99 characters.
fn source_text(rng: &mut XorShift, len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789 _(){};=+-*/<>,.:";
    let mut text = Vec::with_capacity(len);
    let mut line_left = 20 + rng.below(80);
    while text.len() < len {
        if line_left == 0 {
            text.push(b'\n');
            line_left = 20 + rng.below(80);
        } else {
            text.push(ALPHABET[rng.below(ALPHABET.len() as u64) as usize]);
            line_left -= 1;
        }
    }
    text
}

/// xorshift64*: a small deterministic generator (the same sequence on every machine).
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // splitmix64's finaliser spreads small seeds; the state must not be zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is negligible for the small n used here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// In `lo..=hi`, uniform over the powers of two between them and then within one, so
    /// small sizes are as common as in a source tree; integers only, so the same everywhere.
    fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let (lo_bit, hi_bit) = (lo.ilog2(), hi.ilog2());
        let bit = lo_bit + self.below(u64::from(hi_bit - lo_bit + 1)) as u32;
        let start = (1u64 << bit).max(lo);
        let end = (1u64 << (bit + 1)).min(hi + 1);
        start + self.below(end - start)
    }
}

/// Each sample in milliseconds, by workload and target.
#[derive(Default)]
struct Samples {
    ms: [[Vec<f64>; 2]; 4],
}

impl Samples {
    fn push(&mut self, workload: Workload, target: Target, ms: f64) {
        self.ms[workload as usize][target as usize].push(ms);
    }

    fn get(&self, workload: Workload, target: Target) -> &[f64] {
        &self.ms[workload as usize][target as usize]
    }
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `20000` as `20k`, other counts as they are.
fn count_label(n: u64) -> String {
    if n >= 1000 && n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn label(workload: Workload, args: &Args, tree: &Tree) -> String {
    match workload {
        Workload::Create => format!("create-{}", count_label(args.files)),
        Workload::Stat => format!("stat-{}", count_label(STAT_CALLS as u64)),
        Workload::Untar => format!("untar-{}", count_label(tree.files)),
        Workload::RmR => "rm-r".to_string(),
    }
}

/// One workload's results: a row of the table, an element of the JSON report's `workloads`.
#[derive(Serialize)]
struct Row {
    workload: String,
    /// Operations the per-op times divide by.
    ops: u64,
    /// What one operation is.
    op: &'static str,
    ext4_ms: Vec<f64>,
    txdisk_ms: Vec<f64>,
    ext4_median_ms: f64,
    txdisk_median_ms: f64,
    /// txdisk ÷ ext4, of the medians.
    ratio: f64,
    ext4_per_op_us: f64,
    txdisk_per_op_us: f64,
}

impl Row {
    fn new(workload: Workload, args: &Args, tree: &Tree, samples: &Samples) -> Row {
        let (ops, op) = match workload {
            Workload::Create => (args.files, "create+close of an empty file"),
            Workload::Stat => (STAT_CALLS as u64, "lstat"),
            Workload::Untar => (tree.files + tree.dirs, "file or directory extracted"),
            Workload::RmR => (tree.files + tree.dirs, "file or directory removed"),
        };
        let ext4 = median(samples.get(workload, Target::Ext4));
        let txdisk = median(samples.get(workload, Target::Txdisk));
        // Microseconds are the clock's useful resolution here: the report keeps three decimals
        // of a millisecond (and of a microsecond per op), the ratio four.
        let round = |value: f64, decimals: i32| {
            let scale = 10f64.powi(decimals);
            (value * scale).round() / scale
        };
        let all = |target| -> Vec<f64> {
            samples
                .get(workload, target)
                .iter()
                .map(|&ms| round(ms, 3))
                .collect()
        };
        Row {
            workload: label(workload, args, tree),
            ops,
            op,
            ext4_ms: all(Target::Ext4),
            txdisk_ms: all(Target::Txdisk),
            ext4_median_ms: round(ext4, 3),
            txdisk_median_ms: round(txdisk, 3),
            ratio: round(txdisk / ext4, 4),
            ext4_per_op_us: round(ext4 * 1e3 / ops as f64, 3),
            txdisk_per_op_us: round(txdisk * 1e3 / ops as f64, 3),
        }
    }
}

/// The `--json` report.
#[derive(Serialize)]
struct Report<'a> {
    command: &'a str,
    host: &'a Host,
    rounds: u64,
    files: u64,
    stat_calls: u64,
    tree: &'a Tree,
    image_bytes: u64,
    log_bytes: u64,
    inode_count: u64,
    workloads: &'a [Row],
}

fn print_table(rows: &[Row], tree: &Tree) {
    let header = [
        "workload",
        "ext4 median (ms)",
        "txdisk median (ms)",
        "ratio txdisk ÷ ext4",
        "per-op µs (txdisk)",
    ];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|row| {
            [
                row.workload.clone(),
                format!("{:.1}", row.ext4_median_ms),
                format!("{:.1}", row.txdisk_median_ms),
                format!("{:.2}", row.ratio),
                format!("{:.1}", row.txdisk_per_op_us),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                let pad = " ".repeat(width - cell.chars().count());
                if i == 0 {
                    format!("{cell}{pad}")
                } else {
                    format!("{pad}{cell}")
                }
            })
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    println!();
    line(&header.map(String::from));
    // The workload column left-aligned, the numbers right-aligned.
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, &width)| {
            if i == 0 {
                "-".repeat(width + 2)
            } else {
                format!("{}:", "-".repeat(width + 1))
            }
        })
        .collect();
    println!("|{}|", rule.join("|"));
    for row in &cells {
        line(row);
    }
    println!();
    println!(
        "tree: {} files in {} directories, {:.1} MiB, largest file {} KiB",
        tree.files,
        tree.dirs,
        tree.bytes as f64 / f64::from(1 << 20),
        tree.largest_bytes >> 10
    );
    println!("per op:");
    for row in rows {
        println!("  {}: {} × {}", row.workload, row.ops, row.op);
    }
    println!("samples (ms, round by round):");
    for row in rows {
        let show = |samples: &[f64]| {
            samples
                .iter()
                .map(|ms| format!("{ms:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  {}: ext4 [{}]  txdisk [{}]",
            row.workload,
            show(&row.ext4_ms),
            show(&row.txdisk_ms)
        );
    }
}

/// The machine and the file system the comparison runs on.
#[derive(Serialize)]
struct Host {
    cores: usize,
    cpu: String,
    memory_mib: u64,
    kernel: String,
    /// /proc/loadavg's 1, 5 and 15 minute load averages when the run started: other work on
    /// the machine shows in the numbers.
    load_average: String,
    dir: String,
    fs_type: String,
    #[serde(skip)]
    fs_magic: i64,
    #[serde(rename = "fs_magic")]
    fs_magic_hex: String,
    device: String,
    mount_point: String,
    mount_options: String,
}

impl Host {
    fn probe(dir: &Path) -> Result<Host> {
        let metadata = fs::metadata(dir).map_err(|e| format!("--dir {}: {e}", dir.display()))?;
        if !metadata.is_dir() {
            return Err(format!("--dir {}: not a directory", dir.display()));
        }
        let fs_magic = statfs_magic(dir)?;
        let (mut fs_type, mut device, mut mount_point) = (
            if fs_magic == EXT4_SUPER_MAGIC {
                "ext2/3/4".to_string()
            } else {
                "unknown".to_string()
            },
            "?".to_string(),
            "?".to_string(),
        );
        // `df -T -P DIR`: a header, then device, type, sizes, use and the mount point.
        if let Ok(output) = Command::new("df").arg("-T").arg("-P").arg(dir).output() {
            let text = String::from_utf8_lossy(&output.stdout);
            if let Some(line) = text.lines().nth(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() >= 7 {
                    device = fields[0].to_string();
                    fs_type = fields[1].to_string();
                    mount_point = fields[6..].join(" ");
                }
            }
        }
        let mount_options = fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                (fields.len() >= 4 && fields[1] == mount_point).then(|| fields[3].to_string())
            })
            .next_back()
            .unwrap_or_else(|| "?".to_string());
        let proc_field = |file: &str, key: &str| -> Option<String> {
            fs::read_to_string(file).ok()?.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                (name.trim() == key).then(|| value.trim().to_string())
            })
        };
        let memory_mib = proc_field("/proc/meminfo", "MemTotal")
            .and_then(|kb| kb.trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024);
        Ok(Host {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu: proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".to_string()),
            memory_mib,
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "?".to_string(), |k| k.trim().to_string()),
            load_average: fs::read_to_string("/proc/loadavg").map_or_else(
                |_| "?".to_string(),
                |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            ),
            dir: dir.display().to_string(),
            fs_type,
            fs_magic,
            fs_magic_hex: format!("{fs_magic:#x}"),
            device,
            mount_point,
            mount_options,
        })
    }
}

/// The file system's type as statfs(2) reports it (`f_type`).
fn statfs_magic(dir: &Path) -> Result<i64> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{}: the path holds a NUL byte", dir.display()))?;
    // SAFETY: `statfs` is plain old data, for which all zeros is a valid value.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stats` a writable `statfs`, both live for
    // the whole call.
    if unsafe { libc::statfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(format!(
            "statfs {}: {}",
            dir.display(),
            io::Error::last_os_error()
        ));
    }
    // `f_type`'s integer type differs between targets.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    Ok(stats.f_type as i64)
}

fn print_header(command_line: &str, host: &Host, args: &Args) {
    println!("# txdisk-fs over FUSE vs ext4");
    println!();
    println!("command: {command_line}");
    println!(
        "machine: {} cores ({}), {} MiB memory, Linux {}, load average {}",
        host.cores, host.cpu, host.memory_mib, host.kernel, host.load_average
    );
    println!(
        "file system of {}: {} (statfs magic {}) on {} mounted at {} ({})",
        host.dir,
        host.fs_type,
        host.fs_magic_hex,
        host.device,
        host.mount_point,
        host.mount_options
    );
    println!(
        "txdisk: image of {} MiB and log of {} MiB on that file system, mounted over FUSE; {} \
         round(s), target order alternating (ext4 first in round 1)",
        args.image_mib, args.log_mib, args.rounds
    );
}

/// This program's command line, quoted for a shell where needed.
fn command_line() -> String {
    std::env::args_os()
        .map(|arg| {
            let arg = arg.to_string_lossy().into_owned();
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A progress line on stderr (stdout holds only the report).
fn progress(message: fmt::Arguments<'_>) {
    eprintln!("fs_vs_ext4: {message}");
}
