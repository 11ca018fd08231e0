//! Directories: an array of 128-byte entries in the directory's data blocks, scanned linearly
//! (bounded by the directory's size, itself bounded by the largest file). A free slot has
//! inode number 0; a removed entry leaves a free slot that the next insertion reuses, and a
//! directory grows one block at a time when it has none.

use crate::error::{FsError, Result};
use crate::format::{Ino, Inode, Kind, RawDirent, DIRENTS_PER_BLOCK, NAME_MAX};
use crate::store::TxHandle;
use crate::txn::Ctx;
use txdisk_disk::{Addr, Block, BLOCK_SIZE};

/// An entry's location in a directory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EntryAt {
    pub block: Addr,
    pub slot: usize,
    pub ino: Ino,
    pub kind: Kind,
}

/// What a scan for one name found.
pub(crate) struct Scan {
    pub found: Option<EntryAt>,
    /// The first free slot, if any.
    pub free: Option<(Addr, usize)>,
}

/// Rejects names no directory may hold.
pub(crate) fn validate_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong {
            len: name.len(),
            max: NAME_MAX,
        });
    }
    if name.is_empty() || name == b"." || name == b".." {
        return Err(FsError::InvalidArgument("name is empty, '.' or '..'"));
    }
    if name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(FsError::InvalidArgument("name contains '/' or NUL"));
    }
    Ok(())
}

impl<T: TxHandle> Ctx<'_, T> {
    /// Reads a directory inode; a file is `NotADirectory`.
    pub fn dir_inode(&mut self, ino: Ino) -> Result<Inode> {
        let inode = self.inode(ino)?;
        if inode.kind() != Some(Kind::Dir) {
            return Err(FsError::NotADirectory);
        }
        Ok(inode)
    }

    /// The data blocks of a directory, in order; a hole is corruption.
    fn dir_blocks(&mut self, dir: &Inode) -> Result<Vec<Addr>> {
        let count = dir.size_bytes / BLOCK_SIZE as u64;
        let mut blocks = Vec::with_capacity(count as usize);
        for index in 0..count {
            match self.map(dir, index)? {
                0 => return Err(FsError::corrupt("directory block present", 1u32, 0u32)),
                addr => blocks.push(addr),
            }
        }
        Ok(blocks)
    }

    /// Looks `name` up in directory `dir`, noting the first free slot on the way.
    pub fn dir_scan(&mut self, dir: Ino, name: &[u8]) -> Result<Scan> {
        let inode = self.dir_inode(dir)?;
        let mut scan = Scan {
            found: None,
            free: None,
        };
        for addr in self.dir_blocks(&inode)? {
            let block = self.get(addr)?;
            for slot in 0..DIRENTS_PER_BLOCK {
                // Compare in place: a scan touches every slot of a large directory.
                if RawDirent::ino_at(block, slot) == 0 {
                    scan.free = scan.free.or(Some((addr, slot)));
                } else if RawDirent::name_at(block, slot) == name {
                    let (entry, _) = RawDirent::decode(block, slot);
                    let kind = Kind::from_code(entry.kind_code).ok_or_else(|| {
                        FsError::corrupt("directory entry kind", 1u8, entry.kind_code)
                    })?;
                    scan.found = Some(EntryAt {
                        block: addr,
                        slot,
                        ino: entry.ino,
                        kind,
                    });
                    return Ok(scan);
                }
            }
        }
        Ok(scan)
    }

    /// Every entry of directory `dir`: (name, inode, kind), in slot order.
    pub fn dir_entries(&mut self, dir: Ino) -> Result<Vec<(Vec<u8>, Ino, Kind)>> {
        let inode = self.dir_inode(dir)?;
        let mut entries = Vec::new();
        for addr in self.dir_blocks(&inode)? {
            let block = self.get(addr)?;
            for slot in 0..DIRENTS_PER_BLOCK {
                let (entry, _) = RawDirent::decode(block, slot);
                if entry.ino == 0 {
                    continue;
                }
                let kind = Kind::from_code(entry.kind_code).ok_or_else(|| {
                    FsError::corrupt("directory entry kind", 1u8, entry.kind_code)
                })?;
                entries.push((entry.name, entry.ino, kind));
            }
        }
        Ok(entries)
    }

    /// Whether directory `dir` has no entries.
    pub fn dir_is_empty(&mut self, dir: Ino) -> Result<bool> {
        let inode = self.dir_inode(dir)?;
        for addr in self.dir_blocks(&inode)? {
            let block = self.get(addr)?;
            if (0..DIRENTS_PER_BLOCK).any(|slot| RawDirent::ino_at(block, slot) != 0) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Adds an entry at `free` (from a scan) or in a new block at the end of the directory.
    pub fn dir_add(
        &mut self,
        dir: Ino,
        free: Option<(Addr, usize)>,
        name: &[u8],
        ino: Ino,
        kind: Kind,
    ) -> Result<()> {
        let entry = RawDirent {
            ino,
            kind_code: kind.code(),
            name: name.to_vec(),
        };
        let (addr, slot) = match free {
            Some(place) => place,
            None => (self.dir_grow(dir)?, 0),
        };
        let block = self.get_mut(addr)?;
        entry.encode_into(block, slot);
        // Pair check: the bytes about to be written decode to the entry meant.
        debug_assert_eq!(
            RawDirent::decode(block, slot),
            (entry, name.len()),
            "fs: directory {dir} entry at block {addr} slot {slot} does not decode to what was encoded"
        );
        Ok(())
    }

    /// Appends a zeroed block to directory `dir` and returns its address.
    fn dir_grow(&mut self, dir: Ino) -> Result<Addr> {
        let mut inode = self.dir_inode(dir)?;
        let index = inode.size_bytes / BLOCK_SIZE as u64;
        let (addr, fresh) = self.map_alloc(&mut inode, index)?;
        if !fresh {
            return Err(FsError::corrupt(
                "directory block past its size is a hole",
                0u64,
                addr,
            ));
        }
        inode.size_bytes += BLOCK_SIZE as u64;
        self.put(addr, Block::zeroed());
        self.put_inode(dir, &inode)?;
        Ok(addr)
    }

    /// Clears the entry at `at`.
    pub fn dir_remove(&mut self, at: EntryAt) -> Result<()> {
        RawDirent::clear(self.get_mut(at.block)?, at.slot);
        Ok(())
    }
}
