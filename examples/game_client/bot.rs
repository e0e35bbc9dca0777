//! Bots: players without a terminal, any number of them on one reactor.
//! `game_client --bot` / `--bots N` plays with them, and `loadgen game`
//! measures with them (it includes this file), so a test and the benchmark
//! drive the server the same way.
//!
//! Each bot has a TCP connection (all of them in one [`Service`]) and a UDP
//! socket of its own ([`Link`]). On each snapshot it decides: a
//! coin-seeker heads for the nearest coin it was shown; a wanderer turns at
//! random now and then. It sends an input only when its direction changes,
//! plus the keep-alive.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use reactor::Reactor;
use reactor::codec::LineDecoder;
use reactor::service::{CloseReason, ConnId, Connections, Handler, Origin, Service};

use crate::game::{self, Dir, MAX_LINE, Welcome};
use crate::link::{Arrival, KEEPALIVE, Link};

/// How a bot moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Towards the nearest coin in its snapshot.
    SeekCoins,
    /// A random direction, changed now and then.
    #[allow(dead_code)] // `loadgen game` plays SeekCoins only
    Wander,
}

/// What the bots count, for `loadgen game` (all bots together, over the
/// window while `measuring` is on).
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Newer snapshots received.
    pub snapshots: u64,
    /// Ticks that never arrived at a bot (gaps between the ticks of
    /// consecutive snapshots).
    pub skipped: u64,
    /// Snapshots older than one already received (reordered or duplicated).
    pub stale: u64,
    /// Datagrams that were not snapshots.
    pub garbage: u64,
    /// Inputs sent.
    pub inputs: u64,
    /// Intervals between one bot's consecutive snapshots, in microseconds.
    pub intervals: Vec<u32>,
}

/// Intervals kept at most (16 MiB of them): a bound on a long window.
const MAX_INTERVALS: usize = 1 << 22;

struct Bot {
    name: String,
    #[allow(dead_code)] // read by `send_first`
    conn: ConnId,
    lines: LineDecoder,
    link: Option<Link>,
    last_arrival: Option<Instant>,
    rng: u64,
}

/// All the bots of one process.
pub struct Bots {
    server: SocketAddr,
    strategy: Strategy,
    /// How many bots there will be.
    #[allow(dead_code)] // read by `settled`, which loadgen uses
    count: usize,
    bots: Vec<Bot>,
    by_conn: HashMap<ConnId, usize>,
    /// The service the bots' connections live in, for the UDP callbacks.
    me: Option<Service<Bots>>,
    /// Print what the first bot hears over TCP (announcements and chat).
    pub echo_first: bool,
    /// Stop the loop after this many `WINNER` announcements (as the first
    /// bot hears them).
    pub stop_after_rounds: Option<u64>,
    pub rounds: u64,
    pub joined: usize,
    /// `JOINED` lines naming one of these bots, heard by these bots. Each
    /// bot hears its own join and every later one (the server announces in
    /// one order to all), so when all have joined the sum is N(N+1)/2,
    /// whoever else plays and whatever ids the server gave.
    pub announcements_heard: u64,
    pub measuring: bool,
    pub counts: Counts,
    /// The last `STATS` line the first bot got.
    pub stats_line: Option<String>,
    /// Why the run failed, if it did (a refused join, a lost connection).
    pub failure: Option<String>,
}

impl Bots {
    /// Every bot has joined and heard every join after its own.
    #[allow(dead_code)] // used by loadgen game, not by game_client
    pub fn settled(&self) -> bool {
        let n = self.count as u64;
        self.announcements_heard == n * (n + 1) / 2
    }

    /// Starts `count` bots named `PREFIX1`, `PREFIX2`... (one bot is just
    /// `PREFIX`): connects them (a
    /// batch per turn, so that a thousand connects do not overflow the
    /// server's listen backlog at once) and joins each as it connects.
    ///
    /// # Errors
    ///
    /// The first failure to start a connect.
    pub fn start(
        reactor: &mut Reactor,
        server: SocketAddr,
        prefix: &str,
        count: usize,
        strategy: Strategy,
    ) -> io::Result<Service<Bots>> {
        let bots = Bots {
            server,
            strategy,
            count,
            bots: Vec::with_capacity(count),
            by_conn: HashMap::new(),
            me: None,
            echo_first: false,
            stop_after_rounds: None,
            rounds: 0,
            joined: 0,
            announcements_heard: 0,
            measuring: false,
            counts: Counts::default(),
            stats_line: None,
            failure: None,
        };
        let config = reactor::service::Config::default()
            .input_limit(MAX_LINE + 2)
            .connect_timeout(Duration::from_secs(60))
            .max_connections(count + 16);
        let service = Service::new(reactor, bots, config);
        let me = service.clone();
        service.with(reactor, |bots, _| bots.me = Some(me))?;
        connect_batch(reactor, service.clone(), prefix.to_string(), 0, count)?;
        let alive = service.clone();
        reactor.call_every(KEEPALIVE / 4, move |reactor| {
            let now = reactor.now();
            let _ = alive.with(reactor, |bots, _| bots.keep_alive(now));
        });
        Ok(service)
    }

    /// Sends a TCP line from the first bot (`STATS`, `SAY ...`).
    #[allow(dead_code)] // used by `loadgen game`, which includes this file
    pub fn send_first(&mut self, conns: &mut Connections<'_>, line: &str) {
        if let Some(bot) = self.bots.first() {
            let _ = conns.send(bot.conn, line.as_bytes());
        }
    }

    /// Every bot that has joined sends its keep-alive if due.
    pub fn keep_alive(&mut self, now: Instant) {
        for link in self.bots.iter_mut().filter_map(|b| b.link.as_mut()) {
            link.keep_alive(now);
        }
    }

    fn on_line(&mut self, conns: &mut Connections<'_>, index: usize, line: &str) {
        if index == 0 && self.echo_first {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "WELCOME" => match Welcome::parse(line) {
                Some(welcome) => self.open_link(conns, index, welcome),
                None => self.fail(conns, format!("bad welcome: {line}")),
            },
            "ERROR" => {
                let name = &self.bots[index].name;
                self.fail(conns, format!("{name}: {rest}"))
            }
            "JOINED" if self.bots.iter().any(|bot| bot.name == rest) => {
                self.announcements_heard += 1;
            }
            "WINNER" if index == 0 => {
                self.rounds += 1;
                if self.stop_after_rounds.is_some_and(|n| self.rounds >= n) {
                    conns.reactor().stop();
                }
            }
            "STATS" if index == 0 => self.stats_line = Some(line.to_string()),
            _ => {}
        }
    }

    fn open_link(&mut self, conns: &mut Connections<'_>, index: usize, welcome: Welcome) {
        let Some(service) = self.me.clone() else {
            return;
        };
        let opened = Link::open(
            conns.reactor(),
            welcome,
            self.server,
            service,
            move |bots: &mut Bots, _, data| bots.on_datagram(index, data, Instant::now()),
        );
        match opened {
            Ok(link) => {
                self.bots[index].link = Some(link);
                self.joined += 1;
                if self.measuring {
                    self.counts.inputs += 1;
                }
            }
            Err(e) => self.fail(conns, format!("UDP: {e}")),
        }
    }

    fn on_datagram(&mut self, index: usize, data: &[u8], now: Instant) {
        let strategy = self.strategy;
        let bot = &mut self.bots[index];
        let Some(link) = bot.link.as_mut() else {
            return;
        };
        // A look around every fourth tick (bots take turns); a count of
        // every snapshot, and a decision on each from the bot's own
        // position.
        let look = link.last_tick.is_none_or(|t| (t + index as u64) % 4 == 3);
        let arrival = link.arrive(data, look);
        if self.measuring {
            match arrival {
                Arrival::Newer { skipped } => {
                    self.counts.snapshots += 1;
                    self.counts.skipped += skipped;
                    if let Some(last) = bot.last_arrival
                        && self.counts.intervals.len() < MAX_INTERVALS
                    {
                        let us = now.saturating_duration_since(last).as_micros();
                        self.counts
                            .intervals
                            .push(us.min(u128::from(u32::MAX)) as u32);
                    }
                }
                Arrival::Stale => self.counts.stale += 1,
                Arrival::Garbage => self.counts.garbage += 1,
            }
        }
        if !matches!(arrival, Arrival::Newer { .. }) {
            return;
        }
        bot.last_arrival = Some(now);
        let Some(me) = link.position() else { return };
        let dir = match strategy {
            Strategy::SeekCoins => {
                // A coin the bot stands on is taken (the list may be a few
                // ticks old).
                link.snapshot.coins.retain(|&coin| coin != me);
                game::steer(me, &link.snapshot.coins)
            }
            Strategy::Wander => {
                bot.rng ^= bot.rng << 13;
                bot.rng ^= bot.rng >> 7;
                bot.rng ^= bot.rng << 17;
                if look && bot.rng % 10 == 0 {
                    Dir::ALL[(bot.rng >> 8) as usize % Dir::ALL.len()]
                } else {
                    link.dir
                }
            }
        };
        if dir != link.dir {
            let _ = link.send(dir, now);
            if self.measuring {
                self.counts.inputs += 1;
            }
        }
    }

    fn fail(&mut self, conns: &mut Connections<'_>, why: String) {
        warn!("{why}");
        self.failure.get_or_insert(why);
        conns.reactor().stop();
    }
}

/// Connects bots `from..count`, a batch now and the rest in later turns.
fn connect_batch(
    reactor: &mut Reactor,
    service: Service<Bots>,
    prefix: String,
    from: usize,
    count: usize,
) -> io::Result<()> {
    const BATCH: usize = 200;
    let to = (from + BATCH).min(count);
    service.with(reactor, |bots, conns| -> io::Result<()> {
        for i in from..to {
            let conn = conns.connect(bots.server)?;
            bots.by_conn.insert(conn, bots.bots.len());
            bots.bots.push(Bot {
                name: if count == 1 {
                    prefix.clone()
                } else {
                    format!("{prefix}{}", i + 1)
                },
                conn,
                lines: LineDecoder::new(MAX_LINE),
                link: None,
                last_arrival: None,
                rng: 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407),
            });
        }
        Ok(())
    })??;
    if to < count {
        reactor.call_later(Duration::from_millis(20), move |reactor| {
            if let Err(e) = connect_batch(reactor, service.clone(), prefix, to, count) {
                let _ = service.with(reactor, |bots, _| {
                    bots.failure.get_or_insert(format!("connect: {e}"));
                });
                reactor.stop();
            }
        });
    }
    Ok(())
}

impl Handler for Bots {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        if let Some(&index) = self.by_conn.get(&id) {
            let line = format!("JOIN {}\n", self.bots[index].name);
            let _ = conns.send(id, line.as_bytes());
        }
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let Some(&index) = self.by_conn.get(&id) else {
            return data.len();
        };
        let mut pos = 0;
        while let Some(line) = self.bots[index].lines.next_line(data, &mut pos) {
            match line.map(std::str::from_utf8) {
                Ok(Ok(text)) => self.on_line(conns, index, text),
                _ => debug!("{id}: a bad line from the server"),
            }
        }
        pos
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        if let Some(&index) = self.by_conn.get(&id) {
            let name = self.bots[index].name.clone();
            self.fail(conns, format!("{name}: connection closed ({reason})"));
        }
    }
}
