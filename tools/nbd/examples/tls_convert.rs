//! What TLS costs a bulk copy: `qemu-img convert` of a raw image into an export and back out,
//! with TLS (X.509, `tls-creds-x509`) beside the same copy in plain text, against one server
//! that offers both (`TlsMode::On`), rounds interleaved so that both see the same machine.
//!
//! ```text
//! cargo run --release -p txdisk-nbd --example tls_convert [-- SIZE_MIB [ROUNDS]]
//! ```
//!
//! Three servers are measured: the logical disk on one image (what `txdisk serve` runs), an
//! in-memory export (the protocol and TLS alone), and, as the peer, `qemu-nbd` serving a raw
//! file (two processes, one with `--tls-creds` and one without, since qemu-nbd with TLS
//! refuses plain clients). Prints the median and best of ROUNDS (default
//! 5) in MiB/s, and TLS's share of the plain figure.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use txdisk_nbd::certs::{self, CertRequest};
use txdisk_nbd::testkit::clients::run_ok;
use txdisk_nbd::testkit::SplitMix64;
use txdisk_nbd::{
    Export, ExportBackend, Listen, LogicalBackend, MemBackend, Server, ServerOptions, ServerTls,
    TlsMode,
};

type Error = Box<dyn std::error::Error>;

const MIB: f64 = (1u64 << 20) as f64;

/// How qemu reaches the export: its block-driver options, and the TLS object if any.
struct Target {
    image_opts: String,
    tls_object: Option<String>,
}

impl Target {
    fn new(addr: SocketAddr, client_dir: Option<&Path>) -> Target {
        let mut image_opts = format!(
            "driver=nbd,host={},port={},export=disk",
            addr.ip(),
            addr.port()
        );
        let tls_object = client_dir.map(|dir| {
            image_opts.push_str(",tls-creds=tls0");
            format!(
                "tls-creds-x509,id=tls0,dir={},endpoint=client",
                dir.display()
            )
        });
        Target {
            image_opts,
            tls_object,
        }
    }

    fn qemu_img(&self) -> Command {
        let mut cmd = Command::new("qemu-img");
        cmd.arg("convert");
        if let Some(object) = &self.tls_object {
            cmd.arg("--object").arg(object);
        }
        cmd
    }

    /// Seconds to copy `src` into the export.
    fn copy_in(&self, src: &Path) -> Result<f64, Error> {
        let start = Instant::now();
        run_ok(
            self.qemu_img()
                .args(["-n", "-f", "raw", "--target-image-opts"])
                .arg(src)
                .arg(&self.image_opts),
        )?;
        Ok(start.elapsed().as_secs_f64())
    }

    /// Seconds to copy the export into `back`.
    fn copy_out(&self, back: &Path) -> Result<f64, Error> {
        let start = Instant::now();
        run_ok(
            self.qemu_img()
                .args(["-O", "raw", "--image-opts"])
                .arg(&self.image_opts)
                .arg(back),
        )?;
        Ok(start.elapsed().as_secs_f64())
    }
}

struct Running {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<()>,
}

impl Running {
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.handle.join();
    }
}

/// A `qemu-nbd` process serving `image`, with TLS from `server_dir` if given.
struct QemuNbd {
    child: Child,
    addr: SocketAddr,
}

impl QemuNbd {
    fn start(image: &Path, server_dir: Option<&Path>) -> Result<QemuNbd, Error> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut cmd = Command::new("qemu-nbd");
        cmd.args(["-f", "raw", "-b", "127.0.0.1", "-x", "disk", "-t", "-p"])
            .arg(port.to_string());
        if let Some(dir) = server_dir {
            cmd.arg("--object")
                .arg(format!(
                    "tls-creds-x509,id=tls0,dir={},endpoint=server",
                    dir.display()
                ))
                .args(["--tls-creds", "tls0"]);
        }
        let child = cmd
            .arg(image)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("qemu-nbd did not start listening".into());
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(QemuNbd { child, addr })
    }
}

impl Drop for QemuNbd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve<B: ExportBackend + 'static>(
    backend: B,
    max_payload_bytes: Option<u32>,
    server_dir: &Path,
) -> Result<Running, Error> {
    let mut options = ServerOptions {
        tls_mode: TlsMode::On,
        tls: Some(ServerTls::load(server_dir)?),
        ..ServerOptions::default()
    };
    if let Some(bytes) = max_payload_bytes {
        options.max_payload_bytes = bytes;
    }
    let exports = vec![Export::new("disk", Arc::new(backend))];
    let server =
        Server::bind_exports(&Listen::Tcp("127.0.0.1:0".into()), exports)?.with_options(options)?;
    let addr = server.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        if let Err(e) = server.serve_until(&flag) {
            eprintln!("server: {e}");
        }
    });
    Ok(Running { addr, stop, handle })
}

/// Per-direction throughputs, MiB/s, one per round.
#[derive(Default)]
struct Samples {
    copy_in: Vec<f64>,
    copy_out: Vec<f64>,
}

impl Samples {
    fn summary(values: &[f64]) -> (f64, f64) {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        let best = sorted.last().copied().unwrap_or(0.0);
        (median, best)
    }
}

/// Interleaves plain and TLS rounds against one server and checks every copy back.
fn measure(
    plain_addr: SocketAddr,
    tls_addr: SocketAddr,
    client_dir: &Path,
    src: &Path,
    back: &Path,
    rounds: usize,
) -> Result<(Samples, Samples), Error> {
    let data = std::fs::read(src)?;
    let size_mib = data.len() as f64 / MIB;
    let plain = Target::new(plain_addr, None);
    let tls = Target::new(tls_addr, Some(client_dir));
    let (mut plain_samples, mut tls_samples) = (Samples::default(), Samples::default());
    for round in 0..rounds {
        // Alternate which goes first so neither always meets a warm or a cold cache.
        let order: [(&Target, &mut Samples); 2] = if round % 2 == 0 {
            [(&plain, &mut plain_samples), (&tls, &mut tls_samples)]
        } else {
            [(&tls, &mut tls_samples), (&plain, &mut plain_samples)]
        };
        for (target, samples) in order {
            samples.copy_in.push(size_mib / target.copy_in(src)?);
            samples.copy_out.push(size_mib / target.copy_out(back)?);
            // The export may be larger than the source: only its first bytes were written.
            if !std::fs::read(back)?.starts_with(&data) {
                return Err(format!("{}: the copy back differs", target.image_opts).into());
            }
        }
    }
    Ok((plain_samples, tls_samples))
}

fn print_rows(what: &str, plain: &Samples, tls: &Samples) {
    let (plain_in, plain_in_best) = Samples::summary(&plain.copy_in);
    let (plain_out, plain_out_best) = Samples::summary(&plain.copy_out);
    let (tls_in, tls_in_best) = Samples::summary(&tls.copy_in);
    let (tls_out, tls_out_best) = Samples::summary(&tls.copy_out);
    println!(
        "{:<34} {plain_in:>8.1} {plain_in_best:>8.1} {plain_out:>8.1} {plain_out_best:>8.1}",
        format!("{what}, plain")
    );
    println!(
        "{:<34} {tls_in:>8.1} {tls_in_best:>8.1} {tls_out:>8.1} {tls_out_best:>8.1}",
        format!("{what}, TLS")
    );
    println!(
        "{:<34} {:>8.2} {:>8} {:>8.2}",
        format!("{what}, TLS / plain"),
        tls_in / plain_in,
        "",
        tls_out / plain_out
    );
}

fn logical_disk(image: PathBuf, size_bytes: u64) -> Result<LogicalBackend, Error> {
    let log_blocks = 4096;
    let data_blocks = size_bytes.div_ceil(4096);
    // Room for the log, the header and the checksum table beside the data.
    let options = txdisk::FormatOptions {
        size_blocks: data_blocks + data_blocks / 32 + log_blocks + 64,
        log_blocks,
    };
    txdisk::format(std::slice::from_ref(&image), &options)?;
    let backend = LogicalBackend::new(txdisk::open(&[image], txdisk::OpenOptions::default())?);
    if backend.size_bytes() < size_bytes {
        return Err(format!(
            "the export holds {} bytes, not {size_bytes}",
            backend.size_bytes()
        )
        .into());
    }
    Ok(backend)
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let size_mib: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(256);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let size_bytes = size_mib << 20;
    let dir = tempfile::tempdir()?;
    let made = certs::generate(
        &dir.path().join("pki"),
        &CertRequest {
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            clients: vec!["bench".into()],
        },
    )?;
    let client_dir = made
        .client_dirs
        .first()
        .map(|(_, d)| d.clone())
        .ok_or("no client credentials")?;
    let src = dir.path().join("src.img");
    let back = dir.path().join("back.img");
    let mut data = vec![0u8; size_bytes as usize];
    SplitMix64::new(1).fill(&mut data);
    std::fs::write(&src, &data)?;
    drop(data);

    println!(
        "qemu-img convert of a {size_mib} MiB raw image (random data), {rounds} rounds, MiB/s"
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8}",
        "export", "in", "in best", "out", "out best"
    );
    let backend = logical_disk(dir.path().join("single.img"), size_bytes)?;
    let payload = backend.max_payload_bytes();
    let running = serve(backend, Some(payload), &made.server_dir)?;
    let result = measure(running.addr, running.addr, &client_dir, &src, &back, rounds);
    running.stop();
    let (plain, tls) = result?;
    print_rows("logical disk, one image", &plain, &tls);

    let running = serve(MemBackend::new(size_bytes as usize), None, &made.server_dir)?;
    let result = measure(running.addr, running.addr, &client_dir, &src, &back, rounds);
    running.stop();
    let (plain, tls) = result?;
    print_rows("memory export", &plain, &tls);

    let plain_image = dir.path().join("qemu-plain.img");
    let tls_image = dir.path().join("qemu-tls.img");
    for image in [&plain_image, &tls_image] {
        std::fs::File::create(image)?.set_len(size_bytes)?;
    }
    let plain_server = QemuNbd::start(&plain_image, None)?;
    let tls_server = QemuNbd::start(&tls_image, Some(&made.server_dir))?;
    let (plain, tls) = measure(
        plain_server.addr,
        tls_server.addr,
        &client_dir,
        &src,
        &back,
        rounds,
    )?;
    drop((plain_server, tls_server));
    print_rows("qemu-nbd, raw file", &plain, &tls);
    Ok(())
}
