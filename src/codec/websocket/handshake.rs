//! The opening handshake (RFC 6455 §4): an HTTP/1.1 `GET` that asks to
//! upgrade, answered `101 Switching Protocols`. Server side:
//! [`check_upgrade`], [`write_accept`], [`write_refusal`]; client side:
//! [`new_key`], [`write_request`], [`check_accept`].
//!
//! The server proves it read the request by hashing the client's key with a
//! fixed GUID ([`accept_key`]), so that neither a plain HTTP server nor a
//! cache can answer a WebSocket request by accident. We offer and accept no
//! extension and no subprotocol: a client that offers `permessage-deflate`
//! gets an answer without `Sec-WebSocket-Extensions`, which declines it.

use std::fmt;

use super::base64;
use super::encode::random_u64;
use super::sha1::sha1;
use crate::http::{self, Request, Response, connection_has, headers};

/// The fixed GUID of RFC 6455 §1.3, appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What [`check_upgrade`] found in an acceptable upgrade request.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::check_upgrade;
/// use reactor::http::{self, Limits};
///
/// let bytes = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
///     Origin: http://a\r\n\r\n";
/// let mut fields = [http::EMPTY_HEADER; 16];
/// let request = http::parse_request(bytes, &mut fields, &Limits::default()).unwrap().unwrap();
/// let upgrade = check_upgrade(&request).unwrap();
/// assert_eq!(upgrade.key, "dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(upgrade.origin, Some("http://a"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upgrade<'b> {
    /// `Sec-WebSocket-Key`, checked to be the base64 of 16 bytes: pass it to
    /// [`write_accept`].
    pub key: &'b str,
    /// `Origin`, if the client sent one (browsers always do): the page that
    /// opened the socket, for the server to allow or refuse.
    pub origin: Option<&'b str>,
}

/// A handshake that cannot go on: the status a server answers with (400,
/// or 426 for a version other than 13), or, on the client side, the status
/// of the response that was refused; and why.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::HandshakeError;
///
/// let error = HandshakeError { status: 426, why: "Sec-WebSocket-Version is not 13" };
/// assert_eq!(error.to_string(), "426 Upgrade Required: Sec-WebSocket-Version is not 13");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeError {
    /// The HTTP status.
    pub status: u16,
    /// Why, in a few words (for the log and the response body).
    pub why: &'static str,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            http::reason(self.status),
            self.why
        )
    }
}

impl std::error::Error for HandshakeError {}

fn bad(why: &'static str) -> HandshakeError {
    HandshakeError { status: 400, why }
}

/// Whether a comma-separated field value lists `token` (without case).
fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The only value of field `name`, trimmed; `Err(())` when it is there
/// more than once.
fn single<'b>(fields: &[http::Header<'b>], name: &str) -> Result<Option<&'b [u8]>, ()> {
    let mut values = headers(fields, name);
    let first = values.next();
    match values.next() {
        Some(_) => Err(()),
        None => Ok(first.map(<[u8]>::trim_ascii)),
    }
}

/// Checks that `req` is a WebSocket upgrade we accept (RFC 6455 §4.2.1):
/// `GET`, HTTP/1.1, `Upgrade: websocket` (a token, without case),
/// `Connection` listing `upgrade`, one `Sec-WebSocket-Key` that is the
/// base64 of 16 bytes, and `Sec-WebSocket-Version: 13`.
///
/// # Errors
///
/// - 400 for a method other than `GET`, HTTP/1.0, a missing `Upgrade:
///   websocket` or `Connection: upgrade`, a key missing, repeated or not 16
///   bytes of base64;
/// - 426 for a missing or other `Sec-WebSocket-Version`: the refusal
///   ([`write_refusal`]) names the version we speak.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::check_upgrade;
/// use reactor::http::{self, Limits};
///
/// let bytes = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
///     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
/// let mut fields = [http::EMPTY_HEADER; 16];
/// let request = http::parse_request(bytes, &mut fields, &Limits::default()).unwrap().unwrap();
/// assert_eq!(check_upgrade(&request).unwrap_err().status, 426);
/// ```
pub fn check_upgrade<'b>(req: &Request<'_, 'b>) -> Result<Upgrade<'b>, HandshakeError> {
    if req.method != "GET" {
        return Err(bad("a WebSocket handshake is a GET"));
    }
    if req.minor != 1 {
        return Err(bad("a WebSocket handshake needs HTTP/1.1"));
    }
    if !headers(req.fields, "upgrade").any(|value| lists(value, "websocket")) {
        return Err(bad("no Upgrade: websocket"));
    }
    if !connection_has(req.fields, "upgrade") {
        return Err(bad("no Connection: upgrade"));
    }
    let key = match single(req.fields, "sec-websocket-key") {
        Ok(Some(key)) if base64::is_16_bytes(key) => key,
        Ok(None) => return Err(bad("no Sec-WebSocket-Key")),
        Ok(Some(_)) => return Err(bad("Sec-WebSocket-Key is not 16 bytes of base64")),
        Err(()) => return Err(bad("more than one Sec-WebSocket-Key")),
    };
    match single(req.fields, "sec-websocket-version") {
        Ok(Some(b"13")) => {}
        _ => {
            return Err(HandshakeError {
                status: 426,
                why: "Sec-WebSocket-Version is not 13",
            });
        }
    }
    // A browser sends one Origin, as text: anything else is not a browser
    // to be trusted with a missing one, nor a program (which sends none).
    let origin = match single(req.fields, "origin") {
        Ok(Some(value)) => {
            Some(std::str::from_utf8(value.trim_ascii()).map_err(|_| bad("Origin is not text"))?)
        }
        Ok(None) => None,
        Err(()) => return Err(bad("more than one Origin")),
    };
    Ok(Upgrade {
        // The alphabet is ASCII: checked above.
        key: std::str::from_utf8(key).map_err(|_| bad("Sec-WebSocket-Key is not base64"))?,
        origin,
    })
}

/// `Sec-WebSocket-Accept` for `key`, as bytes: base64(SHA-1(key + GUID)).
fn accept_value(key: &str, out: &mut Vec<u8>) {
    base64::encode(&sha1(&[key.as_bytes(), GUID]), out);
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`:
/// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
///
/// # Examples
///
/// ```
/// // RFC 6455 §1.3's example.
/// assert_eq!(
///     reactor::codec::websocket::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &str) -> String {
    let mut out = Vec::with_capacity(28);
    accept_value(key, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the `101 Switching Protocols` response for a checked upgrade's
/// key. No extension and no subprotocol is named, which declines any the
/// client offered (`permessage-deflate` among them). After it, the
/// connection speaks frames.
///
/// # Examples
///
/// ```
/// let mut out = Vec::new();
/// reactor::codec::websocket::write_accept(&mut out, "dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(
///     String::from_utf8(out).unwrap(),
///     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
/// );
/// ```
pub fn write_accept(out: &mut Vec<u8>, key: &str) {
    http::write_status_line(out, 101);
    out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    accept_value(key, out);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends the refusal of a handshake: the status line, a short text body
/// (the reason) with its `Content-Length`, `Connection: close`, and for a
/// 426 `Sec-WebSocket-Version: 13`, the version we speak. Close the
/// connection once it is written.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::{HandshakeError, write_refusal};
///
/// let mut out = Vec::new();
/// write_refusal(&mut out, &HandshakeError { status: 426, why: "Sec-WebSocket-Version is not 13" });
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
/// assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
/// assert!(text.ends_with("\r\n\r\nSec-WebSocket-Version is not 13\n"));
/// ```
pub fn write_refusal(out: &mut Vec<u8>, err: &HandshakeError) {
    http::write_status_line(out, err.status);
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    http::write_decimal(out, err.why.len() as u64 + 1);
    out.extend_from_slice(b"\r\nConnection: close\r\n");
    if err.status == 426 {
        out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(err.why.as_bytes());
    out.push(b'\n');
}

/// A fresh `Sec-WebSocket-Key` for a client: 16 pseudo-random bytes in
/// base64. It only has to differ between handshakes (it is a nonce, not a
/// secret).
///
/// # Examples
///
/// ```
/// let key = reactor::codec::websocket::new_key();
/// assert_eq!(key.len(), 24);
/// assert!(key.ends_with("=="));
/// ```
pub fn new_key() -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&random_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&random_u64().to_le_bytes());
    let mut out = Vec::with_capacity(24);
    base64::encode(&bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends a client's upgrade request for `path` on `host` (the `Host`
/// field: `name:port` unless the port is the default), with `key` (from
/// [`new_key`]) and, for a browser-like client, an `Origin`.
///
/// # Examples
///
/// ```
/// let mut out = Vec::new();
/// reactor::codec::websocket::write_request(&mut out, "127.0.0.1:9001", "/", "dGhlIHNhbXBsZSBub25jZQ==", None);
/// assert_eq!(
///     String::from_utf8(out).unwrap(),
///     "GET / HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
/// );
/// ```
pub fn write_request(out: &mut Vec<u8>, host: &str, path: &str, key: &str, origin: Option<&str>) {
    for part in [
        "GET ",
        path,
        " HTTP/1.1\r\nHost: ",
        host,
        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
        key,
        "\r\nSec-WebSocket-Version: 13\r\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    if let Some(origin) = origin {
        out.extend_from_slice(b"Origin: ");
        out.extend_from_slice(origin.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Checks a server's response head to the request made with `key`: 101,
/// `Upgrade: websocket`, `Connection: upgrade`, the right
/// `Sec-WebSocket-Accept`, and no extension or subprotocol (we asked for
/// none).
///
/// # Errors
///
/// A [`HandshakeError`] carrying the response's status and what was wrong.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::{check_accept, write_accept};
/// use reactor::http::{self, Limits};
///
/// let key = "dGhlIHNhbXBsZSBub25jZQ==";
/// let mut bytes = Vec::new();
/// write_accept(&mut bytes, key);
/// let mut fields = [http::EMPTY_HEADER; 16];
/// let response = http::parse_response(&bytes, &mut fields, &Limits::default(), false).unwrap().unwrap();
/// assert_eq!(check_accept(&response, key), Ok(()));
/// assert!(check_accept(&response, "AAAAAAAAAAAAAAAAAAAAAA==").is_err());
/// ```
pub fn check_accept(resp: &Response<'_, '_>, key: &str) -> Result<(), HandshakeError> {
    let refused = |why| {
        Err(HandshakeError {
            status: resp.status,
            why,
        })
    };
    if resp.status != 101 {
        return refused("the server did not switch protocols");
    }
    if !headers(resp.fields, "upgrade").any(|value| lists(value, "websocket")) {
        return refused("no Upgrade: websocket in the response");
    }
    if !connection_has(resp.fields, "upgrade") {
        return refused("no Connection: upgrade in the response");
    }
    let mut expected = Vec::with_capacity(28);
    accept_value(key, &mut expected);
    match single(resp.fields, "sec-websocket-accept") {
        Ok(Some(accept)) if accept == expected => {}
        _ => return refused("wrong Sec-WebSocket-Accept"),
    }
    if http::header(resp.fields, "sec-websocket-extensions").is_some() {
        return refused("the server chose an extension we did not offer");
    }
    if http::header(resp.fields, "sec-websocket-protocol").is_some() {
        return refused("the server chose a subprotocol we did not offer");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
