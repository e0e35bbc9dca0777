//! Writing output: the flush of one connection's backlog and turn ranges,
//! and what follows it (backpressure released, a close or write shutdown
//! completed, `on_drained`).
//!
//! One `write` (or `writev`) per call, repeated until everything is written,
//! the socket is full, or the write budget is spent; what the socket does
//! not take moves to the backlog. It runs for every connection in the flush
//! queue from the before-sleep hook, and on a writable event for a
//! connection whose output did not fit earlier. The single write of the
//! fast paths is [`write_at_once`], shared with the reply in place.

use std::io::{self, Write};

use log::debug;

use super::writable_with_no_backlog;
use crate::reactor::Reactor;
use crate::service::conn::Connection;
use crate::service::engine::Engine;
use crate::service::flags::Flags;
use crate::service::handler::{ConnId, Handler};
use crate::service::stats::ServiceStats;
use crate::service::transport::Transport;

impl<H: Handler> Engine<H> {
    /// Writes a connection's output: first its backlog (kept from earlier
    /// turns), then what was sent this turn, straight from the turn buffer.
    /// One `write`/`writev` per call, repeated until everything is written,
    /// the socket is full, or the write budget is spent. What the socket
    /// does not take moves to the backlog.
    pub(crate) fn flush(&mut self, reactor: &mut Reactor, id: ConnId) {
        let state = &mut self.state;
        let Some(conn) = state.conns.get_mut(id.index as usize) else {
            return;
        };
        // The common case, inline: no backlog, this turn's output in one
        // range, written at once with one `write`.
        if writable_with_no_backlog(conn) {
            if let Some(bytes) = state.out.turn.single(&conn.turn) {
                let len = bytes.len();
                if len <= state.config.write_budget {
                    let settled = || !state.out.over_budget && state.config.idle_timeout.is_none();
                    match write_at_once(conn, &mut state.stats, settled, id, bytes) {
                        Wrote::All => {
                            state.out.turn.release(&mut conn.turn);
                            self.tell(reactor, id, |handler, conns| handler.on_drained(conns, id));
                            return;
                        }
                        Wrote::Part(written, result) => {
                            if written == len {
                                state.out.turn.release(&mut conn.turn);
                            } else {
                                state.out.turn.consume(&mut conn.turn, written);
                            }
                            return self.flush_general(reactor, id, written, result);
                        }
                    }
                }
            }
        }
        self.flush_general(reactor, id, 0, Ok(()))
    }

    /// [`flush`](Self::flush), every case: the backlog first, then this
    /// turn's ranges, then what the socket did not take into the backlog,
    /// and the accounting. `written` bytes (with `result`) were already
    /// written by the fast path.
    #[inline(never)]
    pub(super) fn flush_general(
        &mut self,
        reactor: &mut Reactor,
        id: ConnId,
        mut written: usize,
        mut result: io::Result<()>,
    ) {
        let index = id.index as usize;
        let state = &mut self.state;
        let Some(conn) = state.conns.get_mut(index) else {
            return;
        };
        if conn.flags.has(Flags::CONNECTING) {
            return;
        }
        if conn.transport.has_pending() && conn.flags.has(Flags::WRITABLE) && result.is_ok() {
            // What the transport holds is older than anything queued here.
            result = match conn.transport.write_pending() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.flags.clear(Flags::WRITABLE);
                    Ok(())
                }
                other => other,
            };
        }
        if !conn.flags.has(Flags::WRITABLE) && written == 0 && result.is_ok() {
            // The socket is full: this turn's bytes join the backlog (as a
            // shared slice when they were broadcast), to go out on the
            // writable event.
            if !conn.turn.is_empty() {
                let queue = conn
                    .output
                    .get_or_insert_with(|| state.out.pool.take_queue());
                state
                    .out
                    .turn
                    .spill(&mut conn.turn, queue, &mut state.out.pool);
                let _ = state.enforce_output_limit(reactor, id);
            }
            return;
        }
        let mut budget = state.config.write_budget.saturating_sub(written);
        if let Some(queue) = conn
            .output
            .as_mut()
            .filter(|_| result.is_ok() && conn.flags.has(Flags::WRITABLE))
        {
            result = write_until_blocked(
                &mut conn.transport,
                &mut conn.flags,
                &mut budget,
                &mut written,
                &mut state.stats.writes,
                |out, limit| {
                    let (n, offered) = queue.write_to(out, limit)?;
                    queue.consume(n, &mut state.out.pool);
                    Ok((n, offered, queue.is_empty()))
                },
            );
            if queue.is_empty() {
                if let Some(queue) = conn.output.take() {
                    state.out.pool.give_queue(queue);
                }
            }
        }
        if !conn.turn.is_empty() {
            if result.is_ok()
                && conn.output.is_none()
                && conn.flags.has(Flags::WRITABLE)
                && budget > 0
            {
                let turn = &mut state.out.turn;
                let link = &mut conn.turn;
                result = write_until_blocked(
                    &mut conn.transport,
                    &mut conn.flags,
                    &mut budget,
                    &mut written,
                    &mut state.stats.writes,
                    |out, limit| {
                        let (n, offered) = turn.write_to(link, out, limit)?;
                        turn.consume(link, n);
                        Ok((n, offered, link.is_empty()))
                    },
                );
            }
            if !conn.turn.is_empty() {
                let queue = conn
                    .output
                    .get_or_insert_with(|| state.out.pool.take_queue());
                state
                    .out
                    .turn
                    .spill(&mut conn.turn, queue, &mut state.out.pool);
            }
        }
        let spilled = conn
            .output
            .as_ref()
            .is_some_and(|queue| queue.footprint() > queue.len());
        let remaining = conn.output_len();
        state.output_written(written);
        state.stats.bytes_out += written as u64;
        if written > 0 {
            debug!("{id}: wrote {written} bytes");
        }
        if let Err(e) = result {
            self.fail(reactor, id, e);
            return;
        }
        if spilled && state.enforce_output_limit(reactor, id).is_err() {
            return;
        }
        if written > 0 {
            state.touch(reactor, index);
        }
        self.after_flush(reactor, id, remaining);
    }

    /// What follows a flush: backpressure released below low water, a close
    /// or write shutdown completed once empty, `on_drained`.
    pub(crate) fn after_flush(&mut self, reactor: &mut Reactor, id: ConnId, remaining: usize) {
        let index = id.index as usize;
        let state = &mut self.state;
        let conn = &mut state.conns[index];
        let low_water = state.config.low_water;
        if conn.flags.has(Flags::BACKPRESSURE) && remaining <= low_water {
            conn.flags.clear(Flags::BACKPRESSURE);
            debug!("{id}: output below low water: reading again");
            state.resume_if_readable(id);
        }
        let conn = &mut state.conns[index];
        // Not drained while the transport still holds output too (TLS records,
        // or plaintext waiting for the handshake). Held plaintext goes once
        // the handshake ends, which a read reports; only bytes that can be
        // written now warrant another flush.
        if conn.has_output() {
            let more_now = remaining > 0 || conn.transport.has_pending();
            if more_now && conn.flags.has(Flags::WRITABLE) {
                // The budget ran out with the socket still writable.
                state.queue_flush(id);
            }
            return;
        }
        if conn.flags.has(Flags::CLOSING) {
            state.finish_close(reactor, index);
            return;
        }
        if let Err(e) = state.complete_shutdown_write(index) {
            self.fail(reactor, id, e);
            return;
        }
        self.tell(reactor, id, |handler, conns| handler.on_drained(conns, id));
    }
}

/// What the one `write` of a fast path did.
pub(super) enum Wrote {
    /// Everything, and nothing else is waiting on it: counted and done,
    /// `on_drained` is next.
    All,
    /// This many bytes (maybe all) and the result: `flush_general` finishes.
    Part(usize, io::Result<()>),
}

/// The one `write` of the fast paths (`flush` and `write_in_place`): all of
/// `bytes`, for a writable connection with nothing else queued. `settled`
/// says the service has no output-budget pause or idle clock to update
/// (asked only after a whole write).
/// Only a whole write on a connection with no backpressure, close or write
/// shutdown pending is finished here; the rest is left to `flush_general`.
#[inline(always)]
pub(super) fn write_at_once(
    conn: &mut Connection,
    stats: &mut ServiceStats,
    settled: impl FnOnce() -> bool,
    id: ConnId,
    bytes: &[u8],
) -> Wrote {
    stats.writes += 1;
    match conn.transport.write(bytes) {
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
    stream: &mut Transport,
    flags: &mut Flags,
    budget: &mut usize,
    written: &mut usize,
    calls: &mut u64,
    mut write: impl FnMut(&mut Transport, usize) -> io::Result<(usize, usize, bool)>,
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
