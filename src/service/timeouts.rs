//! Deadlines in O(1): the idle, unfinished-input and closing timeouts.
//!
//! Each is a [`TimeoutList`], a doubly linked list threaded through the slab
//! and ordered by when each member's clock started, with one timer for its
//! front. This file holds the lists, the idle timeout, and the
//! unfinished-input deadline (the defence against slowloris: a message must
//! be finished within a time of its first byte, however slowly it trickles
//! in). What expiry does to a closing connection is `close.rs`'s business.
//! No per-connection timer is ever set here.

use std::io;
use std::time::{Duration, Instant};

use log::{debug, info};
use slab::Slab;

use super::conn::Connection;
use super::conn::NOT_MEASURED;
use super::engine::Engine;
use super::flags::Flags;
use super::handler::{CloseReason, ConnId, Handler};
use super::state::{State, TimerKind, not_open, set_timer, visible_mut};
use crate::reactor::Reactor;
use crate::timer::TimerId;

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
    pub(crate) fn flag(self) -> Flags {
        match self {
            Clock::Idle => Flags::IN_IDLE_LIST,
            Clock::Unfinished => Flags::IN_UNFINISHED_LIST,
            Clock::Closing => Flags::IN_CLOSING_LIST,
        }
    }

    #[inline]
    pub(crate) fn link(self, conn: &mut Connection) -> &mut ListLink {
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

/// A timeout list and the one timer set for its front.
pub(crate) struct ClockList {
    pub(crate) list: TimeoutList,
    timer: Option<TimerId>,
}

/// The three timeout lists of a service.
pub(crate) struct Clocks {
    pub(crate) idle: ClockList,
    pub(crate) unfinished: ClockList,
    pub(crate) closing: ClockList,
}

impl Clocks {
    pub(crate) fn new() -> Clocks {
        let list = |clock| ClockList {
            list: TimeoutList::new(clock),
            timer: None,
        };
        Clocks {
            idle: list(Clock::Idle),
            unfinished: list(Clock::Unfinished),
            closing: list(Clock::Closing),
        }
    }

    pub(crate) fn get_mut(&mut self, clock: Clock) -> &mut ClockList {
        match clock {
            Clock::Idle => &mut self.idle,
            Clock::Unfinished => &mut self.unfinished,
            Clock::Closing => &mut self.closing,
        }
    }

    /// Takes the connection at `index` out of every list.
    pub(crate) fn unlink_all(&mut self, conns: &mut Slab<Connection>, index: usize) {
        self.idle.list.unlink(conns, index);
        self.unfinished.list.unlink(conns, index);
        self.closing.list.unlink(conns, index);
    }
}

impl State {
    /// Records activity on a connection for the idle timeout.
    #[inline]
    pub(crate) fn touch(&mut self, reactor: &Reactor, index: usize) {
        if self.config.idle_timeout.is_some() {
            let now = self.now_ms(reactor);
            self.clocks.idle.list.touch(&mut self.conns, index, now);
        }
    }

    /// Takes a connection out of the idle list, or puts it back with its
    /// clock starting now.
    pub(crate) fn exempt_from_idle(&mut self, reactor: &mut Reactor, index: usize, exempt: bool) {
        if self.config.idle_timeout.is_none() {
            return;
        }
        let idle = &mut self.clocks.idle.list;
        if exempt {
            idle.unlink(&mut self.conns, index);
        } else if !idle.contains(&self.conns[index]) {
            let now = self.now_ms(reactor);
            self.clocks.idle.list.push_back(&mut self.conns, index, now);
            self.arm_clock(reactor, Clock::Idle);
        }
    }

    pub(crate) fn timeout_of(&self, clock: Clock) -> Option<Duration> {
        match clock {
            Clock::Idle => self.config.idle_timeout,
            Clock::Unfinished => self.config.unfinished_input_timeout,
            Clock::Closing => Some(self.config.close_timeout),
        }
    }

    /// Sets the timer of a timeout list for its front's deadline, unless it
    /// is set already (a timer that fires early finds nothing due and is set
    /// again for the new front).
    pub(crate) fn arm_clock(&mut self, reactor: &mut Reactor, clock: Clock) {
        let Some(timeout) = self.timeout_of(clock) else {
            return;
        };
        let slot = self.clocks.get_mut(clock);
        let (None, Some(front)) = (slot.timer, slot.list.front()) else {
            return;
        };
        let since = slot.list.since_ms(&mut self.conns, front);
        // Checked: a timeout too long for the clock (`Duration::MAX`) is
        // "never", not a panic.
        let delay = match self
            .epoch
            .checked_add(Duration::from_millis(since))
            .and_then(|start| start.checked_add(timeout))
        {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        };
        slot.timer = Some(set_timer(
            &self.timers,
            reactor,
            delay,
            TimerKind::Clock(clock),
        ));
    }

    /// A timeout list's timer fired: takes out (in deadline order) the
    /// members whose deadline has passed. The caller acts on them, then
    /// calls [`arm_clock`](Self::arm_clock).
    pub(crate) fn take_expired(&mut self, reactor: &Reactor, clock: Clock) -> Vec<ConnId> {
        let now = self.now_ms(reactor);
        let timeout = self.timeout_of(clock);
        let slot = self.clocks.get_mut(clock);
        slot.timer = None;
        let mut due = Vec::new();
        let Some(timeout) = timeout else {
            return due;
        };
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        while let Some(front) = slot.list.front() {
            if slot
                .list
                .since_ms(&mut self.conns, front)
                .saturating_add(timeout_ms)
                > now
            {
                break;
            }
            slot.list.unlink(&mut self.conns, front);
            due.push(self.conns[front].id(front));
        }
        due
    }

    /// The idle timer fired: close every connection idle for too long,
    /// unless its peer is still taking output it was sent earlier.
    pub(crate) fn expire_idle(&mut self, reactor: &mut Reactor) {
        for id in self.take_expired(reactor, Clock::Idle) {
            let index = id.index as usize;
            if self.still_delivering(index) {
                debug!(
                    "{id}: nothing written for {:?}, but its peer is still reading: kept",
                    self.config.idle_timeout
                );
                let now = self.now_ms(reactor);
                self.clocks.idle.list.push_back(&mut self.conns, index, now);
                continue;
            }
            info!("{id}: idle for {:?}: closing", self.config.idle_timeout);
            self.remove(reactor, index, Some(CloseReason::IdleTimeout));
        }
        self.arm_clock(reactor, Clock::Idle);
    }

    /// Whether the kernel still holds output for the connection and holds
    /// less than when its idle clock last ran out: its peer is reading,
    /// slowly. A socket buffer of megabytes drained by a slow reader only
    /// becomes writable again once a third of it is free, which can take
    /// longer than the idle timeout, with no read or write meanwhile. The
    /// first expiry with output in flight has nothing to compare with and
    /// counts as progress, so a peer that takes nothing is closed one
    /// timeout later. One `ioctl`, only when the clock runs out.
    fn still_delivering(&mut self, index: usize) -> bool {
        let Some(conn) = self.conns.get_mut(index) else {
            return false;
        };
        let unsent = match conn.transport.unsent_bytes() {
            Ok(Some(n)) if n > 0 => u32::try_from(n).unwrap_or(NOT_MEASURED - 1),
            _ => {
                conn.unsent_at_idle = NOT_MEASURED;
                return false;
            }
        };
        let before = std::mem::replace(&mut conn.unsent_at_idle, unsent);
        before == NOT_MEASURED || unsent < before
    }

    /// After `on_data` returned: a connection left with input (a partial
    /// message) or whose handler expects a message starts the
    /// unfinished-input clock if it is not running; any other stops it.
    #[inline]
    pub(crate) fn note_unfinished(&mut self, reactor: &mut Reactor, id: ConnId) {
        if self.config.unfinished_input_timeout.is_some() {
            self.track_unfinished(reactor, id);
        }
    }

    #[inline(never)]
    pub(crate) fn track_unfinished(&mut self, reactor: &mut Reactor, id: ConnId) {
        let Some(conn) = visible_mut(&mut self.conns, id) else {
            return;
        };
        let expected = conn.flags.take(Flags::MESSAGE_EXPECTED);
        if conn.flags.has(Flags::CLOSING) {
            return;
        }
        let pending = expected || !conn.input.is_empty();
        let running = self.clocks.unfinished.list.contains(conn);
        let index = id.index as usize;
        if pending && !running {
            let now = self.now_ms(reactor);
            self.clocks
                .unfinished
                .list
                .push_back(&mut self.conns, index, now);
            self.arm_clock(reactor, Clock::Unfinished);
        } else if !pending && running {
            self.clocks.unfinished.list.unlink(&mut self.conns, index);
        }
    }

    /// The handler expects a message on `id` (see
    /// [`Connections::expect_message`](super::Connections::expect_message)).
    pub(crate) fn expect_message(&mut self, reactor: &mut Reactor, id: ConnId) -> io::Result<()> {
        let conn = visible_mut(&mut self.conns, id).ok_or_else(|| not_open(id))?;
        if conn.flags.has(Flags::CLOSING) || self.config.unfinished_input_timeout.is_none() {
            return Ok(());
        }
        conn.flags.set(Flags::MESSAGE_EXPECTED);
        if !self.clocks.unfinished.list.contains(conn) {
            let now = self.now_ms(reactor);
            let index = id.index as usize;
            self.clocks
                .unfinished
                .list
                .push_back(&mut self.conns, index, now);
            self.arm_clock(reactor, Clock::Unfinished);
        }
        Ok(())
    }
}

impl<H: Handler> Engine<H> {
    /// The unfinished-input clock ran out for some connections: each
    /// handler is told (to send an error) and the connection closed
    /// gracefully. One whose reading is paused is not at fault: its clock
    /// starts again.
    pub(crate) fn expire_unfinished(&mut self, reactor: &mut Reactor) {
        for id in self.state.take_expired(reactor, Clock::Unfinished) {
            let Some(conn) = visible_mut(&mut self.state.conns, id) else {
                continue;
            };
            if conn.flags.any(Flags::PAUSED | Flags::BACKPRESSURE) || self.state.out.over_budget {
                let now = self.state.now_ms(reactor);
                self.state.clocks.unfinished.list.push_back(
                    &mut self.state.conns,
                    id.index as usize,
                    now,
                );
                continue;
            }
            conn.flags.set(Flags::CLOSING_FOR_INPUT_TIMEOUT);
            info!(
                "{id}: message unfinished after {:?}: closing",
                self.state.config.unfinished_input_timeout
            );
            self.tell(reactor, id, |handler, conns| {
                handler.on_input_timeout(conns, id)
            });
            // The handler may have closed (or aborted) it already.
            let _ = self.state.close(reactor, id, false);
        }
        self.state.arm_clock(reactor, Clock::Unfinished);
    }
}
