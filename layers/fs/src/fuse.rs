//! A FUSE front end (feature `fuse`): serves an [`Fs`] on any [`TxStore`] at a mount point
//! with the `fuser` crate's own mount (no libfuse; needs root or a usable `/dev/fuse`).
//!
//! Each FUSE request is one file-system operation, so it is one store transaction (a large
//! write one per chunk). `fsync`, `fsyncdir` and unmounting flush the store, so once the
//! session has ended every completed operation is durable. Permissions, owners and times are
//! not stored: files show mode 0644, directories 0755, the mount point's owner, and the mount
//! time; `chmod`, `chown` and `utime` succeed and change nothing.

use crate::error::FsError;
use crate::format::{Ino, Kind};
use crate::fs::{Fs, Stat};
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
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use txdisk_disk::BLOCK_SIZE;

/// How long the kernel may cache attributes and names: the mount is the only writer.
const TTL: Duration = Duration::from_secs(1);

/// An [`Fs`] served over FUSE.
pub struct FuseFs<S: TxStore> {
    fs: Arc<Fs<S>>,
    uid: u32,
    gid: u32,
    mounted_at: SystemTime,
}

fn errno(error: &FsError) -> Errno {
    Errno::from_i32(error.errno())
}

impl<S: TxStore> FuseFs<S> {
    /// Serves `fs`, showing files as owned by `uid`:`gid`.
    pub fn new(fs: Arc<Fs<S>>, uid: u32, gid: u32) -> FuseFs<S> {
        FuseFs {
            fs,
            uid,
            gid,
            mounted_at: SystemTime::now(),
        }
    }

    fn attr(&self, stat: &Stat) -> FileAttr {
        let (kind, perm) = match stat.kind {
            Kind::File => (FileType::RegularFile, 0o644),
            Kind::Dir => (FileType::Directory, 0o755),
        };
        FileAttr {
            ino: INodeNo(stat.ino),
            size: stat.size_bytes,
            // In 512-byte units, as st_blocks.
            blocks: stat.blocks * (BLOCK_SIZE as u64 / 512),
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
            kind,
            perm,
            nlink: stat.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLOCK_SIZE as u32,
            flags: 0,
        }
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

    fn rename_noreplace(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
    ) -> Result<(), FsError> {
        match self.fs.lookup(new_parent, new_name) {
            Ok(_) => Err(FsError::Exists),
            Err(FsError::NotFound) => self.fs.rename(parent, name, new_parent, new_name),
            Err(error) => Err(error),
        }
    }
}

impl<S: TxStore + 'static> Filesystem for FuseFs<S> {
    fn init(&mut self, _req: &Request, _config: &mut KernelConfig) -> io::Result<()> {
        Ok(())
    }

    fn destroy(&mut self) {
        // The session is ending (unmount): make every completed operation durable.
        if let Err(error) = self.fs.fsync() {
            tracing_free_warn(&error);
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.reply_entry(self.fs.lookup(parent.0, name.as_bytes()), reply);
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
        let result = match size {
            Some(size_bytes) => self.fs.truncate(ino.0, size_bytes),
            None => Ok(()),
        };
        match result.and_then(|()| self.fs.stat(ino.0)) {
            Ok(stat) => reply.attr(&TTL, &self.attr(&stat)),
            Err(error) => reply.error(errno(&error)),
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
        // Only regular files exist here.
        const S_IFMT: u32 = 0o170_000;
        const S_IFREG: u32 = 0o100_000;
        if mode & S_IFMT != S_IFREG {
            reply.error(Errno::EPERM);
            return;
        }
        self.reply_entry(self.fs.create(parent.0, name.as_bytes()), reply);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        self.reply_entry(self.fs.mkdir(parent.0, name.as_bytes()), reply);
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
        let result = if flags.is_empty() {
            self.fs.rename(parent.0, name, newparent.0, newname)
        } else if flags == RenameFlags::RENAME_NOREPLACE {
            self.rename_noreplace(parent.0, name, newparent.0, newname)
        } else {
            Err(FsError::InvalidArgument(
                "rename flags other than NOREPLACE",
            ))
        };
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
        let entries = match self.fs.readdir(ino.0) {
            Ok(entries) => entries,
            Err(error) => {
                reply.error(errno(&error));
                return;
            }
        };
        // Offsets: 1 after ".", 2 after "..", 3 + i after entry i.
        let dots = [
            (ino.0, FileType::Directory, &b"."[..]),
            (ino.0, FileType::Directory, &b".."[..]),
        ];
        let listed = dots.into_iter().chain(entries.iter().map(|entry| {
            let kind = match entry.kind {
                Kind::File => FileType::RegularFile,
                Kind::Dir => FileType::Directory,
            };
            (entry.ino, kind, entry.name.as_slice())
        }));
        for (index, (child, kind, name)) in listed.enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(child),
                index as u64 + 1,
                kind,
                OsStr::from_bytes(name),
            ) {
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
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self
            .fs
            .create(parent.0, name.as_bytes())
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
    ];
    config
}

fn owner(mountpoint: &Path) -> io::Result<(u32, u32)> {
    let metadata = std::fs::metadata(mountpoint)?;
    Ok((metadata.uid(), metadata.gid()))
}

/// Mounts `fs` at `mountpoint` and serves it on a background thread until the returned session
/// is unmounted (`umount_and_join`) or dropped; the store is flushed when the session ends.
pub fn spawn_mount<S: TxStore + 'static>(
    fs: Arc<Fs<S>>,
    mountpoint: &Path,
) -> io::Result<fuser::BackgroundSession> {
    let (uid, gid) = owner(mountpoint)?;
    fuser::spawn_mount(FuseFs::new(fs, uid, gid), mountpoint, &config())
}

/// Mounts `fs` at `mountpoint` and serves it until `stop` receives a message or is dropped
/// (a signal handler's cue to unmount, e.g. on SIGINT/SIGTERM) or someone unmounts the
/// directory; then unmounts if still mounted and flushes the store, so that every completed
/// operation is durable when this returns `Ok`.
pub fn serve_until<S: TxStore + 'static>(
    fs: Arc<Fs<S>>,
    mountpoint: &Path,
    stop: &std::sync::mpsc::Receiver<()>,
) -> io::Result<()> {
    use std::sync::mpsc::RecvTimeoutError;
    let session = spawn_mount(Arc::clone(&fs), mountpoint)?;
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
pub fn mount<S: TxStore + 'static>(fs: Arc<Fs<S>>, mountpoint: &Path) -> io::Result<()> {
    let (uid, gid) = owner(mountpoint)?;
    fuser::mount(FuseFs::new(fs, uid, gid), mountpoint, &config())
}
