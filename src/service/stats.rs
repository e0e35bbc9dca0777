//! [`ServiceStats`]: what a service has done, for introspection. Counters
//! only: nothing reads them to decide anything.

/// Counters of a [`Service`](super::Service), cheap enough to leave on: each
/// is a field updated in passing, and reading them copies a small struct.
///
/// # Examples
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use reactor::Reactor;
/// use reactor::service::{Config, ConnId, Connections, Handler, Service};
///
/// struct Discard;
/// impl Handler for Discard {
///     fn on_data(&mut self, _: &mut Connections<'_>, _: ConnId, data: &[u8]) -> usize { data.len() }
/// }
/// let mut reactor = Reactor::new()?;
/// let service = Service::new(&mut reactor, Discard, Config::default());
/// service.listen(&mut reactor, "127.0.0.1:0".parse().unwrap())?;
/// let stats = service.stats()?;
/// assert_eq!((stats.open, stats.listeners, stats.bytes_in), (0, 1, 0));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceStats {
    /// Connections open now (accepted or outgoing), not counting lingering ones.
    pub open: usize,
    /// Connections closed for the handler but waiting for the peer's FIN.
    pub lingering: usize,
    /// Listeners open now.
    pub listeners: usize,
    /// Connections accepted so far.
    pub accepted: u64,
    /// Outgoing connections that completed so far.
    pub connected: u64,
    /// Connections refused for being over `max_connections`.
    pub rejected: u64,
    /// Connections closed so far.
    pub closed: u64,
    /// Bytes read from all connections.
    pub bytes_in: u64,
    /// Bytes written to all connections.
    pub bytes_out: u64,
    /// `read` system calls made on connections.
    pub reads: u64,
    /// `write`/`writev` system calls made on connections (one per connection
    /// per turn in steady state, however many messages were sent to it).
    pub writes: u64,
    /// Bytes queued for output now, over all connections.
    pub queued_output: usize,
    /// The largest output queue any one connection has had.
    pub peak_output: usize,
    /// Bytes held by emptied buffers waiting for reuse.
    pub pooled_bytes: usize,
}
