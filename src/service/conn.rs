//! The per-connection record ([`Connection`]), its state flags, and the
//! timeout lists (idle, unfinished input, closing) that each find their
//! oldest member in O(1).

use slab::Slab;

use super::buffer::{OutputQueue, TurnLink};
use super::handler::ConnId;
use super::stream::Stream;
use crate::selector::Key;

/// Connection state as a small set of bits (four bytes instead of a dozen
/// `bool`s: this struct is paid for by every idle connection).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags(u32);

impl Flags {
    /// Believed readable: the last read did not prove the socket drained.
    pub(crate) const READABLE: u32 = 1;
    /// Believed writable: the last write did not fill the send buffer.
    pub(crate) const WRITABLE: u32 = 1 << 1;
    /// The peer sent FIN (a read returned 0).
    pub(crate) const READ_CLOSED: u32 = 1 << 2;
    /// The handler paused reading.
    pub(crate) const PAUSED: u32 = 1 << 3;
    /// Reading stopped because output passed the high-water mark.
    pub(crate) const BACKPRESSURE: u32 = 1 << 4;
    /// `close` was called: flush, then close.
    pub(crate) const CLOSING: u32 = 1 << 5;
    /// ...and the close is part of a service shutdown.
    pub(crate) const CLOSING_FOR_SHUTDOWN: u32 = 1 << 6;
    /// `shutdown_write` was called with output still queued.
    pub(crate) const SHUT_WRITE_PENDING: u32 = 1 << 7;
    /// Our write side is shut down.
    pub(crate) const WRITE_SHUT: u32 = 1 << 8;
    /// An outgoing connect has not completed yet.
    pub(crate) const CONNECTING: u32 = 1 << 9;
    /// Closed for the handler; waiting for the peer's FIN before the
    /// descriptor is closed.
    pub(crate) const LINGERING: u32 = 1 << 10;
    /// Counted against `max_connections`.
    pub(crate) const ACCEPTED: u32 = 1 << 11;
    /// Listed in the flush queue.
    pub(crate) const IN_FLUSH_QUEUE: u32 = 1 << 12;
    /// Listed in the read queue.
    pub(crate) const IN_READ_QUEUE: u32 = 1 << 13;
    /// Leftover input must be handed to the handler again (after a pause)
    /// even if no new bytes arrive.
    pub(crate) const REDELIVER: u32 = 1 << 14;
    /// Linked into the idle list.
    pub(crate) const IN_IDLE_LIST: u32 = 1 << 15;
    /// The event said the peer's FIN (or an error) has arrived. A short read
    /// then does not prove the socket drained: the end of stream still waits
    /// behind the data, and no new event will announce it. Read until 0.
    pub(crate) const PEER_HUP: u32 = 1 << 16;
    /// Linked into the unfinished-input list: a message has begun and not
    /// ended (or the handler is waiting for a first one).
    pub(crate) const IN_UNFINISHED_LIST: u32 = 1 << 17;
    /// Linked into the closing list: a graceful close with a deadline.
    pub(crate) const IN_CLOSING_LIST: u32 = 1 << 18;
    /// The handler called `expect_message` during the current `on_data`.
    pub(crate) const MESSAGE_EXPECTED: u32 = 1 << 19;
    /// The close was made because a message stayed unfinished too long.
    pub(crate) const CLOSING_FOR_INPUT_TIMEOUT: u32 = 1 << 20;

    /// Any of these stops reading.
    const NOT_READING: u32 = Flags::READ_CLOSED
        | Flags::PAUSED
        | Flags::BACKPRESSURE
        | Flags::CLOSING
        | Flags::CONNECTING
        | Flags::LINGERING;

    /// Any of these refuses new output.
    pub(crate) const NOT_SENDING: u32 =
        Flags::CLOSING | Flags::SHUT_WRITE_PENDING | Flags::WRITE_SHUT | Flags::LINGERING;

    pub(crate) fn new(bits: u32) -> Flags {
        Flags(bits)
    }

    #[inline]
    pub(crate) fn has(self, bits: u32) -> bool {
        self.0 & bits == bits
    }

    #[inline]
    pub(crate) fn any(self, bits: u32) -> bool {
        self.0 & bits != 0
    }

    #[inline]
    pub(crate) fn set(&mut self, bits: u32) {
        self.0 |= bits;
    }

    #[inline]
    pub(crate) fn clear(&mut self, bits: u32) {
        self.0 &= !bits;
    }

    /// Clears `bits` and says whether they were all set.
    #[inline]
    pub(crate) fn take(&mut self, bits: u32) -> bool {
        let had = self.has(bits);
        self.clear(bits);
        had
    }

    /// True if, of the bits in `mask`, exactly those in `want` are set.
    #[inline]
    pub(crate) fn only(self, mask: u32, want: u32) -> bool {
        self.0 & mask == want
    }
}

/// Links of one timeout list (slab indices; `NIL` for none) and the time
/// the connection joined it or was last touched, in milliseconds since the
/// service started.
#[derive(Clone, Copy)]
pub(crate) struct ListLink {
    prev: u32,
    next: u32,
    pub(crate) since_ms: u64,
}

const NIL: u32 = u32::MAX;

impl Default for ListLink {
    fn default() -> ListLink {
        ListLink {
            prev: NIL,
            next: NIL,
            since_ms: 0,
        }
    }
}

/// One connection. Everything here is paid for by every idle connection, so
/// buffers are absent (`None`, an unallocated `Vec`) unless bytes wait in them.
pub(crate) struct Connection {
    pub(crate) stream: Stream,
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
    /// Its place in the unfinished-input list while open, or in the closing
    /// list once closing: never both, so they share one link.
    pub(crate) deadline: ListLink,
}

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

    #[inline]
    pub(crate) fn has_output(&self) -> bool {
        self.output.is_some() || !self.turn.is_empty()
    }

    /// Visible to the handler: open, not lingering.
    #[inline]
    pub(crate) fn is_visible(&self) -> bool {
        !self.flags.has(Flags::LINGERING)
    }
}

/// Which list a [`TimeoutList`] is, and so which link and flag it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clock {
    /// Nothing read or written for `idle_timeout`.
    Idle,
    /// A message begun and not finished for `unfinished_input_timeout`.
    Unfinished,
    /// A graceful close not finished within `close_timeout`.
    Closing,
}

impl Clock {
    #[inline]
    fn flag(self) -> u32 {
        match self {
            Clock::Idle => Flags::IN_IDLE_LIST,
            Clock::Unfinished => Flags::IN_UNFINISHED_LIST,
            Clock::Closing => Flags::IN_CLOSING_LIST,
        }
    }

    #[inline]
    fn link(self, conn: &mut Connection) -> &mut ListLink {
        match self {
            Clock::Idle => &mut conn.idle,
            Clock::Unfinished | Clock::Closing => &mut conn.deadline,
        }
    }
}

/// Connections that share one timeout, ordered from the one whose clock
/// started first: a doubly linked list threaded through the slab.
///
/// Every member's deadline is its start plus the same timeout, so the order
/// of joining is the order of deadlines. Joining and leaving are O(1), the
/// front is always the next to expire, and one timer set for the front's
/// deadline serves them all. (The alternatives: a timer per connection,
/// re-armed on activity, costs a heap operation per message; a periodic
/// sweep over all connections costs O(n) and fires late.)
///
/// The idle list moves a connection to the back on every read or write
/// ([`touch`](TimeoutList::touch)); the unfinished-input and closing lists
/// keep the start they were joined with.
#[derive(Debug)]
pub(crate) struct TimeoutList {
    head: u32,
    tail: u32,
    clock: Clock,
}

impl TimeoutList {
    pub(crate) fn new(clock: Clock) -> TimeoutList {
        TimeoutList {
            head: NIL,
            tail: NIL,
            clock,
        }
    }

    pub(crate) fn front(&self) -> Option<usize> {
        (self.head != NIL).then_some(self.head as usize)
    }

    /// When the member at `index` joined (or was last touched).
    pub(crate) fn since_ms(&self, conns: &mut Slab<Connection>, index: usize) -> u64 {
        self.clock.link(&mut conns[index]).since_ms
    }

    /// Whether the connection at `index` is in this list.
    #[inline]
    pub(crate) fn contains(&self, conn: &Connection) -> bool {
        conn.flags.has(self.clock.flag())
    }

    /// Adds the connection at `index` at the back, its clock starting at
    /// `now_ms`. It must not be in the list already.
    pub(crate) fn push_back(&mut self, conns: &mut Slab<Connection>, index: usize, now_ms: u64) {
        let idx = index as u32;
        {
            let conn = &mut conns[index];
            debug_assert!(!conn.flags.has(self.clock.flag()));
            *self.clock.link(conn) = ListLink {
                prev: self.tail,
                next: NIL,
                since_ms: now_ms,
            };
            conn.flags.set(self.clock.flag());
        }
        if self.tail == NIL {
            self.head = idx;
        } else {
            self.clock.link(&mut conns[self.tail as usize]).next = idx;
        }
        self.tail = idx;
    }

    /// Takes the connection at `index` out of the list, if it is in it.
    pub(crate) fn unlink(&mut self, conns: &mut Slab<Connection>, index: usize) {
        let conn = &mut conns[index];
        if !conn.flags.take(self.clock.flag()) {
            return;
        }
        let link = self.clock.link(conn);
        let ListLink { prev, next, .. } = *link;
        link.prev = NIL;
        link.next = NIL;
        if prev == NIL {
            self.head = next;
        } else {
            self.clock.link(&mut conns[prev as usize]).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.clock.link(&mut conns[next as usize]).prev = prev;
        }
    }

    /// Restarts a member's clock: it moves to the back.
    #[inline]
    pub(crate) fn touch(&mut self, conns: &mut Slab<Connection>, index: usize, now_ms: u64) {
        if !conns[index].flags.has(self.clock.flag()) {
            return;
        }
        if self.tail == index as u32 {
            self.clock.link(&mut conns[index]).since_ms = now_ms;
            return;
        }
        self.unlink(conns, index);
        self.push_back(conns, index, now_ms);
    }
}
