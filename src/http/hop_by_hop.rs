//! Hop-by-hop fields (RFC 9110 §7.6.1): what a proxy must not pass on.

use super::Header;
use super::fields::{headers, list_has};

/// The fields that describe one connection rather than the message, which a
/// proxy removes before forwarding: these, and any field the `Connection`
/// fields name. (`Transfer-Encoding` and `TE` are about the connection's
/// framing too; a proxy frames the message anew for the next hop.)
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether the field called `name` is hop-by-hop in a message with these
/// `fields`: one of [`HOP_BY_HOP`], or named by a `Connection` field.
///
/// # Examples
///
/// ```
/// use reactor::http::{Header, is_hop_by_hop};
///
/// let fields = [
///     Header { name: "Connection", value: b"close, X-Secret" },
///     Header { name: "X-Secret", value: b"1" },
///     Header { name: "Accept", value: b"*/*" },
/// ];
/// assert!(is_hop_by_hop(&fields, "x-secret"));
/// assert!(is_hop_by_hop(&fields, "Keep-Alive"));
/// assert!(!is_hop_by_hop(&fields, "Accept"));
/// ```
pub fn is_hop_by_hop(fields: &[Header<'_>], name: &str) -> bool {
    HOP_BY_HOP.iter().any(|hop| hop.eq_ignore_ascii_case(name))
        || headers(fields, "connection").any(|value| list_has(value, name))
}

/// The fields of a message that a proxy passes on: every field that is not
/// [hop-by-hop](is_hop_by_hop), in order.
///
/// # Examples
///
/// ```
/// use reactor::http::{Header, end_to_end};
///
/// let fields = [
///     Header { name: "Host", value: b"a" },
///     Header { name: "Proxy-Connection", value: b"keep-alive" },
///     Header { name: "TE", value: b"trailers" },
/// ];
/// let names: Vec<&str> = end_to_end(&fields).map(|f| f.name).collect();
/// assert_eq!(names, ["Host"]);
/// ```
pub fn end_to_end<'f, 'b>(fields: &'f [Header<'b>]) -> impl Iterator<Item = &'f Header<'b>> {
    fields
        .iter()
        .filter(move |field| !is_hop_by_hop(fields, field.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_name_fields_without_case() {
        let fields = [
            Header {
                name: "connection",
                value: b" Foo ,, bar",
            },
            Header {
                name: "FOO",
                value: b"1",
            },
            Header {
                name: "Bar",
                value: b"2",
            },
            Header {
                name: "Baz",
                value: b"3",
            },
        ];
        let kept: Vec<&str> = end_to_end(&fields).map(|f| f.name).collect();
        assert_eq!(kept, ["Baz"]);
    }
}
