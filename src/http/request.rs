//! Reading a request head: [`parse_request`].

use super::fields::{declared_framing, header, headers, keeps_alive};
use super::{Error, Framing, Header, Limits, bad_request};

/// A request head, borrowed from the bytes it was read from.
///
/// Its [`framing`](Request::framing) has passed every rule of the module's
/// list; the rest of the fields are as the client sent them, for the
/// handler to look up with [`header`](super::header).
#[derive(Debug)]
pub struct Request<'h, 'b> {
    /// The method, a token (`GET`, `POST`, ...), case as sent.
    pub method: &'b str,
    /// The request target as sent: origin form (`/a?b`), absolute form
    /// (`http://host/a`, what proxies receive), `*` (OPTIONS) or authority
    /// form (`host:443`, CONNECT).
    pub target: &'b str,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor: u8,
    /// The header fields, in order.
    pub fields: &'h [Header<'b>],
    /// How the body that follows is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this one
    /// (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a `100 Continue` before
    /// it sends the body.
    pub expects_continue: bool,
    /// Bytes the head took, blank line included: the body starts here.
    pub head_len: usize,
}

impl Request<'_, '_> {
    /// The value of the first field called `name` (without case).
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::http::{self, Limits};
    ///
    /// let mut fields = [http::EMPTY_HEADER; 8];
    /// let bytes = b"GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-9\r\n\r\n";
    /// let request = http::parse_request(bytes, &mut fields, &Limits::default()).unwrap().unwrap();
    /// assert_eq!(request.header("range"), Some(&b"bytes=0-9"[..]));
    /// ```
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header(self.fields, name)
    }
}

/// Reads a request head from the front of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete and within its limits
/// (call again with more bytes), `Ok(Some(request))` once it is whole and
/// acceptable, and an [`Error`] naming the status to answer with otherwise:
/// 400 for bad syntax or framing, 414 for a target longer than
/// [`Limits::max_target`], 431 for a head longer than
/// [`Limits::max_head`] or with more fields than `fields` can hold, 417
/// for an expectation other than `100-continue`, 501 for a transfer coding
/// we do not implement, 505 for a version other than 1.0 and 1.1.
///
/// # Examples
///
/// ```
/// use reactor::http::{self, Limits};
///
/// let mut fields = [http::EMPTY_HEADER; 16];
/// // Half a head: ask again later.
/// assert!(http::parse_request(b"GET / HTTP/1.1\r\nHo", &mut fields, &Limits::default())
///     .unwrap()
///     .is_none());
///
/// let mut fields = [http::EMPTY_HEADER; 16];
/// let request = http::parse_request(b"GET / HTTP/1.0\r\n\r\n", &mut fields, &Limits::default())
///     .unwrap()
///     .unwrap();
/// assert!(!request.keep_alive);
///
/// // HTTP/1.1 without a Host.
/// let mut fields = [http::EMPTY_HEADER; 16];
/// let error = http::parse_request(b"GET / HTTP/1.1\r\n\r\n", &mut fields, &Limits::default());
/// assert_eq!(error.unwrap_err().status(), 400);
/// ```
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    fields: &'h mut [Header<'b>],
    limits: &Limits,
) -> Result<Option<Request<'h, 'b>>, Error> {
    check_line_length(buf, limits)?;
    let mut parsed = httparse::Request::new(fields);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= limits.max_head => n,
        Ok(httparse::Status::Partial) if buf.len() < limits.max_head => return Ok(None),
        Ok(_) => return Err(Error::new(431, "request head too large")),
        Err(error) => return Err(syntax_error(error)),
    };
    let method = parsed.method.unwrap_or_default();
    let target = parsed.path.unwrap_or_default();
    let minor = parsed.version.unwrap_or_default();
    let fields: &'h [Header<'b>] = parsed.headers;
    if target.len() > limits.max_target {
        return Err(Error::new(414, "request target too long"));
    }
    check_target_form(method, target)?;
    check_host(fields, minor)?;
    let framing = declared_framing(fields, minor)?.unwrap_or(Framing::None);
    let keep_alive = keeps_alive(fields, minor);
    let expects_continue = match header(fields, "expect") {
        None => false,
        Some(value) if value.eq_ignore_ascii_case(b"100-continue") => minor == 1,
        Some(_) => return Err(Error::new(417, "unknown expectation")),
    };
    Ok(Some(Request {
        method,
        target,
        minor,
        fields,
        framing,
        keep_alive,
        expects_continue,
        head_len,
    }))
}

/// Refuses a request line that has no end within the target limit (and
/// room for a method and a version), before waiting for the rest: a
/// 414 for a target that will not fit, not a 431 much later.
fn check_line_length(buf: &[u8], limits: &Limits) -> Result<(), Error> {
    let longest_line = limits.max_target + 64;
    let window = &buf[..buf.len().min(longest_line)];
    if buf.len() >= longest_line && !window.contains(&b'\n') {
        return Err(Error::new(414, "request target too long"));
    }
    Ok(())
}

/// The four target forms of RFC 9112 §3.2, each only where it belongs.
fn check_target_form(method: &str, target: &str) -> Result<(), Error> {
    let ok = if target.starts_with('/') {
        true
    } else if target == "*" {
        method == "OPTIONS"
    } else if method == "CONNECT" {
        !target.contains('/')
    } else {
        let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
        lower.starts_with("http://") || lower.starts_with("https://")
    };
    if ok {
        Ok(())
    } else {
        Err(bad_request("malformed request target"))
    }
}

/// HTTP/1.1 needs exactly one `Host`; HTTP/1.0 at most one. Its value
/// must be `host[:port]` (RFC 9112 §3.2): a name of letters, digits, `-`,
/// `.`, `_` and `~` (the sub-delimiters RFC 3986 also allows, such as
/// `,`, are refused: `a,b` is what two `Host` fields look like merged), or
/// an IPv6 literal in brackets, and a port of up to five digits. Empty is
/// allowed (a target without an authority).
fn check_host(fields: &[Header<'_>], minor: u8) -> Result<(), Error> {
    let mut hosts = headers(fields, "host");
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(bad_request("more than one Host"));
    }
    match first {
        None if minor == 1 => Err(bad_request("missing Host")),
        Some(value) if !is_host(value) => Err(bad_request("malformed Host")),
        _ => Ok(()),
    }
}

/// `uri-host [":" port]`, as [`check_host`] reads it.
fn is_host(value: &[u8]) -> bool {
    let (host, port) = match value.strip_prefix(b"[") {
        Some(v6) => match v6.iter().position(|&b| b == b']') {
            Some(end) => {
                let literal = &v6[..end];
                let ok = !literal.is_empty()
                    && literal
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || b":.".contains(b));
                if !ok {
                    return false;
                }
                (&b""[..], &v6[end + 1..])
            }
            None => return false,
        },
        None => match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &b""[..]),
        },
    };
    let name_ok = host
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b));
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    name_ok && port_ok
}

/// httparse's error, as the status and reason a server answers with.
fn syntax_error(error: httparse::Error) -> Error {
    match error {
        httparse::Error::TooManyHeaders => Error::new(431, "too many header fields"),
        httparse::Error::Version => Error::new(505, "HTTP version not supported"),
        httparse::Error::HeaderName => bad_request("malformed header field name"),
        httparse::Error::HeaderValue => bad_request("malformed header field value"),
        httparse::Error::NewLine => bad_request("malformed line ending"),
        httparse::Error::Token => bad_request("malformed method or target"),
        httparse::Error::Status => bad_request("malformed request line"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::EMPTY_HEADER;

    fn status_of(bytes: &[u8]) -> u16 {
        let mut fields = [EMPTY_HEADER; 8];
        match parse_request(bytes, &mut fields, &Limits::default()) {
            Ok(Some(_)) => 200,
            Ok(None) => 0,
            Err(e) => e.status(),
        }
    }

    #[test]
    fn framing_attacks_are_refused() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  folded\r\n\r\n",
                400,
            ),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a?b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200),
            (b"GET / HTTP/1.1\r\nHost: my-host.example_1:80\r\n\r\n", 200),
            (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", 200),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
                501,
            ),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417),
            (b"GET nothing HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 200),
            (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 200),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: \0\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", 0),
        ];
        for &(bytes, status) in cases {
            assert_eq!(
                status_of(bytes),
                status,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn limits_name_their_status() {
        let limits = Limits {
            max_head: 64,
            max_target: 16,
        };
        let mut fields = [EMPTY_HEADER; 2];
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(20));
        let e = parse_request(long_target.as_bytes(), &mut fields, &limits).unwrap_err();
        assert_eq!(e.status(), 414);
        // A line with no end yet, already past the target limit: 414 now.
        let endless = format!("GET /{}", "a".repeat(100));
        let e = parse_request(endless.as_bytes(), &mut fields, &limits).unwrap_err();
        assert_eq!(e.status(), 414);
        let big_head = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "b".repeat(80));
        let e = parse_request(big_head.as_bytes(), &mut fields, &limits).unwrap_err();
        assert_eq!(e.status(), 431);
        let many = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        let e = parse_request(many, &mut fields, &limits).unwrap_err();
        assert_eq!(e.status(), 431);
    }

    #[test]
    fn keep_alive_and_continue() {
        let mut fields = [EMPTY_HEADER; 8];
        let bytes = b"PUT /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n";
        let request = parse_request(bytes, &mut fields, &Limits::default())
            .unwrap()
            .unwrap();
        assert!(!request.keep_alive);
        assert!(request.expects_continue);
        assert_eq!(request.framing, Framing::Length(9));
        assert_eq!(request.head_len, bytes.len());
        let mut fields = [EMPTY_HEADER; 8];
        let old = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        assert!(
            parse_request(old, &mut fields, &Limits::default())
                .unwrap()
                .unwrap()
                .keep_alive
        );
    }
}
