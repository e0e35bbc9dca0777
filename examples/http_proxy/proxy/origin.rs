//! The origin side of an exchange: reading the response head and body,
//! storing what may be cached, and the origin's failures and timeouts.

use super::*;

impl Proxy {
    /// Reads what the origin's state allows from the front of `data` (an
    /// interim head, then the final one, then its body, may all be here).
    pub(super) fn origin_data(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        data: &[u8],
    ) -> usize {
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

    pub(super) fn response_head(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        data: &[u8],
    ) -> usize {
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

    pub(super) fn response_body(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        data: &[u8],
    ) -> usize {
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
    pub(super) fn response_done(&mut self, conns: &mut Connections<'_>, id: ConnId) {
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
    pub(super) fn origin_failed(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        status: u16,
        why: &str,
    ) {
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
    pub(super) fn body_failed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
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

    pub(super) fn origin_timed_out(&mut self, conns: &mut Connections<'_>, id: ConnId) {
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
