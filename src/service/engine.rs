//! The engine: where events, timers and the before-sleep hook enter a
//! service, and how the handler is called.
//!
//! Every entry goes through [`Engine::enter`] (which closes a connection
//! whose handler call panicked) and [`Engine::leave`] (which delivers close
//! notices and completes a shutdown). An event is dispatched by kind: a
//! listener's to `accept.rs`, a connection's to `input.rs` and
//! `output/flush.rs`. Handler calls go through [`with_handler`], the one
//! place that marks a call in progress. This file does no I/O of its own.

use std::cell::RefCell;
use std::io;
use std::mem;

use log::{debug, error};

use super::connections::Connections;
use super::flags::Flags;
use super::handler::{CloseReason, ConnId, Handler};
use super::state::{LISTENER_TAG, State, TimerKind, TimerTarget};
use super::timeouts::Clock;
use crate::reactor::{Dispatch, Event, Reactor};
use crate::ready::Ready;

/// Whether an error came from TLS (always false without the `tls` feature).
fn is_tls_error(e: &io::Error) -> bool {
    #[cfg(feature = "tls")]
    {
        super::tls_transport::is_tls_error(e)
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = e;
        false
    }
}

/// Size of the scratch buffer every read goes into.
const SCRATCH: usize = 64 * 1024;

pub(crate) struct Engine<H> {
    pub(crate) handler: H,
    pub(crate) state: State,
    /// Every read goes here first.
    pub(crate) scratch: Box<[u8]>,
    /// A spare vector swapped with the work queues, so draining them
    /// allocates nothing.
    spare: Vec<ConnId>,
}

/// The shared cell the reactor routes events and timers to.
pub(crate) struct Core<H> {
    pub(crate) engine: RefCell<Engine<H>>,
    /// Where the reactor keeps this service for its `ServiceHandle`s, once
    /// one has been made.
    pub(crate) handle_slot: std::cell::Cell<Option<usize>>,
}

impl<H: Handler> Dispatch for Core<H> {
    fn dispatch(&self, reactor: &mut Reactor, tag: usize, event: Event) {
        let Ok(mut engine) = self.engine.try_borrow_mut() else {
            error!(
                "service event while its handler is running (was the loop run from inside a handler?)"
            );
            return;
        };
        engine.enter(reactor);
        // The events that follow for this service are taken here too: the
        // borrow and the checks on entry are paid once per batch.
        let mut next = Some((tag, event));
        while let Some((tag, event)) = next {
            if tag & LISTENER_TAG != 0 {
                engine.accept(reactor, tag & !LISTENER_TAG);
            } else {
                engine.conn_event(reactor, tag, event.ready());
            }
            engine.leave(reactor);
            next = reactor.next_event_for(self);
        }
    }
}

impl<H: Handler> TimerTarget for Core<H> {
    fn on_timer(&self, reactor: &mut Reactor, kind: TimerKind) {
        let Ok(mut engine) = self.engine.try_borrow_mut() else {
            error!("service timer while its handler is running");
            return;
        };
        engine.enter(reactor);
        match kind {
            TimerKind::Clock(Clock::Idle) => engine.state.expire_idle(reactor),
            TimerKind::Clock(Clock::Unfinished) => engine.expire_unfinished(reactor),
            TimerKind::Clock(Clock::Closing) => engine.state.expire_closing(reactor),
            TimerKind::DeliveryCheck => engine.state.check_delivery(reactor),
            TimerKind::Linger(id) => engine.state.end_linger(reactor, id),
            TimerKind::Connect(id) => engine.connect_timed_out(reactor, id),
            TimerKind::Handshake(id) => engine.state.handshake_timed_out(reactor, id),
            TimerKind::AcceptResume => engine.resume_accepting(),
            TimerKind::ShutdownDeadline => engine.state.shutdown_deadline(reactor),
        }
        engine.leave(reactor);
    }
}

impl<H: Handler> Core<H> {
    /// The before-sleep hook: continue reads and accepts left over, then
    /// flush every connection with queued output.
    pub(crate) fn before_sleep(&self, reactor: &mut Reactor) {
        let Ok(mut engine) = self.engine.try_borrow_mut() else {
            return;
        };
        engine.enter(reactor);
        engine.run_queues(reactor);
        engine.leave(reactor);
        // Work queued during this pass (a budget spent, a send from
        // `on_drained` or from an `on_close` delivered just now) must not
        // wait for an event that may never come.
        if engine.has_queued_work() {
            reactor.keep_awake();
        }
    }
}

impl<H: Handler> Engine<H> {
    pub(crate) fn new(handler: H, state: State) -> Engine<H> {
        Engine {
            handler,
            state,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            spare: Vec::new(),
        }
    }

    /// Every entry into the engine starts here. A handler call still marked
    /// in progress means it panicked: that connection is closed (see
    /// `Service` on panics).
    pub(crate) fn enter(&mut self, reactor: &mut Reactor) {
        if let Some(reply) = self.state.out.in_place.take() {
            // The panic came between a send and its write: the reply is lost
            // with the connection.
            self.state.output_written(reply.len);
        }
        if let Some(id) = self.state.current.take() {
            error!("{id}: the handler panicked while handling it; closing it");
            let _ = self.state.abort(reactor, id, CloseReason::HandlerPanicked);
        }
    }

    /// Every exit from the engine ends here: deliver queued close
    /// notifications (which may queue more), then see if a shutdown is done.
    pub(crate) fn leave(&mut self, reactor: &mut Reactor) {
        if !self.state.closing.notices.is_empty() {
            self.deliver_closed(reactor);
        }
        if self.state.closing.shutdown.is_some() {
            self.state.check_shutdown_done(reactor);
        }
    }

    /// Tells the handler about connections that closed (each `on_close` may
    /// close more, which are told in turn).
    fn deliver_closed(&mut self, reactor: &mut Reactor) {
        while let Some((id, reason)) = self.state.closing.notices.pop_front() {
            self.tell(reactor, id, |handler, conns| {
                handler.on_close(conns, id, &reason)
            });
        }
    }

    /// Calls the handler about connection `id` (see [`with_handler`]).
    #[inline(always)]
    pub(crate) fn tell<R>(
        &mut self,
        reactor: &mut Reactor,
        id: ConnId,
        f: impl FnOnce(&mut H, &mut Connections<'_>) -> R,
    ) -> R {
        with_handler(&mut self.handler, &mut self.state, reactor, id, &[], f)
    }

    fn has_queued_work(&self) -> bool {
        !self.state.input.read_queue.is_empty()
            || !self.state.out.flush_queue.is_empty()
            || !self.state.accept.queue.is_empty()
    }

    /// Calls the handler with nothing in particular in progress (for
    /// `Service::with`).
    pub(crate) fn call<R>(
        &mut self,
        reactor: &mut Reactor,
        f: impl FnOnce(&mut H, &mut Connections<'_>) -> R,
    ) -> R {
        let mut conns = Connections {
            reactor,
            state: &mut self.state,
            input: &[],
        };
        f(&mut self.handler, &mut conns)
    }

    fn run_queues(&mut self, reactor: &mut Reactor) {
        if !self.state.accept.queue.is_empty() {
            let listeners = mem::take(&mut self.state.accept.queue);
            for index in listeners {
                self.accept(reactor, index);
            }
        }

        let mut batch = mem::take(&mut self.spare);
        mem::swap(&mut batch, &mut self.state.input.read_queue);
        for id in batch.drain(..) {
            let Some(conn) = self.state.conns.get_mut(id.index as usize) else {
                continue;
            };
            if conn.generation != id.generation {
                continue;
            }
            conn.flags.clear(Flags::IN_READ_QUEUE);
            if conn.flags.has(Flags::LINGERING) {
                self.discard_input(reactor, id);
            } else {
                self.read(reactor, id);
            }
        }

        // Closes found while reading are told now, so that what `on_close`
        // sends (a "left the room" notice) goes out in this flush.
        self.deliver_closed(reactor);

        mem::swap(&mut batch, &mut self.state.out.flush_queue);
        for id in batch.drain(..) {
            let Some(conn) = self.state.conns.get_mut(id.index as usize) else {
                continue;
            };
            if conn.generation != id.generation {
                continue;
            }
            conn.flags.clear(Flags::IN_FLUSH_QUEUE);
            self.flush(reactor, id);
        }
        self.spare = batch;
    }

    fn conn_event(&mut self, reactor: &mut Reactor, index: usize, ready: Ready) {
        let Some(conn) = self.state.conns.get_mut(index) else {
            return;
        };
        let id = conn.id(index);
        if conn.flags.has(Flags::CONNECTING) {
            self.finish_connect(reactor, id, ready);
            return;
        }
        if ready.is_readable() {
            conn.flags.set(Flags::READABLE);
        }
        if ready.is_read_closed() || ready.is_error() || ready.is_write_closed() {
            conn.flags.set(Flags::READABLE | Flags::READ_CLOSED);
        }
        if ready.is_writable() {
            conn.flags.set(Flags::WRITABLE);
        }
        if ready.is_error() {
            if let Ok(Some(e)) | Err(e) = conn.transport.socket().take_error() {
                self.fail(reactor, id, e);
                return;
            }
        }
        if conn.flags.has(Flags::LINGERING) {
            if conn.flags.has(Flags::WRITABLE) && conn.transport.has_pending() {
                // A close_notify the socket did not take at once.
                if let Err(e) = conn.transport.write_pending() {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        conn.flags.clear(Flags::WRITABLE);
                    }
                }
                if !conn.transport.has_pending() && conn.flags.has(Flags::END_OF_STREAM) {
                    // It has left, and the peer had finished already.
                    self.state.remove(reactor, index, None);
                    return;
                }
            }
            self.discard_input(reactor, id);
            return;
        }
        if conn.flags.has(Flags::WRITABLE) && conn.has_output() {
            self.flush(reactor, id);
        }
        self.read(reactor, id);
    }

    /// A socket error: close the connection (quietly if it was lingering).
    pub(crate) fn fail(&mut self, reactor: &mut Reactor, id: ConnId, e: io::Error) {
        let index = id.index as usize;
        let lingering = self.state.conns[index].flags.has(Flags::LINGERING);
        if lingering {
            self.state.remove(reactor, index, None);
        } else if is_tls_error(&e) {
            // Worth a log line at the default level: a handshake that
            // failed, a peer that speaks plaintext, a certificate refused.
            log::warn!("{id}: TLS: {e}");
            self.state.remove(reactor, index, Some(CloseReason::Tls(e)));
        } else {
            debug!("{id}: {e}");
            self.state
                .remove(reactor, index, Some(CloseReason::Error(e)));
        }
    }
}

/// Calls the handler about connection `id`, marking the call in progress
/// (a call still marked when the engine is next entered had panicked: see
/// [`Engine::enter`]).
#[inline(always)]
pub(crate) fn with_handler<H, R>(
    handler: &mut H,
    state: &mut State,
    reactor: &mut Reactor,
    id: ConnId,
    input: &[u8],
    f: impl FnOnce(&mut H, &mut Connections<'_>) -> R,
) -> R {
    state.current = Some(id);
    let mut conns = Connections {
        reactor,
        state,
        input,
    };
    let result = f(handler, &mut conns);
    conns.state.current = None;
    result
}
