//! Layer 1: `Selector` against real sockets on loopback.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream, UdpSocket};
use reactor::{Interest, Key, Ready, Selector};

fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap()
}

fn send_to(socket: &UdpSocket) {
    let addr: SocketAddr = socket.local_addr().unwrap();
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"x", addr)
        .unwrap();
}

/// Selects until `key` is reported (bounded), returning its readiness.
#[track_caller]
fn wait_for(selector: &mut Selector<&str>, key: Key) -> Ready {
    let mut ready = Vec::new();
    for _ in 0..100 {
        selector
            .select(&mut ready, Some(Duration::from_secs(5)))
            .unwrap();
        if let Some(&(_, r)) = ready.iter().find(|(k, _)| *k == key) {
            return r;
        }
    }
    panic!("{key:?} was never reported");
}

#[test]
fn select_reports_the_ready_key_with_its_data() -> io::Result<()> {
    let mut selector = Selector::new()?;
    let mut quiet = udp();
    let mut noisy = udp();
    let quiet_key = selector.register(&mut quiet, Interest::READABLE, "quiet")?;
    let noisy_key = selector.register(&mut noisy, Interest::READABLE, "noisy")?;
    send_to(&noisy);
    let ready = wait_for(&mut selector, noisy_key);
    assert!(ready.is_readable());
    assert_eq!(selector.get(noisy_key), Some(&"noisy"));
    assert_eq!(selector.get(quiet_key), Some(&"quiet"));
    assert_eq!(selector.len(), 2);
    Ok(())
}

#[test]
fn registering_a_source_twice_is_already_exists_and_changes_nothing() -> io::Result<()> {
    let mut selector = Selector::new()?;
    let mut socket = udp();
    let key = selector.register(&mut socket, Interest::READABLE, "first")?;
    let err = selector
        .register(&mut socket, Interest::WRITABLE, "second")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(selector.len(), 1);
    assert_eq!(selector.get(key), Some(&"first"));
    assert_eq!(selector.interest(key), Some(Interest::READABLE));
    Ok(())
}

#[test]
fn unknown_and_dead_keys_are_not_found() -> io::Result<()> {
    let mut selector = Selector::new()?;
    let mut socket = udp();
    let key = selector.register(&mut socket, Interest::READABLE, "x")?;
    assert_eq!(selector.unregister(&mut socket, key)?, "x");

    let err = selector.unregister(&mut socket, key).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = selector
        .modify(&mut socket, key, Interest::WRITABLE)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(selector.get(key), None);
    assert!(!selector.contains(key));
    Ok(())
}

#[test]
fn a_reused_slot_gets_a_new_key_and_the_old_key_stays_dead() -> io::Result<()> {
    let mut selector = Selector::new()?;
    let mut a = udp();
    let mut b = udp();
    let old = selector.register(&mut a, Interest::READABLE, "a")?;
    selector.unregister(&mut a, old)?;
    let new = selector.register(&mut b, Interest::READABLE, "b")?;
    assert_eq!(new.index(), old.index(), "the slab reuses the slot");
    assert_ne!(new.generation(), old.generation());
    assert_eq!(selector.get(old), None);
    assert_eq!(selector.get(new), Some(&"b"));
    let err = selector
        .modify(&mut b, old, Interest::WRITABLE)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    Ok(())
}

#[test]
fn readiness_is_masked_by_the_registered_interest() -> io::Result<()> {
    let mut selector = Selector::new()?;
    let mut socket = udp(); // always writable
    let key = selector.register(&mut socket, Interest::READABLE, "read only")?;
    send_to(&socket);
    let ready = wait_for(&mut selector, key);
    assert!(ready.is_readable());
    assert!(!ready.is_writable(), "{ready:?}");

    selector.modify(&mut socket, key, Interest::READABLE | Interest::WRITABLE)?;
    let ready = wait_for(&mut selector, key);
    assert!(ready.is_writable(), "{ready:?}");
    Ok(())
}

#[test]
fn a_peer_closing_reports_read_closed() -> io::Result<()> {
    let mut selector = Selector::new()?;
    let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
    let client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let listener_key = selector.register(&mut listener, Interest::READABLE, "listener")?;
    wait_for(&mut selector, listener_key);
    let (mut stream, _): (TcpStream, _) = listener.accept()?;
    let key = selector.register(&mut stream, Interest::READABLE, "stream")?;
    client.shutdown(std::net::Shutdown::Write)?;
    let ready = wait_for(&mut selector, key);
    assert!(ready.is_read_closed(), "{ready:?}");
    Ok(())
}

#[test]
fn an_idle_select_times_out_with_no_events() -> io::Result<()> {
    let mut selector: Selector<()> = Selector::new()?;
    let mut socket = udp();
    selector.register(&mut socket, Interest::READABLE, ())?;
    let mut ready = Vec::new();
    assert_eq!(
        selector.select(&mut ready, Some(Duration::from_millis(1)))?,
        0
    );
    assert!(ready.is_empty());
    Ok(())
}

#[test]
fn the_waker_interrupts_select_from_another_thread_and_is_unique() -> io::Result<()> {
    let mut selector: Selector<()> = Selector::new()?;
    let waker = selector.waker()?;
    assert_eq!(
        selector.waker().unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    // The thread hands the waker back: dropping it would close its eventfd,
    // and closing a descriptor removes its pending event from epoll.
    let thread = std::thread::spawn(move || waker.wake().map(|()| waker));
    let mut ready = Vec::new();
    // Without a timeout: only the wake can end this select.
    while ready.is_empty() {
        selector.select(&mut ready, None)?;
    }
    let _waker = thread.join().unwrap()?;
    assert_eq!(ready, vec![(Key::WAKER, Ready::READABLE)]);
    Ok(())
}
