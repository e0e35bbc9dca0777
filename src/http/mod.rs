//! HTTP/1.1 message framing, written once for every HTTP program: the
//! server, the client, the caching proxy and the chat's WebSocket upgrade.
//!
//! [`httparse`] reads the start line and the header fields without
//! allocating. What it leaves to us is the part that decides *where a
//! message ends*, and that part is strict here, because a lenient reading
//! behind a proxy is how request smuggling happens (RFC 9112 §6.3, §11.2):
//!
//! - `Content-Length` and `Transfer-Encoding` together, a second
//!   `Content-Length` (even an equal one), or one that is not plain digits
//!   (`+5`, `5,5`, `0x5`) are errors;
//! - a transfer coding other than one final `chunked` is an error (501 for a
//!   coding we do not implement, 400 when `chunked` is not last);
//! - an HTTP/1.1 request needs exactly one `Host`;
//! - a space before a field's colon, and obsolete line folding, are refused
//!   (httparse's defaults for requests);
//! - chunk sizes are plain hexadecimal that must not overflow, chunk lines
//!   end in CRLF, and trailer lines are field lines (`name: value`, CRLF).
//!
//! Each refusal is an [`Error`] that names the status a server answers
//! with ([`Error::status`]) and a short reason for the log and the body.
//!
//! The pieces:
//! - `request.rs`: [`parse_request`] and the [`Request`] head it returns;
//! - `response.rs`: [`parse_response`], [`Response`], and writing a status
//!   line ([`write_status_line`], [`reason`]);
//! - `fields.rs`: the header rules both share ([`Framing`], `Connection`
//!   tokens, `Content-Length`, `Transfer-Encoding`);
//! - `body.rs`: [`BodyDecoder`], which finds the end of a body as its bytes
//!   arrive (a length, chunks, or the end of the stream);
//! - `target.rs`: request targets ([`split_target`], [`decode_path`],
//!   [`parse_query`]) and absolute URLs ([`Url`]);
//! - `date.rs`: HTTP dates ([`format_date`], [`parse_date`]).
//! - `hop_by_hop.rs`: the fields a proxy does not pass on
//!   ([`is_hop_by_hop`], [`end_to_end`]);
//! - `cache_control.rs`: the `Cache-Control` directives a shared cache
//!   acts on ([`CacheControl`]).
//!
//! # Examples
//!
//! ```
//! use reactor::http::{self, Framing, Limits};
//!
//! let bytes = b"POST /echo?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
//! let mut fields = [http::EMPTY_HEADER; 32];
//! let request = http::parse_request(bytes, &mut fields, &Limits::default())
//!     .unwrap()
//!     .expect("a whole head");
//! assert_eq!(request.method, "POST");
//! assert_eq!(request.framing, Framing::Length(2));
//! assert_eq!(&bytes[request.head_len..], b"hi");
//!
//! // Two lengths is an attack, not a message.
//! let smuggled = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 20\r\n\r\n";
//! let mut fields = [http::EMPTY_HEADER; 32];
//! let error = http::parse_request(smuggled, &mut fields, &Limits::default()).unwrap_err();
//! assert_eq!(error.status(), 400);
//! ```

mod body;
mod cache_control;
mod date;
mod fields;
mod hop_by_hop;
mod request;
mod response;
mod target;

use std::fmt;

pub use httparse::{EMPTY_HEADER, Header};

pub use body::{BodyDecoder, BodyProgress};
pub use cache_control::CacheControl;
pub use date::{format_date, parse_date};
pub use fields::{Framing, connection_has, header, headers};
pub use hop_by_hop::{HOP_BY_HOP, end_to_end, is_hop_by_hop};
pub use request::{Request, parse_request};
pub use response::{Response, parse_response, reason, write_decimal, write_status_line};
pub use target::{Url, UrlError, decode_path, parse_query, split_target};

/// The limits a message head is read under.
///
/// | limit | default | answered with |
/// |---|---|---|
/// | [`max_head`](Limits::max_head) | 16 KiB | 431 |
/// | [`max_target`](Limits::max_target) | 8 KiB | 414 |
///
/// The number of fields is bounded by the slice of [`Header`]s the caller
/// lends to [`parse_request`] (more fields than that: 431).
///
/// # Examples
///
/// ```
/// let limits = reactor::http::Limits { max_head: 4096, ..Default::default() };
/// assert_eq!(limits.max_target, 8192);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest head (start line, fields and the blank line), in bytes.
    pub max_head: usize,
    /// The longest request target, in bytes.
    pub max_target: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 16 * 1024,
            max_target: 8 * 1024,
        }
    }
}

/// A message that cannot be accepted, with the status a server answers it
/// with and why.
///
/// After any of these the connection's framing can no longer be trusted:
/// answer and close.
///
/// # Examples
///
/// ```
/// use reactor::http::Error;
///
/// let error = Error::new(413, "body larger than 16 MiB");
/// assert_eq!(error.status(), 413);
/// assert_eq!(error.to_string(), "413 Content Too Large: body larger than 16 MiB");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    status: u16,
    why: &'static str,
}

impl Error {
    /// An error answered with `status`, for the reason `why`.
    pub const fn new(status: u16, why: &'static str) -> Error {
        Error { status, why }
    }

    /// The status code to answer with (400, 413, 414, 431, 501, 505...).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Why, in a few words (for the log and the response body).
    pub fn why(&self) -> &'static str {
        self.why
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, reason(self.status), self.why)
    }
}

impl std::error::Error for Error {}

/// Shorthand for a 400 (the message's framing or syntax is wrong).
pub(crate) const fn bad_request(why: &'static str) -> Error {
    Error::new(400, why)
}
