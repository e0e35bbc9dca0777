//! `multiconn_client` against `echo_server`.

mod support;

use std::time::Duration;

use support::{Server, run_example};

#[test]
fn every_connection_reports_its_bytes_and_the_run_exits_zero() {
    let server = Server::start("echo_server", &["--addr", "127.0.0.1:0"], 1);
    let addr = server.addr().to_string();
    let (status, stdout, stderr) = run_example(
        "multiconn_client",
        &["--addr", &addr, "--conns", "5", "--verify", "abc", "defg"],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    for n in 1..=5 {
        assert!(
            stdout.contains(&format!(
                "connection {n}: sent 7 bytes, received 7 bytes: ok"
            )),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("total: 5 connection(s), sent 35 bytes, received 35 bytes"),
        "{stdout}"
    );
}

#[test]
fn the_seeds_messages_are_the_default() {
    let server = Server::start("echo_server", &["--addr", "127.0.0.1:0"], 1);
    let addr = server.addr().to_string();
    let (status, stdout, _) = run_example(
        "multiconn_client",
        &["--addr", &addr],
        Duration::from_secs(20),
    );
    assert!(status.success());
    // "Message 1 from client." + "Message 2 from client." = 44 bytes, 2 connections.
    assert!(
        stdout.contains("total: 2 connection(s), sent 88 bytes, received 88 bytes"),
        "{stdout}"
    );
}

#[test]
fn verify_fails_when_the_echo_differs() {
    let server = Server::start("echo_server", &["--addr", "127.0.0.1:0", "--upper"], 1);
    let addr = server.addr().to_string();
    let (status, stdout, _) = run_example(
        "multiconn_client",
        &["--addr", &addr, "--verify", "lower"],
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("echo differs"), "{stdout}");
    // Without --verify, byte counts are what matter (as in the seed).
    let (status, _, _) = run_example(
        "multiconn_client",
        &["--addr", &addr, "lower"],
        Duration::from_secs(20),
    );
    assert!(status.success());
}

#[test]
fn a_refused_connect_is_one_line_and_exit_one() {
    let free = support::unused_addr().to_string();
    let (status, _, stderr) = run_example(
        "multiconn_client",
        &["--addr", &free],
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1));
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("multiconn_client:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("refused"), "{stderr}");
}

#[test]
fn a_server_that_closes_early_fails_the_run() {
    // A server that accepts and closes at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let closer = std::thread::spawn(move || {
        for _ in 0..2 {
            let (s, _) = listener.accept().unwrap();
            drop(s);
        }
    });
    let (status, stdout, _) = run_example(
        "multiconn_client",
        &["--addr", &addr],
        Duration::from_secs(20),
    );
    closer.join().unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("incomplete"), "{stdout}");
}

#[test]
fn every_example_has_help_and_rejects_bad_arguments() {
    for name in [
        "echo_server",
        "multiconn_client",
        "select_echo_server",
        "select_echo_client",
    ] {
        let (status, stdout, _) = run_example(name, &["--help"], Duration::from_secs(10));
        assert!(status.success(), "{name} --help");
        assert!(stdout.contains("usage:"), "{name}: {stdout}");
        let (status, _, stderr) = run_example(name, &["--no-such-option"], Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{name}");
        assert!(stderr.starts_with(&format!("{name}: ")), "{name}: {stderr}");
    }
}
