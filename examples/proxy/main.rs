//! A TCP relay on the connection layer: each client that connects gets its
//! own connection to the upstream server, and bytes flow both ways, one
//! thread for every pair (the seeds' proxy exercise, below HTTP: it relays
//! any TCP protocol).
//!
//! Run:   cargo run --example echo_server -- --addr 127.0.0.1:10000
//!        cargo run --example proxy -- --listen 127.0.0.1:8888 --upstream 127.0.0.1:10000
//! Talk:  nc 127.0.0.1 8888          (lines come back through the relay)
//!
//! What it keeps, per pair:
//! - **Backpressure, per direction.** What one side sends is queued for the
//!   other; once that queue holds `--buffer` bytes, the sending side is no
//!   longer read (`pause_reading`) until the queue has drained
//!   (`on_drained`). A slow reader on one side stops reads on the other,
//!   and memory stays at about `--buffer` per direction.
//! - **Half-closes.** A FIN from one side is passed on as a shutdown of the
//!   other side's write, once the bytes queued before it are written
//!   (`shutdown_write`); the other direction goes on. The pair closes when
//!   both directions have finished, or at once when either side is reset,
//!   fails or times out.
//! - **Limits.** `--max-conns` clients at once (each has one upstream
//!   connection too), `--idle-timeout` per connection, `--connect-timeout`
//!   for the upstream.

#[path = "../common/mod.rs"]
mod common;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, info, warn};
use reactor::Reactor;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

const USAGE: &str = "\
proxy: a TCP relay; each client gets its own connection to the upstream server

usage: proxy --upstream HOST:PORT [OPTIONS]

options:
  --listen HOST:PORT        accept clients here (default 127.0.0.1:8888)
  --upstream HOST:PORT      relay each client to this server (required)
  --buffer SIZE             bytes queued per direction before the sending side is
                            no longer read (default 256KiB)
  --max-conns N             most clients at once; more are closed at once (default 1000)
  --idle-timeout DURATION   close a pair when one side is idle this long (default 5m; off)
  --connect-timeout DURATION  give up on the upstream after this long (default 10s)
  --grace DURATION          on SIGINT/SIGTERM, time allowed to flush before closing (default 5s)
  -h, --help                show this text

Prints 'listening on ADDR', and at exit 'relayed N connection(s), IN bytes in, OUT bytes
out'. RUST_LOG=debug shows every accept, connect, read, write and close.
";

/// One side of a pair, by the connection's index.
#[derive(Clone, Copy)]
struct Side {
    /// This side's connection (its generation tells a stale entry).
    id: ConnId,
    /// The other side.
    peer: ConnId,
    /// This side's peer has sent its FIN: nothing more will be read here.
    read_done: bool,
    /// Reading here is paused until the other side's queue drains.
    paused: bool,
}

/// The relay: a table of sides, and where new clients are sent.
struct Relay {
    upstream: SocketAddr,
    /// Queued bytes per direction past which the sender is paused.
    buffer: usize,
    sides: Vec<Option<Side>>,
}

impl Relay {
    fn side(&mut self, id: ConnId) -> Option<&mut Side> {
        self.sides
            .get_mut(id.index())
            .and_then(Option::as_mut)
            .filter(|side| side.id == id)
    }

    fn link(&mut self, id: ConnId, peer: ConnId) {
        let index = id.index();
        if self.sides.len() <= index {
            self.sides.resize(index + 1, None);
        }
        self.sides[index] = Some(Side {
            id,
            peer,
            read_done: false,
            paused: false,
        });
    }
}

impl Handler for Relay {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, origin: Origin) {
        match origin {
            Origin::Accepted(_) => match conns.connect(self.upstream) {
                // The client's bytes may arrive before the upstream connect
                // completes: they wait in the upstream's queue, under the
                // same backpressure.
                Ok(upstream) => {
                    debug!("{id}: relaying to {} through {upstream}", self.upstream);
                    self.link(id, upstream);
                    self.link(upstream, id);
                }
                Err(e) => {
                    warn!("{id}: cannot connect to {}: {e}", self.upstream);
                    let _ = conns.reset(id);
                }
            },
            Origin::Connected => debug!("{id}: connected to {}", self.upstream),
        }
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let buffer = self.buffer;
        let Some(side) = self.side(id) else {
            return data.len();
        };
        let peer = side.peer;
        if conns.send(peer, data).is_err() {
            // The other side is gone or over its output limit (the service
            // closed it, and its on_close ends this side).
            return data.len();
        }
        if conns.output_len(peer).unwrap_or(0) >= buffer {
            // Backpressure: the other side's reader is behind.
            side.paused = true;
            let _ = conns.pause_reading(id);
        }
        data.len()
    }

    fn on_drained(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        // The queue toward `id` is empty: its sender may go on.
        let Some(peer) = self.side(id).map(|side| side.peer) else {
            return;
        };
        if let Some(sender) = self.side(peer) {
            if sender.paused {
                sender.paused = false;
                let _ = conns.resume_reading(peer);
            }
        }
    }

    fn on_read_closed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let Some(side) = self.side(id) else {
            let _ = conns.close(id);
            return;
        };
        side.read_done = true;
        let peer = side.peer;
        // The FIN goes on once everything before it is written.
        debug!("{id}: end of stream: shutting down {peer}'s write side");
        let _ = conns.shutdown_write(peer);
        if self.side(peer).is_some_and(|p| p.read_done) {
            // Both directions have finished: each side flushes and closes.
            let _ = conns.close(id);
            let _ = conns.close(peer);
        }
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        let Some(side) = self.side(id).copied() else {
            return;
        };
        self.sides[id.index()] = None;
        match reason {
            CloseReason::Closed | CloseReason::PeerClosed | CloseReason::Shutdown => {
                debug!("{id}: {reason}");
                // The other side finishes what is queued for it.
                let _ = conns.close(side.peer);
            }
            _ => {
                // A reset, a failure, a timeout or a limit: the pair ends
                // now, with a reset, so that the other end sees its stream
                // cut short rather than ended.
                info!("{id}: {reason}: resetting {} too", side.peer);
                let _ = conns.reset(side.peer);
            }
        }
    }
}

struct Options {
    listen: SocketAddr,
    upstream: SocketAddr,
    buffer: usize,
    config: Config,
    grace: Duration,
}

fn parse_options() -> Options {
    let mut listen = "127.0.0.1:8888".to_string();
    let mut upstream = None;
    let mut buffer: usize = 256 * 1024;
    let mut max_conns = 1000;
    let mut idle = Some(Duration::from_secs(300));
    let mut connect_timeout = Duration::from_secs(10);
    let mut grace = Duration::from_secs(5);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("listen") => listen = common::value(&mut parser, "listen", common::text),
            Long("upstream") => {
                upstream = Some(common::value(&mut parser, "upstream", common::text))
            }
            Long("buffer") => buffer = common::value(&mut parser, "buffer", common::parse_size),
            Long("max-conns") => max_conns = common::value(&mut parser, "max-conns", common::count),
            Long("idle-timeout") => {
                idle = common::value(&mut parser, "idle-timeout", common::parse_optional_duration)
            }
            Long("connect-timeout") => {
                connect_timeout =
                    common::value(&mut parser, "connect-timeout", common::parse_duration)
            }
            Long("grace") => grace = common::value(&mut parser, "grace", common::parse_duration),
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    let Some(upstream) = upstream else {
        common::usage_error("--upstream HOST:PORT is required")
    };
    if buffer == 0 || max_conns == 0 {
        common::usage_error("--buffer and --max-conns must be at least 1");
    }
    // The relay's own backpressure replaces the service's high-water mark:
    // that one would stop reading a side because of what is queued *for*
    // it, which couples the two directions (an echo upstream would then
    // wait on us while we wait on it). So high water is the output limit,
    // and the limit sits well above what the relay lets pile up: `buffer`
    // and the one read that was in progress when the sender was paused.
    let limit = buffer.saturating_mul(2).saturating_add(1024 * 1024);
    let config = Config::default()
        // Counts accepted connections only: a client's upstream connection
        // does not take a client's place.
        .max_connections(max_conns)
        .output_limit(limit)
        .high_water(limit)
        .idle_timeout(idle)
        .connect_timeout(connect_timeout);
    Options {
        // Name resolution blocks: done here, before the loop exists.
        listen: common::resolve(&listen)
            .unwrap_or_else(|e| common::usage_error(format!("--listen {listen}: {e}"))),
        upstream: common::resolve(&upstream)
            .unwrap_or_else(|e| common::usage_error(format!("--upstream {upstream}: {e}"))),
        buffer,
        config,
        grace,
    }
}

fn main() {
    common::main(parse_options, run);
}

fn run(options: Options) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let relay = Relay {
        upstream: options.upstream,
        buffer: options.buffer,
        sides: Vec::new(),
    };
    let service = Service::new(&mut reactor, relay, options.config);
    service.shutdown_on_signal(&mut reactor, options.grace)?;
    let listener = common::listen(&mut reactor, &service, options.listen)?;
    common::announce(format_args!(
        "listening on {} (relaying to {})",
        service.local_addr(listener)?,
        options.upstream
    ));
    reactor.run()?;
    common::announce_totals(&service, "relayed")
}
