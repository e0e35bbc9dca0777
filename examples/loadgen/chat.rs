//! `loadgen chat`: N clients join a chat server's line protocol (answering
//! the name prompt), M of them send lines, everyone counts what reaches
//! them. Every line must reach every other client, in order.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use reactor::Reactor;
use reactor::codec::LineDecoder;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

use crate::{Outcome, Window, report};

pub struct Options {
    pub addr: SocketAddr,
    pub clients: usize,
    pub senders: usize,
    pub size: usize,
    pub max_in_flight: usize,
    pub drain: Duration,
    pub window: Window,
}

struct Client {
    /// `sender3` or `reader17`.
    name: String,
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
    /// Why a client closed before the load started (a failed connect).
    join_failure: Option<String>,
    measuring: bool,
    sending: bool,
    batch: Vec<u8>,
}

impl Chat {
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
                let seq = client.next_seq;
                client.next_seq += 1;
                self.batch
                    .extend_from_slice(format!("{seq:010} {}\n", self.text).as_bytes());
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
        let seq = rest
            .get(colon + 2..colon + 12)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| digits.parse::<u64>().ok());
        if let (Some(seq), Some(expected)) = (seq, client.expected.get_mut(sender)) {
            if seq != *expected {
                self.out_of_order += 1;
            }
            *expected = seq + 1;
        }
        self.delivered += 1;
        if self.measuring {
            self.delivered_in_window += 1;
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
            && self.sending
        {
            self.disconnected += 1;
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
        batch: Vec::new(),
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
        service.with(&mut reactor, |chat, _| {
            if chat.clients.len() <= id.index() {
                chat.clients.resize_with(id.index() + 1, || None);
            }
            chat.clients[id.index()] = Some(Client {
                name: match sender {
                    Some(s) => format!("sender{s}"),
                    None => format!("reader{i}"),
                },
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
        chat.sending = true;
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
            "chat: {} clients, {} sender(s), {:.1} s: {:.0} lines sent/s, {:.0} deliveries/s, {} of {} deliveries made (ratio {:.4}), {} out of order, {} disconnected",
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
