//! `reactor`: a hand-rolled, single-threaded readiness event loop on
//! [`mio`], built in three layers you can learn one at a time.
//!
//! # A tour
//!
//! The crate is small enough to read in an afternoon. Follow it in this
//! order; each piece is where this list says it is.
//!
//! 1. **Readiness** — [`Ready`] (`src/ready.rs`): the flags one event
//!    carries (readable, writable, read-closed, write-closed, error).
//! 2. **Layer 1, the selector** — [`Selector`] (`src/selector.rs`) and
//!    [`Key`] (`src/key.rs`): Python's `selectors` module over epoll.
//!    `register(source, interest, data)` returns a key; `select(timeout)`
//!    says which keys are ready. Its documentation explains the two hazards
//!    everything above must respect: **edge-triggered** readiness, and
//!    **stale events** for keys that were removed or reused (each key
//!    carries a generation).
//! 3. **Layer 2, the reactor** — [`Reactor`] (`src/reactor/`): the loop
//!    itself. Register a source with a callback; [`Reactor::run`] polls and
//!    calls back. The type's documentation is the manual: the readiness
//!    contract, the six steps of a turn, what happens on a panic. The files:
//!    `mod.rs` (the manual and one turn, `run_once`), `registration.rs`
//!    (registering sources, and how an event reaches its registration),
//!    `event.rs` ([`Event`], [`Dispatch`], taking a run of events),
//!    `schedule.rs` (timers, deferred calls, before-sleep hooks). Beside it:
//!    the timer queue ([`TimerId`], `src/timer.rs`), the cross-thread
//!    [`Handle`] (`src/handle.rs`) behind a `mio::Waker`, and, with the
//!    `signal` feature, SIGINT/SIGTERM as events ([`signal`],
//!    `src/signal.rs`).
//! 4. **Layer 3, connections** — [`service`] (`src/service/`): a
//!    [`Service`](service::Service) owns listeners and connections with input
//!    and output buffers; a [`Handler`](service::Handler) implements the
//!    protocol through [`Connections`](service::Connections). One file per
//!    idea:
//!    - the API: `mod.rs` ([`Service`](service::Service)), `listeners.rs`
//!      (listening, and where a listener is bound), `handler.rs`,
//!      `connections.rs`, `config.rs` (every limit), `stats.rs`, `remote.rs`
//!      (a `Send` handle for other threads);
//!    - the state: `state.rs` (the table of connections, its fields grouped
//!      by idea), `conn.rs` (one connection's record), `flags.rs` (its state
//!      as a typed set);
//!    - the paths: `engine.rs` (where events and timers enter, and how the
//!      handler is called), `input.rs` (reading, delivery, pausing),
//!      `output/` (`send.rs`, `flush.rs`, `in_place.rs` for the reply in
//!      place, `turn.rs` for the turn buffer, `backlog.rs` for the backlog
//!      and its pool), `close.rs` (close, linger, reset, shutdown),
//!      `dial.rs` (starting outgoing connections: TCP, Unix, TLS),
//!      `accept.rs` (accept, the `EMFILE` pause, finishing a connect),
//!      `timeouts.rs` (idle,
//!      unfinished input, and the lists behind them);
//!    - the seam: `transport.rs` (what a connection's bytes pass through
//!      between socket and handler), `tls_transport.rs` (rustls on it, with
//!      the `tls` feature), `stream.rs` (TCP and Unix sockets).
//!
//!    With the `tls` feature, [`tls`] (`src/tls.rs`) holds the
//!    configurations: rustls's types, and certificates and keys from PEM
//!    files.
//! 5. **Sockets** — [`socket`] (`src/socket.rs`): listeners with the options
//!    mio does not expose (backlog, `SO_REUSEADDR`), via `socket2`.
//! 6. **Framing** — [`codec`] (`src/codec/`): messages cut from whatever
//!    bytes have arrived, each decoder bounded and without I/O of its own.
//!    `mod.rs` holds lines with a maximum length and length-prefixed
//!    frames; [`codec::resp`] (`src/codec/resp/`) holds Redis's protocol,
//!    RESP2 and RESP3, for servers (`kv_server`) and for clients of Redis:
//!    `mod.rs` (limits, errors, numbers), `request.rs` (commands, as a
//!    server reads them), `value.rs` (replies, as a client reads them),
//!    `encode.rs` (writing either, one buffer per pipeline).
//!    With the `websocket` feature, [`codec::websocket`]
//!    (`src/codec/websocket/`) holds RFC 6455, sans I/O: `handshake.rs` (the
//!    HTTP upgrade, both sides, on [`http`]'s heads), `frame.rs` (the
//!    [`Decoder`](codec::websocket::Decoder): frames in, whole messages out,
//!    bounded, partial frames consumed as they come; `frame/head.rs`, a
//!    frame's header checked as its bytes arrive), `encode.rs` (writing
//!    frames, masking), `sha1.rs` and `base64.rs` (for the handshake).
//! 7. **UDP** — [`udp`] (`src/udp.rs`): a datagram socket on the reactor, with
//!    a bounded send queue for when the socket is full.
//! 8. **HTTP/1.1** — with the `http` feature, [`http`] (`src/http/`): request
//!    and response heads (on `httparse`), and the strict framing rules that
//!    decide where a message and its body end, shared by `http_server`,
//!    `http_get` and `http_proxy`.
//! 9. **Name resolution** — [`resolve`] (`src/resolve.rs`): a
//!    [`Resolver`](resolve::Resolver) looks host names up on one helper
//!    thread (`getaddrinfo` cannot be made non-blocking) behind a bounded
//!    queue, and answers on the loop through the [`Handle`], with a small
//!    cache on the loop's side.
//! 10. **A Redis client** — with the `redis` feature, [`redis`]
//!     (`src/redis/`): a [`Client`](redis::Client) that a handler owns and
//!     drives on its own loop: commands pipelined with replies in order, a
//!     bounded queue, pub/sub kept across reconnects, backoff with jitter.
//!     `mod.rs` (how it is driven, with an example), `client/mod.rs` (the
//!     state, and sending: the queue, the window, the cork),
//!     `client/link.rs` (the connection: what the handler forwards, the
//!     login, replies read, reconnects), `event.rs` (what the client tells
//!     its owner), `config.rs` (every limit), `push.rs` (pushes told from
//!     replies), `backoff.rs`. `chat_server --redis` joins chat nodes
//!     with it.
//!
//! Beside them, `src/decimal.rs` writes integers as ASCII digits for both
//! encoders (HTTP's lengths and statuses, RESP's lengths and integers).
//!
//! The example programs follow the same ladder: `select_echo_client` uses
//! layer 1 alone, `select_echo_server` layer 2, and `echo_server` and
//! `multiconn_client` layer 3. `docs/architecture.md` draws the whole
//! picture.
//!
//! # Example
//!
//! An echo server in a dozen lines of protocol:
//!
//! ```no_run
//! use reactor::Reactor;
//! use reactor::service::{Config, ConnId, Connections, Handler, Service};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
//!         let _ = conns.send(id, data); // queued; written before the loop sleeps
//!         data.len() // consumed everything
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     let mut reactor = Reactor::new()?;
//!     let echo = Service::new(&mut reactor, Echo, Config::default());
//!     echo.listen(&mut reactor, "127.0.0.1:10000".parse().unwrap())?;
//!     reactor.run()
//! }
//! ```
//!
//! # Platform
//!
//! Unix only (Linux epoll first; the BSDs' and macOS's kqueue through mio),
//! since the connection layer serves Unix-domain sockets too.

#![deny(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod decimal;
mod handle;
mod key;
mod reactor;
mod ready;
mod selector;
mod timer;

pub mod codec;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "redis")]
pub mod redis;
pub mod resolve;
pub mod service;
#[cfg(feature = "signal")]
pub mod signal;
pub mod socket;
#[cfg(feature = "tls")]
pub mod tls;
pub mod udp;

pub use handle::Handle;
pub use key::Key;
pub use mio::Interest;
pub use reactor::{Dispatch, Event, LoopStats, Reactor};
pub use ready::Ready;
pub use selector::Selector;
pub use timer::TimerId;

/// The README's code, compiled and run as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
