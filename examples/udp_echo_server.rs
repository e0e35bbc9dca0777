//! A UDP echo server on the reactor: every datagram goes back to its
//! sender, upper-cased with `--upper` (the seeds' `data.upper()` variant).
//!
//! Run:   cargo run --example udp_echo_server
//! Talk:  cargo run --example udp_echo_client -- hello world
//!        nc -u 127.0.0.1 10000        (each line is a datagram)
//!
//! UDP has no connections: one socket serves every client, and each
//! `recv_from` says who sent the datagram.

mod common;

use std::io;
use std::net::SocketAddr;

use log::{debug, info, warn};
use reactor::Reactor;
use reactor::udp::{UdpConfig, UdpEndpoint};

const USAGE: &str = "\
udp_echo_server: send every datagram back to its sender

usage: udp_echo_server [--addr HOST:PORT | --dual-stack PORT] [--upper]

options:
  --addr HOST:PORT     where to listen (default 127.0.0.1:10000; [::1]:PORT for IPv6)
  --dual-stack PORT    listen on [::]:PORT for IPv4 and IPv6 at once
  --upper              echo ASCII letters upper-cased
  -h, --help           show this text
";

fn main() {
    common::init_logging();
    let mut addr = "127.0.0.1:10000".to_string();
    let mut dual_stack = None;
    let mut upper = false;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("dual-stack") => {
                dual_stack = Some(common::value(&mut parser, "dual-stack", common::port))
            }
            Long("upper") => upper = true,
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    let addr = common::resolve_addr(&addr);
    if let Err(e) = run(addr, dual_stack, upper) {
        common::fail(e);
    }
}

fn run(addr: SocketAddr, dual_stack: Option<u16>, upper: bool) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let socket = match dual_stack {
        Some(port) => reactor::socket::udp_socket_dual_stack(port),
        None => reactor::socket::udp_socket(addr),
    }
    .map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot bind {}: {e}",
                dual_stack.map_or(addr.to_string(), |p| format!("[::]:{p}"))
            ),
        )
    })?;
    let mut reply = Vec::new();
    let endpoint = UdpEndpoint::from_socket(
        &mut reactor,
        socket,
        UdpConfig::default(),
        move |_, endpoint, from, data| {
            debug!("{} bytes from {from}", data.len());
            reply.clear();
            reply.extend(
                data.iter()
                    .map(|b| if upper { b.to_ascii_uppercase() } else { *b }),
            );
            if let Err(e) = endpoint.send_to(&reply, from) {
                warn!("reply to {from}: {e}");
            }
        },
    )?;
    reactor::signal::on_shutdown_signal(&mut reactor, |reactor, signal| {
        info!("{}: shutting down", signal.name());
        reactor.stop();
    })?;
    // Announced once a signal can no longer kill us before our handler runs:
    // whoever waits for this line may send SIGTERM at once.
    common::announce(format_args!("listening on {}", endpoint.local_addr()?));
    reactor.run()?;
    let stats = endpoint.stats();
    info!("echoed {} of {} datagram(s)", stats.sent, stats.received);
    Ok(())
}
