//! WebSocket (RFC 6455): the handshake and the framing, without I/O.
//!
//! A WebSocket starts as an HTTP/1.1 request that asks to switch protocols
//! ([`check_upgrade`], [`write_accept`]); from then on both directions carry
//! *frames*, and a handler sees whole *messages* cut from them by a
//! [`Decoder`], as with the other codecs of [`crate::codec`]: fed whatever
//! bytes have arrived, it says how many it used and returns at most one
//! message.
//!
//! # A frame, byte by byte
//!
//! ```text
//!  byte 0          byte 1          bytes 2..        then         then
//! +-+-+-+-+-------+-+-------------+---------------+-------------+-------------+
//! |F|R|R|R|opcode |M| length (7)  | extended      | masking key | payload     |
//! |I|S|S|S|  (4)  |A|  0..=125,   | length: 2 or  | (4 bytes,   | (length     |
//! |N|V|V|V|       |S|  126 or 127 | 8 bytes, big- | if MASK)    | bytes)      |
//! | |1|2|3|       |K|             | endian        |             |             |
//! +-+-+-+-+-------+-+-------------+---------------+-------------+-------------+
//! ```
//!
//! - **FIN** is set on the last frame of a message. **RSV1-3** belong to
//!   extensions; we negotiate none, so a frame with any of them set is a
//!   protocol error (close code 1002).
//! - **opcode**: 0 continues a message, 1 starts a text message (UTF-8),
//!   2 a binary one; 8 is close, 9 ping, 10 pong (the *control* frames).
//!   Any other value is a protocol error.
//! - **length**: up to 125 fits in the 7 bits; 126 means "the next 2 bytes
//!   hold it", 127 "the next 8 bytes hold it" (their top bit must be 0).
//!   The length is known before a byte of payload arrives, so a frame that
//!   announces more than [`Limits::max_message`] is refused (1009) before
//!   anything is buffered or allocated: a 100 MiB announcement costs 10
//!   bytes of header, not 100 MiB.
//! - **MASK** and the masking key: every frame a client sends is masked,
//!   payload byte `i` XORed with key byte `i % 4`; server frames are not.
//!   A server that sees an unmasked frame closes with 1002. The key is
//!   chosen by the browser for each frame, so a script in a page cannot
//!   choose the bytes that go on the wire: without it, a page could make a
//!   browser send bytes that look like an HTTP request to a proxy that does
//!   not understand WebSocket, and poison its cache (RFC 6455 §10.3).
//!   Masking is not encryption, only that.
//!
//! # Messages, fragments and control frames
//!
//! A message is one frame with FIN set, or a first frame (text or binary,
//! FIN clear), any number of continuation frames, and a last continuation
//! with FIN set. Control frames (ping, pong, close) may come *between* the
//! fragments of a message (a ping must not wait behind a large message);
//! they are never fragmented themselves and carry at most 125 bytes. A
//! continuation with no message started, or a new text or binary frame while
//! a message is unfinished, is a protocol error. The decoder reassembles the
//! fragments into its own buffer, bounded by [`Limits::max_message`], and
//! returns control frames as they come, without disturbing the message in
//! progress.
//!
//! Text is checked as UTF-8 *as it arrives*, fragment by fragment and even
//! within a frame, so a bad byte is refused (1007) at once, not after the
//! rest of a long message has been received; a character split between two
//! fragments is fine.
//!
//! The decoder consumes partial frames too: payload bytes are unmasked into
//! its buffer as they arrive, so the connection never needs to hold a whole
//! frame and its input limit can stay small.
//!
//! # Closing
//!
//! Either side sends a close frame (optionally a 2-byte code and a UTF-8
//! reason), the other answers with a close frame, and the server then
//! closes the TCP connection. The codes the decoder reports ([`close_code`]):
//! 1002 for a protocol error, 1007 for invalid UTF-8, 1009 for a message over
//! the limit. A close frame that carries a code not allowed on the wire
//! (below 1000, 1004-1006, 1015, 1016-2999, 5000 and up) or a reason that is
//! not UTF-8 is itself a protocol error.
//!
//! # Example: a server's `on_data`
//!
//! ```
//! use reactor::codec::websocket::{Decoder, Limits, Message, Opcode, Role, write_close, write_frame};
//!
//! /// What an echo endpoint does with the bytes a connection received:
//! /// replies go to `out`; returns (bytes consumed, close the connection?).
//! fn on_data(decoder: &mut Decoder, data: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
//!     let mut used = 0;
//!     loop {
//!         match decoder.decode(&data[used..]) {
//!             Ok((n, message)) => {
//!                 used += n;
//!                 match message {
//!                     Some(Message::Text(text)) => write_frame(out, Opcode::Text, text.as_bytes(), None),
//!                     Some(Message::Binary(bytes)) => write_frame(out, Opcode::Binary, bytes, None),
//!                     Some(Message::Ping(payload)) => write_frame(out, Opcode::Pong, payload, None),
//!                     Some(Message::Pong(_)) => {}
//!                     Some(Message::Close(code, _)) => {
//!                         write_close(out, code.unwrap_or(1000), "", None);
//!                         return (data.len(), true);
//!                     }
//!                     None => return (used, false),
//!                 }
//!             }
//!             Err(error) => {
//!                 write_close(out, error.code, error.reason, None);
//!                 return (data.len(), true);
//!             }
//!         }
//!     }
//! }
//!
//! let mut decoder = Decoder::new(Role::Server, Limits::default());
//! // A masked text frame "Hi" as a client sends it (key 1, 2, 3, 4).
//! let mut frame = Vec::new();
//! write_frame(&mut frame, Opcode::Text, b"Hi", Some([1, 2, 3, 4]));
//! let mut out = Vec::new();
//! assert_eq!(on_data(&mut decoder, &frame, &mut out), (frame.len(), false));
//! assert_eq!(out, [0x81, 2, b'H', b'i']); // the echo, unmasked
//! ```
//!
//! The files: `frame.rs` ([`Decoder`]), `encode.rs` (writing frames),
//! `handshake.rs` (the HTTP upgrade, both sides), `sha1.rs` and `base64.rs`
//! (the two small algorithms the handshake needs).

mod base64;
mod encode;
mod frame;
mod handshake;
mod sha1;

use std::fmt;

pub use encode::{Opcode, insert_header, mask, new_mask, write_close, write_frame, write_header};
pub use frame::Decoder;
pub use handshake::{
    HandshakeError, Upgrade, accept_key, check_accept, check_upgrade, new_key, write_accept,
    write_refusal, write_request,
};

/// Close codes (RFC 6455 §7.4.1) that the codec and its users send.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::close_code;
///
/// assert_eq!(close_code::TOO_BIG, 1009);
/// assert!(close_code::is_valid(3000));
/// assert!(!close_code::is_valid(1005)); // "no code": never on the wire
/// ```
pub mod close_code {
    /// The purpose of the connection is fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (a server shutting down, a page left).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL: u16 = 1002;
    /// A kind of data the endpoint does not accept.
    pub const UNSUPPORTED: u16 = 1003;
    /// A text message (or close reason) that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message that breaks the endpoint's policy (a slow reader, say).
    pub const POLICY: u16 = 1008;
    /// A message larger than the endpoint accepts.
    pub const TOO_BIG: u16 = 1009;
    /// The server met an unexpected condition.
    pub const INTERNAL: u16 = 1011;

    /// Whether `code` may be sent in a close frame: 1000-1003, 1007-1014
    /// (defined by the RFC and IANA's registry), and 3000-4999 (for
    /// libraries and applications). 1005, 1006 and 1015 are reserved for
    /// reporting ("no code", "closed without a close frame", "TLS failed")
    /// and never sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::codec::websocket::close_code::is_valid;
    ///
    /// assert!(is_valid(1000) && is_valid(1011) && is_valid(4999));
    /// assert!(!is_valid(999) && !is_valid(1004) && !is_valid(1015) && !is_valid(2000) && !is_valid(5000));
    /// ```
    pub fn is_valid(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Which end of the connection a [`Decoder`] is: it decides which frames
/// must be masked.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::{Decoder, Limits, Role};
///
/// let server_side = Decoder::new(Role::Server, Limits::default());
/// let client_side = Decoder::new(Role::Client, Limits::default());
/// # let _ = (server_side, client_side);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A server: frames received must be masked; frames sent are not.
    Server,
    /// A client: frames received must not be masked; frames sent are
    /// (with a key from [`new_mask`]).
    Client,
}

/// The limits a [`Decoder`] works under.
///
/// | limit | default | over it |
/// |---|---|---|
/// | [`max_message`](Limits::max_message) | 1 MiB | close 1009 |
///
/// Control frames are bounded by the protocol itself (125 bytes).
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::Limits;
///
/// let limits = Limits { max_message: 64 * 1024, ..Limits::default() };
/// assert_eq!(Limits::default().max_message, 1 << 20);
/// # let _ = limits;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest message, in payload bytes, after its fragments are put
    /// together. A frame that announces more (alone, or with the fragments
    /// before it) is refused before its payload is read.
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message: 1 << 20,
        }
    }
}

/// A protocol violation found by the [`Decoder`]: the close code to send
/// and a reason for the log and the close frame.
///
/// After one, the connection cannot go on: send a close frame with
/// [`write_close`] and close once it is written.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::{Decoder, Limits, Role};
///
/// let mut decoder = Decoder::new(Role::Server, Limits::default());
/// // An unmasked text frame, as no client may send.
/// let error = decoder.decode(&[0x81, 0x02, b'h', b'i']).unwrap_err();
/// assert_eq!(error.code, 1002);
/// assert_eq!(error.to_string(), "close 1002: unmasked frame from a client");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    /// The close code to send ([`close_code`]).
    pub code: u16,
    /// Why, in a few words (at most 123 bytes, so it fits a close frame).
    pub reason: &'static str,
}

impl Error {
    pub(crate) const fn protocol(reason: &'static str) -> Error {
        Error {
            code: close_code::PROTOCOL,
            reason,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "close {}: {}", self.code, self.reason)
    }
}

impl std::error::Error for Error {}

/// One message (or control frame) from the [`Decoder`], borrowed from its
/// buffer until the next call.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::{Decoder, Limits, Message, Role, write_close};
///
/// let mut decoder = Decoder::new(Role::Server, Limits::default());
/// let mut frame = Vec::new();
/// write_close(&mut frame, 1001, "bye", Some([9, 8, 7, 6]));
/// let (used, message) = decoder.decode(&frame).unwrap();
/// assert_eq!(used, frame.len());
/// assert_eq!(message, Some(Message::Close(Some(1001), "bye")));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A whole text message, checked as UTF-8.
    Text(&'a str),
    /// A whole binary message.
    Binary(&'a [u8]),
    /// A ping and its payload (at most 125 bytes): answer with a pong that
    /// carries the same payload.
    Ping(&'a [u8]),
    /// A pong and its payload.
    Pong(&'a [u8]),
    /// A close frame: its code (`None` if it had no body) and reason.
    /// Answer with a close frame (the same code, or 1000), then close.
    Close(Option<u16>, &'a str),
}

#[cfg(test)]
mod tests;
