//! The cache: responses kept in memory, least recently used first out,
//! bounded in bytes over all and per object; and the rules for what may be
//! kept and for how long.
//!
//! A [`Stored`] response is shared (`Rc<RefCell<_>>`) between the cache,
//! the origin fetch filling it, and every client being served from it, so
//! a client that waited for a fetch already under way (a collapsed miss)
//! reads the same bytes as they arrive, and a hit costs no copy of the
//! body.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use reactor::http::{CacheControl, Header, Response, header, headers, parse_date};
use reactor::service::ConnId;

/// A response being received, or received and kept.
#[derive(Debug)]
pub struct Stored {
    /// The status line and end-to-end fields (see `message::response_start`).
    pub head: Vec<u8>,
    /// The payload received so far.
    pub body: Vec<u8>,
    /// The length the origin declared, if it did.
    pub length: Option<u64>,
    /// The whole body has arrived.
    pub complete: bool,
    /// The fetch failed or the response may not be kept: readers stop.
    pub failed: bool,
    /// When the head arrived, the origin's `Age` then, and how long the
    /// response stays fresh.
    pub received: Instant,
    pub age_at_receipt: u64,
    pub lifetime: Duration,
    /// The request fields named by `Vary`, as the first client sent them:
    /// a hit needs the same values.
    pub vary: Vec<(String, Option<Vec<u8>>)>,
    /// Clients waiting for the head (collapsed misses).
    pub waiters: Vec<ConnId>,
    /// Clients being fed from `body` as it grows.
    pub readers: Vec<ConnId>,
}

/// A response shared by the cache, its fetch and its readers.
pub type Shared = Rc<RefCell<Stored>>;

impl Stored {
    /// An empty response for a fetch just started: waiters can join it.
    pub fn pending() -> Shared {
        Rc::new(RefCell::new(Stored {
            head: Vec::new(),
            body: Vec::new(),
            length: None,
            complete: false,
            failed: false,
            received: Instant::now(),
            age_at_receipt: 0,
            lifetime: Duration::ZERO,
            vary: Vec::new(),
            waiters: Vec::new(),
            readers: Vec::new(),
        }))
    }

    /// Seconds since the origin made the response (RFC 9111 §4.2.3, simplified:
    /// its `Age` when it arrived plus our time since).
    pub fn age(&self, now: Instant) -> u64 {
        self.age_at_receipt + now.saturating_duration_since(self.received).as_secs()
    }

    /// Whether it may still be served without asking the origin.
    pub fn is_fresh(&self, now: Instant) -> bool {
        Duration::from_secs(self.age(now)) < self.lifetime
    }

    /// Whether the head has arrived and readers can be served.
    pub fn has_head(&self) -> bool {
        !self.head.is_empty()
    }

    /// Bytes it holds, as the cache counts them.
    fn size(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// Whether a request with these fields may be served this response.
    pub fn matches(&self, fields: &[Header<'_>]) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| header(fields, name) == value.as_deref())
    }
}

/// Whether a request may be answered from the cache, or its response kept:
/// a GET without a body or credentials, not asking to bypass stores.
pub fn request_is_cacheable(method: &str, fields: &[Header<'_>], has_body: bool) -> bool {
    let cc = CacheControl::from_fields(fields);
    method == "GET" && !has_body && header(fields, "authorization").is_none() && !cc.no_store
}

/// How long a response to a cacheable request may be kept, or `None` if it
/// may not be (RFC 9111 §3, for a shared cache): a 200 with `s-maxage`,
/// `max-age` or `Expires`, and none of `no-store`, `no-cache`, `private`,
/// `Vary: *` or `Set-Cookie`.
pub fn freshness(response: &Response<'_, '_>, now: SystemTime) -> Option<Duration> {
    let fields = response.fields;
    let cc = CacheControl::from_fields(fields);
    let vary_star =
        headers(fields, "vary").any(|v| v.split(|&b| b == b',').any(|t| t.trim_ascii() == b"*"));
    if response.status != 200
        || cc.no_store
        || cc.no_cache
        || cc.private
        || vary_star
        || header(fields, "set-cookie").is_some()
    {
        return None;
    }
    let lifetime = match cc.shared_max_age() {
        Some(seconds) => Duration::from_secs(seconds),
        None => {
            let expires = text(header(fields, "expires")?).and_then(parse_date);
            // An `Expires` we cannot read means "already expired".
            let expires = expires?;
            let date = text(header(fields, "date")?)
                .and_then(parse_date)
                .unwrap_or(now);
            expires.duration_since(date).ok()?
        }
    };
    (!lifetime.is_zero()).then_some(lifetime)
}

/// The origin's `Age`, in seconds (0 if absent or malformed).
pub fn origin_age(fields: &[Header<'_>]) -> u64 {
    header(fields, "age")
        .and_then(text)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// The names listed in `Vary`, with this request's values of them.
pub fn vary_values(
    response: &[Header<'_>],
    request: &[Header<'_>],
) -> Vec<(String, Option<Vec<u8>>)> {
    headers(response, "vary")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|name| !name.is_empty())
        .filter_map(|name| std::str::from_utf8(name).ok())
        .map(|name| {
            (
                name.to_ascii_lowercase(),
                header(request, name).map(<[u8]>::to_vec),
            )
        })
        .collect()
}

fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// The cache: URL to response, least recently used evicted first.
///
/// `order` maps a use counter to the URL used then, so the oldest use is
/// its first entry: O(log n) per hit and per eviction.
#[derive(Debug)]
pub struct Cache {
    entries: HashMap<String, (Shared, u64)>,
    order: BTreeMap<u64, String>,
    uses: u64,
    bytes: usize,
    capacity: usize,
    max_object: usize,
}

impl Cache {
    /// An empty cache of at most `capacity` bytes, none of its objects over
    /// `max_object`.
    pub fn new(capacity: usize, max_object: usize) -> Cache {
        Cache {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            uses: 0,
            bytes: 0,
            capacity,
            max_object: max_object.min(capacity),
        }
    }

    /// The largest object kept.
    pub fn max_object(&self) -> usize {
        self.max_object
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A fresh response for `url` that these request fields may be served,
    /// marked as just used. A stale one is dropped.
    pub fn get(&mut self, url: &str, fields: &[Header<'_>], now: Instant) -> Option<Shared> {
        let (stored, used) = self.entries.get(url)?;
        let fresh = stored.borrow().is_fresh(now);
        if !fresh {
            self.remove(url);
            return None;
        }
        if !stored.borrow().matches(fields) {
            return None;
        }
        let stored = stored.clone();
        let used = *used;
        self.uses += 1;
        self.order.remove(&used);
        self.order.insert(self.uses, url.to_string());
        if let Some(entry) = self.entries.get_mut(url) {
            entry.1 = self.uses;
        }
        Some(stored)
    }

    /// Keeps a complete response, evicting the least recently used until it
    /// fits. Returns false (keeping nothing) if it is over `max_object`.
    pub fn insert(&mut self, url: &str, stored: Shared) -> bool {
        let size = stored.borrow().size() + url.len();
        if size > self.max_object {
            return false;
        }
        self.remove(url);
        while self.bytes + size > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = self.entries.remove(&oldest) {
                self.bytes -= old.borrow().size() + oldest.len();
            }
        }
        self.uses += 1;
        self.order.insert(self.uses, url.to_string());
        self.entries.insert(url.to_string(), (stored, self.uses));
        self.bytes += size;
        true
    }

    fn remove(&mut self, url: &str) {
        if let Some((old, used)) = self.entries.remove(url) {
            self.order.remove(&used);
            self.bytes -= old.borrow().size() + url.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reactor::http::{EMPTY_HEADER, Limits, parse_response};

    fn lifetime_of(head: &str) -> Option<Duration> {
        let mut fields = [EMPTY_HEADER; 16];
        let response = parse_response(head.as_bytes(), &mut fields, &Limits::default(), false)
            .unwrap()
            .unwrap();
        freshness(&response, SystemTime::now())
    }

    #[test]
    fn only_shareable_responses_with_a_lifetime_are_kept() {
        let ok = |extra: &str| format!("HTTP/1.1 200 OK\r\n{extra}Content-Length: 0\r\n\r\n");
        assert_eq!(
            lifetime_of(&ok("Cache-Control: max-age=60\r\n")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            lifetime_of(&ok("Cache-Control: max-age=60, s-maxage=5\r\n")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            lifetime_of(&ok(
                "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nExpires: Sun, 06 Nov 1994 08:50:37 GMT\r\n"
            )),
            Some(Duration::from_secs(60))
        );
        for refused in [
            "",
            "Cache-Control: public\r\n",
            "Cache-Control: max-age=0\r\n",
            "Cache-Control: max-age=60, no-store\r\n",
            "Cache-Control: max-age=60, private\r\n",
            "Cache-Control: max-age=60, no-cache\r\n",
            "Cache-Control: max-age=60\r\nVary: Accept, *\r\n",
            "Cache-Control: max-age=60\r\nSet-Cookie: a=b\r\n",
            "Expires: 0\r\n",
        ] {
            assert_eq!(lifetime_of(&ok(refused)), None, "{refused:?}");
        }
        let not_found =
            "HTTP/1.1 404 Not Found\r\nCache-Control: max-age=60\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(lifetime_of(not_found), None);
    }

    #[test]
    fn requests_with_credentials_or_bodies_bypass() {
        let auth = [Header {
            name: "Authorization",
            value: b"Basic eA==",
        }];
        assert!(!request_is_cacheable("GET", &auth, false));
        assert!(!request_is_cacheable("POST", &[], false));
        assert!(!request_is_cacheable("GET", &[], true));
        assert!(request_is_cacheable("GET", &[], false));
    }

    fn object(body: usize, lifetime: u64) -> Shared {
        let stored = Stored::pending();
        {
            let mut s = stored.borrow_mut();
            s.head = b"HTTP/1.1 200 OK\r\n".to_vec();
            s.body = vec![b'x'; body];
            s.complete = true;
            s.lifetime = Duration::from_secs(lifetime);
        }
        stored
    }

    #[test]
    fn least_recently_used_goes_first_and_bytes_stay_bounded() {
        let mut cache = Cache::new(1000, 600);
        let now = Instant::now();
        assert!(cache.insert("a", object(400, 60)));
        assert!(cache.insert("b", object(400, 60)));
        assert!(cache.get("a", &[], now).is_some()); // b is now the oldest
        assert!(cache.insert("c", object(400, 60)));
        assert!(cache.get("b", &[], now).is_none());
        assert!(cache.get("a", &[], now).is_some());
        assert!(cache.bytes() <= 1000);
        assert!(!cache.insert("big", object(700, 60)));
        assert!(cache.insert("stale", object(10, 0)));
        assert!(cache.get("stale", &[], now).is_none());
    }

    #[test]
    fn vary_values_must_match() {
        let response = [Header {
            name: "Vary",
            value: b"Accept-Encoding",
        }];
        let gzip = [Header {
            name: "accept-encoding",
            value: b"gzip",
        }];
        let stored = object(1, 60);
        stored.borrow_mut().vary = vary_values(&response, &gzip);
        assert!(stored.borrow().matches(&gzip));
        assert!(!stored.borrow().matches(&[]));
    }
}
