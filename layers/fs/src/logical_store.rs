//! The file system's store on the real stack: [`TxStore`] for the logical disk. Each file-system
//! operation is one logical-disk transaction; a conflict is retried by the file system.

use crate::store::{StoreError, TxHandle, TxStore};
use txdisk_disk::{Addr, Block, Disk, DiskError};
use txdisk_log::LogError;
use txdisk_logical::{LogicalDisk, LogicalError, Transaction};

fn store_error(error: LogicalError) -> StoreError {
    match error {
        LogicalError::Conflict { .. } => StoreError::Conflict,
        LogicalError::Log(LogError::TransactionTooLarge { blocks, max_blocks }) => {
            StoreError::TxTooLarge { blocks, max_blocks }
        }
        LogicalError::Log(LogError::AddressOutOfRange { addr, data_blocks }) => {
            StoreError::OutOfRange {
                addr,
                size_blocks: data_blocks,
            }
        }
        LogicalError::Log(LogError::Disk(DiskError::Crashed)) => StoreError::Crashed,
        other => StoreError::Other(Box::new(other)),
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
