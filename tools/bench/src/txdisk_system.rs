//! txdisk as a benchmarked system: exactly the stack users get — images made by
//! `txdisk::format` (sized by `txdisk::image_blocks_for`) and opened by `txdisk::open_disk`, so
//! every block is checksummed and two images are a replicated pair — with the logical disk over
//! it and the background installer on, as an application would run it. The one addition is a
//! [`CountingDisk`] between the log and the disk under it, so the syncs per transaction column
//! shows group commit (and installation) at work.

use crate::counting::CountingDisk;
use crate::error::{BenchError, Result};
use crate::system::{RecoveryClock, RecoveryRun, System, SystemFactory};
use crate::workload::{Geometry, ReadKind, RecoveryKind, Workload};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use txdisk::log::LogOptions;
use txdisk::replicated::ReplicatedDisk;
use txdisk::{Addr, Block, Disk, FileDisk, LogicalDisk, BLOCK_SIZE};

/// Blocks written per transaction when prefilling or filling a log (well under the maximum of
/// the default logs; a small log takes fewer, see [`TxdiskSystem::fill_tx_blocks`]).
const FILL_TX_BLOCKS: usize = 256;

/// `txdisk` (one image) or `txdisk-pair` (a replicated pair).
pub struct TxdiskFactory {
    /// A replicated pair rather than one image.
    pub replicated: bool,
}

/// `txdisk-pair-nbd`: a replicated pair whose second member is served by nbdkit's file
/// plugin on a Unix socket of this machine (the bench's stand-in for a member on another host:
/// the protocol and a server process, without a network's latency).
pub struct TxdiskNbdFactory;

/// Which stack a factory makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Single,
    Pair,
    /// A pair whose d2 is an NBD export (nbdkit over `d2.img`).
    PairNbd,
}

impl Layout {
    fn of(replicated: bool) -> Layout {
        if replicated {
            Layout::Pair
        } else {
            Layout::Single
        }
    }

    fn replicated(self) -> bool {
        self != Layout::Single
    }
}

fn nbd_socket(dir: &Path) -> PathBuf {
    dir.join("nbd.sock")
}

fn image_paths(dir: &Path, layout: Layout) -> Vec<PathBuf> {
    match layout {
        Layout::Pair => vec![dir.join("d1.img"), dir.join("d2.img")],
        Layout::Single => vec![dir.join("txdisk.img")],
        Layout::PairNbd => {
            let uri = format!("nbd+unix:///d2?socket={}", nbd_socket(dir).display());
            vec![dir.join("d1.img"), PathBuf::from(uri)]
        }
    }
}

/// An nbdkit process serving `d2.img` of a bench directory; killed when dropped (after the
/// stack over it, which holds its connections, is gone).
pub(crate) struct Nbdkit(std::process::Child);

impl Nbdkit {
    fn start(name: &str, dir: &Path) -> Result<Nbdkit> {
        let socket = nbd_socket(dir);
        let _ = std::fs::remove_file(&socket);
        let child = std::process::Command::new("nbdkit")
            .args(["-f", "--exit-with-parent", "-U"])
            .arg(&socket)
            .arg("file")
            .arg(dir.join("d2.img"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| {
                system_error(
                    name,
                    format!("cannot start nbdkit (apt-get install nbdkit): {e}"),
                )
            })?;
        let server = Nbdkit(child);
        let started = std::time::Instant::now();
        while !socket.exists() {
            if started.elapsed() > std::time::Duration::from_secs(20) {
                return Err(system_error(name, "nbdkit did not start within 20 s"));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(server)
    }
}

impl Drop for Nbdkit {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Each image's size: the geometry's data and log, with the room the log's metadata, the
/// pair's and the checksums take, as the façade computes it.
fn image_blocks(geometry: &Geometry, replicated: bool) -> u64 {
    let count = if replicated { 2 } else { 1 };
    txdisk::image_blocks_for(geometry.disk_blocks, geometry.log_blocks, count)
}

pub(crate) fn system_error(name: &str, error: impl std::fmt::Display) -> BenchError {
    BenchError::System {
        system: name.to_string(),
        message: error.to_string(),
    }
}

/// Creates and formats the images of a stack in `dir`, as `txdisk format` does.
fn create_images(name: &str, dir: &Path, geometry: &Geometry, layout: Layout) -> Result<()> {
    let options = txdisk::FormatOptions {
        size_blocks: image_blocks(geometry, layout.replicated()),
        log_blocks: geometry.log_blocks,
    };
    let _server = if layout == Layout::PairNbd {
        // The export exists before it is formatted: a zeroed file of the image's size.
        let d2 = dir.join("d2.img");
        std::fs::File::create(&d2)
            .and_then(|f| f.set_len(options.size_blocks * BLOCK_SIZE as u64))
            .map_err(|e| BenchError::io("create", &d2, e))?;
        Some(Nbdkit::start(name, dir)?)
    } else {
        None
    };
    txdisk::format(&image_paths(dir, layout), &options).map_err(|e| system_error(name, e))
}

/// What `open_stack` assembles: the disk under the log (counted) and, when replicated, the pair.
pub(crate) struct Bottom {
    top: Arc<CountingDisk<Arc<dyn Disk>>>,
    pair: Option<Arc<ReplicatedDisk<txdisk::Image>>>,
    /// The server of a remote member; dropped after the pair.
    _server: Option<Nbdkit>,
}

/// Opens the images in `dir` as `txdisk::open` would (replica recovery included, and a blank
/// second image formatted and rebuilt as a replacement member), up to the log.
fn open_stack(name: &str, dir: &Path, layout: Layout) -> Result<Bottom> {
    let server = match layout {
        Layout::PairNbd => Some(Nbdkit::start(name, dir)?),
        _ => None,
    };
    let txdisk::OpenedDisk { disk, pair } =
        txdisk::open_disk(&image_paths(dir, layout), &mut |_| {})
            .map_err(|e| system_error(name, e))?;
    Ok(Bottom {
        top: Arc::new(CountingDisk::new(disk)),
        pair,
        _server: server,
    })
}

/// The logical disk over `bottom`, recovering its log.
fn open_logical(name: &str, bottom: &Bottom, options: LogOptions) -> Result<LogicalDisk> {
    LogicalDisk::open(bottom.top.clone(), options).map_err(|e| system_error(name, e))
}

/// The stack over the images in `dir` as a user opens it (background installer on), for the
/// writer a reopen workload kills: the logical disk, then what it stands on.
pub(crate) fn open_for_writer(
    name: &str,
    dir: &Path,
    replicated: bool,
) -> Result<(LogicalDisk, Bottom)> {
    let bottom = open_stack(name, dir, Layout::of(replicated))?;
    let disk = open_logical(name, &bottom, LogOptions::default())?;
    Ok((disk, bottom))
}

/// Durable commits a reopen workload's writer makes before it is killed: a few seconds of
/// writing, whose log and pair state the reopen finds.
const CRASH_COMMITS: u64 = 512;
/// A disk too small for [`CRASH_COMMITS`] (a test's) gets one commit per this many blocks.
const BLOCKS_PER_CRASH_COMMIT: u64 = 32;
/// The seed of the crashed writes, the same in every round so that rounds are alike.
const CRASH_SEED: u64 = 0x7265_6f70_656e;

impl SystemFactory for TxdiskFactory {
    fn name(&self) -> &'static str {
        if self.replicated {
            "txdisk-pair"
        } else {
            "txdisk"
        }
    }

    fn config_note(&self) -> String {
        let (what, resync, recovered) = if self.replicated {
            (
                "a replicated pair of checksummed image files (both synced concurrently)",
                "; replica-resync = open of the pair with a blank second image (formatted as a \
                 replacement member, then a full rebuild)",
                " (replica recovery included)",
            )
        } else {
            ("one checksummed image file", "", "")
        };
        format!(
            "logical disk over {what}, made by txdisk::format and opened by txdisk::open_disk \
             (every block verified on read, its tags written at each sync); write-ahead log of \
             the geometry's log_blocks, one fdatasync per group of durable commits, background \
             installation at half full; nosync = commit_nosync, flush = one group flush; \
             read-logged = blocks committed and durable but kept in the log (installer paused); \
             recover-full-log = reopen after a crash with the log full of uninstalled \
             transactions{resync}; reopen-after-crash-SIZE = fresh images of a SIZE logical disk \
             (txdisk::format, not prefilled), a child process committing random 1-block durable \
             transactions over the whole disk, killed with SIGKILL after {CRASH_COMMITS} commits \
             (while it writes the next), then the timed part: open_disk and LogicalDisk::open of \
             the images{recovered} and read_committed of the block the last announced commit \
             wrote (checked); page cache as the killed process left it; one per round, the \
             images removed after it"
        )
    }

    fn supports(&self, workload: Workload) -> bool {
        workload != Workload::ReplicaResync || self.replicated
    }

    fn create(&self, dir: &Path, geometry: &Geometry) -> Result<()> {
        create_system(self.name(), Layout::of(self.replicated), dir, geometry)
    }

    fn open(&self, dir: &Path, geometry: &Geometry) -> Result<Box<dyn System>> {
        let layout = Layout::of(self.replicated);
        Ok(Box::new(open_system(self.name(), layout, dir, geometry)?))
    }
}

impl SystemFactory for TxdiskNbdFactory {
    fn name(&self) -> &'static str {
        "txdisk-pair-nbd"
    }

    fn config_note(&self) -> String {
        "as txdisk-pair, but the second member is an NBD export: nbdkit's file plugin over an \
         image file, on a Unix socket of this machine, opened by txdisk::open_disk from its \
         nbd+unix:// URI (NbdDisk: pipelined WRITEs per batch, one FLUSH per member sync); \
         durable, nosync and read workloads only"
            .to_string()
    }

    fn supports(&self, workload: Workload) -> bool {
        matches!(
            workload,
            Workload::Durable { .. }
                | Workload::Nosync { .. }
                | Workload::ReadInstalled
                | Workload::ReadLogged
        )
    }

    fn create(&self, dir: &Path, geometry: &Geometry) -> Result<()> {
        create_system(self.name(), Layout::PairNbd, dir, geometry)
    }

    fn open(&self, dir: &Path, geometry: &Geometry) -> Result<Box<dyn System>> {
        Ok(Box::new(open_system(
            self.name(),
            Layout::PairNbd,
            dir,
            geometry,
        )?))
    }
}

fn create_system(
    name: &'static str,
    layout: Layout,
    dir: &Path,
    geometry: &Geometry,
) -> Result<()> {
    create_images(name, dir, geometry, layout)?;
    let system = open_system(name, layout, dir, geometry)?;
    let addrs: Vec<Addr> = (0..geometry.disk_blocks).collect();
    for chunk in addrs.chunks(system.fill_tx_blocks()) {
        let data: Vec<Block> = chunk
            .iter()
            .map(|&addr| Block::filled(addr as u8))
            .collect();
        system.nosync_txn(0, chunk, &data)?;
    }
    system.flush()
}

fn open_system(
    name: &'static str,
    layout: Layout,
    dir: &Path,
    geometry: &Geometry,
) -> Result<TxdiskSystem> {
    let bottom = open_stack(name, dir, layout)?;
    let disk = open_logical(name, &bottom, LogOptions::default())?;
    Ok(TxdiskSystem {
        name,
        dir: dir.to_path_buf(),
        geometry: *geometry,
        disk,
        bottom,
    })
}

struct TxdiskSystem {
    name: &'static str,
    dir: PathBuf,
    geometry: Geometry,
    disk: LogicalDisk,
    bottom: Bottom,
}

impl TxdiskSystem {
    /// Blocks per transaction of the untimed fills: as many as the log takes, up to
    /// [`FILL_TX_BLOCKS`].
    fn fill_tx_blocks(&self) -> usize {
        FILL_TX_BLOCKS.min(self.disk.max_tx_blocks()).max(1)
    }

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
        let replicated = Layout::of(self.bottom.pair.is_some());
        create_images(self.name, scratch.path(), &self.geometry, replicated)?;
        let quiet = LogOptions {
            background_installer: false,
            ..LogOptions::default()
        };
        let bytes = {
            let bottom = open_stack(self.name, scratch.path(), replicated)?;
            let disk = open_logical(self.name, &bottom, quiet.clone())?;
            let per_tx = FILL_TX_BLOCKS.min(disk.max_tx_blocks()).max(1);
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
        let clock = RecoveryClock::start();
        let bottom = open_stack(self.name, scratch.path(), replicated)?;
        open_logical(self.name, &bottom, quiet)?;
        Ok(clock.stop(bytes))
    }

    /// Fresh images of a `disk_mib` MiB disk, a writer killed on them, then the timed open up to
    /// the first block served; its figure in bytes is what the open read meanwhile.
    fn reopen_after_crash(&self, disk_mib: u64) -> Result<RecoveryRun> {
        let scratch =
            tempfile::tempdir_in(&self.dir).map_err(|e| BenchError::io("tempdir", &self.dir, e))?;
        let layout = Layout::of(self.bottom.pair.is_some());
        let replicated = layout.replicated();
        let geometry = Geometry {
            disk_blocks: Geometry::blocks_of_mib(disk_mib),
            ..self.geometry
        };
        create_images(self.name, scratch.path(), &geometry, layout)?;
        let spec = crate::crash::WriterSpec {
            dir: scratch.path().to_path_buf(),
            replicated,
            disk_blocks: geometry.disk_blocks,
            seed: CRASH_SEED ^ disk_mib,
        };
        let commits = CRASH_COMMITS.min(geometry.disk_blocks / BLOCKS_PER_CRASH_COMMIT);
        let committed = crate::crash::crash_writer(&spec, commits)?;
        let addr = crate::crash::commit_addr(spec.seed, committed, spec.disk_blocks);
        let clock = RecoveryClock::start();
        let bottom = open_stack(self.name, scratch.path(), layout)?;
        let disk = open_logical(self.name, &bottom, LogOptions::default())?;
        let block = disk
            .read_committed(addr)
            .map_err(|e| system_error(self.name, e))?;
        let mut run = clock.stop(0);
        crate::crash::check_recovered(self.name, &spec, committed, addr, &block)?;
        // Closed, and the scratch images removed, outside the timed part.
        drop(disk);
        drop(bottom);
        run.bytes = run.read_bytes.unwrap_or(0);
        Ok(run)
    }

    /// A pair whose second image is blank (a new replacement member): the timed open formats
    /// its checksums and rebuilds it from the first, as `txdisk::open` would.
    fn replica_resync(&self) -> Result<RecoveryRun> {
        let scratch =
            tempfile::tempdir_in(&self.dir).map_err(|e| BenchError::io("tempdir", &self.dir, e))?;
        create_images(self.name, scratch.path(), &self.geometry, Layout::Pair)?;
        let paths = image_paths(scratch.path(), Layout::Pair);
        std::fs::remove_file(&paths[1]).map_err(|e| BenchError::io("remove", &paths[1], e))?;
        // Created and closed again (its lock released) before the timed open takes it.
        drop(FileDisk::create(
            &paths[1],
            image_blocks(&self.geometry, true),
        )?);
        let clock = RecoveryClock::start();
        let bottom = open_stack(self.name, scratch.path(), Layout::Pair)?;
        let pair = bottom
            .pair
            .ok_or_else(|| system_error(self.name, "two images opened as a single disk"))?;
        pair.sync()?;
        Ok(clock.stop(pair.size_blocks() * BLOCK_SIZE as u64))
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
        let per_tx = self.fill_tx_blocks();
        for (chunk_addrs, chunk_data) in addrs.chunks(per_tx).zip(data.chunks(per_tx)) {
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
            RecoveryKind::ReopenAfterCrash { disk_mib } => self.reopen_after_crash(disk_mib),
        }
    }

    fn sync_count(&self) -> Option<u64> {
        Some(self.bottom.top.counts().syncs)
    }
}
