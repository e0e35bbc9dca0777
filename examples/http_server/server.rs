//! The connection handler: reading requests (pipelined, one after
//! another), routing them, and answering each in order.
//!
//! A connection is in one of three phases: waiting for a request head,
//! reading a request body (`POST /echo`), or streaming a file. While a file
//! streams, reading is paused, so pipelined requests wait in the input
//! buffer and are answered in order when it has gone; the next piece of
//! the file is read from disk only when the last one has been written
//! (`on_drained`), so a slow client never holds more than one piece.

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use reactor::http::{self, BodyDecoder, Request};
use reactor::service::{CloseReason, ConnId, Connections, Handler, Origin};

use crate::files::{self, Found, RangeAsk, Resource, Site};
use crate::metrics;
use crate::reply::{Exchange, Replies, Reply};

/// A file piece read from disk at a time.
const PIECE: usize = 64 * 1024;
/// Queued output a streaming response keeps topped up to: enough to keep
/// the socket busy between two `on_drained` calls, and below the
/// connection layer's high-water mark.
const STREAM_AHEAD: usize = 192 * 1024;
/// Bodies up to this size are read from disk and sent with the head.
const SEND_WHOLE: u64 = 256 * 1024;
/// Most header fields a request may have (more: 431).
const MAX_FIELDS: usize = 64;

/// The server's settings, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub limits: http::Limits,
    pub max_body: u64,
    /// Request bodies held in memory at once, over all connections.
    pub max_bodies_held: usize,
    /// After `body_grace`, a body must have come at this many bytes a
    /// second on average, or it gets a 408 (slowloris, for bodies).
    pub min_body_rate: u64,
    pub body_grace: Duration,
    pub metrics_path: Option<String>,
}

/// The HTTP server: one per process, for every connection.
pub struct HttpServer {
    site: Site,
    settings: Settings,
    /// Bytes of request bodies held now, over all connections.
    bodies_held: usize,
    /// Each open connection's phase, at its id's index.
    slots: Vec<Option<Slot>>,
    replies: Replies,
    piece: Vec<u8>,
}

struct Slot {
    id: ConnId,
    phase: Phase,
}

enum Phase {
    Head,
    Body(Box<Upload>),
    Sending(Box<Stream>),
}

/// A `POST /echo` body being read.
struct Upload {
    decoder: BodyDecoder,
    exchange: Exchange,
    query: String,
    body: Vec<u8>,
    /// When its head was read, for the minimum rate.
    started: Instant,
}

/// A file being streamed: the bytes `at..end` are still to be queued.
struct Stream {
    file: File,
    at: u64,
    end: u64,
    keep_alive: bool,
}

/// What a request left the connection doing.
enum Next {
    /// Read the next request.
    Request,
    /// A response streams: stop reading until it is done.
    Pause,
    /// The connection is closing: ignore the rest.
    Stop,
}

/// Where a request goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Files,
    Echo,
    Metrics,
}

impl HttpServer {
    pub fn new(site: Site, settings: Settings) -> HttpServer {
        HttpServer {
            site,
            settings,
            bodies_held: 0,
            slots: Vec::new(),
            replies: Replies::default(),
            piece: vec![0; PIECE],
        }
    }

    fn slot(&mut self, id: ConnId) -> Option<&mut Slot> {
        self.slots
            .get_mut(id.index())
            .and_then(Option::as_mut)
            .filter(|slot| slot.id == id)
    }

    fn set_phase(&mut self, id: ConnId, phase: Phase) {
        if let Some(slot) = self.slot(id) {
            slot.phase = phase;
        }
    }

    /// Answers one request whose head has been read.
    fn request(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        request: &Request<'_, '_>,
    ) -> Next {
        let exchange = Exchange {
            head_only: request.method == "HEAD",
            keep_alive: request.keep_alive,
            http10: request.minor == 0,
            request_line: request_line(request),
        };
        let (path, query) = http::split_target(request.target);
        let relative = match http::decode_path(path) {
            Ok(relative) => relative,
            Err(error) => {
                self.replies.refuse(conns, id, exchange, &error);
                return Next::Stop;
            }
        };
        let route = if self.settings.metrics_path.as_deref() == Some(path) {
            Route::Metrics
        } else if path == "/echo" {
            Route::Echo
        } else {
            Route::Files
        };
        let allowed: &[&str] = match route {
            Route::Echo => &["POST"],
            Route::Files | Route::Metrics => &["GET", "HEAD"],
        };
        if !allowed.contains(&request.method) {
            let known = [
                "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
            ];
            let status = if known.contains(&request.method) {
                405
            } else {
                501
            };
            let fields = format!("Allow: {}\r\n", allowed.join(", "));
            let body = format!("{} {}\n", status, http::reason(status));
            // A body we will not read makes the framing unknown: close.
            let exchange = Exchange {
                keep_alive: exchange.keep_alive && request.framing.is_empty(),
                ..exchange
            };
            let reply = Reply {
                fields: &fields,
                ..Reply::text(status, body.as_bytes())
            };
            return self.send(conns, id, &exchange, reply);
        }
        if route == Route::Echo {
            return self.start_echo(conns, id, request, exchange, query.unwrap_or_default());
        }
        if !request.framing.is_empty() {
            let error = http::Error::new(400, "a body on a GET or HEAD");
            self.replies.refuse(conns, id, exchange, &error);
            return Next::Stop;
        }
        match route {
            Route::Metrics => {
                let text = metrics::render(conns, &self.replies.counts);
                let reply = Reply {
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    ..Reply::text(200, text.as_bytes())
                };
                self.send(conns, id, &exchange, reply)
            }
            _ => self.serve_file(conns, id, request, exchange, &relative),
        }
    }

    fn send(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        exchange: &Exchange,
        reply: Reply<'_>,
    ) -> Next {
        self.replies.send(conns, id, exchange, reply);
        if exchange.keep_alive {
            Next::Request
        } else {
            Next::Stop
        }
    }

    /// `POST /echo`: answered with the query and the body as JSON, once
    /// the body is in.
    fn start_echo(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        request: &Request<'_, '_>,
        exchange: Exchange,
        query: &str,
    ) -> Next {
        let decoder = match BodyDecoder::new(request.framing, self.settings.max_body) {
            Ok(decoder) => decoder,
            Err(error) => {
                self.replies.refuse(conns, id, exchange, &error);
                return Next::Stop;
            }
        };
        let upload = Upload {
            decoder,
            exchange,
            query: query.to_string(),
            body: Vec::new(),
            started: Instant::now(),
        };
        if upload.decoder.is_done() {
            return self.answer_echo(conns, id, upload);
        }
        if request.expects_continue {
            // curl waits for this before a large POST; the limits were
            // checked above, so the client may go ahead.
            let _ = conns.send(id, b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.set_phase(id, Phase::Body(Box::new(upload)));
        Next::Request
    }

    /// Reads the front of `data` into a body; answers once it is complete.
    /// Returns the bytes taken (all of `data` while the body goes on).
    fn read_body(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        mut upload: Box<Upload>,
        data: &[u8],
    ) -> (usize, Next) {
        let before = upload.body.len();
        let Upload { decoder, body, .. } = &mut *upload;
        let progress = decoder.feed(data, |piece| body.extend_from_slice(piece));
        self.bodies_held += upload.body.len() - before;
        let refusal = match &progress {
            Err(error) => Some(error.clone()),
            Ok(_) if self.bodies_held > self.settings.max_bodies_held => {
                Some(http::Error::new(503, "too many request bodies in memory"))
            }
            Ok(progress) if !progress.done && self.too_slow(&upload) => {
                Some(http::Error::new(408, "request body too slow"))
            }
            Ok(_) => None,
        };
        if let Some(error) = refusal {
            self.bodies_held -= upload.body.len();
            self.replies.refuse(conns, id, upload.exchange, &error);
            return (data.len(), Next::Stop);
        }
        match progress {
            Ok(progress) if progress.done => {
                (progress.consumed, self.answer_echo(conns, id, *upload))
            }
            _ => {
                self.set_phase(id, Phase::Body(upload));
                (data.len(), Next::Request)
            }
        }
    }

    /// Whether a body, after its grace period, has come slower on average
    /// than the minimum rate (Apache's `mod_reqtimeout` `MinRate`).
    fn too_slow(&self, upload: &Upload) -> bool {
        let elapsed = upload.started.elapsed();
        elapsed > self.settings.body_grace
            && (upload.decoder.received() as f64)
                < self.settings.min_body_rate as f64 * elapsed.as_secs_f64()
    }

    fn answer_echo(&mut self, conns: &mut Connections<'_>, id: ConnId, upload: Upload) -> Next {
        self.bodies_held -= upload.body.len();
        // Escaping can make the answer up to six times the body (a control
        // byte is `\u0001`): refuse one that could not be queued, before
        // building it.
        let worst =
            json_escaped_len(upload.body.as_slice()) + json_escaped_len(upload.query.as_bytes());
        if worst > conns.config().get_output_limit() / 2 {
            let error = http::Error::new(413, "body too large to echo as JSON");
            self.replies.refuse(conns, id, upload.exchange, &error);
            return Next::Stop;
        }
        let mut query = serde_json::Map::new();
        for (key, value) in http::parse_query(&upload.query) {
            match query.get_mut(&key) {
                // A repeated key gathers its values in an array.
                Some(serde_json::Value::Array(values)) => values.push(value.into()),
                Some(first) => *first = serde_json::Value::Array(vec![first.take(), value.into()]),
                None => {
                    query.insert(key, value.into());
                }
            }
        }
        let body = String::from_utf8_lossy(&upload.body);
        let json = serde_json::json!({ "query": query, "body": body }).to_string() + "\n";
        let reply = Reply {
            content_type: "application/json",
            ..Reply::text(200, json.as_bytes())
        };
        self.send(conns, id, &upload.exchange, reply)
    }

    fn serve_file(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        request: &Request<'_, '_>,
        exchange: Exchange,
        relative: &str,
    ) -> Next {
        let (path, query) = http::split_target(request.target);
        let resource = match self.site.open(relative, path.ends_with('/')) {
            Ok(Found::File(resource)) => resource,
            Ok(Found::Redirect) => {
                // The path as the client sent it (still percent-encoded),
                // with its slash, and the query kept.
                let query = query.map(|q| format!("?{q}")).unwrap_or_default();
                let fields = format!("Location: {path}/{query}\r\n");
                let reply = Reply {
                    fields: &fields,
                    ..Reply::text(301, b"301 Moved Permanently\n")
                };
                return self.send(conns, id, &exchange, reply);
            }
            Err(status) => {
                let body = format!("{status} {}\n", http::reason(status));
                return self.send(conns, id, &exchange, Reply::text(status, body.as_bytes()));
            }
        };
        let (len, content_type, modified, last_modified) = match &resource {
            Resource::Cached(file) => (
                file.body.len() as u64,
                file.content_type,
                file.modified,
                file.last_modified.as_str(),
            ),
            Resource::Disk {
                len,
                content_type,
                modified,
                last_modified,
                ..
            } => (*len, *content_type, *modified, last_modified.as_str()),
        };
        if files::not_modified(request.header("if-modified-since"), modified) {
            let fields = format!("Last-Modified: {last_modified}\r\n");
            let reply = Reply {
                fields: &fields,
                content_type: "",
                ..Reply::text(304, b"")
            };
            return self.send(conns, id, &exchange, reply);
        }
        // A Range is honoured unless If-Range names another version.
        let if_range_ok = request
            .header("if-range")
            .is_none_or(|value| value == last_modified.as_bytes());
        let ask = if if_range_ok {
            files::range(request.header("range"), len)
        } else {
            RangeAsk::Whole
        };
        let (status, start, end) = match ask {
            RangeAsk::Whole => (200, 0, len),
            RangeAsk::Part { start, end } => (206, start, end),
            RangeAsk::Unsatisfiable => {
                let fields = format!("Content-Range: bytes */{len}\r\n");
                let reply = Reply {
                    fields: &fields,
                    ..Reply::text(416, b"416 Range Not Satisfiable\n")
                };
                return self.send(conns, id, &exchange, reply);
            }
        };
        // (The cached file's own fields outlive `resource`, which moves below.)
        let cached = match &resource {
            Resource::Cached(file) => Some(Rc::clone(file)),
            Resource::Disk { .. } => None,
        };
        let fields = match (&cached, status) {
            (Some(file), 200) => Cow::Borrowed(file.fields.as_str()),
            (_, 200) => Cow::Owned(files::file_fields(last_modified)),
            _ => Cow::Owned(format!(
                "{}Content-Range: bytes {start}-{}/{len}\r\n",
                files::file_fields(last_modified),
                end - 1
            )),
        };
        let reply = Reply {
            status,
            content_type,
            fields: &fields,
            length: end - start,
            body: &[],
            streamed: false,
        };
        match resource {
            Resource::Cached(file) => {
                let body = &file.body[start as usize..end as usize];
                self.send(conns, id, &exchange, Reply { body, ..reply })
            }
            Resource::Disk { .. } if exchange.head_only => self.send(conns, id, &exchange, reply),
            Resource::Disk { file, .. } if end - start <= SEND_WHOLE => {
                let mut body = vec![0; (end - start) as usize];
                if let Err(e) = file.read_exact_at(&mut body, start) {
                    log::error!("{id}: reading {relative}: {e}");
                    let reply = Reply::text(500, b"500 Internal Server Error\n");
                    let exchange = Exchange {
                        keep_alive: false,
                        ..exchange
                    };
                    return self.send(conns, id, &exchange, reply);
                }
                self.send(
                    conns,
                    id,
                    &exchange,
                    Reply {
                        body: &body,
                        ..reply
                    },
                )
            }
            Resource::Disk { file, .. } => {
                let stream = Stream {
                    file,
                    at: start,
                    end,
                    keep_alive: exchange.keep_alive,
                };
                self.replies.send(
                    conns,
                    id,
                    &exchange,
                    Reply {
                        streamed: true,
                        ..reply
                    },
                );
                self.stream(conns, id, Box::new(stream))
            }
        }
    }

    /// Queues file pieces until the output is topped up or the file is
    /// done; a stream not done waits for `on_drained`.
    fn stream(&mut self, conns: &mut Connections<'_>, id: ConnId, mut stream: Box<Stream>) -> Next {
        while stream.at < stream.end && conns.output_len(id).unwrap_or(usize::MAX) < STREAM_AHEAD {
            let want = (stream.end - stream.at).min(PIECE as u64) as usize;
            match stream.file.read_at(&mut self.piece[..want], stream.at) {
                Ok(0) => {
                    // The file shrank under us: the promised length cannot
                    // be kept, so the client must see the connection fail.
                    log::error!("{id}: file shrank while being sent");
                    let _ = conns.abort(id);
                    return Next::Stop;
                }
                Ok(n) => {
                    stream.at += n as u64;
                    if conns.send(id, &self.piece[..n]).is_err() {
                        return Next::Stop;
                    }
                }
                Err(e) => {
                    log::error!("{id}: reading a file: {e}");
                    let _ = conns.abort(id);
                    return Next::Stop;
                }
            }
        }
        if stream.at < stream.end {
            let _ = conns.pause_reading(id);
            self.set_phase(id, Phase::Sending(stream));
            return Next::Pause;
        }
        self.set_phase(id, Phase::Head);
        if stream.keep_alive {
            let _ = conns.resume_reading(id);
            Next::Request
        } else {
            let _ = conns.close(id);
            Next::Stop
        }
    }
}

/// The most bytes `bytes` can take as the inside of a JSON string: a
/// control byte is written `\u00XX`, `"` and `\\` get a backslash, and
/// a byte that is not UTF-8 becomes U+FFFD (three bytes).
fn json_escaped_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .map(|&b| match b {
            0..=0x1f => 6,
            b'"' | b'\\' => 2,
            0x80.. => 3,
            _ => 1,
        })
        .sum()
}

/// `METHOD target` for the access log, built only when it is logged.
fn request_line(request: &Request<'_, '_>) -> String {
    if log::log_enabled!(target: "access", log::Level::Info) {
        format!("{} {}", request.method, request.target)
    } else {
        String::new()
    }
}

impl Handler for HttpServer {
    fn on_open(&mut self, _: &mut Connections<'_>, id: ConnId, _: Origin) {
        if self.slots.len() <= id.index() {
            self.slots.resize_with(id.index() + 1, || None);
        }
        self.slots[id.index()] = Some(Slot {
            id,
            phase: Phase::Head,
        });
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let limits = self.settings.limits;
        let high_water = conns.config().get_high_water();
        let mut at = 0;
        while at < data.len() {
            // A client that pipelines faster than it reads: once a
            // high-water mark of answers is queued, the rest of its requests
            // wait unread (the service pauses reading and hands them back
            // when the queue drains), instead of their answers piling up.
            if conns.output_len(id).unwrap_or(0) >= high_water {
                break;
            }
            let Some(slot) = self.slot(id) else {
                return data.len();
            };
            // The phase is taken out and put back unless it changes.
            match std::mem::replace(&mut slot.phase, Phase::Head) {
                sending @ Phase::Sending(_) => {
                    slot.phase = sending;
                    break;
                }
                Phase::Body(upload) => {
                    let (consumed, next) = self.read_body(conns, id, upload, &data[at..]);
                    at += consumed;
                    if let Next::Stop = next {
                        return data.len();
                    }
                }
                Phase::Head => {
                    let mut fields = [http::EMPTY_HEADER; MAX_FIELDS];
                    match http::parse_request(&data[at..], &mut fields, &limits) {
                        Ok(None) => break,
                        Err(error) => {
                            self.replies
                                .refuse(conns, id, Exchange::unreadable(), &error);
                            return data.len();
                        }
                        Ok(Some(request)) => {
                            at += request.head_len;
                            match self.request(conns, id, &request) {
                                Next::Request => {}
                                Next::Pause => return at,
                                Next::Stop => return data.len(),
                            }
                        }
                    }
                }
            }
        }
        at
    }

    fn on_drained(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        let Some(slot) = self.slot(id) else { return };
        if matches!(slot.phase, Phase::Sending(_)) {
            if let Phase::Sending(stream) = std::mem::replace(&mut slot.phase, Phase::Head) {
                self.stream(conns, id, stream);
            }
        }
    }

    fn on_read_closed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        // A client may send its request and shut down its side: a file
        // still streaming to it is finished first.
        match self.slot(id).map(|slot| &mut slot.phase) {
            Some(Phase::Sending(stream)) => stream.keep_alive = false,
            _ => {
                let _ = conns.close(id);
            }
        }
    }

    fn on_input_timeout(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        // The request head did not arrive within --header-timeout.
        let reply = Reply::text(408, b"408 Request Timeout\n");
        self.replies.send(conns, id, &Exchange::unreadable(), reply);
    }

    fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        log::debug!("{id} closed: {reason}");
        if let Some(slot) = self.slots.get_mut(id.index()) {
            if slot.as_ref().is_some_and(|s| s.id == id) {
                if let Some(Slot {
                    phase: Phase::Body(upload),
                    ..
                }) = slot.take()
                {
                    self.bodies_held -= upload.body.len();
                }
            }
        }
    }
}
