//! The output path's fast and general cases agree: random sequences of
//! sends, broadcasts, echoes (replies in place), partial writes and closes,
//! run over real sockets once with the fast paths and once with them turned
//! off, give every peer exactly the bytes a model says, in order, then the
//! end of stream.

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::Reactor;
use crate::service::{Config, ConnId, Connections, Handler, Origin, Service};

thread_local! {
    /// Read by `fast_path_fits` and `writable_with_no_backlog` in tests.
    pub(super) static FAST_PATHS_OFF: Cell<bool> = const { Cell::new(false) };
}

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Echoes what peers send (a reply in place when nothing else is queued),
/// and records what it queued for each connection.
#[derive(Default)]
struct Recorder {
    ids: Vec<ConnId>,
    /// What each connection was sent, in order, as the service accepted it.
    sent: Vec<Vec<u8>>,
    /// Bytes echoed so far (to know when a peer's write has been handled).
    echoed: usize,
}

impl Recorder {
    fn slot(&self, id: ConnId) -> Option<usize> {
        self.ids.iter().position(|&i| i == id)
    }
}

type Shared = Rc<RefCell<Recorder>>;

struct Echo(Shared);

impl Handler for Echo {
    fn on_open(&mut self, _: &mut Connections<'_>, id: ConnId, _: Origin) {
        let mut r = self.0.borrow_mut();
        r.ids.push(id);
        r.sent.push(Vec::new());
    }

    fn on_data(&mut self, conns: &mut Connections<'_>, id: ConnId, data: &[u8]) -> usize {
        let mut r = self.0.borrow_mut();
        if conns.send(id, data).is_ok() {
            if let Some(slot) = r.slot(id) {
                r.sent[slot].extend_from_slice(data);
            }
        }
        r.echoed += data.len();
        data.len()
    }
}

/// What one peer received, and whether it ended in a clean end of stream.
type Received = (Vec<u8>, bool);

/// One run of a scenario: what each peer received, and what the service
/// accepted for each.
fn run(seed: u64, fast_paths: bool) -> (Vec<Received>, Vec<Vec<u8>>) {
    FAST_PATHS_OFF.with(|off| off.set(!fast_paths));
    const PEERS: usize = 4;
    let mut rng = Rng(seed | 1);
    let record = Shared::default();
    let mut reactor = Reactor::new().unwrap();
    // Small kernel buffers make partial writes common.
    let config = Config::default().send_buffer(Some(4096));
    let service = Service::new(&mut reactor, Echo(record.clone()), config);
    let listener = service
        .listen(&mut reactor, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = service.tcp_addr(listener).unwrap();
    let mut peers: Vec<TcpStream> = (0..PEERS)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while record.borrow().ids.len() < PEERS {
        assert!(Instant::now() < deadline);
        reactor.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    let mut got: Vec<Received> = vec![(Vec::new(), false); PEERS];
    let mut closed = [false; PEERS];
    let read_some =
        |peers: &mut Vec<TcpStream>, got: &mut Vec<(Vec<u8>, bool)>, who: usize, most: usize| {
            let mut buf = vec![0; most.max(1)];
            loop {
                match peers[who].read(&mut buf) {
                    Ok(0) => {
                        got[who].1 = true;
                        return;
                    }
                    Ok(n) => {
                        got[who].0.extend_from_slice(&buf[..n]);
                        if n < buf.len() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                    Err(e) => panic!("peer {who}: {e}"),
                }
            }
        };
    for _ in 0..200 {
        let ids = record.borrow().ids.clone();
        let who = rng.below(PEERS as u64) as usize;
        match rng.below(10) {
            // A send from outside the handler, of any size.
            0..=2 => {
                let most = if rng.below(4) == 0 { 100_000 } else { 300 };
                let len = 1 + rng.below(most) as usize;
                let data = rng.bytes(len);
                let ok = service
                    .with(&mut reactor, |_, conns| conns.send(ids[who], &data).is_ok())
                    .unwrap();
                if ok {
                    record.borrow_mut().sent[who].extend_from_slice(&data);
                }
            }
            // A broadcast to a random subset.
            3..=4 => {
                let len = 1 + rng.below(200) as usize;
                let data = rng.bytes(len);
                let to: Vec<usize> = (0..PEERS).filter(|_| rng.below(2) == 0).collect();
                let targets: Vec<ConnId> = to.iter().map(|&i| ids[i]).collect();
                let open: Vec<bool> = service
                    .with(&mut reactor, |_, conns| {
                        to.iter().map(|&i| conns.is_open(ids[i])).collect()
                    })
                    .unwrap();
                service
                    .with(&mut reactor, |_, conns| conns.broadcast(targets, &data))
                    .unwrap();
                for (&i, open) in to.iter().zip(open) {
                    if open {
                        record.borrow_mut().sent[i].extend_from_slice(&data);
                    }
                }
            }
            // The peer writes; the handler echoes it (in place, when it can).
            5..=6 if !closed[who] => {
                let len = 1 + rng.below(2000) as usize;
                let data = rng.bytes(len);
                if peers[who].write_all(&data).is_ok() {
                    let target = record.borrow().echoed + data.len();
                    while record.borrow().echoed < target {
                        assert!(Instant::now() < deadline, "echo not handled");
                        reactor.run_once(Some(Duration::from_millis(10))).unwrap();
                    }
                }
            }
            // A close, rarely.
            7 if rng.below(8) == 0 && !closed[who] => {
                let _ = service.with(&mut reactor, |_, conns| conns.close(ids[who]));
                closed[who] = true;
            }
            // The peer reads a little: partial writes on the other side.
            _ => {
                let most = 1 + rng.below(8192) as usize;
                read_some(&mut peers, &mut got, who, most);
            }
        }
        reactor.run_once(Some(Duration::ZERO)).unwrap();
    }
    // Close everyone and drain: each peer must see all it was sent, then
    // the end of stream.
    let ids = record.borrow().ids.clone();
    for id in ids {
        let _ = service.with(&mut reactor, |_, conns| conns.close(id));
    }
    while !got.iter().all(|(_, eof)| *eof) {
        assert!(Instant::now() < deadline, "peers not drained in time");
        reactor.run_once(Some(Duration::from_millis(1))).unwrap();
        for who in 0..PEERS {
            if !got[who].1 {
                read_some(&mut peers, &mut got, who, 65536);
            }
        }
    }
    FAST_PATHS_OFF.with(|off| off.set(false));
    let sent = record.borrow().sent.clone();
    (got, sent)
}

#[test]
fn fast_and_general_output_paths_give_the_same_bytes() {
    for seed in 1..=12u64 {
        let seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let (fast, fast_model) = run(seed, true);
        let (general, general_model) = run(seed, false);
        for (who, ((got, eof), model)) in fast.iter().zip(&fast_model).enumerate() {
            assert!(*eof, "seed {seed:#x}, peer {who}: no clean end of stream");
            assert!(
                got == model,
                "seed {seed:#x}, peer {who}, fast paths: got {} bytes, sent {}",
                got.len(),
                model.len()
            );
        }
        for (who, ((got, _), model)) in general.iter().zip(&general_model).enumerate() {
            assert!(
                got == model,
                "seed {seed:#x}, peer {who}, general path: got {} bytes, sent {}",
                got.len(),
                model.len()
            );
        }
        assert_eq!(
            fast_model, general_model,
            "seed {seed:#x}: the two runs accepted different output"
        );
    }
}
