//! Creating listening sockets with the options mio does not expose.
//!
//! `mio::net::TcpListener::bind` listens with a backlog of 1024 on Linux, but
//! offers no way to choose it, nor to set options between `socket` and
//! `bind`. These functions build the socket with [`socket2`] step by step,
//! as a C server would, and hand back a non-blocking mio listener.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use socket2::{Domain, SockAddr, Socket, Type};

/// The listen backlog used when none is given: at least 1024, because the
/// traditional 128 drops handshakes when a thousand clients connect at once
/// (the kernel caps the value at `net.core.somaxconn`).
pub const DEFAULT_BACKLOG: i32 = 1024;

/// Creates a non-blocking TCP listener bound to `addr`, with `SO_REUSEADDR`
/// (so a restarted server can bind while old connections sit in
/// `TIME_WAIT`) and the given listen `backlog`.
///
/// An IPv6 address keeps the system's default for `IPV6_V6ONLY` (on Linux,
/// `[::]` then accepts IPv4 connections too).
///
/// # Errors
///
/// Whatever `socket`, `setsockopt`, `bind` or `listen` answers:
/// `AddrInUse`, `AddrNotAvailable`, `PermissionDenied` for ports below 1024.
///
/// # Examples
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let listener = reactor::socket::tcp_listener("127.0.0.1:0".parse().unwrap(), 1024)?;
/// assert_ne!(listener.local_addr()?.port(), 0);
/// # Ok(())
/// # }
/// ```
pub fn tcp_listener(addr: SocketAddr, backlog: i32) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// Creates a non-blocking TCP listener on `[::]:port` that accepts IPv4 and
/// IPv6 connections alike (`IPV6_V6ONLY` off: IPv4 peers appear as
/// `::ffff:a.b.c.d`), with `SO_REUSEADDR` and the given `backlog`. Port 0
/// picks a free port.
///
/// # Errors
///
/// As for [`tcp_listener`]; `AddrNotAvailable` on a system without IPv6.
///
/// # Examples
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let listener = reactor::socket::tcp_listener_dual_stack(0, 1024)?;
/// let port = listener.local_addr()?.port();
/// std::net::TcpStream::connect(("127.0.0.1", port))?; // IPv4 reaches it
/// # Ok(())
/// # }
/// ```
pub fn tcp_listener_dual_stack(port: u16, backlog: i32) -> io::Result<mio::net::TcpListener> {
    let addr = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    let socket = Socket::new(Domain::IPV6, Type::STREAM.nonblocking(), None)?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// Creates a non-blocking UDP socket bound to `addr`.
///
/// # Errors
///
/// Whatever `socket` or `bind` answers.
pub fn udp_socket(addr: SocketAddr) -> io::Result<mio::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM.nonblocking(), None)?;
    socket.bind(&addr.into())?;
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// Creates a non-blocking UDP socket on `[::]:port` that receives IPv4 and
/// IPv6 datagrams alike (`IPV6_V6ONLY` off).
///
/// # Errors
///
/// Whatever `socket`, `setsockopt` or `bind` answers.
pub fn udp_socket_dual_stack(port: u16) -> io::Result<mio::net::UdpSocket> {
    let addr = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    let socket = Socket::new(Domain::IPV6, Type::DGRAM.nonblocking(), None)?;
    socket.set_only_v6(false)?;
    socket.bind(&addr.into())?;
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// Creates a non-blocking Unix-domain stream listener at `path` with the
/// given listen `backlog`.
///
/// The path must not exist yet; remove a stale socket file first.
///
/// # Errors
///
/// Whatever `socket`, `bind` or `listen` answers (`AddrInUse` if the path
/// exists).
///
/// # Examples
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let path = std::env::temp_dir().join(format!("reactor-doc-{}.sock", std::process::id()));
/// let _ = std::fs::remove_file(&path);
/// let listener = reactor::socket::unix_listener(&path, 1024)?;
/// drop(listener);
/// std::fs::remove_file(&path)?;
/// # Ok(())
/// # }
/// ```
pub fn unix_listener(path: &Path, backlog: i32) -> io::Result<mio::net::UnixListener> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(backlog)?;
    Ok(mio::net::UnixListener::from_std(socket.into()))
}

/// True for the accept errors that mean "out of descriptors or kernel
/// memory" (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): retrying at once would
/// fail again and spin the loop, and giving up until the next readiness
/// event would strand the connections already waiting in the backlog
/// (edge-triggered: no event comes for them). Rest, then retry: the
/// connection layer waits [`accept_pause`](crate::service::Config::accept_pause);
/// the `select_echo_server` example shows the same on the bare reactor.
///
/// # Examples
///
/// ```
/// use std::io;
/// use reactor::socket::is_resource_exhaustion;
///
/// assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(24))); // EMFILE
/// assert!(!is_resource_exhaustion(&io::Error::from(io::ErrorKind::WouldBlock)));
/// ```
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM)
    )
}

/// The few errno values we test for, spelled out so the crate needs no
/// `libc` dependency of its own (values for Linux and the BSDs alike).
mod libc_errno {
    pub const ENOMEM: i32 = 12;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    #[cfg(target_os = "linux")]
    pub const ENOBUFS: i32 = 105;
    #[cfg(not(target_os = "linux"))]
    pub const ENOBUFS: i32 = 55;
}
