//! `txdisk fs …`: the example file system on the logical disk, from the shell and over FUSE.

use crate::output;
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use txdisk::Stack;
use txdisk_fs::{Fs, FsOptions, Kind, LogicalStore, MkfsOptions};

#[derive(Args, Debug)]
pub struct FsArgs {
    #[command(subcommand)]
    command: FsCommand,
}

/// The image (or a replicated pair, as `IMAGE,IMAGE2`) comes first in every subcommand.
#[derive(Subcommand, Debug)]
enum FsCommand {
    /// Make an empty file system on a formatted image.
    Mkfs { image: String },
    /// List a directory.
    Ls {
        image: String,
        #[arg(default_value = "/")]
        path: String,
    },
    /// Make a directory (-p: and its parents, no error if it exists).
    Mkdir {
        image: String,
        path: String,
        #[arg(short = 'p', long)]
        parents: bool,
    },
    /// Copy a host file into the file system.
    Put {
        image: String,
        source: PathBuf,
        path: String,
    },
    /// Copy a file out to a host file.
    Get {
        image: String,
        path: String,
        dest: PathBuf,
    },
    /// Print a file to stdout.
    Cat { image: String, path: String },
    /// Remove a file or an empty directory.
    Rm { image: String, path: String },
    /// Rename or move (across directories too).
    Mv {
        image: String,
        from: String,
        to: String,
    },
    /// Show a file's or directory's inode.
    Stat { image: String, path: String },
    /// Mount over FUSE until SIGINT/SIGTERM or umount; every completed operation is durable
    /// when it returns.
    Mount {
        image: String,
        dir: PathBuf,
        /// Make completed operations durable in the background every this many milliseconds
        /// (0: only on fsync and unmount); bounds what a crash can take.
        #[arg(long, default_value_t = 5000)]
        flush_interval_ms: u64,
    },
}

/// The assembled stack as the file system's store (the stack is closed cleanly at the end).
type StackStore = LogicalStore<Stack>;

fn image_of(command: &FsCommand) -> &str {
    match command {
        FsCommand::Mkfs { image }
        | FsCommand::Ls { image, .. }
        | FsCommand::Mkdir { image, .. }
        | FsCommand::Put { image, .. }
        | FsCommand::Get { image, .. }
        | FsCommand::Cat { image, .. }
        | FsCommand::Rm { image, .. }
        | FsCommand::Mv { image, .. }
        | FsCommand::Stat { image, .. }
        | FsCommand::Mount { image, .. } => image,
    }
}

pub fn run(args: &FsArgs, json: bool) -> i32 {
    match try_run(args, json) {
        Ok(()) => 0,
        Err(message) => output::fail(json, &format!("fs: {message}")),
    }
}

fn open_stack(image: &str) -> Result<Stack, String> {
    let images: Vec<PathBuf> = image.split(',').map(PathBuf::from).collect();
    txdisk::open(&images, txdisk::OpenOptions::default()).map_err(|e| format!("{image}: {e}"))
}

fn try_run(args: &FsArgs, json: bool) -> Result<(), String> {
    let image = image_of(&args.command);
    let store = LogicalStore(open_stack(image)?);
    if let FsCommand::Mkfs { .. } = &args.command {
        let fs = Fs::mkfs(store, &MkfsOptions::default()).map_err(|e| e.to_string())?;
        let stats = fs.statfs().map_err(|e| e.to_string())?;
        report(
            json,
            &MadeJson {
                blocks: stats.blocks,
                inodes: stats.inodes,
            },
            &format!(
                "made a file system: {} data blocks, {} inodes",
                stats.blocks, stats.inodes
            ),
        );
        return close(fs);
    }
    let fs = Fs::open(store, FsOptions::default()).map_err(|e| e.to_string())?;
    let result = command(&fs, &args.command, json);
    close(fs).and(result)
}

/// Makes everything durable and closes the images cleanly.
fn close(fs: Fs<StackStore>) -> Result<(), String> {
    fs.fsync().map_err(|e| e.to_string())?;
    fs.into_store().0.close().map_err(|e| e.to_string())
}

/// Prints the command's result: `value` as one line of JSON, or `text` for people.
fn report(json: bool, value: &impl Serialize, text: &str) {
    if json {
        output::print_json(value);
    } else {
        println!("{text}");
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Symlink => "link",
        Kind::Fifo => "fifo",
        Kind::Socket => "sock",
        Kind::CharDevice => "chr",
        Kind::BlockDevice => "blk",
    }
}

fn command(fs: &Fs<StackStore>, command: &FsCommand, json: bool) -> Result<(), String> {
    let err = |e: txdisk_fs::FsError| e.to_string();
    match command {
        FsCommand::Mkfs { .. } => unreachable!("mkfs is handled before the file system is opened"),
        FsCommand::Ls { path, .. } => {
            let entries = fs.list_path(path).map_err(err)?;
            if json {
                let list: Vec<EntryJson> = entries
                    .iter()
                    .map(|(entry, stat)| EntryJson {
                        name: String::from_utf8_lossy(&entry.name).into_owned(),
                        ino: stat.ino,
                        kind: kind_name(stat.kind),
                        size_bytes: stat.size_bytes,
                    })
                    .collect();
                output::print_json(&list);
            } else {
                for (entry, stat) in entries {
                    println!(
                        "{:>4} {:>12} {}",
                        kind_name(stat.kind),
                        stat.size_bytes,
                        String::from_utf8_lossy(&entry.name)
                    );
                }
            }
        }
        FsCommand::Mkdir { path, parents, .. } => {
            let ino = fs.mkdir_path(path, *parents).map_err(err)?;
            report(
                json,
                &MkdirJson { mkdir: path, ino },
                &format!("made {path}"),
            );
        }
        FsCommand::Put { source, path, .. } => {
            let mut file =
                std::fs::File::open(source).map_err(|e| format!("{}: {e}", source.display()))?;
            let bytes = fs.put_file(path, &mut file).map_err(err)?;
            report(
                json,
                &PutJson {
                    put: path,
                    size_bytes: bytes,
                },
                &format!("wrote {bytes} bytes to {path}"),
            );
        }
        FsCommand::Get { path, dest, .. } => {
            let mut file =
                std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
            let bytes = fs.get_file(path, &mut file).map_err(err)?;
            file.sync_all()
                .map_err(|e| format!("{}: {e}", dest.display()))?;
            report(
                json,
                &GetJson {
                    get: path,
                    size_bytes: bytes,
                },
                &format!("read {bytes} bytes from {path}"),
            );
        }
        FsCommand::Cat { path, .. } => {
            let mut stdout = std::io::stdout().lock();
            fs.get_file(path, &mut stdout).map_err(err)?;
        }
        FsCommand::Rm { path, .. } => {
            fs.remove_path(path).map_err(err)?;
            report(
                json,
                &RemovedJson { removed: path },
                &format!("removed {path}"),
            );
        }
        FsCommand::Mv { from, to, .. } => {
            fs.rename_path(from, to).map_err(err)?;
            report(
                json,
                &MovedJson { from, to },
                &format!("moved {from} to {to}"),
            );
        }
        FsCommand::Stat { path, .. } => {
            let stat = fs.stat_path(path).map_err(err)?;
            report(
                json,
                &StatJson {
                    path,
                    ino: stat.ino,
                    kind: kind_name(stat.kind),
                    size_bytes: stat.size_bytes,
                    nlink: stat.nlink,
                    blocks: stat.blocks,
                },
                &format!(
                    "{path}: inode {} {} {} bytes, {} links, {} blocks",
                    stat.ino,
                    kind_name(stat.kind),
                    stat.size_bytes,
                    stat.nlink,
                    stat.blocks
                ),
            );
        }
        FsCommand::Mount { .. } => unreachable!("mount is handled by mount()"),
    }
    Ok(())
}

/// `txdisk fs mount IMAGE DIR`: serves until SIGINT/SIGTERM or an external umount, then
/// unmounts, flushes and closes the images cleanly.
pub fn mount(args: &FsArgs, json: bool) -> Option<i32> {
    let FsCommand::Mount {
        image,
        dir,
        flush_interval_ms,
    } = &args.command
    else {
        return None;
    };
    let result = (|| -> Result<(), String> {
        let fs = Arc::new(
            Fs::open(LogicalStore(open_stack(image)?), FsOptions::default())
                .map_err(|e| e.to_string())?,
        );
        let stop =
            txdisk_nbd::signal::stop_on_signals().map_err(|e| format!("signal handlers: {e}"))?;
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = send.send(());
        });
        report(
            json,
            &MountedJson {
                mounted: dir.display().to_string(),
            },
            &format!(
                "mounted {image} at {}; Ctrl-C or umount to stop",
                dir.display()
            ),
        );
        let options = txdisk_fs::fuse::MountOptions {
            flush_interval: (*flush_interval_ms > 0)
                .then(|| std::time::Duration::from_millis(*flush_interval_ms)),
        };
        txdisk_fs::fuse::serve_until(Arc::clone(&fs), dir, &options, &receive)
            .map_err(|e| format!("mount: {e}"))?;
        let fs = Arc::try_unwrap(fs)
            .map_err(|_| "the file system is still in use after unmount".to_string())?;
        close(fs)?;
        report(
            json,
            &UnmountedJson {
                unmounted: dir.display().to_string(),
            },
            "unmounted; every completed operation is durable",
        );
        Ok(())
    })();
    Some(match result {
        Ok(()) => 0,
        Err(message) => output::fail(json, &format!("fs mount: {message}")),
    })
}

// What each command prints under --json: one object (a list of them for `ls`), naming the
// command's subject under the command's own key. Directories are printed as their display text:
// a path that is not UTF-8 is shown lossily rather than refused.

/// `mkfs`: the new file system's data blocks (4096 bytes each) and usable inodes.
#[derive(Serialize)]
struct MadeJson {
    blocks: u64,
    inodes: u64,
}

/// One directory entry of `ls`.
#[derive(Serialize)]
struct EntryJson {
    name: String,
    ino: u64,
    kind: &'static str,
    size_bytes: u64,
}

/// `mkdir`: the directory made and its inode.
#[derive(Serialize)]
struct MkdirJson<'a> {
    mkdir: &'a str,
    ino: u64,
}

/// `put`: the file written and the bytes copied into it.
#[derive(Serialize)]
struct PutJson<'a> {
    put: &'a str,
    size_bytes: u64,
}

/// `get`: the file read and the bytes copied out of it.
#[derive(Serialize)]
struct GetJson<'a> {
    get: &'a str,
    size_bytes: u64,
}

/// `rm`: the path removed.
#[derive(Serialize)]
struct RemovedJson<'a> {
    removed: &'a str,
}

/// `mv`: the old and the new path.
#[derive(Serialize)]
struct MovedJson<'a> {
    from: &'a str,
    to: &'a str,
}

/// `stat`: the inode of a path; `blocks` counts its data blocks.
#[derive(Serialize)]
struct StatJson<'a> {
    path: &'a str,
    ino: u64,
    kind: &'static str,
    size_bytes: u64,
    nlink: u32,
    blocks: u64,
}

/// `mount`: the directory now serving the file system.
#[derive(Serialize)]
struct MountedJson {
    mounted: String,
}

/// `mount`, after unmounting: the directory released.
#[derive(Serialize)]
struct UnmountedJson {
    unmounted: String,
}
