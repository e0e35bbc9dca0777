//! The seeds' HTTP client exercise: fetch one URL, on the reactor, one
//! thread. The connect is non-blocking, the response is read as it
//! arrives, and the body is written out piece by piece, never held whole.
//!
//! Run:   cargo run --example http_get -- http://127.0.0.1:8080/ -o page.html
//!        cargo run --example http_get -- https://example.com/
//!
//! The status line and the header fields go to stderr, the body to stdout
//! (or `-o FILE`). Exit status 0 for a 2xx, 1 for any other status or an
//! error, 2 for bad arguments.
//!
//! The response framing (a `Content-Length`, chunks, or the end of the
//! stream) is `reactor::http::BodyDecoder`, the same rules `http_server`
//! and `http_proxy` use. A body with a `Content-Length` ends there even if
//! the server keeps the connection open.

mod common;

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use reactor::Reactor;
use reactor::http::{self, BodyDecoder, Limits, Url};
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};
use reactor::tls::{ClientConfig, ServerName};

const USAGE: &str = "\
http_get: fetch a URL over HTTP/1.1 on the reactor

usage: http_get URL [OPTIONS]

  URL                  http://HOST[:PORT]/PATH or https://...
options:
  -o, --output FILE    write the body to FILE (default: stdout)
  --ca FILE            for https: trust the certificates in FILE (PEM) instead of
                       the system's roots
  --timeout DURATION   the whole exchange, connect to last byte (default 30s)
  -h, --help           show this text

The status line and header fields go to stderr. Exit status: 0 for a 2xx
response, 1 for any other status or an error, 2 for bad arguments.
";

/// Where the exchange ended, for `main` to report.
#[derive(Debug, Default)]
struct Outcome {
    status: Option<u16>,
    /// The body was complete.
    complete: bool,
    error: Option<String>,
}

/// Response heads as large as real sites send (long `Set-Cookie` and
/// `Content-Security-Policy` fields), still bounded.
const RESPONSE_LIMITS: Limits = Limits {
    max_head: 256 * 1024,
    max_target: 8 * 1024,
};

/// What the client is waiting for.
enum Reading {
    Head,
    Body(BodyDecoder),
    Done,
}

struct Fetch {
    request: Vec<u8>,
    reading: Reading,
    output: Box<dyn Write>,
    outcome: Rc<RefCell<Outcome>>,
    /// The addresses the name resolved to, tried in order until one
    /// connects (a name such as `localhost` may give `::1` first, where
    /// nothing listens).
    addrs: Vec<SocketAddr>,
    tried: usize,
    /// The connection is open: its failures are no longer connect failures.
    connected: bool,
    tls: Option<(ServerName<'static>, Arc<ClientConfig>)>,
}

impl Fetch {
    /// Connects to the next address; false when there is none left.
    fn dial(&mut self, conns: &mut Connections<'_>) -> bool {
        while let Some(&addr) = self.addrs.get(self.tried) {
            self.tried += 1;
            let started = match &self.tls {
                Some((name, config)) => conns.connect_tls(addr, name.clone(), Arc::clone(config)),
                None => conns.connect(addr),
            };
            match started {
                Ok(_) => {
                    log::debug!("connecting to {addr}");
                    return true;
                }
                Err(e) => log::debug!("cannot connect to {addr}: {e}"),
            }
        }
        false
    }

    fn fail(&mut self, conns: &mut Connections<'_>, id: ConnId, error: String) {
        self.outcome.borrow_mut().error.get_or_insert(error);
        self.reading = Reading::Done;
        let _ = conns.abort(id);
    }

    /// The body is complete: flush it and stop.
    fn finish(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        self.reading = Reading::Done;
        if let Err(e) = self.output.flush() {
            self.outcome.borrow_mut().error = Some(format!("writing the body: {e}"));
        } else {
            self.outcome.borrow_mut().complete = true;
        }
        let _ = conns.close(id);
    }

    /// Reads the front of `data` as a response head; returns the bytes it
    /// took, or `None` while the head is incomplete.
    fn head(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> Option<usize> {
        let mut fields = [http::EMPTY_HEADER; 100];
        let response = match http::parse_response(data, &mut fields, &RESPONSE_LIMITS, false) {
            Ok(Some(response)) => response,
            Ok(None) => return None,
            Err(e) => {
                self.fail(conns, id, format!("bad response: {}", e.why()));
                return Some(data.len());
            }
        };
        let mut stderr = io::stderr().lock();
        let _ = writeln!(
            stderr,
            "HTTP/1.{} {} {}",
            response.minor, response.status, response.reason
        );
        for field in response.fields {
            let _ = writeln!(
                stderr,
                "{}: {}",
                field.name,
                String::from_utf8_lossy(field.value)
            );
        }
        let _ = writeln!(stderr);
        // An interim response (100 Continue, 103 Early Hints): the real
        // one follows.
        // (101 Switching Protocols is final: what follows is not HTTP.)
        if (100..200).contains(&response.status) && response.status != 101 {
            return Some(response.head_len);
        }
        self.outcome.borrow_mut().status = Some(response.status);
        match BodyDecoder::new(response.framing, u64::MAX) {
            Ok(body) if body.is_done() => self.finish(conns, id),
            Ok(body) => self.reading = Reading::Body(body),
            Err(e) => self.fail(conns, id, format!("bad response: {}", e.why())),
        }
        Some(response.head_len)
    }
}

impl Handler for Fetch {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        log::debug!("{id}: connected, sending the request");
        self.connected = true;
        let _ = conns.send(id, &self.request);
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut at = 0;
        while at < data.len() {
            match &mut self.reading {
                Reading::Done => return data.len(),
                Reading::Head => match self.head(conns, id, &data[at..]) {
                    Some(n) => at += n,
                    None => break,
                },
                Reading::Body(body) => {
                    let mut written = Ok(());
                    let output = &mut self.output;
                    let progress = body.feed(&data[at..], |piece| {
                        if written.is_ok() {
                            written = output.write_all(piece);
                        }
                    });
                    match (progress, written) {
                        (Err(e), _) => {
                            self.fail(conns, id, format!("bad response body: {}", e.why()))
                        }
                        (_, Err(e)) => self.fail(conns, id, format!("writing the body: {e}")),
                        (Ok(progress), Ok(())) => {
                            at += progress.consumed;
                            if progress.done {
                                self.finish(conns, id);
                            }
                        }
                    }
                }
            }
        }
        at
    }

    fn on_read_closed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
        match &mut self.reading {
            // A body delimited by the end of the stream ends here.
            Reading::Body(body) => match body.finish_at_close() {
                Ok(()) => self.finish(conns, id),
                Err(_) => self.fail(conns, id, "the server closed before the body ended".into()),
            },
            Reading::Head => self.fail(conns, id, "the server closed without a response".into()),
            Reading::Done => {
                let _ = conns.close(id);
            }
        }
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, _: ConnId, reason: &CloseReason) {
        if !self.connected && self.tried < self.addrs.len() {
            log::debug!("connect failed ({reason}); trying the next address");
            if self.dial(conns) {
                return;
            }
        }
        if !matches!(self.reading, Reading::Done) {
            let why = match reason {
                CloseReason::Error(e) | CloseReason::Tls(e) => e.to_string(),
                other => other.to_string(),
            };
            self.outcome.borrow_mut().error.get_or_insert(why);
        }
        conns.reactor().stop();
    }
}

struct Options {
    url: Url,
    output: Option<PathBuf>,
    ca: Option<PathBuf>,
    timeout: Duration,
}

fn parse_options() -> Options {
    let mut url = None;
    let mut output = None;
    let mut ca = None;
    let mut timeout = Duration::from_secs(30);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short, Value};
        match arg {
            Short('o') | Long("output") => {
                output = Some(common::value(&mut parser, "output", common::text).into())
            }
            Long("ca") => ca = Some(common::value(&mut parser, "ca", common::text).into()),
            Long("timeout") => {
                timeout = common::value(&mut parser, "timeout", common::parse_duration);
                if timeout.is_zero() {
                    common::usage_error("--timeout must be more than 0");
                }
            }
            Long("help") | Short('h') => common::help(USAGE),
            Value(value) if url.is_none() => {
                let text = value.to_string_lossy().into_owned();
                url = Some(Url::parse(&text).unwrap_or_else(|e| common::usage_error(e)));
            }
            _ => common::usage_error(arg.unexpected()),
        }
    }
    let url = url.unwrap_or_else(|| common::usage_error("no URL given"));
    if ca.is_some() && !url.https {
        common::usage_error("--ca is for https URLs");
    }
    Options {
        url,
        output,
        ca,
        timeout,
    }
}

fn main() {
    common::init_logging();
    let options = parse_options();
    match run(options) {
        Ok(status) if (200..300).contains(&status) => {}
        Ok(_) => std::process::exit(1),
        Err(e) => common::fail(e),
    }
}

/// The exchange: returns the response's status once its body is complete.
fn run(options: Options) -> io::Result<u16> {
    let url = &options.url;
    // Resolution blocks (getaddrinfo), so it happens before the loop starts;
    // a long-running program resolves on a helper thread instead (see
    // http_proxy).
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {}: {e}", url.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no address for {}", url.host),
        ));
    }
    let tls = if url.https {
        let config = reactor::tls::client_config(options.ca.as_deref())?;
        let name = ServerName::try_from(url.host.clone()).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{}: {e}", url.host))
        })?;
        Some((name, config))
    } else {
        None
    };
    let output: Box<dyn Write> = match &options.output {
        Some(path) => Box::new(io::BufWriter::new(File::create(path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
        })?)),
        None => Box::new(io::BufWriter::new(io::stdout())),
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: reactor-http_get/{}\r\nAccept: */*\r\n\r\n",
        url.path,
        url.authority(),
        env!("CARGO_PKG_VERSION")
    );
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    let fetch = Fetch {
        request: request.into_bytes(),
        reading: Reading::Head,
        output,
        outcome: Rc::clone(&outcome),
        addrs,
        tried: 0,
        connected: false,
        tls,
    };
    let mut reactor = Reactor::new()?;
    let config = Config::default().connect_timeout(options.timeout);
    let service = Service::new(&mut reactor, fetch, config);
    if !service.with(&mut reactor, |fetch, conns| fetch.dial(conns))? {
        return Err(io::Error::other(format!("cannot connect to {}", url.host)));
    }
    let timeout = options.timeout;
    let timed_out = Rc::new(RefCell::new(false));
    let flag = Rc::clone(&timed_out);
    reactor.call_later(timeout, move |reactor| {
        *flag.borrow_mut() = true;
        reactor.stop();
    });
    reactor.run()?;
    let outcome = outcome.borrow();
    let failure = |why: &str| io::Error::other(format!("{}:{}: {why}", url.host, url.port));
    if *timed_out.borrow() && !outcome.complete {
        return Err(failure(&format!("timed out after {timeout:?}")));
    }
    match (&outcome.error, outcome.status) {
        (Some(error), _) => Err(failure(error)),
        (None, Some(status)) if outcome.complete => Ok(status),
        _ => Err(failure("the exchange did not finish")),
    }
}
