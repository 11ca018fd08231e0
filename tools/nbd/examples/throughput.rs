//! Throughput of `qemu-img convert` of a raw image into an NBD export: this server over the
//! logical disk (one image and a replicated pair), over a plain file and over memory, side by
//! side with `qemu-nbd` serving a raw file, in one run.
//!
//! ```text
//! cargo run --release -p txdisk-nbd --example throughput [-- SIZE_MIB [RUNS]]
//! ```
//!
//! Prints the best of RUNS (default 3) for each target, in MiB/s, in (convert into the
//! export) and out (convert from the export into a file).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use txdisk_nbd::testkit::{clients, SplitMix64};
use txdisk_nbd::{
    Client, ExportBackend, FileBackend, LogicalBackend, MemBackend, Server, ServerOptions,
};

type Error = Box<dyn std::error::Error>;

fn measure(uri: &str, src: &Path, back: &Path, runs: usize) -> Result<(f64, f64), Error> {
    Ok(clients::qemu_img_convert_mib_per_s(uri, src, back, runs)?)
}

fn serve_in_thread<B: ExportBackend>(
    backend: B,
) -> Result<(SocketAddr, Arc<AtomicBool>, thread::JoinHandle<()>), Error> {
    let server = Server::bind("127.0.0.1:0", "disk", Arc::new(backend))?;
    let addr = server.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        if let Err(e) = server.serve_until(&flag) {
            eprintln!("server: {e}");
        }
    });
    Ok((addr, stop, handle))
}

/// Serves a freshly formatted logical disk over `images` and measures it.
fn measure_txdisk(
    images: &[std::path::PathBuf],
    size: u64,
    src: &Path,
    back: &Path,
    runs: usize,
) -> Result<(f64, f64), Error> {
    let log_blocks = 4096;
    let options = txdisk::FormatOptions {
        size_blocks: size.div_ceil(4096) + log_blocks + 8,
        log_blocks,
    };
    txdisk::format(images, &options)?;
    let backend = LogicalBackend::new(txdisk::open(images, txdisk::OpenOptions::default())?);
    let server_options = ServerOptions {
        max_payload_bytes: backend.max_payload_bytes(),
        ..ServerOptions::default()
    };
    let server =
        Server::bind("127.0.0.1:0", "disk", Arc::new(backend))?.with_options(server_options)?;
    let addr = server.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || server.serve_until(&flag).map(|_| ()));
    let result = measure(&format!("nbd://{addr}/disk"), src, back, runs);
    stop.store(true, Ordering::SeqCst);
    let _ = handle.join();
    result
}

fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_qemu_nbd(img: &Path) -> Result<(Child, SocketAddr), Error> {
    let port = free_port()?;
    let child = Command::new("qemu-nbd")
        .args([
            "-f",
            "raw",
            "-b",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-x",
            "disk",
            "-t",
        ])
        .arg(img)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    for _ in 0..500 {
        if Client::info(addr, "disk").is_ok() {
            return Ok((child, addr));
        }
        thread::sleep(Duration::from_millis(10));
    }
    Err("qemu-nbd did not start listening".into())
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let size_mib: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(256);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let size = size_mib << 20;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src.img");
    let back = dir.path().join("back.img");
    let mut data = vec![0u8; size as usize];
    SplitMix64::new(1).fill(&mut data);
    std::fs::write(&src, &data)?;
    drop(data);
    println!("qemu-img convert of a {size_mib} MiB raw image (random data), best of {runs}, MiB/s");
    println!("{:<34} {:>8} {:>8}", "target", "in", "out");

    let (i, o) = measure_txdisk(&[dir.path().join("single.img")], size, &src, &back, runs)?;
    println!("{:<34} {i:>8.1} {o:>8.1}", "txdisk serve, one image");
    let pair = [dir.path().join("d1.img"), dir.path().join("d2.img")];
    let (i, o) = measure_txdisk(&pair, size, &src, &back, runs)?;
    println!("{:<34} {i:>8.1} {o:>8.1}", "txdisk serve, replicated pair");

    let file_img = dir.path().join("txdisk-nbd.img");
    let (addr, stop, handle) = serve_in_thread(FileBackend::create(&file_img, size)?)?;
    let (i, o) = measure(&format!("nbd://{addr}/disk"), &src, &back, runs)?;
    println!(
        "{:<34} {i:>8.1} {o:>8.1}",
        "txdisk-nbd, FileBackend (raw file)"
    );
    stop.store(true, Ordering::SeqCst);
    let _ = handle.join();

    let (addr, stop, handle) = serve_in_thread(MemBackend::new(size as usize))?;
    let (i, o) = measure(&format!("nbd://{addr}/disk"), &src, &back, runs)?;
    println!("{:<34} {i:>8.1} {o:>8.1}", "txdisk-nbd, MemBackend");
    stop.store(true, Ordering::SeqCst);
    let _ = handle.join();

    let qemu_img = dir.path().join("qemu-nbd.img");
    std::fs::File::create(&qemu_img)?.set_len(size)?;
    let (mut child, addr) = start_qemu_nbd(&qemu_img)?;
    let result = measure(&format!("nbd://{addr}/disk"), &src, &back, runs);
    let _ = child.kill();
    let _ = child.wait();
    let (i, o) = result?;
    println!("{:<34} {i:>8.1} {o:>8.1}", "qemu-nbd (raw file)");
    Ok(())
}
