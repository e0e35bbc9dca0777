//! The game's terminal client, and its bots: one thread, one reactor, the
//! keyboard, the TCP connection and the UDP socket all sources on it.
//!
//! Run:   cargo run --example game_server &
//!        cargo run --example game_client -- --name alice
//!        cargo run --example game_client -- --bots 5          (five coin-seeking bots)
//!
//! Keys: arrows (or w a s d) turn, space stops, Enter starts a chat line
//! (Enter sends it, Esc drops it), q quits. The arena is drawn from the
//! server's snapshots, at most once a frame; the player's own move is
//! predicted at once when a key is pressed and corrected by the next
//! snapshot that acknowledges the input (`docs/game.md`).
//!
//! The files: `link.rs` (a player's UDP side, shared with the bots),
//! `bot.rs` (the bots, shared with `loadgen game`), `terminal.rs` (raw mode,
//! and its restoration on every way out; keys), `screen.rs` (a frame).

mod bot;
#[path = "../common/mod.rs"]
mod common;
#[path = "../game/mod.rs"]
mod game;
mod link;
mod screen;
mod terminal;

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind, IsTerminal, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use log::debug;
use mio::Interest;
use reactor::Reactor;
use reactor::codec::LineDecoder;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

use game::{Dir, MAX_LINE, Welcome};
use link::{Arrival, KEEPALIVE, Link};
use terminal::Key;

const USAGE: &str = "\
game_client: play game_server's arena in a terminal, or let bots play

usage: game_client [--addr HOST:PORT] --name NAME
       game_client [--addr HOST:PORT] --bot [--name NAME] [--strategy seek|wander] [--rounds N]
       game_client [--addr HOST:PORT] --bots N [--name PREFIX] [--strategy seek|wander] [--rounds N]

options:
  --addr HOST:PORT     the server's TCP address (default 127.0.0.1:7777)
  --name NAME          the player's name (for several bots: the prefix of
                       NAME1, NAME2...; default 'bot')
  --bot                one bot, without a terminal
  --bots N             N bots on one reactor
  --strategy S         how bots move: seek (the nearest coin, the default) or wander
  --rounds N           bots: exit once N rounds have been won
  -h, --help           show this text

Keys: arrows or w a s d move, space stops, Enter chats, q quits.
Bots print what the first of them hears over TCP.
Exit status 1 if the server is lost or refuses the player.
";

/// At most one frame per this long: snapshots arrive at the tick rate,
/// keys at any rate, and the terminal needs neither more often.
const FRAME: Duration = Duration::from_millis(16);

/// The longest chat line one can type, in bytes: what the server's
/// 512-byte line limit leaves after `SAY ` and the newline.
const MAX_SAY: usize = 512 - "SAY \n".len();

/// Inputs remembered until acknowledged, at most.
const MAX_UNACKED: usize = 64;

/// Names kept from one `PLAYERS` listing, at most (the server's
/// `--max-players` is 1,000 by default).
const MAX_LISTED: usize = 100_000;

fn main() {
    common::init_logging();
    let mut addr = "127.0.0.1:7777".to_string();
    let mut name = None;
    let mut bots = None;
    let mut strategy = bot::Strategy::SeekCoins;
    let mut rounds = None;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("name") => name = Some(common::value(&mut parser, "name", common::text)),
            Long("bot") => bots = Some(1),
            Long("bots") => bots = Some(common::value(&mut parser, "bots", common::count).max(1)),
            Long("strategy") => {
                strategy = common::value(&mut parser, "strategy", |s| match s {
                    "seek" => Ok(bot::Strategy::SeekCoins),
                    "wander" => Ok(bot::Strategy::Wander),
                    _ => Err("use seek or wander".to_string()),
                })
            }
            Long("rounds") => rounds = Some(common::value(&mut parser, "rounds", common::count)),
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    let addr = common::resolve_addr(&addr);
    let outcome = match bots {
        Some(count) => {
            let prefix = name.unwrap_or_else(|| "bot".to_string());
            run_bots(addr, &prefix, count, strategy, rounds.map(|r| r as u64))
        }
        None => {
            let name = name.unwrap_or_else(|| common::usage_error("--name is required to play"));
            if let Err(e) = common::check_name(&name, "name") {
                common::usage_error(e);
            }
            if !io::stdin().is_terminal() {
                common::usage_error("stdin is not a terminal (--bot plays without one)");
            }
            run_terminal(addr, name)
        }
    };
    if let Err(e) = outcome {
        common::fail(e);
    }
}

fn run_bots(
    addr: SocketAddr,
    prefix: &str,
    count: usize,
    strategy: bot::Strategy,
    rounds: Option<u64>,
) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let bots = bot::Bots::start(&mut reactor, addr, prefix, count, strategy)?;
    bots.with(&mut reactor, |bots, _| {
        bots.echo_first = true;
        bots.stop_after_rounds = rounds;
    })?;
    reactor::signal::on_shutdown_signal(&mut reactor, |reactor, _| reactor.stop())?;
    reactor.run()?;
    match bots.with(&mut reactor, |bots, _| bots.failure.take())? {
        Some(why) => Err(io::Error::other(why)),
        None => Ok(()),
    }
}

/// The interactive player: everything the loop's callbacks share.
struct Session {
    name: String,
    server: SocketAddr,
    me: Option<Service<Session>>,
    lines: LineDecoder,
    conn: Option<ConnId>,
    link: Option<Link>,
    /// Player ids to names, from `PLAYERS` (asked again whenever someone
    /// joins, comes back or leaves).
    names: HashMap<u32, String>,
    listing: HashMap<u32, String>,
    chat: VecDeque<String>,
    typing: Option<String>,
    /// Inputs sent and not yet acknowledged by a snapshot's `ACK`.
    unacked: Vec<(u32, Dir)>,
    predicted: Option<(u16, u16)>,
    frame: Frame,
    quitting: bool,
    failure: Option<String>,
}

/// The screen's side: a frame is drawn when something changed, at most
/// once per [`FRAME`]; what the terminal does not take at once waits for it
/// to be writable, and while a frame is still waiting, newer ones are not
/// queued behind it but drawn when it has gone.
#[derive(Default)]
struct Frame {
    dirty: bool,
    scheduled: bool,
    last: Option<Instant>,
    text: String,
    pending: Vec<u8>,
}

impl Session {
    fn say(&mut self, line: String) {
        // The server's text goes to a terminal: no control characters.
        let clean: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if self.chat.len() == screen::CHAT_LINES {
            self.chat.pop_front();
        }
        self.chat.push_back(clean);
    }

    fn on_line(&mut self, conns: &mut Connections<'_>, id: ConnId, line: &str) {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "WELCOME" => match Welcome::parse(line) {
                Some(welcome) => self.open_link(conns, welcome),
                None => self.fail(conns, format!("a bad welcome: {line}")),
            },
            "ERROR" if self.link.is_none() => self.fail(conns, format!("refused: {rest}")),
            "ERROR" => self.say(format!("error: {rest}")),
            "CHAT" => {
                let (who, text) = rest.split_once(' ').unwrap_or((rest, ""));
                self.say(format!("{who}: {text}"));
            }
            "JOINED" | "BACK" | "LEFT" | "AWAY" => {
                let what = match word {
                    "JOINED" => "joined",
                    "BACK" => "is back",
                    "LEFT" => "left:",
                    _ => "is away",
                };
                let (who, why) = rest.split_once(' ').unwrap_or((rest, ""));
                self.say(format!("* {who} {what} {why}").trim_end().to_string());
                if word != "AWAY" {
                    let _ = conns.send(id, b"PLAYERS\n");
                }
            }
            "WINNER" => self.say(format!("*** {rest} wins the round ***")),
            "PLAYER" => {
                let mut words = rest.split(' ');
                if let (Some(Ok(pid)), Some(name)) = (words.next().map(str::parse), words.next())
                    && self.listing.len() < MAX_LISTED
                {
                    self.listing.insert(pid, name.to_string());
                }
            }
            "END" => self.names = std::mem::take(&mut self.listing),
            _ => debug!("server: {line}"),
        }
        self.request_frame(conns.reactor());
    }

    fn open_link(&mut self, conns: &mut Connections<'_>, welcome: Welcome) {
        let Some(service) = self.me.clone() else {
            return;
        };
        let opened = Link::open(
            conns.reactor(),
            welcome,
            self.server,
            service,
            |session: &mut Session, conns, data| session.on_datagram(conns.reactor(), data),
        );
        match opened {
            Ok(link) => {
                self.link = Some(link);
                if let Some(conn) = self.conn {
                    let _ = conns.send(conn, b"PLAYERS\n");
                }
            }
            Err(e) => self.fail(conns, format!("UDP: {e}")),
        }
    }

    /// A snapshot: the server's word on where everyone is. Inputs it has
    /// acknowledged are settled; one still in flight is applied again on top
    /// of the server's position (the server will apply it next tick).
    fn on_datagram(&mut self, reactor: &mut Reactor, data: &[u8]) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if !matches!(link.arrive(data, true), Arrival::Newer { .. }) {
            return;
        }
        let ack = link.snapshot.ack;
        self.unacked.retain(|&(seq, _)| game::seq_newer(seq, ack));
        let (width, height) = (link.welcome.width, link.welcome.height);
        self.predicted = link.position().map(|at| match self.unacked.last() {
            Some(&(_, dir)) => dir.step(at, width, height),
            None => at,
        });
        self.request_frame(reactor);
    }

    fn on_keys(&mut self, conns: &mut Connections<'_>, keys: &[Key]) {
        for &key in keys {
            if let Some(text) = self.typing.as_mut() {
                match key {
                    Key::Char(c) if text.len() + c.len_utf8() <= MAX_SAY => text.push(c),
                    Key::Backspace => {
                        text.pop();
                    }
                    Key::Enter => {
                        let line = format!("SAY {text}\n");
                        self.typing = None;
                        if let Some(conn) = self.conn {
                            let _ = conns.send(conn, line.as_bytes());
                        }
                    }
                    Key::Escape => self.typing = None,
                    Key::Interrupt => self.quit(conns),
                    _ => {}
                }
                continue;
            }
            let dir = match key {
                Key::Up | Key::Char('w' | 'k') => Dir::Up,
                Key::Down | Key::Char('s' | 'j') => Dir::Down,
                Key::Left | Key::Char('a' | 'h') => Dir::Left,
                Key::Right | Key::Char('d' | 'l') => Dir::Right,
                Key::Char(' ' | '-') => Dir::Stop,
                Key::Enter | Key::Char('t') => {
                    self.typing = Some(String::new());
                    continue;
                }
                Key::Char('q') | Key::Interrupt => {
                    self.quit(conns);
                    continue;
                }
                // A fault for the tests of the panic path (and nothing else):
                // with REACTOR_GAME_TEST_PANIC=1, '!' panics in a callback.
                Key::Char('!') if std::env::var_os("REACTOR_GAME_TEST_PANIC").is_some() => {
                    panic!("REACTOR_GAME_TEST_PANIC: '!' pressed")
                }
                _ => continue,
            };
            self.turn(conns.reactor().now(), dir);
        }
        self.request_frame(conns.reactor());
    }

    /// Sends a new direction, and predicts its first step at once.
    fn turn(&mut self, now: Instant, dir: Dir) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if link.send(dir, now).is_ok() {
            // Bounded: a server that never acknowledges (its UDP lost) must
            // not grow the list; only the newest inputs matter anyway.
            if self.unacked.len() == MAX_UNACKED {
                self.unacked.remove(0);
            }
            self.unacked.push((link.seq, dir));
            let (width, height) = (link.welcome.width, link.welcome.height);
            self.predicted = self.predicted.map(|at| dir.step(at, width, height));
        }
    }

    fn quit(&mut self, conns: &mut Connections<'_>) {
        self.quitting = true;
        if let Some(conn) = self.conn {
            let _ = conns.send(conn, b"QUIT\n");
        }
        // The server closes after QUIT; should it not, leave anyway.
        conns
            .reactor()
            .call_later(Duration::from_secs(1), |reactor| reactor.stop());
    }

    fn fail(&mut self, conns: &mut Connections<'_>, why: String) {
        self.failure.get_or_insert(why);
        conns.reactor().stop();
    }

    /// Something changed: draw now if a frame's time has passed since the
    /// last, or when it has.
    fn request_frame(&mut self, reactor: &mut Reactor) {
        self.frame.dirty = true;
        if self.frame.scheduled {
            return;
        }
        let Some(service) = self.me.clone() else {
            return;
        };
        self.frame.scheduled = true;
        let at = self.frame.last.map_or(reactor.now(), |last| last + FRAME);
        reactor.call_at(at, move |reactor| {
            let _ = service.with(reactor, |session, _| session.draw());
        });
    }

    fn draw(&mut self) {
        self.frame.scheduled = false;
        if !self.frame.pending.is_empty() {
            // The terminal has not taken the last frame: this one waits for
            // it (the writable event draws it).
            return;
        }
        self.frame.dirty = false;
        self.frame.last = Some(Instant::now());
        let Some(link) = self.link.as_ref() else {
            return;
        };
        let view = screen::View {
            name: &self.name,
            me: link.welcome.id,
            width: link.welcome.width,
            height: link.welcome.height,
            predicted: self.predicted,
            snapshot: &link.snapshot,
            names: &self.names,
            chat: &self.chat,
            typing: self.typing.as_deref(),
        };
        screen::draw(&view, &mut self.frame.text);
        self.frame
            .pending
            .extend_from_slice(self.frame.text.as_bytes());
        common::flush_stdout(&mut self.frame.pending);
    }

    /// stdout is writable again: the rest of a frame, then any newer one.
    fn on_writable(&mut self) {
        common::flush_stdout(&mut self.frame.pending);
        if self.frame.pending.is_empty() && self.frame.dirty {
            self.draw();
        }
    }
}

impl Handler for Session {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        self.conn = Some(id);
        let _ = conns.send(id, format!("JOIN {}\n", self.name).as_bytes());
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut pos = 0;
        while let Some(line) = self.lines.next_line(data, &mut pos) {
            if let Ok(Ok(text)) = line.map(std::str::from_utf8) {
                self.on_line(conns, id, text);
            }
        }
        pos
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, _: ConnId, reason: &CloseReason) {
        if !self.quitting {
            self.failure
                .get_or_insert(format!("lost the server ({reason})"));
        }
        conns.reactor().stop();
    }
}

fn run_terminal(addr: SocketAddr, name: String) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let session = Session {
        name,
        server: addr,
        me: None,
        lines: LineDecoder::new(MAX_LINE),
        conn: None,
        link: None,
        names: HashMap::new(),
        listing: HashMap::new(),
        chat: VecDeque::new(),
        typing: None,
        unacked: Vec::new(),
        predicted: None,
        frame: Frame::default(),
        quitting: false,
        failure: None,
    };
    let service = Service::new(&mut reactor, session, Config::default());
    let me = service.clone();
    service.with(&mut reactor, |session, _| session.me = Some(me))?;
    service.connect(&mut reactor, addr)?;

    let stdout = io::stdout().as_raw_fd();
    // From here on the terminal is in game mode; `terminal` puts it back
    // when it is dropped, however `run_terminal` ends (or unwinds).
    let terminal = terminal::Terminal::enter(stdout)?;

    let writable = service.clone();
    reactor.register(
        common::Fd(stdout),
        Interest::WRITABLE,
        move |reactor, _: &mut common::Fd, _| {
            let _ = writable.with(reactor, |session, _| session.on_writable());
        },
    )?;
    let typed = service.clone();
    let mut partial = Vec::new();
    reactor.register(
        common::Fd(io::stdin().as_raw_fd()),
        Interest::READABLE,
        move |reactor, _: &mut common::Fd, _| {
            // Read until nothing is left (VMIN = 0 answers 0 then; a
            // non-blocking descriptor answers WouldBlock), a bounded amount.
            let mut buf = [0u8; 1024];
            for _ in 0..64 {
                match io::stdin().lock().read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => partial.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let mut keys = Vec::new();
            let used = terminal::keys(&partial, &mut keys);
            partial.drain(..used);
            let _ = typed.with(reactor, |session, conns| session.on_keys(conns, &keys));
        },
    )?;
    let alive = service.clone();
    reactor.call_every(KEEPALIVE / 4, move |reactor| {
        let now = reactor.now();
        let _ = alive.with(reactor, |session, _| {
            if let Some(link) = session.link.as_mut() {
                link.keep_alive(now);
            }
        });
    });
    // Ctrl-C and SIGTERM leave as `q` does, with QUIT: a client that just
    // closed would keep its name reserved for the grace period, and the
    // player could not come back under it. A second signal stops at once.
    let leaving = service.clone();
    reactor::signal::on_shutdown_signal(&mut reactor, move |reactor, signal| {
        debug!("{}: leaving", signal.name());
        let quit = leaving.with(reactor, |session, conns| {
            let first = !session.quitting && session.conn.is_some();
            if first {
                session.quit(conns);
            }
            first
        });
        if !quit.unwrap_or(false) {
            reactor.stop();
        }
    })?;
    let outcome = reactor.run();
    drop(terminal);
    outcome?;
    match service.with(&mut reactor, |session, _| session.failure.take())? {
        Some(why) => Err(io::Error::other(why)),
        None => Ok(()),
    }
}
