//! Request targets and URLs: where the path and query are, decoding them
//! once, and the absolute URLs that clients and proxies use.

use std::borrow::Cow;
use std::fmt;

use super::{Error, bad_request};

/// The path and the query (without its `?`) of a request target. An
/// absolute-form target (`http://host/p?q`) gives its path too; a
/// fragment, which clients should not send, is dropped.
///
/// # Examples
///
/// ```
/// use reactor::http::split_target;
///
/// assert_eq!(split_target("/a/b?x=1"), ("/a/b", Some("x=1")));
/// assert_eq!(split_target("http://example.com"), ("/", None));
/// assert_eq!(split_target("http://example.com/p#top"), ("/p", None));
/// ```
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    let target = target.split('#').next().unwrap_or_default();
    let origin_form = if target.starts_with('/') {
        target
    } else if let Some(scheme_end) = target.find("://") {
        let after = &target[scheme_end + 3..];
        after.find(['/', '?']).map_or("/", |at| &after[at..])
    } else {
        target
    };
    match origin_form.split_once('?') {
        Some(("", query)) => ("/", Some(query)),
        Some((path, query)) => (path, Some(query)),
        None => (origin_form, None),
    }
}

/// Percent-decodes a path once, and refuses what could reach outside the
/// directory it names: a `..` segment (403), an encoded `/` or `\` or a
/// raw `\` (403, so that decoding cannot create a separator), `%00` and
/// malformed escapes or UTF-8 (400). `.` and empty segments are dropped.
///
/// Returns the decoded segments joined by `/`, without a leading one: a
/// relative path to join to a root. A path with nothing to decode or drop
/// (the common case) is returned borrowed, without allocating.
///
/// # Examples
///
/// ```
/// use reactor::http::decode_path;
///
/// assert_eq!(decode_path("/docs/a%20b.txt").unwrap(), "docs/a b.txt");
/// assert_eq!(decode_path("/./x//y/").unwrap(), "x/y");
/// assert_eq!(decode_path("/%2e%2e/etc/passwd").unwrap_err().status(), 403);
/// assert_eq!(decode_path("/a%2fb").unwrap_err().status(), 403);
/// assert_eq!(decode_path("/a%00").unwrap_err().status(), 400);
/// ```
pub fn decode_path(path: &str) -> Result<Cow<'_, str>, Error> {
    if is_plain_path(path) {
        return Ok(Cow::Borrowed(path.trim_matches('/')));
    }
    decode_each_byte(path).map(Cow::Owned)
}

/// [`decode_path`] the long way, for any path.
fn decode_each_byte(path: &str) -> Result<String, Error> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                match escaped(bytes, at) {
                    None => return Err(bad_request("malformed percent-encoding")),
                    Some(0) => return Err(bad_request("encoded NUL in path")),
                    Some(b'/' | b'\\') => return Err(Error::new(403, "encoded separator in path")),
                    Some(other) => decoded.push(other),
                }
                at += 3;
                continue;
            }
            b'\\' => return Err(Error::new(403, "backslash in path")),
            other => decoded.push(other),
        }
        at += 1;
    }
    let decoded = String::from_utf8(decoded).map_err(|_| bad_request("path is not UTF-8"))?;
    let mut segments = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(Error::new(403, "'..' in path")),
            _ if segment.chars().any(char::is_control) => {
                return Err(bad_request("control character in path"));
            }
            _ => segments.push(segment),
        }
    }
    Ok(segments.join("/"))
}

/// Whether `path` is `/` followed by segments that need no decoding and
/// no dropping: printable ASCII only, no `%`, no `\`, no empty segment
/// inside and no segment starting with `.` (anything else takes the
/// decoding path, which checks it).
fn is_plain_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && bytes
            .iter()
            .all(|&b| b > b' ' && b < 0x7f && b != b'%' && b != b'\\')
        && !bytes
            .windows(2)
            .any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'))
}

/// The pairs of a query string (`a=1&b=two+words`), form-decoded: `+` is
/// a space, escapes are decoded, bytes that are not UTF-8 are replaced.
/// A key without `=` has an empty value.
///
/// # Examples
///
/// ```
/// use reactor::http::parse_query;
///
/// let pairs = parse_query("q=rust+loop&x=%41&flag");
/// assert_eq!(pairs, [("q".into(), "rust loop".into()), ("x".into(), "A".into()), ("flag".into(), String::new())]);
/// ```
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(key), form_decode(value))
        })
        .collect()
}

/// Decodes one form field; a malformed escape is kept as it is.
fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match (bytes[at], escaped(bytes, at)) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (other, _) => out.push(other),
        }
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte that the escape `%XX` at `bytes[at]` stands for, if there is
/// one there: the one percent-decoder, for paths and for forms.
fn escaped(bytes: &[u8], at: usize) -> Option<u8> {
    let hex = |byte: u8| (byte as char).to_digit(16).map(|d| d as u8);
    match bytes.get(at..at + 3)? {
        [b'%', high, low] => Some(hex(*high)? << 4 | hex(*low)?),
        _ => None,
    }
}

/// An absolute `http://` or `https://` URL, as a client or a proxy needs
/// it: where to connect, and what to ask for.
///
/// # Examples
///
/// ```
/// use reactor::http::Url;
///
/// let url = Url::parse("http://[::1]:8080/a?b=1").unwrap();
/// assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("::1", 8080, "/a?b=1"));
/// assert_eq!(url.authority(), "[::1]:8080");
///
/// let url = Url::parse("HTTPS://Example.com").unwrap();
/// assert!(url.https);
/// assert_eq!((url.port, url.path.as_str(), url.authority()), (443, "/", "example.com".to_string()));
///
/// assert!(Url::parse("ftp://example.com/").unwrap_err().to_string().contains("scheme"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// Whether the scheme is `https`.
    pub https: bool,
    /// The host name or address, lowercase, without brackets.
    pub host: String,
    /// The port, the scheme's default when none is given.
    pub port: u16,
    /// The path and query (`/` when the URL has none); never a fragment.
    pub path: String,
}

/// Why a URL could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError(String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

impl Url {
    /// Reads an absolute URL.
    ///
    /// # Errors
    ///
    /// A scheme other than `http` and `https`, user information
    /// (`user@host`), an empty host, a bad port, or whitespace.
    pub fn parse(text: &str) -> Result<Url, UrlError> {
        let fail = |why: &str| UrlError(format!("{why}: {text}"));
        if text.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(fail("whitespace or control character in URL"));
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| fail("not an absolute URL"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            other => {
                return Err(UrlError(format!(
                    "unsupported scheme '{other}' (only http and https)"
                )));
            }
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('?') => (&rest[..at], format!("/{}", &rest[at..])),
            Some(at) => (&rest[..at], rest[at..].to_string()),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err(fail("user information in URL is not supported"));
        }
        let (host, port) =
            split_authority(authority).ok_or_else(|| fail("malformed host or port"))?;
        let port = match port {
            Some(port) => port
                .parse()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| fail("bad port"))?,
            None if https => 443,
            None => 80,
        };
        if host.is_empty() {
            return Err(fail("no host in URL"));
        }
        Ok(Url {
            https,
            host: host.to_ascii_lowercase(),
            port,
            path: encode_non_ascii(&path),
        })
    }

    /// `host[:port]` as the `Host` field carries it: the port only when it
    /// is not the scheme's default, an IPv6 address in brackets.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::http::Url;
    ///
    /// assert_eq!(Url::parse("http://a:80/").unwrap().authority(), "a");
    /// assert_eq!(Url::parse("https://[::1]:8443/").unwrap().authority(), "[::1]:8443");
    /// ```
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// `path` with every byte outside printable ASCII percent-encoded, as a
/// request target must be (`/café` is sent as `/caf%C3%A9`).
fn encode_non_ascii(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_graphic() {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `host[:port]` or `[v6]:port`, split.
fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port))),
        Some(_) => None,
        None => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_shapes_are_refused() {
        for (path, status) in [
            ("/..", 403),
            ("/a/../../b", 403),
            ("/%2E%2E/x", 403),
            ("/.%2e/x", 403),
            ("/a%5cb", 403),
            ("/a\\b", 403),
            ("/%zz", 400),
            ("/%4", 400),
            ("/%ff", 400),
            ("/a%0ab", 400),
        ] {
            assert_eq!(decode_path(path).unwrap_err().status(), status, "{path}");
        }
        assert_eq!(decode_path("/").unwrap(), "");
        assert_eq!(decode_path("/caf%C3%A9/..x").unwrap(), "café/..x");
        // The borrowed fast path and the long way agree, on every path
        // of up to six characters from an alphabet of the awkward ones.
        let alphabet = ['/', 'a', '.', '%', '2', 'e', '\\', ' ', 'é'];
        let mut paths = vec![String::from("/")];
        for _ in 0..6 {
            let longer: Vec<String> = paths
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(longer.into_iter().filter(|p| p.len() <= 8));
            paths.dedup();
        }
        let mut plain = 0;
        for path in &paths {
            if is_plain_path(path) {
                plain += 1;
                assert_eq!(
                    decode_each_byte(path).as_deref(),
                    Ok(path.trim_matches('/')),
                    "{path}"
                );
            }
        }
        assert!(plain > 100, "only {plain} plain paths tried");
        assert_eq!(decode_path("/sub/").unwrap(), "sub");
    }

    #[test]
    fn form_fields_decode() {
        assert_eq!(form_decode("a%2"), "a%2");
        assert_eq!(form_decode("%"), "%");
        assert_eq!(form_decode("%e2%82%ac+1"), "€ 1");
    }

    #[test]
    fn urls() {
        assert!(Url::parse("http://user@h/").is_err());
        assert!(Url::parse("http://h:99999/").is_err());
        assert!(Url::parse("http://:80/").is_err());
        assert!(Url::parse("http:/h").is_err());
        assert_eq!(Url::parse("http://h?q").unwrap().path, "/?q");
        assert_eq!(Url::parse("http://h:81").unwrap().authority(), "h:81");
        assert_eq!(
            Url::parse("http://h/caf\u{e9}?q=\u{e9}").unwrap().path,
            "/caf%C3%A9?q=%C3%A9"
        );
    }
}
