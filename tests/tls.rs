//! TLS on the transport seam: rustls servers and clients with the same
//! handlers, over real sockets. Certificates are made here, by rcgen.

mod support;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reactor::Reactor;
use reactor::service::{CloseReason, Config, ConnId, Connections, Handler, Origin, Service};
use reactor::tls::{self, CertificateDer, PrivateKeyDer, RootCertStore, ServerName};
use support::Rng;

/// A self-signed certificate for `localhost`, and the configurations that
/// serve it and trust it.
struct TestPki {
    cert_pem: String,
    key_pem: String,
    server: Arc<tls::ServerConfig>,
    client: Arc<tls::ClientConfig>,
}

fn pki() -> TestPki {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert: CertificateDer<'static> = made.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let server = tls::server_config_from(vec![cert.clone()], key).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let client = tls::client_config_with_roots(roots).unwrap();
    TestPki {
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
        server,
        client,
    }
}

#[derive(Default)]
struct Log {
    closed: Vec<(ConnId, String)>,
}

type Shared = Rc<RefCell<Log>>;

struct Echo {
    log: Shared,
}

impl Handler for Echo {
    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let _ = conns.send(id, data);
        data.len()
    }
    fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        self.log.borrow_mut().closed.push((id, reason.to_string()));
    }
}

fn serve_tls(pki: &TestPki, config: Config) -> (Reactor, Service<Echo>, SocketAddr, Shared) {
    let log = Shared::default();
    let mut reactor = Reactor::new().unwrap();
    let service = Service::new(&mut reactor, Echo { log: log.clone() }, config);
    let listener = service
        .listen_tls(
            &mut reactor,
            "127.0.0.1:0".parse().unwrap(),
            pki.server.clone(),
        )
        .unwrap();
    let addr = service.tcp_addr(listener).unwrap();
    (reactor, service, addr, log)
}

/// A blocking rustls client on a thread of the test.
fn tls_client(
    addr: SocketAddr,
    config: Arc<tls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let socket = support::connect(addr);
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    rustls::StreamOwned::new(conn, socket)
}

#[track_caller]
fn run_until(reactor: &mut Reactor, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "condition not reached in time");
        reactor.run_once(Some(Duration::from_millis(20))).unwrap();
    }
}

#[track_caller]
fn run_client<T>(reactor: &mut Reactor, client: JoinHandle<T>) -> T {
    run_until(reactor, || client.is_finished());
    client.join().expect("client thread panicked")
}

/// A client that sends `greeting` on open and logs why it closed.
struct Client {
    greeting: &'static [u8],
    log: Shared,
}

impl Handler for Client {
    fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
        if !self.greeting.is_empty() {
            let _ = conns.send(id, self.greeting);
        }
    }
    fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
        data.len()
    }
    fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        self.log.borrow_mut().closed.push((id, reason.to_string()));
    }
}

#[test]
fn a_tls_echo_returns_every_byte_of_many_clients() {
    let _heavy = support::heavy();
    let pki = pki();
    let (mut reactor, _service, addr, log) = serve_tls(&pki, Config::default());
    let clients: Vec<JoinHandle<()>> = (0..100u64)
        .map(|i| {
            let config = pki.client.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(i + 1);
                let data = rng.bytes(1 << 20);
                let mut tls = tls_client(addr, config);
                // Random chunks, written and read back in turn.
                let mut sent = 0;
                let mut got = Vec::with_capacity(data.len());
                let mut buf = vec![0; 64 * 1024];
                while got.len() < data.len() {
                    if sent < data.len() {
                        let chunk = 1 + (rng.next_u64() % 50_000) as usize;
                        let end = (sent + chunk).min(data.len());
                        tls.write_all(&data[sent..end]).unwrap();
                        sent = end;
                    }
                    while got.len() < sent {
                        let n = tls.read(&mut buf).unwrap();
                        assert!(n > 0, "end of stream after {} bytes", got.len());
                        got.extend_from_slice(&buf[..n]);
                    }
                }
                assert!(got == data, "client {i}: the echo differs");
                tls.conn.send_close_notify();
                let _ = tls.flush();
            })
        })
        .collect();
    for client in clients {
        run_client(&mut reactor, client);
    }
    run_until(&mut reactor, || log.borrow().closed.len() == 100);
    assert!(
        log.borrow()
            .closed
            .iter()
            .all(|(_, reason)| reason == "closed by peer"),
        "{:?}",
        log.borrow().closed.iter().take(3).collect::<Vec<_>>()
    );
}

/// A line protocol for the close tests: `bye` is answered `goodbye` and a
/// graceful close; everything else is echoed.
struct Bye {
    log: Shared,
}

impl Handler for Bye {
    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        if data.ends_with(b"bye\n") {
            conns.send(id, b"goodbye\n").unwrap();
            conns.close(id).unwrap();
        } else {
            let _ = conns.send(id, data);
        }
        data.len()
    }
    fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
        self.log.borrow_mut().closed.push((id, reason.to_string()));
    }
}

/// Reads to the end of a TLS stream and says how it ended: `Ok` for the
/// peer's close_notify, the error otherwise.
fn read_to_close_notify(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) -> (Vec<u8>, std::io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Err(e)),
        }
    }
}

#[test]
fn a_graceful_close_sends_close_notify_after_the_last_byte() {
    let pki = pki();
    let log = Shared::default();
    let mut reactor = Reactor::new().unwrap();
    let service = Service::new(&mut reactor, Bye { log: log.clone() }, Config::default());
    let listener = service
        .listen_tls(
            &mut reactor,
            "127.0.0.1:0".parse().unwrap(),
            pki.server.clone(),
        )
        .unwrap();
    let addr = service.tcp_addr(listener).unwrap();
    let config = pki.client.clone();
    let client = std::thread::spawn(move || {
        let mut tls = tls_client(addr, config);
        tls.write_all(b"hello\nbye\n").unwrap();
        read_to_close_notify(&mut tls)
    });
    let (got, end) = run_client(&mut reactor, client);
    assert_eq!(got, b"goodbye\n");
    // rustls answers UnexpectedEof when the stream ends without close_notify.
    assert!(
        end.is_ok(),
        "the stream ended without close_notify: {end:?}"
    );
    run_until(&mut reactor, || !log.borrow().closed.is_empty());
    assert_eq!(log.borrow().closed[0].1, "closed");
}

#[test]
fn a_half_close_over_tls_still_gets_the_reply_and_close_notify() {
    let pki = pki();
    let (mut reactor, _service, addr, log) = serve_tls(&pki, Config::default());
    let config = pki.client.clone();
    let client = std::thread::spawn(move || {
        let mut tls = tls_client(addr, config);
        tls.write_all(b"last words").unwrap();
        // Our close_notify, then FIN on our side only: we can still read.
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
        read_to_close_notify(&mut tls)
    });
    let (got, end) = run_client(&mut reactor, client);
    assert_eq!(got, b"last words");
    assert!(end.is_ok(), "{end:?}");
    run_until(&mut reactor, || !log.borrow().closed.is_empty());
    assert_eq!(log.borrow().closed[0].1, "closed by peer");
}

#[test]
fn plaintext_on_a_tls_port_is_refused_without_disturbing_others() {
    let pki = pki();
    let (mut reactor, _service, addr, log) = serve_tls(&pki, Config::default());
    let config = pki.client.clone();
    // A healthy TLS client, connected before and served after: it goes on
    // once the plaintext client has been refused.
    let (go_on, wait) = std::sync::mpsc::channel::<()>();
    let healthy = std::thread::spawn(move || {
        let mut tls = tls_client(addr, config);
        tls.write_all(b"before").unwrap();
        let mut got = [0; 6];
        tls.read_exact(&mut got).unwrap();
        wait.recv_timeout(Duration::from_secs(20)).unwrap();
        tls.write_all(b"after!").unwrap();
        tls.read_exact(&mut got).unwrap();
        got
    });
    let plain = std::thread::spawn(move || {
        let mut s = support::connect(addr);
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // An alert, then the end: never a hang.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        rest
    });
    let alert = run_client(&mut reactor, plain);
    assert_eq!(alert.first(), Some(&21), "a TLS alert record: {alert:?}");
    go_on.send(()).unwrap();
    assert_eq!(&run_client(&mut reactor, healthy), b"after!");
    let closed = log.borrow().closed.clone();
    let refused: Vec<_> = closed
        .iter()
        .filter(|(_, r)| r.starts_with("TLS: "))
        .collect();
    assert_eq!(refused.len(), 1, "only the plaintext client: {closed:?}");
}

#[test]
fn a_stalled_handshake_is_closed_at_the_deadline() {
    let pki = pki();
    let config = Config::default().handshake_timeout(Duration::from_millis(300));
    let (mut reactor, _service, addr, log) = serve_tls(&pki, config);
    // Connects, and never says hello.
    let mut silent = support::connect(addr);
    run_until(&mut reactor, || !log.borrow().closed.is_empty());
    let reason = log.borrow().closed[0].1.clone();
    assert!(reason.contains("handshake not finished"), "{reason}");
    assert!(support::closed_within(&mut silent, Duration::from_secs(10)));
}

#[test]
fn a_client_that_does_not_trust_the_certificate_is_told_why() {
    let ours = pki();
    let (mut reactor, _service, addr, server_log) = serve_tls(&ours, Config::default());
    // Trusts another certificate, not the server's (self-signed) one.
    let stranger = pki();
    let client_log = Shared::default();
    let client = Service::new(
        &mut reactor,
        Client {
            greeting: b"hello",
            log: client_log.clone(),
        },
        Config::default(),
    );
    let name = ServerName::try_from("localhost").unwrap();
    client
        .connect_tls(&mut reactor, addr, name, stranger.client.clone())
        .unwrap();
    run_until(&mut reactor, || {
        !client_log.borrow().closed.is_empty() && !server_log.borrow().closed.is_empty()
    });
    let reason = client_log.borrow().closed[0].1.clone();
    assert!(
        reason.starts_with("TLS: ") && reason.contains("certificate"),
        "{reason}"
    );
    // And the server heard why, from the client's alert.
    assert!(server_log.borrow().closed[0].1.starts_with("TLS: "));
}

#[test]
fn a_reactor_tls_client_and_server_echo_on_one_loop() {
    struct Client {
        want: Vec<u8>,
        got: Rc<RefCell<Vec<u8>>>,
    }
    impl Handler for Client {
        fn on_open(&mut self, conns: &mut Connections<'_>, id: ConnId, _: Origin) {
            conns.send(id, &self.want).unwrap();
        }
        fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
            self.got.borrow_mut().extend_from_slice(data);
            if self.got.borrow().len() == self.want.len() {
                conns.close(id).unwrap();
            }
            data.len()
        }
    }
    let pki = pki();
    let (mut reactor, _service, addr, log) = serve_tls(&pki, Config::default());
    let want = Rng::new(77).bytes(3 << 20);
    let got = Rc::new(RefCell::new(Vec::new()));
    let client = Service::new(
        &mut reactor,
        Client {
            want: want.clone(),
            got: got.clone(),
        },
        Config::default(),
    );
    let name = ServerName::try_from("localhost").unwrap();
    client
        .connect_tls(&mut reactor, addr, name, pki.client.clone())
        .unwrap();
    run_until(&mut reactor, || !log.borrow().closed.is_empty());
    assert!(
        *got.borrow() == want,
        "got {} of {} bytes",
        got.borrow().len(),
        want.len()
    );
    assert_eq!(log.borrow().closed[0].1, "closed by peer");
}

#[test]
fn a_tls_client_that_never_reads_is_cut_off_with_bounded_memory() {
    struct Flood {
        log: Shared,
    }
    impl Handler for Flood {
        fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
            // Ask once, get far more than the output limit, never read.
            for _ in 0..40 {
                if conns.send(id, &[b'f'; 256 * 1024]).is_err() {
                    break;
                }
            }
            data.len()
        }
        fn on_close(&mut self, _: &mut Connections<'_>, id: ConnId, reason: &CloseReason) {
            self.log.borrow_mut().closed.push((id, reason.to_string()));
        }
    }
    let pki = pki();
    let log = Shared::default();
    let mut reactor = Reactor::new().unwrap();
    let service = Service::new(
        &mut reactor,
        Flood { log: log.clone() },
        Config::default().output_limit(4 << 20),
    );
    let listener = service
        .listen_tls(
            &mut reactor,
            "127.0.0.1:0".parse().unwrap(),
            pki.server.clone(),
        )
        .unwrap();
    let addr = service.tcp_addr(listener).unwrap();
    let config = pki.client.clone();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let deaf = std::thread::spawn(move || {
        let mut tls = tls_client(addr, config);
        tls.write_all(b"go").unwrap();
        // Never reads; waits until told, then hangs up.
        let _ = stop_rx.recv_timeout(Duration::from_secs(30));
    });
    run_until(&mut reactor, || !log.borrow().closed.is_empty());
    assert_eq!(
        log.borrow().closed[0].1,
        "output limit exceeded (peer not reading)"
    );
    let stats = service.stats().unwrap();
    assert_eq!((stats.open, stats.queued_output), (0, 0));
    stop_tx.send(()).unwrap();
    deaf.join().unwrap();
}

/// The PEM files of a test certificate, in a fresh directory.
fn pem_files(pki: &TestPki, tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("reactor-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    (cert, key)
}

#[test]
fn openssl_s_client_talks_to_echo_server_over_tls() {
    if !support::tool("openssl") {
        return;
    }
    let pki = pki();
    let (cert, key) = pem_files(&pki, "openssl");
    let server = support::Server::start(
        "echo_server",
        &[
            "--addr",
            "127.0.0.1:0",
            "--tls-addr",
            "127.0.0.1:0",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        2,
    );
    let tls_addr = server.listening[1].clone();
    let mut child = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &tls_addr,
            "-servername",
            "localhost",
            "-CAfile",
            cert.to_str().unwrap(),
            "-verify_return_error",
            "-quiet",
            "-no_ign_eof",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello from openssl\n").unwrap();
    stdin.flush().unwrap();
    // The echo comes back on stdout; only then is stdin closed, which makes
    // s_client send close_notify and exit.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let echoed = rx.recv_timeout(Duration::from_secs(20));
    drop(stdin);
    let status = support::wait_with_deadline(&mut child, Duration::from_secs(20));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(
        echoed.as_deref(),
        Ok("hello from openssl"),
        "stderr {err:?}"
    );
    assert!(status.success(), "s_client: {status:?}, stderr {err:?}");
    // And the plaintext listener is still there beside it.
    assert_eq!(support::echo_once(server.addr(), b"plain"), b"plain");
}

#[test]
fn an_expired_certificate_is_refused_with_the_reason() {
    // A certificate that expired in 2020, trusted as its own root.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let der = cert.der().clone();
    let server_config = tls::server_config_from(
        vec![der.clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let client_config = tls::client_config_with_roots(roots).unwrap();

    let server_log = Shared::default();
    let mut reactor = Reactor::new().unwrap();
    let server = Service::new(
        &mut reactor,
        Echo {
            log: server_log.clone(),
        },
        Config::default(),
    );
    let listener = server
        .listen_tls(&mut reactor, "127.0.0.1:0".parse().unwrap(), server_config)
        .unwrap();
    let addr = server.tcp_addr(listener).unwrap();
    let client_log = Shared::default();
    let client = Service::new(
        &mut reactor,
        Client {
            greeting: b"hello",
            log: client_log.clone(),
        },
        Config::default(),
    );
    client
        .connect_tls(
            &mut reactor,
            addr,
            ServerName::try_from("localhost").unwrap(),
            client_config,
        )
        .unwrap();
    run_until(&mut reactor, || !client_log.borrow().closed.is_empty());
    let reason = client_log.borrow().closed[0].1.clone();
    assert!(
        reason.starts_with("TLS: ") && reason.contains("expired"),
        "{reason}"
    );
}

/// Regression: output queued while the TLS connect was in progress, and a
/// write shutdown asked for straight after (a piped `chat_client`), sent
/// close_notify ahead of the plaintext rustls held for the end of the
/// handshake: the server saw a broken handshake, and the bytes were lost.
#[test]
fn output_and_a_half_close_asked_for_during_the_handshake_keep_their_order() {
    struct Client {
        got: Rc<RefCell<Vec<u8>>>,
        closed: Rc<RefCell<Option<String>>>,
    }
    impl Handler for Client {
        fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize {
            self.got.borrow_mut().extend_from_slice(data);
            data.len()
        }
        fn on_read_closed(&mut self, conns: &mut Connections<'_>, id: ConnId) {
            let _ = conns.close(id);
        }
        fn on_close(&mut self, _: &mut Connections<'_>, _: ConnId, reason: &CloseReason) {
            *self.closed.borrow_mut() = Some(reason.to_string());
        }
    }
    let pki = pki();
    let (mut reactor, _service, addr, log) = serve_tls(&pki, Config::default());
    let got = Rc::new(RefCell::new(Vec::new()));
    let closed = Rc::new(RefCell::new(None));
    let client = Service::new(
        &mut reactor,
        Client {
            got: got.clone(),
            closed: closed.clone(),
        },
        Config::default(),
    );
    let config = pki.client.clone();
    client
        .with(&mut reactor, |_, conns| {
            let id = conns
                .connect_tls(addr, ServerName::try_from("localhost").unwrap(), config)
                .unwrap();
            conns.send(id, b"sent before the handshake\n").unwrap();
            conns.shutdown_write(id).unwrap();
        })
        .unwrap();
    run_until(&mut reactor, || closed.borrow().is_some());
    assert_eq!(*got.borrow(), b"sent before the handshake\n");
    assert_eq!(closed.borrow().as_deref(), Some("closed by peer"));
    run_until(&mut reactor, || !log.borrow().closed.is_empty());
    assert_eq!(log.borrow().closed[0].1, "closed by peer");
}
