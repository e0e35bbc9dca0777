//! The engine of a service: turns events into reads, writes, accepts and
//! handler calls.
//!
//! Three paths matter:
//!
//! - **Read** (`read`): read into one scratch buffer shared by all
//!   connections, hand the bytes to the handler, keep only what it did not
//!   consume. Stop at `WouldBlock`, at a short read (the socket is drained),
//!   or when the per-event budget is spent (then the connection goes on the
//!   read queue, to continue before the loop sleeps). A reply that is a slice
//!   of the input, sent back to the same connection (an echo), is written
//!   from the scratch buffer as soon as `on_data` returns (`write_lent`):
//!   no copy.
//! - **Flush** (`flush`): one `write` or `writev` of everything queued, up to
//!   the write budget. It runs for every connection in the flush queue from
//!   the before-sleep hook, and on a writable event for a connection whose
//!   output did not fit earlier.
//! - **Accept** (`accept`): accept until `WouldBlock` or the per-turn cap,
//!   refuse connections over the limit, and rest on `EMFILE`.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::mem;
use std::net::Shutdown;

use log::{debug, error, info, warn};

use super::conn::{Clock, Connection, Flags};
use super::connections::Connections;
use super::handler::{CloseReason, ConnId, Handler, ListenerId, Origin};
use super::stats::ServiceStats;
use super::stream::Stream;
use super::table::{LISTENER_TAG, LentReply, Table, TimerKind, TimerTarget, visible_mut};
use crate::reactor::{Dispatch, Event, Reactor};
use crate::ready::Ready;
use crate::socket::is_resource_exhaustion;

/// Size of the scratch buffer every read goes into.
const SCRATCH: usize = 64 * 1024;

pub(crate) struct Engine<H> {
    pub(crate) handler: H,
    pub(crate) table: Table,
    scratch: Box<[u8]>,
    /// A spare vector swapped with the work queues, so draining them
    /// allocates nothing.
    spare: Vec<ConnId>,
}

/// The shared cell the reactor routes events and timers to.
pub(crate) struct Core<H> {
    pub(crate) engine: RefCell<Engine<H>>,
}

impl<H: Handler> Dispatch for Core<H> {
    fn dispatch(&self, reactor: &mut Reactor, tag: usize, event: Event) {
        let Ok(mut engine) = self.engine.try_borrow_mut() else {
            error!(
                "service event while its handler is running (was the loop run from inside a handler?)"
            );
            return;
        };
        engine.enter(reactor);
        // The events that follow for this service are taken here too: the
        // borrow and the checks on entry are paid once per batch.
        let mut next = Some((tag, event));
        while let Some((tag, event)) = next {
            if tag & LISTENER_TAG != 0 {
                engine.accept(reactor, tag & !LISTENER_TAG);
            } else {
                engine.conn_event(reactor, tag, event.ready());
            }
            engine.leave(reactor);
            next = reactor.next_event_for(self);
        }
    }
}

impl<H: Handler> TimerTarget for Core<H> {
    fn on_timer(&self, reactor: &mut Reactor, kind: TimerKind) {
        let Ok(mut engine) = self.engine.try_borrow_mut() else {
            error!("service timer while its handler is running");
            return;
        };
        engine.enter(reactor);
        match kind {
            TimerKind::Clock(Clock::Idle) => engine.table.expire_idle(reactor),
            TimerKind::Clock(Clock::Unfinished) => engine.expire_unfinished(reactor),
            TimerKind::Clock(Clock::Closing) => engine.table.expire_closing(reactor),
            TimerKind::DeliveryCheck => engine.table.check_delivery(reactor),
            TimerKind::Linger(id) => engine.table.end_linger(reactor, id),
            TimerKind::Connect(id) => engine.connect_timed_out(reactor, id),
            TimerKind::AcceptResume => engine.resume_accepting(),
            TimerKind::ShutdownDeadline => engine.table.shutdown_deadline(reactor),
        }
        engine.leave(reactor);
    }
}

impl<H: Handler> Core<H> {
    /// The before-sleep hook: continue reads and accepts left over, then
    /// flush every connection with queued output.
    pub(crate) fn before_sleep(&self, reactor: &mut Reactor) {
        let Ok(mut engine) = self.engine.try_borrow_mut() else {
            return;
        };
        engine.enter(reactor);
        engine.run_queues(reactor);
        engine.leave(reactor);
        // Work queued during this pass (a budget spent, a send from
        // `on_drained` or from an `on_close` delivered just now) must not
        // wait for an event that may never come.
        if engine.has_queued_work() {
            reactor.keep_awake();
        }
    }
}

impl<H: Handler> Engine<H> {
    pub(crate) fn new(handler: H, table: Table) -> Engine<H> {
        Engine {
            handler,
            table,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            spare: Vec::new(),
        }
    }

    /// Every entry into the engine starts here. A handler call still marked
    /// in progress means it panicked: that connection is closed (see
    /// `Service` on panics).
    pub(crate) fn enter(&mut self, reactor: &mut Reactor) {
        if let Some(reply) = self.table.lent_reply.take() {
            // The panic came between a send and its write: the reply is lost
            // with the connection.
            self.table.output_written(reply.len);
        }
        if let Some(id) = self.table.current.take() {
            error!("{id}: the handler panicked while handling it; closing it");
            let _ = self.table.abort(reactor, id, CloseReason::HandlerPanicked);
        }
    }

    /// Every exit from the engine ends here: deliver queued close
    /// notifications (which may queue more), then see if a shutdown is done.
    pub(crate) fn leave(&mut self, reactor: &mut Reactor) {
        if !self.table.closed.is_empty() {
            self.deliver_closed(reactor);
        }
        if self.table.shutdown.is_some() {
            self.table.check_shutdown_done(reactor);
        }
    }

    /// Tells the handler about connections that closed (each `on_close` may
    /// close more, which are told in turn).
    fn deliver_closed(&mut self, reactor: &mut Reactor) {
        while let Some((id, reason)) = self.table.closed.pop_front() {
            self.tell(reactor, id, |handler, conns| {
                handler.on_close(conns, id, &reason)
            });
        }
    }

    /// Calls the handler about connection `id` (see [`with_handler`]).
    #[inline(always)]
    fn tell<R>(
        &mut self,
        reactor: &mut Reactor,
        id: ConnId,
        f: impl FnOnce(&mut H, &mut Connections<'_>) -> R,
    ) -> R {
        with_handler(&mut self.handler, &mut self.table, reactor, id, &[], f)
    }

    fn has_queued_work(&self) -> bool {
        !self.table.read_queue.is_empty()
            || !self.table.flush_queue.is_empty()
            || !self.table.accept_queue.is_empty()
    }

    /// Calls the handler with nothing in particular in progress (for
    /// `Service::with`).
    pub(crate) fn call<R>(
        &mut self,
        reactor: &mut Reactor,
        f: impl FnOnce(&mut H, &mut Connections<'_>) -> R,
    ) -> R {
        let mut conns = Connections {
            reactor,
            table: &mut self.table,
            lent: &[],
        };
        f(&mut self.handler, &mut conns)
    }

    fn run_queues(&mut self, reactor: &mut Reactor) {
        if !self.table.accept_queue.is_empty() {
            let listeners = mem::take(&mut self.table.accept_queue);
            for index in listeners {
                self.accept(reactor, index);
            }
        }

        let mut batch = mem::take(&mut self.spare);
        mem::swap(&mut batch, &mut self.table.read_queue);
        for id in batch.drain(..) {
            let Some(conn) = self.table.conns.get_mut(id.index as usize) else {
                continue;
            };
            if conn.generation != id.generation {
                continue;
            }
            conn.flags.clear(Flags::IN_READ_QUEUE);
            if conn.flags.has(Flags::LINGERING) {
                self.discard_input(reactor, id);
            } else {
                self.read(reactor, id);
            }
        }

        // Closes found while reading are told now, so that what `on_close`
        // sends (a "left the room" notice) goes out in this flush.
        self.deliver_closed(reactor);

        mem::swap(&mut batch, &mut self.table.flush_queue);
        for id in batch.drain(..) {
            let Some(conn) = self.table.conns.get_mut(id.index as usize) else {
                continue;
            };
            if conn.generation != id.generation {
                continue;
            }
            conn.flags.clear(Flags::IN_FLUSH_QUEUE);
            self.flush(reactor, id);
        }
        self.spare = batch;
    }

    // ----- events -------------------------------------------------------

    fn conn_event(&mut self, reactor: &mut Reactor, index: usize, ready: Ready) {
        let Some(conn) = self.table.conns.get_mut(index) else {
            return;
        };
        let id = conn.id(index);
        if conn.flags.has(Flags::CONNECTING) {
            self.finish_connect(reactor, id, ready);
            return;
        }
        if ready.is_readable() {
            conn.flags.set(Flags::READABLE);
        }
        if ready.is_read_closed() || ready.is_error() || ready.is_write_closed() {
            conn.flags.set(Flags::READABLE | Flags::PEER_HUP);
        }
        if ready.is_writable() {
            conn.flags.set(Flags::WRITABLE);
        }
        if ready.is_error() {
            if let Ok(Some(e)) | Err(e) = conn.stream.take_error() {
                self.fail(reactor, id, e);
                return;
            }
        }
        if conn.flags.has(Flags::LINGERING) {
            self.discard_input(reactor, id);
            return;
        }
        if conn.flags.has(Flags::WRITABLE) && conn.has_output() {
            self.flush(reactor, id);
        }
        self.read(reactor, id);
    }

    /// A socket error: close the connection (quietly if it was lingering).
    fn fail(&mut self, reactor: &mut Reactor, id: ConnId, e: io::Error) {
        let index = id.index as usize;
        let lingering = self.table.conns[index].flags.has(Flags::LINGERING);
        if lingering {
            self.table.remove(reactor, index, None);
        } else {
            debug!("{id}: {e}");
            self.table
                .remove(reactor, index, Some(CloseReason::Error(e)));
        }
    }

    // ----- reading ------------------------------------------------------

    fn read(&mut self, reactor: &mut Reactor, id: ConnId) {
        let mut budget = self.table.config.read_budget;
        loop {
            let Some(conn) = visible_mut(&mut self.table.conns, id) else {
                return;
            };
            if !conn.can_read() || self.table.over_budget {
                if conn.flags.has(Flags::CLOSING | Flags::READABLE)
                    && !conn.flags.has(Flags::READ_CLOSED)
                {
                    // Closing: what the peer sends is read and thrown away,
                    // or it would turn the close into a reset.
                    self.discard_input(reactor, id);
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
                self.table.queue_read(id);
                return;
            }
            let want = self.scratch.len().min(budget);
            self.table.stats.reads += 1;
            match conn.stream.read(&mut self.scratch[..want]) {
                Ok(0) => {
                    conn.flags.clear(Flags::READABLE);
                    conn.flags.set(Flags::READ_CLOSED);
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
                    let drained = n < want && !conn.flags.has(Flags::PEER_HUP);
                    if drained {
                        conn.flags.clear(Flags::READABLE);
                    }
                    budget -= n;
                    self.table.stats.bytes_in += n as u64;
                    debug!("{id}: read {n} bytes");
                    let fast = conn.input.is_empty();
                    // `expect_message` marks only the call it is made in.
                    conn.flags.clear(Flags::MESSAGE_EXPECTED);
                    self.table.touch(reactor, id.index as usize);
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
    fn deliver_scratch(&mut self, reactor: &mut Reactor, id: ConnId, n: usize) {
        let input = &self.scratch[..n];
        let consumed = with_handler(
            &mut self.handler,
            &mut self.table,
            reactor,
            id,
            input,
            |handler, conns| handler.on_data(conns, id, input),
        )
        .min(n);
        if let Some(reply) = self.table.lent_reply.take() {
            self.write_lent(reactor, reply);
        }
        if consumed < n {
            self.table
                .keep_input(reactor, id, &self.scratch[consumed..n]);
        }
        self.table.note_unfinished(reactor, id);
    }

    /// Hands the handler the connection's leftover input followed by the `n`
    /// new bytes in the scratch buffer, and keeps what it does not consume.
    fn deliver(&mut self, reactor: &mut Reactor, id: ConnId, n: usize) {
        let Some(conn) = visible_mut(&mut self.table.conns, id) else {
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
        self.table.restore_input(reactor, id, input, consumed);
        self.table.note_unfinished(reactor, id);
    }

    /// Reads and throws away input on a closing or lingering connection, so
    /// that none is left unread to turn the close into a reset. The peer's
    /// FIN ends a linger; on a connection still flushing, it is noted (the
    /// close then ends as soon as the flush does).
    fn discard_input(&mut self, reactor: &mut Reactor, id: ConnId) {
        let index = id.index as usize;
        let mut budget = self.table.config.read_budget;
        let result = loop {
            let conn = &mut self.table.conns[index];
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => break Ok(()),
                Ok(n) if n < self.scratch.len() && !conn.flags.has(Flags::PEER_HUP) => {
                    conn.flags.clear(Flags::READABLE);
                    return;
                }
                Ok(n) if n >= budget => {
                    self.table.queue_read(id);
                    return;
                }
                Ok(n) => budget -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.flags.clear(Flags::READABLE);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let conn = &mut self.table.conns[index];
        match result {
            _ if conn.flags.has(Flags::LINGERING) => self.table.remove(reactor, index, None),
            Ok(()) => {
                conn.flags.clear(Flags::READABLE);
                conn.flags.set(Flags::READ_CLOSED);
                debug!("{id}: end of stream from peer while closing");
            }
            Err(e) => self.fail(reactor, id, e),
        }
    }

    /// The unfinished-input clock ran out for some connections: each
    /// handler is told (to send an error) and the connection closed
    /// gracefully. One whose reading is paused is not at fault: its clock
    /// starts again.
    fn expire_unfinished(&mut self, reactor: &mut Reactor) {
        for id in self.table.take_expired(reactor, Clock::Unfinished) {
            let Some(conn) = visible_mut(&mut self.table.conns, id) else {
                continue;
            };
            if conn.flags.any(Flags::PAUSED | Flags::BACKPRESSURE) || self.table.over_budget {
                let now = self.table.now_ms(reactor);
                self.table.clocks.unfinished.list.push_back(
                    &mut self.table.conns,
                    id.index as usize,
                    now,
                );
                continue;
            }
            conn.flags.set(Flags::CLOSING_FOR_INPUT_TIMEOUT);
            info!(
                "{id}: message unfinished after {:?}: closing",
                self.table.config.unfinished_input_timeout
            );
            self.tell(reactor, id, |handler, conns| {
                handler.on_input_timeout(conns, id)
            });
            // The handler may have closed (or aborted) it already.
            let _ = self.table.close(reactor, id, false);
        }
        self.table.arm_clock(reactor, Clock::Unfinished);
    }

    // ----- writing ------------------------------------------------------

    /// Writes a connection's output: first its backlog (kept from earlier
    /// turns), then what was sent this turn, straight from the turn buffer.
    /// One `write`/`writev` per call, repeated until everything is written,
    /// the socket is full, or the write budget is spent. What the socket
    /// does not take moves to the backlog.
    fn flush(&mut self, reactor: &mut Reactor, id: ConnId) {
        let table = &mut self.table;
        let Some(conn) = table.conns.get_mut(id.index as usize) else {
            return;
        };
        // The common case, inline: no backlog, this turn's output in one
        // range, written at once with one `write`.
        if conn.output.is_none()
            && conn
                .flags
                .only(Flags::WRITABLE | Flags::CONNECTING, Flags::WRITABLE)
        {
            if let Some(bytes) = table.turn.single(&conn.turn) {
                let len = bytes.len();
                if len <= table.config.write_budget {
                    let settled = || !table.over_budget && table.config.idle_timeout.is_none();
                    match write_at_once(conn, &mut table.stats, settled, id, bytes) {
                        Wrote::All => {
                            table.turn.release(&mut conn.turn);
                            self.tell(reactor, id, |handler, conns| handler.on_drained(conns, id));
                            return;
                        }
                        Wrote::Part(written, result) => {
                            if written == len {
                                table.turn.release(&mut conn.turn);
                            } else {
                                table.turn.consume(&mut conn.turn, written);
                            }
                            return self.flush_general(reactor, id, written, result);
                        }
                    }
                }
            }
        }
        self.flush_general(reactor, id, 0, Ok(()))
    }

    /// Writes a reply still in the scratch buffer (see `Table::send_lent`):
    /// the connection has nothing else queued, so this is the fast path of
    /// [`flush`](Self::flush) without the copy into the turn buffer. What
    /// the socket does not take is queued as any send would be, and the
    /// general path carries on from there.
    fn write_lent(&mut self, reactor: &mut Reactor, reply: LentReply) {
        let LentReply { id, offset, len } = reply;
        let bytes = &self.scratch[offset..offset + len];
        let table = &mut self.table;
        let Some(conn) = visible_mut(&mut table.conns, id) else {
            table.output_written(len);
            return;
        };
        if !conn
            .flags
            .only(Flags::WRITABLE | Flags::CONNECTING, Flags::WRITABLE)
            || len > table.config.write_budget
        {
            table.queue_lent(id, bytes);
            return;
        }
        let settled = || !table.over_budget && table.config.idle_timeout.is_none();
        match write_at_once(conn, &mut table.stats, settled, id, bytes) {
            Wrote::All => self.tell(reactor, id, |handler, conns| handler.on_drained(conns, id)),
            Wrote::Part(written, result) => {
                if written < len {
                    table.queue_lent(id, &bytes[written..]);
                }
                self.flush_general(reactor, id, written, result);
            }
        }
    }

    /// [`flush`](Self::flush), every case: the backlog first, then this
    /// turn's ranges, then what the socket did not take into the backlog,
    /// and the accounting. `written` bytes (with `result`) were already
    /// written by the fast path.
    #[inline(never)]
    fn flush_general(
        &mut self,
        reactor: &mut Reactor,
        id: ConnId,
        mut written: usize,
        mut result: io::Result<()>,
    ) {
        let index = id.index as usize;
        let table = &mut self.table;
        let Some(conn) = table.conns.get_mut(index) else {
            return;
        };
        if conn.flags.has(Flags::CONNECTING) {
            return;
        }
        if !conn.flags.has(Flags::WRITABLE) && written == 0 && result.is_ok() {
            // The socket is full: this turn's bytes join the backlog (as a
            // shared slice when they were broadcast), to go out on the
            // writable event.
            if !conn.turn.is_empty() {
                let queue = conn.output.get_or_insert_with(|| table.pool.take_queue());
                table.turn.spill(&mut conn.turn, queue, &mut table.pool);
            }
            return;
        }
        let mut budget = table.config.write_budget.saturating_sub(written);
        if let Some(queue) = conn
            .output
            .as_mut()
            .filter(|_| result.is_ok() && conn.flags.has(Flags::WRITABLE))
        {
            result = write_until_blocked(
                &mut conn.stream,
                &mut conn.flags,
                &mut budget,
                &mut written,
                &mut table.stats.writes,
                |out, limit| {
                    let (n, offered) = queue.write_to(out, limit)?;
                    queue.consume(n, &mut table.pool);
                    Ok((n, offered, queue.is_empty()))
                },
            );
            if queue.is_empty() {
                if let Some(queue) = conn.output.take() {
                    table.pool.give_queue(queue);
                }
            }
        }
        if !conn.turn.is_empty() {
            if result.is_ok()
                && conn.output.is_none()
                && conn.flags.has(Flags::WRITABLE)
                && budget > 0
            {
                let turn = &mut table.turn;
                let link = &mut conn.turn;
                result = write_until_blocked(
                    &mut conn.stream,
                    &mut conn.flags,
                    &mut budget,
                    &mut written,
                    &mut table.stats.writes,
                    |out, limit| {
                        let (n, offered) = turn.write_to(link, out, limit)?;
                        turn.consume(link, n);
                        Ok((n, offered, link.is_empty()))
                    },
                );
            }
            if !conn.turn.is_empty() {
                let queue = conn.output.get_or_insert_with(|| table.pool.take_queue());
                table.turn.spill(&mut conn.turn, queue, &mut table.pool);
            }
        }
        let remaining = conn.output_len();
        table.output_written(written);
        table.stats.bytes_out += written as u64;
        if written > 0 {
            debug!("{id}: wrote {written} bytes");
        }
        if let Err(e) = result {
            self.fail(reactor, id, e);
            return;
        }
        if written > 0 {
            table.touch(reactor, index);
        }
        self.after_flush(reactor, id, remaining);
    }

    /// What follows a flush: backpressure released below low water, a close
    /// or write shutdown completed once empty, `on_drained`.
    fn after_flush(&mut self, reactor: &mut Reactor, id: ConnId, remaining: usize) {
        let index = id.index as usize;
        let table = &mut self.table;
        let conn = &mut table.conns[index];
        let low_water = table.config.low_water;
        if conn.flags.has(Flags::BACKPRESSURE) && remaining <= low_water {
            conn.flags.clear(Flags::BACKPRESSURE);
            debug!("{id}: output below low water: reading again");
            table.resume_if_readable(id);
        }
        let conn = &mut table.conns[index];
        if remaining > 0 {
            if conn.flags.has(Flags::WRITABLE) {
                // The budget ran out with the socket still writable.
                table.queue_flush(id);
            }
            return;
        }
        if conn.flags.has(Flags::CLOSING) {
            table.finish_close(reactor, index);
            return;
        }
        if let Err(e) = table.complete_shutdown_write(index) {
            self.fail(reactor, id, e);
            return;
        }
        self.tell(reactor, id, |handler, conns| handler.on_drained(conns, id));
    }

    // ----- accepting ----------------------------------------------------

    fn accept(&mut self, reactor: &mut Reactor, index: usize) {
        for _ in 0..self.table.config.accepts_per_turn {
            if self.table.accept_paused || self.table.shutdown.is_some() {
                return;
            }
            let Some(slot) = self.table.listeners.get(index) else {
                return;
            };
            match slot.listener.accept() {
                Ok((stream, peer)) => {
                    if self.table.warned_exhausted {
                        info!("descriptors available again: accepting");
                        self.table.warned_exhausted = false;
                    }
                    self.admit(reactor, index, stream, &peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_resource_exhaustion(&e) => {
                    self.pause_accepting(reactor, &e);
                    return;
                }
                // The client gave up between SYN and accept, or a signal:
                // try the next one.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    warn!("accept on listener {index}: {e}");
                    return;
                }
            }
        }
        // The cap was reached: more may be waiting, and no new event will
        // say so. Continue before the loop sleeps.
        self.table.accept_queue.push(index);
    }

    fn admit(
        &mut self,
        reactor: &mut Reactor,
        listener: usize,
        mut stream: Stream,
        peer: &super::Addr,
    ) {
        if self.table.is_full() {
            self.table.note_full();
            let message = self.table.listeners[listener]
                .reject_message
                .as_deref()
                .or(self.table.config.reject_message.as_deref());
            refuse(&mut stream, message);
            debug!("refused {peer}: at max_connections");
            return;
        }
        if self.table.config.nodelay {
            if let Err(e) = stream.set_nodelay(true) {
                debug!("TCP_NODELAY for {peer}: {e}");
            }
        }
        if let Some(size) = self.table.config.send_buffer {
            if let Err(e) = stream.set_send_buffer(size) {
                debug!("SO_SNDBUF for {peer}: {e}");
            }
        }
        // A fresh socket has an empty send buffer: writable from the start,
        // so a greeting goes out in this turn.
        let id = match self
            .table
            .insert(reactor, stream, Flags::ACCEPTED | Flags::WRITABLE)
        {
            Ok(id) => id,
            Err(e) => {
                warn!("cannot register connection from {peer}: {e}");
                return;
            }
        };
        self.table.stats.accepted += 1;
        debug!("{id}: accepted from {peer} on listener {listener}");
        let origin = Origin::Accepted(ListenerId(listener as u32));
        self.tell(reactor, id, |handler, conns| {
            handler.on_open(conns, id, origin)
        });
    }

    fn pause_accepting(&mut self, reactor: &mut Reactor, e: &io::Error) {
        let pause = self.table.config.accept_pause;
        if !self.table.warned_exhausted {
            warn!("accept: {e}; pausing accepts for {pause:?} (raise RLIMIT_NOFILE?)");
            self.table.warned_exhausted = true;
        }
        self.table.accept_paused = true;
        self.table
            .set_timer(reactor, pause, TimerKind::AcceptResume);
    }

    fn resume_accepting(&mut self) {
        self.table.accept_paused = false;
        // Connections may be waiting in the backlog with no new edge coming.
        let listeners: Vec<usize> = self.table.listeners.iter().map(|(i, _)| i).collect();
        self.table.accept_queue.extend(listeners);
    }

    // ----- connecting ---------------------------------------------------

    /// An event on a connection whose connect was in progress: find out
    /// whether it completed (`take_error`, then `peer_addr`, as mio documents).
    fn finish_connect(&mut self, reactor: &mut Reactor, id: ConnId, ready: Ready) {
        let index = id.index as usize;
        let conn = &mut self.table.conns[index];
        match conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => return self.connect_failed(reactor, id, e),
            Ok(None) => {}
        }
        match conn.stream.peer_addr() {
            Ok(peer) => {
                conn.flags.clear(Flags::CONNECTING);
                conn.flags.set(Flags::WRITABLE);
                if ready.is_readable() {
                    conn.flags.set(Flags::READABLE);
                }
                if ready.is_read_closed() {
                    conn.flags.set(Flags::READABLE | Flags::PEER_HUP);
                }
                if self.table.config.nodelay {
                    let _ = conn.stream.set_nodelay(true);
                }
                if let Some(size) = self.table.config.send_buffer {
                    let _ = conn.stream.set_send_buffer(size);
                }
                self.table.stats.connected += 1;
                debug!("{id}: connected to {peer}");
            }
            // Not connected yet (a spurious or early event): wait again.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.connect_failed(reactor, id, e),
        }
        self.tell(reactor, id, |handler, conns| {
            handler.on_open(conns, id, Origin::Connected)
        });
        // Output queued before the connect completed (or a write shutdown
        // asked for meanwhile), and input that came with it.
        self.table.queue_flush(id);
        if let Err(e) = self.table.complete_shutdown_write(index) {
            self.fail(reactor, id, e);
            return;
        }
        self.read(reactor, id);
    }

    fn connect_failed(&mut self, reactor: &mut Reactor, id: ConnId, e: io::Error) {
        debug!("{id}: connect failed: {e}");
        self.table
            .remove(reactor, id.index as usize, Some(CloseReason::Error(e)));
    }

    fn connect_timed_out(&mut self, reactor: &mut Reactor, id: ConnId) {
        let index = id.index as usize;
        let still_connecting = self
            .table
            .conns
            .get(index)
            .is_some_and(|c| c.generation == id.generation && c.flags.has(Flags::CONNECTING));
        if still_connecting {
            debug!("{id}: connect timed out");
            self.table
                .remove(reactor, index, Some(CloseReason::ConnectTimeout));
        }
    }
}

/// Calls the handler about connection `id`, marking the call in progress
/// (a call still marked when the engine is next entered had panicked: see
/// [`Engine::enter`]).
#[inline(always)]
fn with_handler<H, R>(
    handler: &mut H,
    table: &mut Table,
    reactor: &mut Reactor,
    id: ConnId,
    lent: &[u8],
    f: impl FnOnce(&mut H, &mut Connections<'_>) -> R,
) -> R {
    table.current = Some(id);
    let mut conns = Connections {
        reactor,
        table,
        lent,
    };
    let result = f(handler, &mut conns);
    conns.table.current = None;
    result
}

/// Refuses a connection over the limit: the reason (best effort, one
/// non-blocking write), FIN, and whatever the client sent already read off,
/// so the close sends FIN rather than RST and the reason is not destroyed.
fn refuse(stream: &mut Stream, message: Option<&[u8]>) {
    use std::io::Write;
    if let Some(message) = message {
        let _ = stream.write(message);
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 512];
    for _ in 0..16 {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
}

/// What the one `write` of a fast path did.
enum Wrote {
    /// Everything, and nothing else is waiting on it: counted and done,
    /// `on_drained` is next.
    All,
    /// This many bytes (maybe all) and the result: `flush_general` finishes.
    Part(usize, io::Result<()>),
}

/// The one `write` of the fast paths (`flush` and `write_lent`): all of
/// `bytes`, for a writable connection with nothing else queued. `settled`
/// says the service has no output-budget pause or idle clock to update
/// (asked only after a whole write).
/// Only a whole write on a connection with no backpressure, close or write
/// shutdown pending is finished here; the rest is left to `flush_general`.
#[inline(always)]
fn write_at_once(
    conn: &mut Connection,
    stats: &mut ServiceStats,
    settled: impl FnOnce() -> bool,
    id: ConnId,
    bytes: &[u8],
) -> Wrote {
    stats.writes += 1;
    match conn.stream.write(bytes) {
        Ok(n) if n == bytes.len() => {
            let plain = !conn
                .flags
                .any(Flags::BACKPRESSURE | Flags::CLOSING | Flags::SHUT_WRITE_PENDING);
            if plain && settled() {
                stats.bytes_out += n as u64;
                stats.queued_output -= n;
                debug!("{id}: wrote {n} bytes");
                return Wrote::All;
            }
            Wrote::Part(n, Ok(()))
        }
        // Short: the socket is full until a writable event says otherwise.
        Ok(n) => {
            conn.flags.clear(Flags::WRITABLE);
            Wrote::Part(n, Ok(()))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            conn.flags.clear(Flags::WRITABLE);
            Wrote::Part(0, Ok(()))
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Wrote::Part(0, Ok(())),
        Err(e) => Wrote::Part(0, Err(e)),
    }
}

/// Calls `write` (which writes some output and reports the bytes written,
/// the bytes offered, and whether nothing is left) until nothing is left,
/// the socket is full (a short write or `WouldBlock`: not writable until an
/// event says so), or the budget is spent.
fn write_until_blocked(
    stream: &mut Stream,
    flags: &mut Flags,
    budget: &mut usize,
    written: &mut usize,
    calls: &mut u64,
    mut write: impl FnMut(&mut Stream, usize) -> io::Result<(usize, usize, bool)>,
) -> io::Result<()> {
    loop {
        *calls += 1;
        match write(stream, *budget) {
            Ok((0, offered, _)) if offered > 0 => {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            Ok((n, offered, done)) => {
                *written += n;
                *budget = budget.saturating_sub(n);
                if n < offered {
                    // A short write filled the send buffer: a writable
                    // event will come when there is room again.
                    flags.clear(Flags::WRITABLE);
                    return Ok(());
                }
                if done || *budget == 0 {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                flags.clear(Flags::WRITABLE);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
