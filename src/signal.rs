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

use mio::Interest;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::key::Key;
use crate::reactor::Reactor;

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
