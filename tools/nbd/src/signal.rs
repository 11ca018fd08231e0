//! SIGINT and SIGTERM as a stop flag, for programs that serve until told to stop.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Installs handlers that turn the returned flag true on SIGINT or SIGTERM; pass it to
/// [`crate::Server::serve_until`] for a graceful stop (drain, flush, close, exit 0). The
/// handlers only store to the flag (signal-hook's `flag::register`), the one thing a signal
/// handler may safely do here.
pub fn stop_on_signals() -> std::io::Result<&'static AtomicBool> {
    let stop = STOP.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(stop))?;
    }
    Ok(stop)
}
