//! A small real-time multiplayer game on one reactor: the seeds' second
//! advanced exercise. The server is the authority: it keeps the game state,
//! takes inputs over UDP, sends every player a snapshot over UDP each tick,
//! and carries chat and the game's announcements over TCP.
//!
//! Run:   cargo run --example game_server
//!        cargo run --example game_client -- --name alice     (in another terminal)
//!        cargo run --example game_client -- --bots 3         (some company)
//! Talk:  nc 127.0.0.1 7777                                  (JOIN bob, SAY hi, PLAYERS)
//!        socat - UDP:127.0.0.1:7777                         (INPUT TOKEN 1 R)
//!
//! `docs/game.md` describes the protocols and the networking model. The
//! files: `arena.rs` (the rules and the spatial index), `players.rs` (the
//! players and how to find one), `server.rs` (TCP lines and UDP datagrams),
//! `tick.rs` (one tick: moves, timeouts, snapshots), `stats.rs` (`STATS`).

mod arena;
#[path = "../common/mod.rs"]
mod common;
#[path = "../game/mod.rs"]
mod game;
mod players;
mod server;
mod stats;
mod tick;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::info;
use reactor::Reactor;
use reactor::service::{Config, Service};
use reactor::udp::{UdpConfig, UdpEndpoint};

use server::{GameServer, Settings};

const USAGE: &str = "\
game_server: an arena game, state over UDP, chat over TCP, on one loop

usage: game_server [--addr HOST:PORT] [options]

options:
  --addr HOST:PORT     TCP and UDP address (default 127.0.0.1:7777)
  --width N            the field's width (default 60, at most 4096)
  --height N           the field's height (default 20, at most 4096)
  --tick D             the tick (default 50ms: 20 Hz)
  --win-score N        coins that win a round (default 10)
  --udp-timeout D      UDP silence that makes a player away (default 5s)
  --grace D            how long an away or disconnected player keeps its
                       name and score (default 30s)
  --max-players N      players at most (default 1000)
  --udp-rcvbuf SIZE    the UDP socket's receive buffer (default 4MiB; the
                       kernel caps it at net.core.rmem_max)
  --seed N             seed of the coins' randomness (default: from the clock)
  -h, --help           show this text

TCP lines: JOIN NAME [TOKEN], SAY TEXT, PLAYERS, QUIT, STATS.
UDP datagrams: INPUT TOKEN SEQ DIR (DIR one of U D L R -).
";

/// The largest field: the arena keeps a word per cell.
const MAX_SIDE: usize = 4096;

fn main() {
    common::init_logging();
    let mut addr = "127.0.0.1:7777".to_string();
    let mut settings = Settings {
        width: 60,
        height: 20,
        tick: Duration::from_millis(50),
        win_score: 10,
        udp_timeout: Duration::from_secs(5),
        grace: Duration::from_secs(30),
        max_players: 1000,
    };
    let mut seed = None;
    let mut rcvbuf = 4 << 20;
    let side = |s: &str| match common::count(s)? {
        n @ 1..=MAX_SIDE => Ok(n as u16),
        _ => Err(format!("use 1 to {MAX_SIDE}")),
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("width") => settings.width = common::value(&mut parser, "width", side),
            Long("height") => settings.height = common::value(&mut parser, "height", side),
            Long("tick") => {
                settings.tick = common::value(&mut parser, "tick", common::parse_duration)
                    .max(Duration::from_millis(1))
            }
            Long("win-score") => {
                settings.win_score =
                    common::value(&mut parser, "win-score", common::count).max(1) as u32
            }
            Long("udp-timeout") => {
                settings.udp_timeout =
                    common::value(&mut parser, "udp-timeout", common::parse_duration)
            }
            Long("grace") => {
                settings.grace = common::value(&mut parser, "grace", common::parse_duration)
            }
            Long("max-players") => {
                settings.max_players = common::value(&mut parser, "max-players", common::count)
            }
            Long("udp-rcvbuf") => {
                rcvbuf = common::value(&mut parser, "udp-rcvbuf", common::parse_size)
            }
            Long("seed") => seed = Some(common::value(&mut parser, "seed", common::count) as u64),
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    let addr = common::resolve_addr(&addr);
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    if let Err(e) = run(addr, settings, seed, rcvbuf) {
        common::fail(e);
    }
}

fn run(addr: SocketAddr, settings: Settings, seed: u64, rcvbuf: usize) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let tick = settings.tick;
    // No idle timeout: a player's TCP connection may be silent for a whole
    // game (the game is on UDP). A line, though, must be finished within
    // 30 s of its first byte (slowloris).
    let config = Config::default()
        .input_limit(game::MAX_LINE + 2)
        .unfinished_input_timeout(Some(Duration::from_secs(30)))
        .max_connections(settings.max_players + 64);
    let service = Service::new(&mut reactor, GameServer::new(settings, seed), config);
    let (tcp_addr, udp) = common::listen_tcp_and_udp(&mut reactor, &service, addr)?;
    // Every player's inputs arrive on this one socket, and none is read
    // while a tick runs: at 5,000 players the default buffer (some 270
    // small datagrams) overflowed during every tick, keep-alives were lost,
    // and players were taken for away.
    socket2::SockRef::from(&udp).set_recv_buffer_size(rcvbuf)?;
    let for_datagrams = service.clone();
    // A tick's snapshots leave in one burst: room for a few thousand in
    // the queue if the socket's buffer fills.
    let udp_config = UdpConfig::default()
        .max_queued_datagrams(8192)
        .max_queued_bytes(8 * 1024 * 1024);
    let endpoint = UdpEndpoint::from_socket(
        &mut reactor,
        udp,
        udp_config,
        move |reactor, _, from, data| {
            // Outside the handler: `with` cannot be refused here.
            let _ = for_datagrams.with(reactor, |game, conns| game.on_datagram(conns, from, data));
        },
    )?;
    service.with(&mut reactor, |game, _| {
        game.udp_port = tcp_addr.port();
        game.udp = Some(endpoint);
    })?;
    schedule_tick(&mut reactor, service.clone(), Instant::now() + tick, tick);
    let stopping = service.clone();
    reactor::signal::on_shutdown_signal(&mut reactor, move |reactor, signal| {
        info!("{}: shutting down", signal.name());
        if let Ok(line) = stopping.with(reactor, |game, _| {
            let players = game.players.all.len();
            game.stats.line(players)
        }) {
            info!("{}", line.trim_end());
        }
        reactor.stop();
    })?;
    // Announced once a signal can no longer kill us before our handler runs.
    common::announce(format_args!("listening on {tcp_addr}"));
    reactor.run()
}

/// Runs a tick at `due`, then schedules the next one a tick after `due`
/// (not after now: the schedule does not drift by the loop's lateness). How
/// late each tick starts is its jitter, recorded in the stats; a loop more
/// than a tick behind skips the ticks it missed rather than running them in
/// a burst.
fn schedule_tick(
    reactor: &mut Reactor,
    service: Service<GameServer>,
    due: Instant,
    tick: Duration,
) {
    reactor.call_at(due, move |reactor| {
        // The clock now, not the turn's cached time: lateness is the point.
        let started = Instant::now();
        let late = started.saturating_duration_since(due);
        let _ = service
            .with(reactor, |game, conns| {
                game.run_tick(conns, started, late);
                let behind = (late.as_nanos() / tick.as_nanos()) as u64;
                game.stats.missed_ticks += behind;
                due + tick * (behind as u32 + 1)
            })
            .map(|next| schedule_tick(reactor, service, next, tick));
    });
}
