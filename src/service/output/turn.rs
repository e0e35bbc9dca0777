//! The turn buffer: everything sent during the current turn to connections
//! whose sockets are writable.
//!
//! One byte arena for the whole service; each connection keeps a linked
//! list of ranges into it (a [`TurnLink`]), and a send that lands right
//! after the connection's previous range extends it. The before-sleep flush
//! writes each connection's ranges straight from the arena with one `write`
//! (or `writev`), then the arena is emptied for the next turn. A message
//! sent to many connections (a broadcast) is stored once and linked to each
//! of them: consecutive broadcasts to a room are adjacent in the arena, so
//! each member's whole turn is one contiguous write. Steady traffic costs a
//! copy into the arena and a few stores per message: no allocation.
//!
//! What a connection could not take by the end of the turn is *spilled* into
//! its backlog (`backlog.rs`): copied, or, in a turn with broadcasts, linked
//! as slices of one frozen copy of the arena that all slow receivers share.
//! This file knows nothing of connections or sockets.

use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use super::MAX_SLICES;
use super::backlog::{BufferPool, OutputQueue};

/// The end of a list of ranges.
const NIL: u32 = u32::MAX;

/// Messages larger than this bypass the turn buffer and go to the
/// connection's backlog directly (one exactly sized chunk), so a bulk
/// transfer does not make the shared arena grow.
pub(crate) const TURN_MAX: usize = 256 * 1024;

/// An arena that held more than this when emptied is shrunk back.
const TURN_KEEP: usize = 4 * 1024 * 1024;

#[derive(Clone, Copy, Debug)]
struct Range {
    start: u32,
    end: u32,
    next: u32,
}

/// A connection's ranges in the [`TurnBuffer`]. The first range is held
/// inline: a connection sent one message (or several adjacent ones) this
/// turn, the common case, costs no entry in the shared range list.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TurnLink {
    /// The first range (`end == NIL`: the link is empty).
    start: u32,
    end: u32,
    /// The further ranges, a list in [`TurnBuffer::ranges`].
    rest: u32,
    tail: u32,
    bytes: u32,
}

impl Default for TurnLink {
    fn default() -> TurnLink {
        TurnLink {
            start: 0,
            end: NIL,
            rest: NIL,
            tail: NIL,
            bytes: 0,
        }
    }
}

impl TurnLink {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.end == NIL
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.bytes as usize
    }
}

/// Output sent during the current turn to writable connections: one byte
/// arena, and per connection a linked list of ranges into it. See the
/// module documentation.
#[derive(Debug, Default)]
pub(crate) struct TurnBuffer {
    /// The arena. Kept initialised to its full size, with `len` bytes in
    /// use: storing a message is a bounds check and a copy.
    bytes: Vec<u8>,
    len: usize,
    ranges: Vec<Range>,
    /// Connections with ranges here; the arena is emptied when none are left.
    users: u32,
    /// A reference-counted copy of the arena, made (once per turn) when
    /// several connections must keep its bytes past the turn: each keeps a
    /// slice of the one copy, not a copy of its own.
    frozen: Option<Rc<[u8]>>,
    /// Some bytes this turn were linked to several connections (a
    /// broadcast): what they cannot take is shared, not copied.
    fan_out: bool,
}

impl TurnBuffer {
    /// True if `len` more bytes fit (offsets are 32-bit).
    #[inline]
    pub(crate) fn has_room(&self, len: usize) -> bool {
        len <= TURN_MAX && self.len + len < NIL as usize
    }

    /// Stores `data` once; returns where it lies, for [`link`](Self::link).
    #[inline(always)]
    pub(crate) fn store(&mut self, data: &[u8]) -> (u32, u32) {
        let start = self.len;
        let end = start + data.len();
        if end > self.bytes.len() {
            self.grow(end);
        }
        self.bytes[start..end].copy_from_slice(data);
        self.len = end;
        (start as u32, end as u32)
    }

    /// Makes the arena at least `needed` bytes long (doubling, so storing
    /// stays amortised O(1)).
    #[cold]
    fn grow(&mut self, needed: usize) {
        let size = needed.max(self.bytes.len() * 2).max(4096);
        self.bytes.resize(size, 0);
    }

    /// Notes that this turn's bytes are shared by several connections.
    #[inline]
    pub(crate) fn mark_fan_out(&mut self) {
        self.fan_out = true;
    }

    /// Adds a stored range to a connection's list, merging it with the
    /// connection's last range when they touch.
    #[inline(always)]
    pub(crate) fn link(&mut self, link: &mut TurnLink, (start, end): (u32, u32)) {
        link.bytes += end - start;
        if link.end == NIL {
            link.start = start;
            link.end = end;
            self.users += 1;
            return;
        }
        if link.tail == NIL {
            if link.end == start {
                link.end = end;
                return;
            }
        } else {
            let last = &mut self.ranges[link.tail as usize];
            if last.end == start {
                last.end = end;
                return;
            }
        }
        let index = self.ranges.len() as u32;
        self.ranges.push(Range {
            start,
            end,
            next: NIL,
        });
        if link.tail == NIL {
            link.rest = index;
        } else {
            self.ranges[link.tail as usize].next = index;
        }
        link.tail = index;
    }

    /// The connection's output this turn, if it is one range.
    #[inline(always)]
    pub(crate) fn single(&self, link: &TurnLink) -> Option<&[u8]> {
        if link.rest != NIL || link.end == NIL {
            return None;
        }
        self.bytes.get(link.start as usize..link.end as usize)
    }

    /// Writes up to `limit` bytes of a connection's ranges with one `write`
    /// (one range) or one `writev` (several). Returns the bytes written and
    /// the bytes offered.
    #[inline]
    pub(crate) fn write_to<W: Write>(
        &self,
        link: &TurnLink,
        out: &mut W,
        limit: usize,
    ) -> io::Result<(usize, usize)> {
        if link.end == NIL {
            return Ok((0, 0));
        }
        let first = &self.bytes[link.start as usize..link.end as usize];
        if link.rest == NIL || first.len() >= limit {
            let slice = &first[..first.len().min(limit)];
            return Ok((out.write(slice)?, slice.len()));
        }
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        slices[0] = IoSlice::new(first);
        let (mut count, mut offered, mut next) = (1, first.len(), link.rest);
        while next != NIL && count < MAX_SLICES && offered < limit {
            let range = self.ranges[next as usize];
            let end =
                (range.end as usize).min((range.start as usize).saturating_add(limit - offered));
            slices[count] = IoSlice::new(&self.bytes[range.start as usize..end]);
            offered += end - range.start as usize;
            count += 1;
            next = range.next;
        }
        Ok((out.write_vectored(&slices[..count])?, offered))
    }

    /// Drops `n` written bytes from the front of a connection's ranges.
    #[inline]
    pub(crate) fn consume(&mut self, link: &mut TurnLink, mut n: usize) {
        link.bytes -= n as u32;
        while n > 0 && link.end != NIL {
            let len = (link.end - link.start) as usize;
            if n < len {
                link.start += n as u32;
                return;
            }
            n -= len;
            self.advance(link);
        }
        if link.bytes == 0 && link.end != NIL {
            self.release(link);
        }
    }

    /// Moves a link's next range into its inline first range, or releases
    /// the link if there is none.
    #[inline]
    fn advance(&mut self, link: &mut TurnLink) {
        if link.rest == NIL {
            self.release(link);
            return;
        }
        let range = self.ranges[link.rest as usize];
        link.start = range.start;
        link.end = range.end;
        link.rest = range.next;
        if link.rest == NIL {
            link.tail = NIL;
        }
    }

    /// Moves what is left of a connection's ranges into its backlog, and
    /// releases them. In a turn with broadcasts, the connections that could
    /// not take everything share one frozen copy of the turn buffer; in a
    /// turn without (an echo cut short), the rest is copied.
    pub(crate) fn spill(
        &mut self,
        link: &mut TurnLink,
        queue: &mut OutputQueue,
        pool: &mut BufferPool,
    ) {
        let share = self.fan_out || self.frozen.is_some();
        let (mut range, mut next) = ((link.start, link.end), link.rest);
        while range.1 != NIL {
            let (start, end) = range;
            (range, next) = match self.ranges.get(next as usize) {
                Some(r) => ((r.start, r.end), r.next),
                None => ((0, NIL), NIL),
            };
            if share {
                // `freeze` copies again when bytes were stored since the last
                // copy, so every range of this turn lies inside it.
                let frozen = self.freeze();
                debug_assert!(end as usize <= frozen.len());
                queue.push_shared(frozen, start, end);
            } else {
                queue.push_bytes(&self.bytes[start as usize..end as usize], pool);
            }
        }
        self.release(link);
    }

    /// The frozen copy of the arena, made now if there is none, or if bytes
    /// were added since it was made.
    fn freeze(&mut self) -> &Rc<[u8]> {
        if self.frozen.as_ref().is_none_or(|f| f.len() < self.len) {
            self.frozen = Some(Rc::from(&self.bytes[..self.len]));
        }
        self.frozen.as_ref().expect("frozen above")
    }

    /// Forgets a connection's ranges (written, spilled or dropped). The
    /// arena empties when no connection uses it.
    #[inline(always)]
    pub(crate) fn release(&mut self, link: &mut TurnLink) {
        if link.end != NIL {
            self.users -= 1;
        }
        *link = TurnLink::default();
        if self.users == 0 {
            self.len = 0;
            self.ranges.clear();
            self.frozen = None;
            self.fan_out = false;
            if self.bytes.len() > TURN_KEEP {
                self.bytes.truncate(TURN_KEEP / 4);
                self.bytes.shrink_to_fit();
                self.ranges.shrink_to(TURN_KEEP / 64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Trickle;
    use super::*;

    #[test]
    fn the_turn_buffer_merges_adjacent_ranges_and_shares_broadcasts() {
        let mut turn = TurnBuffer::default();
        let (mut a, mut b) = (TurnLink::default(), TurnLink::default());
        // Two broadcasts to both: stored once each, and adjacent for each.
        let first = turn.store(b"one ");
        turn.link(&mut a, first);
        turn.link(&mut b, first);
        let second = turn.store(b"two ");
        turn.link(&mut a, second);
        turn.link(&mut b, second);
        assert_eq!(
            &turn.bytes[..turn.len],
            b"one two ",
            "each message stored once"
        );
        assert_eq!(
            turn.ranges.len(),
            0,
            "one merged range per connection, inline"
        );
        // A private message to `a` only: `b` now has a gap.
        let private = turn.store(b"psst ");
        turn.link(&mut a, private);
        let third = turn.store(b"three");
        turn.link(&mut a, third);
        turn.link(&mut b, third);
        let mut out_a = Trickle {
            cap: usize::MAX,
            got: Vec::new(),
            calls: 0,
        };
        let (n, _) = turn.write_to(&a, &mut out_a, usize::MAX).unwrap();
        turn.consume(&mut a, n);
        assert_eq!(out_a.got, b"one two psst three");
        assert!(a.is_empty());
        let mut out_b = Trickle {
            cap: 5,
            got: Vec::new(),
            calls: 0,
        };
        let (n, offered) = turn.write_to(&b, &mut out_b, usize::MAX).unwrap();
        assert_eq!((n, offered), (5, 13), "a writev of two ranges, cut short");
        turn.consume(&mut b, n);
        let mut pool = BufferPool::new(4);
        let mut backlog = OutputQueue::default();
        turn.spill(&mut b, &mut backlog, &mut pool);
        assert_eq!(backlog.len(), 8);
        assert_eq!(
            (turn.users, turn.len),
            (0, 0),
            "emptied once nobody uses it"
        );
    }

    #[test]
    fn a_broadcast_that_receivers_cannot_take_is_shared_not_copied() {
        let mut turn = TurnBuffer::default();
        let mut pool = BufferPool::new(4);
        let line = vec![b'l'; 2000];
        let mut links = vec![TurnLink::default(); 10];
        let range = turn.store(&line);
        turn.mark_fan_out();
        for link in &mut links {
            turn.link(link, range);
        }
        let mut backlogs: Vec<OutputQueue> = (0..10).map(|_| OutputQueue::default()).collect();
        for (link, backlog) in links.iter_mut().zip(&mut backlogs) {
            turn.spill(link, backlog, &mut pool);
        }
        // Every backlog refers to one frozen copy.
        let frozen: Vec<*const u8> = backlogs
            .iter()
            .map(|b| b.first_shared_base().unwrap_or(std::ptr::null()))
            .collect();
        assert!(frozen.iter().all(|p| !p.is_null() && *p == frozen[0]));
        let mut out = Trickle {
            cap: usize::MAX,
            got: Vec::new(),
            calls: 0,
        };
        let (n, _) = backlogs[3].write_to(&mut out, usize::MAX).unwrap();
        assert_eq!((n, out.got), (2000, line));
        assert_eq!(turn.users, 0);
    }

    #[test]
    fn bytes_stored_after_a_freeze_are_shared_from_a_fresh_copy() {
        let mut turn = TurnBuffer::default();
        let mut pool = BufferPool::new(4);
        let (mut a, mut b, mut c) = (
            TurnLink::default(),
            TurnLink::default(),
            TurnLink::default(),
        );
        let first = turn.store(b"first ");
        turn.mark_fan_out();
        turn.link(&mut a, first);
        turn.link(&mut b, first);
        let mut queue_a = OutputQueue::default();
        turn.spill(&mut a, &mut queue_a, &mut pool);
        // More is stored in the same turn (an `on_drained` that sends), and
        // spilled: the copy made for `a` does not hold it.
        let later = turn.store(b"later");
        turn.link(&mut c, later);
        let mut queue_c = OutputQueue::default();
        turn.spill(&mut c, &mut queue_c, &mut pool);
        let mut out = Trickle {
            cap: usize::MAX,
            got: Vec::new(),
            calls: 0,
        };
        let (n, _) = queue_c.write_to(&mut out, usize::MAX).unwrap();
        assert_eq!(&out.got[..n], b"later");
        assert_ne!(queue_a.first_shared_base(), queue_c.first_shared_base());
        turn.release(&mut b);
        assert_eq!(turn.users, 0);
    }

    #[test]
    fn a_backlog_counts_what_a_frozen_copy_holds_beyond_its_own_bytes() {
        let mut turn = TurnBuffer::default();
        let mut pool = BufferPool::new(4);
        let (mut slow, mut other) = (TurnLink::default(), TurnLink::default());
        // A turn of 1000 bytes, of which the slow receiver gets two bytes,
        // apart: two chunks of one frozen copy.
        let one = turn.store(b"1");
        let private = turn.store(&[b'p'; 997]);
        let two = turn.store(b"2");
        let tail = turn.store(b"t");
        turn.mark_fan_out();
        for range in [one, two] {
            turn.link(&mut slow, range);
            turn.link(&mut other, range);
        }
        turn.link(&mut other, private);
        turn.link(&mut slow, tail);
        let mut queue = OutputQueue::default();
        turn.spill(&mut slow, &mut queue, &mut pool);
        assert_eq!(queue.len(), 3);
        assert_eq!(
            queue.footprint(),
            1000,
            "its 3 bytes, and the 997 it pins beyond them, counted once"
        );
        // Written bytes no longer count as its own: the copy is still held.
        queue.consume(1, &mut pool);
        assert_eq!(queue.footprint(), 2 + 998);
        queue.consume(2, &mut pool);
        assert_eq!(queue.footprint(), 0, "let go of entirely");
        turn.release(&mut other);
    }
}
