//! The file system itself: one flat directory of regular files, each backed by a file of the
//! same name in a backing directory, with every data write since the file's last
//! `fsync`/`fdatasync` held in memory, page by page, until a sync writes it through or a power
//! loss drops it.

use crate::{Loss, LossReport, PowerLossError};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use txdisk_disk::rng::SplitMix64;

/// The unit in which pending writes are kept and a [`Loss::Blocks`] keeps or drops them.
pub const PAGE_BYTES: usize = 4096;
/// The unit a [`Loss::TornSectors`] keeps or drops.
pub const SECTOR_BYTES: usize = 512;
const SECTORS_PER_PAGE: usize = PAGE_BYTES / SECTOR_BYTES;

const ROOT_INO: u64 = 1;
/// Nothing is cached by the kernel: sizes change at a power loss behind its back.
const NO_CACHE: Duration = Duration::ZERO;

/// A page written since the file's last sync: its newest contents, and which of its sectors
/// the writes touched (the only ones a torn loss may tear).
struct Page {
    bytes: Box<[u8]>,
    dirty_sectors: u8,
}

/// One regular file.
struct Node {
    name: OsString,
    backing: File,
    /// The size readers see: the durable size, or more when pending writes extend it.
    len_bytes: u64,
    /// Page index → pending contents.
    pending: BTreeMap<u64, Page>,
}

impl Node {
    /// The durable contents of page `index` (zeros past the backing file's end).
    fn durable_page(&self, index: u64) -> io::Result<Box<[u8]>> {
        let mut bytes = vec![0u8; PAGE_BYTES].into_boxed_slice();
        let mut done = 0;
        while done < PAGE_BYTES {
            let offset = index * PAGE_BYTES as u64 + done as u64;
            match self.backing.read_at(&mut bytes[done..], offset)? {
                0 => break,
                n => done += n,
            }
        }
        Ok(bytes)
    }

    fn read(&self, offset: u64, size: usize) -> io::Result<Vec<u8>> {
        let end = self.len_bytes.min(offset.saturating_add(size as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let index = at / PAGE_BYTES as u64;
            let within = (at % PAGE_BYTES as u64) as usize;
            let take = (PAGE_BYTES - within).min((end - at) as usize);
            match self.pending.get(&index) {
                Some(page) => out.extend_from_slice(&page.bytes[within..within + take]),
                None => out.extend_from_slice(&self.durable_page(index)?[within..within + take]),
            }
            at += take as u64;
        }
        Ok(out)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let index = at / PAGE_BYTES as u64;
            let within = (at % PAGE_BYTES as u64) as usize;
            let take = (PAGE_BYTES - within).min(data.len() - done);
            if !self.pending.contains_key(&index) {
                let bytes = self.durable_page(index)?;
                self.pending.insert(
                    index,
                    Page {
                        bytes,
                        dirty_sectors: 0,
                    },
                );
            }
            let page = self
                .pending
                .get_mut(&index)
                .expect("the page was inserted above");
            page.bytes[within..within + take].copy_from_slice(&data[done..done + take]);
            for sector in within / SECTOR_BYTES..(within + take).div_ceil(SECTOR_BYTES) {
                page.dirty_sectors |= 1 << sector;
            }
            done += take;
        }
        self.len_bytes = self.len_bytes.max(offset + data.len() as u64);
        Ok(())
    }

    /// Writes `bytes` (part of page `index`, from `within`) to the backing file, never past
    /// the size readers see.
    fn write_through(&self, index: u64, within: usize, bytes: &[u8]) -> io::Result<()> {
        let start = index * PAGE_BYTES as u64 + within as u64;
        let end = (start + bytes.len() as u64).min(self.len_bytes);
        if start >= end {
            return Ok(());
        }
        self.backing
            .write_all_at(&bytes[..(end - start) as usize], start)
    }

    /// `fsync`/`fdatasync`: every pending page written through, then the backing file synced.
    fn sync(&mut self) -> io::Result<()> {
        for (&index, page) in &self.pending {
            self.write_through(index, 0, &page.bytes)?;
        }
        if self.backing.metadata()?.len() < self.len_bytes {
            self.backing.set_len(self.len_bytes)?;
        }
        self.backing.sync_data()?;
        self.pending.clear();
        Ok(())
    }

    /// The power goes out: each pending page or sector reaches the backing file or not, as
    /// `loss` says; the rest is gone.
    fn lose(
        &mut self,
        loss: Loss,
        rng: &mut SplitMix64,
        report: &mut LossReport,
    ) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        for (index, page) in &pending {
            report.pending_pages += 1;
            match loss {
                Loss::All => {}
                Loss::Blocks { .. } => {
                    if rng.next_u64() % 2 == 0 {
                        self.write_through(*index, 0, &page.bytes)?;
                        report.kept_pages += 1;
                    }
                }
                Loss::TornSectors { .. } => {
                    for sector in 0..SECTORS_PER_PAGE {
                        let dirty = page.dirty_sectors & (1 << sector) != 0;
                        if dirty && rng.next_u64() % 2 == 0 {
                            let within = sector * SECTOR_BYTES;
                            let bytes = &page.bytes[within..within + SECTOR_BYTES];
                            self.write_through(*index, within, bytes)?;
                            report.kept_sectors += 1;
                        }
                    }
                }
            }
        }
        self.backing.sync_data()?;
        // What readers see from now on is what survived.
        self.len_bytes = self.backing.metadata()?.len();
        Ok(())
    }

    /// `truncate`: a size change is kept at once (metadata, unlike data, is not delayed), and
    /// pending data past the new end is dropped.
    fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
        self.backing.set_len(len_bytes)?;
        self.backing.sync_all()?;
        let first_gone = len_bytes.div_ceil(PAGE_BYTES as u64);
        self.pending.retain(|&index, _| index < first_gone);
        let within = (len_bytes % PAGE_BYTES as u64) as usize;
        if within != 0 {
            if let Some(page) = self.pending.get_mut(&(len_bytes / PAGE_BYTES as u64)) {
                page.bytes[within..].fill(0);
            }
        }
        self.len_bytes = len_bytes;
        Ok(())
    }
}

/// The mutable state behind the FUSE callbacks, shared with the [`crate::PowerLossMount`].
pub(crate) struct State {
    backing_dir: PathBuf,
    nodes: BTreeMap<u64, Node>,
    next_ino: u64,
    /// Bumped at every power loss: handles opened before it are dead.
    generation: u32,
    next_handle: u32,
    uid: u32,
    gid: u32,
    syncs: u64,
    started: SystemTime,
    /// Data writes and syncs served (the operations a loss may be armed to strike at).
    operations: u64,
    /// A power loss to happen when operation number `.0` arrives, before it is applied.
    armed: Option<(u64, Loss)>,
    /// What the armed loss found, once it struck.
    fired: Option<LossReport>,
}

impl State {
    /// Serves the regular files already in `backing_dir`.
    pub(crate) fn open(backing_dir: &Path) -> Result<State, PowerLossError> {
        let backing_err = |source| PowerLossError::Backing {
            path: backing_dir.display().to_string(),
            source,
        };
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mut state = State {
            backing_dir: backing_dir.to_path_buf(),
            nodes: BTreeMap::new(),
            next_ino: ROOT_INO + 1,
            generation: 0,
            next_handle: 0,
            uid,
            gid,
            syncs: 0,
            started: SystemTime::now(),
            operations: 0,
            armed: None,
            fired: None,
        };
        for entry in std::fs::read_dir(backing_dir).map_err(backing_err)? {
            let entry = entry.map_err(backing_err)?;
            if entry.file_type().map_err(backing_err)?.is_file() {
                state.add_node(entry.file_name()).map_err(backing_err)?;
            }
        }
        Ok(state)
    }

    fn add_node(&mut self, name: OsString) -> io::Result<u64> {
        let path = self.backing_dir.join(&name);
        let backing = OpenOptions::new().read(true).write(true).open(path)?;
        let len_bytes = backing.metadata()?.len();
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                name,
                backing,
                len_bytes,
                pending: BTreeMap::new(),
            },
        );
        Ok(ino)
    }

    fn lookup(&self, name: &OsStr) -> Option<u64> {
        self.nodes
            .iter()
            .find(|(_, node)| node.name == name)
            .map(|(&ino, _)| ino)
    }

    fn handle(&mut self) -> FileHandle {
        self.next_handle = self.next_handle.wrapping_add(1);
        FileHandle(u64::from(self.generation) << 32 | u64::from(self.next_handle))
    }

    /// A handle opened before the last power loss belongs to a program that died with it.
    fn live(&self, fh: FileHandle) -> bool {
        fh.0 >> 32 == u64::from(self.generation)
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, perm, size) = if ino == ROOT_INO {
            (FileType::Directory, 0o755, 0)
        } else {
            (
                FileType::RegularFile,
                0o644,
                self.nodes.get(&ino)?.len_bytes,
            )
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind,
            perm,
            nlink: if ino == ROOT_INO { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: PAGE_BYTES as u32,
            flags: 0,
        })
    }

    fn create(&mut self, name: &OsStr) -> io::Result<u64> {
        if self.lookup(name).is_some() {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        let path = self.backing_dir.join(name);
        File::create_new(&path)?.sync_all()?;
        File::open(&self.backing_dir)?.sync_all()?;
        self.add_node(name.to_os_string())
    }

    fn unlink(&mut self, name: &OsStr) -> io::Result<()> {
        let ino = self
            .lookup(name)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        std::fs::remove_file(self.backing_dir.join(name))?;
        self.nodes.remove(&ino);
        Ok(())
    }

    fn rename(&mut self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let ino = self
            .lookup(from)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        std::fs::rename(self.backing_dir.join(from), self.backing_dir.join(to))?;
        if let Some(replaced) = self.lookup(to) {
            self.nodes.remove(&replaced);
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.name = to.to_os_string();
        }
        Ok(())
    }

    fn node_mut(&mut self, ino: u64) -> io::Result<&mut Node> {
        self.nodes
            .get_mut(&ino)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    fn sync(&mut self, ino: u64) -> io::Result<()> {
        self.node_mut(ino)?.sync()?;
        self.syncs += 1;
        Ok(())
    }

    pub(crate) fn lose_power(&mut self, loss: Loss) -> io::Result<LossReport> {
        self.generation = self.generation.wrapping_add(1);
        let mut rng = SplitMix64::new(loss.seed());
        let mut report = LossReport::default();
        for node in self.nodes.values_mut() {
            node.lose(loss, &mut rng, &mut report)?;
        }
        Ok(report)
    }

    /// Arms a loss to strike when the `after`-th data write or sync from now arrives.
    pub(crate) fn arm(&mut self, after: u64, loss: Loss) {
        self.armed = Some((self.operations + after, loss));
        self.fired = None;
    }

    /// Disarms; returns what the armed loss found if it struck.
    pub(crate) fn disarm(&mut self) -> Option<LossReport> {
        self.armed = None;
        self.fired.take()
    }

    /// Counts an arriving write or sync; true if the power went out just before it (the
    /// caller then fails it, as the program making it died).
    fn arrives(&mut self) -> io::Result<bool> {
        self.operations += 1;
        match self.armed {
            Some((at, loss)) if self.operations >= at => {
                self.armed = None;
                self.fired = Some(self.lose_power(loss)?);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub(crate) fn pending_pages(&self) -> usize {
        self.nodes.values().map(|node| node.pending.len()).sum()
    }

    pub(crate) fn syncs(&self) -> u64 {
        self.syncs
    }
}

fn errno(error: &io::Error) -> Errno {
    Errno::from_i32(error.raw_os_error().unwrap_or(libc::EIO))
}

/// The FUSE side: every callback takes the state's lock for its whole run, so a power loss
/// falls between two requests, never inside one.
pub(crate) struct PowerLossFs {
    pub(crate) state: Arc<Mutex<State>>,
}

impl PowerLossFs {
    fn in_root(parent: INodeNo) -> Result<(), Errno> {
        if parent.0 == ROOT_INO {
            Ok(())
        } else {
            Err(Errno::ENOENT)
        }
    }

    fn reply_entry(state: &State, ino: io::Result<u64>, reply: ReplyEntry) {
        match ino.map(|ino| state.attr(ino)) {
            Ok(Some(attr)) => reply.entry(&NO_CACHE, &attr, Generation(0)),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(error) => reply.error(errno(&error)),
        }
    }
}

impl Filesystem for PowerLossFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if let Err(e) = Self::in_root(parent) {
            return reply.error(e);
        }
        let state = self.state.lock();
        match state.lookup(name).and_then(|ino| state.attr(ino)) {
            Some(attr) => reply.entry(&NO_CACHE, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state.lock().attr(ino.0) {
            Some(attr) => reply.attr(&NO_CACHE, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state.lock();
        if let Some(len_bytes) = size {
            if let Err(error) = state.node_mut(ino.0).and_then(|n| n.set_len(len_bytes)) {
                return reply.error(errno(&error));
            }
        }
        match state.attr(ino.0) {
            Some(attr) => reply.attr(&NO_CACHE, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if let Err(e) = Self::in_root(parent) {
            return reply.error(e);
        }
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let mut state = self.state.lock();
        let ino = state.create(name);
        Self::reply_entry(&state, ino, reply);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        if let Err(e) = Self::in_root(parent) {
            return reply.error(e);
        }
        let mut state = self.state.lock();
        let ino = match state.create(name) {
            Ok(ino) => ino,
            Err(error) => return reply.error(errno(&error)),
        };
        let fh = state.handle();
        match state.attr(ino) {
            Some(attr) => reply.created(
                &NO_CACHE,
                &attr,
                Generation(0),
                fh,
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            None => reply.error(Errno::EIO),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.state.lock();
        if !state.nodes.contains_key(&ino.0) {
            return reply.error(Errno::ENOENT);
        }
        // Direct I/O: every read and write comes here, none is served from the page cache,
        // which would keep what a power loss dropped.
        let fh = state.handle();
        reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let state = self.state.lock();
        if !state.live(fh) {
            return reply.error(Errno::EIO);
        }
        match state
            .nodes
            .get(&ino.0)
            .map(|n| n.read(offset, size as usize))
        {
            Some(Ok(bytes)) => reply.data(&bytes),
            Some(Err(error)) => reply.error(errno(&error)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state.lock();
        if !state.live(fh) || !matches!(state.arrives(), Ok(false)) {
            return reply.error(Errno::EIO);
        }
        match state.node_mut(ino.0).and_then(|n| n.write(offset, data)) {
            Ok(()) => reply.written(data.len() as u32),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable, here as on a real file system.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state.lock();
        if !state.live(fh) || !matches!(state.arrives(), Ok(false)) {
            return reply.error(Errno::EIO);
        }
        match state.sync(ino.0) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Names are durable as soon as they change.
        reply.ok();
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if let Err(e) = Self::in_root(parent) {
            return reply.error(e);
        }
        match self.state.lock().unlink(name) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if let Err(e) = Self::in_root(parent).and(Self::in_root(newparent)) {
            return reply.error(e);
        }
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        match self.state.lock().rename(name, newname) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != ROOT_INO {
            return reply.error(Errno::ENOTDIR);
        }
        let state = self.state.lock();
        let dots = [
            (ROOT_INO, FileType::Directory, OsStr::new(".")),
            (ROOT_INO, FileType::Directory, OsStr::new("..")),
        ];
        let files = state
            .nodes
            .iter()
            .map(|(&ino, node)| (ino, FileType::RegularFile, node.name.as_os_str()));
        for (index, (child, kind, name)) in dots
            .into_iter()
            .chain(files)
            .enumerate()
            .skip(offset as usize)
        {
            if reply.add(INodeNo(child), index as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
