//! txdisk as a benchmarked system: the logical disk over one preallocated image file
//! (`txdisk`) or over a replicated pair of them (`txdisk-pair`), with the background installer
//! on, as an application would run it. Device syncs are counted below the log, so the syncs
//! per transaction column shows group commit (and installation) at work.

use crate::counting::CountingDisk;
use crate::error::{BenchError, Result};
use crate::system::{RecoveryRun, System, SystemFactory};
use crate::workload::{Geometry, ReadKind, RecoveryKind, Workload};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use txdisk::log::LogOptions;
use txdisk::replicated::{FormatOptions as PairFormat, ReplicatedDisk};
use txdisk::{Addr, Block, Disk, FileDisk, LogicalDisk, BLOCK_SIZE};

/// Blocks written per transaction when prefilling or filling a log (well under the maximum).
const FILL_TX_BLOCKS: usize = 256;

/// `txdisk` (one image) or `txdisk-pair` (a replicated pair).
pub struct TxdiskFactory {
    /// A replicated pair rather than one image.
    pub replicated: bool,
}

fn image_paths(dir: &Path, replicated: bool) -> Vec<PathBuf> {
    if replicated {
        vec![dir.join("d1.img"), dir.join("d2.img")]
    } else {
        vec![dir.join("txdisk.img")]
    }
}

fn size_blocks(geometry: &Geometry) -> u64 {
    // Superblock, two header slots, the log, the data; a pair adds its metadata blocks.
    3 + geometry.log_blocks + geometry.disk_blocks + txdisk::replicated::RESERVED_BLOCKS
}

fn system_error(name: &str, error: impl std::fmt::Display) -> BenchError {
    BenchError::System {
        system: name.to_string(),
        message: error.to_string(),
    }
}

/// Creates and formats the images of a stack in `dir` (zeros written through, not sparse).
fn create_images(name: &str, dir: &Path, geometry: &Geometry, replicated: bool) -> Result<()> {
    let paths = image_paths(dir, replicated);
    let disks: Vec<FileDisk> = paths
        .iter()
        .map(|path| FileDisk::create(path, size_blocks(geometry)))
        .collect::<std::result::Result<_, _>>()?;
    if let [d1, d2] = &disks[..] {
        let options = PairFormat {
            pair_id: None,
            assume_equal: true,
        };
        ReplicatedDisk::format(d1, d2, &options).map_err(|e| system_error(name, e))?;
    }
    drop(disks);
    let stack = open_stack(name, dir, replicated, LogOptions::default())?;
    LogicalDisk::format(&*stack.top, geometry.log_blocks).map_err(|e| system_error(name, e))?;
    Ok(())
}

/// What `open_stack` assembles: the disk under the log (counted) and, when replicated, the pair.
struct Bottom {
    top: Arc<CountingDisk<Arc<dyn Disk>>>,
    pair: Option<Arc<ReplicatedDisk<FileDisk>>>,
}

fn open_stack(name: &str, dir: &Path, replicated: bool, _options: LogOptions) -> Result<Bottom> {
    let paths = image_paths(dir, replicated);
    let (disk, pair): (Arc<dyn Disk>, _) = if replicated {
        let pair = ReplicatedDisk::open(
            FileDisk::open(&paths[0])?,
            FileDisk::open(&paths[1])?,
            &mut |_| {},
        )
        .map_err(|e| system_error(name, e))?;
        let pair = Arc::new(pair);
        (pair.clone(), Some(pair))
    } else {
        (Arc::new(FileDisk::open(&paths[0])?), None)
    };
    Ok(Bottom {
        top: Arc::new(CountingDisk::new(disk)),
        pair,
    })
}

impl SystemFactory for TxdiskFactory {
    fn name(&self) -> &'static str {
        if self.replicated {
            "txdisk-pair"
        } else {
            "txdisk"
        }
    }

    fn config_note(&self) -> String {
        let what = if self.replicated {
            "a replicated pair of preallocated image files (both synced concurrently)"
        } else {
            "one preallocated image file"
        };
        format!(
            "logical disk over {what}; write-ahead log of the geometry's log_blocks, one fdatasync \
             per group of durable commits, background installation at half full; nosync = \
             commit_nosync, flush = one group flush; read-logged = blocks committed and durable but \
             kept in the log (installer paused); recover-full-log = reopen after a crash with the log \
             full of uninstalled transactions{}",
            if self.replicated { "; replica-resync = open of the pair with a blank second image (full rebuild)" } else { "" }
        )
    }

    fn supports(&self, workload: Workload) -> bool {
        workload != Workload::ReplicaResync || self.replicated
    }

    fn create(&self, dir: &Path, geometry: &Geometry) -> Result<()> {
        create_images(self.name(), dir, geometry, self.replicated)?;
        let system = self.open(dir, geometry)?;
        let addrs: Vec<Addr> = (0..geometry.disk_blocks).collect();
        for chunk in addrs.chunks(FILL_TX_BLOCKS) {
            let data: Vec<Block> = chunk
                .iter()
                .map(|&addr| Block::filled(addr as u8))
                .collect();
            system.nosync_txn(0, chunk, &data)?;
        }
        system.flush()
    }

    fn open(&self, dir: &Path, geometry: &Geometry) -> Result<Box<dyn System>> {
        let name = self.name();
        let bottom = open_stack(name, dir, self.replicated, LogOptions::default())?;
        let disk = LogicalDisk::open(bottom.top.clone(), LogOptions::default())
            .map_err(|e| system_error(name, e))?;
        Ok(Box::new(TxdiskSystem {
            name,
            dir: dir.to_path_buf(),
            geometry: *geometry,
            disk,
            bottom,
        }))
    }
}

struct TxdiskSystem {
    name: &'static str,
    dir: PathBuf,
    geometry: Geometry,
    disk: LogicalDisk,
    bottom: Bottom,
}

impl TxdiskSystem {
    fn commit(&self, addrs: &[Addr], data: &[Block], durable: bool) -> Result<()> {
        let mut tx = self.disk.begin();
        for (addr, block) in addrs.iter().zip(data) {
            tx.write(*addr, block)
                .map_err(|e| system_error(self.name, e))?;
        }
        let result = if durable {
            tx.commit()
        } else {
            tx.commit_nosync()
        };
        result.map_err(|e| system_error(self.name, e))
    }

    /// A fresh stack in a scratch directory whose log is full of durable, uninstalled
    /// transactions, dropped as a crash would leave it; then the timed reopen.
    fn recover_full_log(&self) -> Result<RecoveryRun> {
        let scratch =
            tempfile::tempdir_in(&self.dir).map_err(|e| BenchError::io("tempdir", &self.dir, e))?;
        let replicated = self.bottom.pair.is_some();
        create_images(self.name, scratch.path(), &self.geometry, replicated)?;
        let quiet = LogOptions {
            background_installer: false,
            ..LogOptions::default()
        };
        let bytes = {
            let bottom = open_stack(self.name, scratch.path(), replicated, quiet.clone())?;
            let disk = LogicalDisk::open(bottom.top.clone(), quiet.clone())
                .map_err(|e| system_error(self.name, e))?;
            let per_tx = FILL_TX_BLOCKS.min(disk.max_tx_blocks());
            let mut written = 0u64;
            // Fill while a whole transaction still fits without triggering installation.
            while disk.used_log_blocks() + txdisk::log::tooling::record_len_blocks(per_tx)
                <= self.geometry.log_blocks
            {
                let mut tx = disk.begin();
                for offset in 0..per_tx as u64 {
                    let addr = (written + offset) % self.geometry.disk_blocks;
                    tx.write(addr, &Block::filled(offset as u8))
                        .map_err(|e| system_error(self.name, e))?;
                }
                tx.commit_nosync().map_err(|e| system_error(self.name, e))?;
                written += per_tx as u64;
            }
            disk.flush().map_err(|e| system_error(self.name, e))?;
            written * BLOCK_SIZE as u64
        };
        let started = Instant::now();
        let bottom = open_stack(self.name, scratch.path(), replicated, quiet.clone())?;
        LogicalDisk::open(bottom.top, quiet).map_err(|e| system_error(self.name, e))?;
        Ok(RecoveryRun {
            bytes,
            elapsed: started.elapsed(),
        })
    }

    /// A pair whose second image is blank: the timed open rebuilds it from the first.
    fn replica_resync(&self) -> Result<RecoveryRun> {
        let scratch =
            tempfile::tempdir_in(&self.dir).map_err(|e| BenchError::io("tempdir", &self.dir, e))?;
        create_images(self.name, scratch.path(), &self.geometry, true)?;
        let paths = image_paths(scratch.path(), true);
        std::fs::remove_file(&paths[1]).map_err(|e| BenchError::io("remove", &paths[1], e))?;
        FileDisk::create(&paths[1], size_blocks(&self.geometry))?;
        let started = Instant::now();
        let pair = ReplicatedDisk::open(
            FileDisk::open(&paths[0])?,
            FileDisk::open(&paths[1])?,
            &mut |_| {},
        )
        .map_err(|e| system_error(self.name, e))?;
        pair.sync()?;
        let elapsed = started.elapsed();
        Ok(RecoveryRun {
            bytes: pair.size_blocks() * BLOCK_SIZE as u64,
            elapsed,
        })
    }
}

impl System for TxdiskSystem {
    fn name(&self) -> &'static str {
        self.name
    }

    fn durable_txn(&self, _thread: usize, addrs: &[Addr], data: &[Block]) -> Result<()> {
        self.commit(addrs, data, true)
    }

    fn nosync_txn(&self, _thread: usize, addrs: &[Addr], data: &[Block]) -> Result<()> {
        self.commit(addrs, data, false)
    }

    fn flush(&self) -> Result<()> {
        self.disk.flush().map_err(|e| system_error(self.name, e))
    }

    fn prepare_reads(&self, kind: ReadKind, addrs: &[Addr], data: &[Block]) -> Result<()> {
        self.disk.pause_installer(kind == ReadKind::Logged);
        self.disk
            .install()
            .map_err(|e| system_error(self.name, e))?;
        for (chunk_addrs, chunk_data) in addrs
            .chunks(FILL_TX_BLOCKS)
            .zip(data.chunks(FILL_TX_BLOCKS))
        {
            self.commit(chunk_addrs, chunk_data, false)?;
        }
        self.flush()?;
        if kind == ReadKind::Installed {
            self.disk
                .install()
                .map_err(|e| system_error(self.name, e))?;
        }
        Ok(())
    }

    fn read(&self, _thread: usize, addr: Addr) -> Result<Block> {
        self.disk
            .read_committed(addr)
            .map_err(|e| system_error(self.name, e))
    }

    fn recover(&self, kind: RecoveryKind) -> Result<RecoveryRun> {
        match kind {
            RecoveryKind::FullLog => self.recover_full_log(),
            RecoveryKind::ReplicaResync if self.bottom.pair.is_some() => self.replica_resync(),
            RecoveryKind::ReplicaResync => Err(self.unsupported(Workload::ReplicaResync)),
        }
    }

    fn sync_count(&self) -> Option<u64> {
        Some(self.bottom.top.counts().syncs)
    }
}
