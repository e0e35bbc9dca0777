//! The terminal while the game runs: raw mode (keys arrive one by one,
//! unechoed), the alternate screen, a hidden cursor, and a non-blocking
//! stdout; and how all of it is undone on every way out.
//!
//! - The normal ways out (`q`, Ctrl-C and SIGTERM as reactor events, a lost
//!   server) return from the loop, and [`Terminal`]'s `Drop` restores.
//! - A panic: the hook installed by [`Terminal::enter`] restores before the
//!   panic message is printed (so it is readable), and unwinding then drops
//!   the guard, which finds nothing left to do.
//!
//! Ctrl-C stays a signal (`ISIG` is kept): it reaches the loop as an event,
//! like SIGTERM, and the loop ends normally.

use std::io::{self, Write};
use std::os::fd::RawFd;
use std::sync::Mutex;

use crate::common::NonBlocking;

/// Leaves the alternate screen and shows the cursor again.
const LEAVE: &[u8] = b"\x1b[?25h\x1b[?1049l";
/// Enters the alternate screen, hides the cursor, clears.
const ENTER: &[u8] = b"\x1b[?1049h\x1b[?25l\x1b[2J";

/// The settings to put back, for whoever restores first (the guard or the
/// panic hook).
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

/// Puts the saved settings back and leaves the alternate screen, once.
fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(saved) = saved {
        // SAFETY: restores settings read from the same descriptor.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &saved) };
        // stdout may be non-blocking still: a short write here only loses
        // the cursor's visibility, not the terminal's mode.
        let _ = io::stdout().write_all(LEAVE);
        let _ = io::stdout().flush();
    }
}

/// The terminal in game mode while this lives.
pub struct Terminal {
    // Dropped after `Drop::drop` has restored the mode: fields drop last.
    _stdout: NonBlocking,
}

impl Terminal {
    /// Raw mode on stdin's terminal, the alternate screen, stdout
    /// non-blocking. Reads from stdin return at once, with whatever keys
    /// are there (`VMIN` = 0, `VTIME` = 0), so they never wait either.
    ///
    /// # Errors
    ///
    /// `tcgetattr` or `tcsetattr` (stdin is not a terminal), or `fcntl`.
    pub fn enter(stdout: RawFd) -> io::Result<Terminal> {
        // SAFETY: tcgetattr fills the termios it is given for descriptor 0.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::IEXTEN);
        raw.c_iflag &= !(libc::IXON | libc::ICRNL);
        raw.c_cc[libc::VMIN] = 0;
        raw.c_cc[libc::VTIME] = 0;
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        // SAFETY: `raw` is a valid termios copied from the terminal's own.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
            let e = io::Error::last_os_error();
            restore();
            return Err(e);
        }
        let _ = io::stdout().write_all(ENTER);
        let _ = io::stdout().flush();
        match NonBlocking::set(stdout) {
            Ok(nb) => Ok(Terminal { _stdout: nb }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        restore();
    }
}

/// A key, decoded from the bytes the terminal sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    Left,
    Right,
    Enter,
    Backspace,
    Escape,
    /// Ctrl-C as a byte (should `ISIG` be off).
    Interrupt,
    Char(char),
}

/// Splits terminal input into keys: arrows are `ESC [ A`..`ESC [ D` (or
/// `ESC O A`.. in application mode); a lone `ESC` is Escape. Returns how
/// many bytes it used (an escape sequence cut in two waits for the rest).
pub fn keys(data: &[u8], out: &mut Vec<Key>) -> usize {
    let mut i = 0;
    while i < data.len() {
        let (key, used) = match data[i] {
            0x1b => match data.get(i + 1) {
                None => (Some(Key::Escape), 1),
                Some(b'[' | b'O') => match data.get(i + 2) {
                    None => return i,
                    Some(b'A') => (Some(Key::Up), 3),
                    Some(b'B') => (Some(Key::Down), 3),
                    Some(b'C') => (Some(Key::Right), 3),
                    Some(b'D') => (Some(Key::Left), 3),
                    Some(_) => (None, 3),
                },
                Some(_) => (Some(Key::Escape), 1),
            },
            b'\r' | b'\n' => (Some(Key::Enter), 1),
            0x7f | 0x08 => (Some(Key::Backspace), 1),
            0x03 => (Some(Key::Interrupt), 1),
            b if b < 0x20 => (None, 1),
            _ => {
                // One UTF-8 character.
                let len = match data[i] {
                    b if b < 0x80 => 1,
                    b if b >= 0xF0 => 4,
                    b if b >= 0xE0 => 3,
                    _ => 2,
                };
                if i + len > data.len() {
                    return i;
                }
                let c = std::str::from_utf8(&data[i..i + len])
                    .ok()
                    .and_then(|s| s.chars().next());
                (c.map(Key::Char), len)
            }
        };
        out.extend(key);
        i += used;
    }
    i
}
