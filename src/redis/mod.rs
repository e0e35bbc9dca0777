//! A small Redis client on the connection layer: commands pipelined with
//! their replies matched in order, a bounded queue for when Redis is slow
//! or away, pub/sub with the subscriptions kept across reconnects, and
//! reconnecting with capped exponential backoff and jitter.
//!
//! # How it is driven
//!
//! A [`Client`] does no I/O of its own and owns no connection: it lives in
//! a [`Handler`](crate::service::Handler)'s state, opens its connection with
//! [`Connections::connect`](crate::service::Connections::connect) on the
//! same service (so Redis's socket and the users' sockets share one loop and
//! one thread), and the handler forwards it what happens to that connection:
//!
//! | the handler's call | forward to |
//! |---|---|
//! | `on_open(id, ..)` | [`Client::on_open`] |
//! | `on_data(id, data)` | [`Client::on_data`] (returns how much it consumed) |
//! | `on_drained(id)` | [`Client::on_drained`] |
//! | `on_close(id, reason)` | [`Client::on_close`] |
//! | a periodic timer | [`Client::tick`] (reconnects when the backoff is over) |
//!
//! [`Client::owns`] tells the handler which connection ids are the
//! client's. What the client has to say (a reply, a pub/sub message, a
//! connect or a disconnect) waits in its event queue: take it with
//! [`Client::next_event`] after each forwarded call, and after
//! [`Client::send`] (a queue that drops its oldest command reports it
//! there). Events are not callbacks, so the handler reacts to them with
//! its whole state at hand and nothing borrowed.
//!
//! # Replies, the queue and the window
//!
//! [`Client::send`] takes a command and a tag of the caller's type `T`;
//! the reply comes back as [`Event::Reply`] with that tag, in the order the
//! commands were sent (Redis answers a connection's commands in order, so
//! a queue of tags is all the matching needs). Commands go straight to the
//! connection while fewer than [`ClientConfig::max_in_flight`] await their
//! replies and the connection's output queue holds less than
//! [`ClientConfig::write_window`] bytes; otherwise, and while Redis is not
//! connected, they wait in a queue of at most
//! [`ClientConfig::max_queued`] commands. When it is full the
//! [`Overflow`] policy decides: refuse the new command, or drop the oldest
//! waiting one (reported as [`Event::Failed`] with [`Failure::Dropped`],
//! and counted in [`ClientStats::dropped`]).
//!
//! A connection that is lost with commands in flight fails each of them
//! with [`Failure::Lost`]: Redis may or may not have run them. Commands
//! still waiting in the queue are kept, and sent once it is back.
//!
//! # Pub/sub
//!
//! [`Client::subscribe`] and [`Client::psubscribe`] add to the client's set
//! of subscriptions (and [`unsubscribe`](Client::unsubscribe) /
//! [`punsubscribe`](Client::punsubscribe) take away); the set is sent again
//! after every reconnect. Pushed messages arrive as [`Event::Message`],
//! from RESP2's `message`/`pmessage` arrays or RESP3's pushes alike. With
//! RESP2 a subscribed connection can run nothing but (un)subscriptions and
//! `PING`, so a program that both publishes and subscribes holds two
//! clients, or one speaking RESP3 ([`ClientConfig::protocol`]).
//!
//! # Connecting and faults
//!
//! Each connect sends `AUTH` (from [`ClientConfig::password`]), `HELLO 3`,
//! or else `PING` first; [`Event::Connected`] comes once Redis has answered
//! it, and the queue is written then. Every fault is a disconnect, with
//! [`Event::Disconnected`] and a retry after a backoff that doubles from
//! [`ClientConfig::backoff`]'s first delay up to its cap, each delay drawn
//! between its half and its whole (so that nodes cut off together do not
//! come back in step): a refused connect, a reset, Redis closing the
//! connection (`CLIENT KILL`, or its `client-output-buffer-limit` cutting
//! a slow subscriber), a reply that is not RESP, a refused `AUTH`, or no
//! reply for [`ClientConfig::reply_timeout`] (a Redis that hangs, a network
//! that drops packets without a reset; an idle connection is checked with
//! `PING`, so a quiet subscriber notices too).
//!
//! # Examples
//!
//! A client and a stand-in for Redis (answering `+PONG` to every command)
//! on one loop:
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use reactor::Reactor;
//! use reactor::codec::resp::{Limits, RequestDecoder, Value};
//! use reactor::redis::{Client, ClientConfig, Event};
//! use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};
//!
//! /// Answers `+PONG` to each command.
//! struct FakeRedis(RequestDecoder);
//! impl Handler for FakeRedis {
//!     fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
//!         let mut used = 0;
//!         while let Ok(Some(len)) = self.0.decode(&data[used..]) {
//!             used += len;
//!             let _ = conns.send(id, b"+PONG\r\n");
//!         }
//!         used
//!     }
//! }
//!
//! /// Sends three PINGs and stops the loop at the third reply.
//! struct App { redis: Client<u32>, replies: Vec<(u32, Value)> }
//! impl App {
//!     fn events(&mut self, conns: &mut Connections<'_>) {
//!         while let Some(event) = self.redis.next_event() {
//!             match event {
//!                 Event::Connected => {}
//!                 Event::Reply { tag, value } => self.replies.push((tag, value)),
//!                 other => panic!("unexpected {other:?}"),
//!             }
//!         }
//!         if self.replies.len() == 3 {
//!             conns.reactor().stop();
//!         }
//!     }
//! }
//! impl Handler for App {
//!     fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
//!         self.redis.on_open(conns, id);
//!         self.events(conns);
//!     }
//!     fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
//!         let used = self.redis.on_data(conns, id, data);
//!         self.events(conns);
//!         used
//!     }
//!     fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, why: &CloseReason) {
//!         self.redis.on_close(conns, id, why);
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let fake = Service::new(&mut reactor, FakeRedis(RequestDecoder::new(Limits::default())),
//!                         Config::default());
//! let listener = fake.listen(&mut reactor, "127.0.0.1:0".parse().unwrap())?;
//! let addr = fake.tcp_addr(listener)?;
//!
//! let app = Service::new(&mut reactor,
//!                        App { redis: Client::new(ClientConfig::new(addr)), replies: vec![] },
//!                        Config::default());
//! app.with(&mut reactor, |app, conns| {
//!     app.redis.start(conns);
//!     // Queued until the connection is up, then pipelined in one write.
//!     for tag in 1..=3 {
//!         app.redis.send(conns, &["PING"], tag).unwrap();
//!     }
//! })?;
//! reactor.run()?;
//! let replies = app.with(&mut reactor, |app, _| app.replies.clone())?;
//! assert_eq!(replies, (1..=3).map(|t| (t, Value::Simple("PONG".into()))).collect::<Vec<_>>());
//! # Ok(())
//! # }
//! ```

mod backoff;
mod client;
mod config;
mod event;
mod push;

pub use client::Client;
pub use config::{ClientConfig, Overflow};
pub use event::{ClientStats, Event, Failure, QueueFull};

/// How often [`Client::tick`] should be called: often enough that a
/// reconnect is late by a small fraction of the shortest backoff.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(20);
