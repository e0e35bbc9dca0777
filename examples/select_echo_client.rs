//! The seeds' `selectclient.py` on layer 1: one socket, a `Selector`, and a
//! hand-written loop that looks at each event's readiness. No callbacks.
//!
//! Run:   cargo run --example select_echo_server &
//!        cargo run --example select_echo_client -- "hello" "world"
//!
//! It connects without blocking, sends its messages (the seed's two by
//! default), switches its interest to reading once everything is sent (the
//! seed's `modify`), and exits 0 once every byte has come back.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process;
use std::time::{Duration, Instant};

use log::debug;
use mio::net::TcpStream;
use reactor::{Interest, Selector};

const USAGE: &str = "\
select_echo_client: send messages to an echo server and wait for them to come back
(written with the bare selector, layer 1)

usage: select_echo_client [--addr HOST:PORT] [--timeout DURATION] [MESSAGE...]

options:
  --addr HOST:PORT      the server (default 127.0.0.1:10000)
  --timeout DURATION    give up after this long (default 10s)
  -h, --help            show this text

Without messages it sends the seed's two. Exit status: 0 when every byte came
back, 1 on a connect failure, a timeout or a short echo.
";

fn main() {
    common::init_logging();
    let mut addr = "127.0.0.1:10000".to_string();
    let mut timeout = Duration::from_secs(10);
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        match arg {
            lexopt::Arg::Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            lexopt::Arg::Long("timeout") => {
                timeout = common::value(&mut parser, "timeout", common::parse_duration)
            }
            lexopt::Arg::Long("help") | lexopt::Arg::Short('h') => common::help(USAGE),
            lexopt::Arg::Value(message) => messages.push(message.as_encoded_bytes().to_vec()),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    if messages.is_empty() {
        messages = vec![
            b"This is the message.  ".to_vec(),
            b"It will be repeated.".to_vec(),
        ];
    }
    let addr = common::resolve_addr(&addr);
    match run(addr, &messages, timeout) {
        Ok(received) => {
            println!("received {:?}", String::from_utf8_lossy(&received));
        }
        Err(e) => common::fail(e),
    }
    process::exit(0);
}

/// The states `selectclient.py` goes through (its `connect` blocks; ours
/// does not, so there is one state more).
enum State {
    Connecting,
    Sending,
    Receiving,
}

fn run(addr: SocketAddr, messages: &[Vec<u8>], timeout: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut selector = Selector::new()?;
    // A non-blocking connect: it returns at once, and the socket becomes
    // writable when the handshake is done (or has failed).
    let mut stream = TcpStream::connect(addr)?;
    let key = selector.register(&mut stream, Interest::READABLE | Interest::WRITABLE, ())?;

    let outgoing: Vec<u8> = messages.concat();
    let mut sent = 0;
    let mut received = Vec::new();
    let mut state = State::Connecting;
    let mut ready = Vec::new();

    while received.len() < outgoing.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!(
                    "timed out: {} of {} bytes came back",
                    received.len(),
                    outgoing.len()
                ),
            ));
        }
        selector.select(&mut ready, Some(left))?;
        for &(k, readiness) in &ready {
            debug_assert_eq!(k, key);
            debug!("event {readiness:?}");

            if let State::Connecting = state {
                // Writable (or an error) means the handshake finished; ask
                // how: a pending error, then whether there is a peer.
                if let Some(e) = stream.take_error()? {
                    return Err(io::Error::new(e.kind(), format!("connect to {addr}: {e}")));
                }
                match stream.peer_addr() {
                    Ok(peer) => {
                        debug!("connected to {peer}");
                        state = State::Sending;
                    }
                    Err(e) if e.kind() == ErrorKind::NotConnected => continue,
                    Err(e) => {
                        return Err(io::Error::new(e.kind(), format!("connect to {addr}: {e}")));
                    }
                }
            }

            if let State::Sending = state {
                // The seed sends one message per writable event. Edge-
                // triggered readiness reports writability once, so we write
                // until everything is sent or the socket is full.
                while sent < outgoing.len() {
                    match stream.write(&outgoing[sent..]) {
                        Ok(n) => {
                            debug!(
                                "sending {:?}",
                                String::from_utf8_lossy(&outgoing[sent..sent + n])
                            );
                            sent += n;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if sent == outgoing.len() {
                    // Nothing left to write: stop asking about writability,
                    // as the seed does (one epoll_ctl).
                    debug!("switching to read-only");
                    selector.modify(&mut stream, key, Interest::READABLE)?;
                    state = State::Receiving;
                }
            }

            // Read in every state past connecting: the echo may start
            // before we finish sending. Until WouldBlock, edge-triggered.
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            ErrorKind::UnexpectedEof,
                            format!(
                                "the server closed the connection after {} of {} bytes",
                                received.len(),
                                outgoing.len()
                            ),
                        ));
                    }
                    Ok(n) => {
                        debug!("received {:?}", String::from_utf8_lossy(&buf[..n]));
                        received.extend_from_slice(&buf[..n]);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    selector.unregister(&mut stream, key)?;
    Ok(received)
}
