//! A TCP port scanner on the reactor: the seed's `port_scanner` (a pool of
//! 100 threads, each blocked in `connect_ex`) as non-blocking connects
//! fanned out on one thread, with the seed's exercise: banners, JSON and a
//! verbose mode.
//!
//! Run:   cargo run --release --example port_scan -- 127.0.0.1
//!        cargo run --release --example port_scan -- 127.0.0.1 --ports 22,80,8000-8100 --banner
//!        cargo run --release --example port_scan -- 127.0.0.1 --ports 1-65535 --json > open.json
//!
//! Scan only hosts you are allowed to scan.
//!
//! `scan.rs` is the handler (how a connect's end becomes open, closed or
//! filtered), `ports.rs` the `--ports` syntax, `services.rs` the names from
//! `/etc/services`.

#[path = "../common/mod.rs"]
mod common;
mod ports;
mod scan;
mod services;

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use reactor::Reactor;
use reactor::service::{Config, Service};

use ports::PortSet;
use scan::{PortResult, PortState, Scanner};

const USAGE: &str = "\
port_scan: which TCP ports of a host accept connections, on one thread

usage: port_scan HOST [OPTIONS]

options:
  --ports LIST            ports to scan: N, N-M, or a comma list of them such as
                          22,80,8000-8100 (default 1-1024)
  --concurrency N         connects in flight at once (default 500)
  --timeout DURATION      a connect unanswered this long is 'filtered'; with --banner,
                          also how long an open port is given to speak (default 1s)
  --banner                read what each open port says first (its first line, at
                          most 512 bytes)
  --json                  write a JSON array, one object per open port: port, service
                          (null if unknown), and banner with --banner
  -v, --verbose           also list closed and filtered ports, with the time each took
  -h, --help              show this text

Plain output: one line per open port, 'PORT/tcp open SERVICE', then a summary line.
With --json the summary and the --verbose lines go to stderr. Exit status: 0 when the
scan finished (whether or not anything is open), 1 on an error, 2 on bad arguments.
";

struct Options {
    host: String,
    addr: IpAddr,
    ports: PortSet,
    concurrency: usize,
    timeout: Duration,
    banner: bool,
    json: bool,
    verbose: bool,
}

fn parse_options() -> Options {
    let mut host = None;
    let mut ports = None;
    let mut concurrency = 500;
    let mut timeout = Duration::from_secs(1);
    let (mut banner, mut json, mut verbose) = (false, false, false);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short, Value};
        match arg {
            Long("ports") => ports = Some(common::value(&mut parser, "ports", PortSet::parse)),
            Long("concurrency") => {
                concurrency = common::value(&mut parser, "concurrency", common::count)
            }
            Long("timeout") => {
                timeout = common::value(&mut parser, "timeout", common::parse_duration)
            }
            Long("banner") => banner = true,
            Long("json") => json = true,
            Long("verbose") | Short('v') => verbose = true,
            Long("help") | Short('h') => common::help(USAGE),
            Value(value) if host.is_none() => host = Some(value.to_string_lossy().into_owned()),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    let Some(host) = host else {
        common::usage_error("which HOST to scan?")
    };
    if concurrency == 0 || timeout.is_zero() {
        common::usage_error("--concurrency and --timeout must be more than 0");
    }
    let ports = ports.unwrap_or_else(|| PortSet::parse("1-1024").expect("a valid default"));
    // Name resolution blocks: done here, before the loop exists. A host
    // that does not resolve is an error of the scan (exit 1), not of usage.
    let addr = match (host.as_str(), 0).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => addr.ip(),
        Ok(None) => common::fail(format!("{host}: no address found")),
        Err(e) => common::fail(format!("{host}: {e}")),
    };
    Options {
        host,
        addr,
        ports,
        concurrency,
        timeout,
        banner,
        json,
        verbose,
    }
}

fn main() {
    common::init_logging();
    let options = parse_options();
    match scan(&options) {
        Ok((results, took)) => {
            if let Err(e) = report(&options, &results, took) {
                common::fail(e);
            }
        }
        Err(e) => common::fail(e),
    }
}

/// Raises the soft limit on open descriptors to what `concurrency` needs
/// (up to the hard limit), once, before the scan.
fn raise_descriptor_limit(concurrency: usize) {
    let want = concurrency as libc::rlim_t + 64;
    // SAFETY: getrlimit/setrlimit read and write the `rlimit` we own.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn scan(options: &Options) -> io::Result<(Vec<PortResult>, Duration)> {
    raise_descriptor_limit(options.concurrency);
    let mut reactor = Reactor::new()?;
    let config = Config::default()
        .max_connections(options.concurrency)
        .connect_timeout(options.timeout)
        // With --banner, the wait for an open port to speak; each probe is
        // exempt from it until its connect completes.
        .idle_timeout(options.banner.then_some(options.timeout))
        .nodelay(false);
    let scanner = Scanner::new(
        options.addr,
        options.ports.iter().collect(),
        options.concurrency,
        options.banner,
    );
    let service = Service::new(&mut reactor, scanner, config);
    let started = Instant::now();
    let done = service.with(&mut reactor, |scanner, conns| {
        scanner.fill(conns);
        scanner.done()
    })?;
    if !done {
        reactor.run()?;
    }
    let took = started.elapsed();
    service
        .with(&mut reactor, |scanner, _| match scanner.error.take() {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut scanner.results)),
        })?
        .map(|results| (results, took))
}

fn report(options: &Options, results: &[PortResult], took: Duration) -> io::Result<()> {
    let names = services::load();
    let mut results: Vec<&PortResult> = results.iter().collect();
    results.sort_by_key(|r| r.port);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let stderr = io::stderr();
    let mut err = stderr.lock();
    // With --json, stdout holds the JSON alone.
    let text: &mut dyn Write = if options.json { &mut err } else { &mut out };
    for r in &results {
        if r.state == PortState::Open || options.verbose {
            writeln!(text, "{}", plain_line(r, &names, options.verbose))?;
        }
    }
    let count = |state| results.iter().filter(|r| r.state == state).count();
    writeln!(
        text,
        "{} open, {} closed, {} filtered: {} port(s) of {} ({}) scanned in {:.2} s",
        count(PortState::Open),
        count(PortState::Closed),
        count(PortState::Filtered),
        results.len(),
        options.host,
        options.addr,
        took.as_secs_f64()
    )?;
    if options.json {
        let open: Vec<serde_json::Value> = results
            .iter()
            .filter(|r| r.state == PortState::Open)
            .map(|r| {
                let mut object = serde_json::Map::new();
                object.insert("port".into(), r.port.into());
                object.insert(
                    "service".into(),
                    names
                        .get(&r.port)
                        .map_or(serde_json::Value::Null, |n| n.as_str().into()),
                );
                if options.banner {
                    object.insert("banner".into(), banner_text(&r.banner).into());
                }
                serde_json::Value::Object(object)
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &open)?;
        writeln!(out)?;
    }
    out.flush()
}

/// `22/tcp open ssh  SSH-2.0-...`, or with --verbose `81/tcp closed (0.1 ms)`.
fn plain_line(r: &PortResult, names: &HashMap<u16, String>, verbose: bool) -> String {
    let mut line = format!("{}/tcp {}", r.port, r.state.name());
    if r.state == PortState::Open {
        line.push(' ');
        line.push_str(names.get(&r.port).map_or("unknown", String::as_str));
        let banner = banner_text(&r.banner);
        if !banner.is_empty() {
            line.push_str("  ");
            line.push_str(&banner.escape_debug().to_string());
        }
    }
    if let Some(note) = &r.note {
        line.push_str(&format!(" [{note}]"));
    }
    if verbose {
        line.push_str(&format!(" ({:.1} ms)", r.elapsed.as_secs_f64() * 1e3));
    }
    line
}

/// A banner as text: its first line, without the line end.
fn banner_text(banner: &[u8]) -> String {
    let first = banner.split(|&b| b == b'\n').next().unwrap_or(banner);
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    String::from_utf8_lossy(first).into_owned()
}
