//! `examples/proxy`, in front of `examples/echo_server` (or of a test's own
//! upstream), driven over loopback as a user would.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::thread;
use std::time::Duration;

use support::{Rng, Server, connect, heavy, write_until_stall};

/// The proxy in front of `upstream`.
fn start_proxy(upstream: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--listen", "127.0.0.1:0", "--upstream", upstream];
    args.extend_from_slice(extra);
    Server::start("proxy", &args, 1)
}

fn start_echo() -> Server {
    Server::start("echo_server", &["--addr", "127.0.0.1:0"], 1)
}

#[test]
fn a_hundred_mebibytes_cross_the_relay_both_ways_intact() {
    let _heavy = heavy();
    const TOTAL: usize = 100 << 20;
    let echo = start_echo();
    let proxy = start_proxy(&echo.listening[0], &[]);
    let data = Rng::new(13).bytes(TOTAL);
    let stream = connect(proxy.addr());
    let mut writer = stream.try_clone().unwrap();
    let sent = data.clone();
    let sender = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut reader = stream;
    let mut back = Vec::with_capacity(TOTAL);
    reader
        .read_to_end(&mut back)
        .expect("the echo, then end of stream");
    sender.join().unwrap();
    assert_eq!(back.len(), TOTAL);
    assert!(
        back == data,
        "the echo through the relay differs from what was sent"
    );
}

#[test]
fn a_half_close_is_passed_on_and_the_other_direction_goes_on() {
    // Our own upstream: reads to end of stream, then answers with what it
    // counted, then closes.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let (mut stream, _) = upstream.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut got = Vec::new();
        stream
            .read_to_end(&mut got)
            .expect("the client's FIN arrives through the relay");
        stream
            .write_all(format!("got {} bytes\n", got.len()).as_bytes())
            .unwrap();
        got
    });
    let proxy = start_proxy(&upstream_addr, &[]);
    let data = Rng::new(21).bytes(3 << 20);
    let mut stream = connect(proxy.addr());
    stream.write_all(&data).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    // Our side is shut, yet the answer comes back, then the upstream's FIN.
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, format!("got {} bytes\n", 3 << 20));
    assert!(server.join().unwrap() == data);
}

#[test]
fn a_reader_that_stalls_holds_the_relay_back_with_bounded_memory() {
    let _heavy = heavy();
    const TOTAL: usize = 64 << 20;
    let echo = start_echo();
    let proxy = start_proxy(&echo.listening[0], &[]);
    let baseline = proxy.rss_kib();
    let data = Rng::new(8).bytes(TOTAL);

    // Write without reading until the writes stall: every buffer on the
    // way is full, and the relay has stopped reading us.
    let mut writer = connect(proxy.addr());
    let mut peak = baseline;
    let sent = write_until_stall(&mut writer, &data, || peak = peak.max(proxy.rss_kib()));
    assert!(
        sent < TOTAL,
        "the relay should have stopped reading before all was sent"
    );
    peak = peak.max(proxy.rss_kib());
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "stalled reader: {sent} bytes taken before the stall; proxy RSS {baseline} -> {peak} KiB"
    );
    assert!(growth < 8 * 1024, "the relay's memory grew by {growth} KiB");

    // Now read everything while writing the rest.
    let reader_stream = writer.try_clone().unwrap();
    let reader = thread::spawn(move || {
        let mut stream = reader_stream;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut got = Vec::with_capacity(TOTAL);
        stream.read_to_end(&mut got).unwrap();
        got
    });
    writer
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    writer.write_all(&data[sent..]).unwrap();
    writer.shutdown(Shutdown::Write).unwrap();
    let got = reader.join().unwrap();
    assert_eq!(got.len(), TOTAL);
    assert!(got == data, "the echo differs from what was sent");
}

#[test]
fn an_upstream_that_refuses_closes_the_client() {
    let proxy = start_proxy(&support::unused_addr().to_string(), &[]);
    let mut stream = connect(proxy.addr());
    assert!(support::closed_within(&mut stream, Duration::from_secs(20)));
    // The relay itself carries on.
    let mut again = connect(proxy.addr());
    assert!(support::closed_within(&mut again, Duration::from_secs(20)));
}

#[test]
fn a_reset_on_one_side_closes_the_other_at_once() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = start_proxy(&upstream.local_addr().unwrap().to_string(), &[]);
    let client = connect(proxy.addr());
    let (mut far_side, _) = upstream.accept().unwrap();
    // A reset: SO_LINGER 0, then close.
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    // The far side sees a reset too, not an ordinary end of stream: a
    // stream cut short must not look complete (from an outside review).
    far_side
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let got = far_side.read(&mut buf);
    assert!(
        matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the reset was not passed on: {got:?}"
    );
}

#[test]
fn idle_pairs_are_closed_and_clients_past_the_limit_are_refused() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap().to_string();
    let proxy = start_proxy(
        &upstream_addr,
        &["--idle-timeout", "500ms", "--max-conns", "1"],
    );
    let mut first = connect(proxy.addr());
    let (mut first_far, _) = upstream.accept().unwrap();
    // The one slot is taken: the next client is closed at once.
    let mut second = connect(proxy.addr());
    assert!(support::closed_within(&mut second, Duration::from_secs(10)));
    // Nothing moves on the first pair: the idle timeout ends both sides.
    assert!(support::closed_within(&mut first, Duration::from_secs(10)));
    assert!(support::closed_within(
        &mut first_far,
        Duration::from_secs(10)
    ));
    // The refused client never got an upstream connection.
    upstream.set_nonblocking(true).unwrap();
    let more = upstream.accept().map(|_| ()).unwrap_err();
    assert_eq!(more.kind(), std::io::ErrorKind::WouldBlock);
}

/// `--max-conns` counts clients, not sockets: each client's upstream
/// connection does not take a client's place (an outside review reported
/// one client let in with 2; this pins what the service counts).
#[test]
fn max_conns_counts_clients_not_sockets() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap().to_string();
    let proxy = start_proxy(&upstream_addr, &["--max-conns", "2"]);
    let _first = connect(proxy.addr());
    let _first_far = upstream.accept().unwrap();
    let _second = connect(proxy.addr());
    let _second_far = upstream.accept().unwrap();
    let mut third = connect(proxy.addr());
    assert!(support::closed_within(&mut third, Duration::from_secs(10)));
}
