//! Input: reading a connection, the edge-triggered rules, delivery to the
//! handler, and pausing.
//!
//! Reads go into one scratch buffer shared by every connection; the handler
//! is handed the bytes there, and only what it leaves unconsumed is copied
//! out. A connection is read until `WouldBlock`, until a short read (on
//! epoll and kqueue a read that returns less than it was offered proves the
//! socket drained, and a new event follows any later arrival), or until its
//! read budget is spent, in which case it goes on the read queue and is read
//! again before the loop sleeps, in this same turn. This file never writes.

use std::io::{self, Read};
use std::mem;

use log::{debug, warn};

use super::conn::Connection;
use super::engine::{Engine, with_handler};
use super::flags::Flags;
use super::handler::{CloseReason, ConnId, Handler};
use super::output::backlog::CHUNK;
use super::output::send::join_flush_queue;
use super::state::{State, visible_mut};
use crate::reactor::Reactor;

/// What a read may have changed on the transport's side, for a transport
/// with a life of its own (TLS; for plain sockets both questions fold to
/// `false`): bytes of its own to send (a handshake message, a session
/// ticket), or plaintext it refused during the handshake that it can take
/// now. Either way the connection must be flushed, and no socket event will
/// say so.
#[inline(always)]
fn after_transport_read(conn: &mut Connection, flush_queue: &mut Vec<ConnId>, id: ConnId) {
    if !conn.flags.has(Flags::TLS) {
        return;
    }
    let ready = conn.transport.take_write_ready();
    if ready {
        conn.flags.set(Flags::WRITABLE);
    }
    if ready || conn.transport.has_pending() {
        join_flush_queue(conn, flush_queue, id);
    }
}

/// Whether a read that returned less than it was offered proves the socket
/// drained, so the next read can wait for an event (epoll and kqueue raise
/// one for anything that arrives later). Not after an event that reported
/// the peer's FIN: the end of stream still waits behind the data. For TLS, a
/// short read of plaintext proves only that rustls has none left: the
/// socket's own last read must have been short too. The one statement of the
/// rule, asked by the read loop here and the discard loop of `close.rs`.
#[inline(always)]
pub(crate) fn short_read_drained(conn: &Connection) -> bool {
    !conn.flags.has(Flags::READ_CLOSED)
        && (!conn.flags.has(Flags::TLS) || conn.transport.socket_drained())
}

/// Connections to read again before the loop sleeps.
#[derive(Default)]
pub(crate) struct Input {
    pub(crate) read_queue: Vec<ConnId>,
}

impl State {
    /// Puts a connection in the read queue: read it again before sleeping.
    #[inline]
    pub(crate) fn queue_read(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id.index as usize) {
            if !conn.flags.has(Flags::IN_READ_QUEUE) {
                conn.flags.set(Flags::IN_READ_QUEUE);
                self.input.read_queue.push(id);
            }
        }
    }

    /// After a pause ends: read again if the socket may hold data, and hand
    /// the leftover input back to the handler.
    pub(crate) fn resume_if_readable(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id.index as usize) else {
            return;
        };
        if !conn.can_read() {
            return;
        }
        if !conn.input.is_empty() {
            conn.flags.set(Flags::REDELIVER);
        }
        if conn.flags.any(Flags::READABLE | Flags::REDELIVER) {
            self.queue_read(id);
        }
    }

    /// Keeps the bytes a handler did not consume from the scratch buffer.
    pub(crate) fn keep_input(&mut self, reactor: &mut Reactor, id: ConnId, rest: &[u8]) {
        let Some(conn) = visible_mut(&mut self.conns, id) else {
            return;
        };
        if rest.len() > self.config.input_limit {
            self.input_over_limit(reactor, id, rest.len());
            return;
        }
        let mut input = if rest.len() <= CHUNK {
            self.out.pool.take()
        } else {
            Vec::with_capacity(rest.len())
        };
        input.extend_from_slice(rest);
        conn.input = input;
    }

    /// Puts back a connection's input buffer after the handler consumed
    /// `consumed` bytes of it; closes the connection if what is left is over
    /// the input limit.
    pub(crate) fn restore_input(
        &mut self,
        reactor: &mut Reactor,
        id: ConnId,
        mut input: Vec<u8>,
        consumed: usize,
    ) {
        let left = input.len() - consumed;
        match visible_mut(&mut self.conns, id) {
            Some(_) if left > self.config.input_limit => {
                self.out.pool.give(input);
                self.input_over_limit(reactor, id, left);
            }
            Some(conn) if left > 0 => {
                input.drain(..consumed);
                conn.input = input;
            }
            _ => self.out.pool.give(input),
        }
    }

    pub(crate) fn input_over_limit(&mut self, reactor: &mut Reactor, id: ConnId, len: usize) {
        warn!(
            "{id}: {len} bytes of unconsumed input, over the limit of {}: closing",
            self.config.input_limit
        );
        self.remove(reactor, id.index as usize, Some(CloseReason::InputLimit));
    }
}

impl<H: Handler> Engine<H> {
    /// Advances a paused connection's handshake (see `Transport::drive_handshake`).
    fn drive_handshake(&mut self, reactor: &mut Reactor, id: ConnId) {
        let Some(conn) = visible_mut(&mut self.state.conns, id) else {
            return;
        };
        match conn.transport.drive_handshake() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.flags.clear(Flags::READABLE),
            Err(e) => return self.fail(reactor, id, e),
        }
        after_transport_read(conn, &mut self.state.out.flush_queue, id);
    }

    pub(crate) fn read(&mut self, reactor: &mut Reactor, id: ConnId) {
        let mut budget = self.state.config.read_budget;
        loop {
            let Some(conn) = visible_mut(&mut self.state.conns, id) else {
                return;
            };
            if !conn.can_read() || self.state.out.over_budget {
                if conn.flags.has(Flags::CLOSING | Flags::READABLE)
                    && !conn.flags.has(Flags::END_OF_STREAM)
                {
                    // Closing: what the peer sends is read and thrown away,
                    // or it would turn the close into a reset.
                    self.discard_input(reactor, id);
                } else if conn.flags.has(Flags::READABLE)
                    && conn.transport.is_handshaking()
                    && !conn.flags.any(Flags::CONNECTING | Flags::END_OF_STREAM)
                {
                    // Paused (backpressure, say) during a TLS handshake: the
                    // output that paused it can only leave once the
                    // handshake is done, so the handshake goes on.
                    self.drive_handshake(reactor, id);
                }
                return;
            }
            if conn.flags.take(Flags::REDELIVER) && !conn.input.is_empty() {
                self.deliver(reactor, id, 0);
                continue;
            }
            if !conn.flags.has(Flags::READABLE) {
                return;
            }
            if budget == 0 {
                // Fairness: others get their turn; this one continues before
                // the loop sleeps.
                self.state.queue_read(id);
                return;
            }
            let want = self.scratch.len().min(budget);
            self.state.stats.reads += 1;
            match conn.transport.read(&mut self.scratch[..want]) {
                Ok(0) => {
                    conn.flags.clear(Flags::READABLE);
                    conn.flags.set(Flags::END_OF_STREAM);
                    debug!("{id}: end of stream from peer");
                    self.tell(reactor, id, |handler, conns| {
                        handler.on_read_closed(conns, id)
                    });
                    return;
                }
                Ok(n) => {
                    // A short read drained the socket (epoll and kqueue raise
                    // a new event for anything that arrives later): skip the
                    // read that would only answer WouldBlock.
                    let drained = n < want && short_read_drained(conn);
                    if drained {
                        conn.flags.clear(Flags::READABLE);
                    }
                    budget -= n;
                    after_transport_read(conn, &mut self.state.out.flush_queue, id);
                    self.state.stats.bytes_in += n as u64;
                    debug!("{id}: read {n} bytes");
                    let fast = conn.input.is_empty();
                    // `expect_message` marks only the call it is made in.
                    conn.flags.clear(Flags::MESSAGE_EXPECTED);
                    self.state.touch(reactor, id.index as usize);
                    if fast {
                        self.deliver_scratch(reactor, id, n);
                    } else {
                        self.deliver(reactor, id, n);
                    }
                    if drained {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.flags.clear(Flags::READABLE);
                    after_transport_read(conn, &mut self.state.out.flush_queue, id);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(reactor, id, e);
                    return;
                }
            }
        }
    }

    /// The common case, for a connection with no leftover input: the `n`
    /// bytes go from the scratch buffer to the handler, and only what it
    /// leaves is copied out. A reply that is a slice of them (an echo) is
    /// written from the scratch buffer before it is reused.
    #[inline(always)]
    pub(crate) fn deliver_scratch(&mut self, reactor: &mut Reactor, id: ConnId, n: usize) {
        let input = &self.scratch[..n];
        let consumed = with_handler(
            &mut self.handler,
            &mut self.state,
            reactor,
            id,
            input,
            |handler, conns| handler.on_data(conns, id, input),
        )
        .min(n);
        if let Some(reply) = self.state.out.in_place.take() {
            self.write_in_place(reactor, reply);
        }
        if consumed < n {
            self.state
                .keep_input(reactor, id, &self.scratch[consumed..n]);
        }
        self.state.note_unfinished(reactor, id);
    }

    /// Hands the handler the connection's leftover input followed by the `n`
    /// new bytes in the scratch buffer, and keeps what it does not consume.
    pub(crate) fn deliver(&mut self, reactor: &mut Reactor, id: ConnId, n: usize) {
        let Some(conn) = visible_mut(&mut self.state.conns, id) else {
            return;
        };
        if conn.input.is_empty() {
            self.deliver_scratch(reactor, id, n);
            return;
        }
        // The limit applies to what the handler leaves unconsumed (checked
        // in `restore_input`), so the leftover may hold at most one read more.
        conn.input.extend_from_slice(&self.scratch[..n]);
        conn.flags.clear(Flags::MESSAGE_EXPECTED);
        let input = mem::take(&mut conn.input);
        let consumed = self
            .tell(reactor, id, |handler, conns| {
                handler.on_data(conns, id, &input)
            })
            .min(input.len());
        self.state.restore_input(reactor, id, input, consumed);
        self.state.note_unfinished(reactor, id);
    }
}
