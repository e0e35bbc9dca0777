//! UDP on the reactor: [`UdpEndpoint`].
//!
//! A datagram socket has no connections and no stream: each `recv_from`
//! returns one whole datagram with its sender, each `send_to` sends one. The
//! reactor side is simpler than TCP's, with two rules of its own:
//!
//! - **Receive until `WouldBlock`** (edge-triggered, as always), but at most a
//!   budget of datagrams per event, so a flood on one socket cannot starve
//!   the rest; past the budget the endpoint schedules itself again.
//! - **Sends do not wait.** `send_to` sends at once when the socket takes it.
//!   When the send buffer is full, the datagram waits in a bounded queue and
//!   goes out on the next writable event; when the queue is full too, the
//!   datagram is dropped and counted (UDP promised no delivery anyway, and a
//!   sender must not grow memory without bound).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use log::{debug, warn};
use mio::Interest;

use crate::key::Key;
use crate::reactor::{Dispatch, Event, Reactor};
use crate::ready::Ready;

/// The largest UDP payload (IPv4: 65,535 − 8 − 20); the receive buffer is
/// this big, so no datagram is ever truncated.
const MAX_DATAGRAM: usize = 65_535;

/// Limits of a [`UdpEndpoint`].
///
/// ```
/// let config = reactor::udp::UdpConfig::default().max_queued_bytes(64 * 1024);
/// assert_eq!(config.get_max_queued_bytes(), 64 * 1024);
/// ```
#[derive(Clone, Debug)]
pub struct UdpConfig {
    max_queued_bytes: usize,
    max_queued_datagrams: usize,
    datagrams_per_event: usize,
}

impl Default for UdpConfig {
    fn default() -> UdpConfig {
        UdpConfig {
            max_queued_bytes: 1024 * 1024,
            max_queued_datagrams: 1024,
            datagrams_per_event: 64,
        }
    }
}

impl UdpConfig {
    /// Bytes of datagrams waiting for the socket to be writable (default 1 MiB).
    pub fn max_queued_bytes(mut self, bytes: usize) -> UdpConfig {
        self.max_queued_bytes = bytes;
        self
    }

    /// The current `max_queued_bytes`.
    pub fn get_max_queued_bytes(&self) -> usize {
        self.max_queued_bytes
    }

    /// Datagrams waiting for the socket to be writable (default 1024).
    pub fn max_queued_datagrams(mut self, count: usize) -> UdpConfig {
        self.max_queued_datagrams = count;
        self
    }

    /// Datagrams received per event before others get a turn (default 64).
    pub fn datagrams_per_event(mut self, count: usize) -> UdpConfig {
        self.datagrams_per_event = count.max(1);
        self
    }
}

/// Counters of a [`UdpEndpoint`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpStats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams dropped because the send queue was full.
    pub dropped: u64,
    /// Datagrams waiting in the send queue now.
    pub queued: usize,
}

type OnDatagram = Box<dyn FnMut(&mut Reactor, &UdpEndpoint, SocketAddr, &[u8])>;

struct State {
    socket: mio::net::UdpSocket,
    key: Option<Key>,
    queue: VecDeque<(SocketAddr, Box<[u8]>)>,
    queued_bytes: usize,
    writable: bool,
    config: UdpConfig,
    stats: UdpStats,
}

struct Core {
    state: RefCell<State>,
    on_datagram: RefCell<OnDatagram>,
    buffer: RefCell<Box<[u8]>>,
    me: Weak<Core>,
}

/// A UDP socket registered with a [`Reactor`]: each datagram that arrives is
/// handed to a callback with its sender's address; [`send_to`] sends without
/// ever blocking. A cheap handle (`Clone`): keep one to send from timers or
/// other callbacks.
///
/// [`send_to`]: UdpEndpoint::send_to
///
/// # Examples
///
/// An echo endpoint and a client endpoint on one loop:
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use reactor::Reactor;
/// use reactor::udp::UdpEndpoint;
///
/// let mut reactor = Reactor::new()?;
/// let echo = UdpEndpoint::bind(&mut reactor, "127.0.0.1:0".parse().unwrap(), |_, endpoint, from, data| {
///     let _ = endpoint.send_to(data, from);
/// })?;
/// let client = UdpEndpoint::bind(&mut reactor, "127.0.0.1:0".parse().unwrap(), |reactor, _, _, data| {
///     assert_eq!(data, b"ping");
///     reactor.stop();
/// })?;
/// client.send_to(b"ping", echo.local_addr()?)?;
/// reactor.run()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct UdpEndpoint {
    core: Rc<Core>,
}

impl UdpEndpoint {
    /// Binds a UDP socket to `addr` (port 0 picks one) and registers it.
    ///
    /// # Errors
    ///
    /// Whatever `bind` answers (`AddrInUse`, `AddrNotAvailable`), or an error
    /// registering the socket.
    pub fn bind<F>(
        reactor: &mut Reactor,
        addr: SocketAddr,
        on_datagram: F,
    ) -> io::Result<UdpEndpoint>
    where
        F: FnMut(&mut Reactor, &UdpEndpoint, SocketAddr, &[u8]) + 'static,
    {
        let socket = mio::net::UdpSocket::bind(addr)?;
        UdpEndpoint::from_socket(reactor, socket, UdpConfig::default(), on_datagram)
    }

    /// Registers a UDP socket made elsewhere (with options of your own, or a
    /// dual-stack one from [`socket::udp_socket_dual_stack`](crate::socket::udp_socket_dual_stack)).
    ///
    /// # Errors
    ///
    /// An error registering the socket.
    pub fn from_socket<F>(
        reactor: &mut Reactor,
        socket: mio::net::UdpSocket,
        config: UdpConfig,
        on_datagram: F,
    ) -> io::Result<UdpEndpoint>
    where
        F: FnMut(&mut Reactor, &UdpEndpoint, SocketAddr, &[u8]) + 'static,
    {
        let core = Rc::new_cyclic(|me| Core {
            state: RefCell::new(State {
                socket,
                key: None,
                queue: VecDeque::new(),
                queued_bytes: 0,
                writable: true,
                config,
                stats: UdpStats::default(),
            }),
            on_datagram: RefCell::new(Box::new(on_datagram)),
            buffer: RefCell::new(vec![0; MAX_DATAGRAM].into_boxed_slice()),
            me: me.clone(),
        });
        let dispatch: Rc<dyn Dispatch> = core.clone();
        let mut state = core.state.borrow_mut();
        // Register both directions once: waiting for writability later costs
        // no epoll_ctl.
        let key = reactor.register_routed(
            &mut state.socket,
            Interest::READABLE | Interest::WRITABLE,
            dispatch,
            0,
        )?;
        state.key = Some(key);
        drop(state);
        Ok(UdpEndpoint { core })
    }

    /// Sends one datagram to `to`: at once if the socket takes it, otherwise
    /// queued until it is writable.
    ///
    /// # Errors
    ///
    /// - `WouldBlock` if the send queue is full: the datagram is dropped (and
    ///   counted in [`UdpStats::dropped`]);
    /// - `NotConnected` if the endpoint was closed;
    /// - whatever `sendto` answers at once (`InvalidInput` for an address of
    ///   the wrong family, a message too long for a datagram).
    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<()> {
        let mut state = self.core.state.borrow_mut();
        if state.key.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the UDP endpoint is closed",
            ));
        }
        if state.queue.is_empty() && state.writable {
            match state.socket.send_to(data, to) {
                Ok(_) => {
                    state.stats.sent += 1;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => state.writable = false,
                Err(e) => return Err(e),
            }
        }
        let config = &state.config;
        if state.queued_bytes + data.len() > config.max_queued_bytes
            || state.queue.len() >= config.max_queued_datagrams
        {
            state.stats.dropped += 1;
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "UDP send queue full: datagram dropped",
            ));
        }
        state.queued_bytes += data.len();
        state.queue.push_back((to, data.into()));
        state.stats.queued = state.queue.len();
        Ok(())
    }

    /// The address the socket is bound to.
    ///
    /// # Errors
    ///
    /// Whatever `getsockname` answers.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.core.state.borrow().socket.local_addr()
    }

    /// The endpoint's counters.
    pub fn stats(&self) -> UdpStats {
        self.core.state.borrow().stats
    }

    /// Deregisters the socket; queued datagrams are dropped. The socket
    /// closes when the last handle is dropped.
    ///
    /// # Errors
    ///
    /// An error deregistering it (it is closed for sending all the same).
    pub fn close(&self, reactor: &mut Reactor) -> io::Result<()> {
        let mut state = self.core.state.borrow_mut();
        let Some(key) = state.key.take() else {
            return Ok(());
        };
        state.queue.clear();
        state.queued_bytes = 0;
        state.stats.queued = 0;
        reactor.deregister_routed(&mut state.socket, key)
    }
}

impl Core {
    fn receive(&self, reactor: &mut Reactor) {
        let Some(endpoint) = self.me.upgrade().map(|core| UdpEndpoint { core }) else {
            return;
        };
        let budget = self.state.borrow().config.datagrams_per_event;
        for _ in 0..budget {
            let mut buffer = self.buffer.borrow_mut();
            let received = {
                let mut state = self.state.borrow_mut();
                if state.key.is_none() {
                    return;
                }
                let result = state.socket.recv_from(&mut buffer);
                if result.is_ok() {
                    state.stats.received += 1;
                }
                result
            };
            match received {
                Ok((n, from)) => {
                    debug!("udp: {n} bytes from {from}");
                    // The callback may send, or close the endpoint: only the
                    // buffer stays borrowed while it runs.
                    (self.on_datagram.borrow_mut())(reactor, &endpoint, from, &buffer[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // An ICMP error for an earlier send (port unreachable, ...):
                // it says nothing about the next datagram.
                Err(e) => debug!("udp: recv_from: {e}"),
            }
        }
        // The budget ran out: more may be waiting, and no new edge will say so.
        if let Some(key) = self.state.borrow().key {
            reactor.schedule_event(key, Ready::READABLE);
        }
    }

    fn flush(&self) {
        let mut state = self.state.borrow_mut();
        state.writable = true;
        while let Some((to, data)) = state.queue.front() {
            match state.socket.send_to(data, *to) {
                Ok(_) => state.stats.sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    state.writable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("udp: send_to {to}: {e}; datagram dropped");
                    state.stats.dropped += 1;
                }
            }
            if let Some((_, data)) = state.queue.pop_front() {
                state.queued_bytes -= data.len();
            }
        }
        state.stats.queued = state.queue.len();
    }
}

impl Dispatch for Core {
    fn dispatch(&self, reactor: &mut Reactor, _tag: usize, event: Event) {
        if event.is_writable() {
            self.flush();
        }
        if event.is_readable() || event.ready().is_error() {
            self.receive(reactor);
        }
    }
}

impl fmt::Debug for UdpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.core.state.borrow();
        f.debug_struct("UdpEndpoint")
            .field("local_addr", &state.socket.local_addr().ok())
            .field("stats", &state.stats)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn endpoint(
        reactor: &mut Reactor,
        config: UdpConfig,
        received: Rc<RefCell<Vec<Vec<u8>>>>,
    ) -> UdpEndpoint {
        let socket = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        UdpEndpoint::from_socket(reactor, socket, config, move |_, _, _, data| {
            received.borrow_mut().push(data.to_vec());
        })
        .unwrap()
    }

    #[test]
    fn a_full_socket_queues_boundedly_then_flushes_on_writability() {
        let mut reactor = Reactor::new().unwrap();
        let got = Rc::new(RefCell::new(Vec::new()));
        let receiver = endpoint(&mut reactor, UdpConfig::default(), got.clone());
        let config = UdpConfig::default().max_queued_datagrams(3);
        let sender = endpoint(&mut reactor, config, Rc::new(RefCell::new(Vec::new())));
        let to = receiver.local_addr().unwrap();
        // Pretend the send buffer is full, as after a WouldBlock.
        sender.core.state.borrow_mut().writable = false;
        for i in 0..3u8 {
            sender.send_to(&[i], to).unwrap();
        }
        let err = sender.send_to(&[9], to).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!((sender.stats().queued, sender.stats().dropped), (3, 1));
        // A writable event flushes the queue, in order.
        let key = sender.core.state.borrow().key.unwrap();
        sender
            .core
            .dispatch(&mut reactor, 0, Event::new(key, Ready::WRITABLE));
        assert_eq!(sender.stats().queued, 0);
        for _ in 0..100 {
            if got.borrow().len() == 3 {
                break;
            }
            reactor.run_once(Some(Duration::from_millis(20))).unwrap();
        }
        assert_eq!(*got.borrow(), [vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn a_flood_is_received_a_budget_at_a_time_and_completely() {
        let mut reactor = Reactor::new().unwrap();
        let got = Rc::new(RefCell::new(Vec::new()));
        let receiver = endpoint(
            &mut reactor,
            UdpConfig::default().datagrams_per_event(4),
            got.clone(),
        );
        let to = receiver.local_addr().unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..200u8 {
            sender.send_to(&[i], to).unwrap();
        }
        let mut turns = 0;
        while got.borrow().len() < 200 {
            assert!(turns < 1000, "received only {}", got.borrow().len());
            reactor.run_once(Some(Duration::from_millis(100))).unwrap();
            turns += 1;
        }
        assert!(
            turns >= 50,
            "a budget of 4 per event needs many turns, took {turns}"
        );
        let expected: Vec<Vec<u8>> = (0..200u8).map(|i| vec![i]).collect();
        assert_eq!(*got.borrow(), expected);
    }

    #[test]
    fn a_closed_endpoint_refuses_to_send() {
        let mut reactor = Reactor::new().unwrap();
        let e = endpoint(
            &mut reactor,
            UdpConfig::default(),
            Rc::new(RefCell::new(Vec::new())),
        );
        let to = e.local_addr().unwrap();
        e.close(&mut reactor).unwrap();
        assert_eq!(
            e.send_to(b"x", to).unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );
        assert_eq!(reactor.stats().registrations, 0);
    }
}
