//! A UDP echo client with timeouts and retries, on the reactor: each
//! message is one datagram, one in flight at a time; a datagram with no
//! reply within the timeout is sent again, up to `--retries` times.
//!
//! Run:   cargo run --example udp_echo_server &
//!        cargo run --example udp_echo_client -- hello "udp world"
//!
//! UDP may lose, duplicate or reorder datagrams; the seeds' client gives up
//! after one timeout, this one retries and reports what was lost. It exits
//! non-zero if any message got no reply.

mod common;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use log::debug;
use reactor::udp::{UdpConfig, UdpEndpoint};
use reactor::{Reactor, TimerId};

const USAGE: &str = "\
udp_echo_client: send datagrams to an echo server, with timeouts and retries

usage: udp_echo_client [--addr HOST:PORT] [--timeout DURATION] [--retries N] MESSAGE...

options:
  --addr HOST:PORT      the server (default 127.0.0.1:10000)
  --timeout DURATION    how long to wait for each reply (default 1s)
  --retries N           resends after the first send (default 3)
  -h, --help            show this text

Each MESSAGE is one datagram (default: the seeds' three). Prints each reply;
exit status 1 if any message got no reply.
";

/// Where the exchange stands.
struct Exchange {
    messages: Vec<Vec<u8>>,
    current: usize,
    attempts: u32,
    retries: u32,
    timeout: Duration,
    server: SocketAddr,
    timer: Option<TimerId>,
    lost: Vec<usize>,
}

fn main() {
    common::init_logging();
    let mut addr = "127.0.0.1:10000".to_string();
    let mut timeout = Duration::from_secs(1);
    let mut retries = 3;
    let mut messages = Vec::new();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short, Value};
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("timeout") => {
                timeout = common::value(&mut parser, "timeout", common::parse_duration)
            }
            Long("retries") => {
                retries = common::value(&mut parser, "retries", common::count) as u32
            }
            Long("help") | Short('h') => common::help(USAGE),
            Value(message) => messages.push(message.as_encoded_bytes().to_vec()),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    if messages.is_empty() {
        messages = vec![
            b"hello udp".to_vec(),
            b"networking is fun".to_vec(),
            b"datagrams!".to_vec(),
        ];
    }
    if timeout.is_zero() {
        common::usage_error("--timeout must be more than zero");
    }
    let server = common::resolve_addr(&addr);
    match run(server, messages, timeout, retries) {
        Ok(0) => {}
        Ok(lost) => {
            eprintln!("{}: {lost} message(s) got no reply", common::program());
            std::process::exit(1);
        }
        Err(e) => common::fail(e),
    }
}

fn run(
    server: SocketAddr,
    messages: Vec<Vec<u8>>,
    timeout: Duration,
    retries: u32,
) -> io::Result<usize> {
    let mut reactor = Reactor::new()?;
    let local: SocketAddr = if server.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()
    .unwrap();
    let exchange = Rc::new(RefCell::new(Exchange {
        messages,
        current: 0,
        attempts: 0,
        retries,
        timeout,
        server,
        timer: None,
        lost: Vec::new(),
    }));
    let state = exchange.clone();
    let endpoint = UdpEndpoint::from_socket(
        &mut reactor,
        reactor::socket::udp_socket(local)?,
        UdpConfig::default(),
        move |reactor, endpoint, from, data| {
            let mut ex = state.borrow_mut();
            if from != ex.server || ex.current >= ex.messages.len() {
                return; // not from our server, or after the end
            }
            // A late reply to an earlier message (after its retry) is not
            // this message's reply: the echo must match, case aside (the
            // server may upper-case).
            if !data.eq_ignore_ascii_case(&ex.messages[ex.current]) {
                debug!("ignoring a reply that matches no message in flight");
                return;
            }
            println!("reply: {}", String::from_utf8_lossy(data));
            if let Some(timer) = ex.timer.take() {
                reactor.cancel(timer);
            }
            ex.current += 1;
            ex.attempts = 0;
            drop(ex);
            send_next(reactor, endpoint, &state);
        },
    )?;
    send_next(&mut reactor, &endpoint, &exchange);
    reactor.run()?;
    let ex = exchange.borrow();
    let lost = ex.lost.len();
    let received = ex.messages.len() - lost;
    for &i in &ex.lost {
        println!(
            "lost: {:?} (no reply after {} attempts)",
            String::from_utf8_lossy(&ex.messages[i]),
            ex.retries + 1
        );
    }
    println!(
        "sent {}, received {received}, lost {lost}",
        ex.messages.len()
    );
    Ok(lost)
}

/// Sends the current message (again, after a timeout), or stops the loop
/// when every message is done.
fn send_next(reactor: &mut Reactor, endpoint: &UdpEndpoint, exchange: &Rc<RefCell<Exchange>>) {
    let mut ex = exchange.borrow_mut();
    if ex.current >= ex.messages.len() {
        reactor.stop();
        return;
    }
    ex.attempts += 1;
    let (message, server) = (ex.messages[ex.current].clone(), ex.server);
    debug!(
        "sending message {} (attempt {})",
        ex.current + 1,
        ex.attempts
    );
    if let Err(e) = endpoint.send_to(&message, server) {
        debug!("send_to {server}: {e}");
    }
    // No reply within the timeout: resend, or give up on this one.
    let state = exchange.clone();
    let endpoint = endpoint.clone();
    ex.timer = Some(reactor.call_later(ex.timeout, move |reactor| {
        let mut ex = state.borrow_mut();
        ex.timer = None;
        if ex.attempts > ex.retries {
            let current = ex.current;
            ex.lost.push(current);
            ex.current += 1;
            ex.attempts = 0;
        }
        drop(ex);
        send_next(reactor, &endpoint, &state);
    }));
}
