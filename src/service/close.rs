//! Closing: graceful close, abort, write shutdown, the linger, and a
//! service's shutdown.
//!
//! The rule this file keeps: a socket is never closed while input may still
//! arrive, unless the close is an abort. Closing a socket that receives input
//! makes the kernel answer RST, and a reset throws away whatever the kernel
//! had not yet delivered to the peer. So from `close()` on, what the peer
//! sends is read and discarded; once the queue is written, our side is shut
//! down (FIN) and the connection lingers, invisible to the handler, until
//! the peer's FIN, or until the peer has taken everything and the
//! `linger_timeout` has passed, or until the close's deadline. Aborts, and
//! closes that throw output away, reset on purpose.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::time::Duration;

use log::{debug, info, warn};

use super::engine::Engine;
use super::flags::Flags;
use super::handler::{CloseReason, ConnId, Handler};
use super::input::short_read_drained;
use super::state::{State, TimerKind, not_open, visible_mut};
use super::timeouts::Clock;
use crate::reactor::Reactor;
use crate::timer::TimerId;

/// How often a lingering close asks the kernel whether the peer has taken
/// everything (`SIOCOUTQ`). No event says so: a writable edge comes only when
/// a full send buffer drains past a threshold, not when it empties. So it is
/// polled, by one timer for all lingering connections, and only while some
/// have bytes in flight: an ioctl each per 25 ms, and a linger that ends at
/// most 25 ms late.
const DELIVERY_POLL: Duration = Duration::from_millis(25);

/// What to run once a shutdown has closed everything.
pub(crate) type ShutdownDone = Box<dyn FnOnce(&mut Reactor)>;

pub(crate) struct ShutdownState {
    pub(crate) done: Option<ShutdownDone>,
    pub(crate) deadline: TimerId,
}

/// Closes in progress: notices for the handler, lingering connections, and
/// the shutdown.
#[derive(Default)]
pub(crate) struct Closing {
    /// Close notices waiting for the handler.
    pub(crate) notices: VecDeque<(ConnId, CloseReason)>,
    /// Connections closed for the handler, waiting for their peer.
    pub(crate) lingering: usize,
    /// Lingering connections whose peer has not yet taken everything.
    delivery_watch: Vec<ConnId>,
    delivery_timer: Option<TimerId>,
    pub(crate) shutdown: Option<ShutdownState>,
}

impl State {
    /// Graceful close: stop reading, flush what is queued, then close.
    pub(crate) fn close(
        &mut self,
        reactor: &mut Reactor,
        id: ConnId,
        for_shutdown: bool,
    ) -> io::Result<()> {
        let conn = visible_mut(&mut self.conns, id).ok_or_else(|| not_open(id))?;
        if for_shutdown {
            conn.flags.set(Flags::CLOSING_FOR_SHUTDOWN);
        }
        if conn.flags.has(Flags::CLOSING) {
            return Ok(());
        }
        conn.flags.set(Flags::CLOSING);
        let index = id.index as usize;
        // A closing connection has no messages: its input is discarded.
        self.clocks.unfinished.list.unlink(&mut self.conns, index);
        if !for_shutdown {
            // One deadline for the whole close, flush and linger alike (a
            // shutdown's closes have the shutdown's deadline instead).
            let now = self.now_ms(reactor);
            self.clocks
                .closing
                .list
                .push_back(&mut self.conns, index, now);
            self.arm_clock(reactor, Clock::Closing);
        }
        let conn = &self.conns[index];
        if !conn.has_output() && !conn.flags.has(Flags::CONNECTING) {
            self.finish_close(reactor, index);
        } else if conn.flags.has(Flags::CONNECTING) && !conn.has_output() {
            self.remove(reactor, index, Some(CloseReason::Closed));
        } else if conn.flags.has(Flags::READABLE) {
            // While the queue drains, what the peer sends is read and thrown
            // away: left unread, it would turn the close into a reset.
            self.queue_read(id);
        }
        Ok(())
    }

    /// Closes at once, dropping queued output.
    pub(crate) fn abort(
        &mut self,
        reactor: &mut Reactor,
        id: ConnId,
        reason: CloseReason,
    ) -> io::Result<()> {
        visible_mut(&mut self.conns, id).ok_or_else(|| not_open(id))?;
        self.remove(reactor, id.index as usize, Some(reason));
        Ok(())
    }

    /// Closes at once with a reset: `SO_LINGER` of zero makes the kernel
    /// send RST at `close(2)` instead of FIN.
    pub(crate) fn reset(&mut self, reactor: &mut Reactor, id: ConnId) -> io::Result<()> {
        let conn = visible_mut(&mut self.conns, id).ok_or_else(|| not_open(id))?;
        if let super::stream::Stream::Tcp(tcp) = conn.transport.socket() {
            if let Err(e) = socket2::SockRef::from(tcp).set_linger(Some(std::time::Duration::ZERO))
            {
                debug!("{id}: SO_LINGER 0: {e}; closing without a reset");
            }
        }
        self.abort(reactor, id, CloseReason::Closed)
    }

    /// Shuts down the write side once queued output is written.
    pub(crate) fn shutdown_write(&mut self, id: ConnId) -> io::Result<()> {
        let conn = visible_mut(&mut self.conns, id).ok_or_else(|| not_open(id))?;
        if conn
            .flags
            .any(Flags::WRITE_SHUT | Flags::SHUT_WRITE_PENDING)
        {
            return Ok(());
        }
        if conn.has_output() || conn.flags.has(Flags::CONNECTING) {
            conn.flags.set(Flags::SHUT_WRITE_PENDING);
            return Ok(());
        }
        conn.flags.set(Flags::WRITE_SHUT);
        debug!("{id}: write side shut down");
        conn.transport.shutdown_write()
    }

    /// Carries out a `shutdown_write` that waited for the output queue to
    /// empty (or for a connect to complete).
    #[inline]
    pub(crate) fn complete_shutdown_write(&mut self, index: usize) -> io::Result<()> {
        let conn = &mut self.conns[index];
        if conn.has_output() || !conn.flags.take(Flags::SHUT_WRITE_PENDING) {
            return Ok(());
        }
        conn.flags.set(Flags::WRITE_SHUT);
        debug!("{}: write side shut down", conn.id(index));
        conn.transport.shutdown_write()
    }

    /// The output of a closing connection is written: send FIN and linger,
    /// or close at once if the peer already sent its FIN.
    pub(crate) fn finish_close(&mut self, reactor: &mut Reactor, index: usize) {
        let conn = &mut self.conns[index];
        let id = conn.id(index);
        let for_shutdown = conn.flags.has(Flags::CLOSING_FOR_SHUTDOWN);
        let reason = if for_shutdown {
            CloseReason::Shutdown
        } else if conn.flags.has(Flags::CLOSING_FOR_INPUT_TIMEOUT) {
            CloseReason::InputTimeout
        } else if conn.flags.has(Flags::END_OF_STREAM) {
            CloseReason::PeerClosed
        } else {
            CloseReason::Closed
        };
        let linger = self.config.linger_timeout;
        // If the peer has finished sending (and we have read up to its FIN),
        // nothing can arrive to provoke a reset: close now, and the kernel
        // delivers what it still holds. Otherwise input arriving after the
        // close would make the kernel answer RST, and a reset throws away
        // whatever it has not yet delivered; so shut down our side, and read
        // and discard until the peer's FIN.
        let peer_done = conn.flags.has(Flags::END_OF_STREAM);
        if (peer_done && !conn.transport.closes_with_notice()) || linger.is_zero() {
            self.remove(reactor, index, Some(reason));
            return;
        }
        if !conn.flags.has(Flags::WRITE_SHUT) && conn.transport.shutdown_write().is_err() {
            self.remove(reactor, index, Some(reason));
            return;
        }
        if peer_done && !conn.transport.has_pending() {
            // The transport's goodbye (close_notify) has left, and the peer
            // has finished: nothing more can arrive.
            self.remove(reactor, index, Some(reason));
            return;
        }
        conn.flags.clear(Flags::CLOSING | Flags::IN_FLUSH_QUEUE);
        conn.flags.set(Flags::LINGERING | Flags::WRITE_SHUT);
        let input = std::mem::take(&mut conn.input);
        self.out.pool.give(input);
        self.clocks.idle.list.unlink(&mut self.conns, index);
        self.closing.lingering += 1;
        debug!("{id}: {reason}; lingering for the peer's FIN");
        self.closing.notices.push_back((id, reason));
        if !for_shutdown {
            // A shutdown's closes linger until the FIN or its deadline.
            self.start_linger_clock(reactor, id);
        }
        // Input may already be waiting (no new edge will announce it).
        self.queue_read(id);
    }

    /// Starts the `linger_timeout` of a lingering connection once its peer
    /// has taken everything we sent: at once if it has (or the system cannot
    /// tell), or when the delivery poll finds it has.
    pub(crate) fn start_linger_clock(&mut self, reactor: &mut Reactor, id: ConnId) {
        match self.conns[id.index as usize].transport.unsent_bytes() {
            Ok(Some(unsent)) if unsent > 0 => {
                self.closing.delivery_watch.push(id);
                if self.closing.delivery_timer.is_none() {
                    self.closing.delivery_timer =
                        Some(self.set_timer(reactor, DELIVERY_POLL, TimerKind::DeliveryCheck));
                }
            }
            _ => {
                self.set_timer(reactor, self.config.linger_timeout, TimerKind::Linger(id));
            }
        }
    }

    /// The delivery poll: lingering connections whose peer now has
    /// everything start their `linger_timeout`; the rest are asked again.
    pub(crate) fn check_delivery(&mut self, reactor: &mut Reactor) {
        self.closing.delivery_timer = None;
        let mut watch = std::mem::take(&mut self.closing.delivery_watch);
        let mut i = 0;
        while i < watch.len() {
            let id = watch[i];
            let in_flight = match self.conns.get(id.index as usize) {
                Some(conn)
                    if conn.generation == id.generation && conn.flags.has(Flags::LINGERING) =>
                {
                    match conn.transport.unsent_bytes() {
                        Ok(Some(unsent)) if unsent > 0 => true,
                        _ => {
                            debug!("{id}: the peer has everything; waiting for its FIN");
                            self.set_timer(
                                reactor,
                                self.config.linger_timeout,
                                TimerKind::Linger(id),
                            );
                            false
                        }
                    }
                }
                _ => false,
            };
            if in_flight {
                i += 1;
            } else {
                watch.swap_remove(i);
            }
        }
        self.closing.delivery_watch = watch;
        if !self.closing.delivery_watch.is_empty() {
            self.closing.delivery_timer =
                Some(self.set_timer(reactor, DELIVERY_POLL, TimerKind::DeliveryCheck));
        }
    }

    /// Removes a connection now: deregisters it, returns its buffers to the
    /// pool, closes the descriptor, and queues `reason` for the handler.
    pub(crate) fn remove(
        &mut self,
        reactor: &mut Reactor,
        index: usize,
        reason: Option<CloseReason>,
    ) {
        self.clocks.unlink_all(&mut self.conns, index);
        let mut conn = self.conns.remove(index);
        let id = conn.id(index);
        if let Err(e) = reactor.deregister_routed(&mut conn.transport, conn.key) {
            debug!("{id}: deregister: {e}");
        }
        // The service's own queue, not what a transport holds: after a TLS
        // failure the alert rustls queued should reach the peer, not be
        // destroyed by a reset.
        if conn.output.is_some() || !conn.turn.is_empty() {
            // Output is being thrown away (a limit, an abort, an error):
            // reset, so the kernel throws away its copy too instead of
            // trickling megabytes to a peer that is not reading.
            let _ = conn.transport.socket().set_reset_on_close();
            self.output_written(conn.output_len());
            self.out.turn.release(&mut conn.turn);
            if let Some(queue) = conn.output.take() {
                self.out.pool.give_queue(queue);
            }
        }
        self.out.pool.give(std::mem::take(&mut conn.input));
        if conn.flags.has(Flags::ACCEPTED) {
            self.accept.open -= 1;
            if self.accept.warned_full && !self.is_full() {
                info!("below max_connections again: accepting");
                self.accept.warned_full = false;
            }
        }
        if conn.flags.has(Flags::LINGERING) {
            self.closing.lingering -= 1;
        }
        self.stats.closed += 1;
        match reason {
            Some(reason) => {
                debug!("{id}: close ({reason})");
                self.closing.notices.push_back((id, reason));
            }
            None => debug!("{id}: descriptor closed"),
        }
        // Dropping `conn` closes the descriptor.
    }

    /// The linger timer of a connection fired.
    pub(crate) fn end_linger(&mut self, reactor: &mut Reactor, id: ConnId) {
        let index = id.index as usize;
        if self
            .conns
            .get(index)
            .is_some_and(|c| c.generation == id.generation && c.flags.has(Flags::LINGERING))
        {
            self.remove(reactor, index, None);
        }
    }

    /// The closing timer fired: a close still flushing is aborted, one
    /// still lingering is ended.
    pub(crate) fn expire_closing(&mut self, reactor: &mut Reactor) {
        let timeout = self.config.close_timeout;
        for id in self.take_expired(reactor, Clock::Closing) {
            let index = id.index as usize;
            let conn = &self.conns[index];
            if conn.flags.has(Flags::LINGERING) {
                debug!("{id}: still lingering after {timeout:?}: closing");
                self.remove(reactor, index, None);
            } else {
                warn!(
                    "{id}: close not finished after {timeout:?}, {} bytes unsent: aborting (peer not reading)",
                    conn.output_len()
                );
                self.remove(reactor, index, Some(CloseReason::CloseTimeout));
            }
        }
        self.arm_clock(reactor, Clock::Closing);
    }

    /// Starts a graceful shutdown: stop accepting, close every connection
    /// once its output is flushed, abort the rest at the deadline.
    pub(crate) fn begin_shutdown(
        &mut self,
        reactor: &mut Reactor,
        grace: Duration,
        done: ShutdownDone,
    ) -> io::Result<()> {
        if self.closing.shutdown.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the service is already shutting down",
            ));
        }
        let listeners: Vec<usize> = self.accept.listeners.iter().map(|(i, _)| i).collect();
        for index in listeners {
            self.close_listener(reactor, index);
        }
        let deadline = self.set_timer(reactor, grace, TimerKind::ShutdownDeadline);
        self.closing.shutdown = Some(ShutdownState {
            done: Some(done),
            deadline,
        });
        info!(
            "shutting down: {} connection(s) to flush within {grace:?}",
            self.conns.len() - self.closing.lingering
        );
        let ids: Vec<ConnId> = self.conns.iter().map(|(i, c)| c.id(i)).collect();
        for id in ids {
            let index = id.index as usize;
            match self.conns.get(index).map(|c| c.flags) {
                // Already closed for the handler: it goes on lingering, to
                // its FIN, its own timers or the shutdown's deadline.
                Some(flags) if flags.has(Flags::LINGERING) => {}
                Some(flags) if flags.has(Flags::CONNECTING) => {
                    self.remove(reactor, index, Some(CloseReason::Shutdown))
                }
                Some(_) => {
                    let _ = self.close(reactor, id, true);
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The shutdown deadline passed: abort whatever is left.
    pub(crate) fn shutdown_deadline(&mut self, reactor: &mut Reactor) {
        let left: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
        if !left.is_empty() {
            warn!(
                "shutdown deadline: aborting {} connection(s) with unsent output",
                left.len()
            );
        }
        for index in left {
            let lingering = self.conns[index].flags.has(Flags::LINGERING);
            self.remove(
                reactor,
                index,
                (!lingering).then_some(CloseReason::Shutdown),
            );
        }
    }

    /// If a shutdown is complete (no connections left), runs its callback in
    /// the next turn.
    pub(crate) fn check_shutdown_done(&mut self, reactor: &mut Reactor) {
        if !self.conns.is_empty() {
            return;
        }
        let Some(state) = self.closing.shutdown.as_mut() else {
            return;
        };
        if let Some(done) = state.done.take() {
            reactor.cancel(state.deadline);
            info!("shutdown complete");
            reactor.call_soon(done);
        }
    }
}

impl<H: Handler> Engine<H> {
    /// Reads and throws away input on a closing or lingering connection, so
    /// that none is left unread to turn the close into a reset. The peer's
    /// FIN ends a linger; on a connection still flushing, it is noted (the
    /// close then ends as soon as the flush does).
    pub(crate) fn discard_input(&mut self, reactor: &mut Reactor, id: ConnId) {
        let index = id.index as usize;
        let mut budget = self.state.config.read_budget;
        let result = loop {
            let conn = &mut self.state.conns[index];
            match conn.transport.read(&mut self.scratch) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    // Read, though thrown away: it counts as read.
                    self.state.stats.bytes_in += n as u64;
                    if n < self.scratch.len() && short_read_drained(conn) {
                        conn.flags.clear(Flags::READABLE);
                        return;
                    }
                    if n >= budget {
                        self.state.queue_read(id);
                        return;
                    }
                    budget -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.flags.clear(Flags::READABLE);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let conn = &mut self.state.conns[index];
        match result {
            // The peer has finished, but our goodbye has not left yet: it
            // goes on the next writable event, and the close ends there.
            Ok(()) if conn.flags.has(Flags::LINGERING) && conn.transport.has_pending() => {
                conn.flags.clear(Flags::READABLE);
                conn.flags.set(Flags::END_OF_STREAM);
            }
            _ if conn.flags.has(Flags::LINGERING) => self.state.remove(reactor, index, None),
            Ok(()) => {
                conn.flags.clear(Flags::READABLE);
                conn.flags.set(Flags::END_OF_STREAM);
                debug!("{id}: end of stream from peer while closing");
            }
            Err(e) => self.fail(reactor, id, e),
        }
    }
}
