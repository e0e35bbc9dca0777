//! [`Ready`]: what the operating system said about a source in one event.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// The readiness of one source in one event: a small set of flags.
///
/// This is the `mask` of Python's `selectors` (`EVENT_READ | EVENT_WRITE`),
/// widened with the three conditions epoll and kqueue also report:
///
/// | flag            | meaning                                                        |
/// |-----------------|----------------------------------------------------------------|
/// | `READABLE`      | a read will not block (data, end of stream or an error waits)   |
/// | `WRITABLE`      | a write will not block (room in the send buffer)                |
/// | `READ_CLOSED`   | the peer shut down its write side: after the data, EOF          |
/// | `WRITE_CLOSED`  | our write side is closed (peer reset or we shut it down)        |
/// | `ERROR`         | the socket has a pending error (`take_error` tells which)       |
///
/// Readiness is a *hint*: a readable source may still answer `WouldBlock`
/// (spurious events exist), so every read and write must handle it.
///
/// # Examples
///
/// ```
/// use reactor::Ready;
///
/// let ready = Ready::READABLE | Ready::READ_CLOSED;
/// assert!(ready.is_readable());
/// assert!(!ready.is_writable());
/// assert_eq!(format!("{ready:?}"), "Ready(READABLE | READ_CLOSED)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ready(u8);

impl Ready {
    /// No readiness at all.
    pub const EMPTY: Ready = Ready(0);
    /// A read will not block.
    pub const READABLE: Ready = Ready(1);
    /// A write will not block.
    pub const WRITABLE: Ready = Ready(1 << 1);
    /// The peer closed its write side (`EPOLLRDHUP`): reads will reach EOF.
    pub const READ_CLOSED: Ready = Ready(1 << 2);
    /// Our write side is closed (`EPOLLHUP`, or a shut down write half).
    pub const WRITE_CLOSED: Ready = Ready(1 << 3);
    /// The socket has a pending error (`EPOLLERR`).
    pub const ERROR: Ready = Ready(1 << 4);

    const NAMES: [(Ready, &'static str); 5] = [
        (Ready::READABLE, "READABLE"),
        (Ready::WRITABLE, "WRITABLE"),
        (Ready::READ_CLOSED, "READ_CLOSED"),
        (Ready::WRITE_CLOSED, "WRITE_CLOSED"),
        (Ready::ERROR, "ERROR"),
    ];

    /// Translates one mio event into our flags.
    #[inline]
    pub(crate) fn from_event(event: &mio::event::Event) -> Ready {
        let mut ready = Ready::EMPTY;
        if event.is_readable() {
            ready |= Ready::READABLE;
        }
        if event.is_writable() {
            ready |= Ready::WRITABLE;
        }
        if event.is_read_closed() {
            ready |= Ready::READ_CLOSED;
        }
        if event.is_write_closed() {
            ready |= Ready::WRITE_CLOSED;
        }
        if event.is_error() {
            ready |= Ready::ERROR;
        }
        ready
    }

    /// Keeps `READABLE` and `WRITABLE` only where `interest` asked for them,
    /// as `selectors` masks its events; the closed and error flags always pass,
    /// because the kernel reports them whatever was asked.
    #[inline]
    pub(crate) fn masked(self, interest: mio::Interest) -> Ready {
        let mut keep = Ready::READ_CLOSED | Ready::WRITE_CLOSED | Ready::ERROR;
        if interest.is_readable() {
            keep |= Ready::READABLE;
        }
        if interest.is_writable() {
            keep |= Ready::WRITABLE;
        }
        Ready(self.0 & keep.0)
    }

    /// True if every flag of `other` is set in `self`.
    ///
    /// ```
    /// use reactor::Ready;
    /// let r = Ready::READABLE | Ready::WRITABLE;
    /// assert!(r.contains(Ready::WRITABLE));
    /// assert!(!r.contains(Ready::WRITABLE | Ready::ERROR));
    /// ```
    #[inline]
    pub fn contains(self, other: Ready) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// A read will not block.
    #[inline]
    pub fn is_readable(self) -> bool {
        self.contains(Ready::READABLE)
    }

    /// A write will not block.
    #[inline]
    pub fn is_writable(self) -> bool {
        self.contains(Ready::WRITABLE)
    }

    /// The peer shut down its write side.
    #[inline]
    pub fn is_read_closed(self) -> bool {
        self.contains(Ready::READ_CLOSED)
    }

    /// Our write side is closed.
    #[inline]
    pub fn is_write_closed(self) -> bool {
        self.contains(Ready::WRITE_CLOSED)
    }

    /// The socket has a pending error.
    #[inline]
    pub fn is_error(self) -> bool {
        self.contains(Ready::ERROR)
    }
}

impl BitOr for Ready {
    type Output = Ready;
    fn bitor(self, rhs: Ready) -> Ready {
        Ready(self.0 | rhs.0)
    }
}

impl BitOrAssign for Ready {
    fn bitor_assign(&mut self, rhs: Ready) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Ready {
    /// Names the flags, `Ready(READABLE | WRITE_CLOSED)`, not raw bits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ready(")?;
        let mut first = true;
        for (flag, name) in Ready::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("EMPTY")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_closed_and_error_flags() {
        let all = Ready::READABLE
            | Ready::WRITABLE
            | Ready::READ_CLOSED
            | Ready::WRITE_CLOSED
            | Ready::ERROR;
        let only_read = all.masked(mio::Interest::READABLE);
        assert!(only_read.is_readable());
        assert!(!only_read.is_writable());
        assert!(only_read.is_read_closed() && only_read.is_write_closed() && only_read.is_error());
    }

    #[test]
    fn debug_of_empty_names_it() {
        assert_eq!(format!("{:?}", Ready::EMPTY), "Ready(EMPTY)");
    }
}
