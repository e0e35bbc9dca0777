//! [`Table`]: a service's connections, listeners and work queues, and every
//! operation on them that does not need to call the handler.
//!
//! The handler is called by the engine (`engine.rs`); what the handler asks
//! for through [`Connections`](super::Connections) lands here. When an
//! operation must tell the handler something (a connection closed), it
//! queues the news in `closed`, and the engine delivers it once the current
//! handler call has returned: handler calls never nest.

use std::collections::VecDeque;
use std::io;
use std::net::Shutdown;
use std::rc::Weak;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::Interest;
use slab::Slab;

use super::buffer::{BufferPool, TurnBuffer, TurnLink};
use super::config::Config;
use super::conn::{Clock, Connection, Flags, ListLink, TimeoutList};
use super::handler::{CloseReason, ConnId};
use super::stats::ServiceStats;
use super::stream::{Listener, Stream};
use crate::reactor::{Dispatch, Reactor};
use crate::selector::Key;
use crate::timer::TimerId;

/// Registration tags with this bit set name listeners; without it,
/// connections. (The tag is the slab index.)
pub(crate) const LISTENER_TAG: usize = 1 << (usize::BITS - 1);

/// The timers a service sets, all routed back to it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TimerKind {
    /// The front of a timeout list is due.
    Clock(Clock),
    /// Ask the kernel whether lingering peers have taken everything.
    DeliveryCheck,
    /// A lingering connection's peer has had everything for the
    /// `linger_timeout`: close.
    Linger(ConnId),
    Connect(ConnId),
    AcceptResume,
    ShutdownDeadline,
}

/// Where a service's timers call back to (implemented by the engine's cell).
pub(crate) trait TimerTarget {
    fn on_timer(&self, reactor: &mut Reactor, kind: TimerKind);
}

pub(crate) struct ListenerSlot {
    pub(crate) listener: Listener,
    pub(crate) key: Key,
    /// Sent to connections refused on this listener, instead of the
    /// configured reject message.
    pub(crate) reject_message: Option<Vec<u8>>,
}

/// A timeout list and the one timer set for its front.
pub(crate) struct ClockList {
    pub(crate) list: TimeoutList,
    timer: Option<TimerId>,
}

impl ClockList {
    fn new(clock: Clock) -> ClockList {
        ClockList {
            list: TimeoutList::new(clock),
            timer: None,
        }
    }
}

/// The three timeout lists of a service.
pub(crate) struct Clocks {
    pub(crate) idle: ClockList,
    pub(crate) unfinished: ClockList,
    pub(crate) closing: ClockList,
}

impl Clocks {
    fn get_mut(&mut self, clock: Clock) -> &mut ClockList {
        match clock {
            Clock::Idle => &mut self.idle,
            Clock::Unfinished => &mut self.unfinished,
            Clock::Closing => &mut self.closing,
        }
    }

    /// Takes the connection at `index` out of every list.
    fn unlink_all(&mut self, conns: &mut Slab<Connection>, index: usize) {
        self.idle.list.unlink(conns, index);
        self.unfinished.list.unlink(conns, index);
        self.closing.list.unlink(conns, index);
    }
}

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

pub(crate) struct Table {
    pub(crate) conns: Slab<Connection>,
    pub(crate) listeners: Slab<ListenerSlot>,
    pub(crate) config: Config,
    pub(crate) pool: BufferPool,
    /// Output sent this turn to writable connections.
    pub(crate) turn: TurnBuffer,
    /// Connections with output and a writable socket: flushed before sleep.
    pub(crate) flush_queue: Vec<ConnId>,
    /// Connections to read again without waiting for an event.
    pub(crate) read_queue: Vec<ConnId>,
    /// Listeners to accept from again without waiting for an event.
    pub(crate) accept_queue: Vec<usize>,
    /// Close notifications waiting for the handler.
    pub(crate) closed: VecDeque<(ConnId, CloseReason)>,
    /// Idle, unfinished-input and closing deadlines.
    pub(crate) clocks: Clocks,
    /// Lingering connections whose peer has not yet taken everything we sent.
    delivery_watch: Vec<ConnId>,
    delivery_timer: Option<TimerId>,
    pub(crate) stats: ServiceStats,
    next_generation: u32,
    /// Open accepted connections, counted against `max_connections`.
    accepted_open: usize,
    pub(crate) lingering: usize,
    pub(crate) dispatch: Weak<dyn Dispatch>,
    pub(crate) timers: Weak<dyn TimerTarget>,
    epoch: Instant,
    /// The connection whose handler call is in progress. Still set when the
    /// engine is next entered means that call panicked.
    pub(crate) current: Option<ConnId>,
    pub(crate) shutdown: Option<ShutdownState>,
    pub(crate) accept_paused: bool,
    pub(crate) warned_exhausted: bool,
    warned_full: bool,
    /// Queued output is over the output budget: nobody is read.
    pub(crate) over_budget: bool,
    /// A reply that is a slice of the input `on_data` was handed, not yet
    /// copied anywhere (see [`Table::send_lent`]).
    pub(crate) lent_reply: Option<LentReply>,
}

/// A send whose bytes are still in the scratch buffer `on_data` is reading:
/// `len` bytes at `offset`, for connection `id`, counted in the queued
/// output. The engine writes them from there once `on_data` returns; any
/// other output or close for the connection before that copies them into
/// its queue first, to keep the order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LentReply {
    pub(crate) id: ConnId,
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

/// Looks up a connection the handler may use (live and not lingering).
#[inline]
pub(crate) fn visible_mut(conns: &mut Slab<Connection>, id: ConnId) -> Option<&mut Connection> {
    conns
        .get_mut(id.index as usize)
        .filter(|c| c.generation == id.generation && c.is_visible())
}

#[inline]
pub(crate) fn visible(conns: &Slab<Connection>, id: ConnId) -> Option<&Connection> {
    conns
        .get(id.index as usize)
        .filter(|c| c.generation == id.generation && c.is_visible())
}

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
fn append(conn: &mut Connection, turn: &mut TurnBuffer, pool: &mut BufferPool, data: &[u8]) {
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
fn join_flush_queue(conn: &mut Connection, flush_queue: &mut Vec<ConnId>, id: ConnId) {
    if (conn.flags.has(Flags::WRITABLE) || !conn.turn.is_empty())
        && !conn.flags.any(Flags::IN_FLUSH_QUEUE | Flags::CONNECTING)
    {
        conn.flags.set(Flags::IN_FLUSH_QUEUE);
        flush_queue.push(id);
    }
}

fn set_timer(
    timers: &Weak<dyn TimerTarget>,
    reactor: &mut Reactor,
    delay: Duration,
    kind: TimerKind,
) -> TimerId {
    let target = timers.clone();
    reactor.call_later(delay, move |reactor| {
        if let Some(target) = target.upgrade() {
            target.on_timer(reactor, kind);
        }
    })
}

pub(crate) fn not_open(id: ConnId) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{id} is not open"))
}

impl Table {
    pub(crate) fn new(
        config: Config,
        dispatch: Weak<dyn Dispatch>,
        timers: Weak<dyn TimerTarget>,
    ) -> Table {
        let config = config.validated();
        Table {
            conns: Slab::with_capacity(config.max_connections.min(1 << 20)),
            listeners: Slab::new(),
            pool: BufferPool::new(config.buffer_pool),
            turn: TurnBuffer::default(),
            config,
            flush_queue: Vec::new(),
            read_queue: Vec::new(),
            accept_queue: Vec::new(),
            closed: VecDeque::new(),
            clocks: Clocks {
                idle: ClockList::new(Clock::Idle),
                unfinished: ClockList::new(Clock::Unfinished),
                closing: ClockList::new(Clock::Closing),
            },
            delivery_watch: Vec::new(),
            delivery_timer: None,
            stats: ServiceStats::default(),
            next_generation: 0,
            accepted_open: 0,
            lingering: 0,
            dispatch,
            timers,
            epoch: Instant::now(),
            current: None,
            shutdown: None,
            accept_paused: false,
            warned_exhausted: false,
            warned_full: false,
            over_budget: false,
            lent_reply: None,
        }
    }

    pub(crate) fn set_timer(
        &self,
        reactor: &mut Reactor,
        delay: Duration,
        kind: TimerKind,
    ) -> TimerId {
        set_timer(&self.timers, reactor, delay, kind)
    }

    pub(crate) fn now_ms(&self, reactor: &Reactor) -> u64 {
        reactor
            .now()
            .saturating_duration_since(self.epoch)
            .as_millis() as u64
    }

    pub(crate) fn is_full(&self) -> bool {
        self.accepted_open >= self.config.max_connections
    }

    /// Notes (once per episode) that the service is at its connection limit.
    pub(crate) fn note_full(&mut self) {
        self.stats.rejected += 1;
        if !self.warned_full {
            warn!(
                "at max_connections ({}): refusing new connections",
                self.config.max_connections
            );
            self.warned_full = true;
        }
    }

    // ----- adding connections -------------------------------------------

    /// Registers a new connection and returns its id.
    pub(crate) fn insert(
        &mut self,
        reactor: &mut Reactor,
        mut stream: Stream,
        flags: u32,
    ) -> io::Result<ConnId> {
        let dispatch = self.dispatch.upgrade().ok_or_else(|| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the service has been dropped")
        })?;
        let entry = self.conns.vacant_entry();
        let index = entry.key();
        if index >= LISTENER_TAG || index >= u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "too many connections",
            ));
        }
        let key = reactor.register_routed(
            &mut stream,
            Interest::READABLE | Interest::WRITABLE,
            dispatch,
            index,
        )?;
        let generation = self.next_generation;
        self.next_generation = generation.wrapping_add(1);
        entry.insert(Connection {
            stream,
            key,
            turn: TurnLink::default(),
            output: None,
            input: Vec::new(),
            generation,
            flags: Flags::new(flags),
            idle: ListLink::default(),
            deadline: ListLink::default(),
        });
        if flags & Flags::ACCEPTED != 0 {
            self.accepted_open += 1;
        }
        if self.config.idle_timeout.is_some() {
            let now = self.now_ms(reactor);
            self.clocks.idle.list.push_back(&mut self.conns, index, now);
            self.arm_clock(reactor, Clock::Idle);
        }
        Ok(ConnId {
            index: index as u32,
            generation,
        })
    }

    // ----- output -------------------------------------------------------

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
                && conn.flags.only(
                    Flags::WRITABLE | Flags::CONNECTING | Flags::NOT_SENDING,
                    Flags::WRITABLE,
                )
                && conn.output.is_none()
                && len != 0
                // Under high water means under the output limit too, and no
                // backpressure to start.
                && conn.turn.len() + len <= self.config.high_water
                && self.turn.has_room(len)
                && self
                    .config
                    .output_budget
                    .is_none_or(|budget| self.stats.queued_output + len <= budget)
            {
                let range = self.turn.store(data);
                self.turn.link(&mut conn.turn, range);
                self.stats.queued_output += len;
                let queued = conn.turn.len();
                if queued > self.stats.peak_output {
                    self.stats.peak_output = queued;
                }
                if !conn.flags.has(Flags::IN_FLUSH_QUEUE) {
                    conn.flags.set(Flags::IN_FLUSH_QUEUE);
                    self.flush_queue.push(id);
                }
                return Ok(());
            }
        }
        self.send_general(reactor, id, data)
    }

    /// The zero-copy case of `send`: `len` bytes at `offset` in the input
    /// being handed to `on_data` for `id`, going back to `id` (an echo, a
    /// reply that quotes its request). If nothing else is queued for the
    /// connection and its socket is writable, they are only noted, and the
    /// engine writes them straight from the read buffer when `on_data`
    /// returns: no copy. Returns false, having done nothing, in every other
    /// case; the caller then queues them as usual.
    #[inline]
    pub(crate) fn send_lent(&mut self, id: ConnId, offset: usize, len: usize) -> bool {
        if self.lent_reply.is_some() {
            return false;
        }
        let Some(conn) = self.conns.get_mut(id.index as usize) else {
            return false;
        };
        if conn.generation == id.generation
            && conn.flags.only(
                Flags::WRITABLE | Flags::CONNECTING | Flags::NOT_SENDING,
                Flags::WRITABLE,
            )
            && conn.output.is_none()
            && conn.turn.is_empty()
            && len != 0
            && len <= self.config.high_water
            && self
                .config
                .output_budget
                .is_none_or(|budget| self.stats.queued_output + len <= budget)
        {
            self.lent_reply = Some(LentReply { id, offset, len });
            self.stats.queued_output += len;
            if len > self.stats.peak_output {
                self.stats.peak_output = len;
            }
            return true;
        }
        false
    }

    /// Queues the bytes of a lent reply (already counted in the queued
    /// output) as an ordinary send would: into the turn buffer if the socket
    /// is writable, else into the backlog, and into the flush queue.
    pub(crate) fn queue_lent(&mut self, id: ConnId, bytes: &[u8]) {
        let Some(conn) = visible_mut(&mut self.conns, id) else {
            // Gone meanwhile: the bytes leave the count with it.
            self.output_written(bytes.len());
            return;
        };
        append(conn, &mut self.turn, &mut self.pool, bytes);
        join_flush_queue(conn, &mut self.flush_queue, id);
    }

    /// [`send`](Self::send), every case.
    #[inline(never)]
    fn send_general(&mut self, reactor: &mut Reactor, id: ConnId, data: &[u8]) -> io::Result<()> {
        let conn = visible_mut(&mut self.conns, id).ok_or_else(|| not_open(id))?;
        refuse_output(conn, id)?;
        if data.is_empty() {
            return Ok(());
        }
        append(conn, &mut self.turn, &mut self.pool, data);
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
                && (stored.is_some() || self.turn.has_room(data.len()))
            {
                if stored.is_some() {
                    self.turn.mark_fan_out();
                }
                let range = *stored.get_or_insert_with(|| self.turn.store(data));
                self.turn.link(&mut conn.turn, range);
            } else {
                to_backlog(conn, &mut self.turn, &mut self.pool, data);
            }
            if self.queued(reactor, id, data.len()).is_ok() {
                count += 1;
            }
        }
        count
    }

    /// Bookkeeping after `len` bytes were queued for `id`: totals, limits,
    /// backpressure, and the flush queue.
    #[inline]
    fn queued(&mut self, reactor: &mut Reactor, id: ConnId, len: usize) -> io::Result<()> {
        self.stats.queued_output += len;
        if let Some(budget) = self.config.output_budget {
            if !self.over_budget && self.stats.queued_output > budget {
                self.over_budget = true;
                warn!(
                    "{} bytes of output queued, over the budget of {budget}: reading no input until it drains",
                    self.stats.queued_output
                );
            }
        }
        let conn = &mut self.conns[id.index as usize];
        let queued = conn.output_len();
        if queued > self.config.output_limit {
            warn!(
                "{id}: {queued} bytes of output queued, over the limit of {}: closing (peer not reading)",
                self.config.output_limit
            );
            self.remove(reactor, id.index as usize, Some(CloseReason::OutputLimit));
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("{id}: output limit exceeded, connection closed"),
            ));
        }
        if queued > self.stats.peak_output {
            self.stats.peak_output = queued;
        }
        if queued > self.config.high_water && !conn.flags.has(Flags::BACKPRESSURE) {
            conn.flags.set(Flags::BACKPRESSURE);
            debug!("{id}: {queued} bytes queued, above high water: pausing reads");
        }
        join_flush_queue(conn, &mut self.flush_queue, id);
        Ok(())
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
        if self.over_budget && self.stats.queued_output <= budget / 4 * 3 {
            self.over_budget = false;
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
                self.flush_queue.push(id);
            }
        }
    }

    // ----- input --------------------------------------------------------

    /// Puts a connection in the read queue: read it again before sleeping.
    #[inline]
    pub(crate) fn queue_read(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id.index as usize) {
            if !conn.flags.has(Flags::IN_READ_QUEUE) {
                conn.flags.set(Flags::IN_READ_QUEUE);
                self.read_queue.push(id);
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
        let mut input = if rest.len() <= super::buffer::CHUNK {
            self.pool.take()
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
                self.pool.give(input);
                self.input_over_limit(reactor, id, left);
            }
            Some(conn) if left > 0 => {
                input.drain(..consumed);
                conn.input = input;
            }
            _ => self.pool.give(input),
        }
    }

    pub(crate) fn input_over_limit(&mut self, reactor: &mut Reactor, id: ConnId, len: usize) {
        warn!(
            "{id}: {len} bytes of unconsumed input, over the limit of {}: closing",
            self.config.input_limit
        );
        self.remove(reactor, id.index as usize, Some(CloseReason::InputLimit));
    }

    // ----- closing ------------------------------------------------------

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
        conn.stream.shutdown(Shutdown::Write)
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
        conn.stream.shutdown(Shutdown::Write)
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
        } else if conn.flags.has(Flags::READ_CLOSED) {
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
        if conn.flags.has(Flags::READ_CLOSED) || linger.is_zero() {
            self.remove(reactor, index, Some(reason));
            return;
        }
        if !conn.flags.has(Flags::WRITE_SHUT) && conn.stream.shutdown(Shutdown::Write).is_err() {
            self.remove(reactor, index, Some(reason));
            return;
        }
        conn.flags.clear(Flags::CLOSING | Flags::IN_FLUSH_QUEUE);
        conn.flags.set(Flags::LINGERING | Flags::WRITE_SHUT);
        let input = std::mem::take(&mut conn.input);
        self.pool.give(input);
        self.clocks.idle.list.unlink(&mut self.conns, index);
        self.lingering += 1;
        debug!("{id}: {reason}; lingering for the peer's FIN");
        self.closed.push_back((id, reason));
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
    fn start_linger_clock(&mut self, reactor: &mut Reactor, id: ConnId) {
        match self.conns[id.index as usize].stream.unsent_bytes() {
            Ok(Some(unsent)) if unsent > 0 => {
                self.delivery_watch.push(id);
                if self.delivery_timer.is_none() {
                    self.delivery_timer =
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
        self.delivery_timer = None;
        let mut watch = std::mem::take(&mut self.delivery_watch);
        let mut i = 0;
        while i < watch.len() {
            let id = watch[i];
            let in_flight = match self.conns.get(id.index as usize) {
                Some(conn)
                    if conn.generation == id.generation && conn.flags.has(Flags::LINGERING) =>
                {
                    match conn.stream.unsent_bytes() {
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
        self.delivery_watch = watch;
        if !self.delivery_watch.is_empty() {
            self.delivery_timer =
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
        if let Err(e) = reactor.deregister_routed(&mut conn.stream, conn.key) {
            debug!("{id}: deregister: {e}");
        }
        if conn.has_output() {
            // Output is being thrown away (a limit, an abort, an error):
            // reset, so the kernel throws away its copy too instead of
            // trickling megabytes to a peer that is not reading.
            let _ = conn.stream.set_reset_on_close();
            self.output_written(conn.output_len());
            self.turn.release(&mut conn.turn);
            if let Some(queue) = conn.output.take() {
                self.pool.give_queue(queue);
            }
        }
        self.pool.give(std::mem::take(&mut conn.input));
        if conn.flags.has(Flags::ACCEPTED) {
            self.accepted_open -= 1;
            if self.warned_full && !self.is_full() {
                info!("below max_connections again: accepting");
                self.warned_full = false;
            }
        }
        if conn.flags.has(Flags::LINGERING) {
            self.lingering -= 1;
        }
        self.stats.closed += 1;
        match reason {
            Some(reason) => {
                debug!("{id}: close ({reason})");
                self.closed.push_back((id, reason));
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

    // ----- timeouts -----------------------------------------------------

    /// Records activity on a connection for the idle timeout.
    #[inline]
    pub(crate) fn touch(&mut self, reactor: &Reactor, index: usize) {
        if self.config.idle_timeout.is_some() {
            let now = self.now_ms(reactor);
            self.clocks.idle.list.touch(&mut self.conns, index, now);
        }
    }

    fn timeout_of(&self, clock: Clock) -> Option<Duration> {
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
        let deadline = self.epoch + Duration::from_millis(since) + timeout;
        let delay = deadline.saturating_duration_since(Instant::now());
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
        let timeout_ms = timeout.as_millis() as u64;
        while let Some(front) = slot.list.front() {
            if slot.list.since_ms(&mut self.conns, front) + timeout_ms > now {
                break;
            }
            slot.list.unlink(&mut self.conns, front);
            due.push(self.conns[front].id(front));
        }
        due
    }

    /// The idle timer fired: close every connection idle for too long.
    pub(crate) fn expire_idle(&mut self, reactor: &mut Reactor) {
        for id in self.take_expired(reactor, Clock::Idle) {
            info!("{id}: idle for {:?}: closing", self.config.idle_timeout);
            self.remove(reactor, id.index as usize, Some(CloseReason::IdleTimeout));
        }
        self.arm_clock(reactor, Clock::Idle);
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
    fn track_unfinished(&mut self, reactor: &mut Reactor, id: ConnId) {
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

    // ----- listeners and shutdown ---------------------------------------

    pub(crate) fn close_listener(&mut self, reactor: &mut Reactor, index: usize) {
        let mut slot = self.listeners.remove(index);
        let _ = reactor.deregister_routed(&mut slot.listener, slot.key);
        slot.listener.remove_path();
        self.accept_queue.retain(|&l| l != index);
    }

    /// Starts a graceful shutdown: stop accepting, close every connection
    /// once its output is flushed, abort the rest at the deadline.
    pub(crate) fn begin_shutdown(
        &mut self,
        reactor: &mut Reactor,
        grace: Duration,
        done: ShutdownDone,
    ) -> io::Result<()> {
        if self.shutdown.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the service is already shutting down",
            ));
        }
        let listeners: Vec<usize> = self.listeners.iter().map(|(i, _)| i).collect();
        for index in listeners {
            self.close_listener(reactor, index);
        }
        let deadline = self.set_timer(reactor, grace, TimerKind::ShutdownDeadline);
        self.shutdown = Some(ShutdownState {
            done: Some(done),
            deadline,
        });
        info!(
            "shutting down: {} connection(s) to flush within {grace:?}",
            self.conns.len() - self.lingering
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
        let Some(state) = self.shutdown.as_mut() else {
            return;
        };
        if let Some(done) = state.done.take() {
            reactor.cancel(state.deadline);
            info!("shutdown complete");
            reactor.call_soon(done);
        }
    }

    /// The current statistics.
    pub(crate) fn stats(&self) -> ServiceStats {
        ServiceStats {
            open: self.conns.len() - self.lingering,
            lingering: self.lingering,
            listeners: self.listeners.len(),
            pooled_bytes: self.pool.pooled_bytes(),
            ..self.stats
        }
    }
}
