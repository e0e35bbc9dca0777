//! [`ClientConfig`]: where Redis is, how to log in, and every limit of a
//! [`Client`](super::Client).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::codec::resp::{Limits, Protocol};

/// What [`Client::send`](super::Client::send) does when the queue of
/// commands waiting for Redis is full.
///
/// ```
/// use reactor::redis::{ClientConfig, Overflow};
/// // A chat's publishes: the newest matter most.
/// let config = ClientConfig::new("127.0.0.1:6379".parse().unwrap())
///     .max_queued(100_000, Overflow::DropOldest);
/// # let _ = config;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// The new command is refused with [`QueueFull`](super::QueueFull):
    /// for commands the caller must not lose silently.
    Reject,
    /// The oldest waiting command is dropped, reported as
    /// [`Event::Failed`](super::Event::Failed) and counted: for a stream of
    /// messages where the newest matter most (a chat's publishes).
    DropOldest,
}

/// The settings of a [`Client`](super::Client).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reactor::codec::resp::Protocol;
/// use reactor::redis::{ClientConfig, Overflow};
///
/// let config = ClientConfig::new("127.0.0.1:6379".parse().unwrap())
///     .password(b"secret".to_vec())
///     .protocol(Protocol::Resp3)
///     .max_queued(100_000, Overflow::DropOldest)
///     .backoff(Duration::from_millis(50), Duration::from_secs(2));
/// assert_eq!(config.get_max_queued(), 100_000);
/// ```
#[derive(Clone)]
pub struct ClientConfig {
    pub(crate) addr: SocketAddr,
    pub(crate) username: Option<Vec<u8>>,
    pub(crate) password: Option<Vec<u8>>,
    pub(crate) protocol: Protocol,
    pub(crate) max_queued: usize,
    pub(crate) overflow: Overflow,
    pub(crate) max_in_flight: usize,
    pub(crate) write_window: usize,
    pub(crate) backoff_first: Duration,
    pub(crate) backoff_cap: Duration,
    pub(crate) limits: Limits,
    pub(crate) reply_timeout: Option<Duration>,
}

impl ClientConfig {
    /// Redis at `addr` (resolved already: resolving blocks), RESP2, no
    /// password, 10,000 queued commands refused beyond, 1,024 in flight
    /// within a 1 MiB window, backoff from 100 ms to 5 s, replies held to
    /// 64 MiB strings and a million elements, and a 10 s reply timeout.
    pub fn new(addr: SocketAddr) -> ClientConfig {
        ClientConfig {
            addr,
            username: None,
            password: None,
            protocol: Protocol::Resp2,
            max_queued: 10_000,
            overflow: Overflow::Reject,
            max_in_flight: 1024,
            write_window: 1 << 20,
            backoff_first: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            limits: Limits {
                max_bulk: 64 << 20,
                ..Limits::default()
            },
            reply_timeout: Some(Duration::from_secs(10)),
        }
    }

    /// Sends `AUTH password` (or `HELLO 3 AUTH default password`) on each
    /// connect.
    pub fn password(mut self, password: Vec<u8>) -> ClientConfig {
        self.password = Some(password);
        self
    }

    /// Logs in as this ACL user (with [`password`](ClientConfig::password));
    /// the default is Redis's `default` user.
    pub fn username(mut self, username: Vec<u8>) -> ClientConfig {
        self.username = Some(username);
        self
    }

    /// Speaks RESP3 (`HELLO 3` on connect), where one connection can both
    /// subscribe and run commands, and messages arrive as pushes.
    pub fn protocol(mut self, protocol: Protocol) -> ClientConfig {
        self.protocol = protocol;
        self
    }

    /// At most `max` commands wait for Redis (at least 1); `overflow` says
    /// what happens to one more.
    pub fn max_queued(mut self, max: usize, overflow: Overflow) -> ClientConfig {
        self.max_queued = max.max(1);
        self.overflow = overflow;
        self
    }

    /// At most `max` commands written and not yet answered (at least 1):
    /// bounds the tags held for replies when Redis reads faster than it
    /// answers.
    pub fn max_in_flight(mut self, max: usize) -> ClientConfig {
        self.max_in_flight = max.max(1);
        self
    }

    /// Commands are held in the client's queue while the connection's
    /// output queue holds this many bytes or more: keep it well under the
    /// service's [`output_limit`](crate::service::Config::output_limit),
    /// past which the service would close the connection.
    pub fn write_window(mut self, bytes: usize) -> ClientConfig {
        self.write_window = bytes.max(1);
        self
    }

    /// The first reconnect delay and the cap it doubles up to (each delay
    /// is drawn between half of it and all of it).
    pub fn backoff(mut self, first: Duration, cap: Duration) -> ClientConfig {
        self.backoff_first = first.max(Duration::from_millis(1));
        self.backoff_cap = cap.max(self.backoff_first);
        self
    }

    /// The limits replies are held to (a reply past them is a protocol
    /// error, and a disconnect). A reply must also fit the service's
    /// [`input_limit`](crate::service::Config::input_limit) while it
    /// arrives.
    pub fn limits(mut self, limits: Limits) -> ClientConfig {
        self.limits = limits;
        self
    }

    /// A connection on which a reply has been awaited this long, with
    /// nothing arriving, is taken for dead and dropped (a disconnect, then a
    /// reconnect): a Redis that hangs, or a network that drops packets
    /// without a reset, is noticed. An idle connection is checked with a
    /// `PING` every half of it, so a subscriber's is noticed too. `None`
    /// waits for ever (for the kernel's keepalive).
    pub fn reply_timeout(mut self, timeout: Option<Duration>) -> ClientConfig {
        self.reply_timeout = timeout.map(|t| t.max(Duration::from_millis(2)));
        self
    }

    /// Where Redis is.
    pub fn get_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The queue's bound.
    pub fn get_max_queued(&self) -> usize {
        self.max_queued
    }

    /// The protocol spoken.
    pub fn get_protocol(&self) -> Protocol {
        self.protocol
    }
}

impl fmt::Debug for ClientConfig {
    /// Everything but the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("addr", &self.addr)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("protocol", &self.protocol)
            .field("max_queued", &self.max_queued)
            .field("overflow", &self.overflow)
            .field("max_in_flight", &self.max_in_flight)
            .field("write_window", &self.write_window)
            .field("backoff", &(self.backoff_first, self.backoff_cap))
            .field("reply_timeout", &self.reply_timeout)
            .finish_non_exhaustive()
    }
}
