//! Reading a response head ([`parse_response`]) and writing a status line.

use super::fields::{declared_framing, header, keeps_alive};
use super::{Error, Framing, Header, Limits, bad_request};

/// A response head, borrowed from the bytes it was read from.
#[derive(Debug)]
pub struct Response<'h, 'b> {
    /// The status code.
    pub status: u16,
    /// The reason phrase as sent (informative only).
    pub reason: &'b str,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor: u8,
    /// The header fields, in order.
    pub fields: &'h [Header<'b>],
    /// How the body that follows is delimited.
    pub framing: Framing,
    /// Whether the server will take another request on this connection.
    pub keep_alive: bool,
    /// Bytes the head took, blank line included: the body starts here.
    pub head_len: usize,
}

impl Response<'_, '_> {
    /// The value of the first field called `name` (without case).
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::http::{self, Limits};
    ///
    /// let mut fields = [http::EMPTY_HEADER; 8];
    /// let bytes = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
    /// let response = http::parse_response(bytes, &mut fields, &Limits::default(), false).unwrap().unwrap();
    /// assert_eq!(response.header("content-type"), Some(&b"text/plain"[..]));
    /// ```
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header(self.fields, name)
    }
}

/// Reads a response head from the front of `buf`, for a request whose
/// method was HEAD when `to_head` is true (such a response has no body,
/// whatever its fields say; so have 1xx, 204 and 304).
///
/// Returns `Ok(None)` while the head is incomplete. A response with
/// neither `Content-Length` nor `Transfer-Encoding` is delimited by the
/// end of the stream ([`Framing::UntilClose`]). Framing errors are the
/// same as for requests; for a client they all mean "do not trust this
/// connection" (a proxy answers 502).
///
/// # Examples
///
/// ```
/// use reactor::http::{self, Framing, Limits};
///
/// let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
/// let mut fields = [http::EMPTY_HEADER; 16];
/// let response = http::parse_response(bytes, &mut fields, &Limits::default(), false)
///     .unwrap()
///     .unwrap();
/// assert_eq!(response.status, 200);
/// assert_eq!(response.framing, Framing::Chunked);
/// ```
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    fields: &'h mut [Header<'b>],
    limits: &Limits,
    to_head: bool,
) -> Result<Option<Response<'h, 'b>>, Error> {
    let mut parsed = httparse::Response::new(fields);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= limits.max_head => n,
        Ok(httparse::Status::Partial) if buf.len() < limits.max_head => return Ok(None),
        Ok(_) => return Err(Error::new(431, "response head too large")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::new(431, "too many header fields"));
        }
        Err(_) => return Err(bad_request("malformed response head")),
    };
    let status = parsed.code.unwrap_or_default();
    let reason = parsed.reason.unwrap_or_default();
    let minor = parsed.version.unwrap_or_default();
    let fields: &'h [Header<'b>] = parsed.headers;
    let bodiless = to_head || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if bodiless {
        Framing::None
    } else {
        declared_framing(fields, minor)?.unwrap_or(Framing::UntilClose)
    };
    let keep_alive = framing != Framing::UntilClose && keeps_alive(fields, minor);
    Ok(Some(Response {
        status,
        reason,
        minor,
        fields,
        framing,
        keep_alive,
        head_len,
    }))
}

/// Appends `HTTP/1.1 <status> <reason>\r\n` to `out`.
///
/// # Examples
///
/// ```
/// let mut out = Vec::new();
/// reactor::http::write_status_line(&mut out, 404);
/// assert_eq!(out, b"HTTP/1.1 404 Not Found\r\n");
/// ```
pub fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal: what `write!` does, without the formatting
/// machinery, for the numbers of every response head (a status, a length).
///
/// # Examples
///
/// ```
/// let mut out = b"Content-Length: ".to_vec();
/// reactor::http::write_decimal(&mut out, 1048576);
/// assert_eq!(out, b"Content-Length: 1048576");
/// ```
pub fn write_decimal(out: &mut Vec<u8>, n: u64) {
    crate::decimal::write_u64(out, n);
}

/// The reason phrase of a status code (RFC 9110 §15), or `""` for one this
/// table does not know.
///
/// # Examples
///
/// ```
/// assert_eq!(reactor::http::reason(206), "Partial Content");
/// ```
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::EMPTY_HEADER;

    fn framing_of(bytes: &[u8], to_head: bool) -> Result<Framing, u16> {
        let mut fields = [EMPTY_HEADER; 8];
        match parse_response(bytes, &mut fields, &Limits::default(), to_head) {
            Ok(Some(response)) => Ok(response.framing),
            Ok(None) => Err(0),
            Err(e) => Err(e.status()),
        }
    }

    #[test]
    fn body_framing_follows_rfc_9112() {
        let length = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(framing_of(length, false), Ok(Framing::Length(5)));
        assert_eq!(framing_of(length, true), Ok(Framing::None));
        let close = b"HTTP/1.0 200 OK\r\n\r\n";
        assert_eq!(framing_of(close, false), Ok(Framing::UntilClose));
        let not_modified = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(framing_of(not_modified, false), Ok(Framing::None));
        let both = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(framing_of(both, false), Err(400));
        let spaced = b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n";
        assert_eq!(framing_of(spaced, false), Err(400));
        assert_eq!(framing_of(b"HTTP/1.1 200 OK\r\n", false), Err(0));
    }

    #[test]
    fn every_status_we_send_has_a_reason() {
        for status in [
            200, 206, 304, 400, 403, 404, 405, 408, 413, 414, 416, 431, 500, 501, 502, 504,
        ] {
            assert!(!reason(status).is_empty(), "{status}");
        }
    }
}
