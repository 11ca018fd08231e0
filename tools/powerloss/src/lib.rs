//! # txdisk-powerloss: power loss under the real I/O path
//!
//! **What it offers.** [`PowerLossMount`]: a small FUSE file system (on `fuser`, no libfuse)
//! that serves the files of a backing directory and keeps every data write made since a
//! file's last `fsync`/`fdatasync` in memory, the way LazyFS does. On command
//! ([`PowerLossMount::lose_power`]) it drops them — all of them ([`Loss::All`]), a seeded
//! subset of 4096-byte pages ([`Loss::Blocks`]), or a seeded subset of 512-byte sectors
//! ([`Loss::TornSectors`]) — and every file handle opened before the loss fails with `EIO`
//! from then on, as the programs that held them would have died. A loss can also be armed
//! ([`PowerLossMount::arm`]) to strike at the n-th write or sync to arrive, so that it falls
//! between a `pwrite` and its `fdatasync`. So a `FileDisk`, a replicated
//! pair of them, `txdisk serve` and the file system over it can be crashed through their real
//! `pwrite` and `fdatasync` calls: a `sync` that forgot its `fdatasync` loses data here, which
//! no simulated disk can show.
//!
//! And [`campaign`]: crash campaigns of those four users of the stack, each checked by a
//! prefix oracle ([`oracle::BlockOracle`] for block workloads; the file system's own
//! `txdisk_fs::oracle::Recorder` for the file system), with a replay token per run.
//!
//! ```text
//!  FileDisk / pair / serve / fs ──pwrite, fdatasync──► /dev/fuse ──► PowerLossFs
//!                                                                    pending pages (memory)
//!                                   lose_power(All | Blocks | Torn) ─┤  fsync: write through
//!                                                                    ▼
//!                                                          backing directory (durable)
//! ```
//!
//! **Rep invariant.** A pending page exists only for a page written since its file's last
//! sync; the size a reader sees is the backing file's, or more where pending writes extend
//! it; a handle is live only if it was opened in the current generation (since the last loss).
//!
//! **Crash model.** Data writes are lost unless synced; names (create, unlink, rename) and
//! size changes by `truncate` are durable at once (as a journaling file system's metadata
//! usually is, and as the stack never relies on otherwise: images are made and sized before
//! they are used). `close(2)` makes nothing durable. A loss falls between two FUSE requests:
//! every callback holds the state's lock for its whole run.
//!
//! Only for tests: it needs `/dev/fuse` and the right to mount (root). [`unavailable`] says
//! why a test must skip.

#![deny(missing_docs)]

pub mod campaign;
mod fs;
pub mod oracle;

pub use fs::{PAGE_BYTES, SECTOR_BYTES};

use fs::{PowerLossFs, State};
use fuser::{BackgroundSession, Config, MountOption};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a power loss keeps of the writes not yet synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Nothing: every pending write is gone.
    All,
    /// Each pending 4096-byte page reaches the disk whole, or not at all (seeded).
    Blocks {
        /// Chooses the pages.
        seed: u64,
    },
    /// Each written 512-byte sector of a pending page reaches the disk, or not (seeded): a
    /// block may end half old, half new.
    TornSectors {
        /// Chooses the sectors.
        seed: u64,
    },
}

impl Loss {
    fn seed(self) -> u64 {
        match self {
            Loss::All => 0,
            Loss::Blocks { seed } | Loss::TornSectors { seed } => seed,
        }
    }

    /// The loss's name in tokens: `all`, `blocks` or `torn`.
    pub fn kind(self) -> &'static str {
        match self {
            Loss::All => "all",
            Loss::Blocks { .. } => "blocks",
            Loss::TornSectors { .. } => "torn",
        }
    }

    /// The loss of kind `kind` (as [`Loss::kind`] names it) with `seed`.
    pub fn from_kind(kind: &str, seed: u64) -> Option<Loss> {
        match kind {
            "all" => Some(Loss::All),
            "blocks" => Some(Loss::Blocks { seed }),
            "torn" => Some(Loss::TornSectors { seed }),
            _ => None,
        }
    }
}

/// What one power loss found and kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LossReport {
    /// Pages written since their file's last sync.
    pub pending_pages: u64,
    /// Of those, pages that reached the disk whole ([`Loss::Blocks`]).
    pub kept_pages: u64,
    /// Sectors that reached the disk ([`Loss::TornSectors`]).
    pub kept_sectors: u64,
}

/// Why the file system cannot be mounted or used.
#[derive(Debug, thiserror::Error)]
pub enum PowerLossError {
    /// FUSE cannot be used on this machine (the reason says why).
    #[error("FUSE is unavailable: {0}")]
    Unavailable(String),
    /// The backing directory cannot be read, or a file in it written.
    #[error("backing directory {path}: {source}")]
    Backing {
        /// The backing directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The mount failed.
    #[error("mounting at {path}: {source}")]
    Mount {
        /// The mount point.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why a test that needs this file system must skip here, or `None` if it can run.
pub fn unavailable() -> Option<String> {
    let fuse = Path::new("/dev/fuse");
    if !fuse.exists() {
        return Some("/dev/fuse is absent".into());
    }
    if let Err(error) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fuse)
    {
        return Some(format!("/dev/fuse cannot be opened: {error}"));
    }
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Some("mounting without libfuse's setuid helper needs root".into());
    }
    None
}

/// A mounted power-loss file system; unmounted when dropped.
pub struct PowerLossMount {
    session: Option<BackgroundSession>,
    state: Arc<Mutex<State>>,
    mountpoint: PathBuf,
}

impl PowerLossMount {
    /// Serves the files of `backing_dir` at `mountpoint` (an empty directory) on a background
    /// thread of this process.
    pub fn mount(backing_dir: &Path, mountpoint: &Path) -> Result<PowerLossMount, PowerLossError> {
        if let Some(reason) = unavailable() {
            return Err(PowerLossError::Unavailable(reason));
        }
        let state = Arc::new(Mutex::new(State::open(backing_dir)?));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("powerloss".into()),
            MountOption::Subtype("powerloss".into()),
            MountOption::RW,
        ];
        let filesystem = PowerLossFs {
            state: Arc::clone(&state),
        };
        let session = fuser::spawn_mount(filesystem, mountpoint, &config).map_err(|source| {
            PowerLossError::Mount {
                path: mountpoint.display().to_string(),
                source,
            }
        })?;
        Ok(PowerLossMount {
            session: Some(session),
            state,
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The power goes out: pending writes are kept or dropped as `loss` says, and every open
    /// handle fails from now on. Reopen the files to go on, as after a reboot.
    pub fn lose_power(&self, loss: Loss) -> Result<LossReport, PowerLossError> {
        self.state
            .lock()
            .lose_power(loss)
            .map_err(|source| PowerLossError::Backing {
                path: self.mountpoint.display().to_string(),
                source,
            })
    }

    /// Arms a power loss (as [`PowerLossMount::lose_power`]) to strike when the `after`-th
    /// data write or sync from now arrives, before it is applied: between a program's
    /// `pwrite` and its `fdatasync`, or in the middle of a run of writes. The request that
    /// meets it fails with `EIO`, as does every later one on a handle opened before it.
    pub fn arm(&self, after: u64, loss: Loss) {
        self.state.lock().arm(after.max(1), loss);
    }

    /// Disarms the armed loss; returns what it found if it struck.
    pub fn disarm(&self) -> Option<LossReport> {
        self.state.lock().disarm()
    }

    /// Pages written and not yet synced, over every file.
    pub fn pending_pages(&self) -> usize {
        self.state.lock().pending_pages()
    }

    /// `fsync`/`fdatasync` calls served so far.
    pub fn syncs(&self) -> u64 {
        self.state.lock().syncs()
    }
}

impl Drop for PowerLossMount {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if let Err(error) = session.umount_and_join() {
                eprintln!(
                    "powerloss: unmounting {}: {error}",
                    self.mountpoint.display()
                );
            }
        }
    }
}
