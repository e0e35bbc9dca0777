//! [`TlsTransport`]: rustls on the transport seam, driven without I/O of its
//! own, as rustls's `tlsserver-mio` example drives it.
//!
//! rustls never touches the socket. On the way in, ciphertext is handed to
//! it with `read_tls`, `process_new_packets` decrypts (and runs the
//! handshake), and the plaintext reader gives the handler's bytes. On the
//! way out, the plaintext writer seals records into rustls's buffer, and
//! `write_tls` hands them to the socket. A graceful close queues
//! `close_notify`, and FIN follows once it has left. This file only moves
//! bytes between the socket and rustls; every decision about the
//! connection (limits, timeouts, closing) stays with the layer above.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use log::debug;
use rustls::Connection;

use super::stream::Stream;

/// The most ciphertext rustls may hold for the socket (and plaintext before
/// the handshake ends): past it, writes answer `WouldBlock` as a full socket
/// would, so a slow TLS reader is held back by the same backpressure as a
/// plain one. rustls's own default; said here so the layer's memory bound
/// can count it.
pub(crate) const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// A socket and the rustls connection its bytes pass through.
pub(crate) struct TlsTransport {
    stream: Stream,
    conn: Connection,
    /// `close_notify` is queued: shut the socket's write side once it has
    /// been written.
    fin_after_pending: bool,
    /// The socket answered end of stream.
    socket_eof: bool,
    /// A write was refused (in part) with the socket not full: the
    /// handshake has not finished, and plaintext waits for it.
    write_blocked: bool,
    /// ...and the handshake has finished since: the layer must write again.
    write_ready: bool,
    /// Plaintext was taken during the handshake: rustls holds it until the
    /// handshake ends, so the connection's output is not written yet (a
    /// close or write shutdown must wait for it).
    held_for_handshake: bool,
    /// rustls reported an error: it has sent its alert, and must not be fed
    /// again.
    failed: bool,
    /// The last read from the socket returned less than rustls asked for
    /// (or `WouldBlock`): on epoll and kqueue that proves it drained, the
    /// same shortcut the plain transport takes.
    socket_drained: bool,
}

impl TlsTransport {
    pub(crate) fn new(stream: Stream, mut conn: Connection) -> TlsTransport {
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        TlsTransport {
            stream,
            conn,
            fin_after_pending: false,
            socket_eof: false,
            write_blocked: false,
            write_ready: false,
            socket_drained: false,
            held_for_handshake: false,
            failed: false,
        }
    }

    pub(crate) fn socket(&self) -> &Stream {
        &self.stream
    }

    pub(crate) fn socket_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Bytes to hand to the socket now (records, an alert, a FIN to send).
    pub(crate) fn has_pending(&self) -> bool {
        self.conn.wants_write() || self.fin_after_pending
    }

    /// Output not delivered yet: what is pending, and plaintext held until
    /// the handshake ends.
    pub(crate) fn holds_output(&self) -> bool {
        self.has_pending() || self.held_for_handshake
    }

    /// rustls has just processed records: if the handshake is over, what it
    /// refused or held during the handshake can go now, and the layer must
    /// be told (no socket event will say so).
    fn after_processing(&mut self) {
        if (self.write_blocked || self.held_for_handshake) && !self.conn.is_handshaking() {
            self.write_blocked = false;
            self.held_for_handshake = false;
            self.write_ready = true;
        }
    }

    /// `process_new_packets`, once: after an error rustls has sent its alert
    /// and must not be fed again.
    fn process(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the TLS connection has already failed",
            ));
        }
        if let Err(e) = self.conn.process_new_packets() {
            self.failed = true;
            // rustls has queued an alert that says why: send it if the
            // socket takes it now.
            let _ = self.write_pending();
            return Err(tls_error(e));
        }
        self.after_processing();
        Ok(())
    }

    /// Plaintext in. Drains what rustls has decrypted first, then feeds it
    /// ciphertext from the socket until there is plaintext, the socket is
    /// drained (`WouldBlock`), or the peer has finished.
    #[inline(never)]
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                // `Ok(0)`: the peer's close_notify has been read.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    // The socket ended without close_notify: many clients do
                    // that. The bytes before it were authenticated; treat it
                    // as the end of the stream.
                    debug!("TLS peer closed without close_notify");
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
            if self.socket_eof {
                return Ok(0);
            }
            let mut socket = ShortReadNoted {
                stream: &mut self.stream,
                short: &mut self.socket_drained,
            };
            match self.conn.read_tls(&mut socket) {
                Ok(0) => self.socket_eof = true,
                Ok(_) => {}
                // WouldBlock: drained, wait for the next event.
                Err(e) => return Err(e),
            }
            self.process()?;
        }
    }

    /// Feeds rustls ciphertext until the handshake is done or the socket is
    /// drained (`WouldBlock`), without taking plaintext: for a connection
    /// whose reading is paused, so that a handshake is never held up by
    /// backpressure that only the handshake can relieve.
    #[inline(never)]
    pub(crate) fn drive_handshake(&mut self) -> io::Result<()> {
        while self.conn.is_handshaking() && !self.socket_eof {
            match self.conn.read_tls(&mut self.stream) {
                Ok(0) => self.socket_eof = true,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            self.process()?;
        }
        Ok(())
    }

    /// Plaintext out: sealed into rustls's buffer, then written to the
    /// socket as far as it takes. `WouldBlock` when the buffer is full.
    #[inline(never)]
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(buf)?;
        self.after_write(n, buf.len())
    }

    #[inline(never)]
    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.conn.writer().write_vectored(bufs)?;
        let offered = bufs.iter().map(|b| b.len()).sum();
        self.after_write(n, offered)
    }

    /// After rustls took `n` of `offered` plaintext bytes: the records go to
    /// the socket, and what was refused is reported as a socket would report
    /// it (short, or `WouldBlock` for nothing). A refusal with the socket
    /// not full is the handshake's doing: noted, so that the layer is told
    /// to write again once it has finished (`take_write_ready`).
    fn after_write(&mut self, n: usize, offered: usize) -> io::Result<usize> {
        let socket_full = match self.write_pending() {
            Ok(()) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) => return Err(e),
        };
        if n < offered && !socket_full {
            self.write_blocked = true;
        }
        if n > 0 && self.conn.is_handshaking() {
            self.held_for_handshake = true;
        }
        if n == 0 && offered > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Whether the socket was drained by the last read: with rustls's
    /// plaintext also used up (a short plaintext read), nothing is left to
    /// read until the next event.
    pub(crate) fn socket_drained(&self) -> bool {
        self.socket_drained
    }

    pub(crate) fn take_write_ready(&mut self) -> bool {
        std::mem::take(&mut self.write_ready)
    }

    /// Hands what rustls holds to the socket until it is all written
    /// (`Ok`) or the socket is full (`WouldBlock`); then a FIN, if a close
    /// asked for one.
    #[inline(never)]
    pub(crate) fn write_pending(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.fin_after_pending {
            self.fin_after_pending = false;
            self.stream.shutdown(Shutdown::Write)?;
        }
        Ok(())
    }

    /// `close_notify`, then FIN once it has left. (The layer asks only once
    /// nothing is pending: never during a handshake with plaintext held,
    /// where rustls would send the alert ahead of it.)
    #[inline(never)]
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.fin_after_pending = true;
        match self.write_pending() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }
}

/// The socket, as rustls reads it, noting whether a read came back short.
struct ShortReadNoted<'a> {
    stream: &'a mut Stream,
    short: &'a mut bool,
}

impl Read for ShortReadNoted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.stream.read(buf);
        *self.short = match &result {
            Ok(n) => *n < buf.len(),
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        };
        result
    }
}

/// A rustls error as an `io::Error` that still carries it (the layer tells
/// TLS failures from others by looking inside: see `CloseReason::Tls`).
pub(crate) fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Whether an error came from TLS (a handshake failure, a bad record, a
/// certificate that does not verify, a handshake that timed out).
pub(crate) fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>() || inner.is::<HandshakeTimeout>())
}

/// A handshake that did not finish within the configured time.
#[derive(Debug)]
pub(crate) struct HandshakeTimeout(pub(crate) std::time::Duration);

impl fmt::Display for HandshakeTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS handshake not finished within {:?}", self.0)
    }
}

impl std::error::Error for HandshakeTimeout {}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport")
            .field("stream", &self.stream)
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}
