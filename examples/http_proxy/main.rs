//! A forward HTTP proxy with a cache, on one thread: the seeds' proxy
//! exercise ("client connects to proxy, proxy forwards request to actual
//! server, proxy returns response to client, add caching for repeated
//! requests").
//!
//! Run:   cargo run --example http_proxy
//! Use:   curl -x http://127.0.0.1:3128 http://example.com/
//!        curl -x http://127.0.0.1:3128 -sI http://example.com/ | grep -i x-cache
//!
//! - `proxy.rs`: the handler, client and origin connections on one
//!   service, streaming with backpressure both ways, CONNECT tunnels;
//! - `cache.rs`: the LRU cache bounded in bytes, and what may be kept;
//! - `message.rs`: the heads it writes (hop-by-hop fields removed, `Via`).
//!
//! Origin names are resolved on the one helper thread of
//! `reactor::resolve::Resolver` (`getaddrinfo` blocks); everything else
//! happens on the loop's thread.

mod cache;
#[path = "../common/mod.rs"]
mod common;
mod message;
mod proxy;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::info;
use reactor::Reactor;
use reactor::http::Limits;
use reactor::resolve::{Resolver, ResolverConfig};
use reactor::service::{Config, Service};

const USAGE: &str = "\
http_proxy: a forward HTTP proxy with an in-memory cache

usage: http_proxy [options]

options:
  --addr HOST:PORT          where to listen (default 127.0.0.1:3128)
  --connect-timeout DUR     connecting to an origin (default 5s; then 504)
  --origin-timeout DUR      from the request to the origin's response head
                            (default 30s; then 504)
  --cache-size SIZE         the cache's bytes over all (default 64MiB; 0: no cache)
  --max-object SIZE         the largest response kept (default 8MiB)
  --max-waiters N           clients that may wait for one fetch of a URL (default 64)
  --allow-connect PORTS     allow CONNECT to these ports, comma-separated
                            (default: CONNECT answers 405)
  --max-conns N             connections at once, clients and origins (default 10000)
  --idle-timeout DUR        close a connection idle this long (default 60s)
  --header-timeout DUR      a request head must be whole this long after its
                            first byte (default 10s; then 408)
  -h, --help                show this text

Configure a client to use it: curl -x http://127.0.0.1:3128 URL, or
http_proxy=http://127.0.0.1:3128 in the environment.
";

struct Options {
    addr: SocketAddr,
    connect_timeout: Duration,
    origin_timeout: Duration,
    cache_size: usize,
    max_object: usize,
    max_waiters: usize,
    allow_connect: Vec<u16>,
    max_conns: usize,
    idle_timeout: Option<Duration>,
    header_timeout: Option<Duration>,
}

fn ports(s: &str) -> Result<Vec<u16>, String> {
    s.split(',')
        .map(|p| {
            common::port(p.trim()).and_then(|p| if p == 0 { Err("port 0".into()) } else { Ok(p) })
        })
        .collect()
}

fn options() -> Options {
    use lexopt::Arg::{Long, Short};
    let mut addr = "127.0.0.1:3128".to_string();
    let mut options = Options {
        addr: "127.0.0.1:3128".parse().expect("a literal address"),
        connect_timeout: Duration::from_secs(5),
        origin_timeout: Duration::from_secs(30),
        cache_size: 64 << 20,
        max_object: 8 << 20,
        max_waiters: 64,
        allow_connect: Vec::new(),
        max_conns: 10_000,
        idle_timeout: Some(Duration::from_secs(60)),
        header_timeout: Some(Duration::from_secs(10)),
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("connect-timeout") => {
                options.connect_timeout =
                    common::value(&mut parser, "connect-timeout", common::parse_duration)
            }
            Long("origin-timeout") => {
                options.origin_timeout =
                    common::value(&mut parser, "origin-timeout", common::parse_duration)
            }
            Long("cache-size") => {
                options.cache_size = common::value(&mut parser, "cache-size", common::parse_size)
            }
            Long("max-object") => {
                options.max_object = common::value(&mut parser, "max-object", common::parse_size)
            }
            Long("max-waiters") => {
                options.max_waiters = common::value(&mut parser, "max-waiters", common::count)
            }
            Long("allow-connect") => {
                options.allow_connect = common::value(&mut parser, "allow-connect", ports)
            }
            Long("max-conns") => {
                options.max_conns = common::value(&mut parser, "max-conns", common::count)
            }
            Long("idle-timeout") => {
                options.idle_timeout =
                    common::value(&mut parser, "idle-timeout", common::parse_optional_duration)
            }
            Long("header-timeout") => {
                options.header_timeout = common::value(
                    &mut parser,
                    "header-timeout",
                    common::parse_optional_duration,
                )
            }
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    options.addr = common::resolve_addr(&addr);
    options
}

fn main() {
    common::init_logging();
    let options = options();
    if let Err(e) = run(options) {
        common::fail(e);
    }
}

fn run(options: Options) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let resolver = Resolver::new(&mut reactor, ResolverConfig::default())?;
    let settings = proxy::Settings {
        allow_connect: options.allow_connect,
        origin_timeout: options.origin_timeout,
        max_waiters: options.max_waiters,
        limits: Limits::default(),
    };
    let cache = cache::Cache::new(options.cache_size, options.max_object);
    let config = Config::default()
        .max_connections(options.max_conns)
        .connect_timeout(options.connect_timeout)
        .idle_timeout(options.idle_timeout)
        .unfinished_input_timeout(options.header_timeout)
        // A head (16 KiB) and a partial chunk line are all that is ever
        // left unconsumed.
        .input_limit(64 * 1024)
        .reject_message(&message::error_response(503, "too many connections", false));
    let service = Service::new(
        &mut reactor,
        proxy::Proxy::new(cache, resolver, settings),
        config,
    );
    let me = service.handle(&mut reactor);
    service.with(&mut reactor, |proxy, _| proxy.set_handle(me))?;
    service.shutdown_on_signal(&mut reactor, Duration::from_secs(5))?;
    let listener = service
        .listen(&mut reactor, options.addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", options.addr)))?;
    common::announce(format_args!("listening on {}", service.tcp_addr(listener)?));
    reactor.run()?;
    let stats = service.stats()?;
    info!(
        "served {} client(s): {} bytes in, {} bytes out",
        stats.accepted, stats.bytes_in, stats.bytes_out
    );
    Ok(())
}
