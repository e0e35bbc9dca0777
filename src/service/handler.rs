//! [`Handler`]: what a service implements, and the values it is handed
//! ([`ConnId`], [`ListenerId`], [`Origin`], [`CloseReason`]).
//!
//! This file is the protocol's side of the contract, and nothing else: it
//! holds no state and does no I/O.

use std::fmt;
use std::io;

use super::Connections;

/// Names one connection of a [`Service`](super::Service): a slot index plus a
/// generation.
///
/// Ids are never reused: when a connection closes, a later connection may
/// take its slot (and so its [`index`](ConnId::index)), but it gets a new
/// generation, and any call with the old id answers `NotFound` instead of
/// reaching the newcomer.
///
/// # Examples
///
/// ```
/// # #![allow(dead_code)]
/// # use reactor::service::ConnId;
/// fn remember(id: ConnId, table: &mut Vec<Option<ConnId>>) {
///     // `index` is a dense small number: handy for a handler's own table.
///     if table.len() <= id.index() { table.resize(id.index() + 1, None); }
///     table[id.index()] = Some(id);
/// }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// The connection's slot: unique among open connections, reused after
    /// close. Use it to index a handler's own per-connection table.
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// The generation that tells this connection from earlier and later
    /// holders of the same slot.
    pub fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}.{}", self.index, self.generation)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Names one listener of a [`Service`](super::Service).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ListenerId(pub(crate) u32);

impl ListenerId {
    /// The listener's slot, in the order listeners were added (from 0).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where a connection came from, as [`Handler::on_open`] is told.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Origin {
    /// Accepted by this listener.
    Accepted(ListenerId),
    /// An outgoing connection made with [`Connections::connect`] that has
    /// completed.
    Connected,
}

/// Why a connection closed, as [`Handler::on_close`] is told.
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The handler called [`Connections::close`] (or
    /// [`abort`](Connections::abort)).
    Closed,
    /// The peer closed its side and everything queued was sent.
    PeerClosed,
    /// A read, write or the socket itself failed: a reset (`ECONNRESET`), a
    /// broken pipe, a refused or unreachable connect.
    Error(io::Error),
    /// Nothing was read or written for the configured
    /// [`idle_timeout`](super::Config::idle_timeout).
    IdleTimeout,
    /// An outgoing connect did not complete within the
    /// [`connect_timeout`](super::Config::connect_timeout).
    ConnectTimeout,
    /// Queued output passed the [`output_limit`](super::Config::output_limit):
    /// the peer was not reading.
    OutputLimit,
    /// Unconsumed input passed the [`input_limit`](super::Config::input_limit).
    InputLimit,
    /// TLS failed: the handshake (a certificate that does not verify, no
    /// protocol or cipher suite in common, a peer that speaks plaintext to a
    /// TLS port), a record that does not authenticate, or a handshake not
    /// finished within the
    /// [`handshake_timeout`](super::Config::handshake_timeout). The error
    /// carries rustls's own where there is one.
    Tls(io::Error),
    /// The service shut down.
    Shutdown,
    /// A graceful close could not write its queued output within the
    /// [`close_timeout`](super::Config::close_timeout): the peer was not
    /// reading. The rest was dropped.
    CloseTimeout,
    /// A message stayed unfinished past the
    /// [`unfinished_input_timeout`](super::Config::unfinished_input_timeout).
    InputTimeout,
    /// The handler panicked while handling this connection (see
    /// [`Service`](super::Service) on panics).
    HandlerPanicked,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Closed => f.write_str("closed"),
            CloseReason::PeerClosed => f.write_str("closed by peer"),
            CloseReason::Error(e) => write!(f, "error: {e}"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::ConnectTimeout => f.write_str("connect timed out"),
            CloseReason::OutputLimit => f.write_str("output limit exceeded (peer not reading)"),
            CloseReason::InputLimit => f.write_str("input limit exceeded"),
            CloseReason::Tls(e) => write!(f, "TLS: {e}"),
            CloseReason::Shutdown => f.write_str("service shut down"),
            CloseReason::CloseTimeout => f.write_str("close timed out (peer not reading)"),
            CloseReason::InputTimeout => f.write_str("unfinished input timed out"),
            CloseReason::HandlerPanicked => f.write_str("handler panicked"),
        }
    }
}

/// The protocol of a service: one value that owns the service's shared
/// state and is called for what happens on its connections.
///
/// Each method gets the [`Connections`] of the service, through which it can
/// send to, close or pause any connection by id (its own or another's, as a
/// chat server must), open outgoing connections, and reach the
/// [`Reactor`](crate::Reactor) for timers.
///
/// Calls never nest: while one method runs, no other is called. Effects on
/// *other* connections that need a callback (such as their `on_close`) are
/// delivered after the current method returns.
///
/// # Examples
///
/// An echo protocol that upper-cases, as several seed servers do:
///
/// ```
/// # #![allow(dead_code)]
/// use reactor::service::{ConnId, Connections, Handler};
///
/// struct Upper {
///     scratch: Vec<u8>,
/// }
///
/// impl Handler for Upper {
///     fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
///         self.scratch.clear();
///         self.scratch.extend(data.iter().map(u8::to_ascii_uppercase));
///         let _ = conns.send(id, &self.scratch); // fails only if `id` is closing
///         data.len()
///     }
/// }
/// ```
pub trait Handler: 'static {
    /// A connection is open: accepted by a listener, or an outgoing connect
    /// has completed. Output sent here (a greeting, a prompt) goes out before
    /// the loop next sleeps.
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, origin: Origin) {
        let _ = (conns, id, origin);
    }

    /// Bytes arrived. `data` is everything received and not yet consumed:
    /// the bytes left over last time, followed by the new ones. Return how
    /// many bytes you consumed from the front; the rest is kept and handed
    /// back, with whatever arrives next, on the following call. (Return
    /// `data.len()` for a byte stream; stop before a partial line or frame.)
    /// A value larger than `data.len()` counts as `data.len()`.
    ///
    /// What is left unconsumed is also how the service knows a message is
    /// unfinished, for the
    /// [`unfinished_input_timeout`](super::Config::unfinished_input_timeout).
    ///
    /// Unconsumed bytes may not exceed the service's
    /// [`input_limit`](super::Config::input_limit); past it the connection
    /// closes with [`CloseReason::InputLimit`].
    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize;

    /// The peer shut down its sending side (read returned end of stream).
    /// The connection can still send. The default finishes what is queued and
    /// closes ([`Connections::close`]); a proxy would instead pass the
    /// half-close on and keep the other direction going.
    fn on_read_closed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let _ = conns.close(id);
    }

    /// Everything queued for the connection has been written. A file sender
    /// queues its next piece here.
    fn on_drained(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let _ = (conns, id);
    }

    /// A message on the connection stayed unfinished past the
    /// [`unfinished_input_timeout`](super::Config::unfinished_input_timeout).
    /// Send an error here if the protocol has one: the connection is closed
    /// gracefully when this returns (so the error goes out first), and the
    /// handler then gets `on_close` with [`CloseReason::InputTimeout`].
    fn on_input_timeout(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let _ = (conns, id);
    }

    /// The connection is closed, for `reason`. The id is already dead: sends
    /// to it fail. An outgoing connection that never connected gets
    /// `on_close` without `on_open`.
    fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        let _ = (conns, id, reason);
    }
}
