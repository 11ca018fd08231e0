//! One image as the stack and the tools open it: a file or device, or an NBD export named by a
//! URI.
//!
//! This is the one place an image argument is interpreted ([`Member::open`], [`nbd_target`]),
//! so every entry point that takes images (the façade's `format`, `open`, `open_disk`, `scrub`;
//! the tools built on them: `serve`, `fs mount`; and `fsck`, which opens images itself) takes
//! `nbd://host[:port]/export` and `nbd+unix:///export?socket=PATH` as well as paths.

use std::path::Path;

use txdisk_disk::{Addr, Block, Disk, DiskError, FileDisk, OverlayDisk, Result};

use crate::{NbdDisk, NbdError, NbdOptions, NbdTarget};

/// The environment variable that sets the NBD timeout (milliseconds) of every remote member
/// opened through [`nbd_options`].
pub const NBD_TIMEOUT_ENV: &str = "TXDISK_NBD_TIMEOUT_MS";

/// The raw disk under one image's checksums.
#[derive(Debug)]
pub enum Member {
    /// An image file or a block device.
    File(FileDisk),
    /// An export of an NBD server.
    Nbd(Box<NbdDisk>),
    /// A member opened read-only ([`Member::open_unwritten`]): what is written stays in memory.
    Overlaid(Box<OverlayDisk<Member>>),
}

/// The NBD options remote members are opened with: the defaults, with the timeout from
/// [`NBD_TIMEOUT_ENV`] when it is set to a number.
pub fn nbd_options() -> NbdOptions {
    let mut options = NbdOptions::default();
    if let Some(timeout_ms) = std::env::var(NBD_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
    {
        options.timeout_ms = timeout_ms;
    }
    options
}

/// Why an image could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The file or device.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The NBD export (or the URI).
    #[error(transparent)]
    Nbd(#[from] NbdError),
}

/// The NBD export `image` names, when it is an NBD URI rather than a path.
pub fn nbd_target(image: &Path) -> Option<std::result::Result<NbdTarget, NbdError>> {
    let s = image.to_str()?;
    NbdTarget::looks_like_uri(s).then(|| NbdTarget::parse(s))
}

impl Member {
    /// Opens `image` for writing: an NBD URI connects to the export, anything else is a file
    /// or device (locked exclusively).
    pub fn open(image: &Path, nbd: &NbdOptions) -> std::result::Result<Member, OpenError> {
        match nbd_target(image) {
            Some(target) => Ok(Member::Nbd(Box::new(NbdDisk::connect(&target?, nbd)?))),
            None => Ok(Member::File(FileDisk::open(image)?)),
        }
    }

    /// Opens `image` for inspection: a file or device with a shared lock (no writer may hold
    /// it); an NBD export as for writing (exclusive access to an export is the server's to
    /// give: see the README).
    pub fn open_read_only(
        image: &Path,
        nbd: &NbdOptions,
    ) -> std::result::Result<Member, OpenError> {
        match nbd_target(image) {
            Some(target) => Ok(Member::Nbd(Box::new(NbdDisk::connect(&target?, nbd)?))),
            None => Ok(Member::File(FileDisk::open_read_only(image)?)),
        }
    }

    /// Opens `image` so that it is never written: a file or device read-only with a shared
    /// lock, an NBD export through the usual (writable) connection to which nothing is ever
    /// written — an export the server marks read-only is refused, as everywhere — under an
    /// overlay (at most [`txdisk_disk::OVERLAY_LIMIT_BLOCKS`] blocks) that keeps in memory whatever the
    /// layers above write (recovery's writes, a clean close's marks).
    pub fn open_unwritten(
        image: &Path,
        nbd: &NbdOptions,
    ) -> std::result::Result<Member, OpenError> {
        let below = Member::open_read_only(image, nbd)?;
        Ok(Member::Overlaid(Box::new(OverlayDisk::new(below))))
    }

    fn disk(&self) -> &dyn Disk {
        match self {
            Member::File(d) => d,
            Member::Nbd(d) => &**d,
            Member::Overlaid(d) => &**d,
        }
    }
}

impl Disk for Member {
    fn size_blocks(&self) -> u64 {
        self.disk().size_blocks()
    }
    fn read(&self, addr: Addr) -> Result<Block> {
        self.disk().read(addr)
    }
    fn write(&self, addr: Addr, block: &Block) -> Result<()> {
        self.disk().write(addr, block)
    }
    fn write_run(&self, start: Addr, blocks: &[&Block]) -> Result<()> {
        self.disk().write_run(start, blocks)
    }
    fn write_runs(&self, runs: &[(Addr, &[&Block])]) -> Result<()> {
        self.disk().write_runs(runs)
    }
    fn sync(&self) -> Result<()> {
        self.disk().sync()
    }
    fn invalidate(&self, addr: Addr) -> Result<()> {
        self.disk().invalidate(addr)
    }
    fn generation(&self, addr: Addr) -> Result<Option<u32>> {
        self.disk().generation(addr)
    }
    fn write_copy(&self, addr: Addr, block: &Block, generation: Option<u32>) -> Result<()> {
        self.disk().write_copy(addr, block, generation)
    }
    fn check_rep(&self) {
        self.disk().check_rep()
    }
}
