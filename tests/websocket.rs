//! ws_echo_server from outside: Autobahn's fuzzing client on sections 1-7,
//! and raw sockets for the handshake's refusals, the close codes, ping and
//! pong, and a 100 MiB announcement refused without 100 MiB of memory.
//!
//! The client side is the crate's own codec (`Role::Client`), except where
//! a test needs bytes no correct client would send.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use reactor::codec::websocket::{self, Opcode, new_mask, write_close, write_frame};
use support::ws::{Received, WsClient};
use support::{Server, closed_within, connect, status_kib, tool};

fn echo_server(args: &[&str]) -> Server {
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Server::start("ws_echo_server", &all, 1)
}

/// A good upgrade request for `addr`, to make bad ones from.
fn good_request(addr: SocketAddr) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Sends `request` and reads the whole answer (the server closes after a
/// refusal).
fn answer_to(addr: SocketAddr, request: &str) -> String {
    let mut stream = connect(addr);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn autobahn_sections_1_to_7_have_no_failed_case() {
    if !tool("wstest") || !tool("python3") {
        return;
    }
    let _heavy = support::heavy();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/autobahn.sh");
    // wstest's reports (a JSON and an HTML file per case) go here, and are
    // removed with it.
    let reports = support::TempDir::new("autobahn");
    let mut command = Command::new("bash");
    command
        .arg(script)
        .args(["1", "2", "3", "4", "5", "6", "7"])
        .env("WS_ECHO_SERVER", support::example("ws_echo_server"))
        .env("NO_DOCS", "1")
        .env("AUTOBAHN_OUT", &reports.0)
        .env("AUTOBAHN_TIMEOUT", "240");
    let (status, stdout, stderr) = support::run_command(command, Duration::from_secs(300));
    eprintln!("{stdout}");
    assert!(
        status.success(),
        "Autobahn reported FAILED cases (or did not run):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("| **all** |"), "no summary:\n{stdout}");
}

#[test]
fn the_handshake_is_accepted_and_answered_with_the_right_key() {
    let server = echo_server(&[]);
    let answer = {
        let mut stream = connect(server.addr());
        stream
            .write_all(good_request(server.addr()).as_bytes())
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(
        answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{answer}"
    );
    // RFC 6455 §1.3's example key and answer.
    assert!(answer.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    // permessage-deflate offered, and declined by not being named.
    let offered = good_request(server.addr()).replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
    );
    let mut stream = connect(server.addr());
    stream.write_all(offered.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 101"), "{answer}");
    assert!(!answer.contains("extensions"), "{answer}");
}

#[test]
fn bad_handshakes_get_400_or_426_and_a_close() {
    let server = echo_server(&[]);
    let good = good_request(server.addr());
    let cases = [
        (good.replace("GET", "POST"), "400"),
        (good.replace("HTTP/1.1", "HTTP/1.0"), "400"),
        (good.replace("Upgrade: websocket\r\n", ""), "400"),
        (
            good.replace("Connection: Upgrade\r\n", "Connection: keep-alive\r\n"),
            "400",
        ),
        (
            good.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            "400",
        ),
        (good.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="), "400"),
        (good.replace("Sec-WebSocket-Version: 13\r\n", ""), "426"),
        (good.replace("Version: 13", "Version: 7"), "426"),
        ("GET / HTTP/1.1\r\n\r\n".to_string(), "400"), // no Host: HTTP's own refusal
    ];
    for (request, status) in cases {
        let answer = answer_to(server.addr(), &request);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?} got {answer:?}"
        );
        assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
        assert_eq!(
            answer.contains("\r\nSec-WebSocket-Version: 13\r\n"),
            status == "426",
            "{answer}"
        );
    }
}

#[test]
fn messages_are_echoed_and_pings_answered() {
    let server = echo_server(&[]);
    let mut client = WsClient::connect(server.addr(), "/", None).expect("an upgrade");
    client.send(Opcode::Text, "héllo".as_bytes());
    assert_eq!(client.next(), Received::Text("héllo".into()));
    let binary: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    client.send(Opcode::Binary, &binary);
    assert_eq!(client.next(), Received::Binary(binary));
    client.send(Opcode::Ping, b"are you there?");
    assert_eq!(client.next(), Received::Pong(b"are you there?".to_vec()));

    // A fragmented message with a ping between its fragments: the pong
    // comes first, then the whole message.
    let key = new_mask();
    let mut frames = vec![0x01, 0x80 | 5];
    frames.extend_from_slice(&key);
    frames.extend(b"frag-".iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    write_frame(&mut frames, Opcode::Ping, b"mid", Some(new_mask()));
    frames.extend_from_slice(&[0x80, 0x80 | 5]);
    frames.extend_from_slice(&key);
    frames.extend(b"ments".iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    client.stream.write_all(&frames).unwrap();
    assert_eq!(client.next(), Received::Pong(b"mid".to_vec()));
    assert_eq!(client.next(), Received::Text("frag-ments".into()));
}

#[test]
fn the_close_handshake_echoes_the_code() {
    let server = echo_server(&[]);
    let mut client = WsClient::connect(server.addr(), "/", None).expect("an upgrade");
    let mut close = Vec::new();
    write_close(&mut close, 4001, "done here", Some(new_mask()));
    client.stream.write_all(&close).unwrap();
    client.expect_closed_with(4001);

    // A close without a code is answered with 1000.
    let mut client = WsClient::connect(server.addr(), "/", None).expect("an upgrade");
    client.send(Opcode::Close, b"");
    client.expect_closed_with(1000);
}

#[test]
fn an_unmasked_frame_is_closed_with_1002() {
    let server = echo_server(&[]);
    let mut client = WsClient::connect(server.addr(), "/", None).expect("an upgrade");
    let mut frame = Vec::new();
    write_frame(&mut frame, Opcode::Text, b"not masked", None);
    client.stream.write_all(&frame).unwrap();
    client.expect_closed_with(1002);
}

#[test]
fn invalid_utf8_is_closed_with_1007() {
    let server = echo_server(&[]);
    let mut client = WsClient::connect(server.addr(), "/", None).expect("an upgrade");
    client.send(Opcode::Text, b"caf\xc3\x28");
    client.expect_closed_with(1007);
}

#[test]
fn a_message_over_the_limit_is_closed_with_1009() {
    let server = echo_server(&["--max-message", "64KiB"]);
    let mut client = WsClient::connect(server.addr(), "/", None).expect("an upgrade");
    client.send(Opcode::Binary, &[1; 64 * 1024]);
    assert_eq!(client.next(), Received::Binary(vec![1; 64 * 1024]));
    // Over the limit in one frame: refused from its header (the payload is
    // never sent, so the close frame cannot be lost to a reset).
    let mut header = Vec::new();
    websocket::write_header(&mut header, Opcode::Binary, 64 * 1024 + 1, Some(new_mask()));
    client.stream.write_all(&header).unwrap();
    client.expect_closed_with(1009);
}

#[test]
fn a_100_mib_announcement_is_refused_without_100_mib_of_memory() {
    let _heavy = support::heavy();
    let server = echo_server(&[]);
    // Warm up (the first connection allocates the loop's buffers).
    let mut client = WsClient::connect(server.addr(), "/", None).expect("an upgrade");
    client.send(Opcode::Text, b"warm");
    assert_eq!(client.next(), Received::Text("warm".into()));
    let before = status_kib(server.pid(), "VmHWM");

    let mut header = Vec::new();
    websocket::write_header(&mut header, Opcode::Binary, 100 << 20, Some(new_mask()));
    client.stream.write_all(&header).unwrap();
    client.expect_closed_with(1009);

    // The same message in 1 MiB fragments, actually sent: refused at the
    // second fragment's header, whatever follows.
    let mut client = WsClient::connect(server.addr(), "/", None).expect("an upgrade");
    let fragment = vec![0u8; 1 << 20];
    let key = new_mask();
    let mut first = vec![0x02, 0x80 | 127];
    first.extend_from_slice(&(fragment.len() as u64).to_be_bytes());
    first.extend_from_slice(&key);
    client.stream.write_all(&first).unwrap();
    client.stream.write_all(&fragment).unwrap(); // masked zeros: the key itself, repeated
    let mut second = vec![0x00, 0x80 | 127];
    second.extend_from_slice(&(fragment.len() as u64).to_be_bytes());
    second.extend_from_slice(&key);
    client.stream.write_all(&second).unwrap();
    client.expect_closed_with(1009);

    let after = status_kib(server.pid(), "VmHWM");
    eprintln!("ws_echo_server VmHWM {before} KiB before, {after} KiB after");
    assert!(
        after < before + 8 * 1024,
        "the server's peak memory grew by {} KiB",
        after - before
    );
}

#[test]
fn a_client_that_does_not_read_holds_the_server_at_bounded_memory_and_loses_nothing() {
    let _heavy = support::heavy();
    let server = echo_server(&[]);
    let mut client = WsClient::connect(server.addr(), "/", None).expect("an upgrade");
    client.send(Opcode::Text, b"warm");
    assert_eq!(client.next(), Received::Text("warm".into()));
    let before = status_kib(server.pid(), "VmHWM");

    // 640 messages of 64 KiB (40 MiB), each a different byte, sent without
    // reading: the server stops reading us once its queue for us is full.
    const COUNT: usize = 640;
    const SIZE: usize = 64 * 1024;
    let mut frames = Vec::with_capacity(COUNT * (SIZE + 14));
    for i in 0..COUNT {
        write_frame(
            &mut frames,
            Opcode::Binary,
            &[i as u8; SIZE],
            Some(new_mask()),
        );
    }
    let sent = support::write_until_stall(&mut client.stream, &frames, || {});
    assert!(sent < frames.len(), "the server never pushed back");
    let stalled = status_kib(server.pid(), "VmHWM");

    // Now read everything back while the rest is written: every echo
    // arrives, in order.
    let mut writer = client.stream.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let rest = frames[sent..].to_vec();
    let writing = std::thread::spawn(move || writer.write_all(&rest));
    for i in 0..COUNT {
        assert_eq!(
            client.next(),
            Received::Binary(vec![i as u8; SIZE]),
            "message {i}"
        );
    }
    writing.join().unwrap().unwrap();
    eprintln!(
        "ws_echo_server VmHWM {before} KiB before, {stalled} KiB with {sent} bytes unread by the client"
    );
    assert!(
        stalled < before + 16 * 1024,
        "the server's peak memory grew by {} KiB for a client that did not read",
        stalled - before
    );
}

#[test]
fn an_echo_over_the_output_limit_closes_the_connection() {
    let server = echo_server(&["--output-limit", "256KiB"]);
    let mut client = WsClient::connect(server.addr(), "/", None).expect("an upgrade");
    client.send(Opcode::Binary, &[5; 512 * 1024]);
    assert!(
        closed_within(&mut client.stream, Duration::from_secs(10)),
        "a 512 KiB echo queued past a 256 KiB output limit"
    );
}

#[test]
fn help_and_bad_arguments() {
    let (status, stdout, _) =
        support::run_example("ws_echo_server", &["--help"], Duration::from_secs(10));
    assert!(status.success() && stdout.contains("usage:"), "{stdout}");
    for args in [
        &["--bogus"][..],
        &["--max-message", "0"],
        &["--max-message", "lots"],
    ] {
        let (status, _, stderr) =
            support::run_example("ws_echo_server", args, Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("ws_echo_server: "), "{args:?}: {stderr}");
    }
    // A port in use: one line, exit 1.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, _, stderr) = support::run_example(
        "ws_echo_server",
        &["--addr", &addr],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn sigterm_closes_every_websocket_with_1001() {
    let server = echo_server(&[]);
    let mut clients: Vec<WsClient> = (0..3)
        .map(|_| WsClient::connect(server.addr(), "/", None).expect("an upgrade"))
        .collect();
    for client in &mut clients {
        client.send(Opcode::Text, b"warm");
        assert_eq!(client.next(), Received::Text("warm".into()));
    }
    server.signal(libc::SIGTERM);
    for client in &mut clients {
        client.expect_closed_with(1001);
    }
    let (status, _) = server.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}
