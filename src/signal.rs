//! Ctrl-C and `kill`: SIGINT and SIGTERM as events on the loop (the `signal`
//! feature, on by default).
//!
//! A signal handler may do almost nothing safely; in particular it must not
//! touch the loop's state. So the signals are not handled where they land:
//! `signal-hook` writes a byte to a pipe, the pipe is registered with the
//! reactor like any socket, and the callback runs in the loop's I/O step, an
//! ordinary callback with `&mut Reactor`. [`Service::shutdown_on_signal`]
//! builds the usual graceful stop on it.
//!
//! [`Service::shutdown_on_signal`]: crate::service::Service::shutdown_on_signal

use std::io;
use std::time::Duration;

use log::info;

use mio::Interest;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::key::Key;
use crate::reactor::Reactor;
use crate::service::{Handler, Service};

/// A signal that asks a server to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownSignal {
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
    /// SIGTERM: `kill`, a service manager, a container runtime.
    Terminate,
}

impl ShutdownSignal {
    /// The signal's name, for log lines: `"SIGINT"` or `"SIGTERM"`.
    ///
    /// ```
    /// use reactor::signal::ShutdownSignal;
    /// assert_eq!(ShutdownSignal::Terminate.name(), "SIGTERM");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            ShutdownSignal::Interrupt => "SIGINT",
            ShutdownSignal::Terminate => "SIGTERM",
        }
    }
}

/// Calls `on_signal` on the loop's thread, in the I/O step of a turn, each
/// time SIGINT or SIGTERM arrives. From then on those signals no longer end
/// the process by their default action: `on_signal` decides. Install it
/// before announcing that the server is ready, or a signal sent as soon as
/// the announcement is read kills the process.
///
/// Keep the registration for the life of the process: the handlers stay
/// installed when its key is deregistered, so the signals would then be
/// caught and forgotten, and SIGTERM would no longer stop the process.
///
/// # Errors
///
/// Creating the pipe or installing the handlers (`EMFILE`), or registering
/// the pipe with the reactor.
///
/// # Examples
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use reactor::Reactor;
/// use reactor::signal::on_shutdown_signal;
///
/// let mut reactor = Reactor::new()?;
/// on_shutdown_signal(&mut reactor, |reactor, signal| {
///     eprintln!("{}: stopping", signal.name());
///     reactor.stop();
/// })?;
/// // reactor.run()? would now run until Ctrl-C.
/// # Ok(())
/// # }
/// ```
pub fn on_shutdown_signal<F>(reactor: &mut Reactor, mut on_signal: F) -> io::Result<Key>
where
    F: FnMut(&mut Reactor, ShutdownSignal) + 'static,
{
    let signals = Signals::new([SIGINT, SIGTERM])?;
    reactor.register(
        signals,
        Interest::READABLE,
        move |reactor, signals: &mut Signals, _| {
            for signal in signals.pending() {
                let signal = if signal == SIGINT {
                    ShutdownSignal::Interrupt
                } else {
                    ShutdownSignal::Terminate
                };
                on_signal(reactor, signal);
            }
        },
    )
}

impl<H: Handler> Service<H> {
    /// The usual graceful stop on Ctrl-C and `kill`: the first SIGINT or
    /// SIGTERM starts [`shutdown`](Service::shutdown) with `grace`, and
    /// [`Reactor::run`] returns once the shutdown is done; a second signal
    /// stops the loop at once, with whatever is still open. Each step is
    /// logged at `info`. Install it before announcing that the server is
    /// ready (see [`on_shutdown_signal`]).
    ///
    /// To send a goodbye first, use
    /// [`shutdown_on_signal_with`](Service::shutdown_on_signal_with); to
    /// stop several services together, [`on_shutdown_signal`] with your
    /// own callback.
    ///
    /// # Errors
    ///
    /// As for [`on_shutdown_signal`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use std::time::Duration;
    /// use reactor::Reactor;
    /// use reactor::service::{Config, ConnId, Connections, Handler, Service};
    ///
    /// struct Echo;
    /// impl Handler for Echo {
    ///     fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
    ///         let _ = conns.send(id, data);
    ///         data.len()
    ///     }
    /// }
    ///
    /// let mut reactor = Reactor::new()?;
    /// let echo = Service::new(&mut reactor, Echo, Config::default());
    /// echo.shutdown_on_signal(&mut reactor, Duration::from_secs(5))?;
    /// echo.listen(&mut reactor, "127.0.0.1:0".parse().unwrap())?;
    /// // reactor.run()? now returns after Ctrl-C, once every client is flushed.
    /// # Ok(())
    /// # }
    /// ```
    pub fn shutdown_on_signal(
        &self,
        reactor: &mut Reactor,
        grace: Duration,
    ) -> io::Result<crate::Key> {
        self.shutdown_on_signal_with(reactor, grace, |_, _| {})
    }

    /// [`shutdown_on_signal`](Service::shutdown_on_signal), with a goodbye:
    /// on the first signal, `farewell` runs with the handler and its
    /// connections before the shutdown starts, so what it sends (a
    /// "server shutting down" line, a WebSocket close frame with 1001) is
    /// flushed with everything else queued.
    ///
    /// # Errors
    ///
    /// As for [`on_shutdown_signal`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use std::time::Duration;
    /// use reactor::Reactor;
    /// use reactor::service::{Config, ConnId, Connections, Handler, Service};
    ///
    /// struct Echo;
    /// impl Handler for Echo {
    ///     fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
    ///         let _ = conns.send(id, data);
    ///         data.len()
    ///     }
    /// }
    ///
    /// let mut reactor = Reactor::new()?;
    /// let echo = Service::new(&mut reactor, Echo, Config::default());
    /// echo.shutdown_on_signal_with(&mut reactor, Duration::from_secs(5), |_echo, conns| {
    ///     conns.broadcast_all(b"server shutting down\n");
    /// })?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn shutdown_on_signal_with<F>(
        &self,
        reactor: &mut Reactor,
        grace: Duration,
        mut farewell: F,
    ) -> io::Result<crate::Key>
    where
        F: FnMut(&mut H, &mut crate::service::Connections<'_>) + 'static,
    {
        let service = self.clone();
        let mut signalled = false;
        crate::signal::on_shutdown_signal(reactor, move |reactor, signal| {
            if signalled {
                info!("{}: stopping now", signal.name());
                reactor.stop();
                return;
            }
            signalled = true;
            info!("{}: shutting down (grace {grace:?})", signal.name());
            let _ = service.with(reactor, |handler, conns| farewell(handler, conns));
            if let Err(e) = service.shutdown(reactor, grace, |reactor| reactor.stop()) {
                log::warn!("shutdown: {e}");
                reactor.stop();
            }
        })
    }
}
