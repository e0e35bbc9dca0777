//! `loadgen game`: N coin-seeking bots (`game_client`'s own bot code) play
//! on a `game_server`; every bot counts the snapshots that reach it and the
//! ticks that never do, and the server reports its own tick jitter and tick
//! work through `STATS`.
//!
//! The question it answers: how many players one server core holds at its
//! tick rate with every snapshot on time.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reactor::Reactor;
use reactor::service::Service;

use crate::bot::{Bots, Strategy};
use crate::{Outcome, Window, report};

pub struct Options {
    pub addr: SocketAddr,
    pub players: usize,
    /// The server's tick, to know how many snapshots each bot should get.
    pub tick: Duration,
    pub window: Window,
}

/// Runs the loop until `done` says so, or `limit` passes (an error naming
/// `what`), or a bot fails.
fn run_until(
    reactor: &mut Reactor,
    bots: &Service<Bots>,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&mut Bots) -> bool,
) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let (finished, failure) = bots.with(reactor, |b, _| (done(b), b.failure.clone()))?;
        if let Some(why) = failure {
            return Err(io::Error::other(why));
        }
        if finished {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, what.to_string()));
        }
        reactor.run_once(Some(Duration::from_millis(50)))?;
    }
}

/// Asks the server for `STATS` (through the first bot) and waits for the
/// answer.
fn server_stats(reactor: &mut Reactor, bots: &Service<Bots>) -> io::Result<String> {
    bots.with(reactor, |b, conns| {
        b.stats_line = None;
        b.send_first(conns, "STATS\n");
    })?;
    run_until(
        reactor,
        bots,
        Duration::from_secs(10),
        "no STATS answer",
        |b| b.stats_line.is_some(),
    )?;
    Ok(bots
        .with(reactor, |b, _| b.stats_line.take())?
        .unwrap_or_default())
}

/// One `key=value` of a `STATS` line.
fn stat(line: &str, key: &str) -> u64 {
    line.split(' ')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// How long the process has waited on a run queue, runnable but not
/// running (`/proc/PID/schedstat`, second field): on a shared machine, the
/// part of a late tick that is someone else's.
fn run_queue_wait(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    let ns = stat.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub fn run(options: Options) -> io::Result<Outcome> {
    let mut reactor = Reactor::with_capacity(4096)?;
    let bots = Bots::start(
        &mut reactor,
        options.addr,
        "lg",
        options.players,
        Strategy::SeekCoins,
    )?;
    let players = options.players;
    run_until(
        &mut reactor,
        &bots,
        Duration::from_secs(120),
        "not every bot joined within 120 s",
        |b| b.joined == players,
    )?;
    // Every bot has heard every join: the N² announcements are delivered,
    // and what follows is the steady state.
    run_until(
        &mut reactor,
        &bots,
        Duration::from_secs(300),
        "the join's announcements were not delivered within 300 s",
        |b| b.settled(),
    )?;
    // The warm-up first (the join's announcements take a while to settle),
    // then `STATS`, which starts the server's timing samples afresh: they
    // and the tick count cover the measured window exactly.
    if !options.window.warmup.is_zero() {
        reactor.call_later(options.window.warmup, |r| r.stop());
        reactor.run()?;
    }
    let before = server_stats(&mut reactor, &bots)?;
    let waited_before = options.window.server_pid.and_then(run_queue_wait);
    let window = Window {
        warmup: Duration::ZERO,
        ..options.window
    };
    let measured = crate::measure(&mut reactor, &bots, window, |b, on| {
        if on {
            b.counts = Default::default();
        }
        b.measuring = on;
    })?;
    let after = server_stats(&mut reactor, &bots)?;
    let waited = options
        .window
        .server_pid
        .and_then(run_queue_wait)
        .zip(waited_before)
        .map(|(after, before)| after.saturating_sub(before));
    let failure = bots.with(&mut reactor, |b, _| b.failure.clone())?;
    if let Some(why) = failure {
        return Err(io::Error::other(why));
    }
    let mut counts = bots.with(&mut reactor, |b, _| std::mem::take(&mut b.counts))?;
    counts.intervals.sort_unstable();
    let seconds = measured.elapsed.as_secs_f64();
    let ticks = stat(&after, "ticks") - stat(&before, "ticks");
    let expected = (seconds / options.tick.as_secs_f64() * players as f64).round() as u64;
    let ratio = counts.snapshots as f64 / expected.max(1) as f64;
    let tick_us = options.tick.as_micros() as u32;
    let late = counts
        .intervals
        .iter()
        .filter(|&&i| i > 2 * tick_us)
        .count();
    let mut report = report::Report::new("game");
    report
        .int("players", players as u64)
        .num("tick_ms", options.tick.as_secs_f64() * 1e3)
        .num("duration_s", seconds)
        .int("snapshots", counts.snapshots)
        .int("snapshots_expected", expected)
        .num("snapshot_ratio", ratio)
        .int("skipped_ticks", counts.skipped)
        .int("stale", counts.stale)
        .int("late_intervals", late as u64)
        .int(
            "interval_p50_us",
            u64::from(percentile(&counts.intervals, 0.5)),
        )
        .int(
            "interval_p99_us",
            u64::from(percentile(&counts.intervals, 0.99)),
        )
        .int(
            "interval_max_us",
            u64::from(counts.intervals.last().copied().unwrap_or(0)),
        )
        .int("inputs", counts.inputs);
    // Timings are the server's since the `STATS` at the window's start;
    // counters are cumulative, so the window's share is a difference.
    for key in [
        "jitter_p50_us",
        "jitter_p99_us",
        "jitter_max_us",
        "work_p50_us",
        "work_p99_us",
        "work_max_us",
    ] {
        report.int(&format!("server_{key}"), stat(&after, key));
    }
    for key in [
        "missed_ticks",
        "snapshots_dropped",
        "rate_limited",
        "stale",
        "spoofed",
    ] {
        let delta = stat(&after, key).saturating_sub(stat(&before, key));
        report.int(&format!("server_{key}"), delta);
    }
    if let Some(waited) = waited {
        report.num("server_run_queue_wait_s", waited.as_secs_f64());
    }
    // CPU per player per tick: the server's CPU over the window, shared out.
    measured.add_server_figures(&mut report, ticks * players as u64, "player_tick");
    report.human = format!(
        "game: {players} players, {seconds:.1} s: {} of {expected} snapshots ({:.4}), {} ticks skipped, \
         interval p50 {} us p99 {} us max {} us; server jitter p50 {} us p99 {} us max {} us, \
         tick work p50 {} us p99 {} us",
        counts.snapshots,
        ratio,
        counts.skipped,
        percentile(&counts.intervals, 0.5),
        percentile(&counts.intervals, 0.99),
        counts.intervals.last().copied().unwrap_or(0),
        stat(&after, "jitter_p50_us"),
        stat(&after, "jitter_p99_us"),
        stat(&after, "jitter_max_us"),
        stat(&after, "work_p50_us"),
        stat(&after, "work_p99_us"),
    );
    // Clean: nothing failed, and (almost) every snapshot arrived: UDP on
    // loopback drops only when a receiver falls behind.
    let clean = ratio > 0.99;
    Ok(Outcome { report, clean })
}
