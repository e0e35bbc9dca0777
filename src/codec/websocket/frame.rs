//! [`Decoder`]: frames in, messages out, bounded, consuming partial frames.

use std::fmt;

mod head;

use super::encode::{Opcode, mask_from};
use super::{Error, Limits, Message, Role, close_code};

/// The most bytes of a control frame's payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

/// The longest header: 2 bytes, an 8-byte length, a 4-byte key.
const MAX_HEAD: usize = 14;

/// After a message larger than this, the buffer is given back rather than
/// kept for the next one: a connection that once received a large message
/// does not hold its memory for ever.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Cuts WebSocket frames into messages: one per connection, sans I/O, fed
/// whatever bytes have arrived (see [the module](super) for the framing).
///
/// [`decode`](Decoder::decode) returns how many bytes of the input it used
/// and at most one [`Message`]. It takes partial frames too: a header is
/// kept in the decoder (at most 14 bytes) and payload bytes are unmasked
/// into its own buffer as they come, so the caller never keeps more than
/// what arrived since the last call. Memory per connection is bounded by
/// [`Limits::max_message`] (the message being reassembled: its buffer
/// never grows past what the message's frames announced) plus 125 bytes
/// for a control frame.
///
/// After an [`Error`] the decoder stays failed (every later call returns
/// the same error); after a close frame it ignores everything that follows,
/// as RFC 6455 §5.5.1 says.
///
/// # Examples
///
/// A message in two fragments with a ping between them, fed one byte at a
/// time:
///
/// ```
/// use reactor::codec::websocket::{Decoder, Limits, Role};
///
/// let key = [0u8; 4]; // a zero key: masked bytes equal plain ones
/// let mut bytes = vec![0x01, 0x83]; // text, not final, masked, 3 bytes
/// bytes.extend_from_slice(&key);
/// bytes.extend_from_slice(b"Hel");
/// bytes.extend_from_slice(&[0x89, 0x81, 0, 0, 0, 0, b'?']); // ping "?"
/// bytes.extend_from_slice(&[0x80, 0x82, 0, 0, 0, 0, b'l', b'o']); // final continuation
///
/// let mut decoder = Decoder::new(Role::Server, Limits::default());
/// let mut seen = Vec::new();
/// for byte in &bytes {
///     let (used, message) = decoder.decode(std::slice::from_ref(byte)).unwrap();
///     assert_eq!(used, 1);
///     if let Some(message) = message {
///         seen.push(format!("{message:?}"));
///     }
/// }
/// assert_eq!(seen, ["Ping([63])", "Text(\"Hello\")"]);
/// ```
pub struct Decoder {
    role: Role,
    limits: Limits,
    /// The header of the next frame, as far as it has arrived.
    head: [u8; MAX_HEAD],
    head_len: usize,
    /// The frame whose header is read and whose payload is arriving.
    frame: Option<Frame>,
    /// The data message in progress (`Some` from its first frame until its
    /// final one), and the payload bytes its frames announced so far.
    kind: Option<DataKind>,
    announced: u64,
    /// The message's payload so far, unmasked.
    message: Vec<u8>,
    /// How much of `message` is known to be valid UTF-8 (a text message's
    /// last character may still be incomplete).
    utf8_checked: usize,
    /// The control frame's payload, unmasked.
    control: [u8; MAX_CONTROL],
    control_len: usize,
    /// The last call lent out `message`: empty it before going on.
    delivered: bool,
    state: State,
}

#[derive(Clone, Copy)]
enum State {
    Open,
    /// A close frame was received: nothing after it counts.
    Closed,
    Failed(Error),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Text,
    Binary,
}

/// A frame whose header has been read.
#[derive(Clone, Copy)]
struct Frame {
    fin: bool,
    opcode: Opcode,
    key: Option<[u8; 4]>,
    len: u64,
    /// Payload bytes received so far.
    done: u64,
}

/// What a finished frame completed.
enum Done {
    Data(DataKind),
    Ping,
    Pong,
    Close,
}

const RESERVED_BITS: Error = Error::protocol("reserved bits set without an extension");
const UNKNOWN_OPCODE: Error = Error::protocol("unknown opcode");
const UNMASKED: Error = Error::protocol("unmasked frame from a client");
const MASKED: Error = Error::protocol("masked frame from a server");
const FRAGMENTED_CONTROL: Error = Error::protocol("fragmented control frame");
const LONG_CONTROL: Error = Error::protocol("control frame longer than 125 bytes");
const STRAY_CONTINUATION: Error = Error::protocol("continuation frame without a message");
const UNFINISHED_MESSAGE: Error = Error::protocol("new message before the last one finished");
const HUGE_LENGTH: Error = Error::protocol("frame length with the top bit set");
const SHORT_CLOSE: Error = Error::protocol("close frame with a 1-byte body");
const BAD_CLOSE_CODE: Error = Error::protocol("close code not allowed on the wire");
const TOO_BIG: Error = Error {
    code: close_code::TOO_BIG,
    reason: "message too big",
};
const BAD_UTF8: Error = Error {
    code: close_code::INVALID_DATA,
    reason: "text is not valid UTF-8",
};

impl Decoder {
    /// A decoder for the `role` this end plays, under `limits`.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::codec::websocket::{Decoder, Limits, Role};
    ///
    /// let decoder = Decoder::new(Role::Server, Limits { max_message: 64 * 1024 });
    /// # let _ = decoder;
    /// ```
    pub fn new(role: Role, limits: Limits) -> Decoder {
        Decoder {
            role,
            limits,
            head: [0; MAX_HEAD],
            head_len: 0,
            frame: None,
            kind: None,
            announced: 0,
            message: Vec::new(),
            utf8_checked: 0,
            control: [0; MAX_CONTROL],
            control_len: 0,
            delivered: false,
            state: State::Open,
        }
    }

    /// Whether the decoder holds nothing unfinished: no partial header,
    /// frame or fragmented message. A server uses it as it uses an
    /// unfinished line: input stuck mid-frame must finish within a
    /// deadline, or a client could trickle one frame for ever.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::codec::websocket::{Decoder, Limits, Role};
    ///
    /// let mut decoder = Decoder::new(Role::Server, Limits::default());
    /// assert!(decoder.is_idle());
    /// // The first two bytes of a masked 5-byte text frame.
    /// let (used, message) = decoder.decode(&[0x81, 0x85]).unwrap();
    /// assert_eq!((used, message), (2, None));
    /// assert!(!decoder.is_idle());
    /// ```
    pub fn is_idle(&self) -> bool {
        self.head_len == 0 && self.frame.is_none() && self.kind.is_none()
    }

    /// Decodes from `input`, what the connection has buffered. Returns how
    /// many bytes it consumed and at most one message, borrowed from the
    /// decoder until the next call.
    ///
    /// Without a message it has consumed all of `input` (partial frames
    /// are kept inside); with one, it stops after the frame that completed
    /// it: call again with the rest (`&input[used..]`) until it returns
    /// `None`. Either way, return the total consumed to the connection.
    ///
    /// # Errors
    ///
    /// An [`Error`] carrying the close code to send: 1002 for a protocol
    /// violation (reserved bits, an unknown opcode, an unmasked client
    /// frame or a masked server frame, a fragmented or over-long control
    /// frame, a continuation without a message, a new message before the
    /// last finished, a bad close code), 1007 for text or a close reason
    /// that is not UTF-8 (found as soon as the bad byte arrives), 1009 for
    /// a frame that would take the message past [`Limits::max_message`]
    /// (found from its header, before any of its payload is read).
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::codec::websocket::{Decoder, Limits, Message, Opcode, Role, write_frame};
    ///
    /// let mut decoder = Decoder::new(Role::Client, Limits::default());
    /// let mut input = Vec::new();
    /// write_frame(&mut input, Opcode::Text, b"one", None);
    /// write_frame(&mut input, Opcode::Binary, b"two", None);
    /// input.extend_from_slice(&[0x81, 0x05, b'h']); // the start of a third
    ///
    /// let (used, message) = decoder.decode(&input).unwrap();
    /// assert_eq!(message, Some(Message::Text("one")));
    /// let (more, message) = decoder.decode(&input[used..]).unwrap();
    /// assert_eq!(message, Some(Message::Binary(b"two")));
    /// let (rest, message) = decoder.decode(&input[used + more..]).unwrap();
    /// assert_eq!((rest, message), (3, None)); // taken in, waiting for 4 more bytes
    ///
    /// // A 100 MiB frame is refused from its 10-byte header.
    /// let mut decoder = Decoder::new(Role::Client, Limits::default());
    /// let mut header = vec![0x82, 127];
    /// header.extend_from_slice(&(100u64 << 20).to_be_bytes());
    /// assert_eq!(decoder.decode(&header).unwrap_err().code, 1009);
    /// ```
    pub fn decode<'d>(&'d mut self, input: &[u8]) -> Result<(usize, Option<Message<'d>>), Error> {
        match self.state {
            State::Open => {}
            State::Closed => return Ok((input.len(), None)),
            State::Failed(error) => return Err(error),
        }
        if self.delivered {
            self.delivered = false;
            self.message.clear();
            self.utf8_checked = 0;
            if self.message.capacity() > KEEP_CAPACITY {
                self.message = Vec::new();
            }
        }
        let (used, done) = match self.frames(input) {
            Ok(progress) => progress,
            Err(error) => {
                self.state = State::Failed(error);
                return Err(error);
            }
        };
        // The message borrows one field while a failure sets another, so
        // the fields are named one by one.
        let message = match done {
            None => return Ok((used, None)),
            Some(Done::Data(DataKind::Binary)) => Ok(Message::Binary(&self.message[..])),
            Some(Done::Data(DataKind::Text)) => text(&self.message),
            Some(Done::Ping) => Ok(Message::Ping(&self.control[..self.control_len])),
            Some(Done::Pong) => Ok(Message::Pong(&self.control[..self.control_len])),
            Some(Done::Close) => close(&self.control[..self.control_len]),
        };
        self.delivered = matches!(done, Some(Done::Data(_)));
        match message {
            Ok(message) => Ok((used, Some(message))),
            Err(error) => {
                self.state = State::Failed(error);
                Err(error)
            }
        }
    }

    /// What the message buffer holds allocated (for the tests of its
    /// bounds).
    #[cfg(test)]
    pub(super) fn buffer_capacity(&self) -> usize {
        self.message.capacity()
    }

    /// Reads frames from `input` until one completes a message (or is a
    /// control frame), or the input runs out.
    fn frames(&mut self, input: &[u8]) -> Result<(usize, Option<Done>), Error> {
        let mut used = 0;
        loop {
            if self.frame.is_none() {
                used += self.read_head(&input[used..])?;
            }
            let Some(frame) = self.frame else {
                return Ok((used, None)); // the input ended inside a header
            };
            used += self.read_payload(frame, &input[used..])?;
            let Some(frame) = self.frame.filter(|f| f.done == f.len) else {
                return Ok((used, None)); // the input ended inside a payload
            };
            self.frame = None;
            if let Some(done) = self.finish(frame) {
                return Ok((used, Some(done)));
            }
        }
    }

    /// Takes payload bytes of `frame` from `input`, unmasked into the
    /// control buffer or the message; text is checked as it arrives.
    fn read_payload(&mut self, frame: Frame, input: &[u8]) -> Result<usize, Error> {
        let n = (frame.len - frame.done).min(input.len() as u64) as usize;
        // Only the offset modulo 4 matters to the mask.
        let offset = (frame.done % 4) as usize;
        let at = frame.done as usize;
        if frame.opcode.is_control() {
            let dest = &mut self.control[at..at + n];
            dest.copy_from_slice(&input[..n]);
            if let Some(key) = frame.key {
                mask_from(dest, key, offset);
            }
        } else {
            let start = self.message.len();
            self.grow_for(n);
            self.message.extend_from_slice(&input[..n]);
            if let Some(key) = frame.key {
                mask_from(&mut self.message[start..], key, offset);
            }
        }
        let done = frame.done + n as u64;
        self.frame = Some(Frame { done, ..frame });
        let ends_message = frame.fin && done == frame.len;
        if !frame.opcode.is_control() && self.kind == Some(DataKind::Text) && !ends_message && n > 0
        {
            // The message's end is checked whole by `text`; until then,
            // fail at the first byte that can never be valid.
            self.check_utf8_so_far()?;
        }
        Ok(n)
    }

    /// Makes room for `n` more payload bytes: doubling, as a `Vec` does,
    /// but never past what the message's frames announced (at most
    /// [`Limits::max_message`]), so the buffer's capacity, not only its
    /// length, stays within the limit.
    fn grow_for(&mut self, n: usize) {
        let needed = self.message.len() + n;
        if needed > self.message.capacity() {
            let target = (self.message.capacity() * 2)
                .max(needed)
                .min(self.announced as usize);
            self.message.reserve_exact(target - self.message.len());
        }
    }

    /// Checks the text received since the last check. An incomplete
    /// character at the end is fine (the rest may be in the next piece);
    /// a byte that cannot start or continue one is not.
    fn check_utf8_so_far(&mut self) -> Result<(), Error> {
        match std::str::from_utf8(&self.message[self.utf8_checked..]) {
            Ok(_) => self.utf8_checked = self.message.len(),
            Err(e) if e.error_len().is_none() => self.utf8_checked += e.valid_up_to(),
            Err(_) => return Err(BAD_UTF8),
        }
        Ok(())
    }

    /// A frame's payload is whole: what it completes, if anything.
    fn finish(&mut self, frame: Frame) -> Option<Done> {
        match frame.opcode {
            Opcode::Ping => Some(Done::Ping),
            Opcode::Pong => Some(Done::Pong),
            Opcode::Close => {
                self.state = State::Closed;
                Some(Done::Close)
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation if frame.fin => {
                self.announced = 0;
                self.kind.take().map(Done::Data)
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => None,
        }
    }
}

/// A whole text message, checked.
fn text(bytes: &[u8]) -> Result<Message<'_>, Error> {
    std::str::from_utf8(bytes)
        .map(Message::Text)
        .map_err(|_| BAD_UTF8)
}

/// A close frame's body: nothing, or a code allowed on the wire and a
/// UTF-8 reason.
fn close(body: &[u8]) -> Result<Message<'_>, Error> {
    match body {
        [] => Ok(Message::Close(None, "")),
        [_] => Err(SHORT_CLOSE),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code::is_valid(code) {
                return Err(BAD_CLOSE_CODE);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| BAD_UTF8)?;
            Ok(Message::Close(Some(code), reason))
        }
    }
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Open => "open".to_string(),
            State::Closed => "closed".to_string(),
            State::Failed(error) => error.to_string(),
        };
        f.debug_struct("Decoder")
            .field("role", &self.role)
            .field("limits", &self.limits)
            .field("state", &state)
            .field("message_len", &self.message.len())
            .field("in_frame", &self.frame.is_some())
            .finish()
    }
}
