//! `loadgen echo`: N connections, each sending a message of S bytes and
//! waiting for the whole echo before the next (or keeping K in flight with
//! `--pipeline`), every byte checked.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reactor::Reactor;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

use crate::{Outcome, Window, report};

pub struct Options {
    pub addr: SocketAddr,
    /// Speak TLS, trusting the certificates in this PEM file (the server's
    /// name is taken to be `localhost`).
    pub tls_ca: Option<std::path::PathBuf>,
    pub conns: usize,
    pub size: usize,
    pub pipeline: usize,
    pub window: Window,
}

struct Conn {
    /// The connection's message: a pattern that differs per connection, so
    /// crossed wires show up as mismatches.
    message: Vec<u8>,
    /// How far into the message the echo has come.
    offset: usize,
    /// Send times of the messages in flight, oldest first.
    sent_at: VecDeque<Instant>,
}

struct Echo {
    conns: Vec<Option<Conn>>,
    size: usize,
    pipeline: usize,
    latency: Histogram<u64>,
    round_trips: u64,
    mismatches: u64,
    errors: u64,
    open: usize,
    /// Set when the window ends: no more sends, stop when all are in.
    stopping: bool,
    measuring: bool,
}

impl Echo {
    fn conn(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id.index()).and_then(Option::as_mut)
    }
}

impl Handler for Echo {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        let message: Vec<u8> = (0..self.size)
            .map(|i| (i as u64 * 31 + id.index() as u64 * 7) as u8)
            .collect();
        let now = Instant::now();
        for _ in 0..self.pipeline {
            let _ = conns.send(id, &message);
        }
        if self.conns.len() <= id.index() {
            self.conns.resize_with(id.index() + 1, || None);
        }
        self.conns[id.index()] = Some(Conn {
            message,
            offset: 0,
            sent_at: std::iter::repeat_n(now, self.pipeline).collect(),
        });
        self.open += 1;
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, mut data: &[u8]) -> usize {
        let consumed = data.len();
        let (stopping, measuring) = (self.stopping, self.measuring);
        let mut completed = 0;
        let mut latencies = [0u64; 64];
        let mut mismatch = false;
        let Some(conn) = self.conn(id) else {
            return consumed;
        };
        while !data.is_empty() {
            let want = &conn.message[conn.offset..];
            let n = want.len().min(data.len());
            if data[..n] != want[..n] {
                mismatch = true;
                break;
            }
            conn.offset += n;
            data = &data[n..];
            if conn.offset == conn.message.len() {
                conn.offset = 0;
                let sent = conn.sent_at.pop_front().unwrap_or_else(Instant::now);
                if completed < latencies.len() {
                    latencies[completed] = sent.elapsed().as_nanos() as u64;
                }
                completed += 1;
                if !stopping {
                    let _ = conns.send(id, &conn.message);
                    conn.sent_at.push_back(Instant::now());
                }
            }
        }
        let idle = conn.sent_at.is_empty();
        if mismatch {
            self.mismatches += 1;
            let _ = conns.abort(id);
            return consumed;
        }
        if measuring {
            self.round_trips += completed as u64;
            for &ns in &latencies[..completed.min(latencies.len())] {
                let _ = self.latency.record(ns.max(1));
            }
        }
        if stopping && idle {
            let _ = conns.close(id);
        }
        consumed
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        if let Some(slot) = self.conns.get_mut(id.index()) {
            if slot.take().is_some() {
                self.open -= 1;
            }
        }
        if !self.stopping {
            self.errors += 1;
            log::warn!("{id} closed during the run: {reason}");
        }
        if self.stopping && self.open == 0 {
            conns.reactor().stop();
        }
    }
}

pub fn run(options: Options) -> io::Result<Outcome> {
    let mut reactor = Reactor::new()?;
    let handler = Echo {
        conns: Vec::new(),
        size: options.size.max(1),
        pipeline: options.pipeline.max(1),
        latency: Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(io::Error::other)?,
        round_trips: 0,
        mismatches: 0,
        errors: 0,
        open: 0,
        stopping: false,
        measuring: false,
    };
    let config = Config::default()
        .max_connections(options.conns + 16)
        .output_limit(64 << 20)
        .input_limit(options.size.max(1) * options.pipeline.max(1) + 64 * 1024);
    let service = Service::new(&mut reactor, handler, config);
    let tls = match &options.tls_ca {
        Some(ca) => Some((
            reactor::tls::ServerName::try_from("localhost").map_err(io::Error::other)?,
            reactor::tls::client_config(Some(ca))?,
        )),
        None => None,
    };
    for _ in 0..options.conns {
        match &tls {
            Some((name, config)) => {
                service.connect_tls(&mut reactor, options.addr, name.clone(), config.clone())?
            }
            None => service.connect(&mut reactor, options.addr)?,
        };
    }
    let started = crate::measure(&mut reactor, &service, options.window, |echo, on| {
        echo.measuring = on
    })?;
    // Stop sending; wait (bounded) for what is in flight.
    service.with(&mut reactor, |echo, conns| {
        echo.stopping = true;
        let idle: Vec<ConnId> = conns
            .ids()
            .filter(|id| {
                echo.conns
                    .get(id.index())
                    .and_then(Option::as_ref)
                    .is_some_and(|c| c.sent_at.is_empty())
            })
            .collect();
        for id in idle {
            let _ = conns.close(id);
        }
        if echo.open == 0 {
            conns.reactor().stop();
        }
    })?;
    reactor.call_later(Duration::from_secs(5), |reactor| reactor.stop());
    reactor.run()?;

    service.with(&mut reactor, |echo, _| {
        let seconds = started.elapsed.as_secs_f64();
        let per_second = echo.round_trips as f64 / seconds;
        let mut report = report::Report::new("echo");
        report
            .int("conns", options.conns as u64)
            .int("size", options.size as u64)
            .int("pipeline", options.pipeline as u64)
            .num("duration_s", seconds)
            .int("round_trips", echo.round_trips)
            .num("round_trips_per_s", per_second)
            .num("mb_per_s", per_second * options.size as f64 * 2.0 / 1e6)
            .num("p50_us", echo.latency.value_at_quantile(0.5) as f64 / 1e3)
            .num("p99_us", echo.latency.value_at_quantile(0.99) as f64 / 1e3)
            .num("p999_us", echo.latency.value_at_quantile(0.999) as f64 / 1e3)
            .int("mismatches", echo.mismatches)
            .int("errors", echo.errors);
        started.add_server_figures(&mut report, echo.round_trips, "round_trip");
        report.human = format!(
            "echo: {} conns x {} B, pipeline {}, {:.1} s: {:.0} round trips/s, {:.1} MB/s, latency p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs; {} mismatches, {} errors",
            options.conns,
            options.size,
            options.pipeline,
            seconds,
            per_second,
            per_second * options.size as f64 * 2.0 / 1e6,
            echo.latency.value_at_quantile(0.5) as f64 / 1e3,
            echo.latency.value_at_quantile(0.99) as f64 / 1e3,
            echo.latency.value_at_quantile(0.999) as f64 / 1e3,
            echo.mismatches,
            echo.errors,
        );
        let clean = echo.mismatches == 0 && echo.errors == 0 && echo.round_trips > 0;
        Outcome { report, clean }
    })
}
