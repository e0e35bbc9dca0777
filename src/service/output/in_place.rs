//! The reply in place: a reply that is a slice of the input `on_data` is
//! reading, sent back to the same connection, written straight from the
//! scratch buffer the input was read into, without a copy.
//!
//! An echo, or a reply that quotes its request, is the commonest output
//! there is. When `send` is given a slice that lies inside the input lent to
//! `on_data`, for the connection it came from, with nothing else queued for
//! it and its socket writable ([`fast_path_fits`](super::fast_path_fits)),
//! the service only notes where the slice is ([`ReplyInPlace`]), and writes
//! it as soon as `on_data` returns, before the scratch buffer is reused.
//! Any other output, close or shutdown for the connection first queues the
//! noted bytes (`Connections::settle_in_place`), so output keeps the order
//! of the calls. The noted bytes count in `output_len` and every limit. No
//! unsafe code: a slice says where it points by its address.
//!
//! Measured with callgrind per echo round trip: 522 to 459 instructions at
//! 64 bytes, 926 to 459 at 4 KiB (the 4 KiB copy into the turn buffer is
//! gone). This is the only place the optimisation lives, under this one
//! name.

use crate::reactor::Reactor;
use crate::service::engine::Engine;
use crate::service::flags::Flags;
use crate::service::handler::{ConnId, Handler};
use crate::service::state::{State, visible_mut};

use super::fast_path_fits;
use super::flush::{Wrote, write_at_once};
use super::send::{append, join_flush_queue};

/// A send whose bytes are still in the scratch buffer `on_data` is reading:
/// `len` bytes at `offset`, for connection `id`, counted in the queued
/// output. The engine writes them from there once `on_data` returns; any
/// other output or close for the connection before that copies them into
/// its queue first, to keep the order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReplyInPlace {
    pub(crate) id: ConnId,
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

impl State {
    /// The reply-in-place case of `send`: `len` bytes at `offset` in the input
    /// being handed to `on_data` for `id`, going back to `id` (an echo, a
    /// reply that quotes its request). If nothing else is queued for the
    /// connection and its socket is writable, they are only noted, and the
    /// engine writes them straight from the read buffer when `on_data`
    /// returns: no copy. Returns false, having done nothing, in every other
    /// case; the caller then queues them as usual.
    #[inline]
    pub(crate) fn send_in_place(&mut self, id: ConnId, offset: usize, len: usize) -> bool {
        if self.out.in_place.is_some() {
            return false;
        }
        let Some(conn) = self.conns.get_mut(id.index as usize) else {
            return false;
        };
        // With nothing in this turn's ranges either: the reply is then all
        // the connection's output, written before anything else can be.
        if conn.generation == id.generation
            && conn.turn.is_empty()
            && fast_path_fits(conn, &self.config, &self.stats, len)
        {
            self.out.in_place = Some(ReplyInPlace { id, offset, len });
            self.stats.queued_output += len;
            if len > self.stats.peak_output {
                self.stats.peak_output = len;
            }
            return true;
        }
        false
    }

    /// Queues the bytes of a reply in place (already counted in the queued
    /// output) as an ordinary send would: into the turn buffer if the socket
    /// is writable, else into the backlog, and into the flush queue.
    pub(crate) fn queue_in_place(&mut self, id: ConnId, bytes: &[u8]) {
        let Some(conn) = visible_mut(&mut self.conns, id) else {
            // Gone meanwhile: the bytes leave the count with it.
            self.output_written(bytes.len());
            return;
        };
        append(conn, &mut self.out.turn, &mut self.out.pool, bytes);
        join_flush_queue(conn, &mut self.out.flush_queue, id);
    }
}

impl<H: Handler> Engine<H> {
    /// Writes a reply still in the scratch buffer (see `State::send_in_place`):
    /// the connection has nothing else queued, so this is the fast path of
    /// [`flush`](Self::flush) without the copy into the turn buffer. What
    /// the socket does not take is queued as any send would be, and the
    /// general path carries on from there.
    // Inlined into the read path, its one caller: as a call of its own it
    // cost about 26 instructions per echo round trip in prologue, epilogue
    // and spilled registers (callgrind, 100 x 64 B: 474 -> 448).
    #[inline(always)]
    pub(crate) fn write_in_place(&mut self, reactor: &mut Reactor, reply: ReplyInPlace) {
        let ReplyInPlace { id, offset, len } = reply;
        let bytes = &self.scratch[offset..offset + len];
        let state = &mut self.state;
        let Some(conn) = visible_mut(&mut state.conns, id) else {
            state.output_written(len);
            return;
        };
        // `send_in_place` found nothing else queued, and any output since
        // would have queued the reply first (`settle_in_place`): only the
        // socket's state may have changed.
        debug_assert!(conn.turn.is_empty() && conn.output.is_none());
        if !conn
            .flags
            .only(Flags::WRITABLE | Flags::CONNECTING, Flags::WRITABLE)
            || len > state.config.write_budget
        {
            state.queue_in_place(id, bytes);
            return;
        }
        let settled = || !state.out.over_budget && state.config.idle_timeout.is_none();
        match write_at_once(conn, &mut state.stats, settled, id, bytes) {
            Wrote::All => self.tell(reactor, id, |handler, conns| handler.on_drained(conns, id)),
            Wrote::Part(written, result) => {
                if written < len {
                    state.queue_in_place(id, &bytes[written..]);
                }
                self.flush_general(reactor, id, written, result);
            }
        }
    }
}
