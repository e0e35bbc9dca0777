//! The client's side of its connection: what the handler forwards
//! (`on_open`, `on_data`, `on_drained`, `on_close`), the login, the
//! replies and pushes read, and losing the link and trying again.

use std::time::Instant;

use log::{debug, info, warn};

use super::super::push::{Push, classify};
use super::{Client, Link, SUBSCRIBE_BATCH, Slot};
use crate::codec::resp::{Protocol, Value, encode};
use crate::redis::{Event, Failure};
use crate::service::{CloseReason, ConnId, Connections};

impl<T> Client<T> {
    // ----- what the handler forwards ------------------------------------

    /// The handler's `on_open` for `id`: logs in (`AUTH`, or `HELLO 3`), or
    /// with nothing to log in with sends `PING`; the answer makes it
    /// ready.
    pub fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        if self.link != Link::Connecting(id) {
            return;
        }
        // Redis may be quiet for long stretches (a subscriber): an idle
        // timeout meant for users must not cut it.
        let _ = conns.exempt_from_idle(id, true);
        self.subscribed = false;
        self.decoder.reset();
        self.since = Instant::now();
        self.scratch.clear();
        let user = self.config.username.as_deref().unwrap_or(b"default");
        match (self.config.protocol, &self.config.password) {
            (Protocol::Resp3, Some(pass)) => encode::command(
                &mut self.scratch,
                &[b"HELLO", &b"3"[..], b"AUTH", user, pass],
            ),
            (Protocol::Resp3, None) => encode::command(&mut self.scratch, &["HELLO", "3"]),
            (Protocol::Resp2, Some(pass)) => match &self.config.username {
                Some(name) => encode::command(&mut self.scratch, &[&b"AUTH"[..], name, pass]),
                None => encode::command(&mut self.scratch, &[&b"AUTH"[..], pass]),
            },
            // Nothing to log in with: a PING, so that `Connected` means
            // Redis answered, not only that a kernel accepted.
            (Protocol::Resp2, None) => encode::command(&mut self.scratch, &["PING"]),
        }
        self.link = Link::Handshake(id);
        self.push_slot(Slot::Handshake);
        let _ = conns.send(id, &self.scratch);
    }

    /// The handler's `on_data` for `id`: returns how many bytes it consumed
    /// (a reply not fully arrived is left for next time).
    pub fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut pos = 0;
        let waiting = self.in_flight.len();
        while self.owns(id) {
            match self.decoder.decode(&data[pos..]) {
                Ok(Some((value, used))) => {
                    pos += used;
                    self.received(conns, id, value);
                }
                Ok(None) => break,
                Err(e) => {
                    self.lose(conns, id, format!("Redis sent bad data: {e}"));
                    return data.len();
                }
            }
        }
        if !self.owns(id) {
            return data.len();
        }
        if self.in_flight.len() < waiting || self.in_flight.is_empty() {
            // Progress: the wait (or the idleness) starts again now.
            self.since = Instant::now();
        }
        self.pump(conns);
        pos
    }

    /// The handler's `on_drained` for `id`: the window has room again.
    pub fn on_drained(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        if self.link == Link::Ready(id) {
            self.pump(conns);
        }
    }

    /// The handler's `on_close` for `id`: a disconnect (or a failed
    /// connect); the commands in flight fail, and a reconnect is scheduled.
    pub fn on_close(&mut self, _conns: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        if !self.owns(id) {
            return;
        }
        let what = match self.link {
            Link::Connecting(_) => "cannot connect to Redis",
            _ => "connection to Redis lost",
        };
        self.down(format!("{what} at {}: {reason}", self.config.addr));
    }

    // ----- inside ---------------------------------------------------------

    pub(super) fn connect(&mut self, conns: &mut Connections<'_>) {
        match conns.connect(self.config.addr) {
            Ok(id) => {
                debug!("connecting to Redis at {} ({id})", self.config.addr);
                self.link = Link::Connecting(id);
            }
            Err(e) => self.down(format!(
                "cannot connect to Redis at {}: {e}",
                self.config.addr
            )),
        }
    }

    /// Drops the connection for `why` (a fault of ours to see, not the
    /// peer's close): `on_close` will not reach us, so this is the
    /// disconnect.
    pub(super) fn lose(&mut self, conns: &mut Connections<'_>, id: ConnId, why: String) {
        let _ = conns.abort(id);
        self.down(why);
    }

    pub(super) fn down(&mut self, reason: String) {
        // Held commands were for this connection: lost with it.
        self.held.clear();
        for slot in self.in_flight.drain(..) {
            if let Slot::Caller(tag) = slot {
                self.events.push_back(Event::Failed {
                    tag,
                    failure: Failure::Lost,
                });
            }
        }
        if self.closing {
            debug!("Redis client closed: {reason}");
            self.link = Link::Closed;
            return;
        }
        let retry_in = self.backoff.next_delay();
        self.link = Link::Down(Instant::now() + retry_in);
        self.stats.disconnects += 1;
        warn!("{reason}; retrying in {} ms", retry_in.as_millis());
        self.events
            .push_back(Event::Disconnected { reason, retry_in });
    }

    pub(super) fn become_ready(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        self.link = Link::Ready(id);
        self.backoff.reset();
        self.stats.connects += 1;
        info!("connected to Redis at {} ({id})", self.config.addr);
        for (verb, set) in [
            ("SUBSCRIBE", &self.channels),
            ("PSUBSCRIBE", &self.patterns),
        ] {
            let all: Vec<&[u8]> = set.iter().map(Vec::as_slice).collect();
            for batch in all.chunks(SUBSCRIBE_BATCH) {
                self.scratch.clear();
                encode::array_header(&mut self.scratch, batch.len() + 1);
                encode::bulk(&mut self.scratch, verb.as_bytes());
                batch
                    .iter()
                    .for_each(|c| encode::bulk(&mut self.scratch, c));
                let _ = conns.send(id, &self.scratch);
                self.subscribed = true;
            }
        }
        self.events.push_back(Event::Connected);
        self.pump(conns);
    }

    pub(super) fn received(&mut self, conns: &mut Connections<'_>, id: ConnId, value: Value) {
        let subscribed = self.subscribed && self.config.protocol == Protocol::Resp2;
        let value = match classify(value, subscribed) {
            Ok(Push::Message {
                channel,
                pattern,
                payload,
            }) => {
                return self.events.push_back(Event::Message {
                    channel,
                    pattern,
                    payload,
                });
            }
            Ok(Push::Confirmation { .. } | Push::Other) => return,
            Err(reply) => reply,
        };
        match self.in_flight.pop_front() {
            Some(Slot::Caller(tag)) => self.events.push_back(Event::Reply { tag, value }),
            Some(Slot::Ping) => {}
            Some(Slot::Handshake) => match value {
                Value::Error(e) => self.lose(conns, id, format!("Redis refused the login: {e}")),
                _ => self.become_ready(conns, id),
            },
            None => self.lose(conns, id, "Redis sent a reply to no command".to_string()),
        }
    }
}
