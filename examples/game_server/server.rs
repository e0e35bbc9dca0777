//! The game server's state and its two inputs: TCP lines (the [`Handler`]
//! of the service) and UDP datagrams ([`GameServer::on_datagram`], called
//! by the UDP endpoint's callback through `Service::with`). The third input,
//! the clock, is `tick.rs`.
//!
//! Everything runs on the loop's one thread, so the state needs no lock:
//! the UDP callback and the tick reach the handler through `Service::with`,
//! and that is the only way in.

use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, info, warn};
use reactor::codec::LineDecoder;
use reactor::service::{CloseReason, ConnId, Connections, Handler, Origin};
use reactor::udp::UdpEndpoint;

use crate::arena::{Arena, Nearby};
use crate::game::{self, Input, MAX_LINE};
use crate::players::{Players, Presence};
use crate::stats::Stats;

/// The rules and limits, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub width: u16,
    pub height: u16,
    pub tick: Duration,
    pub win_score: u32,
    pub udp_timeout: Duration,
    pub grace: Duration,
    pub max_players: usize,
}

/// One TCP connection's state: its line decoder (the player it belongs to
/// is in [`Players`], by connection).
struct Conn {
    lines: LineDecoder,
}

/// The whole server.
pub struct GameServer {
    pub settings: Settings,
    pub arena: Arena,
    pub players: Players,
    conns: Vec<Conn>,
    /// The UDP endpoint, set once it is bound (it needs the service, and the
    /// service needs this).
    pub udp: Option<UdpEndpoint>,
    pub udp_port: u16,
    pub stats: Stats,
    pub tick: u64,
    /// Scratch for one tick's snapshots (kept to reuse their memory).
    pub(crate) snap: crate::tick::SnapshotScratch,
    pub(crate) nearby_players: Nearby,
    pub(crate) nearby_coins: Nearby,
}

impl GameServer {
    /// A server with an empty arena.
    pub fn new(settings: Settings, seed: u64) -> GameServer {
        GameServer {
            arena: Arena::new(settings.width, settings.height, seed),
            settings,
            players: Players::default(),
            conns: Vec::new(),
            udp: None,
            udp_port: 0,
            stats: Stats::default(),
            tick: 0,
            snap: Default::default(),
            nearby_players: Nearby::default(),
            nearby_coins: Nearby::default(),
        }
    }

    /// Tells every joined player's TCP connection.
    pub fn announce(&self, conns: &mut Connections<'_>, line: &str) {
        info!("{}", line.trim_end());
        let to = self.players.all.iter().filter_map(|(_, p)| p.conn);
        conns.broadcast(to, line.as_bytes());
    }

    /// Players in the arena (playing or away).
    pub fn on_field(&self) -> usize {
        self.players
            .all
            .iter()
            .filter(|(_, p)| p.on_field())
            .count()
    }

    /// The number of coins the field should hold: players / 2 + 3.
    pub fn coin_target(&self) -> usize {
        self.on_field() / 2 + 3
    }

    /// Answers one line; false once the connection is closing (`QUIT`), so
    /// that nothing after it is taken.
    fn command(&mut self, conns: &mut Connections<'_>, id: ConnId, line: &str) -> bool {
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        let me = self.players.by_conn(id);
        let reply = match (verb, me) {
            ("JOIN", None) => self.join(conns, id, rest),
            ("JOIN", Some(_)) => Err("already joined".to_string()),
            ("SAY", Some(me)) => {
                let text: String = rest
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                let line = format!("CHAT {} {text}\n", self.players.all[me].name);
                self.announce(conns, &line);
                Ok(None)
            }
            ("PLAYERS", Some(_)) => {
                let mut out = String::new();
                for (pid, p) in self.players.all.iter().filter(|(_, p)| p.on_field()) {
                    out.push_str(&format!("PLAYER {pid} {} {}\n", p.name, p.score));
                }
                out.push_str("END\n");
                Ok(Some(out))
            }
            ("QUIT", me) => {
                if let Some(me) = me {
                    self.remove(conns, me, "quit");
                }
                let _ = conns.close(id);
                return false;
            }
            ("STATS", _) => {
                let on_field = self.on_field();
                Ok(Some(self.stats.line(on_field)))
            }
            ("SAY" | "PLAYERS", None) => Err("join first: JOIN NAME".to_string()),
            _ => Err(format!("unknown command '{verb}'")),
        };
        match reply {
            Ok(Some(text)) => {
                let _ = conns.send(id, text.as_bytes());
            }
            Ok(None) => {}
            Err(reason) => {
                debug!("{id}: error: {reason}");
                let _ = conns.send(id, format!("ERROR {reason}\n").as_bytes());
            }
        }
        true
    }

    /// `JOIN NAME` (a new player) or `JOIN NAME TOKEN` (one whose TCP
    /// connection dropped, back within the grace period).
    fn join(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        args: &str,
    ) -> Result<Option<String>, String> {
        let mut words = args.split(' ');
        let name = words.next().unwrap_or("");
        let token = words.next();
        if words.next().is_some() {
            return Err("usage: JOIN NAME [TOKEN]".to_string());
        }
        crate::common::check_name(name, "name")?;
        let now = conns.reactor().now();
        let (player, news) = match token {
            None => {
                let on_field = self.players.all.len();
                if on_field >= self.settings.max_players {
                    return Err("the game is full".to_string());
                }
                let pos = self.arena.random_cell();
                let player = self
                    .players
                    .add(name, id, pos, now)
                    .map_err(|e| e.to_string())?;
                (player, "JOINED")
            }
            Some(token) => {
                let player = self
                    .players
                    .by_name(name)
                    .filter(|&p| Some(self.players.all[p].token) == game::parse_token(token))
                    .ok_or("no such player with that token")?;
                if !matches!(self.players.all[player].presence, Presence::Gone(_)) {
                    return Err("name taken".to_string());
                }
                let p = &mut self.players.all[player];
                p.presence = Presence::Playing;
                p.heard = now;
                p.dir = game::Dir::Stop;
                // A new client numbers its inputs from the start again.
                p.last_seq = None;
                self.players.set_conn(player, Some(id));
                (player, "BACK")
            }
        };
        // The newcomer hears its welcome first, then the news with everyone.
        let p = &self.players.all[player];
        let welcome = format!(
            "WELCOME {player} {} {} {} {}\n",
            game::format_token(p.token),
            self.udp_port,
            self.settings.width,
            self.settings.height
        );
        let _ = conns.send(id, welcome.as_bytes());
        // The name as the game knows it, not as this JOIN spelled it.
        let known = p.name.clone();
        self.announce(conns, &format!("{news} {known}\n"));
        Ok(None)
    }

    /// Takes a player out of the game for good, telling everyone why.
    pub fn remove(&mut self, conns: &mut Connections<'_>, player: usize, reason: &str) {
        if let Some(p) = self.players.remove(player) {
            if p.on_field() {
                self.announce(conns, &format!("LEFT {} {reason}\n", p.name));
            } else {
                info!("{}: reservation ended ({reason})", p.name);
            }
        }
    }

    /// One datagram from `from`. Its fate is counted in every case.
    pub fn on_datagram(&mut self, conns: &mut Connections<'_>, from: SocketAddr, data: &[u8]) {
        let Some(input) = Input::parse(data) else {
            self.stats.garbage += 1;
            debug!("udp {from}: garbage ({} bytes)", data.len());
            return;
        };
        let Some(player) = self.players.by_token(input.token) else {
            self.stats.spoofed += 1;
            debug!("udp {from}: unknown token");
            return;
        };
        if self
            .players
            .by_addr(from)
            .is_some_and(|owner| owner != player)
        {
            // This address belongs to another player: someone else's token.
            self.stats.spoofed += 1;
            debug!("udp {from}: another player's token");
            return;
        }
        let now = conns.reactor().now();
        let p = &mut self.players.all[player];
        if !p.on_field() {
            self.stats.not_playing += 1;
            return;
        }
        if !p.admit_input(now) {
            self.stats.rate_limited += 1;
            return;
        }
        // Only a newer input counts: a duplicated, reordered or replayed
        // datagram changes nothing (it must not move the player's address,
        // nor keep an away player present).
        if p.last_seq
            .is_some_and(|last| !game::seq_newer(input.seq, last))
        {
            self.stats.stale += 1;
            return;
        }
        p.last_seq = Some(input.seq);
        p.dir = input.dir;
        self.stats.applied += 1;
        p.heard = now;
        let back = matches!(p.presence, Presence::Away(_));
        p.presence = Presence::Playing;
        if p.udp != Some(from) {
            if p.udp.is_some() {
                info!("{}: UDP moved to {from}", p.name);
            }
            self.players.set_addr(player, from);
        }
        if back {
            let line = format!("BACK {}\n", self.players.all[player].name);
            self.announce(conns, &line);
        }
    }
}

impl Handler for GameServer {
    fn on_open(&mut self, _: &mut Connections<'_>, id: ConnId, _: Origin) {
        let conn = Conn {
            lines: LineDecoder::new(MAX_LINE),
        };
        if self.conns.len() <= id.index() {
            self.conns.resize_with(id.index() + 1, || Conn {
                lines: LineDecoder::new(MAX_LINE),
            });
        }
        self.conns[id.index()] = conn;
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut pos = 0;
        while let Some(line) = self.conns[id.index()].lines.next_line(data, &mut pos) {
            match line.map(std::str::from_utf8) {
                Ok(Ok(text)) => {
                    if !self.command(conns, id, text) {
                        return data.len();
                    }
                }
                Ok(Err(_)) => {
                    let _ = conns.send(id, b"ERROR the line is not UTF-8 text\n");
                }
                Err(e) => {
                    warn!("{id}: {e}");
                    let _ = conns.send(id, format!("ERROR {e}\n").as_bytes());
                }
            }
        }
        pos
    }

    fn on_input_timeout(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        // The service closes gracefully after this.
        let _ = conns.send(id, b"ERROR line not finished within 30s\n");
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        let Some(player) = self.players.by_conn(id) else {
            return;
        };
        debug!("{id}: closed ({reason})");
        // Out of the arena at once; the name and score wait for `--grace`.
        let now = conns.reactor().now();
        self.players.set_conn(player, None);
        self.players.clear_addr(player);
        let p = &mut self.players.all[player];
        p.presence = Presence::Gone(now);
        let line = format!("LEFT {} closed\n", p.name);
        self.announce(conns, &line);
    }
}
