//! Serves a memory or file backend over NBD, for the integration tests and the throughput
//! harness (which need a real process to kill). Prints `listening on ADDR` once ready.
//!
//! ```text
//! nbd-test-server [--listen ADDR] [--export NAME]
//!                 (--mem BYTES | --file PATH [--create BYTES] | --journal PATH --size BYTES
//!                  | --txdisk IMAGE[,IMAGE2] [--create BYTES])
//! ```
//!
//! `--txdisk` serves the logical disk over one image or a replicated pair (formatted first
//! with `--create`), as `txdisk serve` does.
//!
//! `--journal` serves the all-or-nothing journalled backend of `journal.rs`.

mod journal;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use txdisk_nbd::{ExportBackend, FileBackend, MemBackend, Server};

struct Args {
    listen: String,
    export: String,
    mem_bytes: Option<usize>,
    file: Option<PathBuf>,
    create_bytes: Option<u64>,
    journal: Option<PathBuf>,
    size_bytes: Option<usize>,
    txdisk: Option<Vec<PathBuf>>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:0".to_string(),
        export: "disk".to_string(),
        mem_bytes: None,
        file: None,
        create_bytes: None,
        journal: None,
        size_bytes: None,
        txdisk: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--export" => args.export = value()?,
            "--mem" => args.mem_bytes = Some(value()?.parse().map_err(|e| format!("--mem: {e}"))?),
            "--file" => args.file = Some(PathBuf::from(value()?)),
            "--create" => {
                args.create_bytes = Some(value()?.parse().map_err(|e| format!("--create: {e}"))?)
            }
            "--journal" => args.journal = Some(PathBuf::from(value()?)),
            "--txdisk" => args.txdisk = Some(value()?.split(',').map(PathBuf::from).collect()),
            "--size" => {
                args.size_bytes = Some(value()?.parse().map_err(|e| format!("--size: {e}"))?)
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn serve<B: ExportBackend>(args: &Args, backend: B) -> Result<(), String> {
    let stop = txdisk_nbd::signal::stop_on_signals().map_err(|e| e.to_string())?;
    let server =
        Server::bind(&args.listen, &args.export, Arc::new(backend)).map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {addr}");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let stats = server.serve_until(stop).map_err(|e| e.to_string())?;
    // On stdout on purpose: the test harness must keep reading it after the first line.
    println!("stopped: {stats:?}");
    Ok(())
}

/// Serves the logical disk on `images`, formatting them first if `create_bytes` is given.
fn serve_txdisk(args: &Args, images: &[PathBuf]) -> Result<(), String> {
    if let Some(data_bytes) = args.create_bytes {
        let log_blocks = 2048;
        let size_blocks =
            txdisk::image_blocks_for(data_bytes.div_ceil(4096), log_blocks, images.len());
        let options = txdisk::FormatOptions {
            size_blocks,
            log_blocks,
        };
        txdisk::format(images, &options).map_err(|e| e.to_string())?;
    }
    let stop = txdisk_nbd::signal::stop_on_signals().map_err(|e| e.to_string())?;
    let stats = txdisk_nbd::serve_images(images, &args.listen, &args.export, stop, &mut |addr| {
        println!("listening on {addr}");
        let _ = std::io::stdout().flush();
    })?;
    println!("stopped: {stats:?}");
    Ok(())
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    if let Some(images) = &args.txdisk {
        return serve_txdisk(&args, images);
    }
    match (&args.mem_bytes, &args.file, &args.journal) {
        (Some(bytes), None, None) => serve(&args, MemBackend::new(*bytes)),
        (None, None, Some(path)) => {
            let size = args.size_bytes.ok_or("--journal needs --size BYTES")?;
            let backend = journal::JournalBackend::open(path, size)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            serve(&args, backend)
        }
        (None, Some(path), None) => {
            let backend = match args.create_bytes {
                Some(size) => FileBackend::create(path, size),
                None => FileBackend::open(path),
            }
            .map_err(|e| format!("{}: {e}", path.display()))?;
            serve(&args, backend)
        }
        _ => Err("give exactly one of --mem, --file or --journal".to_string()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nbd-test-server: {e}");
            ExitCode::FAILURE
        }
    }
}
