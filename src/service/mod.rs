//! Layer 3: connections with buffers, the protocol layer (like Python's
//! `asynchat`, or Twisted's `Protocol`).
//!
//! A [`Service`] owns one or more listeners and a table of connections; each
//! connection has an input buffer (what the handler has not consumed yet) and
//! an output queue (what the socket has not taken yet). One [`Handler`] per
//! service holds the shared state and is called when a connection opens,
//! receives bytes, drains its output or closes. It acts through
//! [`Connections`]: `send`, `close`, `abort`, `pause_reading`, ... on any
//! connection by [`ConnId`].
//!
//! # How a turn goes for a connection
//!
//! ```text
//!  epoll: conn 7 readable
//!     │
//!     ▼
//!  transport.read() into the shared 64 KiB scratch buffer
//!     │  (until WouldBlock, a short read, or the read budget)
//!     ▼
//!  handler.on_data(bytes) ── conns.send(7, slice of bytes) ──► reply in place:
//!     │                      (nothing else queued for 7)       noted, written from
//!     │                                                        the scratch buffer
//!     │                                                        when on_data returns
//!     ├─ conns.send(7, reply) ──► turn buffer (one arena per service) + flush queue
//!     ├─ conns.broadcast(room, line) ──► stored once, linked to every member
//!     │                                  (a member whose socket is full: backlog)
//!     ▼
//!  next event ...
//!     │
//!  before the loop sleeps: for each conn in the flush queue, write()/writev()
//!     its backlog, then its turn ranges ──► what the socket does not take is
//!     spilled to its backlog (broadcasts as slices of one frozen copy)
//!     ──► on_drained when empty
//! ```
//!
//! # The rules it keeps
//!
//! - **Edge-triggered reads**: until `WouldBlock`, until a short read (on
//!   Linux epoll and the BSDs' kqueue, a read that returns less than it was
//!   offered proves the socket drained; a new event follows any later
//!   arrival), or until the per-event read budget is spent, in which case the
//!   connection is read again before the loop next sleeps (in the
//!   before-sleep step of [`Reactor::run_once`]), without waiting for an
//!   event. After an event that reported the peer's FIN, short reads do not
//!   count: the end of stream still waits behind the data.
//! - **Writes gathered per turn**: `send` only queues, and every connection
//!   with queued output is written before the loop sleeps, with one `write`
//!   (or `writev`) per part of its queue: one call for an echo or a reply,
//!   however many messages a turn queued, and one more when a backlog from
//!   earlier turns comes first. Two things write sooner: a reply in place,
//!   as soon as `on_data` returns, and a writable event, which flushes a
//!   backlog at once.
//! - **No `epoll_ctl` in steady state**: each socket is registered once for
//!   both directions; pausing reads and waiting for writability are flags.
//! - **No allocation per message, no memory per idle connection**: reads go
//!   into one scratch buffer; only unconsumed leftovers are copied out;
//!   output queues and their chunks come from a pool and return to it when
//!   emptied.
//! - **Graceful close**: from the moment it is asked for, what the peer
//!   sends is read and discarded; the queue is flushed, FIN sent, and the
//!   socket closed only once the peer has sent its FIN, or has taken
//!   everything and [`Config::linger_timeout`] has passed. Closing a socket
//!   that receives input sends RST, and a reset destroys whatever the kernel
//!   has not yet delivered. The whole close has [`Config::close_timeout`]
//!   (a shutdown's grace, for [`Service::shutdown`]).
//! - **Slowloris**: with [`Config::unfinished_input_timeout`], a message
//!   must be finished within a deadline of its first byte, however slowly
//!   it trickles in ([`Connections::expect_message`] starts the clock for a
//!   first message).
//!
//! # Which limit acts on which direction
//!
//! | limit | counts | when passed |
//! |---|---|---|
//! | [`Config::high_water`] / [`low_water`](Config::low_water) | this connection's queued output | stops reading **this connection's** input until its output drains: it slows a peer that sends requests faster than it reads replies. It does nothing for a pure subscriber, which sends nothing. |
//! | [`Config::output_limit`] | this connection's queued output, and what the frozen copies it keeps hold beyond it | closes **this connection**: the peer is not reading. This is what bounds a slow subscriber. |
//! | [`Config::output_budget`] | output queued over **all** connections | stops reading **everyone's** input (input is what makes output) until the total drains to three quarters. |
//! | [`Config::input_limit`] | input a handler leaves unconsumed (a partial line or frame) | closes the connection: no message may be larger. Size it to the protocol's largest message, as [`LineDecoder::new`](crate::codec::LineDecoder::new)'s maximum. |
//! | [`Config::unfinished_input_timeout`] | time since a message began | an error (through [`Handler::on_input_timeout`]) and a graceful close. |
//! | [`Config::idle_timeout`] | time since the last read or write | closes the connection; see [`Connections::exempt_from_idle`]. |
//!
//! # Other threads
//!
//! A [`Service`] belongs to its loop's thread. [`Service::handle`] gives a
//! `Send` [`ServiceHandle`] whose jobs run on the loop's thread with the
//! handler and the connections; [`Service::shutdown_on_signal`] stops the
//! service on Ctrl-C.
//!
//! # Panics
//!
//! A panic in a handler method unwinds out of [`Reactor::run`] like any
//! panic in a callback. The service stays usable: the next time it is
//! entered, the connection whose handler call panicked is closed (the
//! handler's `on_close` gets [`CloseReason::HandlerPanicked`]), since its
//! partial input is lost; every other connection carries on if the loop is
//! run again. The handler's own state is whatever the panic left.

mod accept;
mod close;
mod config;
mod conn;
mod connections;
mod dial;
mod engine;
mod flags;
mod handler;
mod input;
mod listeners;
mod output;
mod remote;
mod state;
mod stats;
mod stream;
mod timeouts;
#[cfg(feature = "tls")]
mod tls_transport;
mod transport;

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

pub use config::Config;
pub use connections::Connections;
pub use handler::{CloseReason, ConnId, Handler, ListenerId, Origin};
pub use remote::ServiceHandle;
pub use stats::ServiceStats;
pub use stream::Addr;

use engine::{Core, Engine};
use state::State;

use crate::reactor::{Dispatch, Reactor};

/// A set of listeners and connections served by one [`Handler`] on one
/// [`Reactor`]. See the [module documentation](self) for how it reads and
/// writes.
///
/// `Service` is a cheap handle (`Clone`): the reactor keeps the service
/// alive while it has listeners or connections, and the handle lets code
/// outside the handler (a signal callback, a timer) reach it with
/// [`with`](Service::with).
///
/// # Examples
///
/// An echo server, and a client that connects to it on the same loop:
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use reactor::Reactor;
/// use reactor::service::{Config, ConnId, Connections, Handler, Origin, Service};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
///         let _ = conns.send(id, data);
///         data.len()
///     }
/// }
///
/// struct Client { got: Vec<u8> }
/// impl Handler for Client {
///     fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
///         conns.send(id, b"hello").unwrap();
///     }
///     fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
///         self.got.extend_from_slice(data);
///         if self.got.len() == 5 { conns.close(id).unwrap(); }
///         data.len()
///     }
///     fn on_close(&mut self, conns: &mut Connections<'_>, _: ConnId, _: &reactor::service::CloseReason) {
///         conns.reactor().stop();
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// let server = Service::new(&mut reactor, Echo, Config::default());
/// let listener = server.listen(&mut reactor, "127.0.0.1:0".parse().unwrap())?;
/// let addr = server.tcp_addr(listener)?;
///
/// let client = Service::new(&mut reactor, Client { got: Vec::new() }, Config::default());
/// client.connect(&mut reactor, addr)?;
/// reactor.run()?;
/// assert_eq!(client.with(&mut reactor, |c, _| c.got.clone())?, b"hello");
/// # Ok(())
/// # }
/// ```
pub struct Service<H: Handler> {
    core: Rc<Core<H>>,
}

impl<H: Handler> Clone for Service<H> {
    fn clone(&self) -> Self {
        Service {
            core: Rc::clone(&self.core),
        }
    }
}

impl<H: Handler> Service<H> {
    /// Creates a service on `reactor` with `handler` and `config` (made
    /// consistent with [`Config::validated`]). It has no listeners yet: add
    /// some with [`listen`](Service::listen), or make outgoing connections
    /// with [`connect`](Service::connect).
    pub fn new(reactor: &mut Reactor, handler: H, config: Config) -> Service<H> {
        // Room for every connection up front, in the reactor and in our own
        // table: a table grown by doubling may hold twice the memory it needs
        // (and untouched capacity costs no resident memory).
        let room = config.max_connections.min(1 << 20);
        reactor.reserve(room);
        let core = Rc::new_cyclic(|me: &Weak<Core<H>>| {
            let dispatch: Weak<dyn Dispatch> = me.clone();
            let timers: Weak<dyn state::TimerTarget> = me.clone();
            Core {
                engine: RefCell::new(Engine::new(handler, State::new(config, dispatch, timers))),
                handle_slot: std::cell::Cell::new(None),
            }
        });
        let weak = Rc::downgrade(&core);
        reactor.before_sleep(move |reactor| match weak.upgrade() {
            Some(core) => {
                core.before_sleep(reactor);
                true
            }
            None => false,
        });
        Service { core }
    }

    /// Starts an outgoing TCP connection; see [`Connections::connect`].
    ///
    /// # Errors
    ///
    /// As for [`Connections::connect`], and `WouldBlock` if called from
    /// inside this service's handler (use the `Connections` you were given).
    pub fn connect(&self, reactor: &mut Reactor, addr: SocketAddr) -> io::Result<ConnId> {
        self.with(reactor, |_, conns| conns.connect(addr))?
    }

    /// Runs `f` with the handler and the connections, from outside the
    /// handler: from a timer, a signal callback, or the code that set the
    /// service up. Close notifications it causes are delivered before `with`
    /// returns.
    ///
    /// # Errors
    ///
    /// `WouldBlock` if called while the service's handler is running (from
    /// inside the handler itself: use the `Connections` it was given).
    pub fn with<R>(
        &self,
        reactor: &mut Reactor,
        f: impl FnOnce(&mut H, &mut Connections<'_>) -> R,
    ) -> io::Result<R> {
        let mut engine = self.engine()?;
        engine.enter(reactor);
        let result = engine.call(reactor, f);
        engine.leave(reactor);
        Ok(result)
    }

    /// Shuts the service down gracefully: closes every listener, closes every
    /// connection once its queued output is written (each gets `on_close`
    /// with [`CloseReason::Shutdown`] then), aborts those still open after
    /// `grace`, and then runs `done`. Send any goodbye before calling this,
    /// with [`with`](Service::with).
    ///
    /// When `done` runs: once no connection is left, lingering ones
    /// included, in the turn after the last one went (it is deferred with
    /// [`Reactor::call_soon`]); with no connections at all, in the next turn.
    /// That is at the latest the turn after `grace` has passed, when the
    /// deadline aborts whatever is still open. It runs exactly once, and not
    /// at all if the service is dropped before.
    ///
    /// `grace` is the deadline for everything, the linger included: a closed
    /// connection goes on reading and discarding its peer's input until the
    /// peer has read everything and sent its FIN, so that no reset destroys
    /// what the kernel still holds for it.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if a shutdown is already under way; `WouldBlock` as
    /// for [`with`](Service::with).
    pub fn shutdown<F>(&self, reactor: &mut Reactor, grace: Duration, done: F) -> io::Result<()>
    where
        F: FnOnce(&mut Reactor) + 'static,
    {
        let mut engine = self.engine()?;
        engine.enter(reactor);
        let result = engine.state.begin_shutdown(reactor, grace, Box::new(done));
        engine.leave(reactor);
        result
    }

    /// The service's counters.
    ///
    /// # Errors
    ///
    /// `WouldBlock` if called while the service's handler is running (there,
    /// use [`Connections::stats`]), as for [`with`](Service::with).
    pub fn stats(&self) -> io::Result<ServiceStats> {
        Ok(self.engine()?.state.stats())
    }

    /// The largest output queue among the open connections now (a scan of
    /// all connections: for introspection, not for every turn).
    ///
    /// # Errors
    ///
    /// `WouldBlock` as for [`stats`](Service::stats).
    pub fn largest_output(&self) -> io::Result<usize> {
        let engine = self.engine()?;
        Ok(engine
            .state
            .conns
            .iter()
            .map(|(_, c)| c.output_len())
            .max()
            .unwrap_or(0))
    }

    fn engine(&self) -> io::Result<std::cell::RefMut<'_, Engine<H>>> {
        self.core.engine.try_borrow_mut().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "the service's handler is running: use the Connections it was given",
            )
        })
    }
}

impl<H: Handler> fmt::Debug for Service<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.core.engine.try_borrow() {
            Ok(engine) => f
                .debug_struct("Service")
                .field("stats", &engine.state.stats())
                .finish(),
            Err(_) => f.debug_struct("Service").finish_non_exhaustive(),
        }
    }
}
