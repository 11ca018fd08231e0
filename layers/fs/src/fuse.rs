//! A FUSE front end (feature `fuse`): serves an [`Fs`] on any [`TxStore`] at a mount point
//! with the `fuser` crate's own mount (no libfuse; needs root or a usable `/dev/fuse`).
//!
//! Each FUSE request is one file-system operation, so it is one store transaction (a large
//! write one per chunk), committed without waiting for the disk. `fsync`, `fdatasync`,
//! `fsyncdir` and unmounting are one flush of the store, which makes every operation
//! completed before it durable (`sync` and `syncfs` send no request to a FUSE file system, so
//! they only have the kernel write back what it holds: use `fsync` of any file); a
//! background flusher does the same every [`MountOptions::flush_interval`] (5 s by default,
//! as ext4's `commit=5`) when anything changed, so a crash loses at most that much. Mode,
//! owner, group, times and device numbers are stored; the kernel checks permissions
//! (`default_permissions`). Extended attributes are not supported (the kernel answers
//! `EOPNOTSUPP`, which `cp -a` and `tar` accept); access times are kept as set, not updated
//! by reads (`noatime`).

use crate::error::FsError;
use crate::format::{Ino, Kind, Timestamp, PERM_MASK};
use crate::fs::{Fs, NewInode, RenameMode, SetAttr, Stat};
use crate::store::TxStore;
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use txdisk_disk::BLOCK_SIZE;

/// How long the kernel may cache attributes and names: the mount is the only writer.
const TTL: Duration = Duration::from_secs(1);

/// Entries gathered per `readdir` request (the kernel's buffer takes what fits).
const READDIR_BATCH: usize = 256;

/// How a mount behaves.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// How often the background flusher makes completed operations durable when any are not
    /// yet (`None`: only `fsync` and unmount do). Bounds what a crash can take.
    pub flush_interval: Option<Duration>,
}

/// The background flush interval when none is given: 5 s, as ext4's default `commit=5`.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flush_interval: Some(DEFAULT_FLUSH_INTERVAL),
        }
    }
}

/// The background flusher: a thread that flushes every interval while anything is unflushed,
/// until told to stop.
struct Flusher {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Flusher {
    fn start<S: TxStore + 'static>(fs: Arc<Fs<S>>, interval: Duration) -> io::Result<Flusher> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("txdisk-fs-flush".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    if fs.unflushed_ops() > 0 {
                        if let Err(error) = fs.fsync() {
                            eprintln!("txdisk-fs: background flush failed: {error}");
                        }
                    }
                }
            })?;
        Ok(Flusher { stop, thread })
    }

    fn stop(self) {
        // The thread ends at its next wake-up either way; a send error means it already has.
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            eprintln!("txdisk-fs: the background flusher panicked");
        }
    }
}

/// An [`Fs`] served over FUSE.
pub struct FuseFs<S: TxStore> {
    fs: Arc<Fs<S>>,
    options: MountOptions,
    flusher: Option<Flusher>,
}

/// A stored time as the kernel gets it; one the platform's clock cannot hold (from a damaged
/// inode, or set far out) is clamped to the epoch rather than ending the server.
fn system_time_of(time: Timestamp) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(time.nanos));
    let whole = Duration::from_secs(time.secs.unsigned_abs());
    let at = if time.secs >= 0 {
        UNIX_EPOCH.checked_add(whole)
    } else {
        UNIX_EPOCH.checked_sub(whole)
    };
    at.and_then(|at| at.checked_add(nanos))
        .unwrap_or(UNIX_EPOCH)
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

fn errno(error: &FsError) -> Errno {
    Errno::from_i32(error.errno())
}

impl<S: TxStore> FuseFs<S> {
    /// Serves `fs` with `options`.
    pub fn new(fs: Arc<Fs<S>>, options: MountOptions) -> FuseFs<S> {
        FuseFs {
            fs,
            options,
            flusher: None,
        }
    }

    fn attr(&self, stat: &Stat) -> FileAttr {
        FileAttr {
            ino: INodeNo(stat.ino),
            size: stat.size_bytes,
            // In 512-byte units, as st_blocks.
            blocks: stat.blocks * (BLOCK_SIZE as u64 / 512),
            atime: system_time_of(stat.atime),
            mtime: system_time_of(stat.mtime),
            ctime: system_time_of(stat.ctime),
            crtime: system_time_of(stat.ctime),
            kind: file_type(stat.kind),
            perm: stat.perm as u16,
            nlink: stat.nlink,
            uid: stat.uid,
            gid: stat.gid,
            rdev: stat.rdev,
            blksize: BLOCK_SIZE as u32,
            flags: 0,
        }
    }

    /// A time `utimensat` asked for: a given one, or now by the file system's clock.
    fn time_of(&self, time: Option<TimeOrNow>) -> Option<Timestamp> {
        time.map(|time| match time {
            TimeOrNow::SpecificTime(at) => Timestamp::from_system_time(at),
            TimeOrNow::Now => self.fs.clock().now(),
        })
    }

    fn reply_entry(&self, ino: Result<Ino, FsError>, reply: ReplyEntry) {
        match ino.and_then(|ino| self.fs.stat(ino)) {
            Ok(stat) => reply.entry(&TTL, &self.attr(&stat), Generation(0)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn reply_empty(result: Result<(), FsError>, reply: ReplyEmpty) {
        match result {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(errno(&error)),
        }
    }
}

impl<S: TxStore + 'static> Filesystem for FuseFs<S> {
    fn init(&mut self, _req: &Request, _config: &mut KernelConfig) -> io::Result<()> {
        if let Some(interval) = self.options.flush_interval {
            self.flusher = Some(Flusher::start(Arc::clone(&self.fs), interval)?);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        if let Some(flusher) = self.flusher.take() {
            flusher.stop();
        }
        // The session is ending (unmount): make every completed operation durable.
        if let Err(error) = self.fs.fsync() {
            tracing_free_warn(&error);
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.fs.lookup(parent.0, name.as_bytes()) {
            // A negative entry (node 0) the kernel may cache for the TTL: the mount is the
            // only writer, and the kernel drops it itself when it creates the name. It saves
            // a round trip per create (the kernel looks a name up before creating it).
            Err(FsError::NotFound) => {
                let absent = FileAttr {
                    ino: INodeNo(0),
                    ..self.attr(&Stat {
                        ino: 0,
                        kind: Kind::File,
                        perm: 0,
                        uid: 0,
                        gid: 0,
                        size_bytes: 0,
                        nlink: 0,
                        blocks: 0,
                        atime: Timestamp::default(),
                        mtime: Timestamp::default(),
                        ctime: Timestamp::default(),
                        rdev: 0,
                    })
                };
                reply.entry(&TTL, &absent, Generation(0));
            }
            found => self.reply_entry(found, reply),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.stat(ino.0) {
            Ok(stat) => reply.attr(&TTL, &self.attr(&stat)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttr {
            perm: mode.map(|mode| mode & PERM_MASK),
            uid,
            gid,
            size_bytes: size,
            atime: self.time_of(atime),
            mtime: self.time_of(mtime),
        };
        match self.fs.setattr(ino.0, &change) {
            Ok(stat) => reply.attr(&TTL, &self.attr(&stat)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let made = self.fs.symlink(
            parent.0,
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
            req.uid(),
            req.gid(),
        );
        self.reply_entry(made, reply);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let Some(kind) = Kind::from_mode(mode).filter(|&kind| kind != Kind::Dir) else {
            reply.error(Errno::EINVAL);
            return;
        };
        let new = new_inode(req, kind, mode, umask, rdev);
        self.reply_entry(self.fs.make_node(parent.0, name.as_bytes(), &new), reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let new = new_inode(req, Kind::Dir, mode, umask, 0);
        self.reply_entry(self.fs.make_node(parent.0, name.as_bytes(), &new), reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::reply_empty(self.fs.unlink(parent.0, name.as_bytes()), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::reply_empty(self.fs.rmdir(parent.0, name.as_bytes()), reply);
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
        let (name, newname) = (name.as_bytes(), newname.as_bytes());
        let mode = if flags.is_empty() {
            Ok(RenameMode::Replace)
        } else if flags == RenameFlags::RENAME_NOREPLACE {
            Ok(RenameMode::NoReplace)
        } else if flags == RenameFlags::RENAME_EXCHANGE {
            Ok(RenameMode::Exchange)
        } else {
            Err(FsError::InvalidArgument(
                "rename flags other than NOREPLACE or EXCHANGE",
            ))
        };
        let result = mode.and_then(|mode| {
            self.fs
                .rename_with(parent.0, name, newparent.0, newname, mode)
        });
        Self::reply_empty(result, reply);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = self
            .fs
            .link(ino.0, newparent.0, newname.as_bytes())
            .map(|()| ino.0);
        self.reply_entry(result, reply);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(ino.0, offset, size as usize) {
            Ok(bytes) => reply.data(&bytes),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs.write(ino.0, offset, data) {
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
        // Every write is already committed; close(2) need not wait for durability.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::reply_empty(self.fs.fsync(), reply);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::reply_empty(self.fs.fsync(), reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        // Offsets: 1 after ".", 2 after "..", and after an entry the next position (its key
        // plus one): valid however the directory changes between calls.
        if offset == 0 && reply.add(ino, 1, FileType::Directory, OsStr::new(".")) {
            reply.ok();
            return;
        }
        let parent = match self.fs.parent_of(ino.0) {
            Ok(parent) => INodeNo(parent),
            Err(error) => {
                reply.error(errno(&error));
                return;
            }
        };
        if offset <= 1 && reply.add(parent, 2, FileType::Directory, OsStr::new("..")) {
            reply.ok();
            return;
        }
        let entries = match self.fs.readdir_from(ino.0, offset, READDIR_BATCH) {
            Ok(entries) => entries,
            Err(error) => {
                reply.error(errno(&error));
                return;
            }
        };
        for (i, entry) in entries.iter().enumerate() {
            // Entries of one key (a hash collision, rare) resume at the key, so that a batch
            // cut between them repeats some rather than skipping any.
            let same_key_follows = entries
                .get(i + 1)
                .is_some_and(|next| next.offset == entry.offset);
            let next = if same_key_follows {
                entry.offset
            } else {
                entry.offset + 1
            };
            let name = OsStr::from_bytes(&entry.name);
            if reply.add(INodeNo(entry.ino), next, file_type(entry.kind), name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs() {
            Ok(stats) => reply.statfs(
                stats.blocks,
                stats.free_blocks,
                stats.free_blocks,
                stats.inodes,
                stats.free_inodes,
                BLOCK_SIZE as u32,
                crate::format::NAME_MAX as u32,
                BLOCK_SIZE as u32,
            ),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let new = new_inode(req, Kind::File, mode, umask, 0);
        match self
            .fs
            .make_node(parent.0, name.as_bytes(), &new)
            .and_then(|ino| self.fs.stat(ino))
        {
            Ok(stat) => reply.created(
                &TTL,
                &self.attr(&stat),
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(error) => reply.error(errno(&error)),
        }
    }
}

/// What a create, mkdir or mknod from `req` makes: its permission bits less the umask, owned
/// by the caller.
fn new_inode(req: &Request, kind: Kind, mode: u32, umask: u32, rdev: u32) -> NewInode {
    NewInode {
        kind,
        perm: mode & !umask & PERM_MASK,
        uid: req.uid(),
        gid: req.gid(),
        rdev,
    }
}

/// A failure to flush at unmount has no one to report to but the log.
fn tracing_free_warn(error: &FsError) {
    eprintln!("txdisk-fs: flush at unmount failed: {error}");
}

/// The mount options used: the file-system name shows in `mount` and `df`.
fn config() -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("txdisk".to_string()),
        MountOption::Subtype("txdisk".to_string()),
        MountOption::RW,
        MountOption::NoAtime,
        MountOption::DefaultPermissions,
    ];
    config
}

/// Mounts `fs` at `mountpoint` with the default [`MountOptions`] and serves it on a
/// background thread until the returned session is unmounted (`umount_and_join`) or dropped;
/// the store is flushed when the session ends.
pub fn spawn_mount<S: TxStore + 'static>(
    fs: Arc<Fs<S>>,
    mountpoint: &Path,
) -> io::Result<fuser::BackgroundSession> {
    spawn_mount_with(fs, mountpoint, &MountOptions::default())
}

/// [`spawn_mount`] with `options`.
pub fn spawn_mount_with<S: TxStore + 'static>(
    fs: Arc<Fs<S>>,
    mountpoint: &Path,
    options: &MountOptions,
) -> io::Result<fuser::BackgroundSession> {
    fuser::spawn_mount(FuseFs::new(fs, options.clone()), mountpoint, &config())
}

/// Mounts `fs` at `mountpoint` and serves it until `stop` receives a message or is dropped
/// (a signal handler's cue to unmount, e.g. on SIGINT/SIGTERM) or someone unmounts the
/// directory; then unmounts if still mounted and flushes the store, so that every completed
/// operation is durable when this returns `Ok`.
pub fn serve_until<S: TxStore + 'static>(
    fs: Arc<Fs<S>>,
    mountpoint: &Path,
    options: &MountOptions,
    stop: &std::sync::mpsc::Receiver<()>,
) -> io::Result<()> {
    use std::sync::mpsc::RecvTimeoutError;
    let session = spawn_mount_with(Arc::clone(&fs), mountpoint, options)?;
    loop {
        // Polling lets an external `umount` end the wait too; the interval only bounds how
        // long that takes to notice.
        match stop.recv_timeout(Duration::from_millis(200)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) if session.guard.is_finished() => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    let ended = if session.guard.is_finished() {
        session.join()
    } else {
        session.umount_and_join()
    };
    // Flush even if the session ended with an error: what completed must be durable.
    let flushed = fs.fsync().map_err(io::Error::other);
    ended.and(flushed)
}

/// Mounts `fs` at `mountpoint` and serves it on this thread until it is unmounted.
pub fn mount<S: TxStore + 'static>(
    fs: Arc<Fs<S>>,
    mountpoint: &Path,
    options: &MountOptions,
) -> io::Result<()> {
    fuser::mount(FuseFs::new(fs, options.clone()), mountpoint, &config())
}
