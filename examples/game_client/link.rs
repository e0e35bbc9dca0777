//! A player's UDP side, the same for a person and for a bot: a socket of its
//! own, inputs numbered in sequence, a keep-alive, and snapshots taken in
//! tick order (an older or repeated tick is dropped, as UDP may reorder and
//! duplicate).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reactor::Reactor;
use reactor::service::{Connections, Handler, Service};
use reactor::udp::UdpEndpoint;

use crate::game::{Dir, Input, Snapshot, Welcome};

/// An input is re-sent at least this often, so that a player standing
/// still is not taken for one whose UDP was cut (the server's
/// `--udp-timeout` is 5 s by default).
pub const KEEPALIVE: Duration = Duration::from_secs(1);

/// One player's UDP link to the server.
pub struct Link {
    pub welcome: Welcome,
    pub udp: UdpEndpoint,
    pub server: SocketAddr,
    /// The sequence number of the last input sent.
    pub seq: u32,
    /// The direction last sent.
    pub dir: Dir,
    last_sent: Instant,
    /// The newest snapshot read whole (its tick, ACK and the receiver's own
    /// entry are the newest's).
    pub snapshot: Snapshot,
    /// Its tick, once one has arrived.
    pub last_tick: Option<u64>,
    datagram: String,
    parsed: Snapshot,
}

/// What a datagram was, to the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// A newer snapshot, now in [`Link::snapshot`]; `skipped` ticks came
    /// between it and the one before (lost, or still on their way).
    Newer { skipped: u64 },
    /// A snapshot of a tick already seen or passed: dropped.
    Stale,
    /// Not a snapshot.
    Garbage,
}

impl Link {
    /// Binds a UDP socket on any address of the server's family, and sends
    /// the first input (which tells the server where to send snapshots).
    /// Each datagram that arrives is handed to `on_datagram` with the
    /// handler of `service` (the player's TCP side), through
    /// [`Service::with`]: the one way into a handler from outside it.
    ///
    /// # Errors
    ///
    /// Binding or registering the socket, or sending the first input.
    pub fn open<H, F>(
        reactor: &mut Reactor,
        welcome: Welcome,
        server: SocketAddr,
        service: Service<H>,
        mut on_datagram: F,
    ) -> io::Result<Link>
    where
        H: Handler,
        F: FnMut(&mut H, &mut Connections<'_>, &[u8]) + 'static,
    {
        let server = SocketAddr::new(server.ip(), welcome.udp_port);
        // Facing the server only: a loopback server gets a loopback
        // socket, so nothing from another host can reach it.
        let local_ip: std::net::IpAddr = if server.ip().is_loopback() {
            server.ip()
        } else if server.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let udp = UdpEndpoint::bind(
            reactor,
            SocketAddr::new(local_ip, 0),
            move |reactor, _, from, data| {
                // Snapshots come from the server's address or not at all: one
                // forged datagram with a far-future tick would otherwise make
                // every real snapshot look stale.
                if from != server {
                    log::debug!("udp {from}: not the server, ignored");
                    return;
                }
                // The UDP callback runs outside the handler: `with` is not refused.
                let _ = service.with(reactor, |handler, conns| on_datagram(handler, conns, data));
            },
        )?;
        let mut link = Link {
            welcome,
            udp,
            server,
            seq: 0,
            dir: Dir::Stop,
            last_sent: reactor.now(),
            snapshot: Snapshot::default(),
            last_tick: None,
            datagram: String::new(),
            parsed: Snapshot::default(),
        };
        link.send(Dir::Stop, reactor.now())?;
        Ok(link)
    }

    /// Sends `dir` as the next input.
    ///
    /// # Errors
    ///
    /// As for [`UdpEndpoint::send_to`] (a full queue drops the input: the
    /// next one, or the keep-alive, carries the direction again).
    pub fn send(&mut self, dir: Dir, now: Instant) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        self.dir = dir;
        self.last_sent = now;
        Input {
            token: self.welcome.token,
            seq: self.seq,
            dir,
        }
        .write(&mut self.datagram);
        self.udp.send_to(self.datagram.as_bytes(), self.server)
    }

    /// Re-sends the current direction if nothing was sent for
    /// [`KEEPALIVE`].
    pub fn keep_alive(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sent) >= KEEPALIVE {
            let _ = self.send(self.dir, now);
        }
    }

    /// Takes a datagram from the server. Unless `whole` (or until a first
    /// snapshot is in), only its header and the receiver's own entry are
    /// read: a bot needs its own position every tick, but the others and
    /// the coins only when it looks around.
    pub fn arrive(&mut self, data: &[u8], whole: bool) -> Arrival {
        let Some((tick, ack, me)) = Snapshot::peek(data) else {
            return Arrival::Garbage;
        };
        let skipped = match self.last_tick {
            Some(last) if tick <= last => return Arrival::Stale,
            Some(last) => tick - last - 1,
            None => 0,
        };
        if whole || self.last_tick.is_none() {
            if self.parsed.parse_into(data).is_none() {
                return Arrival::Garbage;
            }
            std::mem::swap(&mut self.snapshot, &mut self.parsed);
        } else {
            (self.snapshot.tick, self.snapshot.ack) = (tick, ack);
            match self.snapshot.players.first_mut() {
                Some(first) => *first = me,
                None => self.snapshot.players.push(me),
            }
        }
        self.last_tick = Some(tick);
        Arrival::Newer { skipped }
    }

    /// The player's own position in the newest snapshot (the receiver comes
    /// first).
    pub fn position(&self) -> Option<(u16, u16)> {
        self.snapshot
            .players
            .first()
            .filter(|p| p.id == self.welcome.id)
            .map(|p| (p.x, p.y))
    }
}
