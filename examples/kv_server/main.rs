//! A Redis-compatible key-value store with replication: the seeds' last
//! advanced exercise (004, "a simple distributed key-value store"), on the
//! reactor, speaking RESP2 and RESP3, so that every Redis client can use it.
//!
//! Run:   cargo run --example kv_server -- --addr 127.0.0.1:6380
//! Talk:  redis-cli -p 6380 set greeting hello     (or: nc 127.0.0.1 6380, then GET greeting)
//! TLS:   cargo run --example kv_server -- --tls-addr 127.0.0.1:6390 \
//!            --cert examples/demo-tls/cert.pem --key examples/demo-tls/key.pem
//!        redis-cli -p 6390 --tls --cacert examples/demo-tls/cert.pem ping
//! Copy:  cargo run --example kv_server -- --addr 127.0.0.1:6381 --replica-of 127.0.0.1:6380
//!
//! The files: `db.rs` (the keyspace, expiry, eviction), `commands.rs` (the
//! data commands), `server.rs` (the handler and the connection commands),
//! `replication.rs` and `backlog.rs` (primaries and replicas), `snapshot.rs`
//! (the file format), `info.rs` (`INFO`). `docs/kv.md` is the manual.

mod backlog;
mod commands;
#[path = "../common/mod.rs"]
mod common;
mod db;
mod info;
mod replication;
mod server;
mod snapshot;

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use log::{error, info};
use reactor::Reactor;
use reactor::codec::resp::Limits;
use reactor::service::{Config, Service};

use crate::db::{Db, Policy};
use crate::server::{Kv, Settings};

/// The version we announce in `HELLO` and `INFO`: the Redis release whose
/// commands and error texts we follow (clients gate features on it).
pub const REDIS_VERSION: &str = "7.0.15";

/// Bytes written to one connection per flush, and the queued output above
/// which a client's pipeline waits for it to read.
const WRITE_BUDGET: usize = 1 << 20;

const USAGE: &str = "\
kv_server: a Redis-compatible key-value store on the reactor, with replication

usage: kv_server [options]

options:
  --addr HOST:PORT              listen address (default 127.0.0.1:6380)
  --max-clients N               most clients at once (default 10000)
  --requirepass PASSWORD        clients must AUTH (or HELLO ... AUTH) first
  --maxmemory SIZE              limit on the dataset's estimated bytes (default 0: none)
  --maxmemory-policy POLICY     noeviction (default: writes get -OOM) or allkeys-lru
  --max-bulk SIZE               longest bulk string (default 512mb)
  --max-array N                 most elements in one command (default 1048576)
  --client-output-limit SIZE    a client's unsent replies before it is dropped (default 64mb)
  --tls-addr HOST:PORT          also listen for TLS here (with --cert and --key)
  --cert FILE                   the TLS certificate chain, PEM (the server's first)
  --key FILE                    the TLS private key, PEM
  --snapshot PATH               loaded at start; written on SAVE, SHUTDOWN and SIGTERM
  --replica-of HOST:PORT        follow this primary (reads only; writes get -READONLY)
  --primary-auth PASSWORD       the primary's --requirepass, for --replica-of / REPLICAOF
  --repl-backlog SIZE           the stream kept for replicas that return (default 1mb)
  --repl-output-limit SIZE      a replica's unsent stream before it is dropped (default 256mb)
  -h, --help                    show this text

Sizes as Redis writes them (1k = 1000, 1kb = 1024, 64mb, 1gb) or as
1KiB, 64MiB, 1GiB; a bare number is bytes.
";

/// A size as Redis's configuration writes it (`k`, `kb`, `m`, `mb`, `g`,
/// `gb`, where the `b` forms are powers of 1024 and the others of 1000), or
/// as this crate's other programs do (`KiB`, `MiB`, `GiB`).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| "expected a size like 64mb, 64MiB or 1048576".to_string())?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1000,
        "kb" | "kib" => 1 << 10,
        "m" => 1_000_000,
        "mb" | "mib" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit '{other}' (use kb, mb, gb or KiB, MiB, GiB)"
            ));
        }
    };
    number
        .checked_mul(scale)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| "too large".to_string())
}

struct Args {
    addr: SocketAddr,
    tls: Option<(SocketAddr, PathBuf, PathBuf)>,
    settings: Settings,
    replica_of: Option<SocketAddr>,
}

fn parse_args() -> Args {
    let mut addr = "127.0.0.1:6380".to_string();
    let mut settings = Settings {
        port: 0,
        requirepass: None,
        maxmemory: 0,
        policy: Policy::NoEviction,
        limits: Limits::default(),
        max_clients: 10_000,
        snapshot: None,
        client_output_limit: 64 << 20,
        repl_output_limit: 256 << 20,
        repl_backlog: 1 << 20,
        primary_auth: None,
    };
    let mut replica_of = None;
    let (mut tls_addr, mut cert, mut key) = (None, None, None);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        let size = |s: &str| parse_size(s);
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("max-clients") => {
                settings.max_clients = common::value(&mut parser, "max-clients", common::count)
            }
            Long("requirepass") => {
                let pass = common::value(&mut parser, "requirepass", common::text);
                settings.requirepass = Some(pass.into_bytes());
            }
            Long("maxmemory") => settings.maxmemory = common::value(&mut parser, "maxmemory", size),
            Long("maxmemory-policy") => {
                settings.policy = common::value(&mut parser, "maxmemory-policy", Policy::parse)
            }
            Long("max-bulk") => {
                settings.limits.max_bulk = common::value(&mut parser, "max-bulk", size);
                // The snapshot frames a value with 32 bits of length.
                if settings.limits.max_bulk > u32::MAX as usize {
                    common::usage_error(
                        "--max-bulk is at most 4GiB - 1 (the snapshot's lengths are 32 bits)",
                    );
                }
            }
            Long("max-array") => {
                settings.limits.max_array = common::value(&mut parser, "max-array", common::count)
            }
            Long("client-output-limit") => {
                settings.client_output_limit =
                    common::value(&mut parser, "client-output-limit", size)
            }
            Long("tls-addr") => {
                tls_addr = Some(common::value(&mut parser, "tls-addr", common::text))
            }
            Long("cert") => cert = Some(common::value(&mut parser, "cert", common::path)),
            Long("key") => key = Some(common::value(&mut parser, "key", common::path)),
            Long("snapshot") => {
                let path = common::value(&mut parser, "snapshot", common::text);
                settings.snapshot = Some(PathBuf::from(path));
            }
            Long("replica-of") => {
                replica_of = Some(common::value(&mut parser, "replica-of", common::resolve))
            }
            Long("primary-auth") => {
                let pass = common::value(&mut parser, "primary-auth", common::text);
                settings.primary_auth = Some(pass.into_bytes());
            }
            Long("repl-backlog") => {
                settings.repl_backlog = common::value(&mut parser, "repl-backlog", size).max(1)
            }
            Long("repl-output-limit") => {
                settings.repl_output_limit = common::value(&mut parser, "repl-output-limit", size)
            }
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    let tls = match (tls_addr, cert, key) {
        (Some(addr), Some(cert), Some(key)) => Some((common::resolve_addr(&addr), cert, key)),
        (Some(_), _, _) => common::usage_error("--tls-addr needs --cert and --key"),
        (None, None, None) => None,
        (None, _, _) => common::usage_error("--cert and --key need --tls-addr"),
    };
    Args {
        addr: common::resolve_addr(&addr),
        tls,
        settings,
        replica_of,
    }
}

/// Keeps glibc's allocator from giving large buffers back to the kernel at
/// every free: a reply of a few hundred KiB queued behind a slow socket is
/// a fresh `mmap` otherwise, and every page of it a fault when it is
/// filled (a quarter of the CPU time on 16 KiB pipelined `GET`s). Redis
/// avoids the same cost by linking jemalloc.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn main() {
    tune_allocator();
    common::init_logging();
    let args = parse_args();
    if let Err(e) = run(args) {
        common::fail(e);
    }
}

fn run(args: Args) -> io::Result<()> {
    let Args {
        addr,
        tls,
        mut settings,
        replica_of,
    } = args;
    // A snapshot that does not load stops the start: nothing is half loaded.
    let db = match &settings.snapshot {
        Some(path) => match snapshot::load(path, db::unix_ms()) {
            Ok(Some(db)) => {
                info!("loaded {} keys from {}", db.len(), path.display());
                db
            }
            Ok(None) => Db::new(),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot load snapshot {}: {e}", path.display()),
                ));
            }
        },
        None => Db::new(),
    };
    // The certificate and key are read before anything listens: a bad file
    // stops the server before it announces itself.
    let tls = match tls {
        Some((addr, cert, key)) => Some((addr, reactor::tls::server_config(&cert, &key)?)),
        None => None,
    };
    let mut reactor = Reactor::new()?;
    let config = Config::default()
        .max_connections(settings.max_clients)
        .reject_message(b"-ERR max number of clients reached\r\n")
        .input_limit(settings.limits.max_bulk.saturating_add(1 << 20))
        .output_limit(settings.client_output_limit.max(settings.repl_output_limit))
        // A pipeline of 16 replies of 16 KiB is 256 KiB: written in one call
        // rather than in 64 KiB pieces with a copy of the rest to the
        // backlog, and without pausing the client's reading half-way.
        .write_budget(WRITE_BUDGET)
        .high_water(WRITE_BUDGET)
        .low_water(WRITE_BUDGET / 4);
    let listen_settings = settings.clone();
    let service = Service::new(&mut reactor, Kv::new(listen_settings, db), config);
    let listener = service
        .listen(&mut reactor, addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let bound = service.tcp_addr(listener)?;
    settings.port = bound.port();
    service.with(&mut reactor, |kv, conns| {
        kv.settings.port = bound.port();
        if let Some(primary) = replica_of {
            kv.follow(conns, primary);
        }
    })?;
    let ticker = service.clone();
    reactor.call_every(Duration::from_millis(100), move |reactor| {
        let _ = ticker.with(reactor, |kv, conns| kv.tick(conns));
    });
    // As Redis: when the snapshot cannot be written, the server does not
    // stop on the signal and lose the data; it says so, and a second signal
    // stops it without saving (and exits 1).
    let saver = service.clone();
    let refused_once = Rc::new(Cell::new(false));
    let unsaved = Rc::clone(&refused_once);
    reactor::signal::on_shutdown_signal(&mut reactor, move |reactor, signal| {
        if refused_once.get() {
            error!("{}: stopping without saving", signal.name());
            reactor.stop();
            return;
        }
        info!("{}: saving and shutting down", signal.name());
        let saved = saver.with(reactor, |kv, _| {
            kv.settings.snapshot.is_none() || kv.save().is_ok()
        });
        if saved.unwrap_or(false) {
            reactor.stop();
        } else {
            error!(
                "{}: not stopping, the snapshot could not be written; signal again to stop without saving",
                signal.name()
            );
            refused_once.set(true);
        }
    })?;
    common::announce(format_args!("listening on {bound}"));
    if let Some((addr, tls)) = tls {
        let id = service
            .listen_tls(&mut reactor, addr, tls)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        common::announce(format_args!("listening on {} (TLS)", service.tcp_addr(id)?));
    }
    reactor.run()?;
    if unsaved.get() {
        return Err(io::Error::other("stopped without saving the snapshot"));
    }
    Ok(())
}
