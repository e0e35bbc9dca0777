//! A calculator server, over TCP and UDP on the same port number: the seeds'
//! "UDP vs TCP" exercise. Over TCP each line is an expression and gets a
//! line back; over UDP each datagram is one expression and gets one
//! datagram back, with the same text.
//!
//! Run:   cargo run --example calc_server
//! Talk:  nc 127.0.0.1 10005                       (type: 5 + 3)
//!        echo '7 / 2' | nc -u -w1 127.0.0.1 10005
//!
//! `calc.rs` has the grammar: + - * /, unary minus, parentheses, integers,
//! decimals and scientific notation, as 64-bit floats. Errors (division by
//! zero, bad syntax, a line over 1 KiB) are answered `error: ...`. A line not
//! finished within 30 s of its first byte gets an error and a close.

mod calc;
#[path = "../common/mod.rs"]
mod common;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, info};
use reactor::Reactor;
use reactor::codec::LineDecoder;
use reactor::service::{Config, ConnId, Connections, Handler, Origin, Service};
use reactor::udp::{UdpConfig, UdpEndpoint};

const USAGE: &str = "\
calc_server: a line-based calculator over TCP and UDP (one datagram, one answer)

usage: calc_server [--addr HOST:PORT]

options:
  --addr HOST:PORT   the TCP and UDP address (default 127.0.0.1:10005)
  -h, --help         show this text

Expressions: + - * /, unary minus, parentheses, numbers like 42, 3.5, 1e-3.
";

/// Expressions are at most this long.
const MAX_LINE: usize = 1024;

/// A line must be finished within this long of its first byte: a client
/// trickling bytes of a line it never ends would otherwise hold its
/// connection for ever (slowloris).
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// One line decoder per connection, indexed by `ConnId::index`.
struct Calculator {
    lines: Vec<LineDecoder>,
    reply: String,
}

impl Handler for Calculator {
    fn on_open(&mut self, _: &mut Connections<'_>, id: ConnId, _: Origin) {
        if self.lines.len() <= id.index() {
            self.lines
                .resize_with(id.index() + 1, || LineDecoder::new(MAX_LINE));
        }
        self.lines[id.index()] = LineDecoder::new(MAX_LINE);
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut pos = 0;
        while let Some(line) = self.lines[id.index()].next_line(data, &mut pos) {
            self.reply.clear();
            match line {
                Ok(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => {
                        self.reply.push_str(&calc::answer(text));
                        debug!("{id}: {text:?} = {}", self.reply);
                    }
                    Err(_) => self
                        .reply
                        .push_str("error: the expression is not UTF-8 text"),
                },
                Err(e) => self.reply.push_str(&format!("error: {e}")),
            }
            self.reply.push('\n');
            let _ = conns.send(id, self.reply.as_bytes());
        }
        if self.lines[id.index()].in_overlong_line() {
            // Its bytes are consumed, but the line has not ended.
            let _ = conns.expect_message(id);
        }
        pos
    }

    fn on_input_timeout(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        // The service closes gracefully after this.
        let _ = conns.send(
            id,
            format!(
                "error: line not finished within {}s\n",
                LINE_TIMEOUT.as_secs()
            )
            .as_bytes(),
        );
    }
}

/// The answer to one datagram: the datagram is the expression (a final
/// newline allowed).
fn answer_datagram(data: &[u8]) -> String {
    let text = data.strip_suffix(b"\n").unwrap_or(data);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let mut reply = if text.len() > MAX_LINE {
        format!("error: line longer than {MAX_LINE} bytes")
    } else {
        match std::str::from_utf8(text) {
            Ok(text) => calc::answer(text),
            Err(_) => "error: the expression is not UTF-8 text".to_string(),
        }
    };
    reply.push('\n');
    reply
}

fn main() {
    common::init_logging();
    let addr = common::addr_only(USAGE, "127.0.0.1:10005");
    if let Err(e) = run(addr) {
        common::fail(e);
    }
}

fn run(addr: SocketAddr) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let calculator = Calculator {
        lines: Vec::new(),
        reply: String::new(),
    };
    let service = Service::new(
        &mut reactor,
        calculator,
        Config::default()
            .input_limit(MAX_LINE + 2)
            .unfinished_input_timeout(Some(LINE_TIMEOUT)),
    );
    let (tcp_addr, udp) = common::listen_tcp_and_udp(&mut reactor, &service, addr)?;
    UdpEndpoint::from_socket(
        &mut reactor,
        udp,
        UdpConfig::default(),
        |_, endpoint, from, data| {
            let reply = answer_datagram(data);
            debug!(
                "udp {from}: {:?} = {}",
                String::from_utf8_lossy(data),
                reply.trim_end()
            );
            let _ = endpoint.send_to(reply.as_bytes(), from);
        },
    )?;
    reactor::signal::on_shutdown_signal(&mut reactor, |reactor, signal| {
        info!("{}: shutting down", signal.name());
        reactor.stop();
    })?;
    // Announced once a signal can no longer kill us before our handler runs:
    // whoever waits for this line may send SIGTERM at once.
    common::announce(format_args!("listening on {tcp_addr}"));
    reactor.run()
}
