//! `select_echo_server` (layer 2) and `select_echo_client` (layer 1).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::process::CommandExt;
use std::thread;
use std::time::{Duration, Instant};

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

/// The descriptor limit of the issue's scenario: once stdio, epoll, the
/// waker, the listener and the signal pipe have theirs, room for about 15
/// clients.
const FD_LIMIT: libc::rlim_t = 24;

/// Out of descriptors (`EMFILE`) with clients still waiting in the backlog:
/// once the clients the server holds hang up, the server must go back to
/// accepting by itself (no new connection arrives to raise a fresh edge on
/// the listener), and every client gets its echo.
#[test]
fn clients_queued_behind_emfile_are_served_once_descriptors_free_up() {
    let mut server =
        Server::start_with("select_echo_server", &["--addr", "127.0.0.1:0"], 1, |cmd| {
            // SAFETY: runs in the child between fork and exec, where only
            // async-signal-safe calls are allowed: getrlimit and setrlimit are
            // plain system calls, and nothing here allocates.
            unsafe {
                cmd.pre_exec(|| {
                    let mut limit = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    limit.rlim_cur = FD_LIMIT.min(limit.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        });
    let stderr = server.stderr_lines();

    // Forty clients, more than the server has descriptors for: the kernel
    // completes every handshake and keeps the connections in the listen
    // backlog; each client's line waits in its socket until it is accepted.
    let clients: Vec<TcpStream> = (0..40)
        .map(|i| {
            let mut c = connect(server.addr());
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(format!("client {i}\n").as_bytes()).unwrap();
            c
        })
        .collect();

    // The server runs out of descriptors while they all hold on (so the
    // test exercises the stall, not a server that never hit the limit).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stderr.recv_timeout(left) {
            Ok(line) if line.contains("os error 24") => break,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no EMFILE from accept within 20 s; stderr: {seen:?}"),
        }
    }

    // Each client waits (bounded) for its echo, then hangs up. The first
    // ones, already accepted, answer at once; their leaving frees the
    // descriptors the ones in the backlog need. Each on its own thread, so
    // the test depends on no accept order.
    let waiters: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            thread::spawn(move || -> Result<(), String> {
                let want = format!("client {i}\n");
                let mut back = vec![0; want.len()];
                c.read_exact(&mut back)
                    .map_err(|e| format!("client {i}: no echo within 10 s: {e}"))?;
                if back != want.as_bytes() {
                    return Err(format!(
                        "client {i}: got {:?}",
                        String::from_utf8_lossy(&back)
                    ));
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = waiters
        .into_iter()
        .filter_map(|w| w.join().expect("client thread").err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of 40 clients not served, the first: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}
