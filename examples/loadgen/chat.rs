//! `loadgen chat`: N clients join a chat server's lobby, M of them send
//! lines, everyone counts what reaches them. Every line must reach every
//! other client, in order. The clients speak the line protocol, or with
//! `--ws` JSON over WebSocket: a [`Wire`] frames and reads, this counts.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use reactor::Reactor;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

use crate::wire::{Heard, Wire};
use crate::{Outcome, Window, report};

pub struct Options {
    pub addr: SocketAddr,
    pub clients: usize,
    pub senders: usize,
    pub size: usize,
    pub max_in_flight: usize,
    pub drain: Duration,
    pub window: Window,
    /// How the report names the framing (`line`, `ws`).
    pub wire: &'static str,
}

struct Client<W> {
    wire: W,
    joined: bool,
    /// Per sender, the next sequence number expected from it.
    expected: Vec<u64>,
    /// Sender only: the next sequence number to send.
    next_seq: u64,
}

struct Chat<W> {
    clients: Vec<Option<Client<W>>>,
    sender_ids: Vec<Option<ConnId>>,
    total: usize,
    joined: usize,
    text: String,
    max_in_flight: u64,
    sent: u64,
    delivered: u64,
    sent_in_window: u64,
    delivered_in_window: u64,
    out_of_order: u64,
    disconnected: u64,
    /// Why a client closed before the load started (a failed connect, a
    /// refused upgrade).
    join_failure: Option<String>,
    measuring: bool,
    sending: bool,
    /// Set when the load starts, never cleared: a client that closes after
    /// it (in the window or while the backlog drains) is a disconnect.
    loaded: bool,
    batch: Vec<u8>,
    /// One message's text, `0000000041 xxxx`, before the wire frames it.
    line: Vec<u8>,
    /// Replies a client's wire makes while reading (a name, a join, a pong).
    reply: Vec<u8>,
}

impl<W: Wire> Chat<W> {
    fn in_flight(&self) -> u64 {
        let receivers = (self.total - 1) as u64;
        self.sent.saturating_sub(self.delivered / receivers)
    }

    /// Tops up every sender whose output queue is empty, within the
    /// in-flight limit: as fast as the server takes the lines.
    fn pump(&mut self, conns: &mut Connections<'_>) {
        if !self.sending {
            return;
        }
        for s in 0..self.sender_ids.len() {
            let Some(id) = self.sender_ids[s] else {
                continue;
            };
            if conns.output_len(id) != Some(0) {
                continue;
            }
            self.batch.clear();
            let mut lines = 0;
            while lines < 256
                && (self.max_in_flight == 0 || self.in_flight() + lines < self.max_in_flight)
            {
                let Some(client) = self.clients[id.index()].as_mut() else {
                    break;
                };
                self.line.clear();
                push_seq(&mut self.line, client.next_seq);
                self.line.push(b' ');
                self.line.extend_from_slice(self.text.as_bytes());
                client.next_seq += 1;
                client.wire.write_chat(&mut self.batch, &self.line);
                lines += 1;
            }
            if lines > 0 && conns.send(id, &self.batch).is_ok() {
                self.sent += lines;
                if self.measuring {
                    self.sent_in_window += lines;
                }
            }
        }
    }
}

/// Appends `seq` as ten digits, zero-padded (`{seq:010}` without `format!`).
fn push_seq(out: &mut Vec<u8>, seq: u64) {
    let mut digits = [b'0'; 10];
    let mut n = seq;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits);
}

/// The value of `digits`, all ASCII digits (1 to 19 of them), or None: the
/// hot path's number reader (no UTF-8 check, no `str::parse`).
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// The counters of what arrived, apart from the clients so that a client's
/// wire can report to them while it reads.
struct Tally<'a> {
    joined: &'a mut usize,
    delivered: &'a mut u64,
    delivered_in_window: &'a mut u64,
    out_of_order: &'a mut u64,
    measuring: bool,
}

impl Tally<'_> {
    /// Counts what a client heard; `expected` is its next sequence number
    /// per sender.
    fn heard(&mut self, joined: &mut bool, expected: &mut [u64], heard: Heard<'_>) {
        let (from, text) = match heard {
            Heard::Joined => {
                if !*joined {
                    *joined = true;
                    *self.joined += 1;
                }
                return;
            }
            Heard::Chat { from, text } => (from, text),
        };
        // From "senderN", text "0000000041 xxxx".
        let Some(sender) = from.strip_prefix(b"sender").and_then(decimal) else {
            return;
        };
        let seq = text.get(..10).and_then(decimal);
        if let (Some(seq), Some(expected)) = (seq, expected.get_mut(sender as usize)) {
            if seq != *expected {
                *self.out_of_order += 1;
            }
            *expected = seq + 1;
        }
        *self.delivered += 1;
        if self.measuring {
            *self.delivered_in_window += 1;
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
        let mut tally = Tally {
            joined: &mut self.joined,
            delivered: &mut self.delivered,
            delivered_in_window: &mut self.delivered_in_window,
            out_of_order: &mut self.out_of_order,
            measuring: self.measuring,
        };
        self.reply.clear();
        let (joined, expected) = (&mut client.joined, &mut client.expected);
        let read = client.wire.read(data, &mut self.reply, |heard| {
            tally.heard(joined, expected, heard)
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
                self.disconnected += 1;
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

/// Runs the load with clients framed by the wire `new_wire(name)` makes.
pub fn run<W: Wire + 'static>(
    options: Options,
    mut new_wire: impl FnMut(String) -> W,
) -> io::Result<Outcome> {
    let mut reactor = Reactor::new()?;
    let chat = Chat {
        clients: Vec::new(),
        sender_ids: vec![None; options.senders],
        total: options.clients,
        joined: 0,
        text: "x".repeat(options.size),
        max_in_flight: options.max_in_flight as u64,
        sent: 0,
        delivered: 0,
        sent_in_window: 0,
        delivered_in_window: 0,
        out_of_order: 0,
        disconnected: 0,
        join_failure: None,
        measuring: false,
        sending: false,
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
        let id = service.connect(&mut reactor, options.addr)?;
        let sender = (i < options.senders).then_some(i);
        let name = match sender {
            Some(s) => format!("sender{s}"),
            None => format!("reader{i}"),
        };
        let wire = new_wire(name);
        service.with(&mut reactor, |chat, _| {
            if chat.clients.len() <= id.index() {
                chat.clients.resize_with(id.index() + 1, || None);
            }
            chat.clients[id.index()] = Some(Client {
                wire,
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
        chat.sending = true;
        chat.loaded = true;
        chat.pump(conns);
    })?;
    let measured = crate::measure(&mut reactor, &service, options.window, |chat, on| {
        chat.measuring = on
    })?;
    // Stop sending and let every line in flight arrive (bounded).
    service.with(&mut reactor, |chat, _| chat.sending = false)?;
    let receivers = (options.clients - 1) as u64;
    let deadline = std::time::Instant::now() + options.drain;
    loop {
        let (sent, delivered, lost_clients) =
            service.with(&mut reactor, |c, _| (c.sent, c.delivered, c.disconnected))?;
        if delivered >= sent * receivers || lost_clients > 0 || std::time::Instant::now() > deadline
        {
            break;
        }
        reactor.run_once(Some(Duration::from_millis(50)))?;
    }

    service.with(&mut reactor, |chat, _| {
        let seconds = measured.elapsed.as_secs_f64();
        let ratio = if chat.sent == 0 { 0.0 } else { chat.delivered as f64 / (chat.sent * receivers) as f64 };
        let mut report = report::Report::new("chat");
        report
            .text("wire", options.wire)
            .int("clients", options.clients as u64)
            .int("senders", options.senders as u64)
            .int("size", options.size as u64)
            .int("max_in_flight", options.max_in_flight as u64)
            .num("duration_s", seconds)
            .num("lines_per_s", chat.sent_in_window as f64 / seconds)
            .num("deliveries_per_s", chat.delivered_in_window as f64 / seconds)
            .int("lines_sent", chat.sent)
            .int("deliveries", chat.delivered)
            .num("delivery_ratio", ratio)
            .int("out_of_order", chat.out_of_order)
            .int("disconnected", chat.disconnected);
        measured.add_server_figures(&mut report, chat.delivered_in_window, "delivery");
        report.human = format!(
            "chat ({}): {} clients, {} sender(s), {:.1} s: {:.0} lines sent/s, {:.0} deliveries/s, {} of {} deliveries made (ratio {:.4}), {} out of order, {} disconnected",
            options.wire,
            options.clients,
            options.senders,
            seconds,
            chat.sent_in_window as f64 / seconds,
            chat.delivered_in_window as f64 / seconds,
            chat.delivered,
            chat.sent * receivers,
            ratio,
            chat.out_of_order,
            chat.disconnected,
        );
        let clean = chat.disconnected == 0 && chat.out_of_order == 0 && chat.delivered == chat.sent * receivers;
        Outcome { report, clean }
    })
}
