//! `select_echo_server` (layer 2) and `select_echo_client` (layer 1).

mod support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use support::{Rng, Server, connect, echo_once, heavy, run_echo_clients, run_example};

fn start() -> Server {
    Server::start("select_echo_server", &["--addr", "127.0.0.1:0"], 1)
}

#[test]
fn the_client_gets_its_messages_back_and_exits_zero() {
    let server = start();
    let addr = server.addr().to_string();
    let (status, stdout, stderr) = run_example(
        "select_echo_client",
        &["--addr", &addr, "hello ", "world"],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.trim(), r#"received "hello world""#);
}

#[test]
fn the_client_sends_the_seeds_two_messages_by_default() {
    let server = start();
    let addr = server.addr().to_string();
    let (status, stdout, stderr) = run_example(
        "select_echo_client",
        &["--addr", &addr],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("This is the message.  It will be repeated."),
        "{stdout}"
    );
}

#[test]
fn the_client_reports_a_refused_connect_and_exits_one() {
    let free = support::unused_addr().to_string();
    let (status, _, stderr) = run_example(
        "select_echo_client",
        &["--addr", &free],
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
}

#[test]
fn the_server_echoes_many_clients_and_big_transfers() {
    let _heavy = heavy();
    let server = start();
    let mut rng = Rng::new(77);
    let payloads: Vec<Vec<u8>> = (0..20).map(|_| rng.bytes(512 * 1024)).collect();
    run_echo_clients(server.addr(), &payloads, 1, Duration::from_secs(120)).unwrap();
}

#[test]
fn the_server_finishes_the_echo_after_a_half_close() {
    let server = start();
    let mut s = connect(server.addr());
    let data = Rng::new(4).bytes(3 << 20);
    let mut w = s.try_clone().unwrap();
    let d = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&d).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == data);
    assert_eq!(echo_once(server.addr(), b"next"), b"next");
}

#[test]
fn sigterm_stops_the_server_with_status_zero() {
    let server = start();
    server.signal(15);
    let (status, stderr) = server.wait(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
}

#[test]
fn the_server_reports_a_failed_bind_in_one_line_and_exits_one() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, _, stderr) = run_example(
        "select_echo_server",
        &["--addr", &addr],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}
