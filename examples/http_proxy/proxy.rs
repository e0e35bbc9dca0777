//! The proxy's [`Handler`]: client connections (accepted) and origin
//! connections (connected) on one service, each with its record in
//! `conns`, indexed by [`ConnId::index`].
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

    // ---- clients ---------------------------------------------------------

    /// Reads what the client's state allows from the front of `data`.
    fn client_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        /// What the client's state does with its next bytes.
        enum Next {
            Request,
            Body(ConnId),
            Tunnel(ConnId),
            Discard,
            Wait,
        }
        let mut at = 0;
        while at < data.len() {
            let Some(client) = self.client(id) else {
                return data.len();
            };
            let next = match &client.state {
                ClientState::Idle => Next::Request,
                ClientState::Forwarding {
                    origin,
                    body: Some(_),
                } => Next::Body(*origin),
                ClientState::Tunnel { origin } => Next::Tunnel(*origin),
                ClientState::Done => Next::Discard,
                _ => Next::Wait,
            };
            let rest = &data[at..];
            let n = match next {
                Next::Request => self.request(conns, id, rest),
                Next::Body(origin) => self.request_body(conns, id, origin, rest),
                Next::Tunnel(origin) => {
                    let _ = conns.send(origin, rest);
                    self.hold_back(conns, id, origin);
                    rest.len()
                }
                Next::Discard => rest.len(),
                Next::Wait => 0,
            };
            if n == 0 {
                break;
            }
            at += n;
        }
        at
    }

    /// A request head: answer it from the cache, join a fetch under way, or
    /// start one. Returns the bytes consumed.
    fn request(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut fields = [EMPTY_HEADER; MAX_FIELDS];
        let request = match http::parse_request(data, &mut fields, &self.settings.limits) {
            Ok(Some(request)) => request,
            Ok(None) => return 0,
            Err(e) => {
                self.answer(conns, id, e.status(), e.why(), "bad request");
                return data.len();
            }
        };
        let head_len = request.head_len;
        if let Some(client) = self.client(id) {
            client.minor = request.minor;
            client.keep_alive = request.keep_alive;
        }
        // What follows is a body, or the next request: read it when this
        // exchange is ready for it.
        let _ = conns.pause_reading(id);
        let line = format!("{} {}", request.method, request.target);
        let fetch = if request.method == "CONNECT" {
            match self.connect_target(request.target) {
                Ok((host, port)) => Fetch {
                    host,
                    port,
                    head: Vec::new(),
                    head_request: false,
                    tunnel: true,
                    body: None,
                    key: None,
                    fields: Vec::new(),
                    fill: None,
                    line,
                },
                Err((status, why)) => {
                    self.answer(conns, id, status, why, &line);
                    return data.len();
                }
            }
        } else {
            let url = match Url::parse(request.target) {
                Ok(url) if url.https => {
                    let why = "https:// URLs go through CONNECT";
                    self.answer(conns, id, 501, why, &line);
                    return data.len();
                }
                Ok(url) => url,
                Err(_) => {
                    let why = "a proxy request needs an absolute http:// URL";
                    self.answer(conns, id, 400, why, &line);
                    return data.len();
                }
            };
            let has_body = !request.framing.is_empty();
            let cacheable = cache::request_is_cacheable(request.method, request.fields, has_body);
            let authority = url.authority();
            let key = cacheable.then(|| format!("http://{authority}{}", url.path));
            // `no-cache` (a reload): not answered from the cache, though its
            // response may refresh it.
            let reload = http::CacheControl::from_fields(request.fields).no_cache
                || http::header(request.fields, "pragma")
                    .is_some_and(|p| p.eq_ignore_ascii_case(b"no-cache"));
            if let (Some(key), false) = (&key, reload) {
                if let Some(stored) = self.cache.get(key, request.fields, Instant::now()) {
                    info!("{id}: {line} HIT");
                    self.serve(conns, id, stored);
                    return head_len;
                }
            }
            let body = match has_body {
                true => match BodyDecoder::new(request.framing, u64::MAX) {
                    Ok(body) => Some(body),
                    Err(e) => {
                        self.answer(conns, id, e.status(), e.why(), &line);
                        return data.len();
                    }
                },
                false => None,
            };
            let framing = if has_body {
                request.framing
            } else {
                Framing::None
            };
            Fetch {
                head: message::request_head(
                    request.method,
                    &url.path,
                    &authority,
                    request.fields,
                    framing,
                ),
                host: url.host,
                port: url.port,
                head_request: request.method == "HEAD",
                tunnel: false,
                body,
                fields: match key {
                    Some(_) => owned(request.fields),
                    None => Vec::new(),
                },
                key,
                fill: None,
                line,
            }
        };
        self.start(conns, id, Box::new(fetch), true);
        head_len
    }

    /// The host and port of a CONNECT target, if CONNECT may reach it.
    fn connect_target(&self, target: &str) -> Result<(String, u16), (u16, &'static str)> {
        if self.settings.allow_connect.is_empty() {
            return Err((405, "CONNECT is not allowed (see --allow-connect)"));
        }
        let url = Url::parse(&format!("http://{target}"))
            .map_err(|_| (400, "malformed CONNECT target"))?;
        if !target.contains(':') || url.path != "/" {
            return Err((400, "malformed CONNECT target"));
        }
        if !self.settings.allow_connect.contains(&url.port) {
            return Err((403, "CONNECT to this port is not allowed"));
        }
        Ok((url.host, url.port))
    }

    /// Starts a fetch for `id`: joins one under way for the same URL when
    /// `collapse` allows, otherwise resolves the origin's name.
    fn start(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        mut fetch: Box<Fetch>,
        collapse: bool,
    ) {
        if let (true, Some(key)) = (collapse, fetch.key.clone()) {
            match self.inflight.get(&key).cloned() {
                Some(stored) => {
                    let (feeding, room) = {
                        let s = stored.borrow();
                        let feeding = s.has_head() && s.length.is_some();
                        (
                            feeding,
                            s.waiters.len() + s.readers.len() < self.settings.max_waiters,
                        )
                    };
                    if room && feeding {
                        info!("{id}: {} HIT (being fetched)", fetch.line);
                        self.serve(conns, id, stored);
                        return;
                    }
                    if room {
                        debug!("{id}: {} waits for the fetch under way", fetch.line);
                        stored.borrow_mut().waiters.push(id);
                        if let Some(client) = self.client(id) {
                            client.state = ClientState::Waiting(fetch);
                        }
                        return;
                    }
                    // Too many waiting: this one fetches for itself.
                }
                None => {
                    let stored = Stored::pending();
                    self.inflight.insert(key.clone(), stored.clone());
                    fetch.fill = Some((key, stored));
                }
            }
        }
        let me = self.me.clone();
        let (host, port) = (fetch.host.clone(), fetch.port);
        let answer = self.resolver.lookup(&host, port, move |_, resolved| {
            if let Some(me) = me {
                let _ = me.call(move |proxy, conns| proxy.resolved(conns, id, resolved));
            }
        });
        match answer {
            Some(resolved) => self.connect(conns, id, *fetch, resolved),
            None => {
                if let Some(client) = self.client(id) {
                    client.state = ClientState::Resolving(fetch);
                }
            }
        }
    }

    /// The resolver's answer for a client that was waiting for it.
    fn resolved(&mut self, conns: &mut Connections<'_>, id: ConnId, resolved: Resolved) {
        let Some(client) = self.client(id) else {
            return;
        };
        if let ClientState::Resolving(_) = client.state {
            let ClientState::Resolving(fetch) =
                std::mem::replace(&mut client.state, ClientState::Done)
            else {
                return;
            };
            self.connect(conns, id, *fetch, resolved);
        }
    }

    /// Connects to the origin and sends the request.
    fn connect(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        fetch: Fetch,
        resolved: Resolved,
    ) {
        let first = resolved.map(|addrs| addrs.first().copied());
        let addr: SocketAddr = match first {
            Ok(Some(addr)) => addr,
            Ok(None) => {
                let why = format!("no address for {}", fetch.host);
                return self.fail(conns, id, fetch.fill, &fetch.line, 502, &why);
            }
            Err(e) => {
                let why = format!("cannot resolve {}: {e}", fetch.host);
                return self.fail(conns, id, fetch.fill, &fetch.line, 502, &why);
            }
        };
        let origin = match conns.connect(addr) {
            Ok(origin) => origin,
            Err(e) => {
                let why = format!("cannot connect to {addr}: {e}");
                return self.fail(conns, id, fetch.fill, &fetch.line, 502, &why);
            }
        };
        debug!("{id}: {} via {origin} to {addr}", fetch.line);
        let me = self.me.clone();
        let timeout = self.settings.origin_timeout;
        // A tunnel has no response to wait for: only its connect is timed.
        let timer = (!fetch.tunnel).then(|| {
            conns.reactor().call_later(timeout, move |_| {
                if let Some(me) = me {
                    let _ = me.call(move |proxy, conns| proxy.origin_timed_out(conns, origin));
                }
            })
        });
        let Fetch {
            head,
            head_request,
            tunnel,
            body,
            fields,
            fill,
            line,
            ..
        } = fetch;
        if !tunnel {
            let _ = conns.send(origin, &head);
        }
        self.put(
            origin,
            Conn::Origin(Upstream {
                id: origin,
                client: id,
                head_request,
                fill,
                fields,
                timer,
                read_closed: false,
                paused_for_peer: false,
                state: if tunnel {
                    OriginState::Tunnel
                } else {
                    OriginState::Head
                },
                line,
            }),
        );
        let streaming = body.is_some();
        if let Some(client) = self.client(id) {
            client.state = ClientState::Forwarding { origin, body };
        }
        if streaming {
            let _ = conns.resume_reading(id);
        }
    }

    /// Forwards request body bytes, as they are (their framing was checked
    /// and is declared the same way to the origin).
    fn request_body(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        origin: ConnId,
        data: &[u8],
    ) -> usize {
        let Some(client) = self.client(id) else {
            return data.len();
        };
        let ClientState::Forwarding {
            body: Some(body), ..
        } = &mut client.state
        else {
            return 0;
        };
        match body.feed(data, |_| {}) {
            Ok(progress) => {
                let _ = conns.send(origin, &data[..progress.consumed]);
                if progress.done {
                    if let ClientState::Forwarding { body, .. } = &mut client.state {
                        *body = None;
                    }
                    // The next request waits for this response.
                    let _ = conns.pause_reading(id);
                } else {
                    self.hold_back(conns, id, origin);
                }
                progress.consumed
            }
            Err(e) => {
                warn!("{id}: request body: {e}");
                let _ = conns.abort(origin);
                self.answer(conns, id, e.status(), e.why(), "request body");
                data.len()
            }
        }
    }

    /// Serves `id` from a stored response (complete, or being received with
    /// a known length).
    fn serve(&mut self, conns: &mut Connections<'_>, id: ConnId, stored: Shared) {
        let Some(client) = self.client(id) else {
            return;
        };
        let keep_alive = client.keep_alive;
        let (head, out, complete) = {
            let s = stored.borrow();
            let length = if s.complete {
                s.body.len() as u64
            } else {
                s.length.unwrap_or(0)
            };
            let out = BodyOut::Length(length);
            let mut head = s.head.clone();
            message::finish_head(
                &mut head,
                Some(s.age(Instant::now())),
                true,
                &out,
                keep_alive,
            );
            (head, out, s.complete)
        };
        let _ = conns.send(id, &head);
        if !complete {
            stored.borrow_mut().readers.push(id);
        }
        client.state = ClientState::Serving {
            stored,
            sent: 0,
            out,
        };
        self.feed(conns, id);
    }

    /// Sends a reader what it can take of its stored response.
    fn feed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let high = conns.config().get_high_water();
        let Some(client) = self.client(id) else {
            return;
        };
        let ClientState::Serving { stored, sent, out } = &mut client.state else {
            return;
        };
        let s = stored.borrow();
        if s.failed {
            drop(s);
            let _ = conns.abort(id);
            return;
        }
        while *sent < s.body.len() && conns.output_len(id).unwrap_or(usize::MAX) < high {
            let end = s.body.len().min(*sent + PIECE);
            out.send(conns, id, &s.body[*sent..end]);
            *sent = end;
        }
        let finished = s.complete && *sent == s.body.len();
        drop(s);
        if finished {
            let stored = stored.clone();
            stored.borrow_mut().readers.retain(|&r| r != id);
            self.exchange_done(conns, id);
        }
    }

    /// The response is out: read the next request, or close.
    fn exchange_done(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let Some(client) = self.client(id) else {
            return;
        };
        let body_left = matches!(client.state, ClientState::Forwarding { body: Some(_), .. });
        if client.keep_alive && !client.read_closed && !body_left {
            client.state = ClientState::Idle;
            let _ = conns.resume_reading(id);
        } else {
            client.state = ClientState::Done;
            let _ = conns.close(id);
        }
    }

    /// Answers `id` with an error of the proxy's own, and closes.
    fn answer(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        status: u16,
        why: &str,
        line: &str,
    ) {
        warn!("{id}: {line}: {status} {why}");
        let _ = conns.send(id, &message::error_response(status, why, status == 405));
        let _ = conns.close(id);
        if let Some(client) = self.client(id) {
            client.state = ClientState::Done;
        }
    }

    /// A fetch that could not start: its waiters go on their own, the
    /// client gets the error.
    fn fail(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        fill: Option<(String, Shared)>,
        line: &str,
        status: u16,
        why: &str,
    ) {
        if let Some((key, stored)) = fill {
            self.abandon(conns, &key, &stored);
        }
        self.answer(conns, id, status, why, line);
    }

    /// A response will not be stored after all (not cacheable, too large,
    /// or its fetch failed): the clients waiting for it make their own
    /// requests, and readers of a partial copy are cut off.
    fn abandon(&mut self, conns: &mut Connections<'_>, key: &str, stored: &Shared) {
        if self
            .inflight
            .get(key)
            .is_some_and(|s| std::rc::Rc::ptr_eq(s, stored))
        {
            self.inflight.remove(key);
        }
        let (waiters, readers) = {
            let mut s = stored.borrow_mut();
            s.failed = true;
            (
                std::mem::take(&mut s.waiters),
                std::mem::take(&mut s.readers),
            )
        };
        for reader in readers {
            let _ = conns.abort(reader);
        }
        for waiter in waiters {
            let Some(client) = self.client(waiter) else {
                continue;
            };
            if let ClientState::Waiting(_) = client.state {
                if let ClientState::Waiting(fetch) =
                    std::mem::replace(&mut client.state, ClientState::Done)
                {
                    debug!("{waiter}: fetches {} itself", fetch.line);
                    self.start(conns, waiter, fetch, false);
                }
            }
        }
    }

    /// Pauses `from` while `to` has more queued than the high-water mark;
    /// `to`'s `on_drained` resumes it.
    fn hold_back(&mut self, conns: &mut Connections<'_>, from: ConnId, to: ConnId) {
        let high = conns.config().get_high_water();
        if conns.output_len(to).is_some_and(|queued| queued > high) {
            let _ = conns.pause_reading(from);
            match self.conns.get_mut(from.index()) {
                Some(Some(Conn::Client(c))) if c.id == from => c.paused_for_peer = true,
                Some(Some(Conn::Origin(o))) if o.id == from => o.paused_for_peer = true,
                _ => {}
            }
        }
    }

    /// `id` drained: whatever was held back for it may go on.
    fn release(&mut self, conns: &mut Connections<'_>, peer: ConnId) {
        let paused = match self.conns.get_mut(peer.index()) {
            Some(Some(Conn::Client(c))) if c.id == peer => std::mem::take(&mut c.paused_for_peer),
            Some(Some(Conn::Origin(o))) if o.id == peer => std::mem::take(&mut o.paused_for_peer),
            _ => false,
        };
        if paused {
            let _ = conns.resume_reading(peer);
            let _ = conns.reset_idle(peer);
        }
    }

    // ---- origins ---------------------------------------------------------

    /// Reads what the origin's state allows from the front of `data` (an
    /// interim head, then the final one, then its body, may all be here).
    fn origin_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut at = 0;
        while at < data.len() {
            let Some(origin) = self.origin(id) else {
                return data.len();
            };
            let rest = &data[at..];
            let n = match origin.state {
                OriginState::Head => self.response_head(conns, id, rest),
                OriginState::Body { .. } => self.response_body(conns, id, rest),
                OriginState::Tunnel => {
                    let client = origin.client;
                    let _ = conns.send(client, rest);
                    self.hold_back(conns, id, client);
                    rest.len()
                }
                OriginState::Done => rest.len(),
            };
            if n == 0 {
                break;
            }
            at += n;
        }
        at
    }

    fn response_head(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let head_request = self.origin(id).is_some_and(|o| o.head_request);
        let mut fields = [EMPTY_HEADER; MAX_FIELDS];
        let response =
            match http::parse_response(data, &mut fields, &self.settings.limits, head_request) {
                Ok(Some(response)) => response,
                Ok(None) => return 0,
                Err(e) => {
                    self.origin_failed(conns, id, 502, &format!("bad response from origin: {e}"));
                    return data.len();
                }
            };
        let Some(origin) = self.origin(id) else {
            return data.len();
        };
        let client_id = origin.client;
        if (100..200).contains(&response.status) {
            if response.status == 101 {
                self.origin_failed(conns, id, 502, "origin switched protocols unasked");
                return data.len();
            }
            // 100 Continue (the client asked), 103 Early Hints: passed on,
            // to a client that knows them (HTTP/1.1, RFC 9110 §15.2).
            if self.client(client_id).is_some_and(|c| c.minor >= 1) {
                let interim = format!("HTTP/1.1 {} {}\r\n\r\n", response.status, response.reason);
                let _ = conns.send(client_id, interim.as_bytes());
            }
            return response.head_len;
        }
        if let Some(timer) = origin.timer.take() {
            conns.reactor().cancel(timer);
        }
        let fill = origin.fill.take();
        let request_fields = std::mem::take(&mut origin.fields);
        let line = origin.line.clone();
        let declared = match response.framing {
            Framing::None => response
                .header("content-length")
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok()),
            _ => None,
        };
        // The client may have left while others wait for this response
        // (see `on_close`): it is read for them all the same.
        let (minor, wanted) = self
            .client(client_id)
            .map_or((1, false), |c| (c.minor, c.keep_alive));
        let out = BodyOut::for_client(response.framing, minor, declared);
        let keep_alive = wanted && out.allows_keep_alive();
        if let Some(client) = self.client(client_id) {
            client.keep_alive = keep_alive;
        }
        let start = message::response_start(response.status, response.reason, response.fields);
        let mut head = start.clone();
        message::finish_head(&mut head, None, false, &out, keep_alive);
        let _ = conns.send(client_id, &head);
        info!("{client_id}: {line} {} MISS", response.status);

        // Keep it, if it may be kept.
        let mut keep = None;
        if let Some((key, stored)) = fill {
            let lifetime = cache::freshness(&response, SystemTime::now());
            let room = self
                .cache
                .max_object()
                .saturating_sub(start.len() + key.len()) as u64;
            let fits = !matches!(response.framing, Framing::Length(n) if n > room);
            let held: Vec<Header<'_>> = request_fields
                .iter()
                .map(|(name, value)| Header { name, value })
                .collect();
            let vary = cache::vary_values(response.fields, &held);
            match lifetime {
                Some(lifetime) if fits => {
                    {
                        let mut s = stored.borrow_mut();
                        s.head = start;
                        s.length = match response.framing {
                            Framing::Length(n) => Some(n),
                            Framing::None => Some(0),
                            _ => None,
                        };
                        s.received = Instant::now();
                        s.age_at_receipt = cache::origin_age(response.fields);
                        s.lifetime = lifetime;
                        s.vary = vary;
                    }
                    let (vary, known) = {
                        let s = stored.borrow();
                        (!s.vary.is_empty(), s.length.is_some())
                    };
                    if vary {
                        // The waiters' own fields might want another variant.
                        let waiters = std::mem::take(&mut stored.borrow_mut().waiters);
                        let shadow = Stored::pending();
                        shadow.borrow_mut().waiters = waiters;
                        self.abandon(conns, &key, &shadow);
                        self.inflight.remove(&key);
                    } else if known {
                        let waiters = std::mem::take(&mut stored.borrow_mut().waiters);
                        for waiter in waiters {
                            info!("{waiter}: {line} HIT (collapsed)");
                            self.serve(conns, waiter, stored.clone());
                        }
                    }
                    keep = Some((key, stored));
                }
                _ => self.abandon(conns, &key, &stored),
            }
        }
        let decoder = match BodyDecoder::new(response.framing, u64::MAX) {
            Ok(decoder) => decoder,
            Err(e) => {
                self.origin_failed(conns, id, 502, e.why());
                return data.len();
            }
        };
        let Some(origin) = self.origin(id) else {
            return data.len();
        };
        origin.fill = keep;
        origin.state = OriginState::Body { decoder, out };
        if response.framing.is_empty() {
            self.response_done(conns, id);
            return data.len();
        }
        response.head_len
    }

    fn response_body(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let max_object = self.cache.max_object();
        let Some(origin) = self.origin(id) else {
            return data.len();
        };
        let client = origin.client;
        let OriginState::Body { decoder, out } = &mut origin.state else {
            return data.len();
        };
        let out = *out;
        let fill = origin.fill.as_ref();
        let mut overflow = false;
        let result = decoder.feed(data, |payload| {
            out.send(conns, client, payload);
            if let Some((_, stored)) = fill {
                let mut s = stored.borrow_mut();
                if s.head.len() + s.body.len() + payload.len() > max_object {
                    overflow = true;
                } else if !overflow {
                    s.body.extend_from_slice(payload);
                }
            }
        });
        let progress = match result {
            Ok(progress) => progress,
            Err(e) => {
                warn!("{id}: response body from origin: {e}");
                self.body_failed(conns, id);
                return data.len();
            }
        };
        if overflow {
            if let Some((key, stored)) = origin.fill.take() {
                debug!("{id}: response too large for the cache");
                self.abandon(conns, &key, &stored);
            }
        } else if let Some((_, stored)) = &origin.fill {
            let readers = stored.borrow().readers.clone();
            for reader in readers {
                self.feed(conns, reader);
            }
        }
        if progress.done {
            self.response_done(conns, id);
            return data.len();
        }
        self.hold_back(conns, id, client);
        progress.consumed
    }

    /// The whole response has been passed on.
    fn response_done(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let Some(origin) = self.origin(id) else {
            return;
        };
        let client = origin.client;
        if let OriginState::Body { out, .. } = origin.state {
            out.finish(conns, client);
        }
        origin.state = OriginState::Done;
        let fill = origin.fill.take();
        let _ = conns.close(id);
        if let Some((key, stored)) = fill {
            if self
                .inflight
                .get(&key)
                .is_some_and(|s| std::rc::Rc::ptr_eq(s, &stored))
            {
                self.inflight.remove(&key);
            }
            {
                let mut s = stored.borrow_mut();
                s.complete = true;
                s.body.shrink_to_fit();
            }
            if self.cache.insert(&key, stored.clone()) {
                debug!("stored {key} ({} bytes in the cache)", self.cache.bytes());
            }
            let (waiters, readers) = {
                let mut s = stored.borrow_mut();
                (std::mem::take(&mut s.waiters), s.readers.clone())
            };
            for waiter in waiters {
                info!("{waiter}: {key} HIT (collapsed)");
                self.serve(conns, waiter, stored.clone());
            }
            for reader in readers {
                self.feed(conns, reader);
            }
        }
        self.exchange_done(conns, client);
    }

    /// The origin failed before its response began: the client gets
    /// `status`; after, the client's response is cut short.
    fn origin_failed(&mut self, conns: &mut Connections<'_>, id: ConnId, status: u16, why: &str) {
        let Some(origin) = self.origin(id) else {
            return;
        };
        match origin.state {
            OriginState::Head | OriginState::Tunnel => {
                origin.state = OriginState::Done;
                let client = origin.client;
                let line = origin.line.clone();
                if let Some(timer) = origin.timer.take() {
                    conns.reactor().cancel(timer);
                }
                let fill = origin.fill.take();
                let _ = conns.abort(id);
                if let Some((key, stored)) = fill {
                    self.abandon(conns, &key, &stored);
                }
                if self.client(client).is_some() {
                    self.answer(conns, client, status, why, &line);
                }
            }
            OriginState::Body { .. } => {
                warn!("{id}: {why}");
                self.body_failed(conns, id);
            }
            OriginState::Done => {}
        }
    }

    /// A response body broke off: the client cannot be told in-band, so
    /// its connection is cut (it sees a short body, not a whole one).
    fn body_failed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let Some(origin) = self.origin(id) else {
            return;
        };
        origin.state = OriginState::Done;
        let client = origin.client;
        let fill = origin.fill.take();
        let _ = conns.abort(id);
        let _ = conns.abort(client);
        if let Some((key, stored)) = fill {
            self.abandon(conns, &key, &stored);
        }
    }

    fn origin_timed_out(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let timeout = self.settings.origin_timeout;
        let Some(origin) = self.origin(id) else {
            return;
        };
        origin.timer = None;
        if matches!(origin.state, OriginState::Head) {
            let why = format!("no response from the origin within {timeout:?}");
            self.origin_failed(conns, id, 504, &why);
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
