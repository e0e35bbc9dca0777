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
//! - [`has_pending`](Transport::has_pending): whether the transport holds
//!   bytes for the socket itself. While it does, the connection is flushed,
//!   with or without output of the handler's ([`write_pending`](Transport::write_pending)
//!   comes first, to keep the order), and a close waits for them. Plain:
//!   never.
//! - [`socket_drained`](Transport::socket_drained): after a short read of
//!   plaintext, whether the socket's own last read was short too (the
//!   edge-triggered shortcut; for plain sockets the two are one read).
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
    /// TLS, by rustls (`tls_transport.rs`). Boxed: a rustls connection is
    /// large, and plain connections should not pay for its size.
    #[cfg(feature = "tls")]
    Tls(Box<super::tls_transport::TlsTransport>),
}

impl Transport {
    /// The socket under the transport: for addresses, socket options and
    /// errors.
    #[inline]
    pub(crate) fn socket(&self) -> &Stream {
        match self {
            Transport::Plain(stream) => stream,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.socket(),
        }
    }

    /// Whether a TLS handshake is still under way (never, for plain bytes).
    #[inline]
    pub(crate) fn is_handshaking(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.is_handshaking(),
        }
    }

    /// Whether the transport holds bytes for the socket (handshake
    /// messages, sealed records, an alert): while it does, the connection
    /// must be flushed, these first.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.has_pending(),
        }
    }

    /// Writes what the transport holds to the socket, until it is all
    /// written or the socket is full (`WouldBlock`).
    #[inline]
    pub(crate) fn write_pending(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.write_pending(),
        }
    }

    /// Advances a handshake on a connection whose reading is paused, taking
    /// no plaintext (`WouldBlock` once the socket is drained). Plain
    /// sockets have no handshake: `Ok` at once.
    pub(crate) fn drive_handshake(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.drive_handshake(),
        }
    }

    /// True once after the transport, having refused plaintext for a reason
    /// of its own (a TLS handshake not finished yet), can take it again:
    /// the socket was writable all along, so no event will say so.
    #[inline(always)]
    pub(crate) fn take_write_ready(&mut self) -> bool {
        match self {
            Transport::Plain(_) => false,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.take_write_ready(),
        }
    }

    /// Whether a graceful close must say goodbye in the transport itself,
    /// even when the peer has finished (TLS's `close_notify`).
    #[inline]
    pub(crate) fn closes_with_notice(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            #[cfg(feature = "tls")]
            Transport::Tls(_) => true,
        }
    }

    /// Whether the transport still holds output of the connection's, to
    /// write now or once its handshake ends: the connection's output is not
    /// all written while it does (a close or write shutdown waits).
    #[inline]
    pub(crate) fn holds_output(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.holds_output(),
        }
    }

    /// Ends our sending side once everything before it is written (for TLS:
    /// `close_notify` first, and FIN once it has left; until then
    /// [`has_pending`](Transport::has_pending) says so).
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(stream) => stream.shutdown(Shutdown::Write),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.shutdown_write(),
        }
    }

    /// Whether a reply may be written straight from the read buffer.
    #[inline(always)]
    pub(crate) fn writes_in_place(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
            #[cfg(feature = "tls")]
            Transport::Tls(_) => false,
        }
    }

    /// After a short read of plaintext: whether the socket is drained too
    /// (for TLS, the last socket read was short). Plain: the short read
    /// itself was the socket's.
    #[inline]
    pub(crate) fn socket_drained(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.socket_drained(),
        }
    }

    /// Bytes handed to the transport that the peer has not taken yet (see
    /// `Stream::unsent_bytes`), counting what the transport still holds.
    pub(crate) fn unsent_bytes(&self) -> io::Result<Option<usize>> {
        // What the transport holds counts as one byte at least: the peer
        // has not got it.
        let held = usize::from(self.holds_output());
        Ok(self.socket().unsent_bytes()?.map(|n| n + held))
    }
}

impl Read for Transport {
    #[inline(always)]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.read(buf),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Transport {
    #[inline(always)]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.write(buf),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.write(buf),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.write_vectored(bufs),
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
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.socket_mut().register(registry, token, interests),
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
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.socket_mut().reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Transport::Plain(stream) => stream.deregister(registry),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.socket_mut().deregister(registry),
        }
    }
}
