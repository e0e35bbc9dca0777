//! Accepting and connecting: how connections enter a service.
//!
//! Accept until `WouldBlock` or the per-turn cap; over `max_connections`,
//! accept, tell, and close (never leave a client waiting in the backlog); on
//! `EMFILE`, rest for `accept_pause` and try again, since no new event will
//! announce the clients already waiting. Outgoing connects complete here
//! too. This file never reads or writes a connection's data.

use std::io::{self, Read};
use std::net::Shutdown;

use log::{debug, info, warn};
use slab::Slab;

use super::engine::Engine;
use super::flags::Flags;
use super::handler::{CloseReason, ConnId, Handler, ListenerId, Origin};
use super::state::{State, TimerKind};
use super::stream::{Addr, Listener, Stream};
use super::transport::Transport;
use crate::key::Key;
use crate::reactor::Reactor;
use crate::ready::Ready;
use crate::socket::is_resource_exhaustion;

pub(crate) struct ListenerSlot {
    pub(crate) listener: Listener,
    pub(crate) key: Key,
    /// Sent to connections refused on this listener, instead of the
    /// configured reject message.
    pub(crate) reject_message: Option<Vec<u8>>,
    /// The TLS configuration of a TLS listener.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// The listeners of a service and the state of accepting from them.
#[derive(Default)]
pub(crate) struct Accept {
    pub(crate) listeners: Slab<ListenerSlot>,
    /// Listeners to accept from again without waiting for an event.
    pub(crate) queue: Vec<usize>,
    /// Resting after `EMFILE`.
    pub(crate) paused: bool,
    pub(crate) warned_exhausted: bool,
    pub(crate) warned_full: bool,
    /// Open accepted connections, counted against `max_connections`.
    pub(crate) open: usize,
}

impl State {
    /// A TLS handshake's deadline passed: close the connection if the
    /// handshake is still under way.
    pub(crate) fn handshake_timed_out(&mut self, reactor: &mut Reactor, id: ConnId) {
        let index = id.index as usize;
        let stalled = self.conns.get(index).is_some_and(|c| {
            c.generation == id.generation && c.is_visible() && c.transport.is_handshaking()
        });
        if !stalled {
            return;
        }
        let timeout = self.config.handshake_timeout;
        warn!("{id}: TLS handshake not finished within {timeout:?}: closing");
        #[cfg(feature = "tls")]
        let reason = CloseReason::Tls(io::Error::new(
            io::ErrorKind::TimedOut,
            super::tls_transport::HandshakeTimeout(timeout),
        ));
        #[cfg(not(feature = "tls"))]
        let reason = CloseReason::Closed;
        self.remove(reactor, index, Some(reason));
    }

    pub(crate) fn is_full(&self) -> bool {
        self.accept.open >= self.config.max_connections
    }

    /// Notes (once per episode) that the service is at its connection limit.
    pub(crate) fn note_full(&mut self) {
        self.stats.rejected += 1;
        if !self.accept.warned_full {
            warn!(
                "at max_connections ({}): refusing new connections",
                self.config.max_connections
            );
            self.accept.warned_full = true;
        }
    }

    pub(crate) fn close_listener(&mut self, reactor: &mut Reactor, index: usize) {
        let mut slot = self.accept.listeners.remove(index);
        let _ = reactor.deregister_routed(&mut slot.listener, slot.key);
        slot.listener.remove_path();
        self.accept.queue.retain(|&l| l != index);
    }
}

impl<H: Handler> Engine<H> {
    pub(crate) fn accept(&mut self, reactor: &mut Reactor, index: usize) {
        for _ in 0..self.state.config.accepts_per_turn {
            if self.state.accept.paused || self.state.closing.shutdown.is_some() {
                return;
            }
            let Some(slot) = self.state.accept.listeners.get(index) else {
                return;
            };
            match slot.listener.accept() {
                Ok((stream, peer)) => {
                    if self.state.accept.warned_exhausted {
                        info!("descriptors available again: accepting");
                        self.state.accept.warned_exhausted = false;
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
        self.state.accept.queue.push(index);
    }

    pub(crate) fn admit(
        &mut self,
        reactor: &mut Reactor,
        listener: usize,
        mut stream: Stream,
        peer: &Addr,
    ) {
        if self.state.is_full() {
            self.state.note_full();
            let message = self.state.accept.listeners[listener]
                .reject_message
                .as_deref()
                .or(self.state.config.reject_message.as_deref());
            refuse(&mut stream, message);
            debug!("refused {peer}: at max_connections");
            return;
        }
        if self.state.config.nodelay {
            if let Err(e) = stream.set_nodelay(true) {
                debug!("TCP_NODELAY for {peer}: {e}");
            }
        }
        if let Some(size) = self.state.config.send_buffer {
            if let Err(e) = stream.set_send_buffer(size) {
                debug!("SO_SNDBUF for {peer}: {e}");
            }
        }
        // A fresh socket has an empty send buffer: writable from the start,
        // so a greeting goes out in this turn.
        let transport = match self.transport_for(listener, stream) {
            Ok(transport) => transport,
            Err(e) => {
                warn!("cannot start TLS for {peer}: {e}");
                return;
            }
        };
        let id = match self
            .state
            .insert(reactor, transport, Flags::ACCEPTED | Flags::WRITABLE)
        {
            Ok(id) => id,
            Err(e) => {
                warn!("cannot register connection from {peer}: {e}");
                return;
            }
        };
        self.state.stats.accepted += 1;
        debug!("{id}: accepted from {peer} on listener {listener}");
        let origin = Origin::Accepted(ListenerId(listener as u32));
        self.tell(reactor, id, |handler, conns| {
            handler.on_open(conns, id, origin)
        });
    }

    /// What the bytes of a connection accepted on `listener` pass through:
    /// plain, or TLS for a TLS listener.
    fn transport_for(&self, listener: usize, stream: Stream) -> io::Result<Transport> {
        #[cfg(feature = "tls")]
        if let Some(config) = &self.state.accept.listeners[listener].tls {
            let conn = rustls::ServerConnection::new(config.clone())
                .map_err(super::tls_transport::tls_error)?;
            return Ok(Transport::Tls(Box::new(
                super::tls_transport::TlsTransport::new(stream, conn.into()),
            )));
        }
        let _ = listener;
        Ok(Transport::Plain(stream))
    }

    pub(crate) fn pause_accepting(&mut self, reactor: &mut Reactor, e: &io::Error) {
        let pause = self.state.config.accept_pause;
        if !self.state.accept.warned_exhausted {
            warn!("accept: {e}; pausing accepts for {pause:?} (raise RLIMIT_NOFILE?)");
            self.state.accept.warned_exhausted = true;
        }
        self.state.accept.paused = true;
        self.state
            .set_timer(reactor, pause, TimerKind::AcceptResume);
    }

    pub(crate) fn resume_accepting(&mut self) {
        self.state.accept.paused = false;
        // Connections may be waiting in the backlog with no new edge coming.
        let listeners: Vec<usize> = self.state.accept.listeners.iter().map(|(i, _)| i).collect();
        self.state.accept.queue.extend(listeners);
    }

    /// An event on a connection whose connect was in progress: find out
    /// whether it completed (`take_error`, then `peer_addr`, as mio documents).
    pub(crate) fn finish_connect(&mut self, reactor: &mut Reactor, id: ConnId, ready: Ready) {
        let index = id.index as usize;
        let conn = &mut self.state.conns[index];
        match conn.transport.socket().take_error() {
            Ok(Some(e)) | Err(e) => return self.connect_failed(reactor, id, e),
            Ok(None) => {}
        }
        match conn.transport.socket().peer_addr() {
            Ok(peer) => {
                conn.flags.clear(Flags::CONNECTING);
                conn.flags.set(Flags::WRITABLE);
                if ready.is_readable() {
                    conn.flags.set(Flags::READABLE);
                }
                if ready.is_read_closed() {
                    conn.flags.set(Flags::READABLE | Flags::READ_CLOSED);
                }
                if self.state.config.nodelay {
                    let _ = conn.transport.socket().set_nodelay(true);
                }
                if let Some(size) = self.state.config.send_buffer {
                    let _ = conn.transport.socket().set_send_buffer(size);
                }
                self.state.stats.connected += 1;
                debug!("{id}: connected to {peer}");
            }
            // Not connected yet (a spurious or early event): wait again.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.connect_failed(reactor, id, e),
        }
        self.tell(reactor, id, |handler, conns| {
            handler.on_open(conns, id, Origin::Connected)
        });
        // `on_open` may have aborted the connection (a port scanner does),
        // and a connect it started may even hold the slot now: the rest
        // is for this connection only.
        let conn = self.state.conns.get(index);
        if conn.is_none_or(|c| c.generation != id.generation) {
            return;
        }
        // Output queued before the connect completed (or a write shutdown
        // asked for meanwhile), and input that came with it.
        self.state.queue_flush(id);
        if let Err(e) = self.state.complete_shutdown_write(index) {
            self.fail(reactor, id, e);
            return;
        }
        self.read(reactor, id);
    }

    pub(crate) fn connect_failed(&mut self, reactor: &mut Reactor, id: ConnId, e: io::Error) {
        debug!("{id}: connect failed: {e}");
        self.state
            .remove(reactor, id.index as usize, Some(CloseReason::Error(e)));
    }

    pub(crate) fn connect_timed_out(&mut self, reactor: &mut Reactor, id: ConnId) {
        let index = id.index as usize;
        let still_connecting = self
            .state
            .conns
            .get(index)
            .is_some_and(|c| c.generation == id.generation && c.flags.has(Flags::CONNECTING));
        if still_connecting {
            debug!("{id}: connect timed out");
            self.state
                .remove(reactor, index, Some(CloseReason::ConnectTimeout));
        }
    }
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
