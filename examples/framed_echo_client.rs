//! A client for `framed_echo_server`: sends each message as a length-
//! prefixed frame and checks that the same frame comes back.
//!
//! Run:   cargo run --example framed_echo_server &
//!        cargo run --example framed_echo_client -- hello "framed world" --size 1MiB
//!
//! All frames go out at once, pipelined; the echoes come back in order.

mod common;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use reactor::Reactor;
use reactor::codec::{FrameDecoder, frame_header};
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

const USAGE: &str = "\
framed_echo_client: send length-prefixed messages to framed_echo_server and check the echoes

usage: framed_echo_client [--addr HOST:PORT] [--size SIZE]... [--timeout DURATION] [MESSAGE...]

options:
  --addr HOST:PORT      the server (default 127.0.0.1:10002)
  --size SIZE           also send a generated message of SIZE bytes (repeatable)
  --timeout DURATION    give up after this long (default 30s)
  -h, --help            show this text

Without messages it sends the seeds' three. Exit status 0 when every echo
matches, 1 otherwise.
";

struct Client {
    messages: Vec<Vec<u8>>,
    echoed: usize,
    frames: FrameDecoder,
    failure: Option<String>,
}

impl Handler for Client {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        for message in &self.messages {
            let header = frame_header(message.len()).unwrap_or_default();
            let _ = conns.send(id, &header);
            let _ = conns.send(id, message);
        }
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut pos = 0;
        while let Some(frame) = self.frames.next_frame(data, &mut pos) {
            let expected = &self.messages[self.echoed];
            match frame {
                Ok(payload) if payload == expected.as_slice() => {
                    println!(
                        "frame {}: {} bytes echoed intact",
                        self.echoed + 1,
                        payload.len()
                    );
                    self.echoed += 1;
                }
                Ok(payload) => {
                    self.failure = Some(format!(
                        "frame {} came back different ({} bytes)",
                        self.echoed + 1,
                        payload.len()
                    ));
                }
                Err(e) => self.failure = Some(e.to_string()),
            }
            if self.failure.is_some() || self.echoed == self.messages.len() {
                let _ = conns.close(id);
                return data.len();
            }
        }
        pos
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, _: ConnId, reason: &CloseReason) {
        if self.echoed < self.messages.len() && self.failure.is_none() {
            self.failure = Some(format!(
                "connection closed ({reason}) after {} of {} frames",
                self.echoed,
                self.messages.len()
            ));
        }
        conns.reactor().stop();
    }
}

fn main() {
    common::init_logging();
    let mut addr = "127.0.0.1:10002".to_string();
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut timeout = Duration::from_secs(30);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short, Value};
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("size") => {
                let size = common::value(&mut parser, "size", common::parse_size);
                messages.push((0..size).map(|i| (i * 31 % 251) as u8).collect());
            }
            Long("timeout") => {
                timeout = common::value(&mut parser, "timeout", common::parse_duration)
            }
            Long("help") | Short('h') => common::help(USAGE),
            Value(message) => messages.push(message.as_encoded_bytes().to_vec()),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    if messages.is_empty() {
        messages = vec![
            b"Short".to_vec(),
            b"A medium-length message for testing".to_vec(),
            vec![b'X'; 500],
        ];
    }
    let addr = common::resolve_addr(&addr);
    match run(addr, messages, timeout) {
        Ok(()) => {}
        Err(e) => common::fail(e),
    }
}

fn run(addr: SocketAddr, messages: Vec<Vec<u8>>, timeout: Duration) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let largest = messages.iter().map(Vec::len).max().unwrap_or(0);
    let total: usize = messages.iter().map(|m| m.len() + 4).sum();
    let config = Config::default()
        .connect_timeout(timeout)
        .input_limit(largest + 4)
        .output_limit(total.max(64 << 20));
    let client = Client {
        messages,
        echoed: 0,
        frames: FrameDecoder::new(largest.max(1)),
        failure: None,
    };
    let service = Service::new(&mut reactor, client, config);
    service.connect(&mut reactor, addr)?;
    reactor.call_later(timeout, |reactor| reactor.stop());
    reactor.run()?;
    service.with(&mut reactor, |client, _| {
        if let Some(failure) = client.failure.take() {
            return Err(io::Error::other(failure));
        }
        if client.echoed < client.messages.len() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "timed out after {} of {} frames",
                    client.echoed,
                    client.messages.len()
                ),
            ));
        }
        println!("all {} frames echoed intact", client.echoed);
        Ok(())
    })?
}
