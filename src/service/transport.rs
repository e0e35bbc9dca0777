//! [`Transport`]: the seam between a connection's socket and its handler.
//!
//! The handler sees plaintext: `on_data` is handed what the transport read,
//! and `send` queues what the transport will write. Between the two and the
//! socket sits a transport. The plain one passes bytes through as they are,
//! for TCP and Unix sockets. A TLS transport (rustls, driven without I/O of
//! its own) decrypts on the way in and encrypts on the way out; a simulated
//! network for deterministic tests would be another variant. The rest of the
//! connection layer (backpressure, limits, timeouts, half-close, graceful
//! close) asks only what this file answers, so it behaves the same over
//! every transport.
//!
//! The contract, written for a transport that holds bytes of its own (as
//! rustls does: handshake messages, records it has sealed but the socket has
//! not taken):
//!
//! - [`read`](Transport::read) fills the buffer with plaintext, reading the
//!   socket as needed; `Ok(0)` is the peer's end of stream; `WouldBlock`
//!   means the socket is drained (edge-triggered: wait for the next event).
//!   For TLS: `read_tls` until `WouldBlock`, `process_new_packets`, then
//!   the plaintext reader.
//! - [`write`](Transport::write) takes plaintext and may take less than it
//!   was offered, or answer `WouldBlock`, when the socket (or the
//!   transport's own bounded buffer) is full, exactly as a socket does.
//! - [`pending`](Transport::pending) is what the transport holds for the
//!   socket itself. While it is not zero the connection is flushed, with or
//!   without output of the handler's ([`write_pending`](Transport::write_pending)
//!   comes first, to keep the order). Plain: always 0.
//! - [`short_read_drains`](Transport::short_read_drains): whether a short
//!   read proves the socket drained (the plain transport's edge-triggered
//!   shortcut; a buffering transport must be read to `WouldBlock`).
//! - [`shutdown_write`](Transport::shutdown_write) ends our sending side:
//!   FIN (TLS: `send_close_notify` first).
//! - [`writes_in_place`](Transport::writes_in_place): whether a reply may be
//!   written straight from the read buffer (`output/in_place.rs`). Only for
//!   the plain transport: for TLS the bytes in the read buffer are
//!   plaintext that must be encrypted into a buffer of rustls's anyway, so
//!   there is no copy to save, and the general path is the right one.
//!
//! This file never decides anything about a connection's state.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::{Interest, Registry, Token};

use super::stream::Stream;

/// How a connection's bytes reach its socket; see the module documentation.
#[derive(Debug)]
pub(crate) enum Transport {
    /// TCP and Unix-domain bytes as they are.
    Plain(Stream),
}

impl Transport {
    /// The socket under the transport: for addresses, socket options and
    /// errors.
    #[inline]
    pub(crate) fn socket(&self) -> &Stream {
        match self {
            Transport::Plain(stream) => stream,
        }
    }

    /// Bytes the transport holds for the socket (handshake messages, sealed
    /// records): while not zero, the connection must be flushed.
    #[inline]
    pub(crate) fn pending(&self) -> usize {
        match self {
            Transport::Plain(_) => 0,
        }
    }

    /// Writes what the transport holds to the socket, until it is all
    /// written or the socket is full (`WouldBlock`).
    #[inline]
    pub(crate) fn write_pending(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
        }
    }

    /// Ends our sending side once everything before it is written.
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(stream) => stream.shutdown(Shutdown::Write),
        }
    }

    /// Whether a reply may be written straight from the read buffer.
    #[inline(always)]
    pub(crate) fn writes_in_place(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
        }
    }

    /// Whether a read that returns less than it was offered proves the
    /// socket drained (so the next read can wait for an event). True for the
    /// plain transport on epoll and kqueue; not for one that buffers
    /// (a TLS record may end short of the buffer with more behind it).
    #[inline(always)]
    pub(crate) fn short_read_drains(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
        }
    }

    /// Bytes handed to the transport that the peer has not taken yet (see
    /// `Stream::unsent_bytes`), counting what the transport still holds.
    pub(crate) fn unsent_bytes(&self) -> io::Result<Option<usize>> {
        let held = self.pending();
        Ok(self.socket().unsent_bytes()?.map(|n| n + held))
    }
}

impl Read for Transport {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.read(buf),
        }
    }
}

impl Write for Transport {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.write(buf),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()
    }
}

/// Registration is the socket's: readiness is always the socket's, whatever
/// the transport makes of the bytes.
impl Source for Transport {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Transport::Plain(stream) => stream.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Transport::Plain(stream) => stream.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Transport::Plain(stream) => stream.deregister(registry),
        }
    }
}
