//! `loadgen pubsub`: Redis pub/sub as the chat mode's counterpart. N
//! subscribers `SUBSCRIBE` to one channel, one publisher `PUBLISH`es
//! numbered messages on it (pipelined, within the in-flight limit, or at
//! `--rate`), and every subscriber counts what reaches it, in order: the
//! same books ([`fanout::Tally`]) and the same report fields as `chat`, so
//! that a chat server's CPU per delivery can be set against `redis-server`'s.
//!
//! RESP2, written with `reactor::codec::resp::encode` and read with a
//! `ValueReader` per connection: what any Redis client does.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reactor::Reactor;
use reactor::codec::resp::{Limits, Value, ValueReader, encode};
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

use crate::fanout::{self, Tally};
use crate::{Outcome, Window, report};

pub struct Options {
    pub addr: SocketAddr,
    pub subscribers: usize,
    pub channel: String,
    pub size: usize,
    pub max_in_flight: usize,
    pub rate: Option<f64>,
    pub drain: Duration,
    pub window: Window,
}

#[derive(PartialEq)]
enum Role {
    Subscriber {
        /// The `subscribe` confirmation has come.
        subscribed: bool,
        /// The next sequence number expected.
        expected: u64,
    },
    Publisher,
}

struct PubSub {
    roles: Vec<Option<Role>>,
    /// Each connection's reader, by index (kept across reads).
    readers: Vec<ValueReader>,
    subscribers: usize,
    publisher: Option<ConnId>,
    subscribed: usize,
    channel: String,
    text: String,
    tally: Tally,
    next_seq: u64,
    /// `PUBLISH` replies: how many subscribers each message reached, by
    /// Redis's count.
    replies: u64,
    /// Replies that counted fewer subscribers than there are, and errors.
    short_replies: u64,
    /// Why something failed (a protocol error, an error reply).
    failure: Option<String>,
    batch: Vec<u8>,
    payload: Vec<u8>,
}

impl PubSub {
    /// Queues as many `PUBLISH`es as the in-flight limit and the pace
    /// allow, once the publisher's previous batch has been written.
    fn pump(&mut self, conns: &mut Connections<'_>) {
        let Some(id) = self.publisher else {
            return;
        };
        if conns.output_len(id) != Some(0) {
            return;
        }
        let quota = self.tally.quota();
        self.batch.clear();
        for _ in 0..quota {
            self.payload.clear();
            self.tally
                .payload(&mut self.payload, self.next_seq, &self.text);
            self.next_seq += 1;
            encode::command(
                &mut self.batch,
                &[&b"PUBLISH"[..], self.channel.as_bytes(), &self.payload],
            );
        }
        if quota > 0 && conns.send(id, &self.batch).is_ok() {
            self.tally.sent(quota);
        }
    }

    /// A value arrived on `id`.
    fn value(&mut self, id: ConnId, value: Value) {
        let receivers = self.subscribers as i64;
        match (self.roles[id.index()].as_mut(), value) {
            (Some(Role::Publisher), Value::Integer(n)) => {
                self.replies += 1;
                if n < receivers {
                    self.short_replies += 1;
                }
            }
            (
                Some(Role::Subscriber {
                    subscribed,
                    expected,
                }),
                Value::Array(items),
            ) => match items.as_slice() {
                [kind, _, payload] if kind.as_bytes() == Some(b"message") => {
                    if let Some(payload) = payload.as_bytes() {
                        self.tally.delivered(expected, payload, false);
                    }
                }
                [kind, _, _] if kind.as_bytes() == Some(b"subscribe") && !*subscribed => {
                    *subscribed = true;
                    self.subscribed += 1;
                }
                _ => {}
            },
            (_, Value::Error(e)) => {
                self.short_replies += 1;
                self.failure
                    .get_or_insert(format!("{id}: Redis answered {e}"));
            }
            _ => {}
        }
    }
}

impl Handler for PubSub {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        if let Some(Some(Role::Subscriber { .. })) = self.roles.get(id.index()) {
            let mut out = Vec::new();
            encode::command(&mut out, &[&b"SUBSCRIBE"[..], self.channel.as_bytes()]);
            let _ = conns.send(id, &out);
        }
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        if self.roles.get(id.index()).is_none_or(Option::is_none) {
            return data.len();
        }
        let mut pos = 0;
        loop {
            match self.readers[id.index()].decode(&data[pos..]) {
                Ok(Some((value, len))) => {
                    pos += len;
                    self.value(id, value);
                }
                Ok(None) => break,
                Err(e) => {
                    self.failure
                        .get_or_insert(format!("{id}: not RESP from the server: {e}"));
                    let _ = conns.close(id);
                    return data.len();
                }
            }
        }
        self.pump(conns);
        pos
    }

    fn on_drained(&mut self, conns: &mut Connections<'_>, _: ConnId) {
        self.pump(conns);
    }

    fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        let was = self.roles.get_mut(id.index()).and_then(Option::take);
        if was.is_some() {
            if self.tally.sending {
                self.tally.disconnected += 1;
                log::warn!("{id} disconnected during the run: {reason}");
            } else {
                self.failure
                    .get_or_insert(format!("{id} closed before the run: {reason}"));
            }
        }
        if was == Some(Role::Publisher) {
            self.publisher = None;
        }
    }
}

pub fn run(options: Options) -> io::Result<Outcome> {
    let mut reactor = Reactor::new()?;
    let pubsub = PubSub {
        roles: Vec::new(),
        readers: Vec::new(),
        subscribers: options.subscribers,
        publisher: None,
        subscribed: 0,
        channel: options.channel.clone(),
        text: "x".repeat(options.size),
        tally: Tally::new(options.subscribers, options.max_in_flight, options.rate)?,
        next_seq: 0,
        replies: 0,
        short_replies: 0,
        failure: None,
        batch: Vec::new(),
        payload: Vec::new(),
    };
    let config = Config::default()
        .max_connections(options.subscribers + 16)
        .connect_timeout(Duration::from_secs(60))
        .output_limit(256 << 20)
        .high_water(64 << 20);
    let service = Service::new(&mut reactor, pubsub, config);
    for i in 0..=options.subscribers {
        let id = service.connect(&mut reactor, options.addr)?;
        service.with(&mut reactor, |p, _| {
            if p.roles.len() <= id.index() {
                p.roles.resize_with(id.index() + 1, || None);
                p.readers
                    .resize_with(id.index() + 1, || ValueReader::new(Limits::default()));
            }
            p.roles[id.index()] = Some(if i == options.subscribers {
                p.publisher = Some(id);
                Role::Publisher
            } else {
                Role::Subscriber {
                    subscribed: false,
                    expected: 0,
                }
            });
        })?;
    }
    // Every subscriber is subscribed before anything is published.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (subscribed, failure) =
            service.with(&mut reactor, |p, _| (p.subscribed, p.failure.clone()))?;
        if subscribed == options.subscribers {
            break;
        }
        if let Some(reason) = failure {
            return Err(io::Error::other(reason));
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "only {subscribed} of {} subscribers subscribed within 60 s",
                    options.subscribers
                ),
            ));
        }
        reactor.run_once(Some(Duration::from_millis(100)))?;
    }
    service.with(&mut reactor, |p, conns| {
        p.tally.start();
        p.pump(conns);
    })?;
    if options.rate.is_some() {
        fanout::pace(&mut reactor, &service, PubSub::pump);
    }
    let measured = crate::measure(&mut reactor, &service, options.window, |p, on| {
        p.tally.measuring = on
    })?;
    fanout::drain(&mut reactor, &service, options.drain, |p| &mut p.tally)?;

    service.with(&mut reactor, |p, _| {
        let seconds = measured.elapsed.as_secs_f64();
        let mut report = report::Report::new("pubsub");
        report
            .int("subscribers", options.subscribers as u64)
            .int("size", options.size as u64)
            .int("max_in_flight", options.max_in_flight as u64)
            .int("publish_replies", p.replies)
            .int("short_replies", p.short_replies);
        let what = format!(
            "pubsub: {} subscribers to {}, 1 publisher",
            options.subscribers, options.channel
        );
        p.tally.report(&mut report, seconds, &what);
        if let Some(failure) = &p.failure {
            report.human += &format!("; {failure}");
        }
        measured.add_server_figures(&mut report, p.tally.delivered_in_window(), "delivery");
        let clean = p.tally.clean() && p.short_replies == 0 && p.failure.is_none();
        Outcome { report, clean }
    })
}
