//! Output: how bytes a handler sends reach the socket.
//!
//! ```text
//!  conns.send(id, bytes) ──► fast_path_fits? ──yes──► turn buffer (one arena per service)
//!        │                        │ no                        │ flush queue += id
//!        │ a slice of on_data's   ▼                           ▼
//!        │ own input, to its   backlog (the connection's   before the loop sleeps:
//!        │ own connection      chunks, kept across turns)  write()/writev() backlog,
//!        ▼                        ▲                        then turn ranges; what the
//!  reply in place: written        └──── spill ─────────────socket did not take
//!  from the scratch buffer
//!  when on_data returns
//! ```
//!
//! - `send.rs`: `send`, `broadcast`, and the accounting (limits,
//!   backpressure, the output budget, the flush queue).
//! - `flush.rs`: writing a connection's output, and what follows.
//! - `in_place.rs`: the reply in place, the one optimisation of the path.
//! - `turn.rs`: the turn buffer; `backlog.rs`: the backlog and the pool.
//!
//! The fast paths (`send`'s, the reply in place, the flush's single write)
//! are taken only when [`fast_path_fits`] and [`writable_with_no_backlog`]
//! say so: each condition is written once, here.

#[cfg(test)]
mod agreement;
pub(crate) mod backlog;
mod flush;
mod in_place;
pub(crate) mod send;
pub(crate) mod turn;

use backlog::BufferPool;
use turn::TurnBuffer;

pub(crate) use in_place::ReplyInPlace;

use super::config::Config;
use super::conn::Connection;
use super::flags::Flags;
use super::handler::ConnId;
use super::stats::ServiceStats;

/// True while a test of this thread has turned the fast paths off, to check
/// that the general path gives the same bytes (`agreement.rs`). Never true
/// outside the crate's unit tests, where `cfg!(test)` removes the question.
#[inline(always)]
fn agreement_fast_paths_off() -> bool {
    #[cfg(test)]
    {
        agreement::FAST_PATHS_OFF.with(|off| off.get())
    }
    #[cfg(not(test))]
    {
        false
    }
}

/// Most slices handed to one `writev` (the kernel allows 1024).
pub(super) const MAX_SLICES: usize = 64;

/// A service's output state.
pub(crate) struct Output {
    pub(crate) pool: BufferPool,
    /// Output sent this turn to writable connections.
    pub(crate) turn: TurnBuffer,
    /// Connections with output and a writable socket: flushed before sleep.
    pub(crate) flush_queue: Vec<ConnId>,
    /// Queued output is over the output budget: nobody is read.
    pub(crate) over_budget: bool,
    /// A reply still in the scratch buffer (see `in_place.rs`).
    pub(crate) in_place: Option<ReplyInPlace>,
    /// The receivers `broadcast_where` chose, kept for its next call.
    pub(crate) chosen: Vec<ConnId>,
}

impl Output {
    pub(crate) fn new(pool_limit: usize) -> Output {
        Output {
            pool: BufferPool::new(pool_limit),
            turn: TurnBuffer::default(),
            flush_queue: Vec::new(),
            over_budget: false,
            in_place: None,
            chosen: Vec::new(),
        }
    }
}

/// True if the socket is believed writable and nothing older waits, in the
/// backlog or in the transport: this turn's output can be written at once,
/// in order.
#[inline(always)]
pub(crate) fn writable_with_no_backlog(conn: &Connection) -> bool {
    if cfg!(test) && agreement_fast_paths_off() {
        return false;
    }
    // Not TLS (whose transport may hold bytes older than these), as part of
    // the same comparison.
    conn.output.is_none()
        && conn.flags.only(
            Flags::WRITABLE | Flags::CONNECTING | Flags::TLS,
            Flags::WRITABLE,
        )
}

/// The fast-path test, asked by `send` and by the reply in place: `len` more
/// bytes for this connection need none of the general path's work. That is,
/// the socket is writable with no backlog, the connection is not closing or
/// shut for writing, and the bytes take it past no limit: under high water
/// (which is under the output limit, so no backpressure starts and nothing
/// is closed) and under the output budget.
#[inline(always)]
pub(crate) fn fast_path_fits(
    conn: &Connection,
    config: &Config,
    stats: &ServiceStats,
    len: usize,
) -> bool {
    // `validated` keeps high water at or under the output limit, which is
    // what makes "under high water" enough.
    debug_assert!(config.high_water <= config.output_limit);
    if cfg!(test) && agreement_fast_paths_off() {
        return false;
    }
    // `writable_with_no_backlog`, and not closing or shut for writing, as
    // one comparison.
    conn.output.is_none()
        && conn.flags.only(
            Flags::WRITABLE | Flags::CONNECTING | Flags::TLS | Flags::NOT_SENDING,
            Flags::WRITABLE,
        )
        && len != 0
        && conn.turn.len() + len <= config.high_water
        && config
            .output_budget
            .is_none_or(|budget| stats.queued_output + len <= budget)
}

/// A writer that takes at most `cap` bytes per call, like a socket with a
/// nearly full send buffer.
#[cfg(test)]
pub(super) struct Trickle {
    pub(super) cap: usize,
    pub(super) got: Vec<u8>,
    pub(super) calls: usize,
}

#[cfg(test)]
impl std::io::Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.calls += 1;
        let n = buf.len().min(self.cap);
        self.got.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.calls += 1;
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(self.cap - n);
            self.got.extend_from_slice(&b[..take]);
            n += take;
            if n == self.cap {
                break;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
