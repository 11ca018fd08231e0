//! SQLite through rusqlite and its bundled library: a table `blocks(addr INTEGER PRIMARY KEY,
//! data BLOB)` of 4 KiB blobs, one SQL transaction per benchmark transaction.
//!
//! Configured as SQLite's documentation recommends for durable transactions with concurrent
//! writers: WAL journal mode with `synchronous=FULL` (in WAL mode, NORMAL may lose the last
//! commits on power loss; FULL syncs the WAL at every commit), one connection per thread,
//! `BEGIN IMMEDIATE` so a writer takes the write lock up front instead of failing to upgrade,
//! and a busy timeout so waiting writers queue instead of erroring. The rest stays default
//! (4096-byte pages, automatic checkpoints every 1000 pages).

use crate::error::{BenchError, Result};
use crate::system::{RecoveryClock, RecoveryRun, System, SystemFactory};
use crate::workload::{Geometry, ReadKind, RecoveryKind, Workload};
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use txdisk_disk::{Addr, Block};

const FILE_NAME: &str = "blocks.db";
const CRASH_DIR: &str = "crashed";
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);
const UPSERT: &str = "INSERT INTO blocks(addr, data) VALUES (?1, ?2) \
                      ON CONFLICT(addr) DO UPDATE SET data = excluded.data";
const SELECT: &str = "SELECT data FROM blocks WHERE addr = ?1";
/// SQLite's default `wal_autocheckpoint`, restored after set-ups that switch it off.
const DEFAULT_AUTOCHECKPOINT_PAGES: u32 = 1000;
/// Rows per transaction when filling (untimed).
const FILL_ROWS_PER_TXN: usize = 1024;

/// SQLite as a peer: one table of blocks in WAL mode with full synchronous commits.
pub struct SqliteFactory;

impl SystemFactory for SqliteFactory {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn config_note(&self) -> String {
        format!(
            "SQLite {} (bundled), journal_mode=WAL, synchronous=FULL, one connection per thread, \
             BEGIN IMMEDIATE … COMMIT per transaction, busy_timeout={}s, default page size and \
             autocheckpoint; nosync = synchronous=NORMAL on its own connection, flush = \
             wal_checkpoint(PASSIVE) (syncs the WAL); read-logged reads rows still in the WAL; \
             recover-full-log = open a copy of db+WAL taken with the WAL full (as after a crash), \
             first read, then wal_checkpoint(TRUNCATE)",
            rusqlite::version(),
            BUSY_TIMEOUT.as_secs()
        )
    }

    fn supports(&self, workload: Workload) -> bool {
        // No replicas to resync; a reopen after a crash is measured on txdisk's own images.
        !matches!(
            workload,
            Workload::ReplicaResync | Workload::ReopenAfterCrash { .. }
        )
    }

    fn create(&self, dir: &Path, geometry: &Geometry) -> Result<()> {
        let conn = open_connection(&dir.join(FILE_NAME), Synchronous::Full)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS blocks (addr INTEGER PRIMARY KEY, data BLOB NOT NULL)",
        )?;
        let zero = Block::zeroed();
        let addrs: Vec<Addr> = (0..geometry.disk_blocks).collect();
        let mut conn = conn;
        for chunk in addrs.chunks(FILL_ROWS_PER_TXN) {
            let data = vec![zero.clone(); chunk.len()];
            write_rows(&mut conn, chunk, &data)?;
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        Ok(())
    }

    fn open(&self, dir: &Path, geometry: &Geometry) -> Result<Box<dyn System>> {
        let path = dir.join(FILE_NAME);
        let connections = (0..geometry.max_threads)
            .map(|_| open_connection(&path, Synchronous::Full).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        let nosync = Mutex::new(open_connection(&path, Synchronous::Normal)?);
        Ok(Box::new(Sqlite {
            dir: dir.to_path_buf(),
            geometry: *geometry,
            connections,
            nosync,
            recoveries: AtomicU64::new(0),
        }))
    }
}

#[derive(Clone, Copy)]
enum Synchronous {
    Full,
    Normal,
}

fn open_connection(path: &Path, synchronous: Synchronous) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(BenchError::System {
            system: "sqlite".into(),
            message: format!("journal_mode=WAL refused, mode is {mode}"),
        });
    }
    conn.execute_batch(match synchronous {
        Synchronous::Full => "PRAGMA synchronous=FULL",
        Synchronous::Normal => "PRAGMA synchronous=NORMAL",
    })?;
    Ok(conn)
}

/// One `BEGIN IMMEDIATE … COMMIT` writing every row.
fn write_rows(conn: &mut Connection, addrs: &[Addr], data: &[Block]) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut upsert = tx.prepare_cached(UPSERT)?;
        for (addr, block) in addrs.iter().zip(data) {
            upsert.execute(params![sql_key(*addr)?, &block.as_bytes()[..]])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn sql_key(addr: Addr) -> Result<i64> {
    i64::try_from(addr).map_err(|_| BenchError::System {
        system: "sqlite".into(),
        message: format!("block address {addr} does not fit an INTEGER key"),
    })
}

fn read_row(conn: &Connection, addr: Addr) -> Result<Block> {
    let mut select = conn.prepare_cached(SELECT)?;
    let mut rows = select.query(params![sql_key(addr)?])?;
    let Some(row) = rows.next()? else {
        return Err(BenchError::Missing {
            system: "sqlite".into(),
            addr,
        });
    };
    let bytes = row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
    Ok(Block::from_bytes(bytes)?)
}

struct Sqlite {
    dir: PathBuf,
    geometry: Geometry,
    connections: Vec<Mutex<Connection>>,
    nosync: Mutex<Connection>,
    recoveries: AtomicU64,
}

impl Sqlite {
    /// The crash image must hold the whole log, or the recovery timed would be of nothing.
    fn check_wal_holds(&self, crash_dir: &Path, rows: usize) -> Result<()> {
        let wal = crash_dir.join(format!("{FILE_NAME}-wal"));
        let wal_bytes = std::fs::metadata(&wal)
            .map_err(|e| BenchError::io("stat", &wal, e))?
            .len();
        let minimum = (rows * txdisk_disk::BLOCK_SIZE) as u64;
        if wal_bytes < minimum {
            return Err(BenchError::System {
                system: "sqlite".into(),
                message: format!(
                    "crash image's WAL holds {wal_bytes} bytes, expected at least {minimum}"
                ),
            });
        }
        Ok(())
    }

    fn connection(&self, thread: usize) -> MutexGuard<'_, Connection> {
        let Some(slot) = self.connections.get(thread) else {
            panic!(
                "sqlite bench: thread {thread} beyond the {} connections opened",
                self.connections.len()
            );
        };
        // A poisoned lock only means another worker panicked; the connection itself is sound.
        slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_autocheckpoint(conn: &Connection, pages: u32) -> Result<()> {
        // The pragma returns the new value as a row.
        let _: i64 = conn.query_row(&format!("PRAGMA wal_autocheckpoint={pages}"), [], |row| {
            row.get(0)
        })?;
        Ok(())
    }

    fn checkpoint(conn: &Connection, mode: &str) -> Result<()> {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))?;
        Ok(())
    }

    /// Untimed: fills the WAL with `log_blocks` rows and copies db + WAL aside, as a crash
    /// would leave them. Timed: opening the copy, which replays the WAL, and installing it.
    fn recover_full_log(&self) -> Result<RecoveryRun> {
        let mut conn = self.connection(0);
        Self::checkpoint(&conn, "TRUNCATE")?;
        Self::set_autocheckpoint(&conn, 0)?;
        // New bytes every time: SQLite skips rewriting a row whose content is unchanged, which
        // would leave the WAL empty.
        let run = self.recoveries.fetch_add(1, Ordering::Relaxed);
        let pattern = Block::filled(0xA5 ^ (run as u8));
        let addrs: Vec<Addr> =
            (0..self.geometry.log_blocks.min(self.geometry.disk_blocks)).collect();
        for chunk in addrs.chunks(FILL_ROWS_PER_TXN) {
            write_rows(&mut conn, chunk, &vec![pattern.clone(); chunk.len()])?;
        }
        let crash_dir = self.dir.join(CRASH_DIR);
        copy_crash_image(&self.dir, &crash_dir)?;
        self.check_wal_holds(&crash_dir, addrs.len())?;
        Self::set_autocheckpoint(&conn, DEFAULT_AUTOCHECKPOINT_PAGES)?;
        Self::checkpoint(&conn, "TRUNCATE")?;
        drop(conn);

        let clock = RecoveryClock::start();
        let recovered = open_connection(&crash_dir.join(FILE_NAME), Synchronous::Full)?;
        read_row(&recovered, 0)?;
        Self::checkpoint(&recovered, "TRUNCATE")?;
        drop(recovered);
        let run = clock.stop(addrs.len() as u64 * txdisk_disk::BLOCK_SIZE as u64);
        std::fs::remove_dir_all(&crash_dir).map_err(|e| BenchError::io("remove", &crash_dir, e))?;
        Ok(run)
    }
}

/// Copies the database and its WAL (not the shared-memory index, which a crash loses).
fn copy_crash_image(dir: &Path, crash_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(crash_dir).map_err(|e| BenchError::io("mkdir", crash_dir, e))?;
    for name in [FILE_NAME.to_string(), format!("{FILE_NAME}-wal")] {
        let from = dir.join(&name);
        std::fs::copy(&from, crash_dir.join(&name))
            .map_err(|e| BenchError::io("copy", &from, e))?;
    }
    Ok(())
}

impl System for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn durable_txn(&self, thread: usize, addrs: &[Addr], data: &[Block]) -> Result<()> {
        write_rows(&mut self.connection(thread), addrs, data)
    }

    fn nosync_txn(&self, _thread: usize, addrs: &[Addr], data: &[Block]) -> Result<()> {
        let mut conn = self.nosync.lock().unwrap_or_else(|p| p.into_inner());
        write_rows(&mut conn, addrs, data)
    }

    fn flush(&self) -> Result<()> {
        let conn = self.nosync.lock().unwrap_or_else(|p| p.into_inner());
        Self::checkpoint(&conn, "PASSIVE")
    }

    fn prepare_reads(&self, kind: ReadKind, addrs: &[Addr], data: &[Block]) -> Result<()> {
        let mut conn = self.connection(0);
        Self::checkpoint(&conn, "TRUNCATE")?;
        match kind {
            ReadKind::Installed => {
                write_rows(&mut conn, addrs, data)?;
                Self::checkpoint(&conn, "TRUNCATE")?;
            }
            ReadKind::Logged => {
                // Keep the rows in the WAL: reads then go through the WAL index.
                Self::set_autocheckpoint(&conn, 0)?;
                write_rows(&mut conn, addrs, data)?;
                Self::set_autocheckpoint(&conn, DEFAULT_AUTOCHECKPOINT_PAGES)?;
            }
        }
        Ok(())
    }

    fn read(&self, thread: usize, addr: Addr) -> Result<Block> {
        read_row(&self.connection(thread), addr)
    }

    fn recover(&self, kind: RecoveryKind) -> Result<RecoveryRun> {
        match kind {
            RecoveryKind::FullLog => self.recover_full_log(),
            RecoveryKind::ReplicaResync | RecoveryKind::ReopenAfterCrash { .. } => {
                Err(self.unsupported(kind.workload()))
            }
        }
    }
}
