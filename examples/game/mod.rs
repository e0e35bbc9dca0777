//! The game's wire protocol, shared by `game_server`, `game_client` (and its
//! bots) and `loadgen game`: the UDP datagrams both ways, the sequence
//! number rule, the name rule, and the one steering rule bots use.
//! `docs/game.md` describes the protocols for people.
//!
//! Everything here is text, parsed without allocating: a snapshot is read
//! as iterators over the datagram's bytes.
#![allow(dead_code)]

use std::fmt::Write as _;

/// Snapshots are at most this long: one datagram that no path on the
/// Internet fragments (IPv6's minimum MTU is 1,280, less headers).
pub const MAX_SNAPSHOT: usize = 1200;

/// The longest line either side sends over TCP.
pub const MAX_LINE: usize = 512;

/// A direction of movement; `Stop` holds still.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Dir {
    /// y decreases.
    Up,
    /// y increases.
    Down,
    /// x decreases.
    Left,
    /// x increases.
    Right,
    /// No movement.
    #[default]
    Stop,
}

impl Dir {
    /// Every direction, for bots that pick one at random.
    pub const ALL: [Dir; 5] = [Dir::Up, Dir::Down, Dir::Left, Dir::Right, Dir::Stop];

    /// The letter on the wire: `U D L R -`.
    pub fn letter(self) -> char {
        match self {
            Dir::Up => 'U',
            Dir::Down => 'D',
            Dir::Left => 'L',
            Dir::Right => 'R',
            Dir::Stop => '-',
        }
    }

    /// The direction a letter names.
    pub fn from_letter(text: &str) -> Option<Dir> {
        Some(match text {
            "U" => Dir::Up,
            "D" => Dir::Down,
            "L" => Dir::Left,
            "R" => Dir::Right,
            "-" => Dir::Stop,
            _ => return None,
        })
    }

    /// Where one step from `(x, y)` goes, kept inside a `width` × `height`
    /// field (a wall stops the player).
    pub fn step(self, (x, y): (u16, u16), width: u16, height: u16) -> (u16, u16) {
        match self {
            Dir::Up => (x, y.saturating_sub(1)),
            Dir::Down => (x, (y + 1).min(height.saturating_sub(1))),
            Dir::Left => (x.saturating_sub(1), y),
            Dir::Right => ((x + 1).min(width.saturating_sub(1)), y),
            Dir::Stop => (x, y),
        }
    }
}

/// True if sequence number `a` is newer than `b`: serial-number arithmetic
/// (RFC 1982) on 32 bits, so that the counter may wrap. `a` is newer when it
/// is ahead of `b` by less than half the number space.
pub fn seq_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// A client's input datagram: `INPUT TOKEN SEQ DIR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input {
    /// The secret the server gave in `WELCOME`.
    pub token: u64,
    /// The client's counter, one more for each input it sends.
    pub seq: u32,
    /// The direction that holds from now on.
    pub dir: Dir,
}

impl Input {
    /// Parses a datagram (a final newline allowed, for `socat`).
    pub fn parse(data: &[u8]) -> Option<Input> {
        let text = std::str::from_utf8(data).ok()?.trim_end();
        let mut words = text.split(' ');
        if words.next()? != "INPUT" {
            return None;
        }
        let token = parse_token(words.next()?)?;
        let seq = words.next()?.parse().ok()?;
        let dir = Dir::from_letter(words.next()?)?;
        words.next().is_none().then_some(Input { token, seq, dir })
    }

    /// Writes the datagram into `out` (cleared first).
    pub fn write(&self, out: &mut String) {
        out.clear();
        let _ = write!(
            out,
            "INPUT {} {} {}",
            format_token(self.token),
            self.seq,
            self.dir.letter()
        );
    }
}

/// A token on the wire: 16 hexadecimal digits.
pub fn format_token(token: u64) -> String {
    format!("{token:016x}")
}

/// Reads a token written by [`format_token`].
pub fn parse_token(text: &str) -> Option<u64> {
    if text.len() != 16 {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// One player in a snapshot: `id,x,y,score`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlayerView {
    /// The id `WELCOME` and `PLAYERS` give.
    pub id: u32,
    /// Column, from 0 at the left.
    pub x: u16,
    /// Row, from 0 at the top.
    pub y: u16,
    /// Coins this round.
    pub score: u32,
}

/// A snapshot, `STATE TICK ACK P id,x,y,score ... C x,y ...`, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The server's tick.
    pub tick: u64,
    /// The last input sequence number the server applied for the receiver.
    pub ack: u32,
    /// The receiver first, then the others nearest to it.
    pub players: Vec<PlayerView>,
    /// The coins nearest to the receiver.
    pub coins: Vec<(u16, u16)>,
}

impl PlayerView {
    /// Reads `id,x,y,score`.
    fn parse(word: &str) -> Option<PlayerView> {
        let mut fields = word.split(',');
        let mut next = || fields.next()?.parse::<u32>().ok();
        let (id, x, y, score) = (next()?, next()?, next()?, next()?);
        fields.next().is_none().then_some(())?;
        Some(PlayerView {
            id,
            x: x.try_into().ok()?,
            y: y.try_into().ok()?,
            score,
        })
    }
}

/// The words of a snapshot up to the receiver's own entry: `TICK`, `ACK`
/// and the receiver, with the words that follow.
fn head(data: &[u8]) -> Option<(u64, u32, PlayerView, std::str::SplitAsciiWhitespace<'_>)> {
    let mut words = std::str::from_utf8(data).ok()?.split_ascii_whitespace();
    if words.next()? != "STATE" {
        return None;
    }
    let tick = words.next()?.parse().ok()?;
    let ack = words.next()?.parse().ok()?;
    if words.next()? != "P" {
        return None;
    }
    let me = PlayerView::parse(words.next()?)?;
    Some((tick, ack, me, words))
}

impl Snapshot {
    /// Reads only a snapshot's `TICK`, `ACK` and the receiver's own entry
    /// (the rest of the datagram is checked to be text, not parsed).
    pub fn peek(data: &[u8]) -> Option<(u64, u32, PlayerView)> {
        head(data).map(|(tick, ack, me, _)| (tick, ack, me))
    }

    /// Parses a snapshot datagram into `self` (its vectors reused).
    pub fn parse_into(&mut self, data: &[u8]) -> Option<()> {
        let (tick, ack, me, words) = head(data)?;
        (self.tick, self.ack) = (tick, ack);
        self.players.clear();
        self.coins.clear();
        self.players.push(me);
        let mut in_coins = false;
        for word in words {
            if word == "C" {
                in_coins = true;
            } else if in_coins {
                let (x, y) = word.split_once(',')?;
                self.coins.push((x.parse().ok()?, y.parse().ok()?));
            } else {
                self.players.push(PlayerView::parse(word)?);
            }
        }
        in_coins.then_some(())
    }
}

/// The direction that takes `from` one step closer to the nearest of
/// `coins` (by steps on the grid), or `Stop` if there are none: the
/// coin-seeking bot's whole strategy.
pub fn steer(from: (u16, u16), coins: &[(u16, u16)]) -> Dir {
    let distance = |&(x, y): &(u16, u16)| from.0.abs_diff(x) as u32 + from.1.abs_diff(y) as u32;
    let Some(&(x, y)) = coins.iter().min_by_key(|c| distance(c)) else {
        return Dir::Stop;
    };
    if x > from.0 {
        Dir::Right
    } else if x < from.0 {
        Dir::Left
    } else if y > from.1 {
        Dir::Down
    } else if y < from.1 {
        Dir::Up
    } else {
        Dir::Stop
    }
}

/// `WELCOME ID TOKEN UDP_PORT WIDTH HEIGHT`, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The player's id in snapshots.
    pub id: u32,
    /// The secret for `INPUT` and for `JOIN NAME TOKEN`.
    pub token: u64,
    /// Where to send `INPUT`.
    pub udp_port: u16,
    /// The field's size.
    pub width: u16,
    /// The field's size.
    pub height: u16,
}

impl Welcome {
    /// Parses the line (without its newline).
    pub fn parse(line: &str) -> Option<Welcome> {
        let mut words = line.split(' ');
        if words.next()? != "WELCOME" {
            return None;
        }
        let welcome = Welcome {
            id: words.next()?.parse().ok()?,
            token: parse_token(words.next()?)?,
            udp_port: words.next()?.parse().ok()?,
            width: words.next()?.parse().ok()?,
            height: words.next()?.parse().ok()?,
        };
        words.next().is_none().then_some(welcome)
    }
}
