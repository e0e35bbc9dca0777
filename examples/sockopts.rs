//! The seeds' socket options, shown and changed: creates TCP and UDP
//! sockets with `socket2` and prints each option before and after setting it.
//!
//! Run:   cargo run --example sockopts
//!        cargo run --example sockopts -- --rcvbuf 1MiB --linger 0s
//!
//! | option | what it does |
//! |---|---|
//! | SO_REUSEADDR | bind a port whose old connections are in TIME_WAIT |
//! | SO_REUSEPORT | several sockets bound to one port, the kernel spreads connections |
//! | SO_KEEPALIVE | probe an idle connection to find a dead peer |
//! | TCP_NODELAY | send small writes at once (no Nagle); the reactor sets it by default |
//! | SO_RCVBUF / SO_SNDBUF | kernel buffer sizes (Linux doubles what you ask, for its bookkeeping) |
//! | SO_LINGER | what close() does with unsent data: wait, or with 0 reset at once |
//! | IPV6_V6ONLY | whether an IPv6 socket also takes IPv4 (off: dual-stack) |

mod common;

use std::io;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

const USAGE: &str = "\
sockopts: show socket options and what setting them changes

usage: sockopts [--rcvbuf SIZE] [--sndbuf SIZE] [--linger DURATION]

options:
  --rcvbuf SIZE         receive buffer to ask for (default 64KiB)
  --sndbuf SIZE         send buffer to ask for (default 64KiB)
  --linger DURATION     SO_LINGER to set (default 5s; 0s means reset on close)
  -h, --help            show this text
";

struct Wanted {
    rcvbuf: usize,
    sndbuf: usize,
    linger: Duration,
}

fn main() {
    common::init_logging();
    let mut wanted = Wanted {
        rcvbuf: 64 * 1024,
        sndbuf: 64 * 1024,
        linger: Duration::from_secs(5),
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("rcvbuf") => {
                wanted.rcvbuf = common::value(&mut parser, "rcvbuf", common::parse_size)
            }
            Long("sndbuf") => {
                wanted.sndbuf = common::value(&mut parser, "sndbuf", common::parse_size)
            }
            Long("linger") => {
                wanted.linger = common::value(&mut parser, "linger", common::parse_duration)
            }
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    if let Err(e) = run(&wanted) {
        common::fail(e);
    }
}

/// Prints `name: before -> after`.
fn show<T: std::fmt::Display>(name: &str, before: T, after: T) {
    println!("  {name:<13} {before} -> {after}");
}

fn linger(value: Option<Duration>) -> String {
    match value {
        None => "off".to_string(),
        Some(d) => format!("{}s", d.as_secs()),
    }
}

fn common_options(socket: &Socket, wanted: &Wanted) -> io::Result<()> {
    let before = socket.reuse_address()?;
    socket.set_reuse_address(true)?;
    show("SO_REUSEADDR", before, socket.reuse_address()?);
    let before = socket.reuse_port()?;
    socket.set_reuse_port(true)?;
    show("SO_REUSEPORT", before, socket.reuse_port()?);
    let before = socket.recv_buffer_size()?;
    socket.set_recv_buffer_size(wanted.rcvbuf)?;
    show("SO_RCVBUF", before, socket.recv_buffer_size()?);
    let before = socket.send_buffer_size()?;
    socket.set_send_buffer_size(wanted.sndbuf)?;
    show("SO_SNDBUF", before, socket.send_buffer_size()?);
    Ok(())
}

fn run(wanted: &Wanted) -> io::Result<()> {
    println!("TCP socket, IPv4:");
    let tcp = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    common_options(&tcp, wanted)?;
    let before = tcp.keepalive()?;
    tcp.set_keepalive(true)?;
    show("SO_KEEPALIVE", before, tcp.keepalive()?);
    let before = tcp.tcp_nodelay()?;
    tcp.set_tcp_nodelay(true)?;
    show("TCP_NODELAY", before, tcp.tcp_nodelay()?);
    let before = tcp.linger()?;
    tcp.set_linger(Some(wanted.linger))?;
    show("SO_LINGER", linger(before), linger(tcp.linger()?));

    println!("TCP socket, IPv6:");
    match Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)) {
        Ok(tcp6) => {
            let before = tcp6.only_v6()?;
            tcp6.set_only_v6(!before)?;
            show("IPV6_V6ONLY", before, tcp6.only_v6()?);
        }
        Err(e) => println!("  (no IPv6 here: {e})"),
    }

    println!("UDP socket, IPv4:");
    let udp = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    common_options(&udp, wanted)?;
    let before = udp.broadcast()?;
    udp.set_broadcast(true)?;
    show("SO_BROADCAST", before, udp.broadcast()?);

    println!(
        "(Linux reports twice the buffer size asked for: the other half is for its bookkeeping.)"
    );
    Ok(())
}
