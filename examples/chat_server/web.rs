//! The browser's way in: the `--web-addr` listener speaks HTTP/1.1 until a
//! request for `/ws` upgrades its connection to a WebSocket, and from then
//! on it carries the NDJSON protocol, one JSON object per text message.
//!
//! The HTTP side is deliberately small: the page (`GET /`, its script and
//! its style sheet, all compiled into the binary), the upgrade, and 404 for
//! everything else. Requests are framed by the crate's HTTP module and the
//! upgrade is checked by `reactor::codec::websocket`; this file decides
//! what the chat answers.
//!
//! A WebSocket connection is then a chat user like any other (see
//! `chat.rs`); what is particular to it lives in [`WsConn`]: the frame
//! decoder, and the ping clock that finds browsers that went away without
//! closing (a laptop lid shut: no FIN ever comes).

use std::time::{Duration, Instant};

use log::{debug, info};
use reactor::codec::websocket::{self, Decoder, Role};
use reactor::http;
use reactor::service::{ConnId, Connections};

/// The page: markup, script and style, served from the binary.
const INDEX_HTML: &str = include_str!("web/index.html");
const CHAT_JS: &str = include_str!("web/chat.js");
const CHAT_CSS: &str = include_str!("web/chat.css");

/// Sent with every response. The page runs only its own script and style
/// (no inline script, so an injected `<script>` could not run even if a
/// name slipped through as HTML, which `textContent` already prevents), and
/// may connect only to where it came from (`'self'` covers `ws:`/`wss:` to
/// the same host and port).
const SECURITY_FIELDS: &str = "Content-Security-Policy: default-src 'none'; \
script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n\
X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n";

/// How the web listener is run (`--web-origin`, `--ws-ping`,
/// `--ws-pong-timeout`, `--max-line`).
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// The `Origin` values a WebSocket handshake may carry, lowercase
    /// (`http://127.0.0.1:8088`). A handshake without `Origin` comes from
    /// a program, not a page (browsers always send it), and is accepted.
    pub origins: Vec<String>,
    /// Ping a WebSocket user silent this long (None: never).
    pub ping_after: Option<Duration>,
    /// Close a WebSocket user whose pong has not come this long after the
    /// ping.
    pub pong_timeout: Duration,
    /// The largest message accepted (the chat's `--max-line`): a larger
    /// one closes the connection with 1009.
    pub max_message: usize,
}

impl WebConfig {
    /// The default origins for a listener on `addr`: its own address, and
    /// `localhost` on the same port, in the scheme the listener serves.
    pub fn default_origins(addr: std::net::SocketAddr, tls: bool) -> Vec<String> {
        let scheme = if tls { "https" } else { "http" };
        let port = addr.port();
        let host = match addr {
            std::net::SocketAddr::V4(a) => a.ip().to_string(),
            std::net::SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        vec![
            format!("{scheme}://{host}:{port}"),
            format!("{scheme}://localhost:{port}"),
        ]
    }

    /// How often the ping clock is looked at: a quarter of the shorter
    /// delay, between 10 ms and 1 s. One sweep over the WebSocket users
    /// per period costs less than a timer per user re-armed on every
    /// message.
    pub fn sweep_period(&self) -> Option<Duration> {
        let ping = self.ping_after?;
        let shortest = ping.min(self.pong_timeout);
        Some((shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)))
    }
}

/// A connection on the web listener.
#[derive(Debug)]
pub enum WebConn {
    /// Still HTTP: page requests, or the upgrade not yet asked for.
    Http,
    /// A WebSocket (boxed: its decoder holds buffers a page request does
    /// not need).
    Ws(Box<WsConn>),
}

/// A WebSocket user's transport state.
#[derive(Debug)]
pub struct WsConn {
    /// Whose state this is (the ping clock walks users, not connections).
    pub id: ConnId,
    pub decoder: Decoder,
    /// When the last bytes came from this client.
    pub last_heard: Instant,
    /// When the unanswered ping went out, if one is out.
    pub ping_sent: Option<Instant>,
    /// A close frame has been sent: nothing more goes out.
    pub closing: bool,
}

impl WsConn {
    fn new(id: ConnId, max_message: usize, now: Instant) -> WsConn {
        let limits = websocket::Limits { max_message };
        WsConn {
            id,
            decoder: Decoder::new(Role::Server, limits),
            last_heard: now,
            ping_sent: None,
            closing: false,
        }
    }

    /// Sends a close frame with `code` (once) and closes the connection
    /// once everything before it has gone out.
    pub fn close(&mut self, conns: &mut Connections<'_>, id: ConnId, code: u16, reason: &str) {
        if !self.closing {
            self.closing = true;
            let mut frame = Vec::with_capacity(4 + reason.len());
            websocket::write_close(&mut frame, code, reason, None);
            let _ = conns.send(id, &frame);
        }
        let _ = conns.close(id);
    }

    /// What the ping clock says at `now`: ping, close, or nothing.
    pub fn ping_due(&self, config: &WebConfig, now: Instant) -> PingDue {
        let Some(after) = config.ping_after else {
            return PingDue::Nothing;
        };
        match self.ping_sent {
            Some(sent) if now.duration_since(sent) >= config.pong_timeout => PingDue::Close,
            Some(_) => PingDue::Nothing,
            None if now.duration_since(self.last_heard) >= after => PingDue::Ping,
            None => PingDue::Nothing,
        }
    }
}

/// What [`WsConn::ping_due`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum PingDue {
    Nothing,
    Ping,
    Close,
}

/// What [`serve_http`] did with a web connection's input.
#[derive(Debug)]
pub enum HttpOutcome {
    /// Consumed this much; the connection is still HTTP (or closing).
    Served(usize),
    /// Consumed this much, the last request being an accepted upgrade: the
    /// rest of the input is WebSocket frames.
    Upgraded(usize, Box<WsConn>),
}

/// Answers the HTTP requests in `data` (pipelined ones included), until an
/// upgrade, an error or the end of the complete requests.
pub fn serve_http(
    conns: &mut Connections<'_>,
    id: ConnId,
    data: &[u8],
    config: &WebConfig,
) -> HttpOutcome {
    let limits = http::Limits {
        max_head: 8 * 1024,
        max_target: 2 * 1024,
    };
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        let mut fields = [http::EMPTY_HEADER; 32];
        let request = match http::parse_request(&data[pos..], &mut fields, &limits) {
            Ok(Some(request)) => request,
            Ok(None) => break,
            Err(e) => {
                debug!("{id}: bad request: {e}");
                write_response(
                    &mut out,
                    e.status(),
                    "text/plain",
                    e.why().as_bytes(),
                    false,
                );
                let _ = conns.send(id, &out);
                let _ = conns.close(id);
                return HttpOutcome::Served(data.len());
            }
        };
        pos += request.head_len;
        let keep_alive = request.keep_alive && request.framing.is_empty();
        if !request.framing.is_empty() {
            // Nothing here takes a body, and skipping one unread would
            // leave the framing to guesswork: refuse and close.
            let body = b"no request bodies here";
            write_response(&mut out, 400, "text/plain", body, false);
            let _ = conns.send(id, &out);
            let _ = conns.close(id);
            return HttpOutcome::Served(data.len());
        }
        let head = request.method == "HEAD";
        let get = head || request.method == "GET";
        let path = request.target.split('?').next().unwrap_or_default();
        let page = match path {
            "/" | "/index.html" => Some(("text/html; charset=utf-8", INDEX_HTML)),
            "/chat.js" => Some(("text/javascript; charset=utf-8", CHAT_JS)),
            "/chat.css" => Some(("text/css; charset=utf-8", CHAT_CSS)),
            _ => None,
        };
        match (get, path, page) {
            (true, "/ws", _) if !head => match upgrade(&request, config) {
                Ok(key) => {
                    websocket::write_accept(&mut out, &key);
                    let _ = conns.send(id, &out);
                    info!("{id}: WebSocket open");
                    let conn = Box::new(WsConn::new(id, config.max_message, conns.reactor().now()));
                    return HttpOutcome::Upgraded(pos, conn);
                }
                Err(refusal) => {
                    let _ = conns.send(id, &refusal);
                    let _ = conns.close(id);
                    return HttpOutcome::Served(data.len());
                }
            },
            (true, _, Some((kind, body))) => {
                debug!("{id}: {} {path} 200", request.method);
                write_head(&mut out, 200, kind, body.len(), keep_alive);
                if !head {
                    out.extend_from_slice(body.as_bytes());
                }
            }
            _ => {
                debug!("{id}: {} {path} 404", request.method);
                let body = b"not found\n";
                write_head(&mut out, 404, "text/plain", body.len(), keep_alive);
                if !head {
                    out.extend_from_slice(body);
                }
            }
        }
        if !keep_alive {
            let _ = conns.send(id, &out);
            let _ = conns.close(id);
            return HttpOutcome::Served(data.len());
        }
    }
    if !out.is_empty() {
        let _ = conns.send(id, &out);
    }
    // The next request (or the rest of this one) must come within the
    // unfinished-input timeout, or the connection is closed: an idle
    // keep-alive connection does not hold a slot for ever.
    let _ = conns.expect_message(id);
    HttpOutcome::Served(pos)
}

/// Checks a `GET /ws`: the handshake, then the origin. The error is the
/// whole refusal, ready to send.
fn upgrade(request: &http::Request<'_, '_>, config: &WebConfig) -> Result<String, Vec<u8>> {
    let mut refusal = Vec::new();
    let upgrade = match websocket::check_upgrade(request) {
        Ok(upgrade) => upgrade,
        Err(e) => {
            debug!("WebSocket handshake refused: {e}");
            websocket::write_refusal(&mut refusal, &e);
            return Err(refusal);
        }
    };
    if let Some(origin) = upgrade.origin {
        let allowed = config
            .origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin));
        if !allowed {
            info!("WebSocket from origin {origin} refused (see --web-origin)");
            let body = b"origin not allowed\n";
            write_response(&mut refusal, 403, "text/plain", body, false);
            return Err(refusal);
        }
    }
    Ok(upgrade.key.to_string())
}

/// A small response: status, security fields, length, body.
fn write_response(out: &mut Vec<u8>, status: u16, kind: &str, body: &[u8], keep_alive: bool) {
    write_head(out, status, kind, body.len(), keep_alive);
    out.extend_from_slice(body);
}

fn write_head(out: &mut Vec<u8>, status: u16, kind: &str, length: usize, keep_alive: bool) {
    http::write_status_line(out, status);
    out.extend_from_slice(b"Server: reactor chat\r\nContent-Type: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    http::write_decimal(out, length as u64);
    out.extend_from_slice(b"\r\nCache-Control: no-cache\r\n");
    out.extend_from_slice(SECURITY_FIELDS.as_bytes());
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
