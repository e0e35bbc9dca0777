//! [`State`]: a service's connections, and the queues, lists and counters
//! around them, with the operations that every idea shares: adding a
//! connection, looking one up, setting a timer.
//!
//! The fields are grouped by idea (`out`, `input`, `accept`, `clocks`,
//! `closing`), so that code working on one group borrows only it, and each
//! group's operations live in the file of that idea. Nothing here calls the
//! handler: what must be told to it (a connection closed) is queued in
//! `closing.notices`, and the engine delivers it once the current handler
//! call has returned, so handler calls never nest.

use std::io;
use std::rc::Weak;
use std::time::{Duration, Instant};

use mio::Interest;
use slab::Slab;

use super::accept::Accept;
use super::close::Closing;
use super::config::Config;
use super::conn::Connection;
use super::flags::Flags;
use super::handler::ConnId;
use super::input::Input;
use super::output::Output;
use super::output::turn::TurnLink;
use super::stats::ServiceStats;
use super::timeouts::{Clock, Clocks, ListLink};
use super::transport::Transport;
use crate::reactor::{Dispatch, Reactor};
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
    /// A TLS handshake's deadline.
    Handshake(ConnId),
    AcceptResume,
    ShutdownDeadline,
}

/// Where a service's timers call back to (implemented by the engine's cell).
pub(crate) trait TimerTarget {
    fn on_timer(&self, reactor: &mut Reactor, kind: TimerKind);
}

/// A service's connections and everything around them; see the module
/// documentation.
pub(crate) struct State {
    pub(crate) conns: Slab<Connection>,
    pub(crate) config: Config,
    /// Output: the turn buffer, the pool, the flush queue, the budget.
    pub(crate) out: Output,
    /// Input: the read queue.
    pub(crate) input: Input,
    /// Listeners, and accepting from them.
    pub(crate) accept: Accept,
    /// Idle, unfinished-input and closing deadlines.
    pub(crate) clocks: Clocks,
    /// Close notices for the handler, lingering, shutdown.
    pub(crate) closing: Closing,
    pub(crate) stats: ServiceStats,
    next_generation: u32,
    dispatch: Weak<dyn Dispatch>,
    pub(crate) timers: Weak<dyn TimerTarget>,
    pub(crate) epoch: Instant,
    /// The connection whose handler call is in progress. Still set when the
    /// engine is next entered means that call panicked.
    pub(crate) current: Option<ConnId>,
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

pub(crate) fn not_open(id: ConnId) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{id} is not open"))
}

pub(crate) fn set_timer(
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

impl State {
    pub(crate) fn new(
        config: Config,
        dispatch: Weak<dyn Dispatch>,
        timers: Weak<dyn TimerTarget>,
    ) -> State {
        let config = config.validated();
        State {
            conns: Slab::with_capacity(config.max_connections.min(1 << 20)),
            out: Output::new(config.buffer_pool),
            input: Input::default(),
            accept: Accept::default(),
            clocks: Clocks::new(),
            closing: Closing::default(),
            config,
            stats: ServiceStats::default(),
            next_generation: 0,
            dispatch,
            timers,
            epoch: Instant::now(),
            current: None,
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

    /// Registers a new connection and returns its id.
    pub(crate) fn insert(
        &mut self,
        reactor: &mut Reactor,
        mut transport: Transport,
        flags: Flags,
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
            &mut transport,
            Interest::READABLE | Interest::WRITABLE,
            dispatch,
            index,
        )?;
        let mut flags = flags;
        if !transport.writes_in_place() {
            flags.set(Flags::TLS);
        }
        let generation = self.next_generation;
        self.next_generation = generation.wrapping_add(1);
        entry.insert(Connection {
            transport,
            key,
            turn: TurnLink::default(),
            output: None,
            input: Vec::new(),
            generation,
            flags,
            idle: ListLink::default(),
            unsent_at_idle: super::conn::NOT_MEASURED,
            deadline: ListLink::default(),
        });
        if flags.has(Flags::ACCEPTED) {
            self.accept.open += 1;
        }
        let id = ConnId {
            index: index as u32,
            generation,
        };
        if self.conns[index].transport.is_handshaking() {
            let timeout = self.config.handshake_timeout;
            self.set_timer(reactor, timeout, TimerKind::Handshake(id));
        }
        if self.config.idle_timeout.is_some() {
            let now = self.now_ms(reactor);
            self.clocks.idle.list.push_back(&mut self.conns, index, now);
            self.arm_clock(reactor, Clock::Idle);
        }
        Ok(id)
    }

    /// The current statistics.
    pub(crate) fn stats(&self) -> ServiceStats {
        ServiceStats {
            open: self.conns.len() - self.closing.lingering,
            lingering: self.closing.lingering,
            listeners: self.accept.listeners.len(),
            pooled_bytes: self.out.pool.pooled_bytes(),
            ..self.stats
        }
    }
}
