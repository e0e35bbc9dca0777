//! A static file server with keep-alive and pipelining, on the reactor's
//! connection layer, one thread: the seeds' HTTP server done as a program
//! someone would really use.
//!
//! Run:   cargo run --release --example http_server
//! Try:   curl -i http://127.0.0.1:8080/
//!        curl -i -d 'hello' 'http://127.0.0.1:8080/echo?x=1'
//!        curl http://127.0.0.1:8080/metrics
//!
//! The request framing (where a request and its body end) is
//! `reactor::http`, shared with `http_get` and `http_proxy`; this program
//! adds the files, the routes and the limits. `docs/http.md` describes it.

#[path = "../common/mod.rs"]
mod common;
mod files;
mod metrics;
mod reply;
mod server;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reactor::Reactor;
use reactor::http::Limits;
use reactor::service::{Config, Service};

use files::Site;
use server::{HttpServer, Settings};

const USAGE: &str = "\
http_server: a static file server (HTTP/1.1, keep-alive, pipelining) on the reactor

usage: http_server [OPTIONS]

options:
  --addr HOST:PORT          listen here (default 127.0.0.1:8080)
  --root DIR                serve files from DIR (default: the bundled examples/www)
  --header-timeout DURATION a request head must arrive within this, from its first
                            byte; past it: 408 and close (default 10s)
  --keepalive-timeout DURATION
                            close a connection with nothing read or written this
                            long, between requests or to a client that stopped
                            reading (default 5s)
  --max-header SIZE         longest request head (default 16KiB; more: 431)
  --max-uri SIZE            longest request target (default 8KiB; more: 414)
  --max-body SIZE           longest request body, for POST /echo (default 16MiB; more: 413)
  --max-bodies SIZE         request bodies held in memory at once, over all
                            connections (default 256MiB; more: 503)
  --min-body-rate SIZE      after --header-timeout, a body must have come at this
                            many bytes a second on average (default 1KiB; slower: 408)
  --max-conns N             most connections at once (default 10000; more get 503)
  --cache-small-files SIZE  keep files up to SIZE in memory after the first read,
                            looked at again once a second (default 64KiB; 0: off)
  --cache-size SIZE         most bytes kept in memory in all (default 32MiB)
  --metrics-path PATH       where the Prometheus metrics are (default /metrics)
  --no-metrics              serve no metrics
  --grace DURATION          on SIGINT/SIGTERM, time allowed to finish (default 5s)
  -h, --help                show this text

Routes: GET/HEAD for files (index.html for a directory; Range; If-Modified-Since),
POST /echo answers {\"query\": {...}, \"body\": \"...\"} as JSON, GET /metrics.
Prints 'listening on ADDR'. The access log is logged at info level under the target
'access' (RUST_LOG=access=off silences it; RUST_LOG=debug shows every read and write).
";

struct Options {
    addr: SocketAddr,
    root: PathBuf,
    settings: Settings,
    config: Config,
    small_file: usize,
    cache_size: usize,
    grace: Duration,
}

fn parse_options() -> Options {
    let mut addr = String::from("127.0.0.1:8080");
    let mut root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/www"));
    let mut header_timeout = Some(Duration::from_secs(10));
    let mut keepalive = Some(Duration::from_secs(5));
    let mut limits = Limits::default();
    let mut max_body = 16 * 1024 * 1024;
    let mut max_bodies = 256 * 1024 * 1024;
    let mut min_body_rate = 1024;
    let mut max_conns = 10_000;
    let mut small_file = 64 * 1024;
    let mut cache_size = 32 * 1024 * 1024;
    let mut metrics_path = Some(String::from("/metrics"));
    let mut grace = Duration::from_secs(5);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("root") => root = common::value(&mut parser, "root", common::text).into(),
            Long("header-timeout") => {
                header_timeout = common::value(
                    &mut parser,
                    "header-timeout",
                    common::parse_optional_duration,
                )
            }
            Long("keepalive-timeout") => {
                keepalive = common::value(
                    &mut parser,
                    "keepalive-timeout",
                    common::parse_optional_duration,
                )
            }
            Long("max-header") => {
                limits.max_head = common::value(&mut parser, "max-header", positive_size)
            }
            Long("max-uri") => {
                limits.max_target = common::value(&mut parser, "max-uri", positive_size)
            }
            Long("max-body") => {
                max_body = common::value(&mut parser, "max-body", common::parse_size)
            }
            Long("max-bodies") => {
                max_bodies = common::value(&mut parser, "max-bodies", common::parse_size)
            }
            Long("min-body-rate") => {
                min_body_rate = common::value(&mut parser, "min-body-rate", common::parse_size)
            }
            Long("max-conns") => {
                max_conns = common::value(&mut parser, "max-conns", positive_count)
            }
            Long("cache-small-files") => {
                small_file = common::value(&mut parser, "cache-small-files", common::parse_size)
            }
            Long("cache-size") => {
                cache_size = common::value(&mut parser, "cache-size", common::parse_size)
            }
            Long("metrics-path") => {
                let path = common::value(&mut parser, "metrics-path", common::text);
                if !path.starts_with('/') {
                    common::usage_error("--metrics-path must start with '/'");
                }
                metrics_path = Some(path);
            }
            Long("no-metrics") => metrics_path = None,
            Long("grace") => grace = common::value(&mut parser, "grace", common::parse_duration),
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    let config = Config::default()
        .max_connections(max_conns)
        .reject_message(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 20\r\nConnection: close\r\n\r\n503 server is full.\n",
        )
        .unfinished_input_timeout(header_timeout)
        .idle_timeout(keepalive)
        // A head may sit unconsumed up to its limit, plus one read.
        .input_limit(limits.max_head + 64 * 1024);
    Options {
        addr: common::resolve_addr(&addr),
        root,
        settings: Settings {
            limits,
            max_body: max_body as u64,
            max_bodies_held: max_bodies,
            min_body_rate: min_body_rate as u64,
            // The head's deadline is the body's grace: a body has had that
            // long to start before its rate is judged.
            body_grace: header_timeout.unwrap_or(Duration::from_secs(10)),
            metrics_path,
        },
        config,
        small_file,
        cache_size,
        grace,
    }
}

fn positive_size(s: &str) -> Result<usize, String> {
    match common::parse_size(s)? {
        0 => Err("must be more than 0".into()),
        n => Ok(n),
    }
}

fn positive_count(s: &str) -> Result<usize, String> {
    match common::count(s)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

fn main() {
    common::main(parse_options, run);
}

fn run(options: Options) -> io::Result<()> {
    let site = Site::new(&options.root, options.small_file, options.cache_size)?;
    log::info!("serving {}", site.root().display());
    let mut reactor = Reactor::new()?;
    let server = HttpServer::new(site, options.settings);
    let service = Service::new(&mut reactor, server, options.config);
    service.shutdown_on_signal(&mut reactor, options.grace)?;
    let id = service
        .listen(&mut reactor, options.addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", options.addr)))?;
    common::announce(format_args!("listening on {}", service.local_addr(id)?));
    reactor.run()
}
