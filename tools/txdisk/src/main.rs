//! The `txdisk` command-line program: argument parsing and presentation only; every
//! subcommand is a call into the library crates (`txdisk`, `txdisk-inspect`).

mod bench;
mod demo;
mod fs_cmd;
mod output;
mod scrub;
mod serve;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use txdisk_inspect::{CheckOptions, DumpOptions, EXIT_OPERATIONAL, EXIT_UNCORRECTED};

/// e2fsck's exit code for a usage or syntax error.
const EXIT_USAGE: u8 = 16;

#[derive(Parser, Debug)]
#[command(
    name = "txdisk",
    version,
    about = "A crash-safe transactional logical disk",
    propagate_version = true
)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make a new image, or a replicated pair of images.
    Format(FormatArgs),
    /// Check an image or a pair (read-only unless --repair).
    ///
    /// Checks every layer: the files, the pair metadata and the replicas' data, the log's
    /// superblock, headers and every transaction in it. Exit codes as e2fsck: 0 clean, 1 errors
    /// corrected, 4 errors left uncorrected (including recovery not run), 8 operational error,
    /// 16 usage error.
    Fsck(FsckArgs),
    /// Verify every block of an image or a pair, repairing a bad copy from the good one.
    ///
    /// Reads every copy of every block (both members of a pair) and its checksum; on a pair
    /// writes the good copy over one that is flipped, misdirected, stale or unreadable (the
    /// newer over the older where both verify but differ) and rewrites damaged metadata. A
    /// single image has no second copy: its damaged blocks are reported. Exit codes as fsck's:
    /// 0 clean, 1 errors corrected, 4 blocks left with no good copy, 8 operational error, 16
    /// usage error.
    Scrub(scrub::ScrubArgs),
    /// Show the log transaction by transaction, and why it ends.
    Logdump(LogdumpArgs),
    /// Crash-point fuzzing of the stack on simulated disks; exit 1 if it finds a violation.
    Crashfuzz(CrashfuzzArgs),
    /// The whole story on temporary files, in seconds: format, transactions, a crash, fsck, repair.
    Demo(DemoArgs),
    /// Serve the logical disk over NBD: every WRITE one atomic transaction.
    Serve(serve::ServeArgs),
    /// Replace a failed member of a pair that `txdisk serve --control` is serving, online.
    ///
    /// IMAGE (a path or an NBD URI; whatever it holds is overwritten) is rebuilt from the
    /// current member while the export keeps serving. `--control` alone prints the pair's
    /// state. Exit 0 on success, 8 on a refusal or an unreachable control socket.
    Replace(serve::ReplaceArgs),
    /// Make X.509 credentials for `serve --tls-certificates` and `nbds://` clients: a CA, a
    /// server certificate and one client certificate per `--client` (qemu's file layout).
    TlsCerts(serve::TlsCertsArgs),
    /// Throughput side by side: the raw-device floor (one file, and two as a pair would), txdisk, txdisk-pair, SQLite, redb.
    Bench(bench::BenchArgs),
    /// The example file system on the logical disk: mkfs, ls, mkdir, put, get, cat, rm, mv, stat, mount.
    Fs(fs_cmd::FsArgs),
    /// (Used by `demo`.) Commit transfers in a loop until killed, printing each acknowledgement.
    #[command(hide = true)]
    DemoWriter { d1: PathBuf, d2: PathBuf },
}

#[derive(Args, Debug)]
struct FormatArgs {
    /// The image file to create (the first member of a pair if IMAGE2 is given).
    image: PathBuf,
    /// The second member of a replicated pair.
    image2: Option<PathBuf>,
    /// Size of each image: a number of 4096-byte blocks, or bytes with a K, M or G suffix.
    #[arg(long, default_value = "64M")]
    size: String,
    /// Size of the log region, as --size.
    #[arg(long, default_value = "4M")]
    log: String,
}

#[derive(Args, Debug)]
struct FsckArgs {
    /// The image, or the first member (d1) of a pair.
    image: PathBuf,
    /// The second member (d2) of a pair.
    image2: Option<PathBuf>,
    /// Run replica recovery and log recovery, then check again.
    #[arg(long)]
    repair: bool,
    /// How many differing addresses to list.
    #[arg(long, default_value_t = 10)]
    max_listed: usize,
}

#[derive(Args, Debug)]
struct LogdumpArgs {
    /// An image, or either member of a pair.
    image: PathBuf,
    /// Show at most N transactions.
    #[arg(short = 'n', long = "count")]
    count: Option<usize>,
    /// Show only transactions that write home block BLOCK.
    #[arg(short = 'b', long = "block")]
    block: Option<u64>,
    /// Hex dump every block of every transaction shown.
    #[arg(long)]
    raw: bool,
}

#[derive(Args, Debug)]
struct CrashfuzzArgs {
    /// Seed of the workloads (a run is a function of its configuration).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// When to stop: a count of crash states, or seconds as `20s`.
    #[arg(long, default_value = "20s")]
    budget: String,
    /// A replicated pair under the log, with fail-stop and bad-block faults.
    #[arg(long)]
    replicated: bool,
    /// Crash states tear pending writes at 512-byte sectors.
    #[arg(long)]
    torn: bool,
    /// Damage: some workloads get a write that lands at a wrong block.
    #[arg(long)]
    misdirect: bool,
    /// Damage: some workloads get bits flipped in a block (at rest or mid-run).
    #[arg(long)]
    bit_rot: bool,
    /// Damage: some workloads get a write that is acknowledged and never lands.
    #[arg(long)]
    lost_writes: bool,
    /// Crash at every disk operation, not at sampled ones.
    #[arg(long)]
    exhaustive: bool,
    /// Crashes in a row: the workload's, then crashes of recovery.
    #[arg(long, default_value_t = 2)]
    depth: u32,
    /// Replay (and shrink) the failure a token names, instead of fuzzing.
    #[arg(long, value_name = "TOKEN")]
    replay: Option<String>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the temporary images in this directory (created; must not exist) instead of deleting them.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Transactions each of the 4 threads runs before the crash step.
    #[arg(long, default_value_t = 100)]
    transactions: u64,
}

fn main() -> ExitCode {
    // `txdisk bench` measures each cell in a child copy of this program.
    if let Some(code) = bench::child_entry() {
        return code;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // e2fsck's 16 for a usage error (clap's own would be 2); 0 for --help, --version.
            return ExitCode::from(if error.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    output::init_tracing(cli.verbose);
    // A panic is a bug; it still ends as e2fsck's operational error, never as exit 101.
    match std::panic::catch_unwind(|| run(&cli)) {
        Ok(code) => ExitCode::from(code),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            eprintln!("txdisk: internal error: {message} (this is a bug)");
            ExitCode::from(EXIT_OPERATIONAL as u8)
        }
    }
}

fn run(cli: &Cli) -> u8 {
    let code = match &cli.command {
        Command::Format(args) => format(args, cli.json),
        Command::Fsck(args) => fsck(args, cli.json),
        Command::Scrub(args) => scrub::run(args, cli.json),
        Command::Logdump(args) => logdump(args, cli.json),
        Command::Crashfuzz(args) => crashfuzz(args, cli.json),
        Command::Demo(args) => demo::run(args, cli.json),
        Command::Serve(args) => serve::run(args, cli.json),
        Command::Replace(args) => serve::replace(args, cli.json),
        Command::TlsCerts(args) => serve::tls_certs(args, cli.json),
        Command::Bench(args) => bench::run(args, cli.json),
        Command::Fs(args) => {
            fs_cmd::mount(args, cli.json).unwrap_or_else(|| fs_cmd::run(args, cli.json))
        }
        Command::DemoWriter { d1, d2 } => demo::writer(d1, d2),
    };
    code as u8
}

fn images(first: &Path, second: &Option<PathBuf>) -> Vec<PathBuf> {
    std::iter::once(first.to_path_buf())
        .chain(second.clone())
        .collect()
}

fn format(args: &FormatArgs, json: bool) -> i32 {
    let sizes = output::parse_blocks(&args.size)
        .and_then(|size| Ok((size, output::parse_blocks(&args.log)?)));
    let (size_blocks, log_blocks) = match sizes {
        Ok(sizes) => sizes,
        Err(message) => return output::fail(json, &message),
    };
    let images = images(&args.image, &args.image2);
    // The library checks the geometry before it creates a file: a refusal leaves nothing.
    match txdisk::format(
        &images,
        &txdisk::FormatOptions {
            size_blocks,
            log_blocks,
        },
    ) {
        Ok(()) => {
            let names: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
            let what = if images.len() == 2 {
                "replicated pair"
            } else {
                "image"
            };
            if json {
                output::print_json(&FormattedJson {
                    images: &names,
                    size_blocks,
                    log_blocks,
                });
            } else {
                println!(
                    "formatted {what} {}: {size_blocks} blocks each, log of {log_blocks} blocks",
                    names.join(" + ")
                );
            }
            0
        }
        Err(error) => output::fail(json, &format!("format: {error}")),
    }
}

/// `format --json`: the images made, and their size and log size in 4096-byte blocks.
#[derive(Serialize)]
struct FormattedJson<'a> {
    images: &'a [String],
    size_blocks: u64,
    log_blocks: u64,
}

fn fsck(args: &FsckArgs, json: bool) -> i32 {
    let images = images(&args.image, &args.image2);
    let options = CheckOptions {
        repair: args.repair,
        max_listed: args.max_listed,
    };
    let mut bar = output::Bar::new(json);
    match txdisk_inspect::check_with_progress(&images, &options, &mut |p| {
        bar.update(p.phase, p.done_blocks, p.total_blocks)
    }) {
        Ok(report) => {
            bar.finish();
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.render_text());
            }
            report.exit_code()
        }
        Err(error) => {
            bar.finish();
            output::fail(json, &format!("fsck: {error}"))
        }
    }
}

fn logdump(args: &LogdumpArgs, json: bool) -> i32 {
    let options = DumpOptions {
        max_records: args.count,
        block: args.block,
        raw: args.raw,
    };
    match txdisk_inspect::logdump(&args.image, &options) {
        Ok(dump) => {
            if json {
                println!("{}", dump.to_json());
            } else {
                print!("{}", dump.render_text());
            }
            if dump.corruption.is_some() {
                EXIT_UNCORRECTED
            } else {
                0
            }
        }
        Err(error) => output::fail(json, &format!("logdump: {error}")),
    }
}

fn crashfuzz(args: &CrashfuzzArgs, json: bool) -> i32 {
    if let Some(token) = &args.replay {
        return replay(token, json);
    }
    let budget = match args.budget.parse() {
        Ok(budget) => budget,
        Err(error) => return output::fail(json, &format!("crashfuzz: {error}")),
    };
    let config = txdisk_crashfuzz::FuzzConfig {
        seed: args.seed,
        budget,
        replicated: args.replicated,
        torn: args.torn,
        misdirect: args.misdirect,
        bit_rot: args.bit_rot,
        lost_writes: args.lost_writes,
        exhaustive: args.exhaustive,
        depth: args.depth,
        ..txdisk_crashfuzz::FuzzConfig::default()
    };
    let mut bar = output::Bar::new(json);
    let outcome = txdisk_crashfuzz::fuzz(&config, &mut |p| {
        bar.update("fuzzing", (p.fraction * 1000.0) as u64, 1000)
    });
    bar.finish();
    match outcome {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
            }
            i32::from(!report.violations.is_empty())
        }
        Err(error) => output::fail(json, &format!("crashfuzz: {error}")),
    }
}

fn replay(token: &str, json: bool) -> i32 {
    let report = match txdisk_crashfuzz::replay(token) {
        Ok(report) => report,
        Err(error) => return output::fail(json, &format!("crashfuzz --replay: {error}")),
    };
    if json {
        println!("{}", report.to_json());
    } else {
        println!(
            "workload {} ({}), crashed {}",
            report.workload, report.layer, report.crash
        );
        match (&report.violation, &report.shrunk_violation) {
            (None, _) => println!("not reproduced: the state passes every check now"),
            (Some((kind, message)), shrunk) => {
                println!("reproduced: {kind}: {message}");
                println!(
                    "shrunk from {} to {} operations ({} pending writes kept, {} runs)",
                    report.original_ops,
                    report.shrunk_ops,
                    report.shrunk_pending_writes,
                    report.shrink_runs
                );
                if let Some((kind, message)) = shrunk {
                    println!("shrunk violation: {kind}: {message}");
                }
                print!("{}", report.trace);
            }
        }
    }
    i32::from(report.reproduced())
}
