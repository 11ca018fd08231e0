//! The file system's store on the real stack: [`TxStore`] for the logical disk. Each file-system
//! operation is one logical-disk transaction; a conflict is retried by the file system.

use crate::store::{StoreError, TxHandle, TxStore};
use std::ops::Deref;
use txdisk_disk::{Addr, Block, Disk, DiskError};
use txdisk_logical::{LogicalDisk, LogicalError, Transaction};

fn store_error(error: LogicalError) -> StoreError {
    match error {
        LogicalError::Conflict { .. } => StoreError::Conflict,
        LogicalError::TooLarge { blocks, max_blocks } => {
            StoreError::TxTooLarge { blocks, max_blocks }
        }
        LogicalError::OutOfRange { addr, size_blocks } => {
            StoreError::OutOfRange { addr, size_blocks }
        }
        LogicalError::Disk(DiskError::Crashed) => StoreError::Crashed,
        other => StoreError::Other(Box::new(other)),
    }
}

/// The file system over anything that derefs to a logical disk — an `Arc<LogicalDisk>`, or
/// an assembled stack that owns the layers below it — kept whole, so that the caller can take
/// it back (`.0`) and close it after the file system.
pub struct LogicalStore<S>(pub S);

impl<S: Deref<Target = LogicalDisk> + Send + Sync> TxStore for LogicalStore<S> {
    type Tx<'a>
        = Transaction<'a>
    where
        S: 'a;

    fn begin(&self) -> Transaction<'_> {
        LogicalDisk::begin(&self.0)
    }

    fn flush(&self) -> Result<(), StoreError> {
        TxStore::flush(&*self.0)
    }

    fn size_blocks(&self) -> u64 {
        Disk::size_blocks(&*self.0)
    }

    fn max_tx_blocks(&self) -> usize {
        LogicalDisk::max_tx_blocks(&self.0)
    }
}

impl TxStore for LogicalDisk {
    type Tx<'a> = Transaction<'a>;

    fn begin(&self) -> Transaction<'_> {
        LogicalDisk::begin(self)
    }

    fn flush(&self) -> Result<(), StoreError> {
        LogicalDisk::flush(self).map_err(store_error)
    }

    fn size_blocks(&self) -> u64 {
        Disk::size_blocks(self)
    }

    fn max_tx_blocks(&self) -> usize {
        LogicalDisk::max_tx_blocks(self)
    }
}

impl TxHandle for Transaction<'_> {
    fn read(&mut self, addr: Addr) -> Result<Block, StoreError> {
        Transaction::read(self, addr).map_err(store_error)
    }

    fn write(&mut self, addr: Addr, block: &Block) -> Result<(), StoreError> {
        Transaction::write(self, addr, block).map_err(store_error)
    }

    fn commit(self) -> Result<(), StoreError> {
        Transaction::commit(self).map_err(store_error)
    }

    fn commit_nosync(self) -> Result<(), StoreError> {
        Transaction::commit_nosync(self).map_err(store_error)
    }

    fn abort(self) {
        Transaction::abort(self)
    }
}
