//! Path-level conveniences for tools (the `txdisk fs` subcommands): slash-separated paths from
//! the root, and streaming a whole file in or out. Each call is a sequence of operations, each
//! atomic on its own: `put_file` of a large file is create-or-truncate, then one write per
//! piece, so a crash part-way leaves a shorter file, never a damaged file system.

use crate::error::{FsError, Result};
use crate::format::{Ino, Kind};
use crate::fs::{DirEntry, Fs, Stat};
use crate::store::TxStore;
use std::io::{Read, Write};

/// Bytes moved per write or read by [`Fs::put_file`] and [`Fs::get_file`].
pub const STREAM_PIECE_BYTES: usize = 1 << 20;

impl<S: TxStore> Fs<S> {
    /// Attributes of the inode a path names.
    pub fn stat_path(&self, path: &str) -> Result<Stat> {
        self.stat(self.resolve(path)?)
    }

    /// Creates an empty regular file at `path`.
    pub fn create_path(&self, path: &str) -> Result<Ino> {
        let (dir, name) = self.resolve_parent(path)?;
        self.create(dir, name)
    }

    /// Creates a directory at `path`; with `parents`, missing parents too, and an existing
    /// directory is not an error (as `mkdir -p`).
    pub fn mkdir_path(&self, path: &str, parents: bool) -> Result<Ino> {
        if !parents {
            let (dir, name) = self.resolve_parent(path)?;
            return self.mkdir(dir, name);
        }
        let mut dir = crate::ROOT_INO;
        for component in path.split('/').filter(|c| !c.is_empty()) {
            dir = match self.lookup(dir, component) {
                Ok(ino) if self.stat(ino)?.kind == Kind::Dir => ino,
                Ok(_) => return Err(FsError::NotADirectory),
                Err(FsError::NotFound) => self.mkdir(dir, component)?,
                Err(error) => return Err(error),
            };
        }
        Ok(dir)
    }

    /// Removes the file or empty directory at `path`.
    pub fn remove_path(&self, path: &str) -> Result<()> {
        let (dir, name) = self.resolve_parent(path)?;
        match self.stat(self.lookup(dir, name)?)?.kind {
            Kind::Dir => self.rmdir(dir, name),
            _ => self.unlink(dir, name),
        }
    }

    /// Renames `from` to `to` (both full paths), as [`Fs::rename`].
    pub fn rename_path(&self, from: &str, to: &str) -> Result<()> {
        let (from_dir, from_name) = self.resolve_parent(from)?;
        let (to_dir, to_name) = self.resolve_parent(to)?;
        self.rename(from_dir, from_name, to_dir, to_name)
    }

    /// The entries of the directory at `path` with their attributes, sorted by name.
    pub fn list_path(&self, path: &str) -> Result<Vec<(DirEntry, Stat)>> {
        let mut entries = self.readdir(self.resolve(path)?)?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
            .into_iter()
            .map(|entry| {
                let stat = self.stat(entry.ino)?;
                Ok((entry, stat))
            })
            .collect()
    }

    /// Writes everything `source` yields to the file at `path`, creating it or replacing its
    /// contents. Returns the bytes written. A read error from `source` is `InvalidArgument`
    /// after what was read so far has been written.
    pub fn put_file(&self, path: &str, source: &mut impl Read) -> Result<u64> {
        let (dir, name) = self.resolve_parent(path)?;
        let ino = match self.lookup(dir, name) {
            Ok(ino) => {
                self.truncate(ino, 0)?;
                ino
            }
            Err(FsError::NotFound) => self.create(dir, name)?,
            Err(error) => return Err(error),
        };
        let mut piece = vec![0u8; STREAM_PIECE_BYTES];
        let mut offset = 0u64;
        loop {
            let got = match source.read(&mut piece) {
                Ok(0) => return Ok(offset),
                Ok(got) => got,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(FsError::InvalidArgument("reading the source failed")),
            };
            self.write(ino, offset, &piece[..got])?;
            offset += got as u64;
        }
    }

    /// Copies the file at `path` into `sink`. Returns the bytes copied.
    pub fn get_file(&self, path: &str, sink: &mut impl Write) -> Result<u64> {
        let ino = self.resolve(path)?;
        let size_bytes = self.stat(ino)?.size_bytes;
        let mut offset = 0u64;
        // Bounded by the size read at the start; a read shorter than asked ends the copy.
        while offset < size_bytes {
            let bytes = self.read(ino, offset, STREAM_PIECE_BYTES)?;
            if bytes.is_empty() {
                break;
            }
            sink.write_all(&bytes)
                .map_err(|_| FsError::InvalidArgument("writing the output failed"))?;
            offset += bytes.len() as u64;
        }
        Ok(offset)
    }
}
