//! [`Event`], what a callback is told, and [`Dispatch`], the receiver of
//! routed events, with the way a dispatcher takes a run of its own events
//! from the current batch in one call.

use std::ptr;
use std::rc::Rc;

use log::trace;

use super::Reactor;
use super::registration::Registration;
use crate::key::Key;
use crate::ready::Ready;

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

impl Reactor {
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
}
