//! The one place the stack takes its locks, condition variables, atomics and threads from.
//!
//! Every layer imports these names from here instead of from `parking_lot` or `std`, so that one
//! cargo feature can put the whole stack under a controlled scheduler:
//!
//! * **Normally** they *are* `parking_lot`'s locks and `std`'s atomics and threads (re-exports,
//!   not wrappers): the normal build compiles to exactly the code it did before.
//! * **With the `shuttle` feature** they are [shuttle]'s, so a test inside `shuttle::check_*`
//!   (or a `shuttle::Runner`) decides at every lock, atomic, notification, spawn and yield which
//!   thread runs next, and a failing schedule is printed and replays exactly. Such a build only
//!   runs inside a shuttle test: the first lock taken outside one panics.
//!
//! **Timed waits under the model.** Shuttle has no clock, so [`Condvar::wait_for`] and
//! [`Condvar::wait_until`] are modelled as "some time passes": the waiter releases the lock, the
//! scheduler runs whatever it chooses, and the wait ends *timed out* unless a notification came
//! in between. Code that is correct under this model is correct for every timeout, long or
//! short; a wait that only a timeout would end (a lost notification) still ends, which is what
//! real time does too. Untimed [`Condvar::wait`]s wait for a notification, so a lost wake-up
//! there is a deadlock shuttle reports (or its step limit, when another thread keeps spinning
//! on a timed wait meanwhile).
//!
//! **What the model does not cover.** A timed waiter is not on the condition variable's wait
//! list, so it never consumes a `notify_one` meant for an untimed one (no condition variable of
//! the stack mixes the two), and a notification lost to a timed waiter is never seen as lost
//! (its wait times out as if it had been). Shuttle runs every atomic as `SeqCst`: bugs that
//! need a weaker ordering to show are out of its reach.
//!
//! `Arc` stays `std`'s in both builds: reference counts are not a protocol of the stack.
//!
//! [shuttle]: https://docs.rs/shuttle

#[cfg(not(feature = "shuttle"))]
mod imp {
    pub use parking_lot::{
        Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, WaitTimeoutResult,
    };
    pub use std::sync::atomic;
    pub use std::thread;
}

#[cfg(feature = "shuttle")]
mod imp {
    pub use shuttle::sync::atomic;
    pub use shuttle::thread;
    pub use shuttle_parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    /// What a timed wait reports: whether it ended without a notification.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        /// True when the wait ended because its time passed.
        pub fn timed_out(self) -> bool {
            self.0
        }
    }

    /// `parking_lot::Condvar`'s interface over shuttle's locks.
    ///
    /// A waiter takes `gate` *before* it releases the caller's mutex and waits on `signal`
    /// (which releases `gate` atomically); a notifier takes `gate` to notify. A notifier changed
    /// the waited-for state under the caller's mutex, so after the waiter released it, and so
    /// after the waiter took `gate`: its notification cannot fall between the waiter's check
    /// and its wait. Lock order: the caller's mutex, then `gate`.
    #[derive(Debug, Default)]
    pub struct Condvar {
        gate: shuttle::sync::Mutex<()>,
        signal: shuttle::sync::Condvar,
        /// Notifications so far: a timed waiter that sees it move was notified.
        notifications: std::sync::atomic::AtomicU64,
    }

    impl Condvar {
        /// A condition variable no one waits on.
        pub fn new() -> Condvar {
            Condvar::default()
        }

        /// Releases `guard`'s mutex, waits for a notification, takes the mutex again.
        pub fn wait<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>) {
            let gate = lock_gate(&self.gate);
            MutexGuard::unlocked(guard, || {
                drop(self.signal.wait(gate));
            });
        }

        /// A wait bounded by `timeout`: see the module documentation for the model.
        pub fn wait_for<T: ?Sized>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _timeout: Duration,
        ) -> WaitTimeoutResult {
            self.wait_some_time(guard)
        }

        /// A wait bounded by `deadline`: see the module documentation for the model.
        pub fn wait_until<T: ?Sized>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _deadline: Instant,
        ) -> WaitTimeoutResult {
            self.wait_some_time(guard)
        }

        fn wait_some_time<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>) -> WaitTimeoutResult {
            let before = self.notifications.load(Ordering::SeqCst);
            MutexGuard::unlocked(guard, shuttle::thread::yield_now);
            WaitTimeoutResult(self.notifications.load(Ordering::SeqCst) == before)
        }

        /// Wakes one waiter, if any.
        pub fn notify_one(&self) -> bool {
            let _gate = lock_gate(&self.gate);
            self.notifications.fetch_add(1, Ordering::SeqCst);
            self.signal.notify_one();
            true
        }

        /// Wakes every waiter.
        pub fn notify_all(&self) -> usize {
            let _gate = lock_gate(&self.gate);
            self.notifications.fetch_add(1, Ordering::SeqCst);
            self.signal.notify_all();
            0
        }
    }

    fn lock_gate(gate: &shuttle::sync::Mutex<()>) -> shuttle::sync::MutexGuard<'_, ()> {
        // The gate guards no data, so a panic while it was held leaves nothing inconsistent.
        gate.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub use imp::*;

/// The scheduler itself, for the tests that run the stack under it.
#[cfg(feature = "shuttle")]
pub use shuttle;
