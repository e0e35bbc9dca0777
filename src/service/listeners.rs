//! Listeners, as a [`Service`] user sees them: listening on TCP and Unix
//! addresses, adopting listeners made elsewhere, refusing in a listener's
//! own words, closing one, asking where one is bound. Accepting from them is
//! `accept.rs`'s business; this file only registers and looks up.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;

use log::info;
use mio::Interest;

use super::accept::ListenerSlot;
use super::state::LISTENER_TAG;
use super::stream::{Addr, Listener};
use super::{Handler, ListenerId, Service};
use crate::reactor::{Dispatch, Reactor};
use crate::socket;

/// Listeners: how a [`Service`] starts accepting, and what it can say of
/// them.
impl<H: Handler> Service<H> {
    /// Listens on a TCP address (`SO_REUSEADDR`, the configured backlog) and
    /// returns the listener's id. Port 0 picks a free port: ask
    /// [`local_addr`](Service::local_addr) which.
    ///
    /// # Errors
    ///
    /// As for [`socket::tcp_listener`]: `AddrInUse`, `PermissionDenied`, ...
    pub fn listen(&self, reactor: &mut Reactor, addr: SocketAddr) -> io::Result<ListenerId> {
        let backlog = self.engine()?.state.config.backlog;
        let listener = socket::tcp_listener(addr, backlog)?;
        self.add_listener(reactor, Listener::Tcp(listener))
    }

    /// Listens on a TCP address for TLS: as [`listen`](Service::listen), and
    /// every connection accepted on it passes through rustls with `config`
    /// (see [`tls::server_config`](crate::tls::server_config) to make one
    /// from PEM files). The handler is the same: `on_data` gets plaintext,
    /// `send` takes plaintext. A plaintext listener and a TLS one can serve
    /// the same service on one loop.
    ///
    /// A handshake must finish within the
    /// [`handshake_timeout`](super::Config::handshake_timeout); one that fails
    /// (a peer that speaks plaintext, a certificate refused) closes the
    /// connection with [`CloseReason::Tls`](super::CloseReason::Tls) and a
    /// log line, disturbing no one else.
    ///
    /// # Errors
    ///
    /// As for [`listen`](Service::listen).
    #[cfg(feature = "tls")]
    pub fn listen_tls(
        &self,
        reactor: &mut Reactor,
        addr: SocketAddr,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) -> io::Result<ListenerId> {
        let id = self.listen(reactor, addr)?;
        // No connection can be accepted before the loop next turns.
        self.engine()?.state.accept.listeners[id.index()].tls = Some(config);
        Ok(id)
    }

    /// Starts an outgoing TLS connection; see [`Connections::connect_tls`].
    ///
    /// # Errors
    ///
    /// As for [`Connections::connect_tls`], and `WouldBlock` if called from
    /// inside this service's handler.
    ///
    /// [`Connections::connect_tls`]: super::Connections::connect_tls
    #[cfg(feature = "tls")]
    pub fn connect_tls(
        &self,
        reactor: &mut Reactor,
        addr: SocketAddr,
        server_name: crate::tls::ServerName<'static>,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> io::Result<super::ConnId> {
        self.with(reactor, |_, conns| {
            conns.connect_tls(addr, server_name, config)
        })?
    }

    /// Listens on a Unix-domain socket at `path`. The socket file is removed
    /// when the listener is closed (or the service shuts down).
    ///
    /// # Errors
    ///
    /// As for [`socket::unix_listener`]: `AddrInUse` if the path exists.
    pub fn listen_unix(
        &self,
        reactor: &mut Reactor,
        path: impl AsRef<Path>,
    ) -> io::Result<ListenerId> {
        let path = path.as_ref();
        let backlog = self.engine()?.state.config.backlog;
        let listener = socket::unix_listener(path, backlog)?;
        self.add_listener(reactor, Listener::Unix(listener, Some(path.to_path_buf())))
    }

    /// Serves connections from a TCP listener made elsewhere (inherited,
    /// or built with options of your own).
    ///
    /// # Errors
    ///
    /// An error registering it with the reactor.
    pub fn add_tcp_listener(
        &self,
        reactor: &mut Reactor,
        listener: mio::net::TcpListener,
    ) -> io::Result<ListenerId> {
        self.add_listener(reactor, Listener::Tcp(listener))
    }

    /// Serves connections from a Unix-domain listener made elsewhere. Its
    /// socket file is left alone when it closes.
    ///
    /// # Errors
    ///
    /// An error registering it with the reactor.
    pub fn add_unix_listener(
        &self,
        reactor: &mut Reactor,
        listener: mio::net::UnixListener,
    ) -> io::Result<ListenerId> {
        self.add_listener(reactor, Listener::Unix(listener, None))
    }

    fn add_listener(
        &self,
        reactor: &mut Reactor,
        mut listener: Listener,
    ) -> io::Result<ListenerId> {
        let mut engine = self.engine()?;
        let state = &mut engine.state;
        if state.closing.shutdown.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the service is shutting down",
            ));
        }
        let entry = state.accept.listeners.vacant_entry();
        let index = entry.key();
        let dispatch: Rc<dyn Dispatch> = self.core.clone();
        let key = reactor.register_routed(
            &mut listener,
            Interest::READABLE,
            dispatch,
            LISTENER_TAG | index,
        )?;
        if let Ok(addr) = listener.local_addr() {
            info!("listener {index} on {addr}");
        }
        entry.insert(ListenerSlot {
            listener,
            key,
            reject_message: None,
            #[cfg(feature = "tls")]
            tls: None,
        });
        Ok(ListenerId(index as u32))
    }

    /// Sets the message sent to connections this listener refuses for being
    /// over [`Config::max_connections`](super::Config::max_connections), in place of the configured
    /// [`reject_message`](super::Config::reject_message) (listeners that speak
    /// different protocols refuse in their own words). `None` goes back to
    /// the configured one.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such listener.
    pub fn set_reject_message(&self, id: ListenerId, message: Option<&[u8]>) -> io::Result<()> {
        let mut engine = self.engine()?;
        let slot = engine
            .state
            .accept
            .listeners
            .get_mut(id.index())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no listener {}", id.index()),
                )
            })?;
        slot.reject_message = message.map(<[u8]>::to_vec);
        Ok(())
    }

    /// Stops listening on one listener; open connections are not affected.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such listener.
    pub fn close_listener(&self, reactor: &mut Reactor, id: ListenerId) -> io::Result<()> {
        let mut engine = self.engine()?;
        if !engine.state.accept.listeners.contains(id.index()) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no listener {}", id.index()),
            ));
        }
        engine.state.close_listener(reactor, id.index());
        Ok(())
    }

    /// The address a listener is bound to (with the real port when it was
    /// bound to port 0).
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such listener; otherwise `getsockname`'s.
    pub fn local_addr(&self, id: ListenerId) -> io::Result<Addr> {
        let engine = self.engine()?;
        let slot = engine
            .state
            .accept
            .listeners
            .get(id.index())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no listener {}", id.index()),
                )
            })?;
        slot.listener.local_addr()
    }

    /// The IP address and port of a TCP listener: [`local_addr`](Service::local_addr)
    /// without the match on [`Addr`], for the common case.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such listener; `InvalidInput` if it is a
    /// Unix-domain listener; otherwise `getsockname`'s.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// # use reactor::Reactor;
    /// # use reactor::service::{Config, ConnId, Connections, Handler, Service};
    /// # struct Discard;
    /// # impl Handler for Discard {
    /// #     fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, d: &[u8]) -> usize { d.len() }
    /// # }
    /// let mut reactor = Reactor::new()?;
    /// let service = Service::new(&mut reactor, Discard, Config::default());
    /// let listener = service.listen(&mut reactor, "127.0.0.1:0".parse().unwrap())?;
    /// let addr = service.tcp_addr(listener)?;
    /// assert_ne!(addr.port(), 0, "the port the kernel picked");
    /// # Ok(())
    /// # }
    /// ```
    pub fn tcp_addr(&self, id: ListenerId) -> io::Result<SocketAddr> {
        match self.local_addr(id)? {
            Addr::Inet(addr) => Ok(addr),
            Addr::Unix(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("listener {} is a Unix-domain listener", id.index()),
            )),
        }
    }
}
