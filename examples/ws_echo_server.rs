//! A WebSocket echo endpoint on the reactor's connection layer, one thread:
//! the codec of `reactor::codec::websocket` as a server, and what Autobahn's
//! fuzzing client runs against (`benches/autobahn.sh`).
//!
//! Run:   cargo run --release --example ws_echo_server
//! Talk:  any WebSocket client, e.g. in a browser's console:
//!        s = new WebSocket("ws://127.0.0.1:9001/"); s.onmessage = e => console.log(e.data); s.send("hi")
//!
//! Every text and binary message comes back as it came, pings get pongs,
//! and a close is answered with a close carrying the same code (1000 when
//! it had none). A protocol error gets a close frame with its code (1002,
//! 1007, 1009) and the connection is closed once that frame is written.
//! `docs/websocket.md` explains the framing.

mod common;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, info};
use reactor::Reactor;
use reactor::codec::websocket::{
    self, Decoder, HandshakeError, Limits, Message, Opcode, Role, close_code,
};
use reactor::http;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

const USAGE: &str = "\
ws_echo_server: a WebSocket (RFC 6455) echo endpoint on the reactor

usage: ws_echo_server [OPTIONS]

options:
  --addr HOST:PORT        listen here (default 127.0.0.1:9001)
  --max-message SIZE      largest message, after its fragments are put together
                          (default 1MiB; more: close 1009)
  --output-limit SIZE     close a client with this much unread output queued: it is
                          not reading (default 64MiB)
  --max-conns N           most clients at once (default 10000)
  --handshake-timeout DURATION
                          the upgrade request must arrive within this (default 10s)
  --idle-timeout DURATION close a client idle this long (default off)
  --grace DURATION        on SIGINT/SIGTERM, time allowed to flush (default 5s)
  -h, --help              show this text

Sizes: 64KiB, 16MiB, or bytes. Durations: 500ms, 30s, 2m.
Prints 'listening on ADDR'. RUST_LOG=debug shows every accept, handshake,
read, write and close.
";

/// The head of the upgrade request: at most this long, and this many
/// fields (more: 431).
const MAX_FIELDS: usize = 64;

/// Where one connection is.
enum Phase {
    /// Waiting for the upgrade request.
    Handshake,
    /// Speaking frames.
    Open(Box<Decoder>),
    /// A close frame has gone out (an answer, or an error): nothing read
    /// counts any more.
    Closing,
}

struct Slot {
    id: ConnId,
    phase: Phase,
}

struct WsEcho {
    limits: Limits,
    /// Each connection's phase, by connection index.
    slots: Vec<Option<Slot>>,
    /// Replies of one `on_data` call, sent in one go; reused.
    out: Vec<u8>,
}

impl WsEcho {
    fn phase(&mut self, id: ConnId) -> Option<&mut Phase> {
        match self.slots.get_mut(id.index()) {
            Some(Some(slot)) if slot.id == id => Some(&mut slot.phase),
            _ => None,
        }
    }

    /// The upgrade request, if it is whole: accepted (101, the phase moves
    /// to frames) or refused (400/426, and close). Returns the bytes it
    /// took, or `None` to wait for more.
    fn handshake(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> Option<usize> {
        let mut fields = [http::EMPTY_HEADER; MAX_FIELDS];
        let refusal = match http::parse_request(data, &mut fields, &http::Limits::default()) {
            Ok(None) => return None,
            Ok(Some(request)) => match websocket::check_upgrade(&request) {
                Ok(upgrade) => {
                    debug!(
                        "{id}: upgraded to WebSocket ({} {})",
                        request.method, request.target
                    );
                    websocket::write_accept(&mut self.out, upgrade.key);
                    let decoder = Box::new(Decoder::new(Role::Server, self.limits));
                    if let Some(phase) = self.phase(id) {
                        *phase = Phase::Open(decoder);
                    }
                    return Some(request.head_len);
                }
                Err(refusal) => refusal,
            },
            Err(error) => HandshakeError {
                status: error.status(),
                why: error.why(),
            },
        };
        info!("{id}: handshake refused: {refusal}");
        websocket::write_refusal(&mut self.out, &refusal);
        self.end(conns, id);
        Some(data.len())
    }

    /// Frames: each message answered into `out`. Returns the bytes taken.
    fn frames(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        // The phase is taken out for the loop (the decoder lends its
        // buffer to the messages while `self.out` is written) and put back
        // unless the connection ends.
        let Some(phase) = self.phase(id) else {
            return data.len();
        };
        let Phase::Open(mut decoder) = std::mem::replace(phase, Phase::Closing) else {
            return data.len();
        };
        let mut used = 0;
        let closing = loop {
            match decoder.decode(&data[used..]) {
                Ok((n, message)) => {
                    used += n;
                    match message {
                        None => break false,
                        Some(Message::Text(text)) => websocket::write_frame(
                            &mut self.out,
                            Opcode::Text,
                            text.as_bytes(),
                            None,
                        ),
                        Some(Message::Binary(bytes)) => {
                            websocket::write_frame(&mut self.out, Opcode::Binary, bytes, None)
                        }
                        Some(Message::Ping(payload)) => {
                            websocket::write_frame(&mut self.out, Opcode::Pong, payload, None)
                        }
                        Some(Message::Pong(_)) => {}
                        Some(Message::Close(code, reason)) => {
                            debug!("{id}: close {code:?} {reason:?} received; answered");
                            let code = code.unwrap_or(close_code::NORMAL);
                            websocket::write_close(&mut self.out, code, "", None);
                            break true;
                        }
                    }
                }
                Err(error) => {
                    info!("{id}: {error}");
                    websocket::write_close(&mut self.out, error.code, error.reason, None);
                    break true;
                }
            }
        };
        if closing {
            self.end(conns, id);
            return data.len();
        }
        if let Some(phase) = self.phase(id) {
            *phase = Phase::Open(decoder);
        }
        used
    }

    /// On SIGINT/SIGTERM: every open WebSocket is sent a close frame with
    /// 1001 (going away), flushed by the shutdown with what is queued.
    fn going_away(&mut self, conns: &mut Connections<'_>) {
        let open: Vec<ConnId> = self
            .slots
            .iter()
            .flatten()
            .filter(|slot| matches!(slot.phase, Phase::Open(_)))
            .map(|slot| slot.id)
            .collect();
        for id in open {
            websocket::write_close(
                &mut self.out,
                close_code::GOING_AWAY,
                "server shutting down",
                None,
            );
            self.end(conns, id);
        }
    }

    /// After a refusal or a close frame: nothing more is read; the
    /// connection closes once what is queued is written.
    fn end(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        self.flush(conns, id);
        if let Some(phase) = self.phase(id) {
            *phase = Phase::Closing;
        }
        let _ = conns.close(id);
    }

    /// Sends what this call produced. A send fails only when the connection
    /// is closing or went over its output limit (the service has closed it
    /// and logged why).
    fn flush(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        if !self.out.is_empty() {
            let _ = conns.send(id, &self.out);
            self.out.clear();
        }
        // A large echo is not kept allocated after it went out.
        if self.out.capacity() > 1 << 20 {
            self.out = Vec::new();
        }
    }
}

impl Handler for WsEcho {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        // The service logs the accept itself (RUST_LOG=debug).
        if self.slots.len() <= id.index() {
            self.slots.resize_with(id.index() + 1, || None);
        }
        self.slots[id.index()] = Some(Slot {
            id,
            phase: Phase::Handshake,
        });
        // The request must come within --handshake-timeout.
        let _ = conns.expect_message(id);
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let used = match self.phase(id) {
            None | Some(Phase::Closing) => data.len(),
            Some(Phase::Handshake) => match self.handshake(conns, id, data) {
                None => 0,
                // Frames may follow the request in the same read.
                Some(head) if matches!(self.phase(id), Some(Phase::Open(_))) => {
                    head + self.frames(conns, id, &data[head..])
                }
                Some(all) => all,
            },
            Some(Phase::Open(_)) => self.frames(conns, id, data),
        };
        self.flush(conns, id);
        used
    }

    fn on_read_closed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        // The client closed its side: without a close frame (1006 to it),
        // or after the handshake we already answered. Nothing to wait for.
        let _ = conns.close(id);
    }

    fn on_input_timeout(&mut self, _: &mut Connections<'_>, id: ConnId) {
        info!("{id}: no upgrade request within the handshake timeout");
    }

    fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        debug!("{id}: closed: {reason}");
        if let Some(slot) = self.slots.get_mut(id.index()) {
            if slot.as_ref().is_some_and(|s| s.id == id) {
                *slot = None;
            }
        }
    }
}

struct Options {
    addr: SocketAddr,
    max_message: usize,
    config: Config,
    grace: Duration,
}

fn parse_options() -> Options {
    let mut addr = "127.0.0.1:9001".to_string();
    let mut max_message = Limits::default().max_message;
    let mut config = Config::default()
        .unfinished_input_timeout(Some(Duration::from_secs(10)))
        // The upgrade request's head may sit unconsumed up to its limit,
        // plus one read; after it the decoder takes every byte as it comes.
        .input_limit(http::Limits::default().max_head + 64 * 1024);
    let mut grace = Duration::from_secs(5);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("max-message") => {
                max_message = common::value(&mut parser, "max-message", common::parse_size)
            }
            Long("output-limit") => {
                let n = common::value(&mut parser, "output-limit", common::parse_size);
                config = config.output_limit(n);
            }
            Long("max-conns") => {
                let n = common::value(&mut parser, "max-conns", common::count);
                if n == 0 {
                    common::usage_error("--max-conns must be at least 1");
                }
                config = config.max_connections(n);
            }
            Long("handshake-timeout") => {
                let d = common::value(
                    &mut parser,
                    "handshake-timeout",
                    common::parse_optional_duration,
                );
                config = config.unfinished_input_timeout(d);
            }
            Long("idle-timeout") => {
                let d = common::value(&mut parser, "idle-timeout", common::parse_optional_duration);
                config = config.idle_timeout(d);
            }
            Long("grace") => grace = common::value(&mut parser, "grace", common::parse_duration),
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    if max_message == 0 {
        common::usage_error("--max-message must be more than 0");
    }
    Options {
        addr: common::resolve_addr(&addr),
        max_message,
        config,
        grace,
    }
}

fn main() {
    common::main(parse_options, run);
}

fn run(options: Options) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let echo = WsEcho {
        limits: Limits {
            max_message: options.max_message,
        },
        slots: Vec::new(),
        out: Vec::new(),
    };
    let service = Service::new(&mut reactor, echo, options.config);
    service.shutdown_on_signal_with(&mut reactor, options.grace, |echo, conns| {
        echo.going_away(conns)
    })?;
    let id = common::listen(&mut reactor, &service, options.addr)?;
    common::announce(format_args!("listening on {}", service.local_addr(id)?));
    reactor.run()?;
    common::announce_totals(&service, "served")
}
