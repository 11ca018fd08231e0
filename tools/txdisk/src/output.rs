//! Presentation helpers: logs, progress bars, errors, sizes.

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;
use std::io::IsTerminal;
use txdisk_inspect::EXIT_OPERATIONAL;

/// Logs go to stderr through `tracing`, off unless asked for with `-v` or `RUST_LOG`.
pub fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints an operational error as one line (or a JSON object) and returns exit code 8.
pub fn fail(json: bool, message: &str) -> i32 {
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if json {
        print_json(&ErrorJson {
            error: &message,
            exit_code: EXIT_OPERATIONAL,
        });
    } else {
        eprintln!("txdisk: {message}");
    }
    EXIT_OPERATIONAL
}

/// An operational error as JSON: what went wrong, and the exit code the program returns.
#[derive(Serialize)]
struct ErrorJson<'a> {
    error: &'a str,
    exit_code: i32,
}

/// A serializable report as a JSON value, its keys sorted as serde_json's map keeps them (the
/// order the program has always printed).
pub fn json_value(report: &impl Serialize) -> Value {
    // The reports hold strings, numbers, options and lists under string keys: nothing that
    // serde_json's conversion can refuse (json! interpolation unwraps the same conversion).
    serde_json::to_value(report).expect("a derived report converts to a JSON value")
}

/// Prints a serializable report as one line of JSON on stdout.
pub fn print_json(report: &impl Serialize) {
    println!("{}", json_value(report));
}

/// A progress bar on stderr when it is a terminal (and the output is not JSON); nothing when piped.
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    pub fn new(json: bool) -> Bar {
        let visible = !json && std::io::stderr().is_terminal();
        let bar = visible.then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template("{msg:24} [{bar:40}] {percent:>3}%") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Bar { bar }
    }

    pub fn update(&mut self, phase: &str, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_message(phase.to_string());
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// A size: a plain number of 4096-byte blocks, or bytes with a K, M or G suffix (KiB, MiB, GiB
/// accepted too), which must be a whole number of blocks.
pub fn parse_blocks(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    let number: u64 = digits.parse().map_err(|_| {
        format!("bad size {text:?}: expected a number of blocks, or bytes with K, M or G")
    })?;
    let unit: u64 = match suffix.trim().to_ascii_uppercase().as_str() {
        "" => return Ok(number),
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => return Err(format!("bad size {text:?}: unknown unit {other:?}")),
    };
    let bytes = number
        .checked_mul(unit)
        .ok_or_else(|| format!("size {text:?} is too large"))?;
    if bytes % txdisk::BLOCK_SIZE as u64 != 0 {
        return Err(format!(
            "size {text:?} is not a whole number of 4096-byte blocks"
        ));
    }
    Ok(bytes / txdisk::BLOCK_SIZE as u64)
}
