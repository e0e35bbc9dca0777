//! The seeds' secure chat: `chat_server --tls-addr` with accounts
//! (`--users`, argon2id hashes), driven over real TLS by rustls clients, by
//! Python's `ssl` module, and beside plaintext and JSON users.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use reactor::tls::{self, RootCertStore, ServerName};
use support::Server;

const PROMPT: &[u8] = b"Enter your name: ";
const PASSWORD: &[u8] = b"Password: ";

/// A certificate for localhost, written as PEM files, and a client
/// configuration that trusts it.
struct Pki {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client: Arc<tls::ClientConfig>,
}

fn pki(tag: &str) -> Pki {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir().join(format!("reactor-chat-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(made.cert.der().clone()).unwrap();
    Pki {
        dir,
        cert,
        key,
        client: tls::client_config_with_roots(roots).unwrap(),
    }
}

/// `chat_server --hash-password NAME`, fed the password on a pipe.
fn hash_line(name: &str, password: &str) -> String {
    let mut child = Command::new(support::example("chat_server"))
        .args(["--hash-password", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let status = support::wait_with_deadline(&mut child, Duration::from_secs(60));
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "--hash-password failed: {status:?}");
    out.trim_end().to_string()
}

/// A chat server with a TLS listener and one account, alice.
fn start(pki: &Pki) -> Server {
    let line = hash_line("alice", "correct horse");
    let users = pki.dir.join("users");
    std::fs::write(&users, format!("# test accounts\n{line}\n")).unwrap();
    let args = server_args(pki, &users);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start("chat_server", &args, 3)
}

/// chat_server's arguments: every listener on a free port, TLS with the
/// test certificate, accounts from `users`.
fn server_args(pki: &Pki, users: &std::path::Path) -> Vec<String> {
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let mut args: Vec<String> = [
        "--addr",
        "127.0.0.1:0",
        "--json-addr",
        "127.0.0.1:0",
        "--tls-addr",
        "127.0.0.1:0",
    ]
    .map(String::from)
    .to_vec();
    args.extend([
        "--cert".into(),
        path(&pki.cert),
        "--key".into(),
        path(&pki.key),
    ]);
    args.extend(["--users".into(), path(users)]);
    args
}

fn addr(server: &Server, i: usize) -> SocketAddr {
    server.listening[i].parse().unwrap()
}

/// A line user over TLS (or plaintext), reading with a timeout.
struct User<S: Read + Write> {
    stream: BufReader<S>,
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_user(addr: SocketAddr, config: &Arc<tls::ClientConfig>) -> User<TlsStream> {
    let socket = support::connect(addr);
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let conn =
        rustls::ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    User {
        stream: BufReader::new(rustls::StreamOwned::new(conn, socket)),
    }
}

fn plain_user(addr: SocketAddr) -> User<TcpStream> {
    User {
        stream: BufReader::new(support::connect(addr)),
    }
}

impl<S: Read + Write> User<S> {
    fn send(&mut self, line: &str) {
        let stream = self.stream.get_mut();
        stream.write_all(format!("{line}\n").as_bytes()).unwrap();
        stream.flush().unwrap();
    }

    #[track_caller]
    fn expect_bytes(&mut self, want: &[u8]) {
        let mut got = vec![0; want.len()];
        self.stream.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    }

    #[track_caller]
    fn expect(&mut self, line: &str) {
        let mut got = String::new();
        self.stream.read_line(&mut got).unwrap();
        assert_eq!(got.trim_end_matches('\n'), line);
    }

    /// True once the server has closed the session.
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
            ),
        }
    }
}

fn welcome(name: &str) -> String {
    format!("welcome to lobby, {name} (/help lists the commands)")
}

#[test]
fn the_users_file_holds_argon2id_hashes_never_the_password() {
    let line = hash_line("alice", "correct horse");
    let (name, hash) = line.split_once(':').unwrap();
    assert_eq!(name, "alice");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!line.contains("correct horse"));
    // Two hashes of one password differ: salted.
    assert_ne!(hash_line("alice", "correct horse"), line);
}

#[test]
fn a_registered_name_logs_in_over_tls_with_its_password() {
    let pki = pki("login");
    let server = start(&pki);
    let mut alice = tls_user(addr(&server, 2), &pki.client);
    alice.expect_bytes(PROMPT);
    alice.send("alice");
    alice.expect_bytes(PASSWORD);
    alice.send("correct horse");
    alice.expect(&welcome("alice"));
    // Private messages cross from TLS to plaintext users and back.
    let mut bob = plain_user(addr(&server, 0));
    bob.expect_bytes(PROMPT);
    bob.send("bob");
    bob.expect(&welcome("bob"));
    alice.expect("bob joined lobby");
    alice.send("/msg bob psst");
    bob.expect("[private] alice: psst");
    bob.send("/msg alice ok");
    alice.expect("[private] bob: ok");
}

#[test]
fn a_wrong_password_gets_one_error_then_a_delay_that_stalls_no_one() {
    let pki = pki("wrong");
    let server = start(&pki);
    let mut carol = plain_user(addr(&server, 0));
    carol.expect_bytes(PROMPT);
    carol.send("carol");
    carol.expect(&welcome("carol"));
    let mut dave = plain_user(addr(&server, 0));
    dave.expect_bytes(PROMPT);
    dave.send("dave");
    dave.expect(&welcome("dave"));
    carol.expect("dave joined lobby");

    let mut mallory = tls_user(addr(&server, 2), &pki.client);
    mallory.expect_bytes(PROMPT);
    mallory.send("alice");
    mallory.expect_bytes(PASSWORD);
    mallory.send("guess one");
    mallory.expect("error: wrong password");
    // During the delay before the next prompt, the chat goes on.
    carol.send("still chatting");
    dave.expect("carol: still chatting");
    mallory.expect_bytes(PASSWORD);
    mallory.send("guess two");
    mallory.expect("error: wrong password");
    mallory.expect_bytes(PASSWORD);
    mallory.send("guess three");
    mallory.expect("error: wrong password");
    // The third failure ends the session.
    assert!(mallory.closed());
    dave.send("and on");
    carol.expect("dave: and on");
}

#[test]
fn a_registered_name_is_refused_on_plaintext_and_json_and_others_are_free() {
    let pki = pki("refused");
    let server = start(&pki);
    let mut plain = plain_user(addr(&server, 0));
    plain.expect_bytes(PROMPT);
    plain.send("Alice");
    plain.expect("error: Alice is a registered name: log in over TLS to use it");
    plain.expect_bytes(PROMPT);
    plain.send("erin");
    plain.expect(&welcome("erin"));

    let mut json = BufReader::new(support::connect(addr(&server, 1)));
    let mut line = String::new();
    json.read_line(&mut line).unwrap(); // welcome
    json.get_mut()
        .write_all(b"{\"type\":\"join\",\"room\":\"lobby\",\"username\":\"alice\"}\n")
        .unwrap();
    line.clear();
    json.read_line(&mut line).unwrap();
    let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reply["type"], "error");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("log in over TLS"),
        "{reply}"
    );

    // An unregistered name works on the TLS listener too, without a password.
    let mut frank = tls_user(addr(&server, 2), &pki.client);
    frank.expect_bytes(PROMPT);
    frank.send("frank");
    frank.expect(&welcome("frank"));
}

#[test]
fn a_users_file_with_a_plaintext_password_is_refused() {
    let pki = pki("badfile");
    let users = pki.dir.join("users");
    std::fs::write(&users, "alice:correct horse\n").unwrap();
    let args = server_args(&pki, &users);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _out, err) = support::run_example("chat_server", &args, Duration::from_secs(20));
    assert!(!status.success());
    assert!(err.contains("not an argon2id hash"), "{err}");
}

#[test]
fn python_ssl_logs_in_to_the_tls_listener() {
    let python = Command::new("python3").arg("-c").arg("import ssl").status();
    if !python.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("REQUIRE_ALL").as_deref() != Ok("1"),
            "python3 with ssl is required (REQUIRE_ALL=1)"
        );
        eprintln!("skipped: python3 with ssl is not installed");
        return;
    }
    let pki = pki("python");
    let server = start(&pki);
    let tls_addr = addr(&server, 2);
    let script = r#"
import socket, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
context = ssl.create_default_context(cafile=ca)
with socket.create_connection((host, port), timeout=20) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as s:
        f = s.makefile("rwb", buffering=0)
        def expect(want):
            got = b""
            while len(got) < len(want):
                chunk = s.recv(len(want) - len(got))
                if not chunk:
                    sys.exit("closed while expecting %r" % want)
                got += chunk
            if got != want:
                sys.exit("expected %r, got %r" % (want, got))
        expect(b"Enter your name: ")
        s.sendall(b"alice\n")
        expect(b"Password: ")
        s.sendall(b"correct horse\n")
        expect(b"welcome to lobby, alice (/help lists the commands)\n")
        s.sendall(b"/quit\n")
        print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, "127.0.0.1", &tls_addr.port().to_string()])
        .arg(&pki.cert)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "python: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A flood of logins (their checks queued for the server's helper thread)
/// is answered, every one, while the chat goes on. (This shows liveness, not
/// that the loop never waits for a check: the answers come back through the
/// loop, so a server that hashed on its loop would pass it too, only
/// slower.)
#[test]
fn a_flood_of_logins_is_answered_while_the_chat_goes_on() {
    let _heavy = support::heavy();
    let pki = pki("flood");
    let server = start(&pki);
    let mut bob = plain_user(addr(&server, 0));
    bob.expect_bytes(PROMPT);
    bob.send("bob");
    bob.expect(&welcome("bob"));
    let mut carol = plain_user(addr(&server, 0));
    carol.expect_bytes(PROMPT);
    carol.send("carol");
    carol.expect(&welcome("carol"));
    bob.expect("carol joined lobby");

    const FLOOD: usize = 8;
    let (answered, answers) = std::sync::mpsc::channel();
    let (sent, sends) = std::sync::mpsc::channel();
    let tls_addr = addr(&server, 2);
    let floods: Vec<_> = (0..FLOOD)
        .map(|_| {
            let config = pki.client.clone();
            let (answered, sent) = (answered.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut guess = tls_user(tls_addr, &config);
                guess.expect_bytes(PROMPT);
                guess.send("alice");
                guess.expect_bytes(PASSWORD);
                guess.send("not the password");
                sent.send(()).unwrap();
                guess.expect("error: wrong password");
                answered.send(()).unwrap();
            })
        })
        .collect();
    drop((answered, sent));
    // Every password is on its way before the chat starts: a server that
    // checked them on its loop would answer the chat only after them.
    for _ in 0..FLOOD {
        sends.recv_timeout(Duration::from_secs(30)).unwrap();
    }
    // The chat, while the checks are queued and running.
    for i in 0..10 {
        bob.send(&format!("line {i}"));
        carol.expect(&format!("bob: line {i}"));
    }
    for flood in floods {
        flood.join().unwrap();
    }
    assert_eq!(
        answers.try_iter().count(),
        FLOOD,
        "every login was answered"
    );
}

/// Regression (outside review): lines sent in the same write as the
/// password (a piped `chat_client`) were thrown away while it was checked.
#[test]
fn lines_sent_with_the_password_wait_for_the_check_and_are_not_lost() {
    let pki = pki("pipelined");
    let server = start(&pki);
    let mut bob = plain_user(addr(&server, 0));
    bob.expect_bytes(PROMPT);
    bob.send("bob");
    bob.expect(&welcome("bob"));
    let mut alice = tls_user(addr(&server, 2), &pki.client);
    alice.expect_bytes(PROMPT);
    // Everything in one write: name, password, and what to say after.
    alice.send("alice\ncorrect horse\nhello after logging in");
    alice.expect_bytes(PASSWORD);
    alice.expect(&welcome("alice"));
    bob.expect("alice joined lobby");
    bob.expect("alice: hello after logging in");
}

/// Regression (outside review): a truncated hash, or a name registered
/// twice, was accepted at start, and then refused every password.
#[test]
fn a_users_file_with_a_truncated_hash_or_a_name_twice_is_refused() {
    let pki = pki("badfile2");
    let good = hash_line("alice", "correct horse");
    let hash = good.split_once(':').unwrap().1;
    for (content, why) in [
        (
            "alice:$argon2id$v=19$m=19456\n".to_string(),
            "not an argon2id hash",
        ),
        (format!("alice:{hash}\nALICE:{hash}\n"), "registered twice"),
    ] {
        let users = pki.dir.join("users");
        std::fs::write(&users, content).unwrap();
        let args = server_args(&pki, &users);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, out, err) =
            support::run_example("chat_server", &args, Duration::from_secs(20));
        assert!(!status.success());
        assert!(err.contains(why), "{err}");
        assert!(
            !out.contains("listening on"),
            "announced before failing: {out}"
        );
    }
}
