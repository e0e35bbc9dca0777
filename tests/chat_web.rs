//! The chat in the browser: `chat_server --web-addr`, its page and its
//! WebSocket, driven as a browser would (our own WebSocket client, and a
//! real headless Chromium), beside line and JSON users in the same rooms.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use reactor::codec::websocket::Opcode;
use serde_json::json;
use support::browser::Browser;
use support::chat::{Json, Line, note};
use support::ws::{Received, WsClient};
use support::{Server, connect, heavy, tool};

fn start(extra: &[&str]) -> Server {
    let mut args = vec![
        "--addr",
        "127.0.0.1:0",
        "--json-addr",
        "127.0.0.1:0",
        "--web-addr",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Server::start("chat_server", &args, 3)
}

fn line_addr(server: &Server) -> SocketAddr {
    server.listening[0].parse().unwrap()
}

fn json_addr(server: &Server) -> SocketAddr {
    server.listening[1].parse().unwrap()
}

fn web_addr(server: &Server) -> SocketAddr {
    server.listening[2].parse().unwrap()
}

/// A WebSocket user that has read the welcome.
fn ws_connect(addr: SocketAddr) -> WsClient {
    let mut client = WsClient::connect(addr, "/ws", None).expect("an upgrade");
    let welcome = client.next_json();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    client
}

/// A WebSocket user in the lobby as `name`.
fn ws_join(addr: SocketAddr, name: &str) -> WsClient {
    let mut client = ws_connect(addr);
    client.send_json(&json!({"type": "join", "room": "lobby", "username": name}));
    assert_eq!(client.next_json(), note(&format!("{name} joined lobby")));
    client
}

/// One HTTP exchange on a fresh connection: the whole response as text
/// (the server closes, or the length says where it ends).
fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = connect(addr);
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream)
}

/// Reads one response: its head, then `Content-Length` bytes.
fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

fn upgrade_request(addr: SocketAddr, fields: &str) -> String {
    format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n{fields}\r\n")
}

const GOOD_FIELDS: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

#[test]
fn the_page_is_served_with_a_strict_policy_and_anything_else_is_404() {
    let server = start(&[]);
    let addr = web_addr(&server);
    let page = http(addr, &format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert_eq!(status(&page), 200, "{page}");
    let lower = page.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/html"), "{page}");
    assert!(
        lower.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{page}"
    );
    assert!(lower.contains("connect-src 'self'"), "{page}");
    assert!(page.contains(r#"<script src="/chat.js" defer></script>"#));
    // No inline script anywhere: the policy would block it.
    assert_eq!(page.matches("<script").count(), 1);

    // The script and the style sheet, pipelined on one kept-alive connection.
    let mut stream = connect(addr);
    write!(
        stream,
        "GET /chat.js HTTP/1.1\r\nHost: {addr}\r\n\r\nGET /chat.css HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    let js = read_response(&mut stream);
    let css = read_response(&mut stream);
    assert_eq!(status(&js), 200);
    assert!(
        js.to_ascii_lowercase()
            .contains("content-type: text/javascript")
    );
    assert!(
        js.contains("textContent"),
        "the page renders text, not HTML"
    );
    assert!(!js.contains("innerHTML"), "the page never renders HTML");
    assert_eq!(status(&css), 200);

    // HEAD: the page's length, no body.
    let mut stream = connect(addr);
    write!(
        stream,
        "HEAD / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = String::new();
    stream.read_to_string(&mut head).unwrap();
    assert_eq!(status(&head), 200);
    assert!(head.ends_with("\r\n\r\n"), "a HEAD has no body: {head}");

    for request in [
        format!("GET /missing HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        format!("GET /../etc/passwd HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        format!("DELETE / HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        format!("GET /ws/x HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    ] {
        let response = http(addr, &request);
        assert_eq!(status(&response), 404, "{request}: {response}");
    }
    // Broken HTTP: an error status and a close.
    let response = http(addr, "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status(&response), 400, "no Host: {response}");
    // The absolute form, which servers must accept.
    let response = http(
        addr,
        &format!("GET http://{addr}/chat.css HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    );
    assert_eq!(status(&response), 200, "{response}");
    // A page request and a refused upgrade in one write: both answered,
    // in order.
    let mut stream = connect(addr);
    let refused = GOOD_FIELDS.replace("Version: 13", "Version: 8");
    write!(
        stream,
        "GET /chat.css HTTP/1.1\r\nHost: {addr}\r\n\r\n{}",
        upgrade_request(addr, &refused)
    )
    .unwrap();
    assert_eq!(status(&read_response(&mut stream)), 200);
    assert_eq!(status(&read_response(&mut stream)), 426);
}

#[test]
fn a_full_server_answers_browsers_in_http() {
    let server = start(&["--max-clients", "1"]);
    let _holder = Line::join(line_addr(&server), "holder");
    let addr = web_addr(&server);
    let response = http(addr, &format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert_eq!(status(&response), 503, "{response}");
    assert!(response.ends_with("server full\n"), "{response}");
}

#[test]
fn a_wildcard_listener_takes_the_page_it_served() {
    let server = Server::start(
        "chat_server",
        &[
            "--addr",
            "127.0.0.1:0",
            "--json-addr",
            "127.0.0.1:0",
            "--web-addr",
            "0.0.0.0:0",
        ],
        3,
    );
    let port = web_addr(&server).port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for (origin, host, expected) in [
        (
            format!("http://127.0.0.1:{port}"),
            format!("127.0.0.1:{port}"),
            101,
        ),
        (
            format!("http://localhost:{port}"),
            format!("localhost:{port}"),
            101,
        ),
        // Reached by another of the host's names: the page's origin is the
        // host it was sent to.
        (
            format!("http://chat.lan:{port}"),
            format!("chat.lan:{port}"),
            101,
        ),
        (
            format!("http://evil.example:{port}"),
            format!("chat.lan:{port}"),
            403,
        ),
        (
            "http://evil.example".to_string(),
            format!("127.0.0.1:{port}"),
            403,
        ),
    ] {
        let request =
            format!("GET /ws HTTP/1.1\r\nHost: {host}\r\n{GOOD_FIELDS}Origin: {origin}\r\n\r\n");
        assert_eq!(
            status(&http(addr, &request)),
            expected,
            "{origin} to {host}"
        );
    }
}

#[test]
fn a_browser_without_a_name_is_cut_off_even_while_it_talks() {
    let server = start(&["--line-timeout", "500ms", "--ws-ping", "100ms"]);
    let mut client = ws_connect(web_addr(&server));
    // Requests that need no name, a refused join, and answered pings: none
    // of them is a name, so the clock keeps running.
    let started = Instant::now();
    let mut closed = false;
    for _ in 0..100 {
        client.send_json(&json!({"type": "rooms"}));
        match client.recv() {
            Ok(Some(Received::Ping(payload))) => client.send(Opcode::Pong, &payload),
            Ok(Some(Received::Text(text))) if text.contains("no name given") => {}
            Ok(Some(Received::Text(_))) => {}
            Ok(Some(Received::Close(code, _))) => {
                assert_eq!(code, Some(1008));
                closed = true;
                break;
            }
            Ok(Some(other)) => panic!("{other:?}"),
            Ok(None) | Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(closed, "still open after {:?}", started.elapsed());
}

#[test]
fn bad_handshakes_are_refused_and_good_ones_accepted() {
    let server = start(&[]);
    let addr = web_addr(&server);
    let cases: &[(&str, &str, u16)] = &[
        (
            "no Upgrade",
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            400,
        ),
        (
            "no Connection: upgrade",
            "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            400,
        ),
        (
            "no key",
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
            400,
        ),
        (
            "a short key",
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n",
            400,
        ),
        (
            "version 8",
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
            426,
        ),
        (
            "no version",
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            426,
        ),
    ];
    for (what, fields, expected) in cases {
        let response = http(addr, &upgrade_request(addr, fields));
        assert_eq!(status(&response), *expected, "{what}: {response}");
        if *expected == 426 {
            assert!(response.contains("Sec-WebSocket-Version: 13"), "{response}");
        }
        // Refusals carry the fields every answer has.
        assert!(
            response.contains("Content-Security-Policy: "),
            "{what}: {response}"
        );
    }
    // One Origin, as text: two, or bytes that are not UTF-8, are refused
    // (not taken for a program's missing Origin).
    let two = format!("{GOOD_FIELDS}Origin: http://{addr}\r\nOrigin: http://evil.example\r\n");
    assert_eq!(status(&http(addr, &upgrade_request(addr, &two))), 400);
    let mut stream = connect(addr);
    stream
        .write_all(
            &[
                upgrade_request(addr, GOOD_FIELDS).trim_end().as_bytes(),
                b"\r\nOrigin: http://evil.example\xff\r\n\r\n",
            ]
            .concat(),
        )
        .unwrap();
    assert_eq!(status(&read_response(&mut stream)), 400);
    // Origins: the listener's own address and localhost are allowed,
    // another site is not.
    let port = addr.port();
    for (origin, expected) in [
        (format!("http://{addr}"), 101),
        (format!("http://localhost:{port}"), 101),
        ("http://evil.example".to_string(), 403),
        (format!("http://{addr}.evil.example"), 403),
    ] {
        let response = http(
            addr,
            &upgrade_request(addr, &format!("{GOOD_FIELDS}Origin: {origin}\r\n")),
        );
        assert_eq!(status(&response), expected, "{origin}: {response}");
        if expected == 101 {
            // RFC 6455's own example key and accept.
            assert!(
                response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                "{response}"
            );
            assert!(
                !response
                    .to_ascii_lowercase()
                    .contains("sec-websocket-extensions")
            );
        }
    }
    // permessage-deflate is asked for, and declined by not answering it.
    let response = http(
        addr,
        &upgrade_request(
            addr,
            &format!(
                "{GOOD_FIELDS}Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            ),
        ),
    );
    assert_eq!(status(&response), 101);
    assert!(
        !response
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions")
    );

    // --web-origin replaces the default list.
    let server = start(&["--web-origin", "https://chat.example"]);
    let addr = web_addr(&server);
    for (origin, expected) in [
        ("https://chat.example".to_string(), 101),
        (format!("http://{addr}"), 403),
    ] {
        let response = http(
            addr,
            &upgrade_request(addr, &format!("{GOOD_FIELDS}Origin: {origin}\r\n")),
        );
        assert_eq!(status(&response), expected, "{origin}: {response}");
    }
}

#[test]
fn browser_line_and_json_users_share_rooms_names_and_private_messages() {
    let server = start(&[]);
    let mut web = ws_join(web_addr(&server), "alice");
    let mut line = Line::join(line_addr(&server), "bob");
    assert_eq!(web.next_json(), note("bob joined lobby"));
    let mut json = Json::connect(json_addr(&server));
    json.send(json!({"type": "join", "room": "lobby", "username": "carol"}));
    json.expect(note("carol joined lobby"));
    assert_eq!(web.next_json(), note("carol joined lobby"));
    line.expect("carol joined lobby");

    web.send_json(&json!({"type": "chat", "message": "hello from the browser"}));
    line.expect("alice: hello from the browser");
    json.expect(json!({"type": "chat", "username": "alice", "room": "lobby", "message": "hello from the browser"}));
    line.send("hi alice");
    assert_eq!(
        web.next_json(),
        json!({"type": "chat", "username": "bob", "room": "lobby", "message": "hi alice"})
    );
    json.expect(json!({"type": "chat", "username": "bob", "room": "lobby", "message": "hi alice"}));

    // Names are one namespace across the three protocols.
    let mut other = ws_connect(web_addr(&server));
    other.send_json(&json!({"type": "join", "room": "lobby", "username": "BOB"}));
    assert_eq!(
        other.next_json(),
        json!({"type": "error", "message": "the name BOB is taken"})
    );

    // The page's requests: rooms, who, nick.
    web.send_json(&json!({"type": "rooms"}));
    assert_eq!(
        web.next_json(),
        json!({"type": "rooms", "rooms": [{"name": "lobby", "users": 3}]})
    );
    web.send_json(&json!({"type": "who"}));
    assert_eq!(
        web.next_json(),
        json!({"type": "who", "room": "lobby", "users": ["alice", "bob", "carol"]})
    );
    line.send("/who");
    line.expect("who: alice, bob, carol");
    web.send_json(&json!({"type": "nick", "username": "alicia"}));
    assert_eq!(web.next_json(), note("alice is now known as alicia"));
    line.expect("alice is now known as alicia");
    json.expect(note("alice is now known as alicia"));

    // Private messages both ways, and a room of their own.
    line.send("/msg alicia psst");
    assert_eq!(
        web.next_json(),
        json!({"type": "private", "from": "bob", "message": "psst"})
    );
    web.send_json(&json!({"type": "private", "to": "carol", "message": "hi carol"}));
    json.expect(json!({"type": "private", "from": "alicia", "message": "hi carol"}));
    web.send_json(&json!({"type": "join", "room": "games", "username": "alicia"}));
    assert_eq!(web.next_json(), note("alicia joined games"));
    line.expect("alicia left lobby");
    line.send("/rooms");
    line.expect("rooms: lobby (2), games (1)");
    web.send_json(&json!({"type": "rooms"}));
    assert_eq!(
        web.next_json(),
        json!({"type": "rooms", "rooms": [{"name": "lobby", "users": 2}, {"name": "games", "users": 1}]})
    );
    // Bad requests get an error, and the connection stays.
    web.send_text("not json");
    let error = web.next_json();
    assert_eq!(error["type"], "error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );
    web.send_json(&json!({"type": "who"}));
    assert_eq!(
        web.next_json(),
        json!({"type": "who", "room": "games", "users": ["alicia"]})
    );

    // Closing the page: the room is told, as for any user.
    line.send("/join games");
    line.expect("welcome to games, bob (/help lists the commands)");
    assert_eq!(web.next_json(), note("bob joined games"));
    web.send(Opcode::Close, &1001u16.to_be_bytes());
    assert_eq!(web.expect_close(), Some(1001));
    line.expect("alicia left games");
}

/// Builds a frame by hand: `first` is FIN/RSV/opcode, the payload masked
/// with `mask` (None: unmasked, which a client must never send).
fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(masked | n as u8),
        n if n < 65536 => {
            out.push(masked | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(masked | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

#[test]
fn protocol_violations_close_with_their_codes_and_disturb_nobody() {
    let server = start(&["--max-line", "1000"]);
    let addr = web_addr(&server);
    let mut line = Line::join(line_addr(&server), "watcher");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("an unmasked frame", frame(0x81, b"{}", None), 1002),
        (
            "invalid UTF-8",
            frame(0x81, b"{\"type\":\"chat\xff\"}", MASK),
            1007,
        ),
        (
            "a message over --max-line",
            frame(0x81, &[b'a'; 1001], MASK),
            1009,
        ),
        ("a binary message", frame(0x82, b"\x00\x01", MASK), 1003),
        ("a reserved bit", frame(0xC1, b"{}", MASK), 1002),
        ("an unknown opcode", frame(0x83, b"", MASK), 1002),
        (
            "a continuation with nothing to continue",
            frame(0x80, b"x", MASK),
            1002,
        ),
        ("a fragmented ping", frame(0x09, b"", MASK), 1002),
    ];
    for (what, bytes, code) in cases {
        let mut client = ws_join(addr, "victim");
        line.expect("victim joined lobby");
        client.send_raw(&bytes);
        assert_eq!(client.expect_close(), Some(code), "{what}");
        // The server closes the TCP connection after its close frame.
        assert!(
            matches!(client.recv(), Ok(None) | Err(_)),
            "{what}: still open"
        );
        line.expect("victim left lobby");
    }
    // Fragments that add up to more than the limit: refused at the
    // fragment that crosses it.
    let mut client = ws_join(addr, "victim");
    line.expect("victim joined lobby");
    client.send_raw(&frame(0x01, &[b' '; 600], MASK));
    client.send_raw(&frame(0x80, &[b' '; 600], MASK));
    assert_eq!(client.expect_close(), Some(1009));
    line.expect("victim left lobby");
    // The watcher was never disturbed.
    line.send("/who");
    line.expect("who: watcher");
}

#[test]
fn a_100_mib_message_is_refused_without_being_held() {
    let server = start(&["--max-line", "65536"]);
    let addr = web_addr(&server);
    let before = support::status_kib(server.pid(), "VmHWM");
    // One frame announcing 100 MiB: refused from its header.
    let mut client = ws_join(addr, "big");
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(100u64 << 20).to_be_bytes());
    header.extend_from_slice(&MASK.unwrap());
    client.send_raw(&header);
    assert_eq!(client.expect_close(), Some(1009));
    // 100 MiB in 1,600 fragments of 64 KiB: refused at the second, while
    // the client is still sending; the server never holds more than one.
    let mut client = ws_join(addr, "bigger");
    let chunk = frame(0x00, &vec![b'a'; 64 * 1024], MASK);
    let mut first = chunk.clone();
    first[0] = 0x01;
    client.send_raw(&first);
    let mut writer = client.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for _ in 0..1600 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    assert_eq!(client.expect_close(), Some(1009));
    drop(client);
    // (After its close frame the server reads and drops what still comes,
    // until the client gives up: the close cannot turn into a reset that
    // destroys the close frame.)
    sender.join().unwrap();
    let after = support::status_kib(server.pid(), "VmHWM");
    assert!(
        after < before + 8 * 1024,
        "peak memory grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn fragments_pings_and_the_close_handshake() {
    let server = start(&[]);
    let addr = web_addr(&server);
    let mut alice = ws_join(addr, "alice");
    let mut bob = ws_join(addr, "bob");
    assert_eq!(alice.next_json(), note("bob joined lobby"));

    // A message in three fragments, a ping between two of them.
    let message = br#"{"type":"chat","message":"in three parts"}"#;
    bob.send_raw(&frame(0x01, &message[..10], MASK));
    bob.send_raw(&frame(0x89, b"are you there", MASK));
    bob.send_raw(&frame(0x00, &message[10..20], MASK));
    bob.send_raw(&frame(0x80, &message[20..], MASK));
    assert_eq!(
        bob.recv().unwrap(),
        Some(Received::Pong(b"are you there".to_vec()))
    );
    assert_eq!(
        alice.next_json(),
        json!({"type": "chat", "username": "bob", "room": "lobby", "message": "in three parts"})
    );
    // A frame split across many writes, a byte at a time.
    let one = frame(0x81, br#"{"type":"chat","message":"slowly"}"#, MASK);
    for byte in &one {
        bob.send_raw(std::slice::from_ref(byte));
    }
    assert_eq!(alice.next_json()["message"], "slowly");

    // The close handshake: our code comes back, then the TCP close.
    bob.send(
        Opcode::Close,
        &[&4000u16.to_be_bytes()[..], b"bye"].concat(),
    );
    assert_eq!(bob.expect_close(), Some(4000));
    assert!(matches!(bob.recv(), Ok(None) | Err(_)));
    assert_eq!(alice.next_json(), note("bob left lobby"));
    // A close without a code is answered with 1000.
    alice.send(Opcode::Close, b"");
    assert_eq!(alice.expect_close(), Some(1000));
}

#[test]
fn idle_browsers_are_pinged_and_dropped_when_no_pong_comes() {
    let server = start(&["--ws-ping", "200ms", "--ws-pong-timeout", "300ms"]);
    let addr = web_addr(&server);
    let mut line = Line::join(line_addr(&server), "watcher");
    // `silent` never reads, so never answers a ping.
    let silent = ws_join(addr, "silent");
    line.expect("silent joined lobby");
    // The silent one is dropped: the room is told (bounded by the line
    // read timeout of the test client).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        let got = line.line();
        let done = got == "silent left lobby";
        lines.push(got);
        if done {
            break;
        }
    }
    assert_eq!(
        lines.last().map(String::as_str),
        Some("silent left lobby"),
        "{lines:?}"
    );
    drop(silent);
}

#[test]
fn a_lively_browser_answering_pings_is_kept() {
    let server = start(&["--ws-ping", "100ms", "--ws-pong-timeout", "300ms"]);
    let addr = web_addr(&server);
    let mut client = ws_join(addr, "lively");
    // Five pings answered: the connection is still there, and still chats.
    let mut pings = 0;
    while pings < 5 {
        match client.recv().unwrap() {
            Some(Received::Ping(payload)) => {
                client.send(Opcode::Pong, &payload);
                pings += 1;
            }
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    client.send_json(&json!({"type": "who"}));
    assert_eq!(client.next_json()["users"], json!(["lively"]));
}

#[test]
fn a_thousand_websocket_users_receive_every_line_of_a_burst() {
    let _heavy = heavy();
    const USERS: usize = 1000;
    const LINES: usize = 200;
    support::raise_fd_limit(2 * USERS as u64 + 256);
    let server = start(&[]);
    let addr = web_addr(&server);
    let mut sender = ws_join(addr, "sender");
    let mut users: Vec<WsClient> = (0..USERS)
        .map(|i| {
            let mut client = ws_connect(addr);
            client
                .send_json(&json!({"type": "join", "room": "lobby", "username": format!("u{i}")}));
            client
        })
        .collect();
    // Each reads its own join, then the joins of those after it.
    for (i, client) in users.iter_mut().enumerate() {
        assert_eq!(client.next_json(), note(&format!("u{i} joined lobby")));
    }
    for i in 0..LINES {
        sender.send_json(&json!({"type": "chat", "message": format!("line {i}")}));
    }
    for (i, client) in users.iter_mut().enumerate() {
        let mut next = 0;
        while next < LINES {
            let message = client.next_json();
            if message["type"] == "notification" {
                continue;
            }
            assert_eq!(message["message"], format!("line {next}"), "user {i}");
            next += 1;
        }
    }
}

/// Two Chromium pages and an `nc`-style user in one room: what each types
/// appears in the others. Writes a screenshot of a page mid-conversation
/// (to `SCREENSHOT_DIR/chat_web.png` when that is set, for the docs).
#[test]
fn two_browser_pages_and_a_line_user_talk() {
    if !tool("chromium") {
        return;
    }
    let _heavy = heavy();
    let server = start(&[]);
    let url = format!("http://{}/", web_addr(&server));
    let browser = Browser::start(&[]);
    let mut ann = browser.open(&url);
    let mut ben = browser.open(&url);
    let mut line = Line::join(line_addr(&server), "nc_user");
    let limit = Duration::from_secs(20);
    for (page, name) in [(&mut ann, "ann"), (&mut ben, "ben")] {
        // 'complete' comes after the deferred script has run (and bound
        // the form); 'interactive' comes before it.
        assert!(page.wait_until("document.readyState === 'complete'", limit));
        page.type_and_submit("name", name);
        assert!(
            page.wait_until(
                "!document.getElementById('chat').hidden && \
                 getComputedStyle(document.getElementById('login')).display === 'none'",
                limit
            ),
            "{name} did not get in: status {:?}, error {:?}",
            page.text_of("status"),
            page.text_of("login-error")
        );
        line.expect(&format!("{name} joined lobby"));
    }
    ann.type_and_submit("text", "hello from ann's page");
    line.expect("ann: hello from ann's page");
    assert!(ben.wait_until(
        "document.getElementById('messages').textContent.includes(\"ann: hello from ann's page\")",
        limit
    ));
    line.send("hello browsers, from nc");
    for page in [&mut ann, &mut ben] {
        assert!(page.wait_for_text("messages", "nc_user: hello browsers, from nc", limit));
    }
    // HTML in a message is shown as text, never run or rendered.
    line.send("<img src=x onerror=alert(1)><b>bold</b>");
    assert!(ben.wait_for_text("messages", "<b>bold</b>", limit));
    assert_eq!(
        ben.eval("document.querySelectorAll('#messages img, #messages b').length"),
        json!(0)
    );
    ben.type_and_submit("text", "/me waves");
    line.expect("* ben waves");
    ben.type_and_submit("text", "/msg nc_user a secret");
    line.expect("[private] ben: a secret");
    // The user list shows everyone in the room.
    assert!(ann.wait_until(
        "['ann','ben','nc_user'].every(n => [...document.querySelectorAll('#users li')].some(li => li.textContent === n))",
        limit
    ));
    let png = ann.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5000);
    if let Ok(dir) = std::env::var("SCREENSHOT_DIR") {
        std::fs::write(std::path::Path::new(&dir).join("chat_web.png"), &png).unwrap();
    }

    // Too long for the server (4096 bytes): the page says so, keeps the
    // text, and stays connected.
    let long = "x".repeat(5000);
    ben.type_and_submit("text", &long);
    assert!(ben.wait_for_text(
        "messages",
        "not sent: longer than the server takes (4096 bytes)",
        limit
    ));
    assert_eq!(
        ben.eval("document.getElementById('text').value.length"),
        json!(5000)
    );
    ben.type_and_submit("text", "still here");
    line.expect("ben: still here");
    // /leave: the page shows no room and no stale user list.
    ann.type_and_submit("text", "/leave");
    line.expect("ann left lobby");
    assert!(ann.wait_until(
        "document.getElementById('room-name').textContent === 'no room' && \
         document.querySelectorAll('#users li').length === 0",
        limit
    ));
    // The server goes away: what is typed then is not shown as sent.
    drop(server);
    assert!(ben.wait_until(
        "document.getElementById('status').textContent === 'reconnecting'",
        limit
    ));
    ben.type_and_submit("text", "anyone?");
    assert!(ben.wait_for_text("messages", "not sent: not connected", limit));
    assert!(!ben.text_of("messages").contains("ben: anyone?"));
}

#[test]
fn a_browser_that_never_reads_is_dropped_and_the_others_get_everything() {
    let _heavy = heavy();
    let server = start(&["--output-limit", "1MiB"]);
    let slow = ws_join(web_addr(&server), "slow");
    socket2::SockRef::from(&slow.stream)
        .set_recv_buffer_size(4096)
        .unwrap();
    let mut fast = ws_join(web_addr(&server), "fast");
    let mut sender = Line::join(line_addr(&server), "sender");
    assert_eq!(fast.next_json(), note("sender joined lobby"));
    // 8 MiB in 1 KiB lines, the sender at most two windows ahead of the
    // reading browser, so that only the one that never reads falls behind.
    const LINES: usize = 8 * 1024;
    const WINDOW: usize = 256;
    let body = "x".repeat(1000);
    let mut writer = sender.writer.try_clone().unwrap();
    let (read_tx, read_rx) = std::sync::mpsc::channel::<usize>();
    let text = body.clone();
    let send = std::thread::spawn(move || {
        for start in (0..LINES).step_by(WINDOW) {
            if start >= 2 * WINDOW {
                while read_rx.recv_timeout(Duration::from_secs(60)).unwrap() + 2 * WINDOW
                    < start + WINDOW
                {}
            }
            let batch: String = (start..(start + WINDOW).min(LINES))
                .map(|i| format!("{i:05} {text}\n"))
                .collect();
            writer.write_all(batch.as_bytes()).unwrap();
        }
    });
    let mut slow_left = false;
    let mut i = 0;
    while i < LINES {
        let message = fast.next_json();
        if message == note("slow left lobby") {
            slow_left = true;
            continue;
        }
        assert_eq!(message["message"], format!("{i:05} {body}"));
        i += 1;
        if i % WINDOW == 0 {
            let _ = read_tx.send(i);
        }
    }
    send.join().unwrap();
    if !slow_left {
        assert_eq!(fast.next_json(), note("slow left lobby"));
    }
    sender.expect("slow left lobby");
    sender.send("/who");
    sender.expect("who: fast, sender");
    // The server's memory stayed bounded: far below the 8 MiB sent.
    let peak = support::status_kib(server.pid(), "VmHWM");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn a_frame_trickled_for_ever_is_cut_off() {
    let server = start(&["--line-timeout", "300ms"]);
    let mut client = ws_join(web_addr(&server), "trickler");
    // The first two bytes of a 100-byte text frame, and then nothing.
    client.send_raw(&[0x81, 0x80 | 100]);
    let error = client.next_json();
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(
        error["message"],
        "line not finished within 300ms: disconnecting"
    );
    assert_eq!(client.expect_close(), Some(1008));
    // A browser that never even asks for the upgrade is closed, silently.
    let mut idle = connect(web_addr(&server));
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn sigterm_says_goodbye_to_browsers_with_a_close_frame() {
    let server = start(&[]);
    let mut client = ws_join(web_addr(&server), "alice");
    server.signal(libc::SIGTERM);
    assert_eq!(client.next_json(), note("server shutting down"));
    assert_eq!(client.expect_close(), Some(1001));
    let (status, _) = server.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

/// `--web-tls-addr`: the page over https and the chat over wss, in a real
/// browser, beside a line user. With `--users`, a registered name cannot
/// be taken from the web.
#[test]
fn the_page_and_its_websocket_over_tls() {
    if !tool("chromium") {
        return;
    }
    let _heavy = heavy();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let dir = support::TempDir::new("chat-wss");
    let (cert, key, users) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("users"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    // A registered name; its hash is never checked here (no one logs in).
    std::fs::write(
        &users,
        "root:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$3RtB0lxLzCc7WvmRxvdgfSVgYsB3CfphWbfM7Jm2Dgg\n",
    )
    .unwrap();
    let (cert, key, users) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        users.to_str().unwrap(),
    );
    let server = Server::start(
        "chat_server",
        &[
            "--addr",
            "127.0.0.1:0",
            "--json-addr",
            "127.0.0.1:0",
            "--tls-addr",
            "127.0.0.1:0",
            "--web-tls-addr",
            "127.0.0.1:0",
            "--cert",
            cert,
            "--key",
            key,
            "--users",
            users,
        ],
        4,
    );
    let url = format!("https://{}/", server.listening[3]);
    let browser = Browser::start(&["--ignore-certificate-errors"]);
    let mut page = browser.open(&url);
    let mut line = Line::join(line_addr(&server), "nc_user");
    let limit = Duration::from_secs(20);
    assert!(page.wait_until("document.readyState === 'complete'", limit));
    page.type_and_submit("name", "root");
    assert!(page.wait_until(
        "document.getElementById('login-error').textContent.includes('registered name')",
        limit
    ));
    page.type_and_submit("name", "secure_ann");
    assert!(
        page.wait_until("!document.getElementById('chat').hidden", limit),
        "status {:?}, error {:?}",
        page.text_of("status"),
        page.text_of("login-error")
    );
    line.expect("secure_ann joined lobby");
    assert_eq!(
        page.eval("location.protocol"),
        json!("https:"),
        "the page came over TLS"
    );
    page.type_and_submit("text", "hello over wss");
    line.expect("secure_ann: hello over wss");
    line.send("and back");
    assert!(page.wait_for_text("messages", "nc_user: and back", limit));
}
