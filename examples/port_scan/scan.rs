//! The scan itself: a [`Handler`] that keeps up to `concurrency` connects
//! in flight on one service, and records how each one ended.
//!
//! Each probe is an outgoing connection of the service
//! ([`Connections::connect`]): a non-blocking `connect`, completed on
//! writability with `SO_ERROR` checked by the connection layer. What ends it
//! says what the port is:
//!
//! | what happened | the port is |
//! |---|---|
//! | the connect completed (`on_open`) | open |
//! | it completed, but to itself (source port = target port) | closed |
//! | refused (`ECONNREFUSED`: the host answered with a reset) | closed |
//! | no answer within `--timeout`, or an ICMP error (unreachable) | filtered |
//!
//! A connect to a loopback port in the ephemeral range can pick that very
//! port as its source, and then TCP's simultaneous open connects the socket
//! to itself: `connect` succeeds with nobody listening. The seed's
//! `connect_ex(...) == 0` counts that as open; here the local and the peer
//! address are compared and such a port is closed.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::debug;
use reactor::service::{CloseReason, ConnId, Connections, Handler, Origin};

/// The most bytes of a banner kept: its first line, up to this.
pub const BANNER_MAX: usize = 512;

/// What a port turned out to be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PortState {
    Open,
    Closed,
    Filtered,
}

impl PortState {
    pub fn name(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::Filtered => "filtered",
        }
    }
}

/// One port's result.
pub struct PortResult {
    pub port: u16,
    pub state: PortState,
    /// From the connect to its answer (or to the end of the banner wait).
    pub elapsed: Duration,
    /// What an open port said first (with `--banner`).
    pub banner: Vec<u8>,
    /// Why, when it is not the obvious reason (`self-connect`, an ICMP error).
    pub note: Option<String>,
}

/// One connect in flight.
struct Probe {
    id: ConnId,
    port: u16,
    started: Instant,
    /// When the connect completed (open, or connected to itself).
    opened: Option<Instant>,
    self_connect: bool,
    banner: Vec<u8>,
}

/// The scanner: ports to try, probes in flight, results.
pub struct Scanner {
    host: IpAddr,
    pending: std::vec::IntoIter<u16>,
    concurrency: usize,
    /// With `--banner`: open ports are kept open to read what they say.
    grab_banner: bool,
    probes: Vec<Option<Probe>>,
    in_flight: usize,
    pub results: Vec<PortResult>,
    /// A failure that stops the scan (out of descriptors, say).
    pub error: Option<io::Error>,
}

impl Scanner {
    pub fn new(host: IpAddr, ports: Vec<u16>, concurrency: usize, grab_banner: bool) -> Scanner {
        let count = ports.len();
        Scanner {
            host,
            pending: ports.into_iter(),
            concurrency,
            grab_banner,
            probes: Vec::new(),
            in_flight: 0,
            results: Vec::with_capacity(count),
            error: None,
        }
    }

    /// True when every port has its result (or the scan failed).
    pub fn done(&self) -> bool {
        self.in_flight == 0 && (self.error.is_some() || self.pending.len() == 0)
    }

    /// Starts connects until `concurrency` are in flight; stops the loop
    /// once everything is done.
    pub fn fill(&mut self, conns: &mut Connections<'_>) {
        while self.error.is_none() && self.in_flight < self.concurrency {
            let Some(port) = self.pending.next() else {
                break;
            };
            self.start(conns, port);
        }
        if self.done() {
            conns.reactor().stop();
        }
    }

    fn start(&mut self, conns: &mut Connections<'_>, port: u16) {
        let started = Instant::now();
        match conns.connect(SocketAddr::new(self.host, port)) {
            Ok(id) => {
                if self.grab_banner {
                    // The banner wait is the idle timeout, and it starts
                    // when the connect completes, not now.
                    let _ = conns.exempt_from_idle(id, true);
                }
                let index = id.index();
                if self.probes.len() <= index {
                    self.probes.resize_with(index + 1, || None);
                }
                self.probes[index] = Some(Probe {
                    id,
                    port,
                    started,
                    opened: None,
                    self_connect: false,
                    banner: Vec::new(),
                });
                self.in_flight += 1;
            }
            // Refused before `connect` even returned.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                self.record(port, PortState::Closed, started.elapsed(), Vec::new(), None)
            }
            Err(e) => {
                let hint = if e.raw_os_error() == Some(libc::EMFILE) {
                    " (lower --concurrency, or raise ulimit -n)"
                } else {
                    ""
                };
                self.error = Some(io::Error::new(
                    e.kind(),
                    format!("connect to port {port}: {e}{hint}"),
                ));
            }
        }
    }

    fn probe(&mut self, id: ConnId) -> Option<&mut Probe> {
        self.probes
            .get_mut(id.index())
            .and_then(Option::as_mut)
            .filter(|p| p.id == id)
    }

    fn record(
        &mut self,
        port: u16,
        state: PortState,
        elapsed: Duration,
        banner: Vec<u8>,
        note: Option<String>,
    ) {
        self.results.push(PortResult {
            port,
            state,
            elapsed,
            banner,
            note,
        });
    }
}

impl Handler for Scanner {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        let to_itself = match (conns.local_addr(id), conns.peer_addr(id)) {
            (Ok(local), Ok(peer)) => local == peer,
            _ => false,
        };
        let grab_banner = self.grab_banner;
        let Some(probe) = self.probe(id) else {
            let _ = conns.abort(id);
            return;
        };
        probe.opened = Some(Instant::now());
        probe.self_connect = to_itself;
        if to_itself {
            debug!("port {}: connected to itself: not open", probe.port);
        }
        if grab_banner && !to_itself {
            // Wait (up to the idle timeout) for what the service says first.
            let _ = conns.exempt_from_idle(id, false);
        } else {
            let _ = conns.abort(id);
        }
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        if let Some(probe) = self.probe(id) {
            let room = BANNER_MAX - probe.banner.len();
            probe
                .banner
                .extend_from_slice(&data[..data.len().min(room)]);
            if probe.banner.len() == BANNER_MAX || probe.banner.contains(&b'\n') {
                let _ = conns.abort(id);
            }
        }
        data.len()
    }

    fn on_read_closed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        // The service said what it had to say and hung up.
        let _ = conns.abort(id);
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        if self.probe(id).is_none() {
            return;
        }
        let Some(probe) = self.probes[id.index()].take() else {
            return;
        };
        self.in_flight -= 1;
        let (state, note) = match (probe.opened, reason) {
            (Some(_), _) if probe.self_connect => (PortState::Closed, Some("self-connect".into())),
            (Some(_), _) => (PortState::Open, None),
            (None, CloseReason::Error(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                (PortState::Closed, None)
            }
            (None, CloseReason::ConnectTimeout) => (PortState::Filtered, None),
            (None, other) => (PortState::Filtered, Some(other.to_string())),
        };
        let elapsed = probe.opened.unwrap_or_else(Instant::now) - probe.started;
        self.record(probe.port, state, elapsed, probe.banner, note);
        self.fill(conns);
    }
}
