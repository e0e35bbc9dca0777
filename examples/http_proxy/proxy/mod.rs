//! The proxy's [`Handler`]: client connections (accepted) and origin
//! connections (connected) on one service, each with its record in
//! `conns`, indexed by [`ConnId::index`]. This file holds the records and
//! the `Handler` that routes each event to its side: `client.rs` (requests,
//! the cache, answers) and `origin.rs` (responses, storing, failures).
//!
//! One exchange at a time per client: a request head is read, the client's
//! reading is paused (what follows is the next request, pipelined), and the
//! response is passed back; then reading resumes. Bytes are never held
//! whole: each side's output above the connection layer's high-water mark
//! pauses the other side's reading, and its `on_drained` resumes it
//! (request bodies, response bodies and tunnels alike).
//!
//! ```text
//!  client ── head ──► Idle ──► cache hit? ──────────────────────► Serving (from a Stored)
//!                         └─► same URL being fetched? ─► Waiting ─┘ (or its own fetch)
//!                         └─► Resolving ─► Forwarding ◄── origin: Head ─► Body ─► Done
//!  CONNECT ─► Resolving ─► (origin open: 200) ─► Tunnel ◄──► origin
//! ```

use std::collections::HashMap;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};
use reactor::TimerId;
use reactor::http::{self, BodyDecoder, EMPTY_HEADER, Framing, Header, Limits, Url};
use reactor::resolve::{Resolved, Resolver};
use reactor::service::{CloseReason, ConnId, Connections, Handler, Origin as From, ServiceHandle};

mod client;
mod origin;

use crate::cache::{self, Cache, Shared, Stored};
use crate::message::{self, BodyOut};

/// Header fields per message at most (more: 431 from a client, 502 from an
/// origin).
const MAX_FIELDS: usize = 100;

/// Bytes of a stored body sent to a reader at a time.
const PIECE: usize = 64 * 1024;

/// The proxy's settings (from the command line).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Ports a CONNECT may reach (empty: CONNECT is refused).
    pub allow_connect: Vec<u16>,
    /// How long an origin may take to start its response.
    pub origin_timeout: Duration,
    /// Clients that may wait for one fetch (collapsed misses) at most.
    pub max_waiters: usize,
    /// Request and response heads.
    pub limits: Limits,
}

/// A request on its way to an origin.
struct Fetch {
    host: String,
    port: u16,
    /// The head to send (empty for a CONNECT).
    head: Vec<u8>,
    head_request: bool,
    tunnel: bool,
    /// The request body still to forward.
    body: Option<BodyDecoder>,
    /// The URL, when the response may be cached.
    key: Option<String>,
    /// The request's fields, kept for `Vary` when the response may be cached.
    fields: Vec<(String, Vec<u8>)>,
    /// The cache entry this fetch fills, if it leads collapsed misses.
    fill: Option<(String, Shared)>,
    /// For the log: method and URL.
    line: String,
}

enum ClientState {
    /// Reading the next request head.
    Idle,
    /// Waiting for the resolver.
    Resolving(Box<Fetch>),
    /// Waiting for the head of a response another client's fetch is
    /// getting (a collapsed miss).
    Waiting(Box<Fetch>),
    /// The request went to this origin; the response comes from it.
    Forwarding {
        origin: ConnId,
        body: Option<BodyDecoder>,
    },
    /// Being served from a stored response.
    Serving {
        stored: Shared,
        sent: usize,
        out: BodyOut,
    },
    /// CONNECT: bytes both ways.
    Tunnel { origin: ConnId },
    /// Answered; closing.
    Done,
}

struct Client {
    id: ConnId,
    minor: u8,
    keep_alive: bool,
    read_closed: bool,
    /// Reading paused because the origin's queue is full.
    paused_for_peer: bool,
    state: ClientState,
}

enum OriginState {
    Head,
    Body { decoder: BodyDecoder, out: BodyOut },
    Tunnel,
    Done,
}

struct Upstream {
    id: ConnId,
    client: ConnId,
    head_request: bool,
    fill: Option<(String, Shared)>,
    fields: Vec<(String, Vec<u8>)>,
    timer: Option<TimerId>,
    read_closed: bool,
    paused_for_peer: bool,
    state: OriginState,
    line: String,
}

enum Conn {
    Client(Client),
    Origin(Upstream),
}

/// The proxy: every connection's record, the cache, the fetches under way.
pub struct Proxy {
    conns: Vec<Option<Conn>>,
    cache: Cache,
    /// Fetches that later clients for the same URL may wait for.
    inflight: HashMap<String, Shared>,
    resolver: Resolver,
    me: Option<ServiceHandle<Proxy>>,
    settings: Settings,
}

impl Proxy {
    pub fn new(cache: Cache, resolver: Resolver, settings: Settings) -> Proxy {
        Proxy {
            conns: Vec::new(),
            cache,
            inflight: HashMap::new(),
            resolver,
            me: None,
            settings,
        }
    }

    /// The service's own handle, for answers from the resolver and timers.
    pub fn set_handle(&mut self, me: ServiceHandle<Proxy>) {
        self.me = Some(me);
    }

    fn put(&mut self, id: ConnId, conn: Conn) {
        if self.conns.len() <= id.index() {
            self.conns.resize_with(id.index() + 1, || None);
        }
        self.conns[id.index()] = Some(conn);
    }

    fn client(&mut self, id: ConnId) -> Option<&mut Client> {
        match self.conns.get_mut(id.index()) {
            Some(Some(Conn::Client(c))) if c.id == id => Some(c),
            _ => None,
        }
    }

    fn origin(&mut self, id: ConnId) -> Option<&mut Upstream> {
        match self.conns.get_mut(id.index()) {
            Some(Some(Conn::Origin(o))) if o.id == id => Some(o),
            _ => None,
        }
    }
}

/// Request fields as owned pairs, kept for `Vary`.
fn owned(fields: &[Header<'_>]) -> Vec<(String, Vec<u8>)> {
    fields
        .iter()
        .map(|f| (f.name.to_ascii_lowercase(), f.value.to_vec()))
        .collect()
}

impl Handler for Proxy {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, from: From) {
        match from {
            From::Accepted(_) => {
                debug!("{id}: client from {:?}", conns.peer_addr(id).ok());
                self.put(
                    id,
                    Conn::Client(Client {
                        id,
                        minor: 1,
                        keep_alive: true,
                        read_closed: false,
                        paused_for_peer: false,
                        state: ClientState::Idle,
                    }),
                );
            }
            From::Connected => {
                let Some(origin) = self.origin(id) else {
                    return;
                };
                if !matches!(origin.state, OriginState::Tunnel) {
                    return;
                }
                if let Some(timer) = origin.timer.take() {
                    conns.reactor().cancel(timer);
                }
                let client_id = origin.client;
                info!("{client_id}: {} tunnel open", origin.line);
                let _ = conns.send(client_id, b"HTTP/1.1 200 Connection Established\r\n\r\n");
                if let Some(client) = self.client(client_id) {
                    client.state = ClientState::Tunnel { origin: id };
                    let _ = conns.resume_reading(client_id);
                }
            }
        }
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        match self.conns.get(id.index()) {
            Some(Some(Conn::Client(_))) => self.client_data(conns, id, data),
            Some(Some(Conn::Origin(_))) => self.origin_data(conns, id, data),
            _ => data.len(),
        }
    }

    fn on_read_closed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        if let Some(client) = self.client(id) {
            client.read_closed = true;
            match client.state {
                ClientState::Tunnel { origin } => {
                    let _ = conns.shutdown_write(origin);
                    if self.origin(origin).is_none_or(|o| o.read_closed) {
                        let _ = conns.close(origin);
                        let _ = conns.close(id);
                    }
                }
                // A request cut short.
                ClientState::Idle | ClientState::Forwarding { body: Some(_), .. } => {
                    let _ = conns.close(id);
                }
                // The response goes out first; `exchange_done` closes.
                _ => {}
            }
            return;
        }
        let Some(origin) = self.origin(id) else {
            let _ = conns.close(id);
            return;
        };
        origin.read_closed = true;
        match &mut origin.state {
            OriginState::Tunnel => {
                let client = origin.client;
                let _ = conns.shutdown_write(client);
                if self.client(client).is_none_or(|c| c.read_closed) {
                    let _ = conns.close(client);
                    let _ = conns.close(id);
                }
            }
            OriginState::Head => {
                self.origin_failed(conns, id, 502, "the origin closed without a response")
            }
            OriginState::Body { decoder, .. } => match decoder.finish_at_close() {
                Ok(()) => self.response_done(conns, id),
                Err(e) => {
                    warn!("{id}: response body from origin: {e}");
                    self.body_failed(conns, id);
                }
            },
            OriginState::Done => {
                let _ = conns.close(id);
            }
        }
    }

    fn on_drained(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        match self.conns.get(id.index()) {
            Some(Some(Conn::Client(c))) if c.id == id => match c.state {
                ClientState::Serving { .. } => self.feed(conns, id),
                ClientState::Forwarding { origin, .. } | ClientState::Tunnel { origin } => {
                    self.release(conns, origin)
                }
                _ => {}
            },
            Some(Some(Conn::Origin(o))) if o.id == id => {
                let client = o.client;
                self.release(conns, client);
            }
            _ => {}
        }
    }

    fn on_input_timeout(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        if self
            .client(id)
            .is_some_and(|c| matches!(c.state, ClientState::Idle))
        {
            let body = message::error_response(408, "request head not finished in time", false);
            let _ = conns.send(id, &body);
        }
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        let Some(slot) = self.conns.get_mut(id.index()) else {
            return;
        };
        let ours = match slot {
            Some(Conn::Client(c)) => c.id == id,
            Some(Conn::Origin(o)) => o.id == id,
            None => false,
        };
        if !ours {
            return;
        }
        match slot.take() {
            Some(Conn::Client(client)) => {
                debug!("{id}: client closed: {reason}");
                match client.state {
                    ClientState::Resolving(fetch) => {
                        if let Some((key, stored)) = fetch.fill {
                            self.abandon(conns, &key, &stored);
                        }
                    }
                    ClientState::Waiting(fetch) => {
                        if let Some(key) = &fetch.key {
                            if let Some(stored) = self.inflight.get(key) {
                                stored.borrow_mut().waiters.retain(|&w| w != id);
                            }
                        }
                    }
                    ClientState::Serving { stored, .. } => {
                        stored.borrow_mut().readers.retain(|&r| r != id);
                    }
                    ClientState::Forwarding { origin, .. } => {
                        // Other clients reading or waiting for this response:
                        // the fetch goes on for them (a cacheable request has
                        // no body, so nothing of the request is missing).
                        let others = self
                            .origin(origin)
                            .and_then(|o| o.fill.as_ref())
                            .is_some_and(|(_, s)| {
                                let s = s.borrow();
                                !s.waiters.is_empty() || !s.readers.is_empty()
                            });
                        if others {
                            debug!("{origin}: goes on for the clients waiting for it");
                        } else {
                            self.body_failed(conns, origin);
                        }
                    }
                    ClientState::Tunnel { origin } => {
                        let _ = conns.close(origin);
                    }
                    ClientState::Idle | ClientState::Done => {}
                }
            }
            Some(Conn::Origin(mut origin)) => {
                debug!("{id}: origin closed: {reason}");
                if let Some(timer) = origin.timer.take() {
                    conns.reactor().cancel(timer);
                }
                let (status, why) = match reason {
                    CloseReason::ConnectTimeout => {
                        (504, "connecting to the origin timed out".to_string())
                    }
                    CloseReason::Error(e) => (502, format!("origin: {e}")),
                    other => (502, format!("origin: {other}")),
                };
                let client = origin.client;
                match origin.state {
                    OriginState::Head => {
                        // Put it back for `origin_failed`, which takes it out again.
                        origin.state = OriginState::Head;
                        self.put(id, Conn::Origin(origin));
                        self.origin_failed(conns, id, status, &why);
                        if let Some(slot) = self.conns.get_mut(id.index()) {
                            *slot = None;
                        }
                    }
                    OriginState::Tunnel
                        if self
                            .client(client)
                            .is_some_and(|c| matches!(c.state, ClientState::Forwarding { .. })) =>
                    {
                        self.put(id, Conn::Origin(origin));
                        self.origin_failed(conns, id, status, &why);
                        if let Some(slot) = self.conns.get_mut(id.index()) {
                            *slot = None;
                        }
                    }
                    OriginState::Tunnel => {
                        let _ = conns.close(client);
                    }
                    OriginState::Body { .. } => {
                        self.put(id, Conn::Origin(origin));
                        self.body_failed(conns, id);
                        if let Some(slot) = self.conns.get_mut(id.index()) {
                            *slot = None;
                        }
                    }
                    OriginState::Done => {}
                }
            }
            None => {}
        }
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("cached_bytes", &self.cache.bytes())
            .field("inflight", &self.inflight.len())
            .finish()
    }
}
