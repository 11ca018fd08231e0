//! `txdisk serve`: the logical disk as an NBD export (each WRITE one atomic transaction).

use crate::output;
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The image, or the first member (d1) of a pair.
    image: PathBuf,
    /// The second member (d2) of a pair.
    image2: Option<PathBuf>,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:10809")]
    listen: String,
    /// The export's name.
    #[arg(long, default_value = "txdisk")]
    export: String,
    /// A Unix socket for `txdisk replace` (a pair only): replace a failed member while serving.
    #[arg(long, value_name = "SOCKET")]
    control: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ReplaceArgs {
    /// The control socket of the `txdisk serve` serving the pair.
    #[arg(long, value_name = "SOCKET")]
    control: PathBuf,
    /// The new member (a path or an NBD URI); without it, the pair's state is printed.
    image: Option<String>,
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
    let images: Vec<PathBuf> = std::iter::once(args.image.clone())
        .chain(args.image2.clone())
        .collect();
    let stop = match txdisk_nbd::signal::stop_on_signals() {
        Ok(stop) => stop,
        Err(error) => {
            return output::fail(
                json,
                &format!("serve: cannot install signal handlers: {error}"),
            )
        }
    };
    let announce = |addr: std::net::SocketAddr| {
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
    let control = args.control.as_deref();
    match txdisk_nbd::serve_images_with_control(
        &images,
        &args.listen,
        &args.export,
        control,
        stop,
        &mut |addr| announce(addr),
    ) {
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
