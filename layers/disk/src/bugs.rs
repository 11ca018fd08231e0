//! Deliberately wrong variants of the disk layer, for proving that the power-loss campaign
//! (`tools/powerloss`) catches a real I/O path that lies about durability. The list is always
//! there; the switch that turns one on is compiled only with the `deliberate-bugs` feature.
//!
//! Unlike the other layers' switches, which are per thread, this one is keyed by path: a
//! `FileDisk` is synced from whatever thread the stack above uses (a committer, the pair's
//! syncer, the installer), so a thread-local switch would miss most of its syncs. A variant is
//! turned on for the images opened under one directory, which keeps tests that run in parallel
//! threads of one process apart.

#[cfg(feature = "deliberate-bugs")]
use std::path::{Path, PathBuf};

/// A known-wrong change to the disk layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// `FileDisk::sync` returns Ok without calling `fdatasync`: nothing is ever made durable,
    /// which only a power loss (not a process crash) can show.
    SyncWithoutFdatasync,
}

impl Bug {
    /// Every variant.
    pub const ALL: [Bug; 1] = [Bug::SyncWithoutFdatasync];

    /// The variant's name on command lines and in tokens.
    pub fn name(self) -> &'static str {
        match self {
            Bug::SyncWithoutFdatasync => "sync-without-fdatasync",
        }
    }

    /// The variant named `name`.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|bug| bug.name() == name)
    }
}

// A real lock, not one of `sync`'s: the switch is test configuration, set before a stack is
// opened, never part of what a schedule explores.
#[cfg(feature = "deliberate-bugs")]
static ACTIVE: parking_lot::Mutex<Vec<(Bug, PathBuf)>> = parking_lot::Mutex::new(Vec::new());

/// Turns `bug` on for every `FileDisk` opened or created from now on at a path under `dir`.
#[cfg(feature = "deliberate-bugs")]
pub fn set_under(bug: Bug, dir: &Path) {
    ACTIVE.lock().push((bug, dir.to_path_buf()));
}

/// Turns every variant off for the paths under `dir` (disks already open keep theirs).
#[cfg(feature = "deliberate-bugs")]
pub fn clear_under(dir: &Path) {
    ACTIVE.lock().retain(|(_, under)| under != dir);
}

#[cfg(feature = "deliberate-bugs")]
pub(crate) fn active_for(bug: Bug, path: &Path) -> bool {
    ACTIVE
        .lock()
        .iter()
        .any(|(active, under)| *active == bug && path.starts_with(under))
}
