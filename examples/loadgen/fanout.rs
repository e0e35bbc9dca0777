//! What the fan-out modes (`chat`, `pubsub`) share: one or more senders
//! publish numbered lines, every receiver gets every line, and a [`Tally`]
//! keeps the books. It bounds the lines in flight, paces the senders when
//! `--rate` is given, checks each sender's order at each receiver, records
//! the latency from sender to receiver when paced, and writes the report's
//! fields. The modes differ only in the wire: chat lines or RESP.
//!
//! A line's payload is `SEQ TEXT`: ten digits, a space, `--size` bytes of
//! text. When paced, the text starts with the send time (twelve digits,
//! microseconds since the run began, and a space), so a receiver in the same
//! process can tell how long the line took. At full speed the latency would
//! only measure the queues, so it is not recorded then.

use std::io;
use std::io::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reactor::Reactor;
use reactor::service::{Handler, Service};

use crate::report::Report;

/// Most lines one sender queues at once.
const BATCH: u64 = 256;

/// The books of a fan-out run.
pub struct Tally {
    /// How many receivers each line must reach.
    receivers: u64,
    /// Lines sent but not yet delivered everywhere; 0: no limit.
    max_in_flight: u64,
    /// Lines per second across all senders, if paced.
    rate: Option<f64>,
    /// When the run began: the zero of the send stamps.
    epoch: Instant,
    /// When paced sending began, and the lines sent before it.
    paced_from: Option<(Instant, u64)>,
    pub sent: u64,
    pub delivered: u64,
    sent_in_window: u64,
    delivered_in_window: u64,
    out_of_order: u64,
    pub disconnected: u64,
    pub measuring: bool,
    pub sending: bool,
    /// Latency to receivers on the sender's own node, and on another one,
    /// in microseconds (paced runs, in the window).
    near: Histogram<u64>,
    far: Histogram<u64>,
}

impl Tally {
    pub fn new(receivers: usize, max_in_flight: usize, rate: Option<f64>) -> io::Result<Tally> {
        let histogram = || Histogram::new_with_bounds(1, 60_000_000, 3).map_err(io::Error::other);
        Ok(Tally {
            receivers: receivers.max(1) as u64,
            max_in_flight: max_in_flight as u64,
            rate,
            epoch: Instant::now(),
            paced_from: None,
            sent: 0,
            delivered: 0,
            sent_in_window: 0,
            delivered_in_window: 0,
            out_of_order: 0,
            disconnected: 0,
            measuring: false,
            sending: false,
            near: histogram()?,
            far: histogram()?,
        })
    }

    /// Lines sent that have not reached every receiver.
    pub fn in_flight(&self) -> u64 {
        self.sent.saturating_sub(self.delivered / self.receivers)
    }

    /// Starts sending (and the pacing clock).
    pub fn start(&mut self) {
        self.sending = true;
        self.paced_from = Some((Instant::now(), self.sent));
    }

    /// How many lines may be sent now: within the in-flight limit, the
    /// pace, and one batch.
    pub fn quota(&self) -> u64 {
        if !self.sending {
            return 0;
        }
        let mut quota = BATCH;
        if self.max_in_flight > 0 {
            quota = quota.min(self.max_in_flight.saturating_sub(self.in_flight()));
        }
        if let (Some(rate), Some((since, before))) = (self.rate, self.paced_from) {
            let due = (since.elapsed().as_secs_f64() * rate) as u64;
            quota = quota.min(due.saturating_sub(self.sent - before));
        }
        quota
    }

    /// Appends the payload of line `seq` (`SEQ TEXT`, `text` bytes of
    /// text, stamped when paced).
    pub fn payload(&self, out: &mut Vec<u8>, seq: u64, text: &str) {
        let _ = write!(out, "{seq:010} ");
        if self.rate.is_some() && text.len() >= 13 {
            let micros = self.epoch.elapsed().as_micros() as u64;
            let _ = write!(out, "{micros:012} ");
            out.extend_from_slice(&text.as_bytes()[13..]);
        } else {
            out.extend_from_slice(text.as_bytes());
        }
    }

    /// `lines` more have been queued.
    pub fn sent(&mut self, lines: u64) {
        self.sent += lines;
        if self.measuring {
            self.sent_in_window += lines;
        }
    }

    /// A payload reached a receiver that expected line `expected` next from
    /// its sender; `far`: the receiver is on another node than the sender.
    pub fn delivered(&mut self, expected: &mut u64, payload: &[u8], far: bool) {
        let digits = |range: std::ops::Range<usize>| payload.get(range).and_then(decimal);
        if let Some(seq) = digits(0..10) {
            if seq != *expected {
                self.out_of_order += 1;
            }
            *expected = seq + 1;
        }
        self.delivered += 1;
        if !self.measuring {
            return;
        }
        self.delivered_in_window += 1;
        if let (Some(_), Some(stamp)) = (self.rate, digits(11..23)) {
            let now = self.epoch.elapsed().as_micros() as u64;
            let latency = now.saturating_sub(stamp).max(1);
            let histogram = if far { &mut self.far } else { &mut self.near };
            let _ = histogram.record(latency);
        }
    }

    /// Deliveries in the measured window: the work server CPU is divided by.
    pub fn delivered_in_window(&self) -> u64 {
        self.delivered_in_window
    }

    /// Every line reached every receiver, in order, and nobody left.
    pub fn clean(&self) -> bool {
        self.disconnected == 0
            && self.out_of_order == 0
            && self.delivered == self.sent * self.receivers
    }

    /// The share of the deliveries due that were made.
    fn ratio(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.delivered as f64 / (self.sent * self.receivers) as f64
        }
    }

    /// The fields every fan-out mode reports, and a human summary of them
    /// (after `what`, the mode's own description of the run).
    pub fn report(&self, report: &mut Report, seconds: f64, what: &str) {
        let lines_per_s = self.sent_in_window as f64 / seconds;
        let deliveries_per_s = self.delivered_in_window as f64 / seconds;
        report
            .num("duration_s", seconds)
            .num("lines_per_s", lines_per_s)
            .num("deliveries_per_s", deliveries_per_s)
            .int("lines_sent", self.sent)
            .int("deliveries", self.delivered)
            .num("delivery_ratio", self.ratio())
            .int("out_of_order", self.out_of_order)
            .int("disconnected", self.disconnected);
        let mut latency = String::new();
        if let Some(rate) = self.rate {
            report.num("rate", rate);
            for (name, h) in [("near", &self.near), ("far", &self.far)] {
                if h.is_empty() {
                    continue;
                }
                let p50 = h.value_at_quantile(0.5);
                let p99 = h.value_at_quantile(0.99);
                report
                    .int(&format!("{name}_latency_p50_us"), p50)
                    .int(&format!("{name}_latency_p99_us"), p99)
                    .int(&format!("{name}_latency_max_us"), h.max());
                latency += &format!(", {name} latency p50 {p50} µs, p99 {p99} µs");
            }
        }
        report.human = format!(
            "{what}, {seconds:.1} s: {lines_per_s:.0} lines sent/s, {deliveries_per_s:.0} deliveries/s, {} of {} deliveries made (ratio {:.4}), {} out of order, {} disconnected{latency}",
            self.delivered,
            self.sent * self.receivers,
            self.ratio(),
            self.out_of_order,
            self.disconnected,
        );
    }
}

/// The value of `digits`, all ASCII digits (1 to 19 of them), or None: the
/// hot path's number reader, millions a second (no UTF-8 check, no
/// `str::parse`).
pub fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Lets what is in flight arrive after sending stops: runs `reactor` until
/// every line has reached every receiver, someone disconnects, or `limit`
/// passes.
pub fn drain<H: Handler>(
    reactor: &mut Reactor,
    service: &Service<H>,
    limit: Duration,
    tally: impl Fn(&mut H) -> &mut Tally,
) -> io::Result<()> {
    service.with(reactor, |h, _| tally(h).sending = false)?;
    let deadline = Instant::now() + limit;
    loop {
        let done = service.with(reactor, |h, _| {
            let t = tally(h);
            t.delivered >= t.sent * t.receivers || t.disconnected > 0
        })?;
        if done || Instant::now() > deadline {
            return Ok(());
        }
        reactor.run_once(Some(Duration::from_millis(50)))?;
    }
}

/// Calls `pump` every millisecond while the run lasts: a paced sender's
/// clock (unpaced senders are topped up as their output drains).
pub fn pace<H: Handler>(
    reactor: &mut Reactor,
    service: &Service<H>,
    pump: impl Fn(&mut H, &mut reactor::service::Connections<'_>) + 'static,
) {
    let service = service.clone();
    reactor.call_every(Duration::from_millis(1), move |reactor| {
        let _ = service.with(reactor, &pump);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_bounds_the_quota_and_deliveries_free_it() {
        let mut tally = Tally::new(2, 300, None).unwrap();
        assert_eq!(tally.quota(), 0, "nothing before start");
        tally.start();
        assert_eq!(tally.quota(), BATCH);
        tally.sent(BATCH);
        assert_eq!(tally.quota(), 300 - BATCH);
        tally.sent(300 - BATCH);
        assert_eq!(tally.quota(), 0);
        // Line 0 reaches both receivers: one line is no longer in flight.
        let mut payload = Vec::new();
        tally.payload(&mut payload, 0, "text");
        let (mut a, mut b) = (0, 0);
        tally.delivered(&mut a, &payload, false);
        tally.delivered(&mut b, &payload, true);
        assert_eq!(tally.quota(), 1);
        assert_eq!((a, b), (1, 1));
    }

    #[test]
    fn a_gap_or_a_repeat_counts_as_out_of_order() {
        let mut tally = Tally::new(1, 0, None).unwrap();
        tally.start();
        let mut expected = 0;
        for seq in [0, 1, 3, 3, 4] {
            let mut payload = Vec::new();
            tally.payload(&mut payload, seq, "x");
            tally.delivered(&mut expected, &payload, false);
        }
        assert_eq!(tally.out_of_order, 2);
        assert_eq!(expected, 5);
        tally.sent(5);
        assert!(!tally.clean());
    }

    #[test]
    fn paced_payloads_carry_a_stamp_and_keep_their_size() {
        let tally = Tally::new(1, 0, Some(1000.0)).unwrap();
        let text = "x".repeat(32);
        let mut payload = Vec::new();
        tally.payload(&mut payload, 7, &text);
        assert_eq!(payload.len(), 11 + 32);
        assert_eq!(&payload[..11], b"0000000007 ");
        assert!(payload[11..23].iter().all(u8::is_ascii_digit));
        assert_eq!(payload[23], b' ');
        // Paced, the quota is what the clock has made due: nothing yet.
        let mut tally = tally;
        tally.start();
        assert!(tally.quota() <= 1);
    }
}
