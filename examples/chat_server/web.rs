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

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info};
use reactor::codec::websocket::{self, Decoder, Role};
use reactor::http;
use reactor::service::{ConnId, Connections};

use crate::text::Loggable;

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
    /// (`http://127.0.0.1:8088`), or `*` for any. A handshake without
    /// `Origin` comes from a program, not a page (browsers always send
    /// it), and is accepted.
    pub origins: Vec<String>,
    /// Also allow an `Origin` naming the very host and port the request
    /// was sent to (its `Host`): the default for a listener on `0.0.0.0`
    /// or `[::]`, whose own address no browser can name.
    pub same_host: bool,
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
    /// The default origins for a listener on `addr`: its own address and
    /// `localhost` on the same port, in the scheme the listener serves;
    /// for an unspecified address, the loopback addresses instead (and
    /// [`same_host`](WebConfig::same_host) should be set).
    pub fn default_origins(addr: SocketAddr, tls: bool) -> Vec<String> {
        let scheme = if tls { "https" } else { "http" };
        let port = addr.port();
        let hosts = if addr.ip().is_unspecified() {
            vec!["127.0.0.1".to_string(), "[::1]".to_string()]
        } else {
            match addr {
                SocketAddr::V4(a) => vec![a.ip().to_string()],
                SocketAddr::V6(a) => vec![format!("[{}]", a.ip())],
            }
        };
        hosts
            .into_iter()
            .chain(["localhost".to_string()])
            .map(|host| format!("{scheme}://{host}:{port}"))
            .collect()
    }

    /// Whether a handshake from a page at `origin`, sent to `host` (the
    /// request's `Host`), may go on.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let listed = self
            .origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin));
        let same_host = self.same_host
            && host.is_some_and(|host| {
                let authority = origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"));
                authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
            });
        listed || same_host
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
/// upgrade, an error or the end of the complete requests. The answers of
/// one call go out in one send, in order, whatever ends the call.
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
    let closing = loop {
        let mut fields = [http::EMPTY_HEADER; 32];
        let request = match http::parse_request(&data[pos..], &mut fields, &limits) {
            Ok(Some(request)) => request,
            Ok(None) => break false,
            Err(e) => {
                debug!("{id}: bad request: {e}");
                let why = e.why().as_bytes();
                write_response(&mut out, e.status(), "", why, false);
                break true;
            }
        };
        pos += request.head_len;
        if !request.framing.is_empty() {
            // Nothing here takes a body, and skipping one unread would
            // leave the framing to guesswork: refuse and close.
            write_response(&mut out, 400, "", b"no request bodies here\n", false);
            break true;
        }
        let keep_alive = request.keep_alive;
        let head = request.method == "HEAD";
        let get = head || request.method == "GET";
        let path = target_path(request.target);
        let page = match path {
            "/" | "/index.html" => Some(("text/html; charset=utf-8", INDEX_HTML)),
            "/chat.js" => Some(("text/javascript; charset=utf-8", CHAT_JS)),
            "/chat.css" => Some(("text/css; charset=utf-8", CHAT_CSS)),
            _ => None,
        };
        match (get, path, page) {
            (true, "/ws", _) if !head => {
                let Some(key) = upgrade(&request, config, &mut out) else {
                    break true;
                };
                websocket::write_accept(&mut out, &key);
                let _ = conns.send(id, &out);
                info!("{id}: WebSocket open");
                let now = conns.reactor().now();
                return HttpOutcome::Upgraded(
                    pos,
                    Box::new(WsConn::new(id, config.max_message, now)),
                );
            }
            (true, _, Some((kind, body))) => {
                debug!("{id}: {} {path} 200", request.method);
                write_head(&mut out, 200, kind, body.len(), keep_alive, "");
                if !head {
                    out.extend_from_slice(body.as_bytes());
                }
            }
            _ => {
                debug!("{id}: {} {} 404", request.method, Loggable(path));
                let body = b"not found\n";
                write_head(&mut out, 404, "", body.len(), keep_alive, "");
                if !head {
                    out.extend_from_slice(body);
                }
            }
        }
        if !keep_alive {
            break true;
        }
    };
    if !out.is_empty() {
        let _ = conns.send(id, &out);
    }
    if closing {
        let _ = conns.close(id);
        return HttpOutcome::Served(data.len());
    }
    // The next request (or the rest of this one) must come within the
    // unfinished-input timeout, or the connection is closed: an idle
    // keep-alive connection does not hold a slot for ever.
    let _ = conns.expect_message(id);
    HttpOutcome::Served(pos)
}

/// The path of a request target, in origin form (`/chat.js?v=2`) or in
/// absolute form (`http://host:8088/chat.js`, which servers must accept),
/// without its query.
fn target_path(target: &str) -> &str {
    let target = match target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        Some(rest) => rest.find('/').map_or("/", |slash| &rest[slash..]),
        None => target,
    };
    target.split('?').next().unwrap_or_default()
}

/// Checks a `GET /ws`: the handshake, then the origin. Returns the key to
/// accept, or writes the refusal (with the same fields as every other
/// answer) to `out`.
fn upgrade(
    request: &http::Request<'_, '_>,
    config: &WebConfig,
    out: &mut Vec<u8>,
) -> Option<String> {
    let upgrade = match websocket::check_upgrade(request) {
        Ok(upgrade) => upgrade,
        Err(e) => {
            debug!("WebSocket handshake refused: {e}");
            // A client speaking another version is told which we speak.
            let extra = if e.status == 426 {
                "Sec-WebSocket-Version: 13\r\n"
            } else {
                ""
            };
            let why = format!("{}\n", e.why);
            write_head(out, e.status, "", why.len(), false, extra);
            out.extend_from_slice(why.as_bytes());
            return None;
        }
    };
    if let Some(origin) = upgrade.origin {
        let host = request
            .header("host")
            .and_then(|h| std::str::from_utf8(h).ok());
        if !config.allows(origin, host) {
            info!(
                "WebSocket from origin {} refused (see --web-origin)",
                Loggable(origin)
            );
            write_response(
                out,
                403,
                "",
                b"origin not allowed (see --web-origin)\n",
                false,
            );
            return None;
        }
    }
    Some(upgrade.key.to_string())
}

/// A small response: status, the fields every answer has, length, body
/// (`kind` empty: plain text).
fn write_response(out: &mut Vec<u8>, status: u16, kind: &str, body: &[u8], keep_alive: bool) {
    write_head(out, status, kind, body.len(), keep_alive, "");
    out.extend_from_slice(body);
}

/// What a client over `--max-clients` is told before the close: an HTTP
/// answer, since whoever connects to this listener speaks HTTP.
pub fn full_response() -> Vec<u8> {
    let mut out = Vec::new();
    write_response(&mut out, 503, "", b"server full\n", false);
    out
}

/// A head: status line, the security fields, `extra` (whole field lines).
fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    kind: &str,
    length: usize,
    keep_alive: bool,
    extra: &str,
) {
    let kind = if kind.is_empty() {
        "text/plain; charset=utf-8"
    } else {
        kind
    };
    http::write_status_line(out, status);
    out.extend_from_slice(b"Server: reactor chat\r\nContent-Type: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    http::write_decimal(out, length as u64);
    out.extend_from_slice(b"\r\nCache-Control: no-cache\r\n");
    out.extend_from_slice(SECURITY_FIELDS.as_bytes());
    out.extend_from_slice(extra.as_bytes());
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
