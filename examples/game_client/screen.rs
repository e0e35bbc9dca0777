//! Drawing a frame: the arena (or the part of it around the player that
//! fits), the scores, the chat under it, and the line being typed, as one
//! string of ANSI escapes written in one go. Every line is redrawn in place
//! (cursor home, then each line cleared to its end), so nothing flickers.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use crate::game::Snapshot;

/// The most of the arena drawn at once; a bigger field scrolls with the
/// player.
const VIEW_WIDTH: u16 = 76;
const VIEW_HEIGHT: u16 = 24;

/// Chat lines kept and shown.
pub const CHAT_LINES: usize = 6;

/// What a frame shows.
pub struct View<'a> {
    pub name: &'a str,
    pub me: u32,
    pub width: u16,
    pub height: u16,
    /// Where this client predicts itself (ahead of the snapshot by the
    /// inputs the server has not acknowledged yet).
    pub predicted: Option<(u16, u16)>,
    pub snapshot: &'a Snapshot,
    pub names: &'a HashMap<u32, String>,
    pub chat: &'a VecDeque<String>,
    /// The chat line being typed, if one is.
    pub typing: Option<&'a str>,
}

/// The first cell shown along one axis: the player near the middle, the
/// view inside the field.
fn view_start(at: u16, size: u16, view: u16) -> u16 {
    if size <= view {
        0
    } else {
        at.saturating_sub(view / 2).min(size - view)
    }
}

/// Writes the frame into `out` (cleared first).
pub fn draw(view: &View<'_>, out: &mut String) {
    out.clear();
    let (vw, vh) = (view.width.min(VIEW_WIDTH), view.height.min(VIEW_HEIGHT));
    let centre = view.predicted.unwrap_or((0, 0));
    let (x0, y0) = (
        view_start(centre.0, view.width, vw),
        view_start(centre.1, view.height, vh),
    );
    let mut cells = vec![b' '; usize::from(vw) * usize::from(vh)];
    let mut put = |(x, y): (u16, u16), c: u8| {
        if (x0..x0 + vw).contains(&x) && (y0..y0 + vh).contains(&y) {
            cells[usize::from(y - y0) * usize::from(vw) + usize::from(x - x0)] = c;
        }
    };
    for &coin in &view.snapshot.coins {
        put(coin, b'$');
    }
    for p in view.snapshot.players.iter().filter(|p| p.id != view.me) {
        let initial = view
            .names
            .get(&p.id)
            .and_then(|n| n.bytes().find(u8::is_ascii_alphanumeric))
            .map_or(b'*', |b| b.to_ascii_uppercase());
        put((p.x, p.y), initial);
    }
    if let Some(me) = view.predicted {
        put(me, b'@');
    }
    let score = view
        .snapshot
        .players
        .iter()
        .find(|p| p.id == view.me)
        .map_or(0, |p| p.score);
    let at = view
        .predicted
        .map_or(String::from("-"), |(x, y)| format!("{x},{y}"));
    out.push_str("\x1b[H");
    let _ = write!(
        out,
        " {} (you are @)  score {score}  at {at}  tick {}\x1b[K\r\n",
        view.name, view.snapshot.tick
    );
    let border = format!("+{}+\x1b[K\r\n", "-".repeat(usize::from(vw)));
    out.push_str(&border);
    for row in cells.chunks(usize::from(vw).max(1)) {
        out.push('|');
        out.push_str(std::str::from_utf8(row).unwrap_or(""));
        out.push_str("|\x1b[K\r\n");
    }
    out.push_str(&border);
    let mut scores: Vec<(u32, &str)> = view
        .snapshot
        .players
        .iter()
        .map(|p| {
            let name = view.names.get(&p.id).map_or("?", String::as_str);
            (p.score, name)
        })
        .collect();
    scores.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    out.push_str(" scores:");
    for (score, name) in scores.iter().take(8) {
        let _ = write!(out, " {name} {score}");
    }
    out.push_str("\x1b[K\r\n");
    for i in 0..CHAT_LINES {
        if let Some(line) = view.chat.get(i) {
            out.push(' ');
            out.push_str(line);
        }
        out.push_str("\x1b[K\r\n");
    }
    match view.typing {
        Some(text) => {
            let _ = write!(out, " say> {text}_\x1b[K");
        }
        None => out.push_str(" arrows or wasd move, space stops, Enter to chat, q quits\x1b[K"),
    }
}
