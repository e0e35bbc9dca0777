//! TCP and Unix-domain sockets under one type: [`Stream`], [`Listener`] and
//! the [`Addr`] they report, with the socket options and the `SIOCOUTQ`
//! query the layer needs. What passes through a stream is the transport's
//! business (`transport.rs`); this file never buffers a byte.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

/// The address of a connection's peer or of a listener: an IP socket
/// address or a Unix-domain path.
///
/// # Examples
///
/// ```
/// use reactor::service::Addr;
/// let addr = Addr::Inet("127.0.0.1:80".parse().unwrap());
/// assert_eq!(addr.to_string(), "127.0.0.1:80");
/// assert_eq!(Addr::Unix(None).to_string(), "unix:(unnamed)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// An IPv4 or IPv6 address and port.
    Inet(SocketAddr),
    /// A Unix-domain socket path; `None` for an unnamed socket (a client that
    /// never called `bind`, as most do not).
    Unix(Option<PathBuf>),
}

impl Addr {
    /// The IP socket address, if this is one.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            Addr::Inet(addr) => Some(*addr),
            Addr::Unix(_) => None,
        }
    }

    fn from_unix(addr: &std::os::unix::net::SocketAddr) -> Addr {
        Addr::Unix(addr.as_pathname().map(PathBuf::from))
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Inet(addr) => addr.fmt(f),
            Addr::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            Addr::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(addr: SocketAddr) -> Addr {
        Addr::Inet(addr)
    }
}

/// A connected stream socket of either family.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(crate) fn peer_addr(&self) -> io::Result<Addr> {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(Addr::Inet),
            Stream::Unix(s) => s.peer_addr().map(|a| Addr::from_unix(&a)),
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<Addr> {
        match self {
            Stream::Tcp(s) => s.local_addr().map(Addr::Inet),
            Stream::Unix(s) => s.local_addr().map(|a| Addr::from_unix(&a)),
        }
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
        }
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    /// Makes the coming close a reset: `SO_LINGER` with a zero timeout, so
    /// the kernel discards unsent data and sends RST instead of FIN.
    pub(crate) fn set_reset_on_close(&self) -> io::Result<()> {
        let zero = Some(std::time::Duration::ZERO);
        match self {
            Stream::Tcp(s) => socket2::SockRef::from(s).set_linger(zero),
            Stream::Unix(s) => socket2::SockRef::from(s).set_linger(zero),
        }
    }

    /// Sets `SO_SNDBUF`.
    pub(crate) fn set_send_buffer(&self, size: usize) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => socket2::SockRef::from(s).set_send_buffer_size(size),
            Stream::Unix(s) => socket2::SockRef::from(s).set_send_buffer_size(size),
        }
    }

    /// Bytes written to the socket that the peer has not taken yet: for TCP,
    /// sent but unacknowledged or not yet sent (our FIN included); for a
    /// Unix socket, written but not yet read by the peer. `None` where the
    /// system cannot tell.
    ///
    /// Linux answers this with the `SIOCOUTQ` ioctl (`TIOCOUTQ`). Elsewhere
    /// (macOS has `SO_NWRITE`, the BSDs `FIONWRITE`, each with its own
    /// meaning) the answer is `None`, and a graceful close falls back to
    /// waiting [`linger_timeout`](super::Config::linger_timeout) from the
    /// moment its output was handed to the kernel.
    pub(crate) fn unsent_bytes(&self) -> io::Result<Option<usize>> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = match self {
                Stream::Tcp(s) => s.as_raw_fd(),
                Stream::Unix(s) => s.as_raw_fd(),
            };
            let mut unsent: libc::c_int = 0;
            // SAFETY: `fd` is an open socket owned by `self`, and SIOCOUTQ
            // writes one `int` through the pointer, which points at one.
            let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unsent) };
            if rc == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(Some(unsent.max(0) as usize))
        }
        #[cfg(not(target_os = "linux"))]
        {
            Ok(None)
        }
    }

    /// Sets `TCP_NODELAY`; a no-op for Unix sockets, which have no Nagle.
    pub(crate) fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(on),
            Stream::Unix(_) => Ok(()),
        }
    }
}

impl Read for Stream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interests),
            Stream::Unix(s) => s.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interests),
            Stream::Unix(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
        }
    }
}

/// A listening socket of either family. A Unix listener remembers its path
/// so the file can be removed when the listener is closed.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, Option<PathBuf>),
}

impl Listener {
    pub(crate) fn accept(&self) -> io::Result<(Stream, Addr)> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, a)| (Stream::Tcp(s), Addr::Inet(a))),
            Listener::Unix(l, _) => l
                .accept()
                .map(|(s, a)| (Stream::Unix(s), Addr::from_unix(&a))),
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<Addr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(Addr::Inet),
            Listener::Unix(l, _) => l.local_addr().map(|a| Addr::from_unix(&a)),
        }
    }

    /// Removes the socket file of a Unix listener this service created.
    pub(crate) fn remove_path(&mut self) {
        if let Listener::Unix(_, path) = self {
            if let Some(path) = path.take() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Source for Listener {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.register(registry, token, interests),
            Listener::Unix(l, _) => l.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.reregister(registry, token, interests),
            Listener::Unix(l, _) => l.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.deregister(registry),
            Listener::Unix(l, _) => l.deregister(registry),
        }
    }
}
