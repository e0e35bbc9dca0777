//! [`Client`]: one Redis connection's state, driven by the handler that
//! owns it (see the [module documentation](super)).

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::time::Instant;

mod link;

use super::backoff::Backoff;
use super::config::{ClientConfig, Overflow};
use super::event::{ClientStats, Event, Failure, QueueFull};
use crate::codec::resp::{ValueReader, encode};
use crate::service::{ConnId, Connections};

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// [`Client::start`] has not been called.
    Idle,
    /// [`Client::close`] was called: no more connects.
    Closed,
    /// Not connected; the next attempt is due at the instant.
    Down(Instant),
    /// The TCP connect is under way.
    Connecting(ConnId),
    /// Connected; `AUTH` or `HELLO` sent, not yet answered.
    Handshake(ConnId),
    /// Logged in: commands flow.
    Ready(ConnId),
}

impl Link {
    fn conn(self) -> Option<ConnId> {
        match self {
            Link::Connecting(id) | Link::Handshake(id) | Link::Ready(id) => Some(id),
            Link::Idle | Link::Closed | Link::Down(_) => None,
        }
    }
}

/// Whose reply is next.
#[derive(Debug)]
enum Slot<T> {
    /// One of the client's own login commands.
    Handshake,
    /// The client's own `PING`, checking an idle connection.
    Ping,
    /// The caller's command, with its tag.
    Caller(T),
}

/// Subscriptions sent in one command at most, after a reconnect: keeps each
/// command a reasonable size however many channels there are.
const SUBSCRIBE_BATCH: usize = 512;

/// A Redis connection's state, without I/O of its own: see the
/// [module documentation](super) for how a handler drives it, and a whole
/// example on a loop.
///
/// `T` is the caller's tag for a command, handed back with its reply.
///
/// # Examples
///
/// ```
/// use reactor::redis::{Client, ClientConfig};
///
/// /// What a chat node's commands are for.
/// # #[allow(dead_code)]
/// enum Tag { Publish, Who(u32) }
///
/// let client: Client<Tag> = Client::new(ClientConfig::new("127.0.0.1:6379".parse().unwrap()));
/// // Nothing happens until `start` is called from the handler's side.
/// assert!(!client.is_connected());
/// assert_eq!(client.retry_at(), None);
/// ```
pub struct Client<T> {
    config: ClientConfig,
    link: Link,
    backoff: Backoff,
    /// Keeps its place inside a reply that has not fully arrived (a large
    /// `/who` answer), so it is parsed once, not again per read.
    decoder: ValueReader,
    /// Commands not yet written, encoded, with their tags.
    queue: VecDeque<(Vec<u8>, T)>,
    /// Commands written and not yet answered, oldest first.
    in_flight: VecDeque<Slot<T>>,
    /// With commands in flight: since when the client has waited for a
    /// reply (the last reply, or the first command). Without: since when the
    /// connection has been idle.
    since: Instant,
    channels: BTreeSet<Vec<u8>>,
    patterns: BTreeSet<Vec<u8>>,
    /// RESP2: a subscription has been sent on this connection, so arrays
    /// naming a pub/sub kind are pushes. (It stays set after the last
    /// unsubscribe: a confirmation that the count fell to 0 may be followed
    /// by another's, already sent.)
    subscribed: bool,
    events: VecDeque<Event<T>>,
    scratch: Vec<u8>,
    stats: ClientStats,
    /// [`Client::close`] was called.
    closing: bool,
    /// [`Client::cork`]ed: commands are encoded into `held` for
    /// [`uncork`](Client::uncork) to write.
    corked: bool,
    /// The corked commands, in one piece (their replies are awaited
    /// already: they count in flight).
    held: Vec<u8>,
}

impl<T> Client<T> {
    /// A client for `config`, not connected yet: call
    /// [`start`](Client::start).
    pub fn new(config: ClientConfig) -> Client<T> {
        Client {
            backoff: Backoff::new(config.backoff_first, config.backoff_cap),
            decoder: ValueReader::new(config.limits),
            config,
            link: Link::Idle,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            since: Instant::now(),
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            subscribed: false,
            events: VecDeque::new(),
            scratch: Vec::new(),
            stats: ClientStats::default(),
            closing: false,
            corked: false,
            held: Vec::new(),
        }
    }

    /// Starts connecting (once; later calls do nothing). From then on the
    /// client reconnects by itself, when [`tick`](Client::tick) finds a
    /// backoff over.
    pub fn start(&mut self, conns: &mut Connections<'_>) {
        if self.link == Link::Idle {
            self.connect(conns);
        }
    }

    /// Reconnects if the backoff is over, and checks the connection's
    /// health (see [`ClientConfig::reply_timeout`]). Call it every
    /// [`TICK`](super::TICK) or so, from a timer.
    pub fn tick(&mut self, conns: &mut Connections<'_>, now: Instant) {
        match self.link {
            Link::Down(at) if now >= at => self.connect(conns),
            Link::Handshake(id) | Link::Ready(id) => {
                let Some(timeout) = self.config.reply_timeout else {
                    return;
                };
                let quiet = now.saturating_duration_since(self.since);
                if !self.in_flight.is_empty() && quiet >= timeout {
                    let why = format!(
                        "Redis at {} sent no reply for {} ms",
                        self.config.addr,
                        quiet.as_millis()
                    );
                    self.lose(conns, id, why);
                } else if self.in_flight.is_empty() && quiet >= timeout / 2 {
                    if let Link::Ready(id) = self.link {
                        if conns.send(id, b"*1\r\n$4\r\nPING\r\n").is_ok() {
                            self.push_slot(Slot::Ping);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Closes the connection gracefully and stops reconnecting: for a
    /// program's shutdown (send its last commands first). What was written
    /// reaches Redis, which runs it, but a graceful close reads no more, so
    /// the commands in flight get [`Event::Failed`] with [`Failure::Lost`]
    /// rather than their replies. Commands still waiting in the queue are
    /// dropped ([`Failure::Dropped`]). No [`Event::Disconnected`] follows.
    pub fn close(&mut self, conns: &mut Connections<'_>) {
        self.pump(conns);
        self.closing = true;
        for (_, tag) in self.queue.drain(..) {
            self.events.push_back(Event::Failed {
                tag,
                failure: Failure::Dropped,
            });
        }
        match self.link.conn() {
            // `on_close` ends it, when the output is written.
            Some(id) => {
                let _ = conns.close(id);
            }
            None => self.link = Link::Closed,
        }
    }

    /// True if `id` is this client's connection (connecting or connected):
    /// the handler forwards that connection's calls here.
    pub fn owns(&self, id: ConnId) -> bool {
        self.link.conn() == Some(id)
    }

    /// True once logged in, until the connection is lost: commands sent now
    /// go to Redis at once (unless the window is full).
    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Ready(_))
    }

    /// When the next connect attempt is due, while disconnected.
    pub fn retry_at(&self) -> Option<Instant> {
        match self.link {
            Link::Down(at) => Some(at),
            _ => None,
        }
    }

    /// The settings it was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Its counters.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            queued: self.queue.len(),
            in_flight: self.in_flight.len(),
            ..self.stats
        }
    }

    /// The next thing to tell the owner, oldest first. Take them all after
    /// each call forwarded to the client (and after [`send`](Client::send)):
    /// they are not dropped, so a caller that never takes them grows the
    /// queue.
    pub fn next_event(&mut self) -> Option<Event<T>> {
        self.events.pop_front()
    }

    /// Sends a command (`args`, the name first), or queues it while Redis
    /// is away or the window is full; its reply comes as [`Event::Reply`]
    /// with `tag`.
    ///
    /// Do not send `SUBSCRIBE` and its kin this way: use
    /// [`subscribe`](Client::subscribe), which keeps the set for reconnects
    /// (and whose confirmations are not replies).
    ///
    /// # Errors
    ///
    /// [`QueueFull`] with the tag, when the queue is full and the policy is
    /// [`Overflow::Reject`]. With [`Overflow::DropOldest`] it never fails:
    /// the oldest waiting command is dropped instead (an [`Event::Failed`]).
    pub fn send<A: AsRef<[u8]>>(
        &mut self,
        conns: &mut Connections<'_>,
        args: &[A],
        tag: T,
    ) -> Result<(), QueueFull<T>> {
        if self.queue.is_empty() && self.has_room(conns) {
            if let Link::Ready(id) = self.link {
                if self.corked {
                    // Straight into the held piece: no copy of its own.
                    encode::command(&mut self.held, args);
                    self.push_slot(Slot::Caller(tag));
                    return Ok(());
                }
                self.scratch.clear();
                encode::command(&mut self.scratch, args);
                if conns.send(id, &self.scratch).is_ok() {
                    self.push_slot(Slot::Caller(tag));
                    return Ok(());
                }
                // The connection is closing: `on_close` follows, and the
                // command waits for the next one.
            }
        }
        self.scratch.clear();
        encode::command(&mut self.scratch, args);
        if self.queue.len() >= self.config.max_queued {
            match self.config.overflow {
                Overflow::Reject => return Err(QueueFull(tag)),
                Overflow::DropOldest => {
                    if let Some((_, old)) = self.queue.pop_front() {
                        self.stats.dropped += 1;
                        self.events.push_back(Event::Failed {
                            tag: old,
                            failure: Failure::Dropped,
                        });
                    }
                }
            }
        }
        self.queue.push_back((self.scratch.clone(), tag));
        Ok(())
    }

    /// Holds the commands sent from now on, encoded one after another in
    /// one piece, until [`uncork`](Client::uncork) writes the piece with one
    /// send (like `TCP_CORK`). They count in flight meanwhile, so the
    /// window still bounds them, and a connection lost before the uncork
    /// fails them as [`Failure::Lost`].
    /// A caller that sends many commands between other writes (a chat node
    /// publishing each line it broadcasts) corks on the first and uncorks
    /// once per turn, with [`ServiceHandle::defer`], so that the commands
    /// go out as one piece and the other writes are not cut up by them.
    ///
    /// [`ServiceHandle::defer`]: crate::service::ServiceHandle::defer
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::redis::{Client, ClientConfig};
    ///
    /// let mut client: Client<()> = Client::new(ClientConfig::new("127.0.0.1:6379".parse().unwrap()));
    /// client.cork();
    /// assert!(client.is_corked());
    /// ```
    pub fn cork(&mut self) {
        self.corked = true;
    }

    /// Ends a [`cork`](Client::cork): what was held is written now, as far
    /// as the window allows (the rest as replies come).
    pub fn uncork(&mut self, conns: &mut Connections<'_>) {
        self.corked = false;
        if let Link::Ready(id) = self.link {
            if !self.held.is_empty() {
                // Fails only for a closing connection: its `on_close`
                // fails the held commands' slots.
                let _ = conns.send(id, &self.held);
            }
        }
        self.held.clear();
        self.pump(conns);
    }

    /// Whether the client is [`cork`](Client::cork)ed.
    pub fn is_corked(&self) -> bool {
        self.corked
    }

    /// Subscribes to `channel`, now if connected, and again after every
    /// reconnect until [`unsubscribe`](Client::unsubscribe)d. Subscribing
    /// twice does nothing more.
    pub fn subscribe(&mut self, conns: &mut Connections<'_>, channel: &[u8]) {
        if self.channels.insert(channel.to_vec()) {
            self.send_subscription(conns, "SUBSCRIBE", channel);
        }
    }

    /// Stops a subscription made with [`subscribe`](Client::subscribe).
    pub fn unsubscribe(&mut self, conns: &mut Connections<'_>, channel: &[u8]) {
        if self.channels.remove(channel) {
            self.send_subscription(conns, "UNSUBSCRIBE", channel);
        }
    }

    /// Subscribes to every channel matching `pattern` (Redis's glob), as
    /// [`subscribe`](Client::subscribe) does to one.
    pub fn psubscribe(&mut self, conns: &mut Connections<'_>, pattern: &[u8]) {
        if self.patterns.insert(pattern.to_vec()) {
            self.send_subscription(conns, "PSUBSCRIBE", pattern);
        }
    }

    /// Stops a subscription made with [`psubscribe`](Client::psubscribe).
    pub fn punsubscribe(&mut self, conns: &mut Connections<'_>, pattern: &[u8]) {
        if self.patterns.remove(pattern) {
            self.send_subscription(conns, "PUNSUBSCRIBE", pattern);
        }
    }

    /// The channels subscribed to (whether or not Redis is there now).
    pub fn channels(&self) -> impl Iterator<Item = &[u8]> {
        self.channels.iter().map(Vec::as_slice)
    }

    fn send_subscription(&mut self, conns: &mut Connections<'_>, verb: &str, name: &[u8]) {
        // While not connected the set is all there is: it is sent whole
        // once logged in.
        if let Link::Ready(id) = self.link {
            self.scratch.clear();
            encode::command(&mut self.scratch, &[verb.as_bytes(), name]);
            let _ = conns.send(id, &self.scratch);
            self.subscribed = true;
        }
    }

    fn has_room(&self, conns: &Connections<'_>) -> bool {
        let Link::Ready(id) = self.link else {
            return false;
        };
        self.in_flight.len() < self.config.max_in_flight
            && conns.output_len(id).unwrap_or(0) + self.held.len() < self.config.write_window
    }

    /// A command written: its reply is awaited (from now, if it is the only
    /// one).
    fn push_slot(&mut self, slot: Slot<T>) {
        if self.in_flight.is_empty() {
            self.since = Instant::now();
        }
        self.in_flight.push_back(slot);
    }

    /// Writes queued commands while the window has room (not while
    /// corked: they would go ahead of the held piece).
    fn pump(&mut self, conns: &mut Connections<'_>) {
        let Link::Ready(id) = self.link else {
            return;
        };
        if self.corked {
            return;
        }
        while self.has_room(conns) {
            let Some((bytes, tag)) = self.queue.pop_front() else {
                return;
            };
            if conns.send(id, &bytes).is_err() {
                // Closing: on_close follows; keep it for the next connection.
                self.queue.push_front((bytes, tag));
                return;
            }
            self.push_slot(Slot::Caller(tag));
        }
    }
}

impl<T> fmt::Debug for Client<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.config.addr)
            .field("link", &self.link)
            .field("stats", &self.stats())
            .field("channels", &self.channels.len())
            .field("patterns", &self.patterns.len())
            .finish()
    }
}
