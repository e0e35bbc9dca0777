//! A file transfer server on the reactor: many clients at once, downloads
//! and uploads interleaved on one thread, files streamed in chunks (never
//! loaded whole), uploads published by an atomic rename. The seed's
//! `file_server` and its exercise (uploads, a progress bar, many clients),
//! without its `os.path.join` traversal.
//!
//! Run:   mkdir -p /tmp/files && cargo run --example file_server -- --dir /tmp/files
//! Talk:  cargo run --example file_client -- put Cargo.toml
//!        cargo run --example file_client -- list
//!        cargo run --example file_client -- get Cargo.toml -o /tmp/copy.toml
//!        printf 'LIST\n' | nc -q1 127.0.0.1 9000
//!
//! The protocol is in `docs/file-transfer.md` and `protocol.rs`; the
//! handler in `server.rs`; the directory (names, temporary files, rename)
//! in `store.rs`.

#[path = "../common/mod.rs"]
mod common;
mod protocol;
mod server;
mod store;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reactor::Reactor;
use reactor::service::{Config, Service};

use server::{FileServer, Limits};
use store::Store;

const USAGE: &str = "\
file_server: serve the files of one directory: GET, PUT and LIST over TCP

usage: file_server --dir DIR [OPTIONS]

options:
  --addr HOST:PORT        listen here (default 127.0.0.1:9000)
  --dir DIR               the directory served (required; it must exist)
  --max-file SIZE         largest upload (default 4GiB)
  --max-files N           most files in the directory (default 10000)
  --max-conns N           most clients at once; more are told so and closed (default 1000)
  --discard-limit SIZE    a refused upload's bytes read and dropped before the ERROR,
                          so that it reaches the client (default 64MiB)
  --idle-timeout DURATION close a client idle this long (default 60s; off)
  --grace DURATION        on SIGINT/SIGTERM, time allowed to flush what is queued; transfers
                          still running are cut (an upload is removed) (default 5s)
  -h, --help              show this text

Prints 'listening on ADDR'. The protocol is in docs/file-transfer.md.
RUST_LOG=debug shows every request, accept, read, write and close.
";

struct Options {
    addr: SocketAddr,
    dir: PathBuf,
    max_files: usize,
    limits: Limits,
    config: Config,
    grace: Duration,
}

fn parse_options() -> Options {
    let mut addr = "127.0.0.1:9000".to_string();
    let mut dir = None;
    let mut max_file = 4u64 << 30;
    let mut max_files = 10_000;
    let mut max_conns = 1000;
    let mut discard_limit = 64u64 << 20;
    let mut idle = Some(Duration::from_secs(60));
    let mut grace = Duration::from_secs(5);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("dir") => dir = Some(common::value(&mut parser, "dir", common::path)),
            Long("max-file") => {
                max_file = common::value(&mut parser, "max-file", common::parse_size) as u64
            }
            Long("max-files") => max_files = common::value(&mut parser, "max-files", common::count),
            Long("max-conns") => max_conns = common::value(&mut parser, "max-conns", common::count),
            Long("discard-limit") => {
                discard_limit =
                    common::value(&mut parser, "discard-limit", common::parse_size) as u64
            }
            Long("idle-timeout") => {
                idle = common::value(&mut parser, "idle-timeout", common::parse_optional_duration)
            }
            Long("grace") => grace = common::value(&mut parser, "grace", common::parse_duration),
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    let Some(dir) = dir else {
        common::usage_error("--dir DIR is required")
    };
    if max_conns == 0 {
        common::usage_error("--max-conns must be at least 1");
    }
    let config = Config::default()
        .max_connections(max_conns)
        .reject_message(b"ERROR server full\n")
        .idle_timeout(idle)
        // A request line, and what a client pipelines behind a download
        // while its reading is paused (one read's worth).
        .input_limit(256 * 1024);
    Options {
        addr: common::resolve_addr(&addr),
        dir,
        max_files,
        limits: Limits {
            max_file,
            discard_limit,
        },
        config,
        grace,
    }
}

fn main() {
    common::main(parse_options, run);
}

fn run(options: Options) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    // The directory is read before anything listens: a bad one stops the
    // server before it announces itself.
    let store = Store::open(&options.dir, options.max_files)?;
    let service = Service::new(
        &mut reactor,
        FileServer::new(store, options.limits),
        options.config,
    );
    service.shutdown_on_signal(&mut reactor, options.grace)?;
    let id = common::listen(&mut reactor, &service, options.addr)?;
    common::announce(format_args!(
        "listening on {} (serving {})",
        service.local_addr(id)?,
        options.dir.display()
    ));
    reactor.run()?;
    common::announce_totals(&service, "served")
}
