//! Registrations: a source with a callback the reactor owns, or a source
//! owned elsewhere whose events are routed to a [`Dispatch`]er with a tag;
//! and how one event reaches its registration (stale ones dropped by the
//! key's generation). Nothing here polls.

use std::io;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use log::{trace, warn};
use mio::Interest;
use mio::event::Source;

use super::{Dispatch, Event, Reactor};
use crate::key::Key;
use crate::ready::Ready;
use crate::selector::not_found;

/// A source owned by the reactor together with its callback.
pub(crate) trait OwnedRegistration {
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
pub(crate) enum Registration {
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

impl Reactor {
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
    /// As for [`Selector::register`](crate::Selector::register): the source is dropped on error.
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
    /// As for [`Selector::register`](crate::Selector::register).
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
    /// As for [`Selector::modify`](crate::Selector::modify).
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
    /// As for [`Selector::unregister`](crate::Selector::unregister).
    pub fn deregister_routed<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        key: Key,
    ) -> io::Result<()> {
        self.selector.unregister(source, key).map(drop)
    }

    /// Makes room for `additional` more registrations, so the table does not
    /// grow (and briefly hold twice its memory) while a server fills up.
    pub fn reserve(&mut self, additional: usize) {
        self.selector.reserve(additional);
    }

    /// Delivers one event (unless it is stale).
    pub(crate) fn dispatch(&mut self, key: Key, ready: Ready) {
        let Some(slot) = self.selector.get_mut(key) else {
            // Removed earlier in this batch (or the slot now belongs to a
            // newer registration, which `get_mut` tells by the generation).
            self.stats.stale_events += 1;
            trace!("stale event for {key:?} dropped");
            return;
        };
        self.stats.events += 1;
        let event = Event::new(key, ready);
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

pub(crate) fn running() -> Registration {
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
