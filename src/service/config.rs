//! [`Config`]: every limit and socket default of a service, with its setter.
//!
//! Only values and their documented defaults: what each limit does is
//! enforced in the file of its idea.

use std::time::Duration;

/// The limits and socket defaults of a [`Service`](super::Service).
///
/// Every value has a default chosen for a general-purpose server and a
/// chainable setter. The defaults, and why:
///
/// | setting | default | why |
/// |---|---|---|
/// | [`max_connections`](Config::max_connections) | 10 000 | half of this machine's descriptor limit |
/// | [`high_water`](Config::high_water) | 256 KiB | stop reading a peer whose replies pile up |
/// | [`low_water`](Config::low_water) | 64 KiB | resume once most of it has gone |
/// | [`output_limit`](Config::output_limit) | 64 MiB | past this the peer is not reading: close it |
/// | [`input_limit`](Config::input_limit) | 1 MiB | unconsumed input a handler may leave behind |
/// | [`read_budget`](Config::read_budget) | 64 KiB | per connection per event, then others get a turn |
/// | [`write_budget`](Config::write_budget) | 64 KiB | per connection per event (as Redis) |
/// | [`accepts_per_turn`](Config::accepts_per_turn) | 256 | a connection flood cannot starve the loop |
/// | [`backlog`](Config::backlog) | 1024 | 128 loses handshakes when a thousand clients connect at once |
/// | [`nodelay`](Config::nodelay) | on | Nagle plus delayed ACKs stall small writes by 40 ms |
/// | [`idle_timeout`](Config::idle_timeout) | off | nothing read or written for this long: close |
/// | [`connect_timeout`](Config::connect_timeout) | 10 s | an outgoing connect that has not completed |
/// | [`handshake_timeout`](Config::handshake_timeout) | 10 s | a TLS handshake that has not finished |
/// | [`unfinished_input_timeout`](Config::unfinished_input_timeout) | off | a message begun and not finished this long: close (slowloris) |
/// | [`close_timeout`](Config::close_timeout) | 10 s | a graceful close (flush and linger) not done by then is aborted |
/// | [`linger_timeout`](Config::linger_timeout) | 2 s | once the peer has all our output, wait this long for its FIN |
/// | [`accept_pause`](Config::accept_pause) | 100 ms | after `EMFILE`, accepting rests this long |
/// | [`buffer_pool`](Config::buffer_pool) | 256 | emptied 16 KiB buffers kept for reuse |
/// | [`output_budget`](Config::output_budget) | none | queued output over all connections past which no input is read |
/// | [`send_buffer`](Config::send_buffer) | system's | `SO_SNDBUF` of accepted and connected sockets |
///
/// The connection layer checks the relations between them when the service
/// is created (see [`Config::validated`]).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reactor::service::Config;
///
/// let config = Config::default()
///     .max_connections(100)
///     .idle_timeout(Some(Duration::from_secs(30)))
///     .reject_message(b"error: server full\n");
/// assert_eq!(config.get_max_connections(), 100);
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) max_connections: usize,
    pub(crate) reject_message: Option<Vec<u8>>,
    pub(crate) high_water: usize,
    pub(crate) low_water: usize,
    pub(crate) output_limit: usize,
    pub(crate) input_limit: usize,
    pub(crate) read_budget: usize,
    pub(crate) write_budget: usize,
    pub(crate) accepts_per_turn: usize,
    pub(crate) backlog: i32,
    pub(crate) nodelay: bool,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) linger_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) unfinished_input_timeout: Option<Duration>,
    pub(crate) accept_pause: Duration,
    pub(crate) buffer_pool: usize,
    pub(crate) output_budget: Option<usize>,
    pub(crate) send_buffer: Option<usize>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_connections: 10_000,
            reject_message: None,
            high_water: 256 * 1024,
            low_water: 64 * 1024,
            output_limit: 64 * 1024 * 1024,
            input_limit: 1024 * 1024,
            read_budget: 64 * 1024,
            write_budget: 64 * 1024,
            accepts_per_turn: 256,
            backlog: 1024,
            nodelay: true,
            idle_timeout: None,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            linger_timeout: Duration::from_secs(2),
            close_timeout: Duration::from_secs(10),
            unfinished_input_timeout: None,
            accept_pause: Duration::from_millis(100),
            buffer_pool: 256,
            output_budget: None,
            send_buffer: None,
        }
    }
}

macro_rules! setting {
    ($(#[$doc:meta])* $name:ident, $getter:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Config {
            self.$name = value;
            self
        }

        #[doc = concat!("The current `", stringify!($name), "` setting.")]
        pub fn $getter(&self) -> $ty {
            self.$name
        }
    };
}

impl Config {
    setting!(
        /// Most connections accepted and open at once, over all the service's
        /// listeners. One more is accepted, sent the
        /// [`reject_message`](Config::reject_message) if there is one, and
        /// closed at once (never left waiting in the backlog).
        max_connections, get_max_connections: usize
    );
    setting!(
        /// Queued output (bytes) above which the connection stops being read,
        /// until it drains to [`low_water`](Config::low_water): backpressure.
        high_water, get_high_water: usize
    );
    setting!(
        /// Queued output (bytes) at which a connection paused by
        /// [`high_water`](Config::high_water) is read again.
        low_water, get_low_water: usize
    );
    setting!(
        /// Queued output (bytes) past which the connection is closed with a log
        /// line: its peer is not reading.
        output_limit, get_output_limit: usize
    );
    setting!(
        /// Input (bytes) a handler may leave unconsumed (a partial line or
        /// frame). Past it the connection is closed: no message may be bigger.
        /// For a line protocol, the line decoder's maximum
        /// ([`LineDecoder::new`](crate::codec::LineDecoder::new)) plus the
        /// two bytes of a `\r\n`.
        input_limit, get_input_limit: usize
    );
    setting!(
        /// Bytes read from one connection per event before the loop moves on;
        /// the connection is remembered as still readable and read again
        /// before the loop next sleeps (the before-sleep step), without
        /// waiting for an event.
        read_budget, get_read_budget: usize
    );
    setting!(
        /// Bytes written to one connection per flush before the loop moves on.
        write_budget, get_write_budget: usize
    );
    setting!(
        /// Connections accepted from one listener per turn before the loop
        /// moves on.
        accepts_per_turn, get_accepts_per_turn: usize
    );
    setting!(
        /// The listen backlog passed to `listen(2)` (the kernel caps it at
        /// `net.core.somaxconn`).
        backlog, get_backlog: i32
    );
    setting!(
        /// Sets `TCP_NODELAY` on accepted and connected TCP sockets.
        nodelay, get_nodelay: bool
    );
    setting!(
        /// Closes a connection after this long with nothing read or written.
        /// A connection whose peer is still taking output sent earlier (the
        /// kernel's unsent count has fallen since the clock last ran out) is
        /// not idle: a slow reader behind a full socket buffer can go longer
        /// than this without the socket becoming writable. A peer that takes
        /// nothing is closed one timeout later than one with nothing queued.
        idle_timeout, get_idle_timeout: Option<Duration>
    );
    setting!(
        /// Gives up on an outgoing connect after this long.
        connect_timeout, get_connect_timeout: Duration
    );
    setting!(
        /// Closes a TLS connection whose handshake has not finished this long
        /// after it was accepted (or its connect started): a stalled
        /// handshake must not hold a slot.
        handshake_timeout, get_handshake_timeout: Duration
    );
    setting!(
        /// After a graceful close has flushed and sent FIN, and the peer has
        /// taken everything we sent (the kernel's send queue is empty), how
        /// long to keep reading and discarding until the peer's FIN arrives.
        /// Closing with unread input makes the kernel send RST, and a reset
        /// destroys whatever the kernel still holds for the peer; so the
        /// linger never ends early while the peer is still reading. Zero
        /// closes as soon as the output is flushed, without a linger.
        ///
        /// Closes made by [`Service::shutdown`](super::Service::shutdown) use
        /// the shutdown's grace period instead: they linger until the peer's
        /// FIN or the end of the grace.
        linger_timeout, get_linger_timeout: Duration
    );
    setting!(
        /// The whole of a graceful close, from the moment it is asked for:
        /// flushing the queue, then lingering for the peer. A close still
        /// flushing at the deadline is aborted (a reset, dropping what is
        /// left) and the handler is told
        /// [`CloseReason::CloseTimeout`](super::CloseReason::CloseTimeout); one
        /// still lingering is closed. Without it a peer that never reads
        /// would hold its descriptor and its queued output for ever.
        close_timeout, get_close_timeout: Duration
    );
    setting!(
        /// How long a message may stay unfinished: the clock starts at the
        /// first byte the handler leaves unconsumed (a partial line, a
        /// partial request head), or when the handler calls
        /// [`Connections::expect_message`](super::Connections::expect_message)
        /// (waiting for a name, a first request), and stops when an
        /// [`on_data`](super::Handler::on_data) call leaves no input behind.
        /// Past it the handler's
        /// [`on_input_timeout`](super::Handler::on_input_timeout) runs (to send
        /// an error) and the connection is closed gracefully with
        /// [`CloseReason::InputTimeout`](super::CloseReason::InputTimeout).
        ///
        /// Unlike [`idle_timeout`](Config::idle_timeout), a trickle of bytes
        /// does not reset it: this is the defence against slowloris clients,
        /// like nginx's `client_header_timeout`. The clock does not run out
        /// on a connection whose reading is paused (by the handler or by
        /// backpressure): it starts again when reading could resume. Off by
        /// default, since raw byte streams have no messages.
        unfinished_input_timeout, get_unfinished_input_timeout: Option<Duration>
    );
    setting!(
        /// How long accepting rests after the process ran out of descriptors
        /// (`EMFILE`/`ENFILE`).
        accept_pause, get_accept_pause: Duration
    );
    setting!(
        /// Emptied buffers kept for reuse, so steady traffic allocates nothing.
        buffer_pool, get_buffer_pool: usize
    );
    setting!(
        /// A budget for output queued over **all** connections. Past it the
        /// service reads no input from anyone (input is what makes output)
        /// until the total drains to three quarters of the budget; writing
        /// goes on. With many slow readers, each under its own
        /// [`output_limit`](Config::output_limit), this still bounds memory.
        output_budget, get_output_budget: Option<usize>
    );
    setting!(
        /// `SO_SNDBUF` for accepted and connected sockets; `None` leaves the
        /// system's default (and its autotuning). A small kernel buffer keeps
        /// more of a slow reader's output in the service, where the limits
        /// see it.
        send_buffer, get_send_buffer: Option<usize>
    );

    /// A message sent to a connection refused for being over
    /// [`max_connections`](Config::max_connections), before it is closed.
    pub fn reject_message(mut self, message: &[u8]) -> Config {
        self.reject_message = Some(message.to_vec());
        self
    }

    /// The current reject message, if any.
    pub fn get_reject_message(&self) -> Option<&[u8]> {
        self.reject_message.as_deref()
    }

    /// This configuration with its values made consistent: budgets and
    /// limits at least 1, `low_water <= high_water <= output_limit`.
    ///
    /// ```
    /// use reactor::service::Config;
    /// let config = Config::default().high_water(1 << 30).validated();
    /// assert!(config.get_high_water() <= config.get_output_limit());
    /// ```
    pub fn validated(mut self) -> Config {
        self.max_connections = self.max_connections.max(1);
        self.read_budget = self.read_budget.max(1);
        self.write_budget = self.write_budget.max(1);
        self.accepts_per_turn = self.accepts_per_turn.max(1);
        self.output_limit = self.output_limit.max(1);
        self.high_water = self.high_water.clamp(1, self.output_limit);
        self.low_water = self.low_water.min(self.high_water);
        self.backlog = self.backlog.max(1);
        self
    }
}
