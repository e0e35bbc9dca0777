//! The seeds' small programs on the reactor, driven over loopback: UDP
//! echo, framed echo, the time and calculator servers, name lookup, socket
//! options, IPv6 and dual-stack.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use support::{Rng, Server, connect, heavy, run_example};

fn udp_client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket
}

/// Sends one datagram and returns the reply.
fn udp_ask(server: SocketAddr, request: &[u8]) -> Vec<u8> {
    let socket = udp_client();
    socket.send_to(request, server).unwrap();
    let mut buf = vec![0; 65_536];
    let (n, from) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(from, server);
    buf.truncate(n);
    buf
}

/// True if this machine can bind and reach `[::1]`.
fn has_ipv6() -> bool {
    match std::net::TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping the IPv6 part: cannot bind [::1] ({e})");
            false
        }
    }
}

// ----- UDP echo -------------------------------------------------------------

#[test]
fn udp_echo_round_trips_datagrams_byte_for_byte() {
    let server = Server::start("udp_echo_server", &["--addr", "127.0.0.1:0"], 1);
    let addr = server.addr();
    assert_eq!(udp_ask(addr, b"hello udp"), b"hello udp");
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    assert_eq!(udp_ask(addr, &all_bytes), all_bytes);
    let big = Rng::new(1).bytes(60_000);
    assert_eq!(
        udp_ask(addr, &big),
        big,
        "a large datagram comes back whole"
    );
    assert_eq!(
        udp_ask(addr, b""),
        b"",
        "an empty datagram is a datagram too"
    );
}

#[test]
fn udp_echo_upper_cases_with_the_flag() {
    let server = Server::start("udp_echo_server", &["--addr", "127.0.0.1:0", "--upper"], 1);
    assert_eq!(udp_ask(server.addr(), b"hello, UDP 1!"), b"HELLO, UDP 1!");
}

#[test]
fn udp_echo_client_prints_each_reply_and_exits_zero() {
    let server = Server::start("udp_echo_server", &["--addr", "127.0.0.1:0", "--upper"], 1);
    let addr = server.addr().to_string();
    let (status, stdout, stderr) = run_example(
        "udp_echo_client",
        &["--addr", &addr, "one", "two"],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("reply: ONE\nreply: TWO\n"), "{stdout}");
    assert!(stdout.contains("sent 2, received 2, lost 0"), "{stdout}");
}

#[test]
fn udp_echo_client_reports_loss_when_nobody_answers() {
    // A bound socket that never answers: datagrams vanish.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let (status, stdout, _) = run_example(
        "udp_echo_client",
        &[
            "--addr",
            &addr,
            "--timeout",
            "100ms",
            "--retries",
            "2",
            "anyone?",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(r#"lost: "anyone?" (no reply after 3 attempts)"#),
        "{stdout}"
    );
    // It did resend: three copies arrived.
    silent.set_nonblocking(true).unwrap();
    let mut copies = 0;
    let mut buf = [0; 64];
    while silent.recv_from(&mut buf).is_ok() {
        copies += 1;
    }
    assert_eq!(copies, 3);
}

#[test]
fn udp_echo_serves_ipv6_and_dual_stack() {
    if !has_ipv6() {
        return;
    }
    let v6 = Server::start("udp_echo_server", &["--addr", "[::1]:0"], 1);
    let socket = UdpSocket::bind("[::1]:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket.send_to(b"over ipv6", v6.addr()).unwrap();
    let mut buf = [0; 64];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"over ipv6");

    let dual = Server::start("udp_echo_server", &["--dual-stack", "0"], 1);
    let port = dual.addr().port();
    assert_eq!(
        udp_ask(SocketAddr::from(([127, 0, 0, 1], port)), b"v4"),
        b"v4"
    );
    socket
        .send_to(
            b"v6",
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        )
        .unwrap();
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"v6");
}

// ----- framed echo ----------------------------------------------------------

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut header = [0; 4];
    stream.read_exact(&mut header).unwrap();
    let mut payload = vec![0; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut payload).unwrap();
    payload
}

#[test]
fn framed_echo_returns_frames_of_every_size() {
    let _heavy = heavy();
    let server = Server::start("framed_echo_server", &["--addr", "127.0.0.1:0"], 1);
    let mut stream = connect(server.addr());
    let mut rng = Rng::new(8);
    let payloads = [
        Vec::new(),
        b"hello".to_vec(),
        rng.bytes(64 * 1024),
        rng.bytes(8 << 20),
    ];
    // All pipelined at once, written in odd-sized pieces.
    let mut wire = Vec::new();
    for p in &payloads {
        wire.extend_from_slice(&frame(p));
    }
    let mut writer = stream.try_clone().unwrap();
    let send = std::thread::spawn(move || {
        for piece in wire.chunks(7919) {
            writer.write_all(piece).unwrap();
        }
    });
    for p in &payloads {
        assert!(
            read_frame(&mut stream) == *p,
            "a {}-byte frame came back different",
            p.len()
        );
    }
    send.join().unwrap();
}

#[test]
fn framed_echo_closes_on_an_oversized_header_or_a_truncated_frame_only() {
    let server = Server::start("framed_echo_server", &["--addr", "127.0.0.1:0"], 1);
    let addr = server.addr();
    let mut bystander = connect(addr);

    // A header announcing 4 GiB: closed at once, nothing buffered.
    let mut greedy = connect(addr);
    greedy.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    assert!(support::closed_within(&mut greedy, Duration::from_secs(10)));

    // A frame cut off by the client closing.
    let mut cut = connect(addr);
    cut.write_all(&[0, 0, 0, 100]).unwrap();
    cut.write_all(b"only part of it").unwrap();
    cut.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(support::closed_within(&mut cut, Duration::from_secs(10)));

    // Nobody else noticed.
    bystander.write_all(&frame(b"still here")).unwrap();
    assert_eq!(read_frame(&mut bystander), b"still here");

    server.signal(15);
    let (status, stderr) = server.wait(Duration::from_secs(10));
    assert!(status.success());
    assert!(
        stderr.contains("frame of 4294967295 bytes announced, over the limit"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ended in the middle of a frame (19 bytes of it received)"),
        "{stderr}"
    );
}

#[test]
fn framed_echo_respects_max_frame() {
    let server = Server::start(
        "framed_echo_server",
        &["--addr", "127.0.0.1:0", "--max-frame", "1KiB"],
        1,
    );
    let mut ok = connect(server.addr());
    ok.write_all(&frame(&[7; 1024])).unwrap();
    assert_eq!(read_frame(&mut ok), vec![7; 1024]);
    let mut too_big = connect(server.addr());
    too_big.write_all(&frame(&[7; 1025])).unwrap();
    assert!(support::closed_within(
        &mut too_big,
        Duration::from_secs(10)
    ));
}

#[test]
fn framed_echo_client_checks_its_echoes() {
    let server = Server::start("framed_echo_server", &["--addr", "127.0.0.1:0"], 1);
    let addr = server.addr().to_string();
    let (status, stdout, stderr) = run_example(
        "framed_echo_client",
        &[
            "--addr", &addr, "", "five!", "--size", "64KiB", "--size", "1MiB",
        ],
        Duration::from_secs(30),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("frame 1: 0 bytes echoed intact"),
        "{stdout}"
    );
    assert!(
        stdout.contains("frame 4: 1048576 bytes echoed intact"),
        "{stdout}"
    );
    assert!(stdout.contains("all 4 frames echoed intact"), "{stdout}");
}

// ----- time server ------------------------------------------------------------

/// `Current time: HH:MM:SS\n` with plausible numbers.
#[track_caller]
fn assert_time_line(text: &str) {
    let time = text
        .strip_prefix("Current time: ")
        .and_then(|t| t.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("not a time line: {text:?}"));
    let parts: Vec<u32> = time.split(':').map(|p| p.parse().unwrap()).collect();
    assert_eq!(time.len(), 8, "{time}");
    assert!(
        parts.len() == 3 && parts[0] < 24 && parts[1] < 60 && parts[2] < 61,
        "{time}"
    );
}

#[test]
fn the_time_server_answers_over_tcp_then_closes_and_over_udp() {
    let server = Server::start("time_server", &["--addr", "127.0.0.1:0"], 1);
    let mut stream = connect(server.addr());
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap(); // ends: the server closes
    assert_time_line(&text);
    let reply = udp_ask(server.addr(), b"what time is it?");
    assert_time_line(&String::from_utf8(reply).unwrap());
}

// ----- calculator server --------------------------------------------------------

#[test]
fn the_calculator_answers_over_tcp_and_udp_alike() {
    let server = Server::start("calc_server", &["--addr", "127.0.0.1:0"], 1);
    let addr = server.addr();
    let table = [
        ("5 + 3", "8"),
        ("7 / 2", "3.5"),
        ("0.1 + 0.2", "0.30000000000000004"),
        ("-(2 + 3) * 1e2", "-500"),
        ("1 / 0", "error: division by zero"),
        (
            "2 +",
            "error: the expression ends where a number was expected",
        ),
        ("two plus two", "error: unexpected 't' at position 1"),
        ("(1 + 2", "error: missing ')'"),
        ("1e308 * 10", "error: the result is not a finite number"),
        ("", "error: empty expression"),
    ];
    let mut stream = connect(addr);
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    for (expression, expected) in table {
        stream
            .write_all(format!("{expression}\n").as_bytes())
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert_eq!(line, format!("{expected}\n"), "TCP: {expression}");
        let reply = udp_ask(addr, expression.as_bytes());
        assert_eq!(
            String::from_utf8(reply).unwrap(),
            format!("{expected}\n"),
            "UDP: {expression}"
        );
    }
    // Over the 1 KiB limit, both ways; the connection stays usable.
    let long = "1+".repeat(600) + "1";
    stream
        .write_all(format!("{long}\n1 + 1\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert_eq!(line, "error: line longer than 1024 bytes\n");
    line.clear();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert_eq!(line, "2\n");
    let reply = udp_ask(addr, long.as_bytes());
    assert_eq!(reply, b"error: line longer than 1024 bytes\n");
    // Not UTF-8.
    stream.write_all(b"\xff\xfe\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert!(line.starts_with("error: "), "{line}");
}

// ----- name lookup and socket options ---------------------------------------

#[test]
fn dns_lookup_lists_localhost_without_duplicates() {
    let (status, stdout, stderr) =
        run_example("dns_lookup", &["localhost"], Duration::from_secs(20));
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("  IPv4 TCP 127.0.0.1\n"), "{stdout}");
    assert!(stdout.contains("  IPv4 UDP 127.0.0.1\n"), "{stdout}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("  IPv")).collect();
    let mut unique = rows.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(rows.len(), unique.len(), "duplicates in {stdout}");
    assert!(stdout.contains("reverse name of"), "{stdout}");
}

#[test]
fn dns_lookup_of_a_name_that_does_not_resolve_fails_clearly() {
    let (status, _, stderr) = run_example(
        "dns_lookup",
        &["no-such-host.invalid"],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("no-such-host.invalid: does not resolve"),
        "{stderr}"
    );
}

#[test]
fn sockopts_shows_each_option_before_and_after() {
    let (status, stdout, stderr) =
        run_example("sockopts", &["--linger", "0s"], Duration::from_secs(20));
    assert!(status.success(), "{stderr}");
    for row in [
        "SO_REUSEADDR  false -> true",
        "SO_REUSEPORT  false -> true",
        "SO_KEEPALIVE  false -> true",
        "TCP_NODELAY   false -> true",
        "SO_LINGER     off -> 0s",
        "SO_BROADCAST  false -> true",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in\n{stdout}");
    }
    assert!(
        stdout.contains("SO_RCVBUF")
            && stdout.contains("SO_SNDBUF")
            && stdout.contains("IPV6_V6ONLY")
    );
}

// ----- IPv6 and dual-stack TCP ----------------------------------------------

#[test]
fn the_echo_server_serves_ipv6_and_dual_stack() {
    if !has_ipv6() {
        return;
    }
    let v6 = Server::start("echo_server", &["--addr", "[::1]:0"], 1);
    assert_eq!(
        v6.listening[0].parse::<SocketAddr>().unwrap().ip(),
        std::net::Ipv6Addr::LOCALHOST
    );
    assert_eq!(support::echo_once(v6.addr(), b"over ipv6"), b"over ipv6");

    let dual = Server::start("echo_server", &["--dual-stack", "0"], 1);
    let port = dual.addr().port();
    assert_eq!(
        support::echo_once(SocketAddr::from(([127, 0, 0, 1], port)), b"v4"),
        b"v4"
    );
    assert_eq!(
        support::echo_once(
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
            b"v6"
        ),
        b"v6"
    );
}

#[test]
fn host_names_are_resolved_before_the_loop_starts() {
    let server = Server::start("echo_server", &["--addr", "localhost:0"], 1);
    assert_eq!(support::echo_once(server.addr(), b"by name"), b"by name");
    let (status, _, stderr) = run_example(
        "echo_server",
        &["--addr", "no-such-host.invalid:1"],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot resolve"), "{stderr}");
}

#[test]
fn every_new_program_has_help_and_rejects_bad_arguments() {
    for name in [
        "udp_echo_server",
        "udp_echo_client",
        "framed_echo_server",
        "framed_echo_client",
        "time_server",
        "calc_server",
        "dns_lookup",
        "sockopts",
        "chat_server",
        "chat_client",
    ] {
        let (status, stdout, _) = run_example(name, &["--help"], Duration::from_secs(10));
        assert!(
            status.success() && stdout.contains("usage:"),
            "{name} --help"
        );
        let (status, _, stderr) = run_example(name, &["--bogus"], Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{name}");
        assert!(stderr.starts_with(&format!("{name}: ")), "{name}: {stderr}");
    }
}
