//! A long-lived thread that syncs one member on request, so that a pair `sync` is two
//! concurrent device syncs — the caller's own and this thread's — without starting a thread
//! per sync (which cost more CPU than the rest of a commit).
//!
//! Requests coalesce as a group commit does: a request made while a sync is running is served
//! by the next sync, which starts after it and so covers every write issued before it. A sync
//! that fails is reported to every request it or any later sync serves for the same member
//! disk (a device whose sync failed may have dropped writes; no later sync can vouch for them).

use crate::pair::{Member, MemberError};
use std::sync::Arc;
use txdisk_disk::sync::atomic::Ordering;
use txdisk_disk::sync::thread::JoinHandle;
use txdisk_disk::sync::{Condvar, Mutex};
use txdisk_disk::{Disk, DiskError};

#[derive(Debug, Default)]
struct Queue {
    /// Requests made so far (a request's ticket is this count after it).
    requested: u64,
    /// Every ticket up to this one is served.
    served: u64,
    /// The first failure, with the member generation whose disk gave it: the machine crashed
    /// (`Crashed`), or the sync failed (`SyncFailed`; the cause is logged where it happened).
    failure: Option<(u64, DiskError)>,
    /// The worker panicked (a broken invariant below): every waiter panics too, none hangs.
    poisoned: bool,
    stop: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// The worker waits here for requests (and for `stop`).
    work: Condvar,
    /// Requesters wait here for their ticket.
    done: Condvar,
}

/// The worker syncing one member, joined when dropped.
pub(crate) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts the worker for `member`. `None` if the system cannot start a thread: the pair
    /// then syncs its members one after the other on the caller's thread.
    pub(crate) fn start<D: Disk + 'static>(member: Arc<Member<D>>, name: &str) -> Option<Syncer> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = txdisk_disk::sync::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || serve(&worker, &member))
            .ok()?;
        Some(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for a sync of every write issued before this call; returns the ticket to
    /// [`Self::wait`] for.
    pub(crate) fn request(&self) -> u64 {
        let mut queue = self.shared.queue.lock();
        queue.requested += 1;
        let ticket = queue.requested;
        self.shared.work.notify_one();
        ticket
    }

    /// Waits until the sync serving `ticket` has returned. `Err` if any sync of the worker has
    /// failed, tagged with the member generation (the disk) that failed: the pair's
    /// `fail_replica` ignores the failure of a disk it has since replaced, and a disk whose
    /// sync failed once never reports success again.
    pub(crate) fn wait(&self, ticket: u64) -> Result<(), MemberError> {
        let mut queue = self.shared.queue.lock();
        while queue.served < ticket && !queue.poisoned {
            self.shared.done.wait(&mut queue);
        }
        assert!(!queue.poisoned, "replicated: d2's syncer panicked");
        match &queue.failure {
            Some((generation, error)) => {
                let error = match error {
                    DiskError::Crashed => DiskError::Crashed,
                    _ => DiskError::SyncFailed,
                };
                Err(MemberError {
                    generation: *generation,
                    error,
                })
            }
            None => Ok(()),
        }
    }
}

fn serve<D: Disk>(shared: &Shared, member: &Member<D>) {
    let mut queue = shared.queue.lock();
    loop {
        while queue.requested == queue.served && !queue.stop {
            shared.work.wait(&mut queue);
        }
        if queue.requested == queue.served {
            return; // stopping, nothing left to serve
        }
        let serving = queue.requested;
        drop(queue);
        let synced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let disk = member.disk.read();
            let generation = member.generation.load(Ordering::Acquire);
            let outcome = match &*disk {
                Some(disk) => disk.sync(),
                None => Err(DiskError::Failed),
            };
            outcome.map_err(|error| {
                if !matches!(error, DiskError::Crashed) {
                    tracing::warn!(%error, "replica d2: sync failed");
                }
                (generation, error)
            })
        }));
        queue = shared.queue.lock();
        let result = match synced {
            Ok(result) => result,
            Err(panic) => {
                queue.poisoned = true;
                shared.done.notify_all();
                drop(queue);
                std::panic::resume_unwind(panic);
            }
        };
        if let Err((generation, error)) = result {
            // The first failure of each disk is kept (generations only grow).
            let newer = !matches!(&queue.failure, Some((old, _)) if *old >= generation);
            if newer {
                queue.failure = Some((generation, error));
            }
        }
        queue.served = serving;
        shared.done.notify_all();
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.queue.lock().stop = true;
        self.shared.work.notify_all();
        if let Some(thread) = self.thread.take() {
            // A panic on the worker is a broken invariant below this layer: pass it on, unless
            // this thread is already unwinding.
            if let Err(panic) = thread.join() {
                if !txdisk_disk::sync::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}
