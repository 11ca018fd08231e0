//! `txdisk serve`: the logical disk as an NBD export (each WRITE one atomic transaction).

use crate::output;
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use txdisk_nbd::{ImageExport, Listen, ListenAddr, ServeConfig, ServerTls, TlsMode};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The image, or the first member (d1) of a pair.
    image: PathBuf,
    /// The second member (d2) of a pair.
    image2: Option<PathBuf>,
    /// TCP address to listen on. Anything but a loopback address needs `--tls require` (or
    /// `--insecure`).
    #[arg(long, default_value = "127.0.0.1:10809", conflicts_with = "socket")]
    listen: String,
    /// Listen on a Unix socket at this path instead (created with mode 0600).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The name of the export of IMAGE (also the default export).
    #[arg(long, default_value = "txdisk")]
    export: String,
    /// One more export from the same server: NAME=IMAGE, or NAME=D1,D2 for a pair. Repeatable.
    #[arg(long = "add-export", value_name = "NAME=IMAGE[,IMAGE2]")]
    add_export: Vec<String>,
    /// Serve every export read-only: the images are never written, WRITE and TRIM get EPERM.
    #[arg(long)]
    read_only: bool,
    /// Serve this export read-only (as `--read-only`, for one export). Repeatable.
    #[arg(long = "read-only-export", value_name = "NAME")]
    read_only_export: Vec<String>,
    /// Only this client may use export NAME: IDENTITY is the common name (CN) of the client's
    /// TLS certificate. Repeatable; an export with no `--allow` is open to every client that
    /// passes TLS (or to every client, without TLS).
    #[arg(long = "allow", value_name = "NAME=IDENTITY")]
    allow: Vec<String>,
    /// TLS: off, on (clients may use it) or require (nothing but STARTTLS before TLS). With
    /// `--tls-certificates` the default is require, otherwise off.
    #[arg(long, value_enum)]
    tls: Option<TlsArg>,
    /// X.509 credentials: a directory with ca-cert.pem, server-cert.pem and server-key.pem
    /// (qemu-nbd's and nbdkit's layout). Every client needs a certificate the CA signed.
    #[arg(long, value_name = "DIR")]
    tls_certificates: Option<PathBuf>,
    /// Pre-shared keys: not supported (refused with the reason); use `--tls-certificates`.
    #[arg(long, value_name = "FILE")]
    tls_psk: Option<PathBuf>,
    /// Allow listening on a non-loopback address without TLS required.
    #[arg(long)]
    insecure: bool,
    /// A Unix socket for `txdisk replace` (a pair only): replace a failed member while serving.
    #[arg(long, value_name = "SOCKET")]
    control: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum TlsArg {
    Off,
    On,
    Require,
}

impl ServeArgs {
    fn tls_mode(&self) -> TlsMode {
        match (self.tls, &self.tls_certificates) {
            (Some(TlsArg::Off), _) | (None, None) => TlsMode::Off,
            (Some(TlsArg::On), _) => TlsMode::On,
            (Some(TlsArg::Require), _) | (None, Some(_)) => TlsMode::Require,
        }
    }

    /// The server's configuration, or why the arguments cannot make one.
    fn config(&self) -> Result<ServeConfig, String> {
        if self.tls_psk.is_some() {
            return Err(txdisk::nbd::tls::PSK_UNSUPPORTED.to_string());
        }
        let tls_mode = self.tls_mode();
        let tls = match (&self.tls_certificates, tls_mode) {
            (_, TlsMode::Off) => None,
            (None, _) => return Err("--tls on or require needs --tls-certificates DIR".into()),
            (Some(dir), _) => Some(ServerTls::load(dir).map_err(|e| e.to_string())?),
        };
        let listen = match &self.socket {
            Some(path) => Listen::Unix(path.clone()),
            None => {
                check_listen_is_safe(&self.listen, tls_mode, self.insecure)?;
                Listen::Tcp(self.listen.clone())
            }
        };
        let mut exports = vec![ImageExport {
            name: self.export.clone(),
            images: std::iter::once(self.image.clone())
                .chain(self.image2.clone())
                .collect(),
            read_only: false,
            allow: None,
        }];
        for spec in &self.add_export {
            exports.push(parse_add_export(spec)?);
        }
        for export in &mut exports {
            export.read_only = self.read_only || self.read_only_export.contains(&export.name);
        }
        for name in &self.read_only_export {
            find_export(&mut exports, name, "--read-only-export")?;
        }
        for spec in &self.allow {
            let (name, identity) = spec
                .split_once('=')
                .filter(|(name, identity)| !name.is_empty() && !identity.is_empty())
                .ok_or_else(|| format!("--allow {spec:?}: expected NAME=IDENTITY"))?;
            let export = find_export(&mut exports, name, "--allow")?;
            export
                .allow
                .get_or_insert_with(Vec::new)
                .push(identity.to_string());
        }
        if tls_mode == TlsMode::Off && exports.iter().any(|e| e.allow.is_some()) {
            return Err("--allow names TLS client identities: it needs --tls-certificates".into());
        }
        Ok(ServeConfig {
            listen,
            exports,
            control: self.control.clone(),
            tls_mode,
            tls,
        })
    }
}

fn find_export<'a>(
    exports: &'a mut [ImageExport],
    name: &str,
    flag: &str,
) -> Result<&'a mut ImageExport, String> {
    exports
        .iter_mut()
        .find(|e| e.name == name)
        .ok_or_else(|| format!("{flag}: no export is named {name:?}"))
}

fn parse_add_export(spec: &str) -> Result<ImageExport, String> {
    let (name, images) = spec
        .split_once('=')
        .filter(|(name, images)| !name.is_empty() && !images.is_empty())
        .ok_or_else(|| format!("--add-export {spec:?}: expected NAME=IMAGE or NAME=D1,D2"))?;
    let images: Vec<PathBuf> = images.split(',').map(PathBuf::from).collect();
    if images.len() > 2 || images.iter().any(|i| i.as_os_str().is_empty()) {
        return Err(format!(
            "--add-export {spec:?}: give one image, or two for a pair"
        ));
    }
    Ok(ImageExport {
        name: name.to_string(),
        images,
        read_only: false,
        allow: None,
    })
}

/// Refuses a TCP address reachable from other machines unless TLS is required or the user
/// said `--insecure` (then warns): without TLS, anyone who reaches the port owns the disk.
fn check_listen_is_safe(listen: &str, tls_mode: TlsMode, insecure: bool) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    if tls_mode == TlsMode::Require {
        return Ok(());
    }
    let addrs: Vec<std::net::SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| format!("--listen {listen}: {e}"))?
        .collect();
    if !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()) {
        return Ok(());
    }
    if insecure {
        eprintln!(
            "txdisk: warning: serving {listen} without TLS required (--insecure): anyone who can \
             reach it can read and overwrite the disk"
        );
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {listen} without TLS: it is not a loopback address, so anyone who \
         can reach it could read and overwrite the disk; give --tls-certificates DIR (TLS \
         required), listen on 127.0.0.1 or a --socket, or pass --insecure"
    ))
}

#[derive(Args, Debug)]
pub struct ReplaceArgs {
    /// The control socket of the `txdisk serve` serving the pair.
    #[arg(long, value_name = "SOCKET")]
    control: PathBuf,
    /// The new member (a path or an NBD URI); without it, the pair's state is printed.
    image: Option<String>,
}

#[derive(Args, Debug)]
pub struct TlsCertsArgs {
    /// The directory to make (server/, clients/NAME/, ca-key.pem).
    dir: PathBuf,
    /// A name the server is reached by (host name or IP address). Repeatable; default
    /// localhost and 127.0.0.1.
    #[arg(long = "server-name", value_name = "NAME")]
    server_names: Vec<String>,
    /// A client certificate with this common name (its identity for `serve --allow`).
    /// Repeatable.
    #[arg(long = "client", value_name = "NAME")]
    clients: Vec<String>,
}

/// `txdisk tls-certs`: a private CA with a server and client certificates.
pub fn tls_certs(args: &TlsCertsArgs, json: bool) -> i32 {
    if args.dir.exists() {
        let message = format!(
            "tls-certs: {} exists: give a new directory (credentials are never overwritten)",
            args.dir.display()
        );
        return output::fail(json, &message);
    }
    let server_names = if args.server_names.is_empty() {
        vec!["localhost".to_string(), "127.0.0.1".to_string()]
    } else {
        args.server_names.clone()
    };
    let request = txdisk_nbd::certs::CertRequest {
        server_names,
        clients: args.clients.clone(),
    };
    match txdisk_nbd::certs::generate(&args.dir, &request) {
        Ok(made) => {
            if json {
                output::print_json(&serde_json::json!({
                    "server": made.server_dir,
                    "clients": made.client_dirs.iter().map(|(name, dir)| {
                        serde_json::json!({"name": name, "dir": dir})
                    }).collect::<Vec<_>>(),
                }));
            } else {
                println!("server: --tls-certificates {}", made.server_dir.display());
                for (name, dir) in &made.client_dirs {
                    println!("client {name}: ?tls-certificates={}", dir.display());
                }
            }
            0
        }
        Err(e) => output::fail(json, &format!("tls-certs: {e}")),
    }
}

/// `txdisk replace`: one request to a serving pair's control socket; the reply is a JSON line.
pub fn replace(args: &ReplaceArgs, json: bool) -> i32 {
    let request = match &args.image {
        Some(image) => format!("replace {image}"),
        None => "status".to_string(),
    };
    let reply = match txdisk_nbd::control::request(&args.control, &request) {
        Ok(reply) => reply,
        Err(e) => {
            let message = format!("replace: control socket {}: {e}", args.control.display());
            return output::fail(json, &message);
        }
    };
    let ok = serde_json::from_str::<serde_json::Value>(&reply)
        .ok()
        .and_then(|v| v.get("ok").and_then(|ok| ok.as_bool()))
        .unwrap_or(false);
    if ok || json {
        println!("{reply}");
    } else {
        eprintln!("txdisk: replace: {reply}");
    }
    if ok {
        0
    } else {
        txdisk_inspect::EXIT_OPERATIONAL
    }
}

/// Serves until SIGINT or SIGTERM, then flushes, closes the images cleanly and exits 0.
pub fn run(args: &ServeArgs, json: bool) -> i32 {
    let config = match args.config() {
        Ok(config) => config,
        Err(message) => return output::fail(json, &format!("serve: {message}")),
    };
    let stop = match txdisk_nbd::signal::stop_on_signals() {
        Ok(stop) => stop,
        Err(error) => {
            return output::fail(
                json,
                &format!("serve: cannot install signal handlers: {error}"),
            )
        }
    };
    let announce = |addr: &ListenAddr| {
        // The line scripts (and the tests) wait for; flushed at once.
        if json {
            output::print_json(&ListeningJson {
                listening: addr.to_string(),
                export: &args.export,
            });
        } else {
            println!("listening on {addr}");
        }
        let _ = std::io::stdout().flush();
    };
    match txdisk_nbd::serve(&config, stop, &mut |addr| announce(addr)) {
        Ok(stats) => {
            if json {
                output::print_json(&StoppedJson {
                    stopped: true,
                    connections: stats.connections,
                    requests: stats.requests,
                });
            } else {
                println!(
                    "stopped after {} connections and {} requests; images closed cleanly",
                    stats.connections, stats.requests
                );
            }
            0
        }
        Err(message) => output::fail(json, &format!("serve: {message}")),
    }
}

/// The line printed once the export accepts connections: its address and name.
#[derive(Serialize)]
struct ListeningJson<'a> {
    listening: String,
    export: &'a str,
}

/// The line printed after a clean stop: what the server handled.
#[derive(Serialize)]
struct StoppedJson {
    stopped: bool,
    connections: u64,
    requests: u64,
}
