//! Timers: [`TimerId`] and the queue behind [`Reactor::call_later`] and
//! [`Reactor::call_every`].
//!
//! The queue is a binary heap of `(deadline, sequence, id)` plus a slab of the
//! live timers. Cancelling removes the timer from the slab and leaves its heap
//! entry behind as a tombstone, skipped when it reaches the top; that makes
//! cancel O(1) where removing from the middle of a heap would be O(n). (Redis's
//! `ae.c` keeps an unsorted list and pays O(n) per turn instead; a timer wheel
//! would make scheduling O(1) too, at the price of a fixed resolution.) When
//! tombstones outnumber live timers the heap is rebuilt, so memory stays
//! proportional to the live timers.
//!
//! A plain data structure: the queue holds callbacks of any type `C` and
//! never calls them; the reactor takes due ones out, runs them, and hands
//! them back.
//!
//! [`Reactor::call_later`]: crate::Reactor::call_later
//! [`Reactor::call_every`]: crate::Reactor::call_every

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

use slab::Slab;

/// Names a timer so it can be cancelled with [`Reactor::cancel`].
///
/// Like a [`Key`](crate::Key), a timer id carries a generation: cancelling a
/// timer that already fired (or was cancelled) is a harmless `false`, never
/// the cancellation of a newer timer that took its slot.
///
/// [`Reactor::cancel`]: crate::Reactor::cancel
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

impl fmt::Debug for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimerId({}#{})", self.index, self.generation)
    }
}

struct Timer<C> {
    generation: u32,
    /// `Some` for a repeating timer.
    interval: Option<Duration>,
    /// Taken out while the callback runs.
    callback: Option<C>,
}

/// Deadline first, then the order timers were scheduled in, so timers due at
/// the same instant fire in the order they were created.
type HeapEntry = Reverse<(Instant, u64, u32, u32)>;

pub(crate) struct TimerQueue<C> {
    heap: BinaryHeap<HeapEntry>,
    timers: Slab<Timer<C>>,
    next_sequence: u64,
    next_generation: u32,
}

/// A due timer taken out of the queue to be run; hand it back with
/// [`TimerQueue::finish`].
pub(crate) struct DueTimer<C> {
    pub(crate) id: TimerId,
    pub(crate) callback: C,
    deadline: Instant,
}

impl<C> TimerQueue<C> {
    pub(crate) fn new() -> TimerQueue<C> {
        TimerQueue {
            heap: BinaryHeap::new(),
            timers: Slab::new(),
            next_sequence: 0,
            next_generation: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.timers.len()
    }

    pub(crate) fn insert(
        &mut self,
        deadline: Instant,
        interval: Option<Duration>,
        callback: C,
    ) -> TimerId {
        let generation = self.next_generation;
        self.next_generation = generation.wrapping_add(1);
        let index = self.timers.insert(Timer {
            generation,
            interval,
            callback: Some(callback),
        }) as u32;
        let id = TimerId { index, generation };
        self.push(deadline, id);
        id
    }

    fn push(&mut self, deadline: Instant, id: TimerId) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.heap
            .push(Reverse((deadline, sequence, id.index, id.generation)));
    }

    fn is_live(&self, index: u32, generation: u32) -> bool {
        self.timers
            .get(index as usize)
            .is_some_and(|t| t.generation == generation)
    }

    pub(crate) fn cancel(&mut self, id: TimerId) -> bool {
        if !self.is_live(id.index, id.generation) {
            return false;
        }
        self.timers.remove(id.index as usize);
        // Rebuild when tombstones dominate, so a stream of cancelled timers
        // (a connect timeout per connection, say) cannot grow the heap.
        if self.heap.len() > 64 && self.heap.len() > 2 * self.timers.len() {
            let timers = &self.timers;
            self.heap.retain(|Reverse((_, _, index, generation))| {
                timers
                    .get(*index as usize)
                    .is_some_and(|t| t.generation == *generation)
            });
        }
        true
    }

    /// The earliest deadline of a live timer. Drops tombstones on the way.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, _, index, generation))) = self.heap.peek().copied() {
            if self.is_live(index, generation) {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// The sequence number the next scheduled timer will get. Timers with a
    /// sequence at or past this value, recorded at the start of a turn's timer
    /// phase, were created during that phase and wait for the next turn (so a
    /// timer that re-arms itself with zero delay cannot spin the loop).
    pub(crate) fn sequence_mark(&self) -> u64 {
        self.next_sequence
    }

    /// Takes out the next timer due at `now` and scheduled before `mark`.
    pub(crate) fn pop_due(&mut self, now: Instant, mark: u64) -> Option<DueTimer<C>> {
        loop {
            let Reverse((deadline, sequence, index, generation)) = *self.heap.peek()?;
            if deadline > now || sequence >= mark {
                return None;
            }
            self.heap.pop();
            if !self.is_live(index, generation) {
                continue;
            }
            let timer = &mut self.timers[index as usize];
            let Some(callback) = timer.callback.take() else {
                continue;
            };
            return Some(DueTimer {
                id: TimerId { index, generation },
                callback,
                deadline,
            });
        }
    }

    /// Hands back a timer after its callback ran (or panicked): a repeating
    /// timer is rescheduled, a one-shot timer is removed. A timer cancelled by
    /// its own callback stays cancelled.
    pub(crate) fn finish(&mut self, due: DueTimer<C>, now: Instant) {
        let DueTimer {
            id,
            callback,
            deadline,
        } = due;
        if !self.is_live(id.index, id.generation) {
            return;
        }
        let timer = &mut self.timers[id.index as usize];
        match timer.interval {
            Some(interval) => {
                timer.callback = Some(callback);
                // Keep the schedule (no drift), but if the loop fell behind by
                // more than an interval, skip the missed ticks instead of
                // firing a burst to catch up.
                let mut next = deadline.checked_add(interval).unwrap_or(deadline);
                if next <= now {
                    next = now.checked_add(interval).unwrap_or(now);
                }
                self.push(next, id);
            }
            None => {
                self.timers.remove(id.index as usize);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue never calls its callbacks: a name will do.
    fn noop() -> &'static str {
        "noop"
    }

    #[test]
    fn cancelled_timers_are_skipped_and_compacted() {
        let mut queue = TimerQueue::new();
        let now = Instant::now();
        let ids: Vec<_> = (0..200)
            .map(|i| queue.insert(now + Duration::from_millis(i), None, noop()))
            .collect();
        for id in &ids[..190] {
            assert!(queue.cancel(*id));
        }
        assert!(!queue.cancel(ids[0]), "second cancel is a no-op");
        assert_eq!(queue.len(), 10);
        assert!(queue.heap.len() <= 2 * queue.len().max(64));
        assert_eq!(
            queue.next_deadline(),
            Some(now + Duration::from_millis(190))
        );
    }

    #[test]
    fn timers_created_during_the_phase_wait() {
        let mut queue = TimerQueue::new();
        let now = Instant::now();
        queue.insert(now, None, noop());
        let mark = queue.sequence_mark();
        queue.insert(now, None, noop());
        let first = queue.pop_due(now, mark).expect("first is due");
        queue.finish(first, now);
        assert!(queue.pop_due(now, mark).is_none());
        assert!(queue.pop_due(now, queue.sequence_mark()).is_some());
    }
}
