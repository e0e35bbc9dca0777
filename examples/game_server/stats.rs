//! What the server counts and measures about itself, answered to `STATS`:
//! datagrams by fate, and two timings of every tick, its lateness against
//! the schedule (jitter) and the time its work took.

use std::fmt::Write as _;
use std::time::Duration;

/// Timings in microseconds, since the last `STATS` (at most this many are
/// kept: a ring, so a long run costs no more memory than a short one).
const MAX_SAMPLES: usize = 1 << 16;

/// A bounded list of timings, with percentiles on demand.
#[derive(Debug, Default)]
pub struct Samples {
    values: Vec<u32>,
    next: usize,
}

impl Samples {
    /// Records one timing.
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u32::MAX)) as u32;
        if self.values.len() < MAX_SAMPLES {
            self.values.push(us);
        } else {
            self.values[self.next] = us;
            self.next = (self.next + 1) % MAX_SAMPLES;
        }
    }

    /// Writes `NAME_p50_us=.. NAME_p99_us=.. NAME_max_us=..` and starts
    /// over.
    pub fn report_and_reset(&mut self, name: &str, out: &mut String) {
        let mut sorted = std::mem::take(&mut self.values);
        self.next = 0;
        sorted.sort_unstable();
        let at = |q: f64| -> u32 {
            if sorted.is_empty() {
                return 0;
            }
            let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i]
        };
        let _ = write!(
            out,
            " {name}_p50_us={} {name}_p99_us={} {name}_max_us={}",
            at(0.50),
            at(0.99),
            sorted.last().copied().unwrap_or(0)
        );
        // Keep the allocation for the next period.
        sorted.clear();
        self.values = sorted;
    }
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Stats {
    pub ticks: u64,
    /// Ticks skipped because the loop fell more than a tick behind.
    pub missed_ticks: u64,
    /// Input datagrams applied.
    pub applied: u64,
    /// Inputs whose sequence number was not newer than the last applied:
    /// reordered or duplicated on the way.
    pub stale: u64,
    /// Inputs over the rate.
    pub rate_limited: u64,
    /// Datagrams whose token belongs to nobody, or to someone else than
    /// the sender's address belongs to.
    pub spoofed: u64,
    /// Datagrams that do not parse.
    pub garbage: u64,
    /// Inputs for a player out of the arena (its TCP closed).
    pub not_playing: u64,
    pub snapshots: u64,
    /// Snapshots the UDP socket could not take, even into its queue.
    pub snapshots_dropped: u64,
    /// How late each tick started against its schedule.
    pub jitter: Samples,
    /// How long each tick's work took.
    pub work: Samples,
}

impl Stats {
    /// The `STATS` line (timings since the last one).
    pub fn line(&mut self, players: usize) -> String {
        let mut out = format!(
            "STATS ticks={} missed_ticks={} players={players} applied={} stale={} \
             rate_limited={} spoofed={} garbage={} not_playing={} snapshots={} \
             snapshots_dropped={}",
            self.ticks,
            self.missed_ticks,
            self.applied,
            self.stale,
            self.rate_limited,
            self.spoofed,
            self.garbage,
            self.not_playing,
            self.snapshots,
            self.snapshots_dropped
        );
        self.jitter.report_and_reset("jitter", &mut out);
        self.work.report_and_reset("work", &mut out);
        out.push('\n');
        out
    }
}
