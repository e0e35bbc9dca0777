//! `loadgen chat`: N clients join a chat server's lobby, M of them send
//! lines, everyone counts what reaches them. Every line must reach every
//! other client, in order. The clients speak the line protocol, or with
//! `--ndjson` / `--ws` the JSON protocol over lines / WebSocket: a
//! [`Wire`] frames and reads, this counts. With several
//! addresses (the nodes of a cluster), clients are spread over them in
//! turn and the senders are on the first; latency is told apart for
//! receivers on the sender's node and on the others. The books are
//! [`fanout::Tally`]'s.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use reactor::Reactor;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

use crate::fanout::{self, Tally};
use crate::wire::{Heard, Wire};
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
    /// How the report names the framing (`line`, `ndjson`, `ws`).
    pub wire: &'static str,
}

struct Client<W> {
    wire: W,
    /// Which of the addresses it joined (senders join the first).
    node: usize,
    joined: bool,
    /// Per sender, the next sequence number expected from it.
    expected: Vec<u64>,
    /// Sender only: the next sequence number to send.
    next_seq: u64,
}

struct Chat<W> {
    clients: Vec<Option<Client<W>>>,
    sender_ids: Vec<Option<ConnId>>,
    joined: usize,
    text: String,
    tally: Tally,
    /// Why a client closed before the load started (a failed connect, a
    /// refused upgrade).
    join_failure: Option<String>,
    /// Set when the load starts, never cleared: a client that closes after
    /// it (in the window or while the backlog drains) is a disconnect.
    loaded: bool,
    batch: Vec<u8>,
    /// One line's payload, `SEQ TEXT`, before the wire frames it.
    line: Vec<u8>,
    /// Replies a client's wire makes while reading (a name, a join, a pong).
    reply: Vec<u8>,
}

impl<W: Wire> Chat<W> {
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
                self.line.clear();
                self.tally
                    .payload(&mut self.line, client.next_seq, &self.text);
                client.wire.write_chat(&mut self.batch, &self.line);
                client.next_seq += 1;
            }
            if quota > 0 && conns.send(id, &self.batch).is_ok() {
                self.tally.sent(quota);
            }
        }
    }
}

/// Counts what a client heard: `joined` and `expected` (its next sequence
/// number per sender) are the client's, `far` whether it is on another
/// node than the senders.
fn count(
    tally: &mut Tally,
    joined_total: &mut usize,
    joined: &mut bool,
    expected: &mut [u64],
    far: bool,
    heard: Heard<'_>,
) {
    match heard {
        Heard::Joined => {
            if !*joined {
                *joined = true;
                *joined_total += 1;
            }
        }
        // From "senderN"; anyone else's chat is not the load's.
        Heard::Chat { from, text } => {
            let sender = from.strip_prefix(b"sender").and_then(fanout::decimal);
            if let Some(expected) = sender.and_then(|s| expected.get_mut(s as usize)) {
                tally.delivered(expected, text, far);
            }
        }
    }
}

impl<W: Wire + 'static> Handler for Chat<W> {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        let Some(client) = self.clients.get_mut(id.index()).and_then(Option::as_mut) else {
            return;
        };
        self.reply.clear();
        client.wire.on_open(&mut self.reply);
        if !self.reply.is_empty() {
            let _ = conns.send(id, &self.reply);
        }
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let Some(client) = self.clients.get_mut(id.index()).and_then(Option::as_mut) else {
            return data.len();
        };
        let (tally, joined_total) = (&mut self.tally, &mut self.joined);
        let (joined, expected, far) = (&mut client.joined, &mut client.expected, client.node != 0);
        self.reply.clear();
        let read = client.wire.read(data, &mut self.reply, |heard| {
            count(tally, joined_total, joined, expected, far, heard)
        });
        if !self.reply.is_empty() {
            let _ = conns.send(id, &self.reply);
        }
        match read {
            Ok(used) => {
                self.pump(conns);
                used
            }
            Err(why) => {
                log::warn!("{id}: {why}");
                if !self.loaded && self.join_failure.is_none() {
                    self.join_failure = Some(why);
                }
                let _ = conns.close(id);
                data.len()
            }
        }
    }

    fn on_drained(&mut self, conns: &mut Connections<'_>, _: ConnId) {
        self.pump(conns);
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        if let Some(client) = self.clients.get_mut(id.index()).and_then(Option::take) {
            if self.loaded {
                self.tally.disconnected += 1;
                log::warn!("{id} disconnected during the run: {reason}");
            } else if !client.joined && self.join_failure.is_none() {
                self.join_failure = Some(reason.to_string());
            }
        }
        for s in self.sender_ids.iter_mut() {
            if *s == Some(id) {
                *s = None;
            }
        }
        let _ = conns;
    }
}

/// Runs the load with clients framed by the wire `new_wire(name, node)`
/// makes for a client called `name` that connects to `node`.
pub fn run<W: Wire + 'static>(
    options: Options,
    mut new_wire: impl FnMut(String, SocketAddr) -> W,
) -> io::Result<Outcome> {
    let mut reactor = Reactor::new()?;
    let chat = Chat {
        clients: Vec::new(),
        sender_ids: vec![None; options.senders],
        joined: 0,
        text: "x".repeat(options.size),
        tally: Tally::new(options.clients - 1, options.max_in_flight, options.rate)?,
        join_failure: None,
        loaded: false,
        batch: Vec::new(),
        line: Vec::new(),
        reply: Vec::new(),
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
        let name = match sender {
            Some(s) => format!("sender{s}"),
            None => format!("reader{i}"),
        };
        let wire = new_wire(name, options.addrs[node]);
        service.with(&mut reactor, |chat, _| {
            if chat.clients.len() <= id.index() {
                chat.clients.resize_with(id.index() + 1, || None);
            }
            chat.clients[id.index()] = Some(Client {
                wire,
                node,
                joined: false,
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
        chat.loaded = true;
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
            .text("wire", options.wire)
            .int("nodes", options.addrs.len() as u64)
            .int("size", options.size as u64)
            .int("max_in_flight", options.max_in_flight as u64);
        let what = format!(
            "chat ({}): {} clients on {} node(s), {} sender(s)",
            options.wire,
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
