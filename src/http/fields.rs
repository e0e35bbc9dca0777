//! The header-field rules shared by requests and responses: how a body is
//! framed, `Connection` tokens, and finding a field by name.

use super::{Error, Header, bad_request};

/// How a message's body is delimited (RFC 9112 §6.3).
///
/// # Examples
///
/// ```
/// use reactor::http::Framing;
///
/// assert!(Framing::None.is_empty());
/// assert!(Framing::Length(0).is_empty());
/// assert!(!Framing::Chunked.is_empty());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (a GET without `Content-Length`, a 204, a 304, the
    /// answer to a HEAD).
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// Chunks, ending with a zero-size chunk and trailers
    /// (`Transfer-Encoding: chunked`).
    Chunked,
    /// Everything until the peer closes (a response with neither field).
    UntilClose,
}

impl Framing {
    /// Whether the body is known to be empty.
    pub fn is_empty(self) -> bool {
        matches!(self, Framing::None | Framing::Length(0))
    }
}

/// The value of the first field called `name` (compared without case).
///
/// # Examples
///
/// ```
/// use reactor::http::{Header, header};
///
/// let fields = [Header { name: "Content-Type", value: b"text/plain" }];
/// assert_eq!(header(&fields, "content-type"), Some(&b"text/plain"[..]));
/// assert_eq!(header(&fields, "host"), None);
/// ```
pub fn header<'b>(fields: &[Header<'b>], name: &str) -> Option<&'b [u8]> {
    headers(fields, name).next()
}

/// Every value of the fields called `name`, in order.
///
/// # Examples
///
/// ```
/// use reactor::http::{Header, headers};
///
/// let fields = [
///     Header { name: "Via", value: b"1.1 a" },
///     Header { name: "via", value: b"1.1 b" },
/// ];
/// assert_eq!(headers(&fields, "Via").count(), 2);
/// ```
pub fn headers<'f, 'b>(
    fields: &'f [Header<'b>],
    name: &'f str,
) -> impl Iterator<Item = &'b [u8]> + 'f {
    fields
        .iter()
        .filter(move |field| field.name.eq_ignore_ascii_case(name))
        .map(|field| field.value)
}

/// Whether the `Connection` fields list `token` (`close`, `keep-alive`,
/// `upgrade`), compared without case.
///
/// # Examples
///
/// ```
/// use reactor::http::{Header, connection_has};
///
/// let fields = [Header { name: "Connection", value: b"keep-alive, Upgrade" }];
/// assert!(connection_has(&fields, "upgrade"));
/// assert!(!connection_has(&fields, "close"));
/// ```
pub fn connection_has(fields: &[Header<'_>], token: &str) -> bool {
    headers(fields, "connection").any(|value| list_has(value, token))
}

/// Whether a comma-separated field value holds `token` (without case).
pub(crate) fn list_has(value: &[u8], token: &str) -> bool {
    list_items(value).any(|item| item.eq_ignore_ascii_case(token.as_bytes()))
}

/// The items of a comma-separated list, trimmed, empty ones skipped (the
/// list syntax of RFC 9110 §5.6.1).
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|item| !item.is_empty())
}

/// `value` without leading and trailing spaces and tabs.
pub(crate) fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// The body framing the fields declare: `Ok(None)` when they declare
/// neither a length nor a coding (what that means differs between requests
/// and responses, so the caller decides).
///
/// The strict rules: both fields together, a repeated `Content-Length`, a
/// length that is not 1 to 19 plain digits, a coding list whose last item
/// is not `chunked` or that names `chunked` twice, and, in HTTP/1.0, any
/// `Transfer-Encoding` at all (RFC 9112 §6.1), are errors. A coding we do
/// not implement (`gzip, chunked`) is a 501.
pub(crate) fn declared_framing(fields: &[Header<'_>], minor: u8) -> Result<Option<Framing>, Error> {
    let mut length = None;
    let mut codings = false;
    for field in fields {
        if field.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(bad_request("more than one Content-Length"));
            }
            length = Some(parse_length(field.value)?);
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            codings = true;
        }
    }
    match (length, codings) {
        (Some(_), true) => Err(bad_request("both Content-Length and Transfer-Encoding")),
        (Some(n), false) => Ok(Some(Framing::Length(n))),
        (None, false) => Ok(None),
        (None, true) if minor == 0 => Err(bad_request("Transfer-Encoding in HTTP/1.0")),
        (None, true) => chunked_last(fields).map(Some),
    }
}

/// Checks that the transfer codings, over every `Transfer-Encoding` field
/// in order, end in one `chunked`.
fn chunked_last(fields: &[Header<'_>]) -> Result<Framing, Error> {
    let mut items = 0;
    let mut chunked_at = None;
    for value in headers(fields, "transfer-encoding") {
        for item in list_items(value) {
            if item.eq_ignore_ascii_case(b"chunked") {
                if chunked_at.is_some() {
                    return Err(bad_request("chunked applied twice"));
                }
                chunked_at = Some(items);
            } else if chunked_at.is_some() {
                return Err(bad_request("a transfer coding after chunked"));
            } else if !is_token(item) {
                return Err(bad_request("malformed Transfer-Encoding"));
            } else {
                // gzip, compress, deflate: framing we could find, codings we
                // do not undo. Refuse rather than pass on what we cannot read.
                return Err(Error::new(501, "transfer coding not implemented"));
            }
            items += 1;
        }
    }
    match chunked_at {
        Some(_) => Ok(Framing::Chunked),
        None => Err(bad_request("empty Transfer-Encoding")),
    }
}

/// A `Content-Length` value: 1 to 19 ASCII digits, nothing else (no sign,
/// no spaces inside, no list), so it always fits in a `u64`.
fn parse_length(value: &[u8]) -> Result<u64, Error> {
    let digits = trim(value);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad_request("malformed Content-Length"));
    }
    Ok(digits
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Whether `bytes` is an RFC 9110 token (a method, a coding name).
pub(crate) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_token_byte(b))
}

/// Whether `byte` may appear in a token (`tchar`).
pub(crate) fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Whether a message's connection stays open after it: in HTTP/1.1 unless
/// `Connection: close`, in HTTP/1.0 only with `Connection: keep-alive`.
pub(crate) fn keeps_alive(fields: &[Header<'_>], minor: u8) -> bool {
    if minor == 1 {
        !connection_has(fields, "close")
    } else {
        connection_has(fields, "keep-alive")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<Header<'a>> {
        pairs
            .iter()
            .map(|&(name, value)| Header {
                name,
                value: value.as_bytes(),
            })
            .collect()
    }

    #[test]
    fn lengths_are_plain_digits() {
        for good in ["0", "5", " 42 ", "9999999999999999999"] {
            assert!(parse_length(good.as_bytes()).is_ok(), "{good}");
        }
        for bad in [
            "",
            "+5",
            "-1",
            "5,5",
            "0x5",
            "5 5",
            "99999999999999999999",
            "٣",
        ] {
            assert_eq!(
                parse_length(bad.as_bytes()).unwrap_err().status(),
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn codings_must_end_in_one_chunked() {
        let ok = fields(&[("Transfer-Encoding", "chunked")]);
        assert_eq!(declared_framing(&ok, 1), Ok(Some(Framing::Chunked)));
        let split = fields(&[("Transfer-Encoding", " "), ("transfer-encoding", "Chunked")]);
        assert_eq!(declared_framing(&split, 1), Ok(Some(Framing::Chunked)));
        for (value, status) in [
            ("chunked, chunked", 400),
            ("chunked, gzip", 400),
            ("gzip, chunked", 501),
            ("gzip", 501),
            ("", 400),
            ("chu nked", 400),
        ] {
            let te = fields(&[("Transfer-Encoding", value)]);
            assert_eq!(
                declared_framing(&te, 1).unwrap_err().status(),
                status,
                "{value}"
            );
        }
        let old = fields(&[("Transfer-Encoding", "chunked")]);
        assert_eq!(declared_framing(&old, 0).unwrap_err().status(), 400);
    }

    #[test]
    fn both_or_twice_is_refused() {
        let both = fields(&[("Content-Length", "3"), ("Transfer-Encoding", "chunked")]);
        assert_eq!(declared_framing(&both, 1).unwrap_err().status(), 400);
        let twice = fields(&[("Content-Length", "3"), ("content-length", "3")]);
        assert_eq!(declared_framing(&twice, 1).unwrap_err().status(), 400);
        assert_eq!(declared_framing(&[], 1), Ok(None));
    }

    #[test]
    fn lists_are_trimmed() {
        assert!(list_has(b" Keep-Alive ,upgrade", "keep-alive"));
        assert!(!list_has(b"closed", "close"));
        assert_eq!(trim(b" \t a b \t"), b"a b");
        assert_eq!(trim(b"   "), b"");
    }
}
