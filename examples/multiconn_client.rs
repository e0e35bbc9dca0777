//! The seeds' `multiconnclient.py` on the connection layer: N connections
//! at once, each sending the messages and counting the echo, all on one
//! thread.
//!
//! Run:   cargo run --example echo_server &
//!        cargo run --example multiconn_client -- --conns 3 "ping" "pong"
//!
//! Prints one line per connection with the bytes sent and received and a
//! total, and exits 0 only if every byte came back on every connection.

mod common;

use std::io;
use std::net::SocketAddr;
use std::process;
use std::time::Duration;

use log::debug;
use reactor::Reactor;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

const USAGE: &str = "\
multiconn_client: open several connections to an echo server at once

usage: multiconn_client [--addr HOST:PORT] [--conns N] [--timeout DURATION] [--verify] [MESSAGE...]

options:
  --addr HOST:PORT      the server (default 127.0.0.1:10000)
  --conns N             connections to open (default 2)
  --timeout DURATION    give up after this long (default 10s)
  --verify              also require the echo to equal what was sent, byte for byte
  -h, --help            show this text

Without messages it sends the seed's two. Exit status 0 only if every byte
came back on every connection; 1 otherwise.
";

/// One connection's progress (`types.SimpleNamespace` in the seed).
struct Progress {
    number: usize,
    sent: usize,
    received: Vec<u8>,
    outcome: Option<String>,
}

struct Client {
    messages: Vec<Vec<u8>>,
    total: usize,
    verify: bool,
    /// Indexed by connection number - 1.
    progress: Vec<Progress>,
    /// Connection id to connection number.
    numbers: Vec<(ConnId, usize)>,
    finished: usize,
    /// Connections that completed their connect.
    opened: usize,
    /// The first connect failure, reported alone if no connection opened.
    connect_error: Option<String>,
}

impl Client {
    fn progress(&mut self, id: ConnId) -> Option<&mut Progress> {
        let number = self.numbers.iter().find(|(i, _)| *i == id)?.1;
        self.progress.get_mut(number - 1)
    }
}

impl Handler for Client {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        let messages = self.messages.clone();
        self.opened += 1;
        let Some(progress) = self.progress(id) else {
            return;
        };
        debug!("connection {} open", progress.number);
        for message in &messages {
            if conns.send(id, message).is_ok() {
                progress.sent += message.len();
            }
        }
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let total = self.total;
        if let Some(progress) = self.progress(id) {
            progress.received.extend_from_slice(data);
            debug!(
                "received {:?} on connection {}",
                String::from_utf8_lossy(data),
                progress.number
            );
            if progress.received.len() >= total {
                let _ = conns.close(id);
            }
        }
        data.len()
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        if let (CloseReason::Error(e), None) = (reason, &self.connect_error) {
            self.connect_error = Some(e.to_string());
        }
        let (total, verify) = (self.total, self.verify);
        let expected: Vec<u8> = self.messages.concat();
        if let Some(progress) = self.progress(id) {
            progress.outcome = Some(if progress.received.len() != total {
                format!("incomplete ({reason})")
            } else if verify && progress.received != expected {
                "echo differs from what was sent".to_string()
            } else {
                "ok".to_string()
            });
            debug!("connection {} closed: {reason}", progress.number);
        }
        self.finished += 1;
        if self.finished == self.progress.len() {
            conns.reactor().stop();
        }
    }
}

fn main() {
    common::init_logging();
    let mut addr = "127.0.0.1:10000".to_string();
    let mut conns = 2;
    let mut timeout = Duration::from_secs(10);
    let mut verify = false;
    let mut messages = Vec::new();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short, Value};
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("conns") => conns = common::value(&mut parser, "conns", common::count),
            Long("timeout") => {
                timeout = common::value(&mut parser, "timeout", common::parse_duration)
            }
            Long("verify") => verify = true,
            Long("help") | Short('h') => common::help(USAGE),
            Value(message) => messages.push(message.as_encoded_bytes().to_vec()),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    if conns == 0 {
        common::usage_error("--conns must be at least 1");
    }
    if messages.is_empty() {
        messages = vec![
            b"Message 1 from client.".to_vec(),
            b"Message 2 from client.".to_vec(),
        ];
    }
    let addr = common::resolve_addr(&addr);
    match run(addr, conns, messages, timeout, verify) {
        Ok(true) => process::exit(0),
        Ok(false) => process::exit(1),
        Err(e) => common::fail(e),
    }
}

fn run(
    addr: SocketAddr,
    count: usize,
    messages: Vec<Vec<u8>>,
    timeout: Duration,
    verify: bool,
) -> io::Result<bool> {
    let mut reactor = Reactor::new()?;
    let total = messages.iter().map(Vec::len).sum();
    let client = Client {
        messages,
        total,
        verify,
        progress: (1..=count)
            .map(|number| Progress {
                number,
                sent: 0,
                received: Vec::new(),
                outcome: None,
            })
            .collect(),
        numbers: Vec::with_capacity(count),
        finished: 0,
        opened: 0,
        connect_error: None,
    };
    let config = Config::default().connect_timeout(timeout);
    let service = Service::new(&mut reactor, client, config);
    for number in 1..=count {
        println!("starting connection {number} to {addr}");
        let id = service.connect(&mut reactor, addr)?;
        service.with(&mut reactor, |client, _| client.numbers.push((id, number)))?;
    }
    reactor.call_later(timeout, |reactor| reactor.stop());
    reactor.run()?;

    let never_connected = service.with(&mut reactor, |client, _| {
        (client.opened == 0)
            .then(|| client.connect_error.clone())
            .flatten()
    })?;
    if let Some(e) = never_connected {
        return Err(io::Error::other(format!("connect to {addr}: {e}")));
    }

    service.with(&mut reactor, |client, _| {
        let (mut sent, mut received, mut all_ok) = (0, 0, true);
        for p in &client.progress {
            let outcome = p.outcome.as_deref().unwrap_or("timed out");
            println!(
                "connection {}: sent {} bytes, received {} bytes: {outcome}",
                p.number,
                p.sent,
                p.received.len()
            );
            sent += p.sent;
            received += p.received.len();
            all_ok &= outcome == "ok";
        }
        println!(
            "total: {} connection(s), sent {sent} bytes, received {received} bytes",
            client.progress.len()
        );
        all_ok
    })
}
