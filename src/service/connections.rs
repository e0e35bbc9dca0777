//! [`Connections`]: what a handler can do to the service's connections.
//!
//! Every method here checks its arguments and hands the work to the file of
//! its idea (`output/`, `close.rs`, `input.rs`, `timeouts.rs`, `accept.rs`);
//! none of them writes to a socket or calls the handler.

use std::fmt;
use std::io;

use super::config::Config;
use super::flags::Flags;
use super::handler::ConnId;
use super::state::{State, not_open, visible, visible_mut};
use super::stats::ServiceStats;
use super::stream::Addr;

use crate::reactor::Reactor;

/// The connections of a service, as its [`Handler`](super::Handler) sees
/// them: every method takes a [`ConnId`], so a handler can act on any
/// connection, not only the one it was called for.
///
/// Nothing here blocks or writes to a socket directly. [`send`] queues, and
/// the service writes every connection's queue in one system call just before
/// the loop sleeps; [`close`] takes effect once the queue is written. (A reply
/// that is a slice of the input `on_data` is reading, sent back to the same
/// connection, goes out a little earlier: as soon as `on_data` returns,
/// straight from the read buffer, without being copied.)
///
/// Methods given an id that is not open (closed, or from an earlier
/// connection that held the same slot) answer `NotFound` and touch nothing.
///
/// [`send`]: Connections::send
/// [`close`]: Connections::close
pub struct Connections<'a> {
    pub(crate) reactor: &'a mut Reactor,
    pub(crate) state: &'a mut State,
    /// The bytes `on_data` is reading when they are still in the engine's
    /// read buffer (empty in every other call): a reply that is a slice of
    /// them can be written from there, without a copy.
    pub(crate) input: &'a [u8],
}

impl Connections<'_> {
    /// Queues `data` (copied) to be sent on `id`.
    ///
    /// Inside [`on_data`](super::Handler::on_data), a slice of the `data` it
    /// was given, sent back to the same connection with nothing else queued
    /// for it, is not copied: it is written from the service's read buffer
    /// as soon as `on_data` returns. Everything else about it is the same:
    /// it counts in [`output_len`](Connections::output_len) and the limits,
    /// and whatever is sent after it goes after it.
    ///
    /// Above the [`high_water`](Config::high_water) mark the connection stops
    /// being read until its output drains below
    /// [`low_water`](Config::low_water) (so a peer that sends without reading
    /// cannot grow our memory). Past the
    /// [`output_limit`](Config::output_limit) the connection is closed.
    ///
    /// # Errors
    ///
    /// - `NotFound` if `id` is not open;
    /// - `BrokenPipe` if the connection is closing or its write side is shut
    ///   down;
    /// - `OutOfMemory` if this send took the queue past the output limit
    ///   (the connection is then closed, with [`CloseReason::OutputLimit`]).
    ///
    /// [`CloseReason::OutputLimit`]: super::CloseReason::OutputLimit
    #[inline]
    pub fn send(&mut self, id: ConnId, data: &[u8]) -> io::Result<()> {
        if let Some(offset) = self.offset_in_input(id, data) {
            if self.state.send_in_place(id, offset, data.len()) {
                return Ok(());
            }
        }
        self.settle_in_place();
        self.state.send(self.reactor, id, data)
    }

    /// Where `data` starts in the input lent to `on_data`, if `data` lies
    /// inside it and `id` is the connection it came from. (Comparing
    /// addresses is how a slice says where it points; nothing is read.)
    #[inline]
    fn offset_in_input(&self, id: ConnId, data: &[u8]) -> Option<usize> {
        let base = self.input.as_ptr() as usize;
        let start = data.as_ptr() as usize;
        let inside = start >= base && start + data.len() <= base + self.input.len();
        (inside && self.state.current == Some(id)).then(|| start - base)
    }

    /// Queues a reply still in the lent input, before anything else is done
    /// to output: what follows it must go after it.
    #[inline]
    fn settle_in_place(&mut self) {
        if let Some(reply) = self.state.out.in_place.take() {
            let bytes = &self.input[reply.offset..reply.offset + reply.len];
            self.state.queue_in_place(reply.id, bytes);
        }
    }

    /// Queues the same bytes for many connections, storing them once (a chat
    /// room's message, a notice to everyone). Returns how many connections
    /// took them; ids that are not open, connections that are closing, and
    /// connections this message takes past their output limit (which are
    /// closed) are skipped.
    ///
    /// Consecutive broadcasts to the same connections are adjacent in the
    /// turn buffer, so each receiver's whole turn goes out in one
    /// contiguous write, however many messages it holds.
    #[inline]
    pub fn broadcast<I>(&mut self, to: I, data: &[u8]) -> usize
    where
        I: IntoIterator<Item = ConnId>,
    {
        self.settle_in_place();
        self.state.broadcast(self.reactor, to, data)
    }

    /// Queues the same bytes for every open connection for which `filter`
    /// says yes, storing them once: a notice to everyone, or to everyone but
    /// the sender. Returns how many took them (as for
    /// [`broadcast`](Connections::broadcast)).
    ///
    /// This is the way to reach connections chosen from the service's own
    /// list: `conns.broadcast(conns.ids(), data)` does not compile, since the
    /// iterator borrows what the broadcast changes.
    ///
    /// # Examples
    ///
    /// ```
    /// # #![allow(dead_code)]
    /// use reactor::service::{ConnId, Connections, Handler};
    ///
    /// /// Every line goes to everyone else.
    /// struct Shout;
    /// impl Handler for Shout {
    ///     fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
    ///         conns.broadcast_where(|to| to != id, data);
    ///         data.len()
    ///     }
    /// }
    /// ```
    pub fn broadcast_where(&mut self, filter: impl FnMut(ConnId) -> bool, data: &[u8]) -> usize {
        self.settle_in_place();
        self.state.broadcast_where(self.reactor, filter, data)
    }

    /// Queues the same bytes for every open connection, storing them once;
    /// see [`broadcast_where`](Connections::broadcast_where).
    pub fn broadcast_all(&mut self, data: &[u8]) -> usize {
        self.broadcast_where(|_| true, data)
    }

    /// Closes gracefully: stops reading, writes what is queued, then sends
    /// FIN and closes. [`Handler::on_close`](super::Handler::on_close)
    /// follows once the output is written. Closing a connection that is
    /// already closing does nothing.
    ///
    /// # Errors
    ///
    /// `NotFound` if `id` is not open.
    pub fn close(&mut self, id: ConnId) -> io::Result<()> {
        self.settle_in_place();
        self.state.close(self.reactor, id, false)
    }

    /// Closes at once, dropping queued output.
    /// [`Handler::on_close`](super::Handler::on_close) follows (after the
    /// current handler call returns) with [`CloseReason::Closed`](super::CloseReason::Closed).
    ///
    /// # Errors
    ///
    /// `NotFound` if `id` is not open.
    pub fn abort(&mut self, id: ConnId) -> io::Result<()> {
        self.settle_in_place();
        self.state
            .abort(self.reactor, id, super::CloseReason::Closed)
    }

    /// Closes at once with a TCP reset (RST), whatever is queued: the peer
    /// sees the stream cut short (`ECONNRESET`), not ended. What a relay
    /// does when the other side of a pair was reset, so that a stream cut
    /// short at one end does not look complete at the other.
    /// [`Handler::on_close`](super::Handler::on_close) follows with
    /// [`CloseReason::Closed`](super::CloseReason::Closed). On a Unix-domain
    /// socket, which has no reset, it is [`abort`](Connections::abort).
    ///
    /// # Examples
    ///
    /// ```
    /// # #![allow(dead_code)]
    /// use reactor::service::{CloseReason, ConnId, Connections, Handler};
    ///
    /// /// Ends a pair of connections: a reset passes on as a reset.
    /// struct Pair { other: Option<ConnId> }
    /// impl Handler for Pair {
    ///     fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
    ///         data.len()
    ///     }
    ///     fn on_close(&mut self, conns: &mut Connections<'_>, _: ConnId, reason: &CloseReason) {
    ///         if let (Some(other), CloseReason::Error(_)) = (self.other.take(), reason) {
    ///             let _ = conns.reset(other);
    ///         }
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// `NotFound` if `id` is not open.
    pub fn reset(&mut self, id: ConnId) -> io::Result<()> {
        self.settle_in_place();
        self.state.reset(self.reactor, id)
    }

    /// Shuts down the sending side (TCP FIN) once queued output is written;
    /// the connection can still receive. Later sends fail with `BrokenPipe`.
    ///
    /// # Errors
    ///
    /// `NotFound` if `id` is not open, or the error of `shutdown(2)`.
    pub fn shutdown_write(&mut self, id: ConnId) -> io::Result<()> {
        self.settle_in_place();
        self.state.shutdown_write(id)
    }

    /// Stops reading from `id` until [`resume_reading`](Connections::resume_reading).
    /// Costs no system call: the socket stays registered, and the service
    /// remembers whether it was left readable.
    ///
    /// # Errors
    ///
    /// `NotFound` if `id` is not open.
    pub fn pause_reading(&mut self, id: ConnId) -> io::Result<()> {
        let conn = visible_mut(&mut self.state.conns, id).ok_or_else(|| not_open(id))?;
        conn.flags.set(Flags::PAUSED);
        Ok(())
    }

    /// Reads from `id` again. Input left unconsumed before the pause is
    /// handed to [`on_data`](super::Handler::on_data) again in this turn,
    /// even if nothing new arrives.
    ///
    /// # Errors
    ///
    /// `NotFound` if `id` is not open.
    pub fn resume_reading(&mut self, id: ConnId) -> io::Result<()> {
        let conn = visible_mut(&mut self.state.conns, id).ok_or_else(|| not_open(id))?;
        if conn.flags.take(Flags::PAUSED) {
            self.state.resume_if_readable(id);
        }
        Ok(())
    }

    /// Says that `id` is waiting for a message from its peer even though no
    /// byte of it is left over: a server waiting for a first message (a name,
    /// a request line), or a handler that consumes a message it is still
    /// skipping (an overlong line). With an
    /// [`unfinished_input_timeout`](Config::unfinished_input_timeout), the
    /// clock starts now if it is not running. Called from
    /// [`on_data`](super::Handler::on_data), it holds for that call only: the
    /// clock stops when an `on_data` call leaves no input and does not call
    /// this. Without the timeout configured it does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # #![allow(dead_code)]
    /// use reactor::service::{ConnId, Connections, Handler, Origin};
    ///
    /// struct Greeter;
    /// impl Handler for Greeter {
    ///     fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
    ///         let _ = conns.send(id, b"name? ");
    ///         // The name must arrive within the unfinished-input timeout.
    ///         let _ = conns.expect_message(id);
    ///     }
    ///     fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
    ///         // Consume whole lines only: a partial line keeps the clock running.
    ///         data.iter().rposition(|&b| b == b'\n').map_or(0, |end| end + 1)
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// `NotFound` if `id` is not open.
    pub fn expect_message(&mut self, id: ConnId) -> io::Result<()> {
        self.state.expect_message(self.reactor, id)
    }

    /// Restarts the idle clock of `id`, as a read or a write would: for
    /// activity the service cannot see (a subscriber that is sent nothing
    /// but is known to be alive). Does nothing without an
    /// [`idle_timeout`](Config::idle_timeout), or for an exempt connection.
    ///
    /// # Errors
    ///
    /// `NotFound` if `id` is not open.
    pub fn reset_idle(&mut self, id: ConnId) -> io::Result<()> {
        visible(&self.state.conns, id).ok_or_else(|| not_open(id))?;
        self.state.touch(self.reactor, id.index as usize);
        Ok(())
    }

    /// Exempts `id` from the [`idle_timeout`](Config::idle_timeout) (an
    /// admin connection, a long poll), or, with `false`, subjects it to the
    /// timeout again, its clock starting now. Without an idle timeout it
    /// does nothing.
    ///
    /// # Errors
    ///
    /// `NotFound` if `id` is not open.
    pub fn exempt_from_idle(&mut self, id: ConnId, exempt: bool) -> io::Result<()> {
        visible(&self.state.conns, id).ok_or_else(|| not_open(id))?;
        self.state
            .exempt_from_idle(self.reactor, id.index as usize, exempt);
        Ok(())
    }

    /// True if `id` is open (not closed, not closing).
    #[inline]
    pub fn is_open(&self, id: ConnId) -> bool {
        visible(&self.state.conns, id).is_some_and(|c| !c.flags.has(Flags::CLOSING))
    }

    /// Bytes queued for `id` and not yet written, or `None` if not open.
    #[inline]
    pub fn output_len(&self, id: ConnId) -> Option<usize> {
        let lent = match self.state.out.in_place {
            Some(reply) if reply.id == id => reply.len,
            _ => 0,
        };
        visible(&self.state.conns, id).map(|c| c.output_len() + lent)
    }

    /// Bytes received on `id` that the handler has not consumed yet.
    pub fn input_len(&self, id: ConnId) -> Option<usize> {
        visible(&self.state.conns, id).map(|c| c.input.len())
    }

    /// The peer's address (a `getpeername` system call).
    ///
    /// # Errors
    ///
    /// `NotFound` if `id` is not open; `NotConnected` while an outgoing
    /// connect is in progress.
    pub fn peer_addr(&self, id: ConnId) -> io::Result<Addr> {
        visible(&self.state.conns, id)
            .ok_or_else(|| not_open(id))?
            .transport
            .socket()
            .peer_addr()
    }

    /// The local address of `id` (a `getsockname` system call).
    ///
    /// # Errors
    ///
    /// `NotFound` if `id` is not open.
    pub fn local_addr(&self, id: ConnId) -> io::Result<Addr> {
        visible(&self.state.conns, id)
            .ok_or_else(|| not_open(id))?
            .transport
            .socket()
            .local_addr()
    }

    /// The number of open connections: accepted or connected, not yet
    /// closed for the handler (a connection whose graceful close is still
    /// flushing counts, though [`is_open`](Connections::is_open) already
    /// says no).
    pub fn len(&self) -> usize {
        self.state.conns.len() - self.state.closing.lingering
    }

    /// True if no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of all open connections, in slot order (as counted by
    /// [`len`](Connections::len)).
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.state
            .conns
            .iter()
            .filter(|(_, c)| c.is_visible())
            .map(|(index, c)| c.id(index))
    }

    /// The service's counters.
    pub fn stats(&self) -> ServiceStats {
        self.state.stats()
    }

    /// The service's configuration.
    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// The reactor, for timers, deferred calls or stopping the loop.
    pub fn reactor(&mut self) -> &mut Reactor {
        self.reactor
    }
}

impl fmt::Debug for Connections<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("open", &self.len())
            .finish()
    }
}
