//! [`Connection`]: the record of one connection in the service's slab.
//!
//! Everything here is paid for by every idle connection, so buffers are
//! absent (`None`, an unallocated `Vec`) unless bytes wait in them. This file
//! holds the record and the questions every idea asks of it; it changes no
//! state of its own.

use super::flags::Flags;
use super::handler::ConnId;
use super::output::backlog::OutputQueue;
use super::output::turn::TurnLink;
use super::timeouts::ListLink;
use super::transport::Transport;
use crate::key::Key;

/// One connection. Everything here is paid for by every idle connection, so
/// buffers are absent (`None`, an unallocated `Vec`) unless bytes wait in them.
pub(crate) struct Connection {
    /// The socket, and what its bytes pass through.
    pub(crate) transport: Transport,
    /// Its registration in the reactor.
    pub(crate) key: Key,
    /// Output sent this turn, in the service's turn buffer.
    pub(crate) turn: TurnLink,
    /// Output kept across turns (what the socket did not take), taken from
    /// the pool when needed.
    pub(crate) output: Option<Box<OutputQueue>>,
    /// Input the handler left unconsumed.
    pub(crate) input: Vec<u8>,
    pub(crate) generation: u32,
    pub(crate) flags: Flags,
    /// Its place in the idle list.
    pub(crate) idle: ListLink,
    /// The kernel's unsent byte count when its idle clock last ran out
    /// (`NOT_MEASURED` before): if it has fallen since, the peer is still
    /// taking output, and the connection is not idle.
    pub(crate) unsent_at_idle: u32,
    /// Its place in the unfinished-input list while open, or in the closing
    /// list once closing: never both, so they share one link.
    pub(crate) deadline: ListLink,
}

/// [`Connection::unsent_at_idle`] before any measure.
pub(crate) const NOT_MEASURED: u32 = u32::MAX;

impl Connection {
    #[inline]
    pub(crate) fn id(&self, index: usize) -> ConnId {
        ConnId {
            index: index as u32,
            generation: self.generation,
        }
    }

    #[inline]
    pub(crate) fn can_read(&self) -> bool {
        !self.flags.any(Flags::NOT_READING)
    }

    /// Bytes queued: the backlog and this turn's.
    #[inline]
    pub(crate) fn output_len(&self) -> usize {
        self.output.as_ref().map_or(0, |queue| queue.len()) + self.turn.len()
    }

    /// The memory the connection's output holds: its bytes, and the whole
    /// of each frozen turn buffer its backlog keeps alive (see
    /// `OutputQueue::footprint`). The output limit applies to this.
    #[inline]
    pub(crate) fn output_footprint(&self) -> usize {
        self.output.as_ref().map_or(0, |queue| queue.footprint()) + self.turn.len()
    }

    /// Anything left to write: the service's queue, or bytes the transport
    /// holds (a close waits for both).
    #[inline]
    pub(crate) fn has_output(&self) -> bool {
        self.output.is_some()
            || !self.turn.is_empty()
            || (self.flags.has(Flags::TLS) && self.transport.holds_output())
    }

    /// Visible to the handler: open, not lingering.
    #[inline]
    pub(crate) fn is_visible(&self) -> bool {
        !self.flags.has(Flags::LINGERING)
    }
}
