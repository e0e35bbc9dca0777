//! A chat server with rooms, on one thread: a line protocol for `nc` and
//! `telnet`, an NDJSON protocol (the seeds' JSON chat), and with
//! `--web-addr` a page and a WebSocket for browsers, on listeners that share
//! the same users and rooms.
//!
//! Run:   cargo run --release --example chat_server -- --web-addr 127.0.0.1:8088
//! Talk:  nc 127.0.0.1 9999                       (line protocol: type your name)
//!        cargo run --example chat_client -- --name alice
//!        nc 127.0.0.1 8083                       (NDJSON, one object per line)
//!        http://127.0.0.1:8088/                  (the page, in a browser)
//!
//! `docs/chat.md` describes both protocols with sample sessions.

mod accounts;
mod chat;
#[path = "../common/mod.rs"]
mod common;
mod protocol;
mod text;
mod web;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use log::info;
use reactor::Reactor;
use reactor::service::{Config, Service};

use chat::{Chat, Limits};

const USAGE: &str = "\
chat_server: a chat server with rooms, for line clients (nc, telnet), NDJSON clients and browsers

usage: chat_server [OPTIONS]

options:
  --addr HOST:PORT        line protocol listener (default 127.0.0.1:9999)
  --json-addr HOST:PORT   NDJSON protocol listener (default 127.0.0.1:8083)
  --tls-addr HOST:PORT    line protocol over TLS (default off; needs --cert and --key)
  --cert FILE             the TLS certificate chain, PEM
  --key FILE              the TLS private key, PEM
  --web-addr HOST:PORT    the chat page and its WebSocket (/ws) for browsers (default off)
  --web-tls-addr HOST:PORT
                          the page and wss:// over TLS (default off; needs --cert and --key)
  --web-origin ORIGIN     an Origin a WebSocket handshake may carry, e.g. http://chat.example:8088
                          (repeatable; '*' allows any; default: each web listener's own address
                          and localhost, same port, and for 0.0.0.0 or [::] the host the page
                          was loaded from); a handshake without Origin is accepted
  --ws-ping DURATION      ping a WebSocket user silent this long (default 30s; 'off')
  --ws-pong-timeout DURATION
                          close a WebSocket user whose pong is this late (default 10s)
  --users FILE            accounts: 'name:argon2id-hash' lines; a registered name can only
                          be used by logging in with its password over TLS
  --hash-password NAME    read a password from standard input and print the line to add
                          to a --users file, then exit
  --max-clients N         clients at once over all the listeners (default 10000)
  --max-rooms N           rooms at once, the lobby included (default 1000)
  --max-line SIZE         longest line, or WebSocket message, accepted (default 4096)
  --output-limit SIZE     a client with this much unread output is disconnected (default 4MiB)
  --output-budget SIZE    over this much output queued in all, no input is read (default 256MiB)
  --idle-timeout DURATION disconnect clients silent this long (default off)
  --line-timeout DURATION a line (or the name) not finished this long after its first
                          byte (or after connecting) gets an error and a close (default 30s)
  --grace DURATION        on SIGINT/SIGTERM, time allowed to flush (default 5s)

cluster (nodes joined by Redis pub/sub; docs/chat.md, 'Running a cluster'):
  --redis HOST:PORT       join the cluster through this Redis (default off: a lone server)
  --node-id ID            this node's name in Redis (default HOSTNAME-PID)
  --redis-password-file FILE
                          log in to Redis with the password in FILE (first line)
  --redis-queue N         messages waiting for Redis at most; the oldest are dropped
                          beyond (default 100000)
  --redis-claim-ttl DURATION
                          a name claim and a node's presence live this long unrefreshed:
                          a dead node's users leave /who within it (default 30s)
  --redis-timeout DURATION
                          no reply from Redis this long (it hangs, or the network drops
                          packets) counts as a disconnect; idle links are checked with
                          PING every half of it (default 5s)
  -h, --help              show this text

Prints 'listening on ADDR' for each listener. RUST_LOG=info logs joins, leaves
and disconnects; RUST_LOG=debug logs every message.
";

struct Options {
    addr: SocketAddr,
    json_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    users: Option<PathBuf>,
    web_addr: Option<SocketAddr>,
    web_tls_addr: Option<SocketAddr>,
    web_origins: Vec<String>,
    ws_ping: Option<Duration>,
    ws_pong_timeout: Duration,
    limits: Limits,
    config: Config,
    grace: Duration,
    cluster: Option<chat::cluster::Settings>,
}

fn parse_options() -> Options {
    let mut addr = "127.0.0.1:9999".to_string();
    let mut json_addr = "127.0.0.1:8083".to_string();
    let mut limits = Limits {
        max_rooms: 1000,
        max_line: 4096,
    };
    let mut max_clients = 10_000;
    let mut output_limit = 4 << 20;
    let mut output_budget = 256 << 20;
    let mut idle_timeout = None;
    let mut line_timeout = Some(Duration::from_secs(30));
    let mut grace = Duration::from_secs(5);
    let mut tls_addr = None;
    let mut cert = None;
    let mut key = None;
    let mut users = None;
    let mut web_addr = None;
    let mut web_tls_addr = None;
    let mut web_origins = Vec::new();
    let mut ws_ping = Some(Duration::from_secs(30));
    let mut ws_pong_timeout = Duration::from_secs(10);
    let mut redis: Option<String> = None;
    let mut node_id = None;
    let mut redis_password_file: Option<PathBuf> = None;
    let mut redis_queue = 100_000;
    let mut claim_ttl = Duration::from_secs(30);
    let mut redis_timeout = Duration::from_secs(5);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("json-addr") => json_addr = common::value(&mut parser, "json-addr", common::text),
            Long("max-clients") => {
                max_clients = common::value(&mut parser, "max-clients", common::count)
            }
            Long("max-rooms") => {
                limits.max_rooms = common::value(&mut parser, "max-rooms", common::count)
            }
            Long("max-line") => {
                limits.max_line = common::value(&mut parser, "max-line", common::parse_size)
            }
            Long("output-limit") => {
                output_limit = common::value(&mut parser, "output-limit", common::parse_size)
            }
            Long("output-budget") => {
                output_budget = common::value(&mut parser, "output-budget", common::parse_size)
            }
            Long("idle-timeout") => {
                idle_timeout =
                    common::value(&mut parser, "idle-timeout", common::parse_optional_duration)
            }
            Long("line-timeout") => {
                line_timeout =
                    common::value(&mut parser, "line-timeout", common::parse_optional_duration)
            }
            Long("web-addr") => {
                web_addr = Some(common::value(&mut parser, "web-addr", common::text))
            }
            Long("web-tls-addr") => {
                web_tls_addr = Some(common::value(&mut parser, "web-tls-addr", common::text))
            }
            Long("web-origin") => {
                let origin: String = common::value(&mut parser, "web-origin", common::text);
                web_origins.push(origin.trim_end_matches('/').to_ascii_lowercase());
            }
            Long("ws-ping") => {
                ws_ping = common::value(&mut parser, "ws-ping", common::parse_optional_duration)
            }
            Long("ws-pong-timeout") => {
                ws_pong_timeout =
                    common::value(&mut parser, "ws-pong-timeout", common::parse_duration)
            }
            Long("tls-addr") => {
                tls_addr = Some(common::value(&mut parser, "tls-addr", common::text))
            }
            Long("cert") => cert = Some(common::value(&mut parser, "cert", common::path)),
            Long("key") => key = Some(common::value(&mut parser, "key", common::path)),
            Long("users") => users = Some(common::value(&mut parser, "users", common::path)),
            Long("hash-password") => {
                let name: String = common::value(&mut parser, "hash-password", common::text);
                hash_password(&name);
            }
            Long("grace") => grace = common::value(&mut parser, "grace", common::parse_duration),
            Long("redis") => redis = Some(common::value(&mut parser, "redis", common::text)),
            Long("node-id") => node_id = Some(common::value(&mut parser, "node-id", common::text)),
            Long("redis-password-file") => {
                redis_password_file = Some(common::value(
                    &mut parser,
                    "redis-password-file",
                    common::path,
                ))
            }
            Long("redis-queue") => {
                redis_queue = common::value(&mut parser, "redis-queue", common::count)
            }
            Long("redis-timeout") => {
                redis_timeout = common::value(&mut parser, "redis-timeout", common::parse_duration)
            }
            Long("redis-claim-ttl") => {
                claim_ttl = common::value(&mut parser, "redis-claim-ttl", common::parse_duration)
            }
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    for (option, value) in [
        ("max-clients", max_clients),
        ("max-rooms", limits.max_rooms),
        ("max-line", limits.max_line),
        ("redis-queue", redis_queue),
    ] {
        if value == 0 {
            common::usage_error(format!("--{option} must be at least 1"));
        }
    }
    let resolve = |option: &str, a: &str| {
        common::resolve(a).unwrap_or_else(|e| common::usage_error(format!("--{option} {a}: {e}")))
    };
    let config = Config::default()
        .max_connections(max_clients)
        .reject_message(b"error: server full\n")
        .output_limit(output_limit)
        .output_budget(Some(output_budget))
        .idle_timeout(idle_timeout)
        // Slowloris: a trickle of bytes that never finishes a line (or a
        // name) must not hold a slot for ever, as `idle_timeout` would let it.
        .unfinished_input_timeout(line_timeout)
        // A broadcast makes more output than input (the sender's name, one
        // copy per member): let each member's flush move more per turn than
        // a sender's read brings in.
        .write_budget(256 * 1024)
        // The line decoder consumes overlong lines, so what waits unconsumed
        // is at most one line.
        .input_limit((limits.max_line + 2).max(64 * 1024));
    // Redis's replies are bounded by the cluster, not by a line: `/who` of a
    // room of thousands, or a message whose text JSON escapes to six bytes a
    // character. Users are not affected: their line decoder consumes
    // overlong lines, so what a user leaves unconsumed is one line at most.
    let config = match redis {
        Some(_) => {
            let limit = config
                .get_input_limit()
                .max(cluster_input_limit(limits.max_line));
            config.input_limit(limit)
        }
        None => config,
    };
    if tls_addr.is_some() && (cert.is_none() || key.is_none()) {
        common::usage_error("--tls-addr needs --cert and --key");
    }
    if web_tls_addr.is_some() && (cert.is_none() || key.is_none()) {
        common::usage_error("--web-tls-addr needs --cert and --key");
    }
    if users.is_some() && tls_addr.is_none() {
        common::usage_error("--users needs --tls-addr: registered names log in over TLS");
    }
    let cluster = cluster_settings(
        redis.map(|a| resolve("redis", &a)),
        node_id,
        redis_password_file,
        redis_queue,
        claim_ttl,
        redis_timeout,
        limits.max_line,
    );
    Options {
        addr: resolve("addr", &addr),
        json_addr: resolve("json-addr", &json_addr),
        tls_addr: tls_addr.map(|a: String| resolve("tls-addr", &a)),
        cert,
        key,
        users,
        web_addr: web_addr.map(|a: String| resolve("web-addr", &a)),
        web_tls_addr: web_tls_addr.map(|a: String| resolve("web-tls-addr", &a)),
        web_origins,
        ws_ping,
        ws_pong_timeout,
        limits,
        config,
        grace,
        cluster,
    }
}

/// The largest Redis reply or message a node takes: 16 MiB, or more for a
/// `--max-line` whose text escapes to more.
pub fn cluster_input_limit(max_line: usize) -> usize {
    (16 << 20).max(max_line.saturating_mul(6).saturating_add(64 * 1024))
}

/// The `--redis` options, checked (exit 2 on a bad one).
fn cluster_settings(
    addr: Option<SocketAddr>,
    node_id: Option<String>,
    password_file: Option<PathBuf>,
    queue: usize,
    ttl: Duration,
    timeout: Duration,
    max_line: usize,
) -> Option<chat::cluster::Settings> {
    let Some(addr) = addr else {
        if node_id.is_some() || password_file.is_some() {
            common::usage_error("--node-id and --redis-password-file need --redis");
        }
        return None;
    };
    let node = node_id.unwrap_or_else(chat::cluster::default_node_id);
    if node.is_empty()
        || node
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        common::usage_error(format!(
            "--node-id '{node}': no spaces or control characters"
        ));
    }
    if ttl < Duration::from_secs(1) {
        common::usage_error("--redis-claim-ttl must be at least 1s");
    }
    let password = password_file.map(|path| match std::fs::read_to_string(&path) {
        Ok(text) => text.lines().next().unwrap_or("").as_bytes().to_vec(),
        Err(e) => common::usage_error(format!("--redis-password-file {}: {e}", path.display())),
    });
    Some(chat::cluster::Settings {
        addr,
        node,
        password,
        queue,
        ttl,
        timeout,
        max_reply: cluster_input_limit(max_line),
    })
}

/// `--hash-password NAME`: the users-file line for NAME, from a password
/// read on standard input (twice, without echo, when it is a terminal).
fn hash_password(name: &str) -> ! {
    let result = accounts::read_password_twice().and_then(|password| {
        accounts::hash_line(name, &password)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    });
    match result {
        Ok(line) => {
            println!("{line}");
            std::process::exit(0)
        }
        Err(e) => common::fail(e),
    }
}

fn main() {
    common::main(parse_options, run);
}

fn run(options: Options) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let max_line = options.limits.max_line;
    let service = Service::new(&mut reactor, Chat::new(options.limits), options.config);

    // SIGINT/SIGTERM: tell everyone, flush, close, exit 0. A second signal
    // stops at once. Installed before the first `listening on`: whoever waits
    // for that line may signal at once.
    service.shutdown_on_signal_with(&mut reactor, options.grace, |chat, conns| {
        chat.cluster_shutdown(conns);
        chat.announce_shutdown(conns)
    })?;

    let listen = |reactor: &mut Reactor, addr: SocketAddr| {
        let id = service
            .listen(reactor, addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        common::announce(format_args!("listening on {}", service.local_addr(id)?));
        Ok::<_, io::Error>(id)
    };
    // Files are read before anything listens: a bad certificate, key or
    // users file stops the server before it announces itself.
    let tls = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => Some(reactor::tls::server_config(cert, key)?),
        _ => None,
    };
    let accounts = match &options.users {
        Some(path) => Some((accounts::Accounts::load(path)?, path)),
        None => None,
    };
    listen(&mut reactor, options.addr)?;
    let json = listen(&mut reactor, options.json_addr)?;
    if let (Some(addr), Some(tls)) = (options.tls_addr, tls) {
        let id = service
            .listen_tls(&mut reactor, addr, tls)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        service.with(&mut reactor, |chat, _| chat.set_tls_listener(id))?;
        common::announce(format_args!("listening on {} (TLS)", service.tcp_addr(id)?));
    }
    let web_tls = match (options.web_tls_addr, &options.cert, &options.key) {
        (Some(addr), Some(cert), Some(key)) => {
            Some((addr, reactor::tls::server_config(cert, key)?))
        }
        _ => None,
    };
    let mut web = Vec::new();
    if let Some(addr) = options.web_addr {
        let id = service
            .listen(&mut reactor, addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let local = service.tcp_addr(id)?;
        common::announce(format_args!("listening on {local} (web)"));
        web.push((id, local, false));
    }
    if let Some((addr, tls)) = web_tls {
        let id = service
            .listen_tls(&mut reactor, addr, tls)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let local = service.tcp_addr(id)?;
        common::announce(format_args!("listening on {local} (web, TLS)"));
        web.push((id, local, true));
    }
    if !web.is_empty() {
        let defaults = options.web_origins.is_empty();
        let origins = if defaults {
            web.iter()
                .flat_map(|&(_, addr, tls)| web::WebConfig::default_origins(addr, tls))
                .collect()
        } else {
            options.web_origins
        };
        let config = web::WebConfig {
            origins,
            same_host: defaults && web.iter().any(|(_, addr, _)| addr.ip().is_unspecified()),
            ping_after: options.ws_ping,
            pong_timeout: options.ws_pong_timeout,
            max_message: max_line,
        };
        if let Some(period) = config.sweep_period() {
            let sweeper = service.clone();
            reactor.call_every(period, move |reactor| {
                let _ = sweeper.with(reactor, |chat, conns| chat.web_sweep(conns));
            });
        }
        service.with(&mut reactor, |chat, _| {
            for &(id, _, _) in &web {
                chat.add_web_listener(id, config.clone());
            }
        })?;
    }
    if let Some((accounts, path)) = accounts {
        info!(
            "{} registered name(s) from {}",
            accounts.len(),
            path.display()
        );
        let me = service.handle(&mut reactor);
        let verifier = accounts::Verifier::start(me.clone())?;
        service.with(&mut reactor, |chat, _| {
            chat.set_accounts(accounts, verifier, me)
        })?;
    }
    for &(id, _, _) in &web {
        service.set_reject_message(id, Some(&web::full_response()))?;
    }
    service.with(&mut reactor, |chat, _| chat.set_json_listener(json))?;
    if let Some(settings) = options.cluster {
        info!(
            "cluster: node {} through Redis at {}",
            settings.node, settings.addr
        );
        let me = service.handle(&mut reactor);
        service.with(&mut reactor, |chat, _| {
            chat.set_cluster(chat::cluster::Cluster::new(settings), me)
        })?;
        // The Redis clients' timer: reconnects, claims' waits and refresh.
        let ticker = service.clone();
        reactor.call_every(reactor::redis::TICK, move |reactor| {
            let _ = ticker.with(reactor, |chat, conns| chat.cluster_tick(conns));
        });
    }
    service.set_reject_message(
        json,
        Some(b"{\"type\":\"error\",\"message\":\"server full\"}\n".as_slice()),
    )?;

    reactor.run()?;
    let stats = service.stats()?;
    info!(
        "served {} client(s): {} bytes in, {} bytes out",
        stats.accepted, stats.bytes_in, stats.bytes_out
    );
    Ok(())
}
