//! What a [`Client`] tells its owner: [`Event`]s, and the counters of
//! [`ClientStats`]; and what a refused [`send`](Client::send) returns.

use std::fmt;
use std::time::Duration;

#[cfg(doc)]
use super::{Client, Overflow};
use crate::codec::resp::Value;

/// What a [`Client`] has to tell its owner; taken with
/// [`Client::next_event`].
///
/// # Examples
///
/// ```
/// use reactor::redis::{Event, Failure};
///
/// /// What a chat does with each: the tag says what the command was for.
/// fn describe(event: &Event<&'static str>) -> String {
///     match event {
///         Event::Connected => "up".into(),
///         Event::Disconnected { retry_in, .. } => format!("down, retry in {retry_in:?}"),
///         Event::Reply { tag, value } => format!("{tag}: {value:?}"),
///         Event::Failed { tag, failure: Failure::Lost } => format!("{tag}: maybe ran"),
///         Event::Failed { tag, failure: Failure::Dropped } => format!("{tag}: never sent"),
///         Event::Message { channel, payload, .. } => format!(
///             "{}: {}",
///             String::from_utf8_lossy(channel),
///             String::from_utf8_lossy(payload)
///         ),
///     }
/// }
/// assert_eq!(describe(&Event::Connected), "up");
/// ```
#[derive(Debug, PartialEq)]
pub enum Event<T> {
    /// Connected and logged in: the subscriptions have been sent again and
    /// the queue is being written.
    Connected,
    /// The connection is gone, or a connect failed; the next attempt is in
    /// `retry_in`.
    Disconnected {
        /// What happened, for the log.
        reason: String,
        /// The backoff before the next attempt.
        retry_in: Duration,
    },
    /// The reply to the command sent with `tag` (an error reply is a
    /// [`Value::Error`]).
    Reply {
        /// The caller's tag.
        tag: T,
        /// Redis's reply.
        value: Value,
    },
    /// The command sent with `tag` will get no reply.
    Failed {
        /// The caller's tag.
        tag: T,
        /// Why.
        failure: Failure,
    },
    /// A pub/sub message on a channel the client subscribes to (or that
    /// matches one of its patterns).
    Message {
        /// The channel it was published on.
        channel: Vec<u8>,
        /// The pattern it matched, for a `psubscribe`.
        pattern: Option<Vec<u8>>,
        /// What was published.
        payload: Vec<u8>,
    },
}

/// Why a command got no reply ([`Event::Failed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// It was written, and the connection was lost before its reply: Redis
    /// may or may not have run it.
    Lost,
    /// It waited in a full queue and was dropped for a newer one
    /// ([`Overflow::DropOldest`]); Redis never saw it.
    Dropped,
}

/// A command refused because the queue is full ([`Overflow::Reject`]),
/// with the tag it was given.
///
/// ```
/// use reactor::redis::QueueFull;
/// let refused = QueueFull(7u32);
/// assert_eq!(refused.to_string(), "the Redis client's queue is full");
/// assert_eq!(refused.0, 7);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueFull<T>(pub T);

impl<T> fmt::Display for QueueFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the Redis client's queue is full")
    }
}

impl<T: fmt::Debug> std::error::Error for QueueFull<T> {}

/// A [`Client`]'s counters, from [`Client::stats`].
///
/// ```
/// use reactor::redis::{Client, ClientConfig};
/// let client: Client<()> = Client::new(ClientConfig::new("127.0.0.1:6379".parse().unwrap()));
/// let stats = client.stats();
/// assert_eq!((stats.queued, stats.dropped, stats.connects), (0, 0, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Commands waiting in the queue now.
    pub queued: usize,
    /// Commands written and not yet answered now.
    pub in_flight: usize,
    /// Commands dropped from a full queue, in all.
    pub dropped: u64,
    /// Connections that reached [`Event::Connected`], in all.
    pub connects: u64,
    /// Disconnects and failed connects, in all.
    pub disconnects: u64,
}
