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
//! The seed's exercise: `--welcome TEXT` greets each client, and
//! `--log-file PATH` appends every line received, with the client's address
//! and a timestamp (see [`MessageLog`] for how it never waits for the disk).
//!
//! TLS:   cargo run --example echo_server -- --tls-addr 127.0.0.1:10443 \
//!            --cert examples/demo-tls/cert.pem --key examples/demo-tls/key.pem
//!        openssl s_client -connect 127.0.0.1:10443 -quiet

mod common;

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use log::{info, warn};
use reactor::Reactor;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};

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
  --welcome TEXT          send TEXT and a newline to each client when it connects
  --log-file PATH         append every line received to PATH: 'TIME ADDR LINE' (UTC, RFC 3339)
  --log-buffer SIZE       log bytes held for the disk; past it lines are dropped and
                          counted (default 1MiB)
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
    /// `--welcome`, with its newline.
    welcome: Option<Vec<u8>>,
    /// `--log-file`: the log, and each connection's line in progress, by
    /// connection index.
    log: Option<(Rc<RefCell<MessageLog>>, Vec<LineInProgress>)>,
}

impl Handler for Echo {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        if let Some(welcome) = &self.welcome {
            let _ = conns.send(id, welcome);
        }
        if let Some((_, lines)) = &mut self.log {
            // One getpeername per connection, not per line.
            let peer = conns
                .peer_addr(id)
                .map_or_else(|_| "unknown".to_string(), |a| a.to_string());
            if lines.len() <= id.index() {
                lines.resize_with(id.index() + 1, LineInProgress::default);
            }
            lines[id.index()] = LineInProgress::new(peer);
        }
    }

    fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, _: &CloseReason) {
        if let Some((log, lines)) = &mut self.log {
            if let Some(line) = lines.get_mut(id.index()) {
                line.finish(&mut log.borrow_mut());
            }
        }
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        if let Some((log, lines)) = &mut self.log {
            if let Some(line) = lines.get_mut(id.index()) {
                line.take(data, &mut log.borrow_mut());
            }
        }
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

/// The longest line kept whole in the log; the rest of a longer line is
/// replaced by `...` (the echo itself is not affected).
const MAX_LOGGED_LINE: usize = 1024;

/// One connection's line being received, for the log.
#[derive(Default)]
struct LineInProgress {
    /// The client's address, as the log shows it.
    peer: String,
    /// The line so far, up to [`MAX_LOGGED_LINE`] bytes.
    bytes: Vec<u8>,
    /// The line was longer than that.
    cut: bool,
}

impl LineInProgress {
    fn new(peer: String) -> LineInProgress {
        LineInProgress {
            peer,
            ..LineInProgress::default()
        }
    }

    /// Adds received bytes; each complete line goes to `log`.
    fn take(&mut self, mut data: &[u8], log: &mut MessageLog) {
        while !data.is_empty() {
            let end = data.iter().position(|&b| b == b'\n');
            let part = &data[..end.unwrap_or(data.len())];
            let room = MAX_LOGGED_LINE - self.bytes.len();
            self.bytes.extend_from_slice(&part[..part.len().min(room)]);
            self.cut |= part.len() > room;
            match end {
                Some(end) => {
                    self.finish(log);
                    data = &data[end + 1..];
                }
                None => break,
            }
        }
    }

    /// Logs the line so far (at a newline, or a close mid-line).
    fn finish(&mut self, log: &mut MessageLog) {
        if self.bytes.is_empty() && !self.cut {
            return;
        }
        let line = self.bytes.strip_suffix(b"\r").unwrap_or(&self.bytes);
        log.record(&self.peer, line, self.cut);
        self.bytes.clear();
        self.cut = false;
    }
}

/// `--log-file`: lines for the disk, held in a bounded buffer and written in
/// the loop's before-sleep pass, one `write` of at most [`MessageLog::PASS`]
/// bytes per turn.
///
/// A write to a regular file lands in the kernel's page cache and returns;
/// it waits for the disk only when the kernel throttles a writer with too
/// many dirty pages. Bounding each pass bounds how long one turn can spend
/// there, and bounding the buffer means a disk that cannot keep up costs
/// lines, never the loop's time or unbounded memory: past
/// `--log-buffer`, lines are dropped and counted, and the count is logged
/// (through `log`, on stderr) once per turn in which some were dropped.
/// Whatever is left is written when the server exits.
struct MessageLog {
    file: File,
    path: PathBuf,
    /// Formatted lines not yet written.
    pending: Vec<u8>,
    /// Most bytes `pending` may hold.
    limit: usize,
    /// Lines dropped since the last report, and in all.
    dropped: u64,
    dropped_total: u64,
    /// Bytes written in all (so that the exit line says what it did).
    written: u64,
    /// A write has failed and been reported: later failures are counted,
    /// not each logged (a full disk fails every pass).
    failing: bool,
    /// Reused to format one line.
    scratch: String,
}

impl MessageLog {
    /// Most bytes written per before-sleep pass.
    const PASS: usize = 256 * 1024;

    /// Opens (creates, appends to) `path`, which must be a regular file:
    /// a FIFO or a terminal can block a write for as long as its reader
    /// likes, and the loop must never wait on one. Opened non-blocking, so
    /// that not even the open can wait (a FIFO with no reader would).
    fn open(path: PathBuf, limit: usize) -> io::Result<MessageLog> {
        use std::os::unix::fs::OpenOptionsExt;
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let not_regular = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: not a regular file (a FIFO or a device could block the loop)",
                    path.display()
                ),
            )
        };
        if std::fs::metadata(&path).is_ok_and(|meta| !meta.is_file()) {
            return Err(not_regular());
        }
        let file = File::options()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(named)?;
        if !file.metadata().map_err(named)?.is_file() {
            return Err(not_regular());
        }
        Ok(MessageLog {
            file,
            path,
            pending: Vec::with_capacity(limit.min(64 * 1024)),
            limit,
            dropped: 0,
            dropped_total: 0,
            written: 0,
            failing: false,
            scratch: String::new(),
        })
    }

    /// Queues `TIME PEER LINE` (the line's control characters escaped, so
    /// that one record is one line of the file), or drops it if the buffer
    /// is full.
    fn record(&mut self, peer: &str, line: &[u8], cut: bool) {
        use std::fmt::Write as _;
        self.scratch.clear();
        let now = jiff::Timestamp::now();
        let text = String::from_utf8_lossy(line);
        let _ = write!(self.scratch, "{now:.3} {peer} {}", text.escape_debug());
        if cut {
            self.scratch.push_str("...");
        }
        self.scratch.push('\n');
        if self.pending.len() + self.scratch.len() > self.limit {
            self.dropped += 1;
            return;
        }
        self.pending.extend_from_slice(self.scratch.as_bytes());
    }

    /// The before-sleep pass: one write of what is pending (at most
    /// [`PASS`](Self::PASS) bytes), and a report of lines dropped since the
    /// last pass.
    fn write_some(&mut self) {
        if self.dropped > 0 && !self.failing {
            warn!(
                "{}: the log buffer is full (the disk is not keeping up, or a burst passed --log-buffer): {} line(s) dropped ({} in all)",
                self.path.display(),
                self.dropped,
                self.dropped_total + self.dropped
            );
            self.dropped_total += self.dropped;
            self.dropped = 0;
        }
        if self.pending.is_empty() {
            return;
        }
        let n = self.pending.len().min(Self::PASS);
        match self.file.write(&self.pending[..n]) {
            Ok(written) => {
                self.pending.drain(..written);
                self.written += written as u64;
                if self.failing {
                    info!("{}: writing again", self.path.display());
                    self.failing = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // A full disk, say: the lines held are lost, the echo goes
                // on. Said once, counted after (the total is logged at exit).
                if !self.failing {
                    warn!(
                        "{}: write failed: {e}; log lines are dropped until a write succeeds",
                        self.path.display()
                    );
                    self.failing = true;
                }
                self.dropped_total += self.count_lines() + std::mem::take(&mut self.dropped);
                self.pending.clear();
            }
        }
    }

    fn count_lines(&self) -> u64 {
        self.pending.iter().filter(|&&b| b == b'\n').count() as u64
    }

    /// At exit: everything pending, then the file's own flush.
    fn flush(&mut self) -> io::Result<()> {
        self.dropped_total += self.dropped;
        self.dropped = 0;
        self.file.write_all(&self.pending)?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        self.file.flush()?;
        if self.dropped_total > 0 {
            warn!(
                "{}: {} line(s) were dropped in all",
                self.path.display(),
                self.dropped_total
            );
        }
        Ok(())
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
    welcome: Option<String>,
    log_file: Option<PathBuf>,
    log_buffer: usize,
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
        welcome: None,
        log_file: None,
        log_buffer: 1024 * 1024,
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
            Long("welcome") => {
                options.welcome = Some(common::value(&mut parser, "welcome", common::text))
            }
            Long("log-file") => {
                options.log_file = Some(common::value(&mut parser, "log-file", common::text).into())
            }
            Long("log-buffer") => {
                options.log_buffer = common::value(&mut parser, "log-buffer", common::parse_size);
                if options.log_buffer < MAX_LOGGED_LINE * 2 {
                    common::usage_error("--log-buffer must be at least 2KiB");
                }
            }
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
    common::main(parse_options, run);
}

fn run(options: Options) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    // Opened before anything listens: a bad path stops the server before
    // it announces itself.
    let log = match &options.log_file {
        Some(path) => Some(Rc::new(RefCell::new(MessageLog::open(
            path.clone(),
            options.log_buffer,
        )?))),
        None => None,
    };
    if let Some(log) = &log {
        let log = Rc::clone(log);
        reactor.before_sleep(move |_| {
            log.borrow_mut().write_some();
            true
        });
    }
    let echo = Echo {
        upper: options.upper,
        scratch: Vec::new(),
        welcome: options.welcome.as_ref().map(|text| {
            let mut line = text.clone().into_bytes();
            line.push(b'\n');
            line
        }),
        log: log.as_ref().map(|log| (Rc::clone(log), Vec::new())),
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
        let id = common::listen(&mut reactor, &service, *addr)?;
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

    let ran = reactor.run();
    if let Some(log) = &log {
        // Lines of connections still open at a hard stop are in progress:
        // they are not logged; everything complete is.
        log.borrow_mut().flush()?;
        let log = log.borrow();
        info!(
            "log flushed to {} ({} bytes written)",
            log.path.display(),
            log.written
        );
    }
    ran?;
    common::announce_totals(&service, "served")
}
