//! The seeds' `selectserver.py` on layer 2: a listener and its connections,
//! each registered with a callback. No connection layer, no handler trait:
//! the bare mechanism, with its edge-triggered rules spelled out.
//!
//! Run:   cargo run --example select_echo_server -- --addr 127.0.0.1:10000
//! Talk:  nc 127.0.0.1 10000          (or: cargo run --example select_echo_client)
//!
//! Every connection echoes byte for byte until the peer closes; the server
//! serves any number of clients until SIGINT or SIGTERM. Out of descriptors,
//! it rests and tries again, leaving no client stranded in the backlog
//! (`Acceptor` says why, and which alternative it rejects).

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use reactor::{Event, Interest, Key, Reactor, Ready};

const USAGE: &str = "\
select_echo_server: an echo server written with reactor callbacks only (layer 2)

usage: select_echo_server [--addr HOST:PORT]

options:
  --addr HOST:PORT   where to listen (default 127.0.0.1:10000, the seed's port)
  -h, --help         show this text

Set RUST_LOG=debug to see every accept, read, write and close.
";

/// Bytes read from a client but not yet echoed back. Above this the server
/// stops reading that client until the client reads its echo: a client that
/// sends without reading cannot grow the server's memory.
const PENDING_LIMIT: usize = 1024 * 1024;

/// Bytes read from one client per event. A client that streams without
/// pause must not keep the loop to itself: past this, the callback asks to
/// be called again next turn and returns.
const READ_BUDGET: usize = 256 * 1024;

/// How long accepting rests after `accept` fails for lack of descriptors
/// (the connection layer's `accept_pause` default, for the same reasons:
/// see [`Acceptor`]).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What `pump` left the connection as.
enum Outcome {
    /// Waiting for the next event.
    Open,
    /// The read budget is spent and the socket may hold more.
    MoreToRead,
    /// Finished: the client closed and everything was echoed.
    Done,
}

fn main() {
    common::init_logging();
    let addr = common::addr_only(USAGE, "127.0.0.1:10000");
    if let Err(e) = run(addr) {
        common::fail(e);
    }
}

fn run(addr: SocketAddr) -> io::Result<()> {
    let mut reactor = Reactor::new()?;
    let listener = reactor::socket::tcp_listener(addr, reactor::socket::DEFAULT_BACKLOG)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;

    let mut acceptor = Acceptor {
        paused_until: None,
        exhausted: false,
    };
    reactor.register(
        listener,
        Interest::READABLE,
        move |reactor, listener: &mut TcpListener, event| {
            acceptor.on_event(reactor, listener, event)
        },
    )?;

    reactor::signal::on_shutdown_signal(&mut reactor, |reactor, signal| {
        info!("{}: shutting down", signal.name());
        reactor.stop();
    })?;
    // Announced once a signal can no longer kill us before our handler runs:
    // whoever waits for this line may send SIGTERM at once.
    common::announce(format_args!("listening on {local}"));
    reactor.run()?;
    info!("stopped");
    Ok(())
}

/// The listener's state, owned by its callback: `accept` in
/// `selectserver.py`, plus what to do when the process runs out of
/// descriptors.
///
/// # Out of descriptors (`EMFILE`)
///
/// When `accept` fails with `EMFILE` (this process is at `ulimit -n`) or
/// `ENFILE` (the whole system is), the connection stays in the kernel's
/// backlog, and readiness is edge-triggered: no new event will come for it.
/// Returning and waiting for the next event strands it, and everyone
/// queued behind it, until some new client happens to connect. So we rest
/// for [`ACCEPT_PAUSE`] and then accept again until `WouldBlock`, with a
/// timer standing in for the event that will not come. The cost: while
/// out of descriptors, one failed `accept` per pause, and a waiting client
/// is served up to one pause after a descriptor frees up. The connection
/// layer does the same (`Config::accept_pause`).
///
/// Rejected: the reserve descriptor of libuv (`uv__emfile_trick`) and
/// Twisted (`_reservedFD`). The server keeps one spare descriptor open; on
/// `EMFILE` it closes the spare, accepts the waiting connection and closes
/// it at once, then reopens the spare. That answers clients in the backlog
/// with an immediate close ("overloaded") instead of a wait, and it needs
/// no timer.
/// But it turns away clients this server could serve a moment later, when
/// its current clients leave (an echo server's do); it holds a descriptor
/// in reserve for ever; and it is only best effort: under `ENFILE` another
/// process, or in a threaded program another thread, may take the freed
/// descriptor first. Resting and retrying serves everyone in the end and
/// is a few lines on the reactor's timers.
///
/// Not done either: retrying when one of our clients closes, which frees a
/// descriptor. It would serve the backlog sooner, but it would tie every
/// client to the listener's state, and the timer already guarantees
/// progress within one pause.
struct Acceptor {
    /// While accepting rests: when it may resume. Events before then only
    /// say that more connections joined the backlog; the timer set for this
    /// instant comes back for all of them.
    paused_until: Option<Instant>,
    /// Out of descriptors since the last successful accept: warn once per
    /// episode, not on every retry.
    exhausted: bool,
}

impl Acceptor {
    /// The listener is readable (or the pause is over): connections wait in
    /// the backlog. Edge-triggered, so accept until `WouldBlock`: one event
    /// may stand for many connections, and no second event comes for those
    /// left behind.
    fn on_event(&mut self, reactor: &mut Reactor, listener: &mut TcpListener, event: Event) {
        if let Some(until) = self.paused_until {
            if reactor.now() < until {
                return;
            }
            self.paused_until = None;
        }
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if self.exhausted {
                        info!("descriptors available again: accepting");
                        self.exhausted = false;
                    }
                    admit(reactor, stream, peer);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // The client gave up before we accepted it, or a signal
                // interrupted the call: take the next.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionAborted
                            | ErrorKind::ConnectionReset
                            | ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    self.pause(reactor, event.key(), &e);
                    return;
                }
            }
        }
    }

    /// `accept` failed: rest, then come back as if the listener were
    /// readable again. Out of descriptors or kernel memory, retrying at once
    /// would fail again and spin the loop. After an error we do not expect,
    /// giving up would strand the backlog, so that rests too.
    fn pause(&mut self, reactor: &mut Reactor, listener: Key, e: &io::Error) {
        if !reactor::socket::is_resource_exhaustion(e) {
            warn!("accept: {e}; retrying in {ACCEPT_PAUSE:?}");
        } else if !self.exhausted {
            warn!(
                "accept: {e}; pausing accepts for {ACCEPT_PAUSE:?} (raise the limit with ulimit -n?)"
            );
            self.exhausted = true;
        } else {
            debug!("accept: {e}; still out of descriptors");
        }
        let until = reactor.now() + ACCEPT_PAUSE;
        self.paused_until = Some(until);
        reactor.call_at(until, move |reactor| {
            reactor.schedule_event(listener, Ready::READABLE)
        });
    }
}

/// Registers an accepted connection with a callback of its own.
fn admit(reactor: &mut Reactor, stream: TcpStream, peer: SocketAddr) {
    debug!("accept({peer})");
    let _ = stream.set_nodelay(true);
    let mut client = Client {
        peer,
        pending: Vec::new(),
        readable: false,
        peer_closed: false,
    };
    // Register once for both directions: waiting for writability later
    // costs no epoll_ctl.
    let registered = reactor.register(
        stream,
        Interest::READABLE | Interest::WRITABLE,
        move |reactor, stream: &mut TcpStream, event| client.on_event(reactor, stream, event),
    );
    if let Err(e) = registered {
        warn!("cannot register {peer}: {e}");
    }
}

/// One client's state, owned by its callback.
struct Client {
    peer: SocketAddr,
    /// Read and not yet echoed.
    pending: Vec<u8>,
    /// The last read did not prove the socket empty (edge-triggered: no
    /// event will remind us).
    readable: bool,
    /// The client shut down its side; close once `pending` is sent.
    peer_closed: bool,
}

impl Client {
    /// `read` in `selectserver.py`, made safe for partial writes and
    /// edge-triggered readiness.
    fn on_event(&mut self, reactor: &mut Reactor, stream: &mut TcpStream, event: Event) {
        if event.is_readable() || event.ready().is_read_closed() {
            self.readable = true;
        }
        match self.pump(stream) {
            Ok(Outcome::Open) => {}
            // Edge-triggered: no event will announce input that is already
            // waiting, so schedule one.
            Ok(Outcome::MoreToRead) => reactor.schedule_event(event.key(), Ready::READABLE),
            Ok(Outcome::Done) => {
                debug!("closing {}", self.peer);
                let _ = reactor.deregister(event.key());
            }
            Err(e) => {
                debug!("closing {}: {e}", self.peer);
                let _ = reactor.deregister(event.key());
            }
        }
    }

    /// Moves bytes until the socket would block either way, or the read
    /// budget is spent.
    fn pump(&mut self, stream: &mut TcpStream) -> io::Result<Outcome> {
        let mut buf = [0u8; 16 * 1024];
        let mut budget = READ_BUDGET;
        loop {
            // Write first: what is pending must go before more is read.
            while !self.pending.is_empty() {
                match stream.write(&self.pending) {
                    Ok(n) => {
                        debug!("write({}): {n} bytes", self.peer);
                        self.pending.drain(..n);
                    }
                    // The send buffer is full: a writable event will call us
                    // back. Keep `readable` as it is.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if self.peer_closed && self.pending.is_empty() {
                return Ok(Outcome::Done);
            }
            // Backpressure: while too much is pending, leave the input in
            // the kernel; the client is throttled by TCP flow control. The
            // writable event that frees room brings us back here.
            if !self.readable || self.pending.len() >= PENDING_LIMIT {
                return Ok(Outcome::Open);
            }
            if budget == 0 {
                return Ok(Outcome::MoreToRead);
            }
            match stream.read(&mut buf) {
                Ok(0) => {
                    debug!("read({}): end of stream", self.peer);
                    self.readable = false;
                    self.peer_closed = true;
                }
                Ok(n) => {
                    debug!("read({}): {n} bytes", self.peer);
                    self.pending.extend_from_slice(&buf[..n]);
                    budget = budget.saturating_sub(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
