//! Writing responses: one function for every status line and head the
//! server sends, so that the `Date` cache, `Connection: close`, the access
//! log and the per-status counters are in one place.

use std::time::{SystemTime, UNIX_EPOCH};

use reactor::http;
use reactor::service::{ConnId, Connections};

/// What a response needs to know about the request it answers.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The request was a HEAD: send the head only.
    pub head_only: bool,
    /// The connection stays open after this response.
    pub keep_alive: bool,
    /// The request was HTTP/1.0, whose clients must be told when the
    /// connection stays open.
    pub http10: bool,
    /// `METHOD target` for the access log (empty when the request could
    /// not be read).
    pub request_line: String,
}

impl Exchange {
    /// An exchange for a request that could not be read: no keep-alive.
    pub fn unreadable() -> Exchange {
        Exchange {
            head_only: false,
            keep_alive: false,
            http10: false,
            request_line: String::from("-"),
        }
    }
}

/// A response: its status, the fields that vary, and the body when it is
/// already in memory.
pub struct Reply<'a> {
    pub status: u16,
    pub content_type: &'a str,
    /// More header lines, each ending in CRLF (`Allow: GET\r\n`).
    pub fields: &'a str,
    /// The `Content-Length`: the body's length, or the length of what is
    /// streamed after the head.
    pub length: u64,
    /// The body, if it is sent with the head (empty for a streamed one).
    pub body: &'a [u8],
    /// The body follows the head later: the caller closes the connection
    /// (if it is not kept alive) when it has been queued.
    pub streamed: bool,
}

impl<'a> Reply<'a> {
    /// A small text body, for every error and note the server sends.
    pub fn text(status: u16, body: &'a [u8]) -> Reply<'a> {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            fields: "",
            length: body.len() as u64,
            body,
            streamed: false,
        }
    }
}

/// Counters the replies feed, for `/metrics`.
#[derive(Debug)]
pub struct Counts {
    /// Responses sent, by status code (100 to 599, at `status - 100`).
    by_status: [u64; 500],
}

impl Default for Counts {
    fn default() -> Counts {
        Counts {
            by_status: [0; 500],
        }
    }
}

impl Counts {
    fn count(&mut self, status: u16) {
        if let Some(n) = self
            .by_status
            .get_mut(usize::from(status).wrapping_sub(100))
        {
            *n += 1;
        }
    }

    /// Each status sent at least once, with its count, in order.
    pub fn by_status(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        (100..600u16)
            .zip(self.by_status.iter().copied())
            .filter(|&(_, n)| n > 0)
    }
}

/// The response writer: a reusable buffer for heads and the cached `Date`.
#[derive(Debug, Default)]
pub struct Replies {
    head: Vec<u8>,
    date: String,
    date_secs: u64,
    pub counts: Counts,
}

impl Replies {
    /// The `Date` value, formatted once a second rather than per response.
    fn date(&mut self) -> &str {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.date_secs || self.date.is_empty() {
            self.date = http::format_date(now);
            self.date_secs = secs;
        }
        &self.date
    }

    /// Sends `reply` on `id`: the head, and the body unless the request was
    /// a HEAD. Closes the connection after it unless it is kept alive.
    pub fn send(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        exchange: &Exchange,
        reply: Reply<'_>,
    ) {
        // Built with plain byte appends: `write!` was a fifth of the
        // server's instructions per request under callgrind.
        let mut head = std::mem::take(&mut self.head);
        head.clear();
        http::write_status_line(&mut head, reply.status);
        head.extend_from_slice(b"Server: reactor\r\nDate: ");
        head.extend_from_slice(self.date().as_bytes());
        head.extend_from_slice(b"\r\n");
        // A 304 describes the client's copy; a length here would be wrong.
        if reply.status != 304 {
            head.extend_from_slice(b"Content-Length: ");
            http::write_decimal(&mut head, reply.length);
            head.extend_from_slice(b"\r\n");
        }
        if !reply.content_type.is_empty() {
            head.extend_from_slice(b"Content-Type: ");
            head.extend_from_slice(reply.content_type.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(reply.fields.as_bytes());
        if !exchange.keep_alive {
            head.extend_from_slice(b"Connection: close\r\n");
        } else if exchange.http10 {
            head.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        head.extend_from_slice(b"\r\n");
        // A send fails only when the connection is closing or over its
        // output limit; the service has then logged and closed it, and the
        // response is not counted as sent.
        let mut sent = conns.send(id, &head);
        if sent.is_ok() && !exchange.head_only && !reply.body.is_empty() {
            sent = conns.send(id, reply.body);
        }
        self.head = head;
        if let Err(e) = sent {
            log::warn!(
                "{id} \"{}\" {}: not sent: {e}",
                exchange.request_line,
                reply.status
            );
            return;
        }
        self.counts.count(reply.status);
        log::info!(
            target: "access",
            "{id} \"{}\" {} {}",
            exchange.request_line,
            reply.status,
            if exchange.head_only { 0 } else { reply.length }
        );
        if !exchange.keep_alive && !reply.streamed {
            let _ = conns.close(id);
        }
    }

    /// Sends an error page for `error` and closes: after a refused
    /// request the connection's framing cannot be trusted.
    pub fn refuse(
        &mut self,
        conns: &mut Connections<'_>,
        id: ConnId,
        exchange: Exchange,
        error: &http::Error,
    ) {
        log::warn!("{id}: refused \"{}\": {error}", exchange.request_line);
        let body = format!("{error}\n");
        let exchange = Exchange {
            keep_alive: false,
            ..exchange
        };
        let reply = Reply::text(error.status(), body.as_bytes());
        self.send(conns, id, &exchange, reply);
    }
}
