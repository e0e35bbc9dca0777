//! Layer 2: the `Reactor`'s callbacks, timers, deferred calls, handle, and
//! the rules that keep stale events away from new registrations.

use std::cell::{Cell, RefCell};
use std::io::{self, ErrorKind};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use reactor::{Dispatch, Event, Interest, Key, Reactor, Ready};

fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap()
}

/// A socket with a datagram already waiting, so it is readable the moment
/// it is registered.
fn readable_udp() -> UdpSocket {
    let socket = udp();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender
        .send_to(b"ready", socket.local_addr().unwrap())
        .unwrap();
    socket
}

/// Runs turns until `done` holds (bounded in turns and time).
#[track_caller]
fn run_until(reactor: &mut Reactor, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "condition not reached in time");
        reactor.run_once(Some(Duration::from_millis(100))).unwrap();
    }
}

#[test]
fn timers_fire_in_deadline_order() {
    let mut reactor = Reactor::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    for (delay, label) in [(30, "c"), (10, "a"), (20, "b"), (0, "zero")] {
        let order = order.clone();
        reactor.call_later(Duration::from_millis(delay), move |_| {
            order.borrow_mut().push(label)
        });
    }
    run_until(&mut reactor, || order.borrow().len() == 4);
    assert_eq!(*order.borrow(), ["zero", "a", "b", "c"]);
}

#[test]
fn timers_due_at_the_same_instant_fire_in_creation_order() {
    let mut reactor = Reactor::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let at = Instant::now() + Duration::from_millis(5);
    for label in 0..10 {
        let order = order.clone();
        reactor.call_at(at, move |_| order.borrow_mut().push(label));
    }
    run_until(&mut reactor, || order.borrow().len() == 10);
    assert_eq!(*order.borrow(), (0..10).collect::<Vec<_>>());
}

#[test]
fn a_cancelled_timer_never_fires() {
    let mut reactor = Reactor::new().unwrap();
    let fired = Rc::new(Cell::new(false));
    let flag = fired.clone();
    let doomed = reactor.call_later(Duration::from_millis(5), move |_| flag.set(true));
    let done = Rc::new(Cell::new(false));
    let done_flag = done.clone();
    // A later timer proves the doomed one's deadline has passed.
    reactor.call_later(Duration::from_millis(30), move |_| done_flag.set(true));
    assert!(reactor.cancel(doomed));
    assert!(!reactor.cancel(doomed), "cancelling twice is a no-op");
    run_until(&mut reactor, || done.get());
    assert!(!fired.get());
}

#[test]
fn a_timer_can_cancel_another_that_is_due_in_the_same_turn() {
    let mut reactor = Reactor::new().unwrap();
    let fired = Rc::new(Cell::new(0));
    let at = Instant::now() + Duration::from_millis(5);
    let victim_id = Rc::new(Cell::new(None));
    let v = victim_id.clone();
    reactor.call_at(at, move |reactor| {
        assert!(reactor.cancel(v.get().unwrap()));
    });
    let f = fired.clone();
    victim_id.set(Some(reactor.call_at(at, move |_| f.set(f.get() + 1))));
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    reactor.call_later(Duration::from_millis(20), move |_| d.set(true));
    run_until(&mut reactor, || done.get());
    assert_eq!(fired.get(), 0);
}

#[test]
fn a_repeating_timer_repeats_until_it_cancels_itself() {
    let mut reactor = Reactor::new().unwrap();
    let ticks = Rc::new(Cell::new(0));
    let id = Rc::new(Cell::new(None));
    let (t, i) = (ticks.clone(), id.clone());
    id.set(Some(reactor.call_every(
        Duration::from_millis(1),
        move |reactor| {
            t.set(t.get() + 1);
            if t.get() == 5 {
                assert!(reactor.cancel(i.get().unwrap()));
            }
        },
    )));
    run_until(&mut reactor, || ticks.get() == 5);
    // Run a few more turns past several intervals: no sixth tick.
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    reactor.call_later(Duration::from_millis(20), move |_| d.set(true));
    run_until(&mut reactor, || done.get());
    assert_eq!(ticks.get(), 5);
    assert_eq!(reactor.stats().timers, 0);
}

#[test]
fn a_zero_delay_timer_set_by_a_timer_waits_for_the_next_turn() {
    let mut reactor = Reactor::new().unwrap();
    let count = Rc::new(Cell::new(0));
    fn again(reactor: &mut Reactor, count: Rc<Cell<u32>>) {
        count.set(count.get() + 1);
        if count.get() < 100 {
            reactor.call_later(Duration::ZERO, move |r| again(r, count));
        }
    }
    let c = count.clone();
    reactor.call_later(Duration::ZERO, move |r| again(r, c));
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(
        count.get(),
        1,
        "one per turn: a re-arming timer cannot spin the loop"
    );
}

#[test]
fn deferred_callbacks_run_in_the_next_turn_in_order() {
    let mut reactor = Reactor::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let o = order.clone();
    reactor.call_soon(move |reactor| {
        o.borrow_mut().push(1);
        let o2 = o.clone();
        reactor.call_soon(move |_| o2.borrow_mut().push(3));
    });
    let o = order.clone();
    reactor.call_soon(move |_| o.borrow_mut().push(2));
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*order.borrow(), [1, 2], "one queued during the turn waits");
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*order.borrow(), [1, 2, 3]);
}

#[test]
fn before_sleep_hooks_run_every_turn_until_they_return_false() {
    let mut reactor = Reactor::new().unwrap();
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    reactor.before_sleep(move |_| {
        r.set(r.get() + 1);
        r.get() < 3
    });
    for _ in 0..5 {
        reactor.run_once(Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(runs.get(), 3);
}

#[test]
fn a_handle_stops_the_loop_from_another_thread() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let thread = std::thread::spawn(move || handle.stop());
    reactor.run().unwrap(); // would block forever without the stop
    thread.join().unwrap().unwrap();
}

#[test]
fn handle_jobs_run_in_order_before_a_stop_sent_after_them() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        for i in 0..1000 {
            let tx = tx.clone();
            handle.call_soon(move |_| tx.send(i).unwrap()).unwrap();
        }
        handle.stop().unwrap();
    });
    reactor.run().unwrap();
    thread.join().unwrap();
    let got: Vec<i32> = rx.try_iter().collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    // Wakes coalesce: a thousand jobs took far fewer turns than jobs.
    assert!(reactor.stats().turns < 1000, "{:?}", reactor.stats());
}

#[test]
fn a_handle_to_a_dropped_reactor_reports_broken_pipe() {
    let reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    drop(reactor);
    assert_eq!(
        handle.call_soon(|_| {}).unwrap_err().kind(),
        ErrorKind::BrokenPipe
    );
    assert_eq!(handle.stop().unwrap_err().kind(), ErrorKind::BrokenPipe);
}

#[test]
fn a_callback_gets_its_source_and_can_deregister_itself() {
    let mut reactor = Reactor::new().unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let key = reactor
        .register(
            readable_udp(),
            Interest::READABLE,
            move |reactor, socket: &mut UdpSocket, event| {
                c.set(c.get() + 1);
                let mut buf = [0; 16];
                assert_eq!(socket.recv_from(&mut buf).unwrap().0, 5);
                reactor.deregister(event.key()).unwrap();
            },
        )
        .unwrap();
    run_until(&mut reactor, || calls.get() == 1);
    assert!(!reactor.contains(key));
    assert_eq!(reactor.stats().registrations, 0);
    assert_eq!(
        reactor.deregister(key).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn modify_from_inside_the_callback_takes_effect_after_it() {
    let mut reactor = Reactor::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    reactor
        .register(
            udp(),
            Interest::WRITABLE,
            move |reactor, _: &mut UdpSocket, event| {
                s.borrow_mut().push(event.ready());
                if event.is_writable() {
                    // Switch to reading: the writable socket must go quiet.
                    reactor.modify(event.key(), Interest::READABLE).unwrap();
                }
            },
        )
        .unwrap();
    for _ in 0..5 {
        reactor.run_once(Some(Duration::from_millis(20))).unwrap();
    }
    assert_eq!(*seen.borrow(), [Ready::WRITABLE]);
}

/// The hazard the generation in every key exists for: two sources are ready
/// in the same batch; the first callback removes the second and registers a
/// new source, which takes the freed slot. The second event of the batch
/// names that slot, and must be dropped, not delivered to the newcomer.
#[test]
fn a_stale_event_never_reaches_the_new_owner_of_a_reused_slot() {
    let mut reactor = Reactor::new().unwrap();
    let keys: Rc<RefCell<Vec<Key>>> = Rc::new(RefCell::new(Vec::new()));
    let newcomer_calls = Rc::new(Cell::new(0));
    let newcomer_key = Rc::new(Cell::new(None));
    let first_calls = Rc::new(Cell::new(0));

    for _ in 0..2 {
        let all_keys = keys.clone();
        let newcomer_calls = newcomer_calls.clone();
        let newcomer_key = newcomer_key.clone();
        let first_calls = first_calls.clone();
        let key = reactor
            .register(
                readable_udp(),
                Interest::READABLE,
                move |reactor, _: &mut UdpSocket, event| {
                    first_calls.set(first_calls.get() + 1);
                    // Whichever of the two runs first removes the other...
                    let other = *all_keys
                        .borrow()
                        .iter()
                        .find(|k| **k != event.key())
                        .unwrap();
                    reactor.deregister(other).unwrap();
                    // ...and registers a quiet socket, which takes its slot.
                    let calls = newcomer_calls.clone();
                    let new = reactor
                        .register(udp(), Interest::READABLE, move |_, _: &mut UdpSocket, _| {
                            calls.set(calls.get() + 1)
                        })
                        .unwrap();
                    assert_eq!(new.index(), other.index(), "the slot was reused");
                    newcomer_key.set(Some(new));
                },
            )
            .unwrap();
        keys.borrow_mut().push(key);
    }
    // Both datagrams are already queued: one poll reports both sockets.
    let delivered = reactor.run_once(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(first_calls.get(), 1, "only one of the pair ran");
    assert_eq!(delivered, 1);
    assert_eq!(reactor.stats().stale_events, 1, "{:?}", reactor.stats());
    assert_eq!(
        newcomer_calls.get(),
        0,
        "the stale event reached the newcomer"
    );
    assert!(reactor.contains(newcomer_key.get().unwrap()));
}

/// The same hazard for routed registrations, with a dispatcher that takes
/// the rest of the batch itself (`next_event_for`): the stale event must be
/// dropped there too, not handed over with the newcomer's tag.
#[test]
fn a_dispatcher_taking_its_batch_never_gets_a_stale_event() {
    struct Table {
        me: Weak<Table>,
        sockets: RefCell<Vec<(UdpSocket, Key)>>,
        seen: RefCell<Vec<usize>>,
        calls: Cell<usize>,
    }
    const NEWCOMER: usize = 99;
    impl Dispatch for Table {
        fn dispatch(&self, reactor: &mut Reactor, tag: usize, _event: Event) {
            self.calls.set(self.calls.get() + 1);
            self.seen.borrow_mut().push(tag);
            // Remove the other socket, then register a quiet one, which takes
            // its slot in the reactor.
            let (mut other, other_key) = self.sockets.borrow_mut().remove(1 - tag);
            reactor.deregister_routed(&mut other, other_key).unwrap();
            let mut quiet = udp();
            let me: Rc<dyn Dispatch> = self.me.upgrade().unwrap();
            let key = reactor
                .register_routed(&mut quiet, Interest::READABLE, me, NEWCOMER)
                .unwrap();
            assert_eq!(key.index(), other_key.index(), "the slot was reused");
            self.sockets.borrow_mut().push((quiet, key));
            while let Some((tag, _)) = reactor.next_event_for(self) {
                self.seen.borrow_mut().push(tag);
            }
        }
    }
    let mut reactor = Reactor::new().unwrap();
    let table = Rc::new_cyclic(|me| Table {
        me: me.clone(),
        sockets: RefCell::new(Vec::new()),
        seen: RefCell::new(Vec::new()),
        calls: Cell::new(0),
    });
    for tag in 0..2 {
        let mut socket = readable_udp();
        let key = reactor
            .register_routed(&mut socket, Interest::READABLE, table.clone(), tag)
            .unwrap();
        table.sockets.borrow_mut().push((socket, key));
    }
    // Both datagrams are already queued: one poll reports both sockets.
    let delivered = reactor.run_once(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(table.calls.get(), 1);
    assert_eq!(table.seen.borrow().len(), 1, "{:?}", table.seen.borrow());
    assert!(!table.seen.borrow().contains(&NEWCOMER));
    assert_eq!(delivered, 1);
    assert_eq!(reactor.stats().stale_events, 1, "{:?}", reactor.stats());
}

/// Consecutive events for one dispatcher arrive in one call, and the count
/// `run_once` returns is of events, not calls.
#[test]
fn a_dispatcher_can_take_a_run_of_its_events_in_one_call() {
    #[derive(Default)]
    struct Count {
        calls: Cell<usize>,
        tags: RefCell<Vec<usize>>,
    }
    impl Dispatch for Count {
        fn dispatch(&self, reactor: &mut Reactor, tag: usize, _event: Event) {
            self.calls.set(self.calls.get() + 1);
            self.tags.borrow_mut().push(tag);
            while let Some((tag, _)) = reactor.next_event_for(self) {
                self.tags.borrow_mut().push(tag);
            }
        }
    }
    let mut reactor = Reactor::new().unwrap();
    let count = Rc::new(Count::default());
    let mut sockets = Vec::new();
    for tag in 0..5 {
        let mut socket = readable_udp();
        reactor
            .register_routed(&mut socket, Interest::READABLE, count.clone(), tag)
            .unwrap();
        sockets.push(socket);
    }
    let delivered = reactor.run_once(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(delivered, 5);
    assert_eq!(count.calls.get(), 1, "one call for the whole batch");
    let mut tags = count.tags.borrow().clone();
    tags.sort();
    assert_eq!(tags, [0, 1, 2, 3, 4]);
    assert_eq!(reactor.stats().events, 5);
}

#[test]
fn a_synthetic_event_for_a_removed_registration_is_dropped() {
    let mut reactor = Reactor::new().unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let key = reactor
        .register(udp(), Interest::READABLE, move |_, _: &mut UdpSocket, _| {
            c.set(c.get() + 1)
        })
        .unwrap();
    reactor.schedule_event(key, Ready::READABLE);
    reactor.deregister(key).unwrap();
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(calls.get(), 0);
}

#[test]
fn a_panicking_callback_leaves_the_reactor_usable() {
    let mut reactor = Reactor::new().unwrap();
    let panics = Rc::new(Cell::new(0));
    let p = panics.clone();
    let bomb = reactor
        .register(
            readable_udp(),
            Interest::READABLE,
            move |_, _: &mut UdpSocket, _| {
                p.set(p.get() + 1);
                panic!("boom");
            },
        )
        .unwrap();
    let healthy_calls = Rc::new(Cell::new(0));
    let h = healthy_calls.clone();
    reactor
        .register(
            readable_udp(),
            Interest::READABLE,
            move |_, socket: &mut UdpSocket, _| {
                let mut buf = [0; 8];
                while socket.recv_from(&mut buf).is_ok() {}
                h.set(h.get() + 1);
            },
        )
        .unwrap();

    let outcome = catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..10 {
            reactor.run_once(Some(Duration::from_secs(1))).unwrap();
        }
    }));
    assert!(outcome.is_err(), "the panic propagates");
    assert_eq!(panics.get(), 1);
    // The panicking registration stays; the other one's event, if it came
    // after the panic in the same batch, is delivered on the next turn.
    assert!(reactor.contains(bomb));
    run_until(&mut reactor, || healthy_calls.get() == 1);
    // And the loop still runs timers.
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    reactor.call_later(Duration::from_millis(1), move |_| f.set(true));
    run_until(&mut reactor, || fired.get());
}

#[test]
fn run_returns_after_stop_and_can_run_again() -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    for round in 0..3 {
        reactor.call_later(Duration::from_millis(1), |reactor| reactor.stop());
        reactor.run()?;
        assert!(reactor.stats().turns > round);
    }
    Ok(())
}

/// Regression (rebuild issue): `Handle::call_soon` on a dropped reactor
/// answered `BrokenPipe` but left the job in the queue, holding whatever it
/// captured until the last handle went. Its doc says the job is dropped.
#[test]
fn call_soon_after_the_reactor_is_gone_drops_the_job_at_once() {
    let reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    drop(reactor);
    let captured = std::sync::Arc::new(());
    let held = captured.clone();
    let err = handle
        .call_soon(move |_| drop(held))
        .expect_err("the reactor is gone");
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    assert_eq!(
        std::sync::Arc::strong_count(&captured),
        1,
        "the refused job was dropped"
    );
}

/// Regression (outside review): `Duration::MAX`, meant as "never", made
/// `Instant + Duration` overflow and panic inside the loop.
#[test]
fn a_timer_too_long_for_the_clock_means_never_not_a_panic() {
    let mut reactor = Reactor::new().unwrap();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    let never = reactor.call_later(Duration::MAX, move |_| f.set(true));
    let f = fired.clone();
    let every = reactor.call_every(Duration::MAX, move |_| f.set(true));
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert!(!fired.get());
    assert!(reactor.cancel(never) && reactor.cancel(every));
}
