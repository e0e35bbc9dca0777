//! [`Flags`]: the state of one connection as a small typed set of bits.
//!
//! Four bytes instead of a dozen `bool`s, since every idle connection pays
//! for them. The names of the readiness bits agree with [`Ready`]'s:
//! `READ_CLOSED` here is what `Ready::READ_CLOSED` said (the peer's FIN has
//! arrived), and `END_OF_STREAM` is what a read then proved (it returned 0).
//! This file holds only the set and its names; what each state means for a
//! connection is decided where the state is used.
//!
//! [`Ready`]: crate::Ready

use std::fmt;
use std::ops::BitOr;

/// A set of connection states.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags(u32);

/// The flags, with their names for `Debug`.
const NAMES: [(Flags, &str); 22] = [
    (Flags::READABLE, "READABLE"),
    (Flags::WRITABLE, "WRITABLE"),
    (Flags::READ_CLOSED, "READ_CLOSED"),
    (Flags::END_OF_STREAM, "END_OF_STREAM"),
    (Flags::PAUSED, "PAUSED"),
    (Flags::BACKPRESSURE, "BACKPRESSURE"),
    (Flags::CLOSING, "CLOSING"),
    (Flags::CLOSING_FOR_SHUTDOWN, "CLOSING_FOR_SHUTDOWN"),
    (
        Flags::CLOSING_FOR_INPUT_TIMEOUT,
        "CLOSING_FOR_INPUT_TIMEOUT",
    ),
    (Flags::SHUT_WRITE_PENDING, "SHUT_WRITE_PENDING"),
    (Flags::WRITE_SHUT, "WRITE_SHUT"),
    (Flags::CONNECTING, "CONNECTING"),
    (Flags::LINGERING, "LINGERING"),
    (Flags::ACCEPTED, "ACCEPTED"),
    (Flags::IN_FLUSH_QUEUE, "IN_FLUSH_QUEUE"),
    (Flags::IN_READ_QUEUE, "IN_READ_QUEUE"),
    (Flags::REDELIVER, "REDELIVER"),
    (Flags::IN_IDLE_LIST, "IN_IDLE_LIST"),
    (Flags::IN_UNFINISHED_LIST, "IN_UNFINISHED_LIST"),
    (Flags::IN_CLOSING_LIST, "IN_CLOSING_LIST"),
    (Flags::MESSAGE_EXPECTED, "MESSAGE_EXPECTED"),
    (Flags::TLS, "TLS"),
];

impl Flags {
    /// None set.
    #[cfg(test)]
    pub(crate) const EMPTY: Flags = Flags(0);

    // What the socket is believed to be ready for (edge-triggered: set by
    // an event, cleared by the read or write that proves otherwise).
    /// Believed readable: the last read did not prove the socket drained.
    pub(crate) const READABLE: Flags = Flags(1);
    /// Believed writable: the last write did not fill the send buffer.
    pub(crate) const WRITABLE: Flags = Flags(1 << 1);
    /// An event said the peer's FIN (or an error) has arrived, as
    /// [`Ready::READ_CLOSED`](crate::Ready::READ_CLOSED) does. A short read
    /// then does not prove the socket drained: the end of stream still waits
    /// behind the data, and no new event will announce it. Read until 0.
    pub(crate) const READ_CLOSED: Flags = Flags(1 << 2);
    /// A read returned 0: the peer's FIN has been read.
    pub(crate) const END_OF_STREAM: Flags = Flags(1 << 3);

    // Why reading stopped.
    /// The handler paused reading.
    pub(crate) const PAUSED: Flags = Flags(1 << 4);
    /// Output passed the high-water mark.
    pub(crate) const BACKPRESSURE: Flags = Flags(1 << 5);

    // Closing.
    /// `close` was called: discard input, flush, then close.
    pub(crate) const CLOSING: Flags = Flags(1 << 6);
    /// ...as part of a service shutdown.
    pub(crate) const CLOSING_FOR_SHUTDOWN: Flags = Flags(1 << 7);
    /// ...because a message stayed unfinished too long.
    pub(crate) const CLOSING_FOR_INPUT_TIMEOUT: Flags = Flags(1 << 8);
    /// `shutdown_write` was called with output still queued.
    pub(crate) const SHUT_WRITE_PENDING: Flags = Flags(1 << 9);
    /// Our write side is shut down.
    pub(crate) const WRITE_SHUT: Flags = Flags(1 << 10);
    /// Closed for the handler; waiting for the peer before the descriptor
    /// is closed.
    pub(crate) const LINGERING: Flags = Flags(1 << 11);

    // Where it came from.
    /// An outgoing connect has not completed yet.
    pub(crate) const CONNECTING: Flags = Flags(1 << 12);
    /// Counted against `max_connections`.
    pub(crate) const ACCEPTED: Flags = Flags(1 << 13);

    // Membership of the service's queues and lists (so nothing is listed
    // twice).
    /// Listed in the flush queue.
    pub(crate) const IN_FLUSH_QUEUE: Flags = Flags(1 << 14);
    /// Listed in the read queue.
    pub(crate) const IN_READ_QUEUE: Flags = Flags(1 << 15);
    /// Leftover input must be handed to the handler again (after a pause)
    /// even if no new bytes arrive.
    pub(crate) const REDELIVER: Flags = Flags(1 << 16);
    /// Linked into the idle list.
    pub(crate) const IN_IDLE_LIST: Flags = Flags(1 << 17);
    /// Linked into the unfinished-input list.
    pub(crate) const IN_UNFINISHED_LIST: Flags = Flags(1 << 18);
    /// Linked into the closing list.
    pub(crate) const IN_CLOSING_LIST: Flags = Flags(1 << 19);
    /// The handler called `expect_message` during the current `on_data`.
    pub(crate) const MESSAGE_EXPECTED: Flags = Flags(1 << 20);

    // The transport.
    /// The connection's bytes pass through TLS: the plain-socket shortcuts
    /// (the fast paths, the reply in place, the short-read rule) do not
    /// apply. A flag, so that the hot path tests a bit it has loaded anyway
    /// rather than asking the transport each time.
    pub(crate) const TLS: Flags = Flags(1 << 21);

    /// Any of these stops reading.
    pub(crate) const NOT_READING: Flags = Flags::END_OF_STREAM
        .union(Flags::PAUSED)
        .union(Flags::BACKPRESSURE)
        .union(Flags::CLOSING)
        .union(Flags::CONNECTING)
        .union(Flags::LINGERING);

    /// Any of these refuses new output.
    pub(crate) const NOT_SENDING: Flags = Flags::CLOSING
        .union(Flags::SHUT_WRITE_PENDING)
        .union(Flags::WRITE_SHUT)
        .union(Flags::LINGERING);

    /// Both sets (usable in constants, where `|` is not).
    #[inline]
    pub(crate) const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// True if every flag of `flags` is set.
    #[inline]
    pub(crate) fn has(self, flags: Flags) -> bool {
        self.0 & flags.0 == flags.0
    }

    /// True if any flag of `flags` is set.
    #[inline]
    pub(crate) fn any(self, flags: Flags) -> bool {
        self.0 & flags.0 != 0
    }

    #[inline]
    pub(crate) fn set(&mut self, flags: Flags) {
        self.0 |= flags.0;
    }

    #[inline]
    pub(crate) fn clear(&mut self, flags: Flags) {
        self.0 &= !flags.0;
    }

    /// Clears `flags` and says whether they were all set.
    #[inline]
    pub(crate) fn take(&mut self, flags: Flags) -> bool {
        let had = self.has(flags);
        self.clear(flags);
        had
    }

    /// True if, of the flags in `mask`, exactly those in `want` are set: one
    /// comparison for "writable, and not connecting, closing or shut".
    #[inline]
    pub(crate) fn only(self, mask: Flags, want: Flags) -> bool {
        self.0 & mask.0 == want.0
    }
}

impl BitOr for Flags {
    type Output = Flags;

    #[inline]
    fn bitor(self, other: Flags) -> Flags {
        self.union(other)
    }
}

impl fmt::Debug for Flags {
    /// `Flags(READABLE | CLOSING)`, as `Ready` prints its flags.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Flags(")?;
        let mut first = true;
        for (flag, name) in NAMES {
            if self.has(flag) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_is_one_distinct_bit_with_a_name() {
        let mut seen = Flags::EMPTY;
        for (flag, name) in NAMES {
            assert_eq!(flag.0.count_ones(), 1, "{name} is one bit");
            assert!(!seen.any(flag), "{name} shares a bit");
            seen.set(flag);
        }
    }

    #[test]
    fn has_any_take_and_only_mean_what_they_say() {
        let mut flags = Flags::READABLE | Flags::CLOSING;
        assert!(flags.has(Flags::READABLE));
        assert!(!flags.has(Flags::READABLE | Flags::WRITABLE));
        assert!(flags.any(Flags::READABLE | Flags::WRITABLE));
        assert!(flags.any(Flags::NOT_SENDING) && flags.any(Flags::NOT_READING));
        assert!(flags.take(Flags::CLOSING));
        assert!(!flags.take(Flags::CLOSING), "already taken");
        flags.set(Flags::WRITABLE);
        let mask = Flags::WRITABLE | Flags::CONNECTING | Flags::NOT_SENDING;
        assert!(flags.only(mask, Flags::WRITABLE));
        flags.set(Flags::WRITE_SHUT);
        assert!(!flags.only(mask, Flags::WRITABLE));
    }

    #[test]
    fn debug_names_the_flags() {
        let flags = Flags::READABLE | Flags::READ_CLOSED | Flags::LINGERING;
        assert_eq!(
            format!("{flags:?}"),
            "Flags(READABLE | READ_CLOSED | LINGERING)"
        );
        assert_eq!(format!("{:?}", Flags::EMPTY), "Flags()");
    }
}
