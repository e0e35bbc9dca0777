//! One tick of the game, in four steps: move everyone one cell and take
//! coins, end the round if someone reached the winning score, time out the
//! silent and the gone, and send each player its snapshot.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use log::{debug, warn};
use reactor::service::Connections;

use crate::game::MAX_SNAPSHOT;
use crate::players::Presence;
use crate::server::GameServer;

/// Of a snapshot's 1,200 bytes, the other players may take up to this many;
/// the coins get the rest (and all of it when few players are near).
const PLAYER_BYTES: usize = 800;

/// How many of the nearest to ask the spatial index for, to fill `room`
/// bytes with entries that take `text_len / count` bytes on average this
/// tick (and a space each), and a few more. Asking for as many as the
/// shortest entries would allow (`1,2 `: 4 bytes) made the search visit
/// twice the squares for entries never sent; with entries shorter than the
/// average near a receiver, its snapshot is a little less full than it
/// could be.
fn how_many(room: usize, text_len: usize, count: usize) -> usize {
    let average = text_len / count.max(1) + 1;
    room / average.max(1) + 4
}

/// What one tick's snapshots are made of, kept between ticks for its
/// memory: every player's and every coin's text written once per tick, so
/// that a snapshot is a run of copies, however many receivers share them.
#[derive(Debug, Default)]
pub struct SnapshotScratch {
    /// The players on the field, by their index in the spatial index.
    ids: Vec<usize>,
    /// `id,x,y,score` of each, one after another; `spans[i]` is player i's.
    players_text: String,
    player_spans: Vec<(u32, u32)>,
    /// `x,y` of each coin, likewise.
    coins_text: String,
    coin_spans: Vec<(u32, u32)>,
    found: Vec<crate::arena::Placed>,
    datagram: String,
    expired: Vec<(usize, Presence)>,
}

impl GameServer {
    /// Runs tick number `self.tick + 1`, which was due `late` ago (measured
    /// by the caller at the moment the timer fired).
    pub fn run_tick(&mut self, conns: &mut Connections<'_>, started: Instant, late: Duration) {
        self.tick += 1;
        self.stats.ticks += 1;
        self.stats.jitter.record(late);
        self.move_players(conns);
        self.time_out(conns, started);
        self.send_snapshots();
        self.stats.work.record(started.elapsed());
    }

    /// Step 1 and 2: everyone playing moves one cell in its direction; a
    /// coin taken is replaced; the first to the winning score ends the round.
    fn move_players(&mut self, conns: &mut Connections<'_>) {
        let mut winner = None;
        for (id, p) in self.players.all.iter_mut() {
            if p.presence != Presence::Playing {
                continue;
            }
            let (to, took) = self.arena.step(p.pos, p.dir);
            p.pos = to;
            if took {
                p.score += 1;
                if p.score >= self.settings.win_score && winner.is_none() {
                    winner = Some(id);
                }
            }
        }
        if let Some(winner) = winner {
            let line = format!("WINNER {}\n", self.players.all[winner].name);
            self.announce(conns, &line);
            for (_, p) in self.players.all.iter_mut() {
                p.score = 0;
            }
            self.arena.clear_coins();
        }
        let target = self.coin_target();
        self.arena.fill_coins(target);
    }

    /// Step 3: UDP silent past `--udp-timeout` makes a player away; away or
    /// gone past `--grace` removes it.
    fn time_out(&mut self, conns: &mut Connections<'_>, now: Instant) {
        let (udp_timeout, grace) = (self.settings.udp_timeout, self.settings.grace);
        let mut expired = std::mem::take(&mut self.snap.expired);
        expired.clear();
        for (id, p) in self.players.all.iter_mut() {
            match p.presence {
                Presence::Playing if now.saturating_duration_since(p.heard) > udp_timeout => {
                    p.presence = Presence::Away(now);
                    expired.push((id, Presence::Playing));
                }
                Presence::Away(since) | Presence::Gone(since)
                    if now.saturating_duration_since(since) > grace =>
                {
                    expired.push((id, p.presence));
                }
                _ => {}
            }
        }
        for &(id, was) in &expired {
            match was {
                Presence::Playing => {
                    let line = format!("AWAY {}\n", self.players.all[id].name);
                    self.announce(conns, &line);
                }
                Presence::Away(_) => {
                    if let Some(conn) = self.players.all[id].conn {
                        let _ = conns.send(conn, b"ERROR away too long\n");
                        let _ = conns.close(conn);
                    }
                    self.remove(conns, id, "timeout");
                }
                Presence::Gone(_) => self.remove(conns, id, "timeout"),
            }
        }
        self.snap.expired = expired;
    }

    /// Step 4: a snapshot for every player playing whose address is known.
    fn send_snapshots(&mut self) {
        let Some(udp) = self.udp.clone() else { return };
        self.index_field();
        let snap = &mut self.snap;
        let players_wanted = how_many(PLAYER_BYTES, snap.players_text.len(), snap.ids.len());
        for (index, &id) in snap.ids.iter().enumerate() {
            let p = &self.players.all[id];
            let (Presence::Playing, Some(to)) = (p.presence, p.udp) else {
                continue;
            };
            let out = &mut snap.datagram;
            out.clear();
            let _ = write!(out, "STATE {} {} P ", self.tick, p.last_seq.unwrap_or(0));
            push_span(out, &snap.players_text, snap.player_spans[index]);
            self.nearby_players
                .nearest(p.pos, players_wanted, &mut snap.found);
            for &(_, other) in &snap.found {
                let span = snap.player_spans[other as usize];
                if other as usize == index {
                    continue;
                }
                if out.len() + 1 + span_len(span) > PLAYER_BYTES {
                    break;
                }
                out.push(' ');
                push_span(out, &snap.players_text, span);
            }
            out.push_str(" C");
            let room = MAX_SNAPSHOT.saturating_sub(out.len());
            let coins_wanted = how_many(room, snap.coins_text.len(), snap.coin_spans.len());
            self.nearby_coins
                .nearest(p.pos, coins_wanted, &mut snap.found);
            for &(_, coin) in &snap.found {
                let span = snap.coin_spans[coin as usize];
                if out.len() + 1 + span_len(span) > MAX_SNAPSHOT {
                    break;
                }
                out.push(' ');
                push_span(out, &snap.coins_text, span);
            }
            match udp.send_to(out.as_bytes(), to) {
                Ok(()) => self.stats.snapshots += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.stats.snapshots_dropped += 1
                }
                Err(e) => {
                    self.stats.snapshots_dropped += 1;
                    warn!("snapshot to {to}: {e}");
                }
            }
        }
        debug!("tick {}: {} snapshots", self.tick, self.stats.snapshots);
    }

    /// Writes every player's and coin's text once, and indexes both by
    /// place.
    fn index_field(&mut self) {
        let snap = &mut self.snap;
        snap.ids.clear();
        snap.players_text.clear();
        snap.player_spans.clear();
        for (id, p) in self.players.all.iter().filter(|(_, p)| p.on_field()) {
            let start = snap.players_text.len() as u32;
            let _ = write!(
                snap.players_text,
                "{id},{},{},{}",
                p.pos.0, p.pos.1, p.score
            );
            snap.player_spans
                .push((start, snap.players_text.len() as u32));
            snap.ids.push(id);
        }
        snap.coins_text.clear();
        snap.coin_spans.clear();
        for &(x, y) in self.arena.coins() {
            let start = snap.coins_text.len() as u32;
            let _ = write!(snap.coins_text, "{x},{y}");
            snap.coin_spans.push((start, snap.coins_text.len() as u32));
        }
        let (width, height) = (self.arena.width, self.arena.height);
        let players = &self.players.all;
        let placed = snap
            .ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (players[id].pos, i as u32));
        self.nearby_players.rebuild(width, height, placed);
        let coins = self.arena.coins();
        let placed = coins.iter().enumerate().map(|(i, &at)| (at, i as u32));
        self.nearby_coins.rebuild(width, height, placed);
    }
}

fn span_len((start, end): (u32, u32)) -> usize {
    (end - start) as usize
}

fn push_span(out: &mut String, text: &str, (start, end): (u32, u32)) {
    out.push_str(&text[start as usize..end as usize]);
}
