//! A write-ahead checker: a disk wrapper that catches a block reaching its home location before
//! the log record carrying it is durable — the one ordering rule a write-ahead log lives by.

use crate::format::Superblock;
use crate::scan::{read_superblock, scan_log};
use std::sync::Arc;
use txdisk_disk::sync::Mutex;
use txdisk_disk::{Addr, Block, Disk, DiskImage, Result, SimDisk};

/// Wraps a [`SimDisk`] holding a formatted log. Every write that lands in the data region is
/// checked against the *durable* image: some valid record of the durable log must carry that
/// very value for that address. In strict mode a violation panics at once (failing the test
/// at the write that broke the rule); otherwise it is recorded for [`WalChecker::violations`].
pub struct WalChecker {
    sim: Arc<SimDisk>,
    strict: bool,
    violations: Mutex<Vec<String>>,
}

/// A read-only disk over a whole-disk image, to scan the durable log.
struct ImageDisk<'a>(&'a DiskImage);

impl Disk for ImageDisk<'_> {
    fn size_blocks(&self) -> u64 {
        self.0.size_blocks()
    }
    fn read(&self, addr: Addr) -> Result<Block> {
        self.check_addr(addr)?;
        Ok(self.0.block(addr).cloned().unwrap_or_default())
    }
    fn write(&self, _addr: Addr, _block: &Block) -> Result<()> {
        Err(txdisk_disk::DiskError::Failed)
    }
    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

impl WalChecker {
    /// A checker over `sim`; `strict` panics at the first violation instead of recording it.
    pub fn new(sim: Arc<SimDisk>, strict: bool) -> WalChecker {
        WalChecker {
            sim,
            strict,
            violations: Mutex::new(Vec::new()),
        }
    }

    /// The simulated disk it watches.
    pub fn sim(&self) -> &Arc<SimDisk> {
        &self.sim
    }

    /// Violations recorded so far (non-strict mode).
    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().clone()
    }

    fn check_home_write(&self, sb: &Superblock, addr: Addr, block: &Block) {
        let durable = self.sim.durable_image();
        let home = addr - sb.data_start;
        let carried = match scan_log(&ImageDisk(&durable), true) {
            Ok(scan) => scan.records.iter().any(|record| {
                record
                    .addrs
                    .iter()
                    .zip(&record.data)
                    .any(|(a, d)| *a == home && d == block)
            }),
            Err(_) => false,
        };
        if carried {
            return;
        }
        let message = format!(
            "write-ahead rule broken: home block {home} (disk block {addr}) written with {block:?} \
             before any durable log record carries that value"
        );
        if self.strict {
            panic!("log: {message}");
        }
        self.violations.lock().push(message);
    }
}

impl Disk for WalChecker {
    fn size_blocks(&self) -> u64 {
        self.sim.size_blocks()
    }
    fn read(&self, addr: Addr) -> Result<Block> {
        self.sim.read(addr)
    }
    fn write(&self, addr: Addr, block: &Block) -> Result<()> {
        self.sim.write(addr, block)?;
        // Only writes that reached the disk matter; the durable image does not include this one.
        if let Ok(sb) = read_superblock(&ImageDisk(&self.sim.durable_image())) {
            if addr >= sb.data_start {
                self.check_home_write(&sb, addr, block);
            }
        }
        Ok(())
    }
    fn sync(&self) -> Result<()> {
        self.sim.sync()
    }
    fn check_rep(&self) {
        self.sim.check_rep()
    }
}
