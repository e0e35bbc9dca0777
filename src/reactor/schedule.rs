//! Work that is not I/O: timers, callbacks deferred to the next turn, and
//! hooks that run just before the loop sleeps (see the steps of a turn on
//! [`Reactor`]). The timer queue is `src/timer.rs`; this file is the
//! reactor's API over it.

use std::time::{Duration, Instant};

use super::{Reactor, TimerCallback};
use crate::key::Key;
use crate::ready::Ready;
use crate::timer::TimerId;

/// `delay` from now, or a century from now for a delay too long for the
/// clock (`Duration::MAX` meant as "never"): never a panic.
pub(crate) fn after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

impl Reactor {
    /// Runs `callback` once, `delay` from now (never earlier; the loop's
    /// poll timeout is rounded up to whole milliseconds).
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use std::time::{Duration, Instant};
    /// let mut reactor = reactor::Reactor::new()?;
    /// let start = Instant::now();
    /// reactor.call_later(Duration::from_millis(20), |reactor| reactor.stop());
    /// reactor.run()?;
    /// assert!(start.elapsed() >= Duration::from_millis(20));
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_later<F>(&mut self, delay: Duration, callback: F) -> TimerId
    where
        F: FnOnce(&mut Reactor) + 'static,
    {
        self.call_at(after(delay), callback)
    }

    /// Runs `callback` once at `deadline` (or in the next turn if it has
    /// passed).
    pub fn call_at<F>(&mut self, deadline: Instant, callback: F) -> TimerId
    where
        F: FnOnce(&mut Reactor) + 'static,
    {
        let mut callback = Some(callback);
        let once: TimerCallback = Box::new(move |reactor| {
            if let Some(callback) = callback.take() {
                callback(reactor);
            }
        });
        self.timers.insert(deadline, None, once)
    }

    /// Runs `callback` every `interval`, the first time one interval from
    /// now, until [`cancel`](Reactor::cancel)led. If the loop falls behind by
    /// more than an interval, missed ticks are skipped, not fired in a burst.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use std::time::Duration;
    /// let mut reactor = reactor::Reactor::new()?;
    /// let mut ticks = 0;
    /// reactor.call_every(Duration::from_millis(1), move |reactor| {
    ///     ticks += 1;
    ///     if ticks == 3 { reactor.stop(); }
    /// });
    /// reactor.run()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_every<F>(&mut self, interval: Duration, callback: F) -> TimerId
    where
        F: FnMut(&mut Reactor) + 'static,
    {
        let interval = interval.max(Duration::from_nanos(1));
        self.timers
            .insert(after(interval), Some(interval), Box::new(callback))
    }

    /// Cancels a timer. Returns false if it had already fired (one-shot) or
    /// been cancelled. A timer may cancel itself from its own callback.
    pub fn cancel(&mut self, timer: TimerId) -> bool {
        self.timers.cancel(timer)
    }

    /// Runs `callback` at the start of the next turn, before the loop polls
    /// again (and the poll will not sleep while deferred work waits).
    pub fn call_soon<F>(&mut self, callback: F)
    where
        F: FnOnce(&mut Reactor) + 'static,
    {
        self.deferred.push_back(Box::new(callback));
    }

    /// Delivers a synthetic event to `key` at the start of the next turn, as
    /// if the kernel had reported `ready` for it; a registration removed (or
    /// replaced) by then does not get it.
    ///
    /// This is how a callback that stopped early on purpose (a read budget
    /// spent, for fairness) gets called again: with edge-triggered readiness
    /// the kernel will not report the source again until something new
    /// happens on it.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use mio::net::UdpSocket;
    /// use reactor::{Interest, Ready, Reactor};
    ///
    /// let mut reactor = Reactor::new()?;
    /// let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
    /// let mut calls = 0;
    /// let key = reactor.register(socket, Interest::READABLE, move |reactor, _: &mut UdpSocket, event| {
    ///     calls += 1;
    ///     if calls == 3 { reactor.stop() } else { reactor.schedule_event(event.key(), event.ready()) }
    /// })?;
    /// reactor.schedule_event(key, Ready::READABLE);
    /// reactor.run()?; // three synthetic events, no datagram
    /// # Ok(())
    /// # }
    /// ```
    pub fn schedule_event(&mut self, key: Key, ready: Ready) {
        self.call_soon(move |reactor| {
            reactor.dispatch(key, ready);
        });
    }

    /// Adds a hook that runs every turn just before the loop polls (step 2 of
    /// a turn). The hook returns `true` to stay installed, `false` to be
    /// removed. The connection layer flushes its output here.
    pub fn before_sleep<F>(&mut self, hook: F)
    where
        F: FnMut(&mut Reactor) -> bool + 'static,
    {
        self.hooks.push(Some(Box::new(hook)));
    }

    /// Makes the next poll return at once instead of sleeping. For work left
    /// unfinished on purpose (a read budget spent on a still-readable socket)
    /// that a before-sleep hook will pick up again.
    #[inline]
    pub fn keep_awake(&mut self) {
        self.keep_awake = true;
    }
}
