//! `http_get` against origins run by the test: each framing a server may
//! use (a length on a connection left open, chunks, the end of the
//! stream), statuses, errors, a timeout, and https with a CA file.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use support::run_example;

/// What a test origin does once it has read the request head.
#[derive(Clone, Copy)]
enum Then {
    /// Keep the connection open until the client closes it.
    HoldOpen,
    /// Close after the response.
    Close,
    /// Never answer; wait for the client to give up.
    Stall,
}

/// An origin for one connection: reads the request head, answers
/// `response`, then does `then`. Returns its address and the request it
/// read.
fn origin(response: &'static [u8], then: Then) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let request = read_head(&mut stream);
        if !matches!(then, Then::Stall) {
            stream.write_all(response).unwrap();
        }
        if !matches!(then, Then::Close) {
            // Until the client closes (or the read times out).
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
        }
        request
    });
    (addr, handle)
}

fn read_head(stream: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn get(url: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![url];
    args.extend_from_slice(extra);
    let (status, out, err) = run_example("http_get", &args, Duration::from_secs(30));
    (status.code().unwrap_or(-1), out, err)
}

#[test]
fn a_length_ends_the_body_on_a_connection_left_open() {
    let (addr, origin) = origin(
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain\r\n\r\nhello\nNOT PART OF IT",
        Then::HoldOpen,
    );
    let (code, out, err) = get(&format!("http://{addr}/path?q=1"), &[]);
    assert_eq!((code, out.as_str()), (0, "hello\n"), "{err}");
    assert!(err.starts_with("HTTP/1.1 200 OK\n"), "{err}");
    assert!(err.contains("Content-Type: text/plain"), "{err}");
    let request = origin.join().unwrap();
    assert!(
        request.starts_with("GET /path?q=1 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains(&format!("\r\nHost: {addr}\r\n")),
        "{request}"
    );
}

#[test]
fn chunked_and_close_delimited_bodies() {
    let (addr, _origin) = origin(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n6;x=y\r\nworld\n\r\n0\r\nTrailer: 1\r\n\r\n",
        Then::HoldOpen,
    );
    let (code, out, err) = get(&format!("http://{addr}/"), &[]);
    assert_eq!((code, out.as_str()), (0, "hello world\n"), "{err}");

    let (addr, _origin) = origin(b"HTTP/1.0 200 OK\r\n\r\nuntil the end\n", Then::Close);
    let (code, out, err) = get(&format!("http://{addr}/"), &[]);
    assert_eq!((code, out.as_str()), (0, "until the end\n"), "{err}");

    // Cut short: an error, exit 1.
    let (addr, _origin) = origin(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
        Then::Close,
    );
    let (code, _, err) = get(&format!("http://{addr}/"), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("closed before the body ended"), "{err}");
}

#[test]
fn output_file_and_statuses() {
    let (addr, _origin) = origin(
        b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc",
        Then::HoldOpen,
    );
    let path = std::env::temp_dir().join(format!("reactor-http-get-{}.out", std::process::id()));
    let (code, out, err) = get(&format!("http://{addr}/"), &["-o", path.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"abc");

    let (addr, _origin) = origin(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\ngone",
        Then::HoldOpen,
    );
    let (code, out, err) = get(&format!("http://{addr}/"), &[]);
    assert_eq!((code, out.as_str()), (1, "gone"), "{err}");

    // An interim 100 before the real response is skipped.
    let (addr, _origin) = origin(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        Then::HoldOpen,
    );
    assert_eq!(get(&format!("http://{addr}/"), &[]).1, "ok");

    // A response with smuggling-shaped framing is refused.
    let (addr, _origin) = origin(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        Then::HoldOpen,
    );
    let (code, _, err) = get(&format!("http://{addr}/"), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("bad response"), "{err}");
}

#[test]
fn errors_are_one_line_and_exit_non_zero() {
    let (code, _, err) = get("ftp://example.com/", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("unsupported scheme 'ftp'"), "{err}");
    let (code, _, err) = get("http://no-such-host.invalid/", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot resolve no-such-host.invalid"), "{err}");
    let refused = support::unused_addr();
    let (code, _, err) = get(&format!("http://{refused}/"), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("refused"), "{err}");
    let (addr, _origin) = origin(b"", Then::Stall);
    let (code, _, err) = get(&format!("http://{addr}/"), &["--timeout", "1s"]);
    assert_eq!(code, 1);
    assert!(err.contains("timed out after 1s"), "{err}");
}

#[test]
fn https_is_verified_against_a_ca_file() {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = made.cert.der().clone();
    let key = reactor::tls::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let config = reactor::tls::server_config_from(vec![cert], key).unwrap();
    let dir = std::env::temp_dir().join(format!("reactor-http-get-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, made.cert.pem()).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        // Two connections: the verified fetch, then the one that must fail.
        for _ in 0..2 {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let head = read_head(&mut tls);
            if head.is_empty() {
                continue; // the client refused our certificate
            }
            let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsecret\n");
            tls.conn.send_close_notify();
            let _ = tls.flush();
            let _ = tls.sock.shutdown(std::net::Shutdown::Write);
            let mut rest = Vec::new();
            let _ = tls.sock.read_to_end(&mut rest);
        }
    });
    let url = format!("https://localhost:{port}/");
    let (code, out, err) = get(&url, &["--ca", ca.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (0, "secret\n"), "{err}");
    // Without the CA file the system's roots do not know it.
    let (code, out, err) = get(&url, &[]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    server.join().unwrap();
}

/// From an outside review: a 101 is a final answer (exit 1, not a parse
/// error of what follows it), a path outside ASCII is percent-encoded, and
/// a zero timeout is a usage error.
#[test]
fn switching_protocols_non_ascii_paths_and_a_zero_timeout() {
    let (addr, _origin) = origin(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
        Then::HoldOpen,
    );
    let (code, _, err) = get(&format!("http://{addr}/"), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("HTTP/1.1 101 Switching Protocols"), "{err}");
    let (addr, origin) = origin(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        Then::HoldOpen,
    );
    let (code, _, err) = get(&format!("http://{addr}/caf\u{e9}?q=\u{e9}"), &[]);
    assert_eq!(code, 0, "{err}");
    let request = origin.join().unwrap();
    assert!(
        request.starts_with("GET /caf%C3%A9?q=%C3%A9 HTTP/1.1\r\n"),
        "{request}"
    );
    let (code, _, err) = get("http://127.0.0.1:9/", &["--timeout", "0s"]);
    assert_eq!(code, 2, "{err}");
}
