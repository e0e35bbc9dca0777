//! An interactive chat client on one thread: the server connection and the
//! terminal are both sources on the same reactor, so typing and receiving
//! never wait for each other (the seed's exercise suggests two threads).
//!
//! Run:   cargo run --example chat_server &
//!        cargo run --example chat_client -- --name alice
//!        printf 'alice\nhello\n/quit\n' | cargo run --example chat_client
//!
//! Lines from the server are printed as they arrive; what you type is sent a
//! line at a time. Ctrl-D (end of input) or /quit ends the session.
//!
//! Three details make this work everywhere:
//! - stdin is registered with epoll through `SourceFd`, in non-blocking mode;
//!   its original flags are restored on exit (they belong to the terminal or
//!   pipe, shared with the shell);
//! - a terminal is usually stdin *and* stdout through one open file, so
//!   stdout turns non-blocking too: output goes through a buffer written
//!   when stdout is ready, never a blocking `println!`;
//! - epoll refuses regular files (`EPERM`): with stdin redirected from a
//!   file, the file is read a chunk per turn instead (a read from a regular
//!   file never waits for anyone).

mod common;

use std::cell::RefCell;
use std::io::{self, ErrorKind, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use common::{Fd, NonBlocking};
use log::debug;
use mio::Interest;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};
use reactor::{Event, Key, Reactor, Ready};

const USAGE: &str = "\
chat_client: talk to chat_server's line protocol from a terminal or a script

usage: chat_client [--addr HOST:PORT] [--name NAME] [--tls [--ca FILE] [--insecure]]

options:
  --addr HOST:PORT     the chat server's line listener (default 127.0.0.1:9999)
  --name NAME          answer the name prompt with NAME
  --tls                connect over TLS (chat_server --tls-addr), verifying the
                       server's certificate against --ca or the system's roots
  --ca FILE            trust the certificates in this PEM file
  --server-name NAME   the name the certificate must be for (default: the host of --addr)
  --insecure           accept any certificate (with a warning): for tests only
  -h, --help         show this text

Type a line to send it; /help lists the server's commands. At a 'Password: '
prompt, what you type is not echoed. Ctrl-D or /quit
ends the session. Exit status 0 when the server closes the session normally,
1 if the connection fails.
";

const PROMPT: &[u8] = b"Enter your name: ";

/// Output waiting for stdout, shared by the server handler and the stdout
/// callback.
#[derive(Default)]
struct Output {
    pending: Vec<u8>,
}

impl Output {
    /// Writes what stdout takes now; the rest waits for a writable event.
    fn flush(&mut self) {
        common::flush_stdout(&mut self.pending);
    }

    fn print(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.flush();
    }
}

/// The server side of the client.
struct Client {
    /// The first prompt is answered with `--name`, so it is not shown.
    hide_prompt: bool,
    /// Terminal echo, off while a password is typed.
    echo_off: Rc<RefCell<Option<common::EchoOff>>>,
    output: Rc<RefCell<Output>>,
    /// Set when the session ended in an error (exit status 1).
    failed: Rc<RefCell<Option<String>>>,
}

impl Handler for Client {
    fn on_open(&mut self, _: &mut Connections<'_>, _: ConnId, _: Origin) {
        debug!("connected");
    }

    fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, mut data: &[u8]) -> usize {
        let consumed = data.len();
        if self.hide_prompt {
            if data.len() < PROMPT.len() && PROMPT.starts_with(data) {
                return 0; // wait for the whole prompt
            }
            if let Some(rest) = data.strip_prefix(PROMPT) {
                data = rest;
            }
            self.hide_prompt = false;
        }
        self.output.borrow_mut().print(data);
        if data.ends_with(b"Password: ") && std::io::IsTerminal::is_terminal(&io::stdin()) {
            // What is typed next is a password: not on the screen.
            *self.echo_off.borrow_mut() = common::EchoOff::new().ok();
        }
        consumed
    }

    fn on_close(&mut self, conns: &mut Connections<'_>, _: ConnId, reason: &CloseReason) {
        match reason {
            CloseReason::Closed | CloseReason::PeerClosed => {}
            CloseReason::Error(e) => *self.failed.borrow_mut() = Some(e.to_string()),
            other => *self.failed.borrow_mut() = Some(other.to_string()),
        }
        conns.reactor().stop();
    }
}

fn main() {
    common::init_logging();
    let mut addr = "127.0.0.1:9999".to_string();
    let mut name = None;
    let mut tls = false;
    let mut ca: Option<String> = None;
    let mut insecure = false;
    let mut server_name: Option<String> = None;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = common::next_arg(&mut parser) {
        use lexopt::Arg::{Long, Short};
        match arg {
            Long("addr") => addr = common::value(&mut parser, "addr", common::text),
            Long("name") => name = Some(common::value(&mut parser, "name", common::text)),
            Long("tls") => tls = true,
            Long("ca") => ca = Some(common::value(&mut parser, "ca", common::text)),
            Long("insecure") => insecure = true,
            Long("server-name") => {
                server_name = Some(common::value(&mut parser, "server-name", common::text))
            }
            Long("help") | Short('h') => common::help(USAGE),
            _ => common::usage_error(arg.unexpected()),
        }
    }
    let host = server_name.unwrap_or_else(|| {
        addr.rsplit_once(':')
            .map_or(addr.as_str(), |(host, _)| host)
            .trim_matches(['[', ']'])
            .to_string()
    });
    let tls = tls.then(|| tls_setup(&host, ca.as_deref(), insecure));
    let addr = common::resolve_addr(&addr);
    let outcome = run(addr, name, tls);
    // `run` has returned: the descriptors' flags are restored.
    match outcome {
        Ok(()) => {}
        Err(e) => common::fail(e),
    }
}

/// What `--tls` connects with: the name the certificate must be for, and
/// the client configuration.
type TlsSetup = (
    reactor::tls::ServerName<'static>,
    std::sync::Arc<reactor::tls::ClientConfig>,
);

fn tls_setup(host: &str, ca: Option<&str>, insecure: bool) -> TlsSetup {
    let name = reactor::tls::ServerName::try_from(host.to_string())
        .unwrap_or_else(|e| common::usage_error(format!("--server-name {host}: {e}")));
    let config = if insecure {
        log::warn!(
            "--insecure: the server's certificate is not checked; anyone can pretend to be it"
        );
        insecure_config()
    } else {
        reactor::tls::client_config(ca.map(std::path::Path::new))
            .unwrap_or_else(|e| common::fail(e))
    };
    (name, config)
}

/// A client configuration that accepts any certificate (`--insecure`):
/// the connection is encrypted, but the server is not authenticated.
fn insecure_config() -> std::sync::Arc<reactor::tls::ClientConfig> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct AcceptAnything(std::sync::Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for AcceptAnything {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = reactor::tls::provider();
    let config = reactor::tls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| common::fail(io::Error::other(e)))
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAnything(provider)))
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

fn run(addr: SocketAddr, name: Option<String>, tls: Option<TlsSetup>) -> io::Result<()> {
    let stdin_fd = io::stdin().as_raw_fd();
    let stdout_fd = io::stdout().as_raw_fd();
    let _stdin_mode = NonBlocking::set(stdin_fd)?;
    let _stdout_mode = NonBlocking::set(stdout_fd)?;

    let mut reactor = Reactor::new()?;
    let output = Rc::new(RefCell::new(Output::default()));
    let failed = Rc::new(RefCell::new(None));
    let echo_off = Rc::new(RefCell::new(None));
    let client = Client {
        hide_prompt: name.is_some(),
        echo_off: echo_off.clone(),
        output: output.clone(),
        failed: failed.clone(),
    };
    let service = Service::new(&mut reactor, client, Config::default());
    let id = match tls {
        Some((server_name, config)) => {
            service.connect_tls(&mut reactor, addr, server_name, config)?
        }
        None => service.connect(&mut reactor, addr)?,
    };
    if let Some(name) = &name {
        // Queued before anything read from stdin, so the server takes it as
        // the answer to its prompt (output waits while the connect completes).
        service.with(&mut reactor, |_, conns| {
            conns.send(id, format!("{name}\n").as_bytes())
        })??;
    }

    // stdout: flush the buffer whenever the terminal or pipe takes more.
    let out = output.clone();
    match reactor.register(
        Fd(stdout_fd),
        Interest::WRITABLE,
        move |_, _: &mut Fd, _| out.borrow_mut().flush(),
    ) {
        Ok(_) => {}
        // A regular file: epoll cannot watch it, and writes to it never wait.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
        Err(e) => return Err(e),
    }

    // stdin: lines typed (or piped) go to the server.
    let mut input = Input {
        pending: Vec::new(),
        service: service.clone(),
        id,
        done: false,
        echo_off: echo_off.clone(),
        output: output.clone(),
    };
    let registered = reactor.register(
        Fd(stdin_fd),
        Interest::READABLE,
        move |reactor, _: &mut Fd, event: Event| input.on_readable(reactor, Some(event.key())),
    );
    match registered {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            // A regular file (or /dev/null): epoll cannot watch it, and it
            // never blocks. Read one chunk per turn until its end.
            let input = Input {
                pending: Vec::new(),
                service: service.clone(),
                id,
                done: false,
                echo_off: echo_off.clone(),
                output: output.clone(),
            };
            read_file_stdin(&mut reactor, input);
        }
        Err(e) => return Err(e),
    }

    reactor::signal::on_shutdown_signal(&mut reactor, |reactor, _| reactor.stop())?;
    reactor.run()?;
    output.borrow_mut().flush();
    if let Some(e) = failed.borrow_mut().take() {
        return Err(io::Error::other(format!("connection to {addr}: {e}")));
    }
    Ok(())
}

/// Reads stdin from a regular file, a chunk per turn.
fn read_file_stdin(reactor: &mut Reactor, mut input: Input) {
    reactor.call_soon(move |reactor| {
        input.on_readable(reactor, None);
        if !input.done {
            read_file_stdin(reactor, input);
        }
    });
}

/// What the user typed and not yet sent (a partial line).
struct Input {
    pending: Vec<u8>,
    service: Service<Client>,
    id: ConnId,
    done: bool,
    /// Echo turned off for a password: back on once its line is sent.
    echo_off: Rc<RefCell<Option<common::EchoOff>>>,
    output: Rc<RefCell<Output>>,
}

impl Input {
    /// stdin is readable: read until it would block (edge-triggered: a
    /// pipe's data and its end can arrive together, and no second event
    /// announces the end), at most 64 KiB per turn for fairness; send
    /// complete lines, and at end of input close our sending side.
    fn on_readable(&mut self, reactor: &mut Reactor, key: Option<Key>) {
        let mut buf = [0u8; 16 * 1024];
        let mut budget: usize = 64 * 1024;
        let mut ended = false;
        while budget > 0 {
            match io::stdin().lock().read(&mut buf) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    budget = budget.saturating_sub(n);
                    if key.is_none() {
                        break; // a regular file: one chunk per turn
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        if let Some(last_newline) = self.pending.iter().rposition(|&b| b == b'\n') {
            let lines: Vec<u8> = self.pending.drain(..=last_newline).collect();
            let id = self.id;
            let _ = self
                .service
                .with(reactor, |_, conns| conns.send(id, &lines));
            if self.echo_off.borrow_mut().take().is_some() {
                // The password's newline was not echoed either.
                self.output.borrow_mut().print(b"\n");
            }
        }
        if ended {
            self.end_of_input(reactor, key);
        } else if budget == 0 {
            // Stopped early with input perhaps still waiting: no new edge
            // will say so, so ask to be called again next turn.
            if let Some(key) = key {
                reactor.schedule_event(key, Ready::READABLE);
            }
        }
    }

    /// Ctrl-D or the end of a pipe: send what is left, then FIN. The server
    /// treats that as leaving and closes, which ends the session.
    fn end_of_input(&mut self, reactor: &mut Reactor, key: Option<Key>) {
        self.done = true;
        if let Some(key) = key {
            let _ = reactor.deregister(key);
        }
        let id = self.id;
        let rest = std::mem::take(&mut self.pending);
        let _ = self.service.with(reactor, |_, conns| {
            if !rest.is_empty() {
                let _ = conns.send(id, &rest);
                let _ = conns.send(id, b"\n");
            }
            let _ = conns.shutdown_write(id);
        });
    }
}
