//! [`Handle`]: reaching a running loop from another thread.
//!
//! The loop sleeps in `epoll_wait`; another thread cannot touch its state,
//! but it can wake it. A [`mio::Waker`] (an `eventfd` on Linux) is registered
//! under [`Key::WAKER`](crate::Key::WAKER); behind it sits a queue of jobs
//! guarded by a mutex. Wakes coalesce: a flag records that a wake is already
//! on its way, so a thousand `call_soon`s before the loop gets round to them
//! cost one `eventfd` write and one loop turn, and the loop runs all thousand
//! jobs in that turn.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mio::Waker;

use crate::reactor::Reactor;

pub(crate) type RemoteJob = Box<dyn FnOnce(&mut Reactor) + Send>;

/// The part of a reactor that other threads may touch.
pub(crate) struct Remote {
    waker: Waker,
    jobs: Mutex<Vec<RemoteJob>>,
    /// A wake has been sent and the loop has not yet taken the jobs.
    notified: AtomicBool,
    stop: AtomicBool,
    /// False once the reactor is dropped.
    alive: AtomicBool,
}

impl Remote {
    pub(crate) fn new(waker: Waker) -> Remote {
        Remote {
            waker,
            jobs: Mutex::new(Vec::new()),
            notified: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            alive: AtomicBool::new(true),
        }
    }

    fn wake(&self) -> io::Result<()> {
        if !self.alive.load(Ordering::Acquire) {
            return Err(gone());
        }
        // Only the first wake since the loop last drained the queue writes to
        // the eventfd; the rest ride along.
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.waker.wake()?;
        }
        Ok(())
    }

    /// Called by the loop when the waker fired: takes the queued jobs and
    /// whether a stop was asked for. The flag is cleared *before* the queue is
    /// taken, so a job pushed after the take always sends a fresh wake.
    pub(crate) fn take(&self, into: &mut VecDeque<RemoteJob>) -> bool {
        self.notified.store(false, Ordering::Release);
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        into.extend(jobs.drain(..));
        self.stop.swap(false, Ordering::AcqRel)
    }

    /// The reactor is being dropped: no job will run again. `alive` is
    /// cleared under the queue's lock, so a job is either queued before it
    /// (and dropped here) or refused after it (and dropped by `call_soon`),
    /// never left in the queue.
    pub(crate) fn shut_down(&self) {
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.alive.store(false, Ordering::Release);
        jobs.clear();
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the reactor this handle belongs to has been dropped",
    )
}

/// A `Send + Clone` handle to a [`Reactor`], for other threads.
///
/// It can stop the loop or run a closure on the loop's thread; both wake the
/// loop through its waker. Closures run in the order they were sent, in the
/// I/O phase of the turn the wake arrives in.
///
/// # Examples
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::sync::mpsc;
/// use reactor::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// let handle = reactor.handle();
/// let (tx, rx) = mpsc::channel();
/// let worker = std::thread::spawn(move || {
///     handle.call_soon(move |reactor| {
///         tx.send(reactor.stats().turns).unwrap();
///     }).unwrap();
///     handle.stop().unwrap();
/// });
/// reactor.run()?; // returns once the worker's stop arrives
/// worker.join().unwrap();
/// assert!(rx.recv().is_ok(), "the closure ran on the loop's thread");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) remote: Arc<Remote>,
}

impl Handle {
    /// Runs `job` on the loop's thread: in the I/O step of the turn in which
    /// the wake arrives (step 5 of [`Reactor`]'s turn), after the I/O events
    /// before it in that batch, in the order jobs were sent.
    ///
    /// # Errors
    ///
    /// - `BrokenPipe` if the reactor has been dropped (the job is dropped);
    /// - an error writing to the waker's `eventfd` (practically never).
    pub fn call_soon<F>(&self, job: F) -> io::Result<()>
    where
        F: FnOnce(&mut Reactor) + Send + 'static,
    {
        {
            let mut jobs = self
                .remote
                .jobs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !self.remote.alive.load(Ordering::Acquire) {
                // Dropped with whatever it captured, now, not whenever the
                // last handle goes.
                return Err(gone());
            }
            jobs.push(Box::new(job));
        }
        self.remote.wake()
    }

    /// Asks the loop to stop: [`Reactor::run`] returns after the turn in which
    /// the wake arrives.
    ///
    /// # Errors
    ///
    /// As for [`call_soon`](Handle::call_soon).
    pub fn stop(&self) -> io::Result<()> {
        self.remote.stop.store(true, Ordering::Release);
        self.remote.wake()
    }

    /// Wakes the loop without giving it anything to do: the current
    /// `epoll_wait` returns and the loop runs one turn.
    ///
    /// # Errors
    ///
    /// As for [`call_soon`](Handle::call_soon).
    pub fn wake(&self) -> io::Result<()> {
        self.remote.wake()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("alive", &self.remote.alive.load(Ordering::Relaxed))
            .finish()
    }
}

impl Reactor {
    /// Keeps a weak reference to `value` where a job from another thread
    /// can find it again by the returned slot (which a `Send` handle can
    /// carry, where the value itself cannot cross threads).
    pub(crate) fn keep_for_handles(&mut self, value: Weak<dyn Any>) -> usize {
        if let Some(slot) = self.kept.iter().position(|kept| kept.strong_count() == 0) {
            self.kept[slot] = value;
            return slot;
        }
        self.kept.push(value);
        self.kept.len() - 1
    }

    /// The value kept in `slot`, if it is still alive.
    pub(crate) fn kept(&self, slot: usize) -> Option<Rc<dyn Any>> {
        self.kept.get(slot).and_then(Weak::upgrade)
    }
}
