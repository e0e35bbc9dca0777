//! The client side of an exchange: reading requests, answering from the
//! cache or starting a fetch, and feeding the answer back with backpressure.

use super::*;

impl Proxy {
    /// Reads what the client's state allows from the front of `data`.
    pub(super) fn client_data(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        data: &[u8],
    ) -> usize {
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
    pub(super) fn request(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        data: &[u8],
    ) -> usize {
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
    pub(super) fn connect_target(
        &self,
        target: &str,
    ) -> Result<(String, u16), (u16, &'static str)> {
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
    pub(super) fn start(
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
    pub(super) fn resolved(&mut self, conns: &mut Connections<'_>, id: ConnId, resolved: Resolved) {
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
    pub(super) fn connect(
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
    pub(super) fn request_body(
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
    pub(super) fn serve(&mut self, conns: &mut Connections<'_>, id: ConnId, stored: Shared) {
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
    pub(super) fn feed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
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
    pub(super) fn exchange_done(&mut self, conns: &mut Connections<'_>, id: ConnId) {
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
    pub(super) fn answer(
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
    pub(super) fn fail(
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
    pub(super) fn abandon(&mut self, conns: &mut Connections<'_>, key: &str, stored: &Shared) {
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
    pub(super) fn hold_back(&mut self, conns: &mut Connections<'_>, from: ConnId, to: ConnId) {
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
    pub(super) fn release(&mut self, conns: &mut Connections<'_>, peer: ConnId) {
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
}
