//! `loadgen chat`: N clients join a chat server's line protocol (answering
//! the name prompt), M of them send lines, everyone counts what reaches
//! them. Every line must reach every other client, in order. With several
//! addresses (the nodes of a cluster), clients are spread over them in
//! turn and the senders are on the first; latency is told apart for
//! receivers on the sender's node and on the others. The books are
//! [`fanout::Tally`]'s.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use reactor::Reactor;
use reactor::codec::LineDecoder;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

use crate::fanout::{self, Tally};
use crate::{Outcome, Window, report};

pub struct Options {
    /// The chat nodes: one server, or a cluster's nodes.
    pub addrs: Vec<SocketAddr>,
    pub clients: usize,
    pub senders: usize,
    pub size: usize,
    pub max_in_flight: usize,
    /// Lines per second across the senders; `None`: as fast as they go.
    pub rate: Option<f64>,
    pub drain: Duration,
    pub window: Window,
}

struct Client {
    /// `sender3` or `reader17`.
    name: String,
    /// Which of the addresses it joined (senders join the first).
    node: usize,
    named: bool,
    joined: bool,
    lines: LineDecoder,
    /// Per sender, the next sequence number expected from it.
    expected: Vec<u64>,
    /// Sender only: the next sequence number to send.
    next_seq: u64,
}

struct Chat {
    clients: Vec<Option<Client>>,
    sender_ids: Vec<Option<ConnId>>,
    joined: usize,
    text: String,
    tally: Tally,
    /// Why a client closed before the load started (a failed connect).
    join_failure: Option<String>,
    batch: Vec<u8>,
}

impl Chat {
    /// Tops up every sender whose output queue is empty, within the
    /// in-flight limit and the pace: as fast as the server takes the lines,
    /// or at `--rate`.
    fn pump(&mut self, conns: &mut Connections<'_>) {
        for s in 0..self.sender_ids.len() {
            let Some(id) = self.sender_ids[s] else {
                continue;
            };
            if conns.output_len(id) != Some(0) {
                continue;
            }
            let quota = self.tally.quota();
            let Some(client) = self.clients[id.index()].as_mut() else {
                continue;
            };
            self.batch.clear();
            for _ in 0..quota {
                self.tally
                    .payload(&mut self.batch, client.next_seq, &self.text);
                self.batch.push(b'\n');
                client.next_seq += 1;
            }
            if quota > 0 && conns.send(id, &self.batch).is_ok() {
                self.tally.sent(quota);
            }
        }
    }

    /// A line arrived for `id`.
    fn line(&mut self, id: ConnId, line: &[u8]) {
        let Some(client) = self.clients[id.index()].as_mut() else {
            return;
        };
        if !client.joined {
            client.joined = true; // the welcome
            self.joined += 1;
            return;
        }
        // Deliveries look like "sender2: 0000000041 xxxx".
        let Some(rest) = line.strip_prefix(b"sender") else {
            return;
        };
        let Some(colon) = rest.iter().position(|&b| b == b':') else {
            return;
        };
        let Some(sender) = std::str::from_utf8(&rest[..colon])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            return; // "sender2 joined lobby" and other notices
        };
        let far = client.node != 0;
        if let (Some(payload), Some(expected)) =
            (rest.get(colon + 2..), client.expected.get_mut(sender))
        {
            self.tally.delivered(expected, payload, far);
        }
    }
}

impl Handler for Chat {
    fn on_open(&mut self, _: &mut Connections<'_>, _: ConnId, _: Origin) {}

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let Some(client) = self.clients.get_mut(id.index()).and_then(Option::as_mut) else {
            return data.len();
        };
        if !client.named {
            // The first bytes are the prompt (no newline): answer it.
            client.named = true;
            let answer = format!("{}\n", client.name);
            let _ = conns.send(id, answer.as_bytes());
            return data.len();
        }
        let mut pos = 0;
        while let Some(client) = self.clients[id.index()].as_mut() {
            match client.lines.next_line(data, &mut pos) {
                Some(Ok(line)) => self.line(id, line),
                Some(Err(_)) => {}
                None => break,
            }
        }
        self.pump(conns);
        pos
    }

    fn on_drained(&mut self, conns: &mut Connections<'_>, _: ConnId) {
        self.pump(conns);
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        if self
            .clients
            .get_mut(id.index())
            .and_then(Option::take)
            .is_some()
            && self.tally.sending
        {
            self.tally.disconnected += 1;
            log::warn!("{id} disconnected during the run: {reason}");
        }
        for s in self.sender_ids.iter_mut() {
            if *s == Some(id) {
                *s = None;
            }
        }
        let _ = conns;
    }
}

pub fn run(options: Options) -> io::Result<Outcome> {
    let mut reactor = Reactor::new()?;
    let chat = Chat {
        clients: Vec::new(),
        sender_ids: vec![None; options.senders],
        joined: 0,
        text: "x".repeat(options.size),
        tally: Tally::new(options.clients - 1, options.max_in_flight, options.rate)?,
        join_failure: None,
        batch: Vec::new(),
    };
    let config = Config::default()
        .max_connections(options.clients + 16)
        .connect_timeout(Duration::from_secs(60))
        .output_limit(256 << 20)
        .high_water(64 << 20);
    let service = Service::new(&mut reactor, chat, config);
    for i in 0..options.clients {
        let sender = (i < options.senders).then_some(i);
        let node = if sender.is_some() {
            0
        } else {
            i % options.addrs.len()
        };
        let id = service.connect(&mut reactor, options.addrs[node])?;
        service.with(&mut reactor, |chat, _| {
            if chat.clients.len() <= id.index() {
                chat.clients.resize_with(id.index() + 1, || None);
            }
            chat.clients[id.index()] = Some(Client {
                name: match sender {
                    Some(s) => format!("sender{s}"),
                    None => format!("reader{i}"),
                },
                node,
                named: false,
                joined: false,
                lines: LineDecoder::new(64 * 1024),
                expected: vec![0; options.senders],
                next_seq: 0,
            });
            if let Some(s) = sender {
                chat.sender_ids[s] = Some(id);
            }
        })?;
    }
    // Everyone joins before anyone speaks.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (joined, failure) = service.with(&mut reactor, |chat, _| {
            (chat.joined, chat.join_failure.clone())
        })?;
        if joined == options.clients {
            break;
        }
        if let Some(reason) = failure {
            return Err(io::Error::other(format!(
                "a client could not join: {reason}"
            )));
        }
        if std::time::Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "only {joined} of {} clients joined within 60 s",
                    options.clients
                ),
            ));
        }
        reactor.run_once(Some(Duration::from_millis(100)))?;
    }
    service.with(&mut reactor, |chat, conns| {
        chat.tally.start();
        chat.pump(conns);
    })?;
    if options.rate.is_some() {
        fanout::pace(&mut reactor, &service, Chat::pump);
    }
    let measured = crate::measure(&mut reactor, &service, options.window, |chat, on| {
        chat.tally.measuring = on
    })?;
    // Stop sending and let every line in flight arrive (bounded).
    fanout::drain(&mut reactor, &service, options.drain, |chat| {
        &mut chat.tally
    })?;

    service.with(&mut reactor, |chat, _| {
        let seconds = measured.elapsed.as_secs_f64();
        let mut report = report::Report::new("chat");
        report
            .int("clients", options.clients as u64)
            .int("senders", options.senders as u64)
            .int("nodes", options.addrs.len() as u64)
            .int("size", options.size as u64)
            .int("max_in_flight", options.max_in_flight as u64);
        let what = format!(
            "chat: {} clients on {} node(s), {} sender(s)",
            options.clients,
            options.addrs.len(),
            options.senders
        );
        chat.tally.report(&mut report, seconds, &what);
        measured.add_server_figures(&mut report, chat.tally.delivered_in_window(), "delivery");
        Outcome {
            report,
            clean: chat.tally.clean(),
        }
    })
}
