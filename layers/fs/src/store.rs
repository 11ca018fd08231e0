//! The transactional block store the file system runs on, and an in-memory implementation.
//!
//! [`TxStore`] mirrors the logical disk's API (`begin`, tx `read`/`write`/`commit`/
//! `commit_nosync`/`abort`, `flush`, `size_blocks`, `max_tx_blocks`) so that the file system
//! can be built and tested without it; an implementation for the logical disk is a thin
//! forwarding `impl`. [`MemStore`] keeps committed blocks in a map, buffers each transaction's
//! writes, applies them atomically on commit, and simulates crashes: after
//! [`MemStore::crash_after_ops`] every call fails with [`StoreError::Crashed`], and
//! [`MemStore::restart`] keeps the flushed state plus a chosen prefix of the deferred commits —
//! exactly the states the logical disk's crash contract allows.
//!
//! The logical disk's adapter is a forwarding impl (the `on_logical` test has it whole):
//! `begin` wraps `LogicalDisk::begin`, each tx method forwards, and a `LogicalError` maps to
//! [`StoreError::Conflict`] when `is_conflict()` and to [`StoreError::Other`] otherwise.

use std::collections::HashMap;
use std::sync::Arc;
use txdisk_disk::sync::Mutex;
use txdisk_disk::{Addr, Block};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another transaction committed a block this one read: retry the whole operation.
    #[error("transaction conflict: retry")]
    Conflict,
    /// The transaction wrote more distinct blocks than [`TxStore::max_tx_blocks`].
    #[error("transaction writes {blocks} distinct blocks, the store allows {max_blocks}")]
    TxTooLarge {
        /// Distinct blocks written.
        blocks: usize,
        /// The most the store allows.
        max_blocks: usize,
    },
    /// The address is past the end of the store.
    #[error("address {addr} is out of range (store has {size_blocks} blocks)")]
    OutOfRange {
        /// The address asked for.
        addr: Addr,
        /// The store's size; valid addresses are below it.
        size_blocks: u64,
    },
    /// The (simulated) machine crashed: nothing more reaches the store until restart.
    #[error("the store crashed")]
    Crashed,
    /// Any other failure of the layer below (I/O error, failed flush, damaged log).
    #[error("store: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A transactional block store: serializable transactions over `size_blocks()` blocks.
pub trait TxStore: Send + Sync {
    /// An open transaction.
    type Tx<'a>: TxHandle
    where
        Self: 'a;

    /// Starts a transaction.
    fn begin(&self) -> Self::Tx<'_>;
    /// Makes every commit made so far (deferred ones included) durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Number of blocks; valid addresses are `0..size_blocks()`.
    fn size_blocks(&self) -> u64;
    /// Most distinct blocks one transaction may write.
    fn max_tx_blocks(&self) -> usize;
}

/// One open transaction of a [`TxStore`].
pub trait TxHandle {
    /// Reads a block, seeing this transaction's own writes.
    fn read(&mut self, addr: Addr) -> Result<Block, StoreError>;
    /// Buffers a write, applied at commit.
    fn write(&mut self, addr: Addr, block: &Block) -> Result<(), StoreError>;
    /// Applies every write atomically and durably.
    fn commit(self) -> Result<(), StoreError>;
    /// Applies every write atomically; durable at the next flush, in commit order.
    fn commit_nosync(self) -> Result<(), StoreError>;
    /// Drops every write.
    fn abort(self);
}

/// Default `max_tx_blocks` of a [`MemStore`], about what a small log holds.
pub const MEM_DEFAULT_MAX_TX_BLOCKS: usize = 256;

type Writes = Vec<(Addr, Arc<Block>)>;

struct MemInner {
    /// State made durable by the last flush or durable commit.
    durable: HashMap<Addr, Arc<Block>>,
    /// Durable state plus every deferred commit: what reads see.
    current: HashMap<Addr, Arc<Block>>,
    /// Deferred commits since the last flush, oldest first.
    pending: Vec<Writes>,
    /// Commit number that last wrote each address (for conflict detection).
    last_commit: HashMap<Addr, u64>,
    commits: u64,
    /// Store calls so far; a crash is scheduled at `crash_at`.
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    /// Commits that are still to fail with `Conflict` (to exercise retry paths).
    forced_conflicts: u32,
    /// Commits refused for a real conflict so far.
    conflicts: u64,
}

/// An in-memory [`TxStore`] with crash simulation (see the module documentation).
pub struct MemStore {
    size_blocks: u64,
    max_tx_blocks: usize,
    inner: Mutex<MemInner>,
}

impl MemStore {
    /// A zeroed store of `size_blocks` blocks allowing `max_tx_blocks` blocks per transaction.
    pub fn new(size_blocks: u64, max_tx_blocks: usize) -> MemStore {
        MemStore {
            size_blocks,
            max_tx_blocks,
            inner: Mutex::new(MemInner {
                durable: HashMap::new(),
                current: HashMap::new(),
                pending: Vec::new(),
                last_commit: HashMap::new(),
                commits: 0,
                ops: 0,
                crash_at: None,
                crashed: false,
                forced_conflicts: 0,
                conflicts: 0,
            }),
        }
    }

    /// Schedules a crash: the store call numbered `op` (counting from now, 0 = the next call)
    /// and every later one fail with [`StoreError::Crashed`], and nothing more is applied.
    pub fn crash_after_ops(&self, op: u64) {
        let mut inner = self.inner.lock();
        inner.crash_at = Some(inner.ops + op);
    }

    /// Crashes now.
    pub fn crash(&self) {
        self.inner.lock().crashed = true;
    }

    /// Whether the store has crashed.
    pub fn is_crashed(&self) -> bool {
        self.inner.lock().crashed
    }

    /// Deferred commits not yet flushed (what a crash may lose).
    pub fn pending_commits(&self) -> usize {
        self.inner.lock().pending.len()
    }

    /// Commits refused so far because another transaction changed what they read.
    pub fn conflicts(&self) -> u64 {
        self.inner.lock().conflicts
    }

    /// Store calls made so far (reads, writes, commits, flushes).
    pub fn ops(&self) -> u64 {
        self.inner.lock().ops
    }

    /// Recovers from a crash (or simulates one now): the state becomes the durable state plus
    /// the first `keep_pending` deferred commits (clamped to how many there are).
    pub fn restart(&self, keep_pending: usize) {
        let mut inner = self.inner.lock();
        let pending = std::mem::take(&mut inner.pending);
        let keep = keep_pending.min(pending.len());
        for writes in pending.into_iter().take(keep) {
            for (addr, block) in writes {
                inner.durable.insert(addr, block);
            }
        }
        inner.current = inner.durable.clone();
        inner.crashed = false;
        inner.crash_at = None;
        // Transactions begun before the crash are gone; bumping the counter fails their commits.
        inner.commits += 1;
        let commits = inner.commits;
        for version in inner.last_commit.values_mut() {
            *version = commits;
        }
    }

    /// Makes the next `count` commits fail with [`StoreError::Conflict`].
    pub fn force_conflicts(&self, count: u32) {
        self.inner.lock().forced_conflicts = count;
    }

    /// A copy of the current contents (for tests that corrupt and compare images).
    pub fn snapshot(&self) -> HashMap<Addr, Block> {
        let inner = self.inner.lock();
        inner
            .current
            .iter()
            .map(|(addr, block)| (*addr, Block::clone(block)))
            .collect()
    }
}

impl MemInner {
    /// Counts one store call and fails it if the machine has crashed or crashes now.
    fn tick(&mut self) -> Result<(), StoreError> {
        if self.crash_at == Some(self.ops) {
            self.crashed = true;
        }
        self.ops += 1;
        if self.crashed {
            return Err(StoreError::Crashed);
        }
        Ok(())
    }

    fn apply(&mut self, writes: &Writes) {
        self.commits += 1;
        for (addr, block) in writes {
            self.current.insert(*addr, Arc::clone(block));
            self.last_commit.insert(*addr, self.commits);
        }
    }

    fn flush(&mut self) {
        for writes in std::mem::take(&mut self.pending) {
            for (addr, block) in writes {
                self.durable.insert(addr, block);
            }
        }
    }
}

/// A transaction on a [`MemStore`]: buffered writes, the blocks read, the commit it began after.
pub struct MemTx<'a> {
    store: &'a MemStore,
    began_after: u64,
    reads: Vec<Addr>,
    writes: HashMap<Addr, Arc<Block>>,
}

impl TxStore for MemStore {
    type Tx<'a> = MemTx<'a>;

    fn begin(&self) -> MemTx<'_> {
        let began_after = self.inner.lock().commits;
        MemTx {
            store: self,
            began_after,
            reads: Vec::new(),
            writes: HashMap::new(),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        inner.tick()?;
        inner.flush();
        Ok(())
    }

    fn size_blocks(&self) -> u64 {
        self.size_blocks
    }

    fn max_tx_blocks(&self) -> usize {
        self.max_tx_blocks
    }
}

impl MemTx<'_> {
    fn check_addr(&self, addr: Addr) -> Result<(), StoreError> {
        if addr >= self.store.size_blocks {
            return Err(StoreError::OutOfRange {
                addr,
                size_blocks: self.store.size_blocks,
            });
        }
        Ok(())
    }

    /// Validates and applies this transaction; `durable` flushes everything up to it.
    fn finish(self, durable: bool) -> Result<(), StoreError> {
        let mut inner = self.store.inner.lock();
        inner.tick()?;
        if inner.forced_conflicts > 0 {
            inner.forced_conflicts -= 1;
            return Err(StoreError::Conflict);
        }
        // Serializable by backward validation: nothing this transaction read (or overwrote)
        // may have been committed by someone else since it began.
        let stale =
            |addr: &Addr| inner.last_commit.get(addr).copied().unwrap_or(0) > self.began_after;
        if self.reads.iter().any(stale) || self.writes.keys().any(stale) {
            inner.conflicts += 1;
            return Err(StoreError::Conflict);
        }
        let mut writes: Writes = self.writes.into_iter().collect();
        writes.sort_by_key(|(addr, _)| *addr);
        inner.apply(&writes);
        inner.pending.push(writes);
        if durable {
            inner.flush();
        }
        Ok(())
    }
}

impl TxHandle for MemTx<'_> {
    fn read(&mut self, addr: Addr) -> Result<Block, StoreError> {
        self.check_addr(addr)?;
        let mut inner = self.store.inner.lock();
        inner.tick()?;
        if let Some(block) = self.writes.get(&addr) {
            return Ok(Block::clone(block));
        }
        self.reads.push(addr);
        Ok(inner
            .current
            .get(&addr)
            .map_or_else(Block::zeroed, |block| Block::clone(block)))
    }

    fn write(&mut self, addr: Addr, block: &Block) -> Result<(), StoreError> {
        self.check_addr(addr)?;
        self.store.inner.lock().tick()?;
        if !self.writes.contains_key(&addr) && self.writes.len() >= self.store.max_tx_blocks {
            return Err(StoreError::TxTooLarge {
                blocks: self.writes.len() + 1,
                max_blocks: self.store.max_tx_blocks,
            });
        }
        self.writes.insert(addr, Arc::new(block.clone()));
        Ok(())
    }

    fn commit(self) -> Result<(), StoreError> {
        self.finish(true)
    }

    fn commit_nosync(self) -> Result<(), StoreError> {
        self.finish(false)
    }

    fn abort(self) {}
}

impl<S: TxStore + ?Sized> TxStore for Arc<S> {
    type Tx<'a>
        = S::Tx<'a>
    where
        Self: 'a;

    fn begin(&self) -> Self::Tx<'_> {
        (**self).begin()
    }
    fn flush(&self) -> Result<(), StoreError> {
        (**self).flush()
    }
    fn size_blocks(&self) -> u64 {
        (**self).size_blocks()
    }
    fn max_tx_blocks(&self) -> usize {
        (**self).max_tx_blocks()
    }
}

/// A borrowed store is a store: a file system can run on a store its caller keeps owning (the
/// crash-point fuzzer opens one per operation over the logical disk it hands out).
impl<S: TxStore + ?Sized> TxStore for &S {
    type Tx<'a>
        = S::Tx<'a>
    where
        Self: 'a;

    fn begin(&self) -> Self::Tx<'_> {
        (**self).begin()
    }
    fn flush(&self) -> Result<(), StoreError> {
        (**self).flush()
    }
    fn size_blocks(&self) -> u64 {
        (**self).size_blocks()
    }
    fn max_tx_blocks(&self) -> usize {
        (**self).max_tx_blocks()
    }
}
