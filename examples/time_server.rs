//! The seeds' time server exercise: a client that connects gets the current
//! local time as `Current time: HH:MM:SS` and the connection closes. The
//! same port number answers UDP datagrams with the same line.
//!
//! Run:   cargo run --example time_server
//! Talk:  nc 127.0.0.1 10013
//!        echo | nc -u -w1 127.0.0.1 10013

mod common;

use std::io;
use std::net::SocketAddr;

use log::{debug, info};
use reactor::Reactor;
use reactor::service::{Config, ConnId, Connections, Handler, Origin, Service};
use reactor::udp::{UdpConfig, UdpEndpoint};

const USAGE: &str = "\
time_server: tell each client the current local time, over TCP and UDP

usage: time_server [--addr HOST:PORT]

options:
  --addr HOST:PORT   the TCP and UDP address (default 127.0.0.1:10013)
  -h, --help         show this text
";

/// `Current time: HH:MM:SS` in local time, with a newline.
fn current_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: localtime_r fills the `tm` we own from a valid time_t; a null
    // return (an unrepresentable time) is checked.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return "Current time: unknown\n".to_string();
    }
    format!(
        "Current time: {:02}:{:02}:{:02}\n",
        tm.tm_hour, tm.tm_min, tm.tm_sec
    )
}

struct Clock;

impl Handler for Clock {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        let _ = conns.send(id, current_time().as_bytes());
        // Flushed, then closed: the client reads the line, then EOF.
        let _ = conns.close(id);
    }

    fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
        data.len()
    }
}

fn main() {
    common::init_logging();
    let addr = common::addr_only(USAGE, "127.0.0.1:10013");
    if let Err(e) = run(addr) {
        common::fail(e);
    }
}

fn run(addr: SocketAddr) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let service = Service::new(&mut reactor, Clock, Config::default());
    let (tcp_addr, udp) = common::listen_tcp_and_udp(&mut reactor, &service, addr)?;
    UdpEndpoint::from_socket(
        &mut reactor,
        udp,
        UdpConfig::default(),
        |_, endpoint, from, _| {
            debug!("udp request from {from}");
            let _ = endpoint.send_to(current_time().as_bytes(), from);
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
