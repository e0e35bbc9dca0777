//! [`Connections`]' outgoing connections: TCP (from any or a chosen local
//! address), Unix-domain and TLS. Each starts at once and completes in the
//! background, as the connect path of `accept.rs` finishes it.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use log::debug;

use super::connections::Connections;
use super::flags::Flags;
use super::handler::ConnId;
use super::state::TimerKind;
use super::stream::{Addr, Stream};
use super::transport::Transport;

impl Connections<'_> {
    /// Starts an outgoing TCP connection and returns its id at once. The
    /// connect completes in the background: the handler gets
    /// [`on_open`](super::Handler::on_open) with
    /// [`Origin::Connected`](super::Origin::Connected) when it does, or
    /// [`on_close`](super::Handler::on_close) with the error if it fails or
    /// takes longer than the [`connect_timeout`](super::Config::connect_timeout).
    /// Output sent before then waits in the queue.
    ///
    /// `addr` must be resolved already: resolving a host name blocks, so do
    /// it before the loop starts.
    ///
    /// # Errors
    ///
    /// Immediate failures of `socket` or `connect` (`EMFILE`, an address of
    /// the wrong family).
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        let stream = mio::net::TcpStream::connect(addr)?;
        self.start_connect(Stream::Tcp(stream), &Addr::Inet(addr))
    }

    /// Starts an outgoing TCP connection from a chosen local address (a
    /// source IP, and port 0 for any); see [`connect`](Connections::connect).
    /// A load generator spreads connections over `127.0.0.x` this way, past
    /// the limit of ephemeral ports per source address.
    ///
    /// # Errors
    ///
    /// As for [`connect`](Connections::connect), and `bind`'s errors
    /// (`AddrNotAvailable`, `AddrInUse`).
    pub fn connect_from(&mut self, addr: SocketAddr, local: SocketAddr) -> io::Result<ConnId> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM.nonblocking(),
            None,
        )?;
        socket.bind(&local.into())?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            // "In progress": the handshake completes later, signalled by
            // writability.
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let stream = mio::net::TcpStream::from_std(socket.into());
        self.start_connect(Stream::Tcp(stream), &Addr::Inet(addr))
    }

    /// Starts an outgoing Unix-domain stream connection; see
    /// [`connect`](Connections::connect).
    ///
    /// # Errors
    ///
    /// Immediate failures of `socket` or `connect` (`ENOENT` if nothing
    /// listens at `path`).
    pub fn connect_unix(&mut self, path: &Path) -> io::Result<ConnId> {
        let stream = mio::net::UnixStream::connect(path)?;
        self.start_connect(Stream::Unix(stream), &Addr::Unix(Some(path.to_path_buf())))
    }

    fn start_connect(&mut self, stream: Stream, addr: &Addr) -> io::Result<ConnId> {
        self.start_connect_over(Transport::Plain(stream), addr)
    }

    /// Starts an outgoing TLS connection over TCP: as
    /// [`connect`](Connections::connect), and the bytes pass through rustls
    /// with `config`, verifying the server's certificate for `server_name`
    /// (see [`tls::client_config`](crate::tls::client_config)). `on_open`
    /// comes when the TCP connect completes; what is sent before the
    /// handshake finishes waits in rustls (up to its buffer limit) and in the
    /// queue. A certificate that does not verify closes the connection with
    /// [`CloseReason::Tls`](super::CloseReason::Tls).
    ///
    /// # Errors
    ///
    /// As for [`connect`](Connections::connect), and `InvalidData` if rustls
    /// refuses the configuration.
    #[cfg(feature = "tls")]
    pub fn connect_tls(
        &mut self,
        addr: SocketAddr,
        server_name: crate::tls::ServerName<'static>,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> io::Result<ConnId> {
        let tls = rustls::ClientConnection::new(config, server_name)
            .map_err(super::tls_transport::tls_error)?;
        let stream = mio::net::TcpStream::connect(addr)?;
        let transport = Transport::Tls(Box::new(super::tls_transport::TlsTransport::new(
            Stream::Tcp(stream),
            tls.into(),
        )));
        self.start_connect_over(transport, &Addr::Inet(addr))
    }

    fn start_connect_over(&mut self, transport: Transport, addr: &Addr) -> io::Result<ConnId> {
        if self.state.closing.shutdown.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the service is shutting down",
            ));
        }
        let id = self
            .state
            .insert(self.reactor, transport, Flags::CONNECTING)?;
        debug!("{id}: connecting to {addr}");
        let timeout = self.state.config.connect_timeout;
        self.state
            .set_timer(self.reactor, timeout, TimerKind::Connect(id));
        Ok(id)
    }
}
