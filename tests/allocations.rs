//! Steady traffic allocates nothing: a counting global allocator watches the
//! loop's thread while an echo service answers thousands of messages.
//!
//! Only allocations made on the loop's thread are counted (a thread-local
//! switch), so the client threads of the test do not disturb the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reactor::Reactor;
use reactor::service::{Config, ConnId, Connections, Handler, Service};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter and the thread-local flag do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Echo;

impl Handler for Echo {
    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let _ = conns.send(id, data);
        data.len()
    }
}

/// Each client does `rounds` round trips of `size` bytes.
fn clients(
    addr: std::net::SocketAddr,
    count: usize,
    rounds: usize,
    size: usize,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..count)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                stream.set_nodelay(true).unwrap();
                let message = vec![b'm'; size];
                let mut back = vec![0; size];
                for _ in 0..rounds {
                    stream.write_all(&message).unwrap();
                    stream.read_exact(&mut back).unwrap();
                }
            })
        })
        .collect()
}

fn run_until_done(reactor: &mut Reactor, threads: Vec<std::thread::JoinHandle<()>>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !threads.iter().all(|t| t.is_finished()) {
        assert!(Instant::now() < deadline, "clients did not finish");
        reactor.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn steady_echo_traffic_allocates_nothing_on_the_loop_thread() {
    let mut reactor = Reactor::new().unwrap();
    let service = Service::new(&mut reactor, Echo, Config::default());
    let listener = service
        .listen(&mut reactor, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = service.local_addr(listener).unwrap().inet().unwrap();

    // Warm up: connections accepted, pools and queues filled. Then the
    // measured phase uses the same connections.
    let mut streams: Vec<std::net::TcpStream> = (0..8)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let warm = clients(addr, 8, 200, 1000);
    run_until_done(&mut reactor, warm);

    // Measured: 8 already-open connections, 2,000 round trips each.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let threads: Vec<_> = streams
        .drain(..)
        .map(|mut stream| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                stream.set_nodelay(true).unwrap();
                // One round trip uncounted (the loop signals readiness on the
                // channel), then the counted ones.
                let message = [b'x'; 700];
                let mut back = [0; 700];
                stream.write_all(&message).unwrap();
                stream.read_exact(&mut back).unwrap();
                tx.send(()).unwrap();
                for _ in 0..2000 {
                    stream.write_all(&message).unwrap();
                    stream.read_exact(&mut back).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    // Let every connection make its first round trip uncounted.
    let mut ready = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready < 8 {
        assert!(Instant::now() < deadline);
        reactor.run_once(Some(Duration::from_millis(10))).unwrap();
        ready += rx.try_iter().count();
    }

    let bytes_before = service.stats().unwrap().bytes_out;
    COUNTING.with(|c| c.set(true));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !threads.iter().all(|t| t.is_finished()) {
        assert!(Instant::now() < deadline, "clients did not finish");
        reactor.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    COUNTING.with(|c| c.set(false));
    for t in threads {
        t.join().unwrap();
    }
    let echoed = service.stats().unwrap().bytes_out - bytes_before;
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    eprintln!("{allocations} allocations on the loop thread while echoing {echoed} bytes");
    // A few round trips may complete in the turn before counting starts.
    assert!(
        echoed >= 8 * 1900 * 700,
        "the clients' messages went through: {echoed}"
    );
    assert_eq!(allocations, 0, "steady echo traffic allocated");
}
