//! Layer 1: [`Selector`], the `selectors` module of this crate.
//!
//! A selector keeps a table of registrations (a [`slab`]) and asks the
//! operating system which of them are ready. It owns no sockets: like
//! `mio::Registry`, it borrows a source for the moment it tells the kernel
//! about it, and hands back a [`Key`] that names the registration from then
//! on.
//!
//! The type's documentation explains the two hazards every caller must
//! respect: edge-triggered readiness, and stale events for reused keys.

use std::fmt;
use std::io;
use std::time::Duration;

use mio::event::Source;
use mio::{Events, Interest, Poll, Registry, Waker};
use slab::Slab;

#[cfg(test)]
use crate::key::INDEX_MASK;
use crate::key::{GENERATION_MASK, Key, MAX_INDEX};
use crate::ready::Ready;

struct Slot<T> {
    generation: u32,
    interest: Interest,
    data: T,
}

/// A table of registered sources and the call that asks which are ready:
/// the equivalent of Python's `selectors.DefaultSelector`.
///
/// `register(source, interest, data)` returns a [`Key`]; `select(timeout)`
/// fills a list of `(key, ready)` pairs, one per ready registration, where
/// `ready` is masked by the registered interest. The `data` is yours: a
/// callback, a state machine, a connection id.
///
/// # Edge-triggered, not level-triggered
///
/// Python's `selectors` are *level-triggered*: as long as a socket has unread
/// data, every `select()` reports it again. mio, and so this selector, is
/// *edge-triggered*: a source is reported when its state **changes** (new data
/// arrived, room appeared in the send buffer), and then not again until it
/// changes once more. That obliges the caller to:
///
/// 1. read until the read would block (`WouldBlock`), or until a read returns
///    fewer bytes than asked (on Linux epoll and BSD kqueue that proves the
///    socket was drained at that moment, and any later arrival raises a new
///    event; but not after an event that reported `READ_CLOSED` or `ERROR`,
///    where the end of stream waits behind the data and no event will
///    announce it), **or** remember that the source is still readable and
///    come back to it without waiting for an event, which will not come;
/// 2. likewise write until `WouldBlock` or a short write, or remember that the
///    socket is still writable;
/// 3. treat every event as a hint: a readable source may still answer
///    `WouldBlock` (spurious events exist), so every read and write handles it.
///
/// Registering for both directions once and remembering readiness keeps
/// `epoll_ctl` out of the steady state: no `modify` per message.
///
/// # Stale events and reused keys
///
/// The kernel hands back a batch of events at once. While the caller works
/// through that batch it may unregister a source whose event is still further
/// down the list, and even register a new source that lands in the same slab
/// slot. A plain slab index would then route the old event to the new owner.
/// So a [`Key`] carries a *generation* next to the index: every registration
/// gets a fresh one, it is encoded into the `mio::Token`, and [`Selector::select`]
/// and [`Selector::get`] compare it with the slot's. An event or key from an
/// earlier registration no longer matches and is dropped (by `select`) or
/// answered with `None`/`NotFound` (by the lookups).
///
/// # Examples
///
/// The bare loop of `selectclient.py`: one socket, no callbacks.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use mio::Interest;
/// use mio::net::TcpStream;
/// use reactor::Selector;
///
/// let server = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let mut stream = TcpStream::connect(server.local_addr()?)?;
/// let (mut peer, _) = server.accept()?;
/// peer.write_all(b"hello")?;
///
/// let mut selector = Selector::new()?;
/// let key = selector.register(&mut stream, Interest::READABLE, ())?;
/// let mut ready = Vec::new();
/// let mut got = Vec::new();
/// while got.len() < 5 {
///     selector.select(&mut ready, Some(Duration::from_secs(5)))?;
///     for &(k, r) in &ready {
///         assert_eq!(k, key);
///         if r.is_readable() {
///             let mut buf = [0u8; 16];
///             loop {
///                 match stream.read(&mut buf) {
///                     Ok(0) => break,
///                     Ok(n) => got.extend_from_slice(&buf[..n]),
///                     Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
///                     Err(e) => return Err(e),
///                 }
///             }
///         }
///     }
/// }
/// assert_eq!(got, b"hello");
/// # Ok(())
/// # }
/// ```
pub struct Selector<T> {
    poll: Poll,
    events: Events,
    slots: Slab<Slot<T>>,
    next_generation: u32,
    has_waker: bool,
}

impl<T> Selector<T> {
    /// Events taken from the kernel per `select` call unless told otherwise.
    pub const DEFAULT_EVENTS: usize = 1024;

    /// Creates a selector (one `epoll` instance on Linux).
    ///
    /// # Errors
    ///
    /// Whatever `epoll_create1` answers, such as `EMFILE` when the process
    /// is out of descriptors.
    pub fn new() -> io::Result<Selector<T>> {
        Selector::with_capacity(Self::DEFAULT_EVENTS, 0)
    }

    /// Creates a selector that takes up to `events` events from the kernel
    /// per [`select`](Selector::select) call and has room for `keys`
    /// registrations before its table grows.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let selector: reactor::Selector<()> = reactor::Selector::with_capacity(256, 10_000)?;
    /// assert!(selector.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_capacity(events: usize, keys: usize) -> io::Result<Selector<T>> {
        Ok(Selector {
            poll: Poll::new()?,
            events: Events::with_capacity(events.max(1)),
            slots: Slab::with_capacity(keys),
            next_generation: 0,
            has_waker: false,
        })
    }

    /// Registers `source` for `interest` and stores `data` with it.
    ///
    /// Returns the new registration's [`Key`]. The selector does not keep the
    /// source: pass the same source back to [`modify`](Selector::modify) and
    /// [`unregister`](Selector::unregister).
    ///
    /// # Errors
    ///
    /// - `AlreadyExists` if the source is already registered with this
    ///   selector (the kernel answers `EEXIST`);
    /// - `OutOfMemory` if the table already holds the largest number of keys
    ///   a token can encode (2³² − 1 on 64-bit targets);
    /// - any other error of `epoll_ctl`.
    ///
    /// On error nothing is kept: the table is as it was before the call.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use mio::Interest;
    /// use mio::net::UdpSocket;
    /// let mut selector = reactor::Selector::new()?;
    /// let mut socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
    /// selector.register(&mut socket, Interest::READABLE, 1)?;
    /// let twice = selector.register(&mut socket, Interest::READABLE, 2);
    /// assert_eq!(twice.unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
    /// assert_eq!(selector.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn register<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        interest: Interest,
        data: T,
    ) -> io::Result<Key> {
        let entry = self.slots.vacant_entry();
        let index = entry.key();
        if index > MAX_INDEX {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "selector: no more keys can be encoded in a token",
            ));
        }
        let generation = self.next_generation;
        let key = Key::new(index, generation);
        // Tell the kernel first: if it refuses, nothing was inserted.
        self.poll
            .registry()
            .register(source, key.token(), interest)?;
        entry.insert(Slot {
            generation,
            interest,
            data,
        });
        self.next_generation = generation.wrapping_add(1) & GENERATION_MASK;
        Ok(key)
    }

    /// Changes the interest of a registration. A call that asks for the
    /// interest already registered makes no system call.
    ///
    /// # Errors
    ///
    /// - `NotFound` if `key` names no live registration;
    /// - any error of `epoll_ctl`, after which the recorded interest is
    ///   unchanged.
    pub fn modify<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        key: Key,
        interest: Interest,
    ) -> io::Result<()> {
        let slot = lookup_mut(&mut self.slots, key).ok_or_else(|| not_found(key))?;
        if slot.interest == interest {
            return Ok(());
        }
        self.poll
            .registry()
            .reregister(source, key.token(), interest)?;
        slot.interest = interest;
        Ok(())
    }

    /// Removes a registration and returns its data.
    ///
    /// The key is forgotten even if the kernel call fails (the usual cause is
    /// a descriptor that was already closed, which removed it from the
    /// kernel's set anyway); that failure is still returned, and the data is
    /// dropped with it.
    ///
    /// # Errors
    ///
    /// - `NotFound` if `key` names no live registration;
    /// - any error of `epoll_ctl`.
    pub fn unregister<S: Source + ?Sized>(&mut self, source: &mut S, key: Key) -> io::Result<T> {
        let data = self.remove(key).ok_or_else(|| not_found(key))?;
        self.poll.registry().deregister(source)?;
        Ok(data)
    }

    /// Forgets a registration **without** telling the kernel, and returns its
    /// data. Use it when the source is about to be closed (closing the last
    /// descriptor of a socket removes it from the kernel's set) or when the
    /// source is owned by the data and must be deregistered through
    /// [`registry`](Selector::registry) afterwards.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        lookup(&self.slots, key)?;
        Some(self.slots.remove(key.index()).data)
    }

    /// Waits for readiness and fills `ready` with one `(key, readiness)` pair
    /// per ready registration, readiness masked by the registered interest
    /// (closed and error flags always pass). Returns how many pairs it wrote.
    ///
    /// `timeout` is `None` to wait without limit, or a duration that is
    /// rounded **up** to whole milliseconds, so a deadline is never missed by
    /// waking early. A signal that interrupts the wait (`EINTR`) is not an
    /// error: the call returns `Ok(0)`, and the caller's loop goes round again.
    /// This is the one place the crate handles `EINTR` for polling.
    ///
    /// Events whose key no longer matches a live registration are dropped
    /// here. An event for [`Key::WAKER`] is passed through when the selector
    /// has a waker.
    ///
    /// # Errors
    ///
    /// Any error of `epoll_wait` other than `EINTR`.
    pub fn select(
        &mut self,
        ready: &mut Vec<(Key, Ready)>,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        ready.clear();
        if !self.poll_events(timeout)? {
            return Ok(0);
        }
        for event in self.events.iter() {
            let key = Key::from_token(event.token());
            if key == Key::WAKER {
                ready.push((key, Ready::READABLE));
            } else if let Some(slot) = lookup(&self.slots, key) {
                ready.push((key, Ready::from_event(event).masked(slot.interest)));
            }
        }
        Ok(ready.len())
    }

    /// Waits for events into `self.events`. False if a signal interrupted
    /// the wait (`EINTR`): no events, and not an error.
    #[inline]
    fn poll_events(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// [`select`](Selector::select) for the reactor, which looks every key
    /// up when it dispatches the event: no lookup here (stale events are
    /// dropped there), and readiness as the kernel gave it (epoll reports
    /// only what was asked for, plus closed and error conditions).
    pub(crate) fn select_unchecked(
        &mut self,
        ready: &mut Vec<(Key, Ready)>,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        ready.clear();
        if !self.poll_events(timeout)? {
            return Ok(0);
        }
        ready.extend(
            self.events
                .iter()
                .map(|event| (Key::from_token(event.token()), Ready::from_event(event))),
        );
        Ok(ready.len())
    }

    /// The data of a live registration, or `None` for a dead or unknown key.
    #[inline]
    pub fn get(&self, key: Key) -> Option<&T> {
        lookup(&self.slots, key).map(|slot| &slot.data)
    }

    /// Mutable access to the data of a live registration.
    #[inline]
    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        lookup_mut(&mut self.slots, key).map(|slot| &mut slot.data)
    }

    /// The interest a live registration was registered (or last modified) with.
    pub fn interest(&self, key: Key) -> Option<Interest> {
        lookup(&self.slots, key).map(|slot| slot.interest)
    }

    /// True if `key` names a live registration.
    pub fn contains(&self, key: Key) -> bool {
        lookup(&self.slots, key).is_some()
    }

    /// The number of live registrations.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Makes room for `additional` more registrations without growing the
    /// table later (a table grown by doubling can hold twice the memory it
    /// needs).
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
    }

    /// Iterates over the live keys and their data.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.slots
            .iter()
            .map(|(index, slot)| (Key::new(index, slot.generation), &slot.data))
    }

    /// Creates this selector's [`Waker`]: a handle another thread can use to
    /// interrupt [`select`](Selector::select), which then reports
    /// [`Key::WAKER`] as readable.
    ///
    /// Keep the waker alive until its wake has been seen: dropping it closes
    /// its `eventfd`, and closing a descriptor takes its pending event out of
    /// epoll's ready list. ([`Handle`](crate::Handle) shares one waker with
    /// the reactor for this reason.)
    ///
    /// # Errors
    ///
    /// `AlreadyExists` on a second call: mio allows one waker per poll
    /// instance. Otherwise whatever creating the `eventfd` answers.
    pub fn waker(&mut self) -> io::Result<Waker> {
        if self.has_waker {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "selector: this selector already has a waker",
            ));
        }
        let waker = Waker::new(self.poll.registry(), Key::WAKER.token())?;
        self.has_waker = true;
        Ok(waker)
    }

    /// The underlying mio registry, for sources that register themselves.
    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }
}

impl<T> fmt::Debug for Selector<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("registrations", &self.slots.len())
            .field("events_capacity", &self.events.capacity())
            .field("has_waker", &self.has_waker)
            .finish()
    }
}

#[inline]
fn lookup<T>(slots: &Slab<Slot<T>>, key: Key) -> Option<&Slot<T>> {
    slots
        .get(key.index())
        .filter(|slot| slot.generation == key.generation())
}

#[inline]
fn lookup_mut<T>(slots: &mut Slab<Slot<T>>, key: Key) -> Option<&mut Slot<T>> {
    slots
        .get_mut(key.index())
        .filter(|slot| slot.generation == key.generation())
}

pub(crate) fn not_found(key: Key) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no live registration for {key:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_through_a_token() {
        let key = Key::new(12345, 678);
        assert_eq!(key.index(), 12345);
        assert_eq!(key.generation(), 678);
        assert_eq!(Key::from_token(key.token()), key);
        assert_eq!(format!("{key:?}"), "Key(12345#678)");
    }

    #[test]
    fn waker_key_is_no_registration_key() {
        assert_eq!(Key::WAKER.index(), INDEX_MASK);
        assert!(Key::WAKER.index() > MAX_INDEX);
    }
}
