//! Layer 2: [`Reactor`], the event loop.
//!
//! A [`Selector`] answers "which sources are ready?"; the reactor turns that
//! answer into calls: every registration carries a callback, and one turn of
//! the loop polls once and calls back every ready source. Around that sit
//! timers, callbacks deferred to the next turn, hooks that run just before
//! the loop sleeps, and a [`Handle`] for other threads.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{trace, warn};
use mio::Interest;
use mio::event::Source;

use crate::handle::{Handle, Remote};
use crate::ready::Ready;
use crate::selector::{Key, Selector, not_found};
use crate::timer::{TimerCallback, TimerId, TimerQueue};

/// One readiness event, as a reactor callback receives it: which
/// registration, and what it is ready for.
///
/// # Examples
///
/// ```
/// use reactor::{Event, Key, Ready};
/// let event = Event::new(Key::WAKER, Ready::READABLE);
/// assert!(event.is_readable() && !event.is_writable());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Event {
    key: Key,
    ready: Ready,
}

impl Event {
    /// An event for `key` with readiness `ready` (for tests and for
    /// [`Dispatch`] implementations that forward events).
    pub fn new(key: Key, ready: Ready) -> Event {
        Event { key, ready }
    }

    /// The registration the event is for.
    #[inline]
    pub fn key(&self) -> Key {
        self.key
    }

    /// Everything the source is ready for.
    #[inline]
    pub fn ready(&self) -> Ready {
        self.ready
    }

    /// Shorthand for `self.ready().is_readable()`.
    #[inline]
    pub fn is_readable(&self) -> bool {
        self.ready.is_readable()
    }

    /// Shorthand for `self.ready().is_writable()`.
    #[inline]
    pub fn is_writable(&self) -> bool {
        self.ready.is_writable()
    }
}

/// A receiver of events for many registrations at once.
///
/// [`Reactor::register`] boxes a source and a callback per registration.
/// That is simple, but a server with ten thousand connections would hold ten
/// thousand boxes, and each callback would need its own way back to shared
/// state. A `Dispatch` is the alternative: the caller keeps the sources
/// (in its own table), registers each with [`Reactor::register_routed`] and a
/// `tag` (an index into that table), and one shared `Rc<dyn Dispatch>`
/// receives every event together with the tag. The connection layer
/// ([`Service`](crate::service::Service)) is built this way.
///
/// # Examples
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use mio::Interest;
/// use mio::net::UdpSocket;
/// use reactor::{Dispatch, Event, Reactor};
///
/// struct Count(Cell<usize>);
/// impl Dispatch for Count {
///     fn dispatch(&self, _reactor: &mut Reactor, tag: usize, event: Event) {
///         assert_eq!(tag, 7);
///         if event.is_readable() { self.0.set(self.0.get() + 1); }
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// let counter = Rc::new(Count(Cell::new(0)));
/// let mut socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
/// let key = reactor.register_routed(&mut socket, Interest::READABLE, counter.clone(), 7)?;
/// socket.send_to(b"ping", socket.local_addr()?)?;
/// while counter.0.get() == 0 {
///     reactor.run_once(Some(Duration::from_secs(5)))?;
/// }
/// reactor.deregister_routed(&mut socket, key)?;
/// # Ok(())
/// # }
/// ```
///
/// A dispatcher may also take the events that follow in the same batch and
/// are addressed to it, with [`Reactor::next_event_for`], and handle them in
/// the same call: whatever it does on entry and exit (borrowing its state,
/// say) is then paid once per batch instead of once per event.
pub trait Dispatch {
    /// Handles one event for the registration made with `tag`.
    fn dispatch(&self, reactor: &mut Reactor, tag: usize, event: Event);
}

/// A source owned by the reactor together with its callback.
trait OwnedRegistration {
    fn call(&mut self, reactor: &mut Reactor, event: Event);
    fn source(&mut self) -> &mut dyn Source;
}

struct Owned<S, F> {
    source: S,
    callback: F,
}

impl<S, F> OwnedRegistration for Owned<S, F>
where
    S: Source,
    F: FnMut(&mut Reactor, &mut S, Event),
{
    fn call(&mut self, reactor: &mut Reactor, event: Event) {
        (self.callback)(reactor, &mut self.source, event)
    }

    fn source(&mut self) -> &mut dyn Source {
        &mut self.source
    }
}

/// What a selector slot holds for the reactor.
enum Registration {
    /// A source and callback owned by the reactor.
    Owned(Box<dyn OwnedRegistration>),
    /// Stands in for an `Owned` registration while its callback runs (the
    /// callback needs `&mut Reactor`, so it cannot stay inside it). Changes
    /// the callback asks for on itself are recorded here and applied when it
    /// returns.
    Running {
        remove: bool,
        interest: Option<Interest>,
    },
    /// A source owned by someone else; events go to a shared dispatcher.
    Routed { to: Rc<dyn Dispatch>, tag: usize },
}

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
///    connection layer flushes queued output here, so everything written
///    during a turn goes out in one write per connection;
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
    timers: TimerQueue,
    deferred: VecDeque<Deferred>,
    hooks: Vec<Option<Hook>>,
    remote: Arc<Remote>,
    /// Jobs sent by handles, taken from the shared queue and not yet run
    /// (only non-empty across turns if one of them panicked).
    remote_jobs: VecDeque<crate::handle::RemoteJob>,
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
            now: Instant::now(),
            stop_requested: false,
            keep_awake: false,
            stats: LoopStats::default(),
        })
    }

    // ----- registrations with owned callbacks ---------------------------

    /// Registers `source` for `interest`; `callback` runs on every event for
    /// it with the reactor, the source and the [`Event`].
    ///
    /// The reactor owns the source from now on. Inside the callback you may
    /// register other sources, and [`modify`](Reactor::modify) or
    /// [`deregister`](Reactor::deregister) any registration, this one
    /// included (changes to this one take effect when the callback returns).
    ///
    /// # Errors
    ///
    /// As for [`Selector::register`]: the source is dropped on error.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use mio::Interest;
    /// use mio::net::UdpSocket;
    /// use reactor::Reactor;
    ///
    /// let mut reactor = Reactor::new()?;
    /// let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
    /// let addr = socket.local_addr()?;
    /// reactor.register(socket, Interest::READABLE, |reactor, socket: &mut UdpSocket, _event| {
    ///     let mut buf = [0u8; 64];
    ///     while let Ok((n, _from)) = socket.recv_from(&mut buf) {
    ///         assert_eq!(&buf[..n], b"hi");
    ///         reactor.stop();
    ///     }
    /// })?;
    /// std::net::UdpSocket::bind("127.0.0.1:0")?.send_to(b"hi", addr)?;
    /// reactor.run()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn register<S, F>(
        &mut self,
        mut source: S,
        interest: Interest,
        callback: F,
    ) -> io::Result<Key>
    where
        S: Source + 'static,
        F: FnMut(&mut Reactor, &mut S, Event) + 'static,
    {
        // Register the source where it lies, then move it into its box.
        // Moving a registered mio source is fine: the kernel knows the
        // descriptor, not the Rust value.
        let key = self.selector.register(
            &mut source,
            interest,
            Registration::Running {
                remove: false,
                interest: None,
            },
        )?;
        let owned: Box<dyn OwnedRegistration> = Box::new(Owned { source, callback });
        if let Some(slot) = self.selector.get_mut(key) {
            *slot = Registration::Owned(owned);
        }
        trace!("register {key:?} {interest:?}");
        Ok(key)
    }

    /// Changes the interest of a registration made with
    /// [`register`](Reactor::register). Asking for the interest it already
    /// has costs no system call.
    ///
    /// # Errors
    ///
    /// - `NotFound` if `key` names no live registration;
    /// - `InvalidInput` for a routed registration (use
    ///   [`modify_routed`](Reactor::modify_routed) with its source);
    /// - any error of `epoll_ctl`.
    pub fn modify(&mut self, key: Key, interest: Interest) -> io::Result<()> {
        let slot = self.selector.get_mut(key).ok_or_else(|| not_found(key))?;
        match slot {
            Registration::Running {
                interest: pending, ..
            } => {
                *pending = Some(interest);
                Ok(())
            }
            Registration::Routed { .. } => Err(routed_needs_source(key)),
            Registration::Owned(_) => {
                let Registration::Owned(mut owned) = mem::replace(slot, running()) else {
                    unreachable!("matched Owned above")
                };
                let result = self.selector.modify(owned.source(), key, interest);
                if let Some(slot) = self.selector.get_mut(key) {
                    *slot = Registration::Owned(owned);
                }
                result
            }
        }
    }

    /// Removes a registration made with [`register`](Reactor::register) and
    /// drops its source and callback. Called from the registration's own
    /// callback, it takes effect when the callback returns.
    ///
    /// # Errors
    ///
    /// - `NotFound` if `key` names no live registration;
    /// - `InvalidInput` for a routed registration (use
    ///   [`deregister_routed`](Reactor::deregister_routed));
    /// - any error of `epoll_ctl` (the registration is gone all the same).
    pub fn deregister(&mut self, key: Key) -> io::Result<()> {
        let slot = self.selector.get_mut(key).ok_or_else(|| not_found(key))?;
        match slot {
            Registration::Running { remove, .. } => {
                *remove = true;
                Ok(())
            }
            Registration::Routed { .. } => Err(routed_needs_source(key)),
            Registration::Owned(_) => {
                let Some(Registration::Owned(mut owned)) = self.selector.remove(key) else {
                    unreachable!("matched Owned above")
                };
                trace!("deregister {key:?}");
                self.selector.registry().deregister(owned.source())
            }
        }
    }

    /// True if `key` names a live registration.
    pub fn contains(&self, key: Key) -> bool {
        self.selector.contains(key)
    }

    // ----- routed registrations -----------------------------------------

    /// Registers a source the caller keeps; its events go to
    /// `to.dispatch(reactor, tag, event)`. See [`Dispatch`].
    ///
    /// # Errors
    ///
    /// As for [`Selector::register`].
    pub fn register_routed<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        interest: Interest,
        to: Rc<dyn Dispatch>,
        tag: usize,
    ) -> io::Result<Key> {
        self.selector
            .register(source, interest, Registration::Routed { to, tag })
    }

    /// Changes the interest of a routed registration.
    ///
    /// # Errors
    ///
    /// As for [`Selector::modify`].
    pub fn modify_routed<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        key: Key,
        interest: Interest,
    ) -> io::Result<()> {
        self.selector.modify(source, key, interest)
    }

    /// Removes a routed registration; the caller still owns the source.
    ///
    /// # Errors
    ///
    /// As for [`Selector::unregister`].
    pub fn deregister_routed<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        key: Key,
    ) -> io::Result<()> {
        self.selector.unregister(source, key).map(drop)
    }

    /// Takes the next event of the current batch if it is addressed to
    /// `target`, returning its tag and the event; `None` as soon as the next
    /// event is for anyone else (or the batch is done).
    ///
    /// Called from inside [`Dispatch::dispatch`], it lets a dispatcher handle
    /// a run of its own events in one call. Events are still delivered in
    /// the kernel's order, and stale ones (for a registration removed earlier
    /// in the batch) are dropped here exactly as the loop would drop them.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use std::time::Duration;
    /// use mio::net::UdpSocket;
    /// use reactor::{Dispatch, Event, Interest, Reactor};
    ///
    /// #[derive(Default)]
    /// struct Batches { calls: Cell<usize>, events: Cell<usize> }
    /// impl Dispatch for Batches {
    ///     fn dispatch(&self, reactor: &mut Reactor, _tag: usize, _event: Event) {
    ///         self.calls.set(self.calls.get() + 1);
    ///         self.events.set(self.events.get() + 1);
    ///         while let Some((_tag, _event)) = reactor.next_event_for(self) {
    ///             self.events.set(self.events.get() + 1);
    ///         }
    ///     }
    /// }
    ///
    /// let mut reactor = Reactor::new()?;
    /// let batches = Rc::new(Batches::default());
    /// let mut a = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
    /// let mut b = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
    /// reactor.register_routed(&mut a, Interest::READABLE, batches.clone(), 0)?;
    /// reactor.register_routed(&mut b, Interest::READABLE, batches.clone(), 1)?;
    /// a.send_to(b"to b", b.local_addr()?)?;
    /// b.send_to(b"to a", a.local_addr()?)?;
    /// for _ in 0..100 {
    ///     if batches.events.get() == 2 { break; }
    ///     reactor.run_once(Some(Duration::from_secs(5)))?;
    /// }
    /// assert_eq!(batches.events.get(), 2);
    /// // Both datagrams were waiting before the poll: one call took both.
    /// assert!(batches.calls.get() <= 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn next_event_for(&mut self, target: &dyn Dispatch) -> Option<(usize, Event)> {
        while let Some(&(key, ready)) = self.ready.get(self.next_ready) {
            match self.selector.get_mut(key) {
                Some(Registration::Routed { to, tag })
                    if ptr::addr_eq(Rc::as_ptr(to), target as *const dyn Dispatch) =>
                {
                    let tag = *tag;
                    self.next_ready += 1;
                    self.stats.events += 1;
                    return Some((tag, Event { key, ready }));
                }
                // Stale: drop it, as the loop would, and look further.
                None if key != Key::WAKER => {
                    self.next_ready += 1;
                    self.stats.stale_events += 1;
                    trace!("stale event for {key:?} dropped");
                }
                _ => return None,
            }
        }
        None
    }

    /// Makes room for `additional` more registrations, so the table does not
    /// grow (and briefly hold twice its memory) while a server fills up.
    pub fn reserve(&mut self, additional: usize) {
        self.selector.reserve(additional);
    }

    // ----- timers and deferred work -------------------------------------

    /// Runs `callback` once, `delay` from now (never earlier; the loop's
    /// poll timeout is rounded up to whole milliseconds).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use std::time::{Duration, Instant};
    /// let mut reactor = reactor::Reactor::new()?;
    /// let start = Instant::now();
    /// reactor.call_later(Duration::from_millis(20), |reactor| reactor.stop());
    /// reactor.run()?;
    /// assert!(start.elapsed() >= Duration::from_millis(20));
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_later<F>(&mut self, delay: Duration, callback: F) -> TimerId
    where
        F: FnOnce(&mut Reactor) + 'static,
    {
        self.call_at(Instant::now() + delay, callback)
    }

    /// Runs `callback` once at `deadline` (or in the next turn if it has
    /// passed).
    pub fn call_at<F>(&mut self, deadline: Instant, callback: F) -> TimerId
    where
        F: FnOnce(&mut Reactor) + 'static,
    {
        let mut callback = Some(callback);
        let once: TimerCallback = Box::new(move |reactor| {
            if let Some(callback) = callback.take() {
                callback(reactor);
            }
        });
        self.timers.insert(deadline, None, once)
    }

    /// Runs `callback` every `interval`, the first time one interval from
    /// now, until [`cancel`](Reactor::cancel)led. If the loop falls behind by
    /// more than an interval, missed ticks are skipped, not fired in a burst.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use std::time::Duration;
    /// let mut reactor = reactor::Reactor::new()?;
    /// let mut ticks = 0;
    /// reactor.call_every(Duration::from_millis(1), move |reactor| {
    ///     ticks += 1;
    ///     if ticks == 3 { reactor.stop(); }
    /// });
    /// reactor.run()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_every<F>(&mut self, interval: Duration, callback: F) -> TimerId
    where
        F: FnMut(&mut Reactor) + 'static,
    {
        let interval = interval.max(Duration::from_nanos(1));
        self.timers.insert(
            Instant::now() + interval,
            Some(interval),
            Box::new(callback),
        )
    }

    /// Cancels a timer. Returns false if it had already fired (one-shot) or
    /// been cancelled. A timer may cancel itself from its own callback.
    pub fn cancel(&mut self, timer: TimerId) -> bool {
        self.timers.cancel(timer)
    }

    /// Runs `callback` at the start of the next turn, before the loop polls
    /// again (and the poll will not sleep while deferred work waits).
    pub fn call_soon<F>(&mut self, callback: F)
    where
        F: FnOnce(&mut Reactor) + 'static,
    {
        self.deferred.push_back(Box::new(callback));
    }

    /// Delivers a synthetic event to `key` at the start of the next turn, as
    /// if the kernel had reported `ready` for it; a registration removed (or
    /// replaced) by then does not get it.
    ///
    /// This is how a callback that stopped early on purpose (a read budget
    /// spent, for fairness) gets called again: with edge-triggered readiness
    /// the kernel will not report the source again until something new
    /// happens on it.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use mio::net::UdpSocket;
    /// use reactor::{Interest, Ready, Reactor};
    ///
    /// let mut reactor = Reactor::new()?;
    /// let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
    /// let mut calls = 0;
    /// let key = reactor.register(socket, Interest::READABLE, move |reactor, _: &mut UdpSocket, event| {
    ///     calls += 1;
    ///     if calls == 3 { reactor.stop() } else { reactor.schedule_event(event.key(), event.ready()) }
    /// })?;
    /// reactor.schedule_event(key, Ready::READABLE);
    /// reactor.run()?; // three synthetic events, no datagram
    /// # Ok(())
    /// # }
    /// ```
    pub fn schedule_event(&mut self, key: Key, ready: Ready) {
        self.call_soon(move |reactor| {
            reactor.dispatch(key, ready);
        });
    }

    /// Adds a hook that runs every turn just before the loop polls (step 2 of
    /// a turn). The hook returns `true` to stay installed, `false` to be
    /// removed. The connection layer flushes its output here.
    pub fn before_sleep<F>(&mut self, hook: F)
    where
        F: FnMut(&mut Reactor) -> bool + 'static,
    {
        self.hooks.push(Some(Box::new(hook)));
    }

    /// Makes the next poll return at once instead of sleeping. For work left
    /// unfinished on purpose (a read budget spent on a still-readable socket)
    /// that a before-sleep hook will pick up again.
    #[inline]
    pub fn keep_awake(&mut self) {
        self.keep_awake = true;
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

    /// Delivers one event (unless it is stale).
    fn dispatch(&mut self, key: Key, ready: Ready) {
        let Some(slot) = self.selector.get_mut(key) else {
            // Removed earlier in this batch (or the slot now belongs to a
            // newer registration, which `get_mut` tells by the generation).
            self.stats.stale_events += 1;
            trace!("stale event for {key:?} dropped");
            return;
        };
        self.stats.events += 1;
        let event = Event { key, ready };
        match slot {
            Registration::Routed { to, tag } => {
                let (to, tag) = (Rc::clone(to), *tag);
                to.dispatch(self, tag, event);
            }
            Registration::Owned(_) => {
                let Registration::Owned(mut owned) = mem::replace(slot, running()) else {
                    unreachable!("matched Owned above")
                };
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| owned.call(self, event)));
                self.finish_owned(key, owned);
                if let Err(panic) = outcome {
                    panic::resume_unwind(panic);
                }
            }
            // Only reachable if a callback runs the loop re-entrantly.
            Registration::Running { .. } => {}
        }
    }

    /// Puts an owned registration back after its callback, applying what the
    /// callback asked for on itself.
    fn finish_owned(&mut self, key: Key, mut owned: Box<dyn OwnedRegistration>) {
        let Some(&mut Registration::Running { remove, interest }) = self.selector.get_mut(key)
        else {
            return;
        };
        if remove {
            self.selector.remove(key);
            if let Err(e) = self.selector.registry().deregister(owned.source()) {
                warn!("deregister {key:?}: {e}");
            }
            trace!("deregister {key:?}");
            return;
        }
        if let Some(interest) = interest {
            if let Err(e) = self.selector.modify(owned.source(), key, interest) {
                warn!("modify {key:?} to {interest:?}: {e}");
            }
        }
        if let Some(slot) = self.selector.get_mut(key) {
            *slot = Registration::Owned(owned);
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

fn running() -> Registration {
    Registration::Running {
        remove: false,
        interest: None,
    }
}

fn routed_needs_source(key: Key) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{key:?} is a routed registration: its owner must pass the source"),
    )
}
