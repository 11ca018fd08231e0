//! A tiny journalled backend for crash tests: the export lives in memory and every write is
//! appended to a redo log file as one checksummed record, replayed on open. A record cut by
//! a crash fails its checksum and is dropped with everything after it, so each write is all
//! or nothing — the property the crash test checks, without the real logical disk.
//!
//! Record: magic u32 | offset u64 | len u32 | FNV-1a-64 of (offset, len, data) u64 | data,
//! little-endian. The log only grows: fine for a test, not for anything else.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use parking_lot::{Mutex, RwLock};
use txdisk_nbd::backend::check_range;
use txdisk_nbd::{BackendError, ExportBackend};

const MAGIC: u32 = 0x4e42_444a;
const HEADER_BYTES: usize = 4 + 8 + 4 + 8;

pub struct JournalBackend {
    image: RwLock<Vec<u8>>,
    log: Mutex<File>,
    size_bytes: u64,
}

fn fnv1a(offset: u64, data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let len = data.len() as u32;
    for b in offset
        .to_le_bytes()
        .iter()
        .chain(&len.to_le_bytes())
        .chain(data)
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Applies every whole, valid record of `log` to `image`; returns where the valid log ends.
fn replay(log: &[u8], image: &mut [u8]) -> usize {
    let mut pos = 0;
    while log.len() - pos >= HEADER_BYTES {
        let h = &log[pos..pos + HEADER_BYTES];
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let offset = u64::from_le_bytes(h[4..12].try_into().unwrap_or([0; 8]));
        let len = u32::from_le_bytes([h[12], h[13], h[14], h[15]]) as usize;
        let hash = u64::from_le_bytes(h[16..24].try_into().unwrap_or([0; 8]));
        let body = pos + HEADER_BYTES;
        if magic != MAGIC || log.len() - body < len {
            break;
        }
        let data = &log[body..body + len];
        let fits = check_range(offset, len as u64, image.len() as u64).is_ok();
        if hash != fnv1a(offset, data) || !fits {
            break;
        }
        image[offset as usize..offset as usize + len].copy_from_slice(data);
        pos = body + len;
    }
    pos
}

impl JournalBackend {
    /// Opens (or creates) the log at `path` for an export of `size_bytes`.
    pub fn open(path: &Path, size_bytes: usize) -> Result<JournalBackend, BackendError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut log = Vec::new();
        file.read_to_end(&mut log)?;
        let mut image = vec![0u8; size_bytes];
        let valid_end = replay(&log, &mut image);
        // Cut a torn tail so new records follow the last valid one.
        file.set_len(valid_end as u64)?;
        file.seek(SeekFrom::Start(valid_end as u64))?;
        file.sync_all()?;
        Ok(JournalBackend {
            image: RwLock::new(image),
            log: Mutex::new(file),
            size_bytes: size_bytes as u64,
        })
    }
}

impl ExportBackend for JournalBackend {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        check_range(offset, buf.len() as u64, self.size_bytes)?;
        let start = offset as usize;
        buf.copy_from_slice(&self.image.read()[start..start + buf.len()]);
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        check_range(offset, data.len() as u64, self.size_bytes)?;
        let mut record = Vec::with_capacity(HEADER_BYTES + data.len());
        record.extend_from_slice(&MAGIC.to_le_bytes());
        record.extend_from_slice(&offset.to_le_bytes());
        record.extend_from_slice(&(data.len() as u32).to_le_bytes());
        record.extend_from_slice(&fnv1a(offset, data).to_le_bytes());
        record.extend_from_slice(data);
        let mut log = self.log.lock();
        // The file position is the end of the valid log (set by open, advanced by each append).
        log.write_all(&record)?;
        if fua {
            log.sync_data()?;
        }
        let start = offset as usize;
        self.image.write()[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.log.lock().sync_data()?;
        Ok(())
    }
}
