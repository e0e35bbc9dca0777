//! Layer 2: [`Reactor`], the event loop.
//!
//! A [`Selector`] answers "which sources are ready?"; the reactor turns that
//! answer into calls: every registration carries a callback, and one turn of
//! the loop polls once and calls back every ready source. Around that sit
//! timers, callbacks deferred to the next turn, hooks that run just before
//! the loop sleeps, and a [`Handle`] for other threads.
//!
//! This file is the loop itself: the type's manual, and one turn in
//! `run_once`. Beside it: `registration.rs` (registering sources, and how one
//! event reaches its registration), `event.rs` ([`Event`], [`Dispatch`] and
//! taking a batch of events), `schedule.rs` (timers, deferred calls,
//! before-sleep hooks). The timer queue itself is `src/timer.rs`.

mod event;
mod registration;
mod schedule;

pub use event::{Dispatch, Event};
use registration::Registration;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::handle::{Handle, Remote};
use crate::key::Key;
use crate::ready::Ready;
use crate::selector::Selector;
use crate::timer::TimerQueue;

/// What a timer runs.
pub(crate) type TimerCallback = Box<dyn FnMut(&mut Reactor)>;

type Deferred = Box<dyn FnOnce(&mut Reactor)>;
type Hook = Box<dyn FnMut(&mut Reactor) -> bool>;

/// Counters describing the loop's work so far: cheap enough to leave on.
///
/// # Examples
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let mut reactor = reactor::Reactor::new()?;
/// reactor.run_once(Some(std::time::Duration::ZERO))?;
/// let stats = reactor.stats();
/// assert_eq!(stats.turns, 1);
/// assert_eq!(stats.events, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoopStats {
    /// Turns of the loop completed (calls to `run_once`, counting those `run` makes).
    pub turns: u64,
    /// Times the loop asked the kernel for events.
    pub polls: u64,
    /// Events delivered to callbacks.
    pub events: u64,
    /// Events dropped because their registration was gone or replaced.
    pub stale_events: u64,
    /// The most events one poll returned.
    pub max_events_per_poll: usize,
    /// Live registrations (the waker not counted).
    pub registrations: usize,
    /// Live timers.
    pub timers: usize,
    /// Deferred callbacks waiting for the next turn.
    pub deferred: usize,
}

/// A single-threaded event loop: register sources with callbacks, then
/// [`run`](Reactor::run).
///
/// # The readiness contract
///
/// This is the one page to read before writing a callback.
///
/// - **Edge-triggered.** A callback runs when its source *becomes* ready,
///   not while it *is* ready. After a readable event, read until the read
///   answers `WouldBlock` (or returns fewer bytes than the buffer, which on
///   Linux epoll and BSD kqueue proves the socket drained), or remember that
///   the source is still readable and come back to it yourself (with
///   [`call_soon`](Reactor::call_soon), say): no further event will remind
///   you. The same holds for writes.
/// - **Spurious events.** An event is a hint. A read after a readable event
///   may still answer `WouldBlock`; handle it everywhere.
/// - **Register once.** Registering for `READABLE | WRITABLE` once and
///   remembering readiness costs no system call per message, where
///   switching interest with [`modify`](Reactor::modify) costs an `epoll_ctl`
///   each time.
/// - **Closed sources.** [`deregister`](Reactor::deregister) drops the source
///   and callback. Events for it that were already taken from the kernel are
///   dropped too, even when a new registration reuses its slot: each [`Key`]
///   carries a generation (see [`Selector`]).
/// - **Blocking.** Nothing inside a callback may block: no blocking socket,
///   no `sleep`, no name resolution (`getaddrinfo` blocks: resolve before the
///   loop starts). A blocked callback stops every other connection.
///
/// # One turn of the loop
///
/// [`run_once`](Reactor::run_once) does, in this order (as Redis's
/// `aeProcessEvents` does):
///
/// 1. **deferred callbacks** queued by [`call_soon`](Reactor::call_soon)
///    before this step began; any they queue wait for the next turn;
/// 2. **before-sleep hooks** ([`before_sleep`](Reactor::before_sleep)): the
///    connection layer finishes reads cut short by a budget and flushes
///    queued output here, so what a turn queued for a connection goes out
///    together, in as few writes as its queue has parts;
/// 3. **the timeout**: zero if there is deferred work, a stop request or a
///    [`keep_awake`](Reactor::keep_awake); otherwise the time to the earliest
///    timer, capped by the caller's timeout;
/// 4. **poll** the kernel for events;
/// 5. **I/O callbacks**, one per ready registration, stale events dropped;
///    the waker's event runs the jobs sent by [`Handle`]s, in the order they
///    were sent, where it falls in the batch;
/// 6. **due timers**, earliest first; timers created during this step wait
///    for the next turn.
///
/// # Panics in callbacks
///
/// The loop does not swallow panics: a panicking callback unwinds out of
/// `run_once` (and `run`). Before the panic leaves, the reactor puts itself
/// back in order, so that it can be run again (or dropped):
///
/// - the registration, repeating timer or hook whose callback panicked stays
///   registered, with whatever state its closure had reached;
/// - a one-shot timer or deferred callback that panicked has been consumed;
/// - events of the same batch not yet delivered are delivered on the next
///   turn (edge-triggered readiness must not be lost), and queued deferred
///   callbacks stay queued.
///
/// Most servers should simply let the panic end the process. The connection
/// layer adds its own rule: see [`Service`](crate::service::Service).
///
/// # Examples
///
/// A timer and a deferred call:
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// use reactor::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// reactor.call_soon(|reactor| {
///     reactor.call_later(Duration::from_millis(10), |reactor| reactor.stop());
/// });
/// reactor.run()?;
/// # Ok(())
/// # }
/// ```
///
/// An echo server with callbacks only (the `selectserver.py` of the seeds is
/// `examples/select_echo_server.rs`):
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::io::{ErrorKind, Read, Write};
/// use mio::Interest;
/// use mio::net::{TcpListener, TcpStream};
/// use reactor::{Event, Reactor};
///
/// let mut reactor = Reactor::new()?;
/// let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
/// let addr = listener.local_addr()?;
/// reactor.register(listener, Interest::READABLE, |reactor, listener: &mut TcpListener, _| {
///     // Edge-triggered: accept until WouldBlock.
///     while let Ok((stream, _)) = listener.accept() {
///         let echo = |reactor: &mut Reactor, stream: &mut TcpStream, event: Event| {
///             let mut buf = [0u8; 4096];
///             loop {
///                 match stream.read(&mut buf) {
///                     Ok(0) => return reactor.deregister(event.key()).unwrap(),
///                     // A real server queues what the socket does not take.
///                     Ok(n) => { let _ = stream.write(&buf[..n]); }
///                     Err(e) if e.kind() == ErrorKind::WouldBlock => return,
///                     Err(_) => return reactor.deregister(event.key()).unwrap(),
///                 }
///             }
///         };
///         reactor.register(stream, Interest::READABLE, echo).unwrap();
///     }
/// })?;
///
/// let client = std::thread::spawn(move || {
///     let mut stream = std::net::TcpStream::connect(addr).unwrap();
///     stream.write_all(b"ping").unwrap();
///     let mut reply = [0u8; 4];
///     stream.read_exact(&mut reply).unwrap();
///     reply
/// });
/// while !client.is_finished() {
///     reactor.run_once(Some(std::time::Duration::from_millis(10)))?;
/// }
/// assert_eq!(&client.join().unwrap(), b"ping");
/// # Ok(())
/// # }
/// ```
pub struct Reactor {
    selector: Selector<Registration>,
    /// The current batch of events and how far through it the loop is. Kept
    /// here rather than on the stack so a panic cannot lose the rest.
    ready: Vec<(Key, Ready)>,
    next_ready: usize,
    timers: TimerQueue<TimerCallback>,
    deferred: VecDeque<Deferred>,
    hooks: Vec<Option<Hook>>,
    remote: Arc<Remote>,
    /// Jobs sent by handles, taken from the shared queue and not yet run
    /// (only non-empty across turns if one of them panicked).
    remote_jobs: VecDeque<crate::handle::RemoteJob>,
    /// Values that jobs from other threads may find again by slot (a
    /// service, for its `ServiceHandle`), held weakly.
    pub(crate) kept: Vec<std::rc::Weak<dyn std::any::Any>>,
    now: Instant,
    stop_requested: bool,
    keep_awake: bool,
    stats: LoopStats,
}

impl Reactor {
    /// Creates a reactor with its own `epoll` instance and waker.
    ///
    /// # Errors
    ///
    /// Whatever creating the `epoll` instance or the waker's `eventfd`
    /// answers (`EMFILE` when out of descriptors).
    pub fn new() -> io::Result<Reactor> {
        Reactor::with_capacity(Selector::<()>::DEFAULT_EVENTS)
    }

    /// Creates a reactor that takes up to `events` events per poll.
    ///
    /// # Errors
    ///
    /// As for [`Reactor::new`].
    pub fn with_capacity(events: usize) -> io::Result<Reactor> {
        let mut selector = Selector::with_capacity(events, 0)?;
        let waker = selector.waker()?;
        Ok(Reactor {
            selector,
            ready: Vec::with_capacity(events),
            next_ready: 0,
            timers: TimerQueue::new(),
            deferred: VecDeque::new(),
            hooks: Vec::new(),
            remote: Arc::new(Remote::new(waker)),
            remote_jobs: VecDeque::new(),
            kept: Vec::new(),
            now: Instant::now(),
            stop_requested: false,
            keep_awake: false,
            stats: LoopStats::default(),
        })
    }

    // ----- running ------------------------------------------------------

    /// Asks [`run`](Reactor::run) to return after the current turn.
    pub fn stop(&mut self) {
        self.stop_requested = true;
    }

    /// A handle other threads can use to stop the loop or run closures on
    /// it. See [`Handle`].
    pub fn handle(&self) -> Handle {
        Handle {
            remote: Arc::clone(&self.remote),
        }
    }

    /// The time the loop last woke from a poll: one clock read per turn,
    /// shared by everything that needs "now" during that turn.
    #[inline]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Counters of the loop's work so far.
    pub fn stats(&self) -> LoopStats {
        LoopStats {
            registrations: self.selector.len(),
            timers: self.timers.len(),
            deferred: self.deferred.len(),
            ..self.stats
        }
    }

    /// Runs turns until [`stop`](Reactor::stop) is called (from a callback,
    /// or by a [`Handle`]). The stop request is consumed when `run` returns,
    /// so `run` can be called again.
    ///
    /// # Errors
    ///
    /// An error from the poll itself (not from callbacks, which handle their
    /// own): the loop cannot go on and returns it.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.stop_requested {
            self.run_once(None)?;
        }
        self.stop_requested = false;
        Ok(())
    }

    /// Runs one turn of the loop (see the type's documentation for the six
    /// steps), waiting at most `timeout` for events (`None`: until an event
    /// or the next timer). Returns the number of I/O events delivered.
    ///
    /// Output that callbacks queue during this turn is flushed by the
    /// before-sleep hooks at the start of the next turn, so a test driving
    /// the loop by hand calls `run_once` again to see it written.
    ///
    /// # Errors
    ///
    /// An error from the poll itself.
    pub fn run_once(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        // 1. Deferred callbacks, those queued before now only (and jobs from
        //    handles left over by a panic in step 5 of an earlier turn).
        self.run_remote_jobs();
        for _ in 0..self.deferred.len() {
            match self.deferred.pop_front() {
                Some(callback) => callback(self),
                None => break,
            }
        }

        // 2. Before-sleep hooks.
        self.run_hooks();

        // 3. How long may the poll sleep?
        let timeout = self.poll_timeout(timeout);

        // 4. Poll, unless a panic left part of the previous batch undelivered.
        if self.next_ready >= self.ready.len() {
            self.selector.select_unchecked(&mut self.ready, timeout)?;
            self.next_ready = 0;
            self.stats.polls += 1;
            self.stats.max_events_per_poll = self.stats.max_events_per_poll.max(self.ready.len());
        }
        self.now = Instant::now();

        // 5. I/O callbacks. (A dispatcher may take several events in one
        //    call, with `next_event_for`: count what was delivered, not calls.)
        let events_before = self.stats.events;
        while let Some(&(key, ready)) = self.ready.get(self.next_ready) {
            self.next_ready += 1;
            if key == Key::WAKER {
                self.take_remote_jobs();
            } else {
                self.dispatch(key, ready);
            }
        }
        let delivered = (self.stats.events - events_before) as usize;

        // 6. Timers.
        self.run_timers();

        self.stats.turns += 1;
        Ok(delivered)
    }

    fn poll_timeout(&mut self, timeout: Option<Duration>) -> Option<Duration> {
        if mem::take(&mut self.keep_awake)
            || self.stop_requested
            || !self.deferred.is_empty()
            || !self.remote_jobs.is_empty()
        {
            return Some(Duration::ZERO);
        }
        match self.timers.next_deadline() {
            None => timeout,
            Some(deadline) => {
                let until = deadline.saturating_duration_since(Instant::now());
                Some(timeout.map_or(until, |t| t.min(until)))
            }
        }
    }

    fn run_hooks(&mut self) {
        let count = self.hooks.len();
        let mut removed = false;
        for i in 0..count {
            let Some(mut hook) = self.hooks[i].take() else {
                continue;
            };
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| hook(self)));
            let keep = *outcome.as_ref().unwrap_or(&true);
            if keep {
                self.hooks[i] = Some(hook);
            } else {
                removed = true;
            }
            if let Err(panic) = outcome {
                panic::resume_unwind(panic);
            }
        }
        if removed {
            self.hooks.retain(Option::is_some);
        }
    }

    fn run_timers(&mut self) {
        let mark = self.timers.sequence_mark();
        while let Some(mut due) = self.timers.pop_due(self.now, mark) {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| (due.callback)(self)));
            let now = self.now;
            self.timers.finish(due, now);
            if let Err(panic) = outcome {
                panic::resume_unwind(panic);
            }
        }
    }

    /// The waker fired: take the jobs other threads sent, note a stop
    /// request, and run the jobs in the order they were sent.
    fn take_remote_jobs(&mut self) {
        if self.remote.take(&mut self.remote_jobs) {
            self.stop_requested = true;
        }
        self.run_remote_jobs();
    }

    /// Runs the jobs taken from handles. Popped one at a time, so a panic in
    /// one leaves the rest queued for the next turn.
    fn run_remote_jobs(&mut self) {
        while let Some(job) = self.remote_jobs.pop_front() {
            job(self);
        }
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        self.remote.shut_down();
    }
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("stats", &self.stats())
            .field("stop_requested", &self.stop_requested)
            .finish()
    }
}
