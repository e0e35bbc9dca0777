//! [`ServiceHandle`]: driving a service from another thread.
//!
//! A [`Service`] is an `Rc`, bound to its loop's thread. A `ServiceHandle`
//! is `Send`: it holds the reactor's [`Handle`] and the slot where the
//! reactor keeps a weak reference to the service. A job sent through it
//! crosses to the loop's thread as a [`Handle::call_soon`] job, finds the
//! service again by the slot, and runs there with the handler and the
//! [`Connections`], exactly as [`Service::with`] would. This file adds no
//! state to the service.

use std::any::Any;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::rc::{Rc, Weak};

use super::engine::Core;
use super::{Connections, Handler, Service};
use crate::handle::Handle;
use crate::reactor::Reactor;

/// A `Send + Clone` handle to a [`Service`], for other threads: stats,
/// broadcasts, a graceful stop, from a thread that is not the loop's.
///
/// # Examples
///
/// Another thread asks for the number of open connections, then shuts the
/// service down:
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::sync::mpsc;
/// use std::time::Duration;
/// use reactor::Reactor;
/// use reactor::service::{Config, ConnId, Connections, Handler, Service};
///
/// struct Discard;
/// impl Handler for Discard {
///     fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
///         data.len()
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// let service = Service::new(&mut reactor, Discard, Config::default());
/// service.listen(&mut reactor, "127.0.0.1:0".parse().unwrap())?;
/// let remote = service.handle(&mut reactor);
/// let (tx, rx) = mpsc::channel();
/// let admin = std::thread::spawn(move || {
///     remote.call(move |_, conns| tx.send(conns.len()).unwrap()).unwrap();
///     let open = rx.recv().unwrap();
///     remote
///         .shutdown(Duration::from_secs(1), |reactor| reactor.stop())
///         .unwrap();
///     open
/// });
/// reactor.run()?; // returns when the admin thread's shutdown is done
/// assert_eq!(admin.join().unwrap(), 0);
/// # Ok(())
/// # }
/// ```
pub struct ServiceHandle<H> {
    handle: Handle,
    slot: usize,
    /// `fn() -> H`: the handle names the handler's type without holding one,
    /// so it is `Send` whatever `H` is.
    handler: PhantomData<fn() -> H>,
}

impl<H> Clone for ServiceHandle<H> {
    fn clone(&self) -> Self {
        ServiceHandle {
            handle: self.handle.clone(),
            slot: self.slot,
            handler: PhantomData,
        }
    }
}

impl<H: Handler> Service<H> {
    /// A handle that other threads can use to reach this service.
    pub fn handle(&self, reactor: &mut Reactor) -> ServiceHandle<H> {
        let slot = match self.core.handle_slot.get() {
            Some(slot) => slot,
            None => {
                let core: Rc<dyn Any> = self.core.clone();
                let weak: Weak<dyn Any> = Rc::downgrade(&core);
                let slot = reactor.keep_for_handles(weak);
                self.core.handle_slot.set(Some(slot));
                slot
            }
        };
        ServiceHandle {
            handle: reactor.handle(),
            slot,
            handler: PhantomData,
        }
    }
}

impl<H: Handler> ServiceHandle<H> {
    /// Runs `job` on the loop's thread with the handler and the connections,
    /// as [`Service::with`] does there: in the I/O step of the turn in which
    /// the wake arrives (see [`Handle::call_soon`]). Send results back
    /// through a channel, and wait for them with a timeout: a job sent while
    /// the loop is not running (after [`Reactor::run`] has returned, before
    /// the reactor is dropped) waits for the loop to run again. If the
    /// service is gone by then, the job is dropped without running.
    ///
    /// # Errors
    ///
    /// As for [`Handle::call_soon`]: `BrokenPipe` if the reactor is gone.
    pub fn call<F>(&self, job: F) -> io::Result<()>
    where
        F: FnOnce(&mut H, &mut Connections<'_>) + Send + 'static,
    {
        let slot = self.slot;
        self.handle.call_soon(move |reactor| {
            if let Some(service) = find::<H>(reactor, slot) {
                // Jobs run between handler calls, never inside one.
                let _ = service.with(reactor, job);
            }
        })
    }

    /// From the loop's own thread (a handler, a timer): runs `job` with the
    /// handler and the connections at the start of the next turn, which
    /// is *before* the output queued in this turn is written (see the
    /// steps in [`Reactor`]'s documentation). No wake-up and no system call:
    /// the job goes on the reactor's own deferred queue.
    ///
    /// This is how a handler does something once per turn, after all the
    /// turn's events: `chat_server --redis` writes the turn's publishes to
    /// Redis in one piece, after the turn's broadcasts, rather than one
    /// command between each two broadcasts (which would break each
    /// member's turn into as many pieces as there were messages). If the
    /// service is gone by then, the job is dropped without running.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use reactor::Reactor;
    /// use reactor::service::{Config, ConnId, Connections, Handler, Service};
    ///
    /// #[derive(Default)]
    /// struct Batcher {
    ///     pending: Vec<u8>,
    ///     flushes: usize,
    /// }
    /// impl Handler for Batcher {
    ///     fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
    ///         data.len()
    ///     }
    /// }
    ///
    /// let mut reactor = Reactor::new()?;
    /// let service = Service::new(&mut reactor, Batcher::default(), Config::default());
    /// let me = service.handle(&mut reactor);
    /// service.with(&mut reactor, |batcher, conns| {
    ///     batcher.pending.extend_from_slice(b"one ");
    ///     batcher.pending.extend_from_slice(b"two");
    ///     me.defer(conns.reactor(), |batcher, _conns| {
    ///         batcher.flushes += 1; // both, in one go
    ///         batcher.pending.clear();
    ///     });
    /// })?;
    /// reactor.run_once(Some(std::time::Duration::ZERO))?;
    /// assert_eq!(service.with(&mut reactor, |b, _| b.flushes)?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn defer<F>(&self, reactor: &mut Reactor, job: F)
    where
        F: FnOnce(&mut H, &mut Connections<'_>) + 'static,
    {
        let slot = self.slot;
        reactor.call_soon(move |reactor| {
            if let Some(service) = find::<H>(reactor, slot) {
                let _ = service.with(reactor, job);
            }
        });
    }

    /// Starts [`Service::shutdown`] from another thread; `done` runs on the
    /// loop's thread.
    ///
    /// # Errors
    ///
    /// As for [`call`](ServiceHandle::call). (A shutdown already under way
    /// is logged and left alone.)
    pub fn shutdown<F>(&self, grace: std::time::Duration, done: F) -> io::Result<()>
    where
        F: FnOnce(&mut Reactor) + Send + 'static,
    {
        let slot = self.slot;
        self.handle.call_soon(move |reactor| {
            if let Some(service) = find::<H>(reactor, slot) {
                if let Err(e) = service.shutdown(reactor, grace, done) {
                    log::warn!("shutdown from a handle: {e}");
                }
            }
        })
    }
}

/// The service kept in `slot`, if it is alive and of this handler type.
fn find<H: Handler>(reactor: &Reactor, slot: usize) -> Option<Service<H>> {
    let core = reactor.kept(slot)?.downcast::<Core<H>>().ok()?;
    Some(Service { core })
}

impl<H> fmt::Debug for ServiceHandle<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("slot", &self.slot)
            .finish()
    }
}
