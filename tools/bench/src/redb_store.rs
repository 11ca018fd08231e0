//! redb: a table `u64 → [u8]` of 4 KiB values, one write transaction per benchmark transaction.
//!
//! Configured as redb's documentation describes durable commits: the default
//! `Durability::Immediate` (persistent when `commit` returns), default cache size and default
//! commit protocol (checksummed one-phase commit). redb has one writer at a time: concurrent
//! `begin_write` calls queue. Deferred durability is `Durability::None`, made durable by the
//! next `Immediate` commit (the flush). redb has no write-ahead log and no replicas, so it
//! leaves out `read-logged`, `recover-full-log` and `replica-resync`.

use crate::error::{BenchError, Result};
use crate::system::{System, SystemFactory};
use crate::workload::{Geometry, ReadKind, Workload};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use std::path::Path;
use txdisk_disk::{Addr, Block};

const FILE_NAME: &str = "blocks.redb";
const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const FILL_ROWS_PER_TXN: usize = 4096;

/// redb, an embedded B-tree store, as a peer: one table of blocks, each transaction committed
/// durably.
pub struct RedbFactory;

impl SystemFactory for RedbFactory {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn config_note(&self) -> String {
        "redb 3 with defaults: Durability::Immediate commits (durable on return), default \
         cache and commit protocol; one writer at a time (begin_write queues); nosync = \
         Durability::None, flush = an empty Immediate commit"
            .to_string()
    }

    fn supports(&self, workload: Workload) -> bool {
        !matches!(
            workload,
            Workload::ReadLogged
                | Workload::RecoverFullLog
                | Workload::ReplicaResync
                | Workload::ReopenAfterCrash { .. }
        )
    }

    fn create(&self, dir: &Path, geometry: &Geometry) -> Result<()> {
        let store = RedbStore {
            db: Database::create(dir.join(FILE_NAME))?,
        };
        let zero = Block::zeroed();
        let addrs: Vec<Addr> = (0..geometry.disk_blocks).collect();
        for chunk in addrs.chunks(FILL_ROWS_PER_TXN) {
            store.write(
                chunk,
                &vec![zero.clone(); chunk.len()],
                Durability::Immediate,
            )?;
        }
        Ok(())
    }

    fn open(&self, dir: &Path, _geometry: &Geometry) -> Result<Box<dyn System>> {
        Ok(Box::new(RedbStore {
            db: Database::create(dir.join(FILE_NAME))?,
        }))
    }
}

struct RedbStore {
    db: Database,
}

impl RedbStore {
    fn write(&self, addrs: &[Addr], data: &[Block], durability: Durability) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)?;
        {
            let mut table = txn.open_table(TABLE)?;
            for (addr, block) in addrs.iter().zip(data) {
                table.insert(*addr, &block.as_bytes()[..])?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

impl System for RedbStore {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn durable_txn(&self, _thread: usize, addrs: &[Addr], data: &[Block]) -> Result<()> {
        self.write(addrs, data, Durability::Immediate)
    }

    fn nosync_txn(&self, _thread: usize, addrs: &[Addr], data: &[Block]) -> Result<()> {
        self.write(addrs, data, Durability::None)
    }

    fn flush(&self) -> Result<()> {
        self.write(&[], &[], Durability::Immediate)
    }

    fn prepare_reads(&self, kind: ReadKind, addrs: &[Addr], data: &[Block]) -> Result<()> {
        match kind {
            ReadKind::Installed => self.write(addrs, data, Durability::Immediate),
            ReadKind::Logged => Err(self.unsupported(Workload::ReadLogged)),
        }
    }

    fn read(&self, _thread: usize, addr: Addr) -> Result<Block> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        let Some(value) = table.get(addr)? else {
            return Err(BenchError::Missing {
                system: "redb".into(),
                addr,
            });
        };
        Ok(Block::from_bytes(value.value())?)
    }
}
