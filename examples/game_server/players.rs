//! Who the players are: the table of players and the four ways to find one
//! (by name, by token, by UDP address, by TCP connection), kept consistent
//! in one place.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use reactor::service::ConnId;
use slab::Slab;

use crate::game::Dir;

/// Inputs a player may send in a second; more are dropped and counted.
pub const INPUTS_PER_SECOND: f32 = 60.0;

/// Where a player stands with the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Moving, and sent snapshots.
    Playing,
    /// UDP has been silent for `--udp-timeout` while TCP stayed open:
    /// frozen, shown to the others, not sent snapshots. Since when.
    Away(Instant),
    /// TCP closed: out of the arena, the name and score kept for `--grace`
    /// for a `JOIN NAME TOKEN`. Since when.
    Gone(Instant),
}

/// One player.
#[derive(Debug)]
pub struct Player {
    pub name: String,
    pub token: u64,
    pub conn: Option<ConnId>,
    /// Where its inputs come from, and its snapshots go.
    pub udp: Option<SocketAddr>,
    pub pos: (u16, u16),
    pub dir: Dir,
    pub score: u32,
    /// The last input sequence number applied.
    pub last_seq: Option<u32>,
    /// The last valid input (or the join).
    pub heard: Instant,
    pub presence: Presence,
    /// Token bucket for the input rate: inputs it may still send, and when
    /// that was worked out.
    allowance: f32,
    allowance_at: Instant,
}

impl Player {
    /// Takes one input from the bucket; false if the player is over the
    /// rate (the bucket refills at [`INPUTS_PER_SECOND`], holding at most a
    /// second's worth).
    pub fn admit_input(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.allowance_at)
            .as_secs_f32();
        self.allowance = (self.allowance + elapsed * INPUTS_PER_SECOND).min(INPUTS_PER_SECOND);
        self.allowance_at = now;
        if self.allowance >= 1.0 {
            self.allowance -= 1.0;
            true
        } else {
            false
        }
    }

    /// In the arena: moving, or frozen while away.
    pub fn on_field(&self) -> bool {
        !matches!(self.presence, Presence::Gone(_))
    }
}

/// Names are unique without regard to case: this is the key.
fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// A token from the kernel's random generator: tokens are the players'
/// secrets (whoever has one can steer that player), so they must not be
/// guessable from one another.
fn new_token() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(bytes))
}

/// Every player, and the indexes to them. The id in snapshots is the
/// player's slot.
#[derive(Debug, Default)]
pub struct Players {
    pub all: Slab<Player>,
    by_name: HashMap<String, usize>,
    by_token: HashMap<u64, usize>,
    by_addr: HashMap<SocketAddr, usize>,
    by_conn: HashMap<ConnId, usize>,
}

impl Players {
    /// A new player, playing, at `pos`.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if the name is taken (its case ignored); an error
    /// from the kernel's random generator.
    pub fn add(
        &mut self,
        name: &str,
        conn: ConnId,
        pos: (u16, u16),
        now: Instant,
    ) -> io::Result<usize> {
        let key = fold(name);
        if self.by_name.contains_key(&key) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "name taken"));
        }
        let mut token = new_token()?;
        while self.by_token.contains_key(&token) {
            token = new_token()?;
        }
        let id = self.all.insert(Player {
            name: name.to_string(),
            token,
            conn: Some(conn),
            udp: None,
            pos,
            dir: Dir::Stop,
            score: 0,
            last_seq: None,
            heard: now,
            presence: Presence::Playing,
            allowance: INPUTS_PER_SECOND,
            allowance_at: now,
        });
        self.by_name.insert(key, id);
        self.by_token.insert(token, id);
        self.by_conn.insert(conn, id);
        Ok(id)
    }

    /// Forgets a player entirely.
    pub fn remove(&mut self, id: usize) -> Option<Player> {
        let player = self.all.try_remove(id)?;
        self.by_name.remove(&fold(&player.name));
        self.by_token.remove(&player.token);
        if let Some(addr) = player.udp {
            self.by_addr.remove(&addr);
        }
        if let Some(conn) = player.conn {
            self.by_conn.remove(&conn);
        }
        Some(player)
    }

    /// The player of a name.
    pub fn by_name(&self, name: &str) -> Option<usize> {
        self.by_name.get(&fold(name)).copied()
    }

    /// The player of a token.
    pub fn by_token(&self, token: u64) -> Option<usize> {
        self.by_token.get(&token).copied()
    }

    /// The player whose inputs come from `addr`.
    pub fn by_addr(&self, addr: SocketAddr) -> Option<usize> {
        self.by_addr.get(&addr).copied()
    }

    /// The player of a TCP connection.
    pub fn by_conn(&self, conn: ConnId) -> Option<usize> {
        self.by_conn.get(&conn).copied()
    }

    /// Moves a player's UDP to `addr` (a client whose socket changed): the
    /// old address is forgotten.
    pub fn set_addr(&mut self, id: usize, addr: SocketAddr) {
        let player = &mut self.all[id];
        if let Some(old) = player.udp.replace(addr) {
            self.by_addr.remove(&old);
        }
        self.by_addr.insert(addr, id);
    }

    /// Ties a player to a TCP connection, or (with `None`) unties it.
    pub fn set_conn(&mut self, id: usize, conn: Option<ConnId>) {
        let player = &mut self.all[id];
        if let Some(old) = std::mem::replace(&mut player.conn, conn) {
            self.by_conn.remove(&old);
        }
        if let Some(conn) = conn {
            self.by_conn.insert(conn, id);
        }
    }

    /// Forgets a player's UDP address (it left the arena).
    pub fn clear_addr(&mut self, id: usize) {
        if let Some(old) = self.all[id].udp.take() {
            self.by_addr.remove(&old);
        }
    }
}
