//! Queuing output: `send`, `broadcast`, and the accounting that follows
//! (limits, backpressure, the budget, the flush queue).
//!
//! A send to a writable connection is stored in the turn buffer, to be
//! written by the flush before the loop sleeps; anything else joins the
//! connection's backlog. The common case (a writable connection with no
//! backlog, far from every limit) is decided by one test,
//! [`fast_path_fits`](super::fast_path_fits), that every fast path asks;
//! the rest, with every limit and state, is `send_general`. This file never
//! writes to a socket.

use std::io;

use log::{debug, info, warn};

use super::backlog::BufferPool;
use super::fast_path_fits;
use super::turn::TurnBuffer;
use crate::reactor::Reactor;
use crate::service::conn::Connection;
use crate::service::flags::Flags;
use crate::service::handler::{CloseReason, ConnId};
use crate::service::state::{State, not_open, visible_mut};

/// Output to a closing connection, or one whose write side is shut, is an
/// error.
#[inline]
fn refuse_output(conn: &Connection, id: ConnId) -> io::Result<()> {
    if conn.flags.any(Flags::NOT_SENDING) {
        return Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            format!("{id} is closing or shut down for writing"),
        ));
    }
    Ok(())
}

/// Output for this connection can go into the turn buffer: its socket is
/// writable, so the coming flush will write it (or spill what is left).
#[inline]
fn direct(conn: &Connection) -> bool {
    conn.flags.has(Flags::WRITABLE) && !conn.flags.has(Flags::CONNECTING)
}

/// Queues `data` in a connection's backlog, after whatever it was sent
/// earlier this turn (which moves to the backlog first, to keep the order).
fn to_backlog(conn: &mut Connection, turn: &mut TurnBuffer, pool: &mut BufferPool, data: &[u8]) {
    let queue = conn.output.get_or_insert_with(|| pool.take_queue());
    if !conn.turn.is_empty() {
        turn.spill(&mut conn.turn, queue, pool);
    }
    queue.push_bytes(data, pool);
}

/// Queues `data` for a connection: into the turn buffer if its socket is
/// writable and the arena has room, else into its backlog.
#[inline]
pub(super) fn append(
    conn: &mut Connection,
    turn: &mut TurnBuffer,
    pool: &mut BufferPool,
    data: &[u8],
) {
    if direct(conn) && turn.has_room(data.len()) {
        let range = turn.store(data);
        turn.link(&mut conn.turn, range);
    } else {
        to_backlog(conn, turn, pool, data);
    }
}

/// Puts a connection that was just given output in the flush queue.
/// Writable connections are flushed before the loop sleeps; so are those
/// holding turn-buffer bytes, which must leave it by then.
#[inline]
pub(crate) fn join_flush_queue(conn: &mut Connection, flush_queue: &mut Vec<ConnId>, id: ConnId) {
    if (conn.flags.has(Flags::WRITABLE) || !conn.turn.is_empty())
        && !conn.flags.any(Flags::IN_FLUSH_QUEUE | Flags::CONNECTING)
    {
        conn.flags.set(Flags::IN_FLUSH_QUEUE);
        flush_queue.push(id);
    }
}

impl State {
    /// Queues bytes (copied) for a connection: into the turn buffer if its
    /// socket is writable (the flush before sleep writes them), otherwise
    /// into its backlog.
    ///
    /// The common case (a writable connection with no backlog, far from
    /// every limit: an echo, a reply) is handled inline in a few checks; the
    /// rest, with every limit and state, in [`send_general`](Self::send_general).
    #[inline]
    pub(crate) fn send(
        &mut self,
        reactor: &mut Reactor,
        id: ConnId,
        data: &[u8],
    ) -> io::Result<()> {
        if let Some(conn) = self.conns.get_mut(id.index as usize) {
            let len = data.len();
            if conn.generation == id.generation
                && fast_path_fits(conn, &self.config, &self.stats, len)
                && self.out.turn.has_room(len)
            {
                let range = self.out.turn.store(data);
                self.out.turn.link(&mut conn.turn, range);
                self.stats.queued_output += len;
                let queued = conn.turn.len();
                if queued > self.stats.peak_output {
                    self.stats.peak_output = queued;
                }
                if !conn.flags.has(Flags::IN_FLUSH_QUEUE) {
                    conn.flags.set(Flags::IN_FLUSH_QUEUE);
                    self.out.flush_queue.push(id);
                }
                return Ok(());
            }
        }
        self.send_general(reactor, id, data)
    }

    /// [`send`](Self::send), every case.
    #[inline(never)]
    pub(crate) fn send_general(
        &mut self,
        reactor: &mut Reactor,
        id: ConnId,
        data: &[u8],
    ) -> io::Result<()> {
        let conn = visible_mut(&mut self.conns, id).ok_or_else(|| not_open(id))?;
        refuse_output(conn, id)?;
        if data.is_empty() {
            return Ok(());
        }
        append(conn, &mut self.out.turn, &mut self.out.pool, data);
        self.queued(reactor, id, data.len())
    }

    /// Queues the same bytes for many connections, storing them once. Returns
    /// how many connections took them (those not open, closing, or taken
    /// past their output limit by this message are skipped).
    pub(crate) fn broadcast(
        &mut self,
        reactor: &mut Reactor,
        to: impl IntoIterator<Item = ConnId>,
        data: &[u8],
    ) -> usize {
        if data.is_empty() {
            return 0;
        }
        let mut stored = None;
        let mut count = 0;
        for id in to {
            let Some(conn) = visible_mut(&mut self.conns, id) else {
                continue;
            };
            if refuse_output(conn, id).is_err() {
                continue;
            }
            // Every receiver, writable or not, links to the one stored copy:
            // the flush writes it to those that can take it and gives the
            // others a shared slice of it, not a copy each.
            if !conn.flags.has(Flags::CONNECTING)
                && (stored.is_some() || self.out.turn.has_room(data.len()))
            {
                if stored.is_some() {
                    self.out.turn.mark_fan_out();
                }
                let range = *stored.get_or_insert_with(|| self.out.turn.store(data));
                self.out.turn.link(&mut conn.turn, range);
            } else {
                to_backlog(conn, &mut self.out.turn, &mut self.out.pool, data);
            }
            if self.queued(reactor, id, data.len()).is_ok() {
                count += 1;
            }
        }
        count
    }

    /// [`broadcast`](Self::broadcast) to the open connections `filter`
    /// chooses. Their ids are gathered first (into a vector kept for the
    /// next call, so this allocates nothing in steady use), since a
    /// broadcast may close a connection and so change the table it would
    /// be iterating.
    pub(crate) fn broadcast_where(
        &mut self,
        reactor: &mut Reactor,
        mut filter: impl FnMut(ConnId) -> bool,
        data: &[u8],
    ) -> usize {
        let mut ids = std::mem::take(&mut self.out.chosen);
        ids.extend(
            self.conns
                .iter()
                .filter(|(_, c)| c.is_visible())
                .map(|(index, c)| c.id(index))
                .filter(|&id| filter(id)),
        );
        let count = self.broadcast(reactor, ids.iter().copied(), data);
        ids.clear();
        self.out.chosen = ids;
        count
    }

    /// Bookkeeping after `len` bytes were queued for `id`: totals, limits,
    /// backpressure, and the flush queue.
    #[inline]
    pub(crate) fn queued(
        &mut self,
        reactor: &mut Reactor,
        id: ConnId,
        len: usize,
    ) -> io::Result<()> {
        self.stats.queued_output += len;
        if let Some(budget) = self.config.output_budget {
            if !self.out.over_budget && self.stats.queued_output > budget {
                self.out.over_budget = true;
                warn!(
                    "{} bytes of output queued, over the budget of {budget}: reading no input until it drains",
                    self.stats.queued_output
                );
            }
        }
        self.enforce_output_limit(reactor, id)?;
        let conn = &mut self.conns[id.index as usize];
        let queued = conn.output_len();
        if queued > self.stats.peak_output {
            self.stats.peak_output = queued;
        }
        if queued > self.config.high_water && !conn.flags.has(Flags::BACKPRESSURE) {
            conn.flags.set(Flags::BACKPRESSURE);
            debug!("{id}: {queued} bytes queued, above high water: pausing reads");
        }
        join_flush_queue(conn, &mut self.out.flush_queue, id);
        Ok(())
    }

    /// Closes `id` if the output it holds is over the output limit: its
    /// queue, and the frozen turn buffers its backlog pins (a slow receiver
    /// of a broadcast keeps the whole turn's copy alive, other connections'
    /// replies included, so that memory is its to answer for).
    ///
    /// # Errors
    ///
    /// `OutOfMemory` if it was closed.
    pub(crate) fn enforce_output_limit(
        &mut self,
        reactor: &mut Reactor,
        id: ConnId,
    ) -> io::Result<()> {
        let conn = &self.conns[id.index as usize];
        let held = conn.output_footprint();
        if held <= self.config.output_limit {
            return Ok(());
        }
        warn!(
            "{id}: {held} bytes of output held ({} queued), over the limit of {}: closing (peer not reading)",
            conn.output_len(),
            self.config.output_limit
        );
        self.remove(reactor, id.index as usize, Some(CloseReason::OutputLimit));
        Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("{id}: output limit exceeded, connection closed"),
        ))
    }

    /// Accounts for `n` bytes of output leaving the queues (written, or
    /// dropped with their connection); ends an over-budget pause once the
    /// total is back under three quarters of the budget.
    #[inline]
    pub(crate) fn output_written(&mut self, n: usize) {
        self.stats.queued_output -= n;
        let Some(budget) = self.config.output_budget else {
            return;
        };
        if self.out.over_budget && self.stats.queued_output <= budget / 4 * 3 {
            self.out.over_budget = false;
            info!("queued output back under budget: reading input again");
            let ids: Vec<ConnId> = self.conns.iter().map(|(i, c)| c.id(i)).collect();
            for id in ids {
                self.resume_if_readable(id);
            }
        }
    }

    /// Puts a connection in the flush queue if it has output to write.
    #[inline]
    pub(crate) fn queue_flush(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id.index as usize) {
            if conn.has_output() && !conn.flags.has(Flags::IN_FLUSH_QUEUE) {
                conn.flags.set(Flags::IN_FLUSH_QUEUE);
                self.out.flush_queue.push(id);
            }
        }
    }
}
