//! A multi-client echo server on the connection layer (layer 3): the
//! `Handler` is a dozen lines, the service does the buffering, backpressure,
//! limits and graceful shutdown.
//!
//! Run:   cargo run --release --example echo_server
//! Talk:  nc 127.0.0.1 10000        (or: cargo run --example multiconn_client)
//!
//! Options let it listen on several TCP addresses, TLS addresses and a Unix
//! socket at once, upper-case its echo, cap connections, and close idle ones.
//!
//! TLS:   cargo run --example echo_server -- --tls-addr 127.0.0.1:10443 \
//!            --cert examples/demo-tls/cert.pem --key examples/demo-tls/key.pem
//!        openssl s_client -connect 127.0.0.1:10443 -quiet

mod common;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reactor::Reactor;
use reactor::service::{Config, ConnId, Connections, Handler, Service};

const USAGE: &str = "\
echo_server: a multi-client echo server on the reactor's connection layer

usage: echo_server [OPTIONS]

options:
  --addr HOST:PORT        listen here (default 127.0.0.1:10000); repeat for more;
                          IPv6 as [::1]:PORT, names as localhost:PORT
  --dual-stack PORT       listen on [::]:PORT, for IPv4 and IPv6 clients at once
  --unix PATH             also listen on a Unix-domain socket at PATH
  --tls-addr HOST:PORT    also listen for TLS here (with --cert and --key); repeat for more
  --cert FILE             the TLS certificate chain, PEM (the server's first)
  --key FILE              the TLS private key, PEM
  --upper                 echo ASCII letters upper-cased (like Python's bytes.upper())
  --max-conns N           most clients at once; more are told so and closed (default 10000)
  --idle-timeout DURATION close a client idle this long, e.g. 30s (default off)
  --output-limit SIZE     close a client with this much unread echo queued (default 64MiB)
  --grace DURATION        on SIGINT/SIGTERM, time allowed to flush before closing (default 5s)
  -h, --help              show this text

Durations: 500ms, 30s, 2m. Sizes: 64KiB, 4MiB, or bytes.
Prints 'listening on ADDR' for each listener, and at exit 'served N connection(s),
IN bytes in, OUT bytes out'. RUST_LOG=debug shows every
accept, read, write and close.
";

/// The echo protocol. `upper` applies `bytes.upper()`: ASCII letters only,
/// every other byte unchanged, so the echo has exactly the input's length.
struct Echo {
    upper: bool,
    /// Reused for the upper-cased copy: no allocation per message.
    scratch: Vec<u8>,
}

impl Handler for Echo {
    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let reply = if self.upper {
            self.scratch.clear();
            self.scratch.extend(data.iter().map(u8::to_ascii_uppercase));
            &self.scratch[..]
        } else {
            data
        };
        // Fails only if the connection is closing or went over its output
        // limit (the service has closed it and logged why).
        let _ = conns.send(id, reply);
        data.len()
    }
}

struct Options {
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    dual_stack: Option<u16>,
    unix: Option<PathBuf>,
    upper: bool,
    config: Config,
    grace: Duration,
}

fn parse_options() -> Options {
    let mut addrs = Vec::new();
    let mut tls_addrs = Vec::new();
    let mut options = Options {
        addrs: Vec::new(),
        tls_addrs: Vec::new(),
        cert: None,
        key: None,
        dual_stack: None,
        unix: None,
        upper: false,
        config: Config::default().reject_message(b"error: server full\n"),
        grace: Duration::from_secs(5),
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("addr") => addrs.push(common::value(&mut parser, "addr", common::text)),
            Long("dual-stack") => {
                options.dual_stack = Some(common::value(&mut parser, "dual-stack", common::port));
            }
            Long("unix") => {
                options.unix = Some(common::value(&mut parser, "unix", common::text).into())
            }
            Long("tls-addr") => {
                tls_addrs.push(common::value(&mut parser, "tls-addr", common::text))
            }
            Long("cert") => {
                options.cert = Some(common::value(&mut parser, "cert", common::text).into())
            }
            Long("key") => {
                options.key = Some(common::value(&mut parser, "key", common::text).into())
            }
            Long("upper") => options.upper = true,
            Long("max-conns") => {
                let n = common::value(&mut parser, "max-conns", common::count);
                if n == 0 {
                    common::usage_error("--max-conns must be at least 1");
                }
                options.config = options.config.max_connections(n);
            }
            Long("idle-timeout") => {
                let d = common::value(&mut parser, "idle-timeout", common::parse_optional_duration);
                options.config = options.config.idle_timeout(d);
            }
            Long("output-limit") => {
                let n = common::value(&mut parser, "output-limit", common::parse_size);
                options.config = options.config.output_limit(n);
            }
            Long("grace") => {
                options.grace = common::value(&mut parser, "grace", common::parse_duration)
            }
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    if !tls_addrs.is_empty() && (options.cert.is_none() || options.key.is_none()) {
        common::usage_error("--tls-addr needs --cert and --key");
    }
    if tls_addrs.is_empty() && (options.cert.is_some() || options.key.is_some()) {
        common::usage_error("--cert and --key need --tls-addr");
    }
    if addrs.is_empty()
        && tls_addrs.is_empty()
        && options.dual_stack.is_none()
        && options.unix.is_none()
    {
        addrs.push("127.0.0.1:10000".to_string());
    }
    // Name resolution blocks: done here, before the loop exists.
    options.addrs = addrs.iter().map(|a| common::resolve_addr(a)).collect();
    options.tls_addrs = tls_addrs.iter().map(|a| common::resolve_addr(a)).collect();
    options
}

fn main() {
    common::init_logging();
    let options = parse_options();
    if let Err(e) = run(options) {
        common::fail(e);
    }
}

fn run(options: Options) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let echo = Echo {
        upper: options.upper,
        scratch: Vec::new(),
    };
    let service = Service::new(&mut reactor, echo, options.config.clone());

    // SIGINT/SIGTERM: stop accepting, flush every client, close, exit 0.
    // A second signal stops at once. Installed before the first
    // `listening on`: whoever waits for that line may signal at once.
    service.shutdown_on_signal(&mut reactor, options.grace)?;

    // The certificate and key are read before anything listens: a bad file
    // stops the server before it announces itself.
    let tls = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) if !options.tls_addrs.is_empty() => {
            Some(reactor::tls::server_config(cert, key)?)
        }
        _ => None,
    };
    for addr in &options.addrs {
        let id = service
            .listen(&mut reactor, *addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        common::announce(format_args!("listening on {}", service.local_addr(id)?));
    }
    if let Some(tls) = tls {
        for addr in &options.tls_addrs {
            let id = service
                .listen_tls(&mut reactor, *addr, tls.clone())
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            common::announce(format_args!("listening on {} (TLS)", service.tcp_addr(id)?));
        }
    }
    if let Some(port) = options.dual_stack {
        let listener = reactor::socket::tcp_listener_dual_stack(port, options.config.get_backlog())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on [::]:{port}: {e}")))?;
        let id = service.add_tcp_listener(&mut reactor, listener)?;
        common::announce(format_args!("listening on {}", service.local_addr(id)?));
    }
    if let Some(path) = &options.unix {
        let id = service.listen_unix(&mut reactor, path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", path.display()),
            )
        })?;
        common::announce(format_args!("listening on {}", service.local_addr(id)?));
    }

    reactor.run()?;
    // On stdout, for whoever ran it: a script can check that every byte it
    // was echoed arrived.
    let stats = service.stats()?;
    common::announce(format_args!(
        "served {} connection(s), {} bytes in, {} bytes out",
        stats.accepted, stats.bytes_in, stats.bytes_out
    ));
    Ok(())
}
