//! The heads the proxy writes: the request it forwards to an origin, the
//! response it passes back, its own error answers, and how a body is
//! framed on the way to the client.
//!
//! Everything a head carries comes from the shared parser's view of the
//! message ([`reactor::http`]); only end-to-end fields are passed on
//! ([`end_to_end`]), and the framing fields are written anew for the next
//! hop, since a proxy frames every message itself.

use std::io::Write;
use std::time::SystemTime;

use reactor::http::{self, Framing, Header, end_to_end};
use reactor::service::{ConnId, Connections};

/// What the proxy adds to `Via` (RFC 9110 §7.6.3): the protocol of the hop
/// and a pseudonym instead of a host name.
pub const VIA: &str = "1.1 reactor-proxy";

/// The methods this proxy forwards, for the `Allow` of a 405.
pub const ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Appends `name: value\r\n`.
fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether a field is one the proxy writes itself, whatever the sender
/// said: the framing, the `Host` (taken from the absolute URL) and, on
/// responses, the cache's own `X-Cache`.
fn rewritten(name: &str) -> bool {
    ["content-length", "host", "x-cache"]
        .iter()
        .any(|own| own.eq_ignore_ascii_case(name))
}

/// The request head sent to the origin: origin-form target, the URL's
/// authority as `Host` (RFC 9112 §3.2.2: a proxy replaces a `Host` that
/// disagrees), the end-to-end fields, `Via`, the body's framing as the
/// client declared it (so its bytes are forwarded as they are), and
/// `Connection: close` (one origin connection per request).
pub fn request_head(
    method: &str,
    path: &str,
    authority: &str,
    fields: &[Header<'_>],
    framing: Framing,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let _ = write!(out, "{method} {path} HTTP/1.1\r\n");
    field(&mut out, "Host", authority.as_bytes());
    for f in end_to_end(fields).filter(|f| !rewritten(f.name)) {
        field(&mut out, f.name, f.value);
    }
    field(&mut out, "Via", VIA.as_bytes());
    match framing {
        Framing::Length(n) => field(&mut out, "Content-Length", n.to_string().as_bytes()),
        Framing::Chunked => field(&mut out, "Transfer-Encoding", b"chunked"),
        Framing::None | Framing::UntilClose => {}
    }
    field(&mut out, "Connection", b"close");
    out.extend_from_slice(b"\r\n");
    out
}

/// A response's status line and end-to-end fields with our `Via`: what is
/// the same for every client it goes to (the part a cache stores). The
/// framing, `Age`, `X-Cache` and `Connection` follow per client, through
/// [`finish_head`].
pub fn response_start(status: u16, reason: &str, fields: &[Header<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let reason = if reason.is_empty() {
        http::reason(status)
    } else {
        reason
    };
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    for f in end_to_end(fields).filter(|f| !rewritten(f.name)) {
        field(&mut out, f.name, f.value);
    }
    field(&mut out, "Via", VIA.as_bytes());
    out
}

/// Ends a head begun by [`response_start`] for one client: its `Age` (for
/// a stored response), `X-Cache`, the body's framing, and whether the
/// connection stays open.
pub fn finish_head(
    out: &mut Vec<u8>,
    age: Option<u64>,
    hit: bool,
    body: &BodyOut,
    keep_alive: bool,
) {
    if let Some(age) = age {
        field(out, "Age", age.to_string().as_bytes());
    }
    field(out, "X-Cache", if hit { b"HIT" } else { b"MISS" });
    match body {
        BodyOut::Length(n) | BodyOut::Bodiless(Some(n)) => {
            field(out, "Content-Length", n.to_string().as_bytes())
        }
        BodyOut::Chunked => field(out, "Transfer-Encoding", b"chunked"),
        BodyOut::Bodiless(None) | BodyOut::UntilClose => {}
    }
    if !keep_alive {
        field(out, "Connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

/// The proxy's own answer: a status, a one-line text body, and a close (an
/// error leaves the connection's framing in doubt, or the exchange is over).
pub fn error_response(status: u16, why: &str, allow: bool) -> Vec<u8> {
    let body = format!("{} {}: {why}\n", status, http::reason(status));
    let mut out = Vec::with_capacity(256 + body.len());
    http::write_status_line(&mut out, status);
    field(
        &mut out,
        "Date",
        http::format_date(SystemTime::now()).as_bytes(),
    );
    field(&mut out, "Content-Type", b"text/plain; charset=utf-8");
    field(
        &mut out,
        "Content-Length",
        body.len().to_string().as_bytes(),
    );
    if allow {
        field(&mut out, "Allow", ALLOW.as_bytes());
    }
    field(&mut out, "Via", VIA.as_bytes());
    field(&mut out, "Connection", b"close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// How a body is framed on the way to one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyOut {
    /// No body follows (a HEAD, a 204, a 304), with the length the origin
    /// declared for the representation, passed on as it is.
    Bodiless(Option<u64>),
    /// `Content-Length`: the payload as it is.
    Length(u64),
    /// Chunks: each piece of payload becomes one chunk (the origin's own
    /// chunk boundaries, extensions and trailers are not kept).
    Chunked,
    /// The payload as it is, ended by closing the connection (an HTTP/1.0
    /// client, with a body whose length is not known in advance).
    UntilClose,
}

impl BodyOut {
    /// The framing for a body the origin framed as `framing`, to a client
    /// speaking HTTP/1.`minor`; `declared` is the origin's `Content-Length`
    /// for a bodiless answer.
    pub fn for_client(framing: Framing, minor: u8, declared: Option<u64>) -> BodyOut {
        match framing {
            Framing::None => BodyOut::Bodiless(declared),
            Framing::Length(n) => BodyOut::Length(n),
            Framing::Chunked | Framing::UntilClose if minor >= 1 => BodyOut::Chunked,
            Framing::Chunked | Framing::UntilClose => BodyOut::UntilClose,
        }
    }

    /// Whether the client's connection can carry another request after
    /// this body.
    pub fn allows_keep_alive(self) -> bool {
        self != BodyOut::UntilClose
    }

    /// Queues a piece of payload for `to`.
    pub fn send(self, conns: &mut Connections<'_>, to: ConnId, payload: &[u8]) {
        if payload.is_empty() {
            return;
        }
        if self == BodyOut::Chunked {
            let _ = conns.send(to, format!("{:x}\r\n", payload.len()).as_bytes());
            let _ = conns.send(to, payload);
            let _ = conns.send(to, b"\r\n");
        } else {
            let _ = conns.send(to, payload);
        }
    }

    /// Queues whatever ends the body (the last chunk).
    pub fn finish(self, conns: &mut Connections<'_>, to: ConnId) {
        if self == BodyOut::Chunked {
            let _ = conns.send(to, b"0\r\n\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_are_not_forwarded() {
        let fields = [
            Header {
                name: "Host",
                value: b"wrong",
            },
            Header {
                name: "Proxy-Connection",
                value: b"keep-alive",
            },
            Header {
                name: "Connection",
                value: b"X-Hop",
            },
            Header {
                name: "X-Hop",
                value: b"1",
            },
            Header {
                name: "Proxy-Authorization",
                value: b"Basic eA==",
            },
            Header {
                name: "Accept",
                value: b"*/*",
            },
            Header {
                name: "Content-Length",
                value: b"3",
            },
        ];
        let head = request_head("POST", "/p?q", "h:81", &fields, Framing::Length(3));
        let text = String::from_utf8(head).unwrap();
        assert_eq!(
            text,
            "POST /p?q HTTP/1.1\r\nHost: h:81\r\nAccept: */*\r\nVia: 1.1 reactor-proxy\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn client_framing_follows_its_version() {
        assert_eq!(
            BodyOut::for_client(Framing::Chunked, 1, None),
            BodyOut::Chunked
        );
        assert_eq!(
            BodyOut::for_client(Framing::UntilClose, 0, None),
            BodyOut::UntilClose
        );
        assert_eq!(
            BodyOut::for_client(Framing::None, 1, Some(5)),
            BodyOut::Bodiless(Some(5))
        );
        let mut head = response_start(
            200,
            "",
            &[Header {
                name: "X-Cache",
                value: b"forged",
            }],
        );
        finish_head(&mut head, Some(3), true, &BodyOut::Length(2), false);
        let text = String::from_utf8(head).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nVia: 1.1 reactor-proxy\r\nAge: 3\r\nX-Cache: HIT\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n"
        );
    }
}
