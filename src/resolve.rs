//! [`Resolver`]: host names to addresses without blocking the loop.
//!
//! There is no non-blocking `getaddrinfo`: the C library's resolver reads
//! `/etc/hosts`, `nsswitch.conf` and asks DNS servers, and may take seconds
//! doing so. Called inside the loop, it would stop every connection for that
//! long. So lookups run on **one helper thread**, the only thread a program
//! on this crate needs, as libuv does with its thread pool for
//! `uv_getaddrinfo`: the loop hands it a name through a bounded queue, the
//! thread calls [`ToSocketAddrs`], and the answer comes back as a job on the
//! loop's thread through the reactor's [`Handle`](crate::Handle), where the
//! caller's callback runs. One thread is enough: lookups are rare next to
//! the requests they serve (a small cache on the loop's side answers the
//! repeated ones), and a bounded queue says "busy" rather than letting a
//! flood of names grow memory or threads.
//!
//! Address literals (`127.0.0.1`, `::1`) never go to the thread.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::{Rc, Weak};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use crate::reactor::Reactor;

/// What a lookup's callback is given: the addresses, in the resolver's
/// order, or why there are none.
pub type Resolved = io::Result<Vec<SocketAddr>>;

type Done = Box<dyn FnOnce(&mut Reactor, Resolved) + Send>;

/// One name for the helper thread.
struct Job {
    host: String,
    port: u16,
    done: Done,
}

/// The limits of a [`Resolver`].
///
/// | setting | default | why |
/// |---|---|---|
/// | `queue` | 64 | names waiting for the thread; past it a lookup fails at once (`WouldBlock`) |
/// | `cache_entries` | 256 | names remembered; the one nearest to expiring makes room |
/// | `ttl` | 60 s | how long an answer is reused (`getaddrinfo` does not say how long DNS allows) |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reactor::resolve::ResolverConfig;
///
/// let config = ResolverConfig { ttl: Duration::from_secs(5), ..Default::default() };
/// assert_eq!(config.queue, 64);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Lookups waiting for the helper thread at most.
    pub queue: usize,
    /// Names the cache holds at most (0: no cache).
    pub cache_entries: usize,
    /// How long a cached answer is used.
    pub ttl: Duration,
}

impl Default for ResolverConfig {
    fn default() -> ResolverConfig {
        ResolverConfig {
            queue: 64,
            cache_entries: 256,
            ttl: Duration::from_secs(60),
        }
    }
}

/// Answers kept on the loop's side, by `(host, port)`.
struct Cache {
    entries: HashMap<(String, u16), (Vec<SocketAddr>, Instant)>,
    capacity: usize,
    ttl: Duration,
}

impl Cache {
    fn get(&mut self, host: &str, port: u16, now: Instant) -> Option<Vec<SocketAddr>> {
        let key = (host.to_string(), port);
        match self.entries.get(&key) {
            Some((addrs, expires)) if *expires > now => Some(addrs.clone()),
            Some(_) => {
                self.entries.remove(&key);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, host: String, port: u16, addrs: &[SocketAddr], now: Instant) {
        if self.capacity == 0 || addrs.is_empty() {
            return;
        }
        if self.entries.len() >= self.capacity {
            // A linear scan over a few hundred entries, once per new name:
            // cheaper to keep than an ordered index updated on every hit.
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.len() >= self.capacity {
                let nearest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(key, _)| key.clone());
                if let Some(key) = nearest {
                    self.entries.remove(&key);
                }
            }
        }
        self.entries
            .insert((host, port), (addrs.to_vec(), now + self.ttl));
    }
}

/// Resolves host names on one helper thread and answers on the loop's
/// thread; see the [module documentation](self) for why a thread.
///
/// [`lookup`](Resolver::lookup) answers at once when it can (an address
/// literal, a cached name) and otherwise calls its callback later, on the
/// loop's thread, from the I/O step of a turn. Dropping the resolver
/// stops the thread once it has finished the lookup it is doing; answers
/// for a reactor that is gone are dropped.
///
/// # Examples
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::sync::{Arc, Mutex};
/// use reactor::Reactor;
/// use reactor::resolve::{Resolver, ResolverConfig};
///
/// let mut reactor = Reactor::new()?;
/// let resolver = Resolver::new(&mut reactor, ResolverConfig::default())?;
///
/// // A literal needs no thread.
/// let now = resolver.lookup("127.0.0.1", 80, |_, _| unreachable!());
/// assert_eq!(now.unwrap()?[0].to_string(), "127.0.0.1:80");
///
/// // A name does: the answer arrives as a job on the loop.
/// let answer = Arc::new(Mutex::new(None));
/// let slot = answer.clone();
/// let now = resolver.lookup("localhost", 8080, move |reactor, resolved| {
///     *slot.lock().unwrap() = Some(resolved.map(|addrs| addrs[0].port()));
///     reactor.stop();
/// });
/// assert!(now.is_none());
/// reactor.run()?;
/// assert_eq!(answer.lock().unwrap().take().unwrap()?, 8080);
///
/// // Now it is cached: answered at once.
/// assert!(resolver.lookup("localhost", 8080, |_, _| unreachable!()).is_some());
/// # Ok(())
/// # }
/// ```
pub struct Resolver {
    jobs: SyncSender<Job>,
    cache: Rc<RefCell<Cache>>,
}

impl Resolver {
    /// Starts the helper thread for lookups on `reactor`'s loop.
    ///
    /// # Errors
    ///
    /// The error of spawning the thread.
    pub fn new(reactor: &mut Reactor, config: ResolverConfig) -> io::Result<Resolver> {
        let cache = Rc::new(RefCell::new(Cache {
            entries: HashMap::new(),
            capacity: config.cache_entries,
            ttl: config.ttl,
        }));
        let kept: Rc<dyn Any> = cache.clone();
        let weak: Weak<dyn Any> = Rc::downgrade(&kept);
        let slot = reactor.keep_for_handles(weak);
        let handle = reactor.handle();
        let (jobs, queue) = mpsc::sync_channel::<Job>(config.queue.max(1));
        std::thread::Builder::new()
            .name("resolver".into())
            .spawn(move || {
                // Ends when the resolver (the sending side) is dropped.
                for Job { host, port, done } in queue {
                    let resolved = (host.as_str(), port)
                        .to_socket_addrs()
                        .map(Iterator::collect::<Vec<_>>)
                        .and_then(|addrs| match addrs.is_empty() {
                            true => Err(not_found(&host)),
                            false => Ok(addrs),
                        });
                    let sent = handle.call_soon(move |reactor| {
                        if let (Some(cache), Ok(addrs)) = (reactor.kept(slot), &resolved) {
                            if let Ok(cache) = cache.downcast::<RefCell<Cache>>() {
                                cache.borrow_mut().insert(host, port, addrs, Instant::now());
                            }
                        }
                        done(reactor, resolved);
                    });
                    if sent.is_err() {
                        break; // the reactor is gone: nobody is waiting
                    }
                }
            })?;
        Ok(Resolver { jobs, cache })
    }

    /// Looks up `host` (a name, or an address literal, IPv6 with or without
    /// brackets) for `port`.
    ///
    /// Returns `Some` when the answer is known now (a literal, a cached
    /// name, or a refusal), and `done` is dropped without being called.
    /// Otherwise returns `None`, and `done` runs later on the loop's
    /// thread with the answer.
    ///
    /// # Errors
    ///
    /// Given to `done`, or returned in `Some`: `WouldBlock` when the queue
    /// to the thread is full, `BrokenPipe` if the thread has stopped, and
    /// the resolver's own (`NotFound` for a name with no address).
    pub fn lookup<F>(&self, host: &str, port: u16, done: F) -> Option<Resolved>
    where
        F: FnOnce(&mut Reactor, Resolved) + Send + 'static,
    {
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Some(Ok(vec![SocketAddr::new(ip, port)]));
        }
        if let Some(addrs) = self.cache.borrow_mut().get(host, port, Instant::now()) {
            return Some(Ok(addrs));
        }
        let job = Job {
            host: host.to_string(),
            port,
            done: Box::new(done),
        };
        match self.jobs.try_send(job) {
            Ok(()) => None,
            Err(TrySendError::Full(_)) => Some(Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "too many name lookups waiting",
            ))),
            Err(TrySendError::Disconnected(_)) => Some(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the resolver thread has stopped",
            ))),
        }
    }
}

fn not_found(host: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no address for host '{host}'"),
    )
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("cached", &self.cache.borrow().entries.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_expires_and_stays_bounded() {
        let t0 = Instant::now();
        let addr: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let mut cache = Cache {
            entries: HashMap::new(),
            capacity: 2,
            ttl: Duration::from_secs(10),
        };
        cache.insert("a".into(), 80, &[addr], t0);
        cache.insert("b".into(), 80, &[addr], t0 + Duration::from_secs(1));
        cache.insert("c".into(), 80, &[addr], t0 + Duration::from_secs(2));
        assert_eq!(cache.entries.len(), 2);
        // "a" expired soonest, so it made room.
        assert!(cache.get("a", 80, t0).is_none());
        assert!(cache.get("b", 80, t0).is_some());
        assert!(cache.get("c", 81, t0).is_none());
        assert!(cache.get("c", 80, t0 + Duration::from_secs(20)).is_none());
        assert!(!cache.entries.contains_key(&("c".to_string(), 80)));
    }

    #[test]
    fn a_full_queue_says_so_at_once() -> io::Result<()> {
        let mut reactor = Reactor::new()?;
        let resolver = Resolver::new(
            &mut reactor,
            ResolverConfig {
                queue: 1,
                ..Default::default()
            },
        )?;
        // The thread takes jobs off the queue as it can, so ask until the
        // queue answers full (a lookup takes far longer than a try_send).
        let mut full = false;
        for i in 0..1000 {
            let name = format!("host{i}.invalid");
            if let Some(Err(e)) = resolver.lookup(&name, 80, |_, _| {}) {
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                full = true;
                break;
            }
        }
        assert!(full);
        Ok(())
    }
}
