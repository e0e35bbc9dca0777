//! The `Cache-Control` directives a shared cache acts on (RFC 9111 §5.2):
//! [`CacheControl`].

use super::Header;
use super::fields::{headers, list_items, trim};

/// The `Cache-Control` directives of a message, over every such field.
///
/// Only what a shared cache needs to decide whether it may store a
/// response and for how long. Unknown directives are ignored, as RFC 9111
/// asks. Where the message is unclear the reading is the cautious one: a
/// `max-age` that is not a number counts as 0 (stale at once), a directive
/// given twice keeps the smaller age, and `private="field"` (a qualified
/// `private`) counts as plain `private`.
///
/// # Examples
///
/// ```
/// use reactor::http::{CacheControl, Header};
///
/// let fields = [
///     Header { name: "Cache-Control", value: b"public, max-age=60" },
///     Header { name: "cache-control", value: b"s-maxage=\"30\"" },
/// ];
/// let cc = CacheControl::from_fields(&fields);
/// assert_eq!((cc.max_age, cc.s_maxage), (Some(60), Some(30)));
/// assert!(!cc.no_store && !cc.private);
///
/// let cc = CacheControl::from_fields(&[Header { name: "Cache-Control", value: b"No-Store" }]);
/// assert!(cc.no_store);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`: never keep any of this message.
    pub no_store: bool,
    /// `no-cache`: a stored copy must be revalidated before every use.
    pub no_cache: bool,
    /// `private`: for the user's own cache only, never a shared one.
    pub private: bool,
    /// `max-age=N`, in seconds.
    pub max_age: Option<u64>,
    /// `s-maxage=N`, in seconds: the lifetime for shared caches, over
    /// `max-age`.
    pub s_maxage: Option<u64>,
}

impl CacheControl {
    /// Reads the directives of every `Cache-Control` field in `fields`.
    pub fn from_fields(fields: &[Header<'_>]) -> CacheControl {
        let mut cc = CacheControl::default();
        for value in headers(fields, "cache-control") {
            for item in list_items(value) {
                let (name, argument) = match item.iter().position(|&b| b == b'=') {
                    Some(at) => (trim(&item[..at]), Some(trim(&item[at + 1..]))),
                    None => (item, None),
                };
                let is = |directive: &str| name.eq_ignore_ascii_case(directive.as_bytes());
                if is("no-store") {
                    cc.no_store = true;
                } else if is("no-cache") {
                    cc.no_cache = true;
                } else if is("private") {
                    cc.private = true;
                } else if is("max-age") {
                    cc.max_age = smaller(cc.max_age, seconds(argument));
                } else if is("s-maxage") {
                    cc.s_maxage = smaller(cc.s_maxage, seconds(argument));
                }
            }
        }
        cc
    }

    /// The freshness lifetime these directives give a shared cache:
    /// `s-maxage`, else `max-age`, else `None` (look at `Expires`).
    pub fn shared_max_age(&self) -> Option<u64> {
        self.s_maxage.or(self.max_age)
    }
}

/// A delta-seconds argument (quotes allowed); anything else is 0.
fn seconds(argument: Option<&[u8]>) -> u64 {
    let Some(argument) = argument else { return 0 };
    let digits = argument
        .strip_prefix(b"\"")
        .and_then(|a| a.strip_suffix(b"\""))
        .unwrap_or(argument);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

fn smaller(old: Option<u64>, new: u64) -> Option<u64> {
    Some(old.map_or(new, |old| old.min(new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(value: &str) -> CacheControl {
        CacheControl::from_fields(&[Header {
            name: "Cache-Control",
            value: value.as_bytes(),
        }])
    }

    #[test]
    fn directives_are_read_cautiously() {
        assert_eq!(read("max-age=abc").max_age, Some(0));
        assert_eq!(read("max-age").max_age, Some(0));
        assert_eq!(read("max-age=10, max-age=5").max_age, Some(5));
        assert_eq!(
            read("max-age=99999999999999999999999").max_age,
            Some(u64::MAX)
        );
        assert!(read("private=\"Set-Cookie\"").private);
        assert!(read(" no-cache ,x=1").no_cache);
        assert_eq!(read("s-maxage=3, max-age=9").shared_max_age(), Some(3));
        assert_eq!(read("max-age=9").shared_max_age(), Some(9));
        assert_eq!(read("public").shared_max_age(), None);
        assert_eq!(read(""), CacheControl::default());
    }
}
