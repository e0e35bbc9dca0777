//! RESP, the Redis serialization protocol (RESP2 and RESP3): decoding and
//! encoding, for servers and for clients, without I/O of its own.
//!
//! - [`RequestDecoder`] cuts commands out of what a client sent: arrays of
//!   bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\na\r\n`) and inline commands
//!   (`GET a\r\n`, for `telnet` and `nc`). It is incremental: a command that
//!   has not fully arrived is remembered where it stopped, so a large
//!   request arriving in many reads is scanned once, not again per read.
//!   Arguments are slices of the input: nothing is copied.
//! - [`ValueDecoder`] reads any RESP2 or RESP3 value into a [`Value`]: what
//!   a client reads as replies.
//! - [`encode`] writes replies and commands; the replies whose form differs
//!   between RESP2 and RESP3 (null, map, set, double, boolean) take the
//!   connection's [`Protocol`].
//!
//! # Limits
//!
//! Every length a peer announces is checked against [`Limits`] before
//! anything is done with it, and nothing is ever reserved for what a header
//! announces: `*99999999` or `$4294967296` past the limits is an error at
//! once ([`ProtocolError`], whose text is the one `redis-server` sends);
//! under them, the decoder simply waits for the data, which arrives (and
//! is held by the caller) only as fast as the peer really sends it.
//!
//! # Examples
//!
//! A server's side: decode two pipelined commands, answer both.
//!
//! ```
//! use reactor::resp::{encode, Limits, Protocol, RequestDecoder};
//!
//! let input = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\nGET a\r\n";
//! let mut decoder = RequestDecoder::new(Limits::default());
//! let mut pos = 0;
//! let mut replies = Vec::new();
//! while let Some(len) = decoder.decode(&input[pos..]).unwrap() {
//!     let args: Vec<&[u8]> = decoder.args(&input[pos..]).collect();
//!     match args[0] {
//!         b"SET" => encode::simple(&mut replies, "OK"),
//!         _ => encode::bulk(&mut replies, b"1"),
//!     }
//!     pos += len;
//! }
//! assert_eq!(pos, input.len());
//! assert_eq!(replies, b"+OK\r\n$1\r\n1\r\n");
//! # let _ = Protocol::Resp2;
//! ```
//!
//! A client's side: encode a command, decode the reply.
//!
//! ```
//! use reactor::resp::{encode, Limits, Value, ValueDecoder};
//!
//! let mut request = Vec::new();
//! encode::command(&mut request, &["HGETALL", "h"]);
//! assert_eq!(request, b"*2\r\n$7\r\nHGETALL\r\n$1\r\nh\r\n");
//!
//! let decoder = ValueDecoder::new(Limits::default());
//! let reply = b"%1\r\n+f\r\n:1\r\n";
//! let (value, used) = decoder.decode(reply).unwrap().unwrap();
//! assert_eq!(used, reply.len());
//! assert_eq!(value, Value::Map(vec![(Value::Simple("f".into()), Value::Integer(1))]));
//! ```

use std::fmt;
use std::ops::Range;

/// The protocol version a connection speaks: RESP2 by default, RESP3 after
/// `HELLO 3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2: nulls are `$-1`, maps and sets are flat arrays.
    #[default]
    Resp2,
    /// RESP3: typed nulls, maps, sets, doubles and booleans.
    Resp3,
}

/// The limits a decoder holds a peer to. The defaults are Redis's where it
/// has one (`proto-max-bulk-len` 512 MiB, inline requests of 64 KiB).
///
/// ```
/// use reactor::resp::Limits;
/// let limits = Limits { max_bulk: 1 << 20, ..Limits::default() };
/// assert_eq!(limits.max_array, 1 << 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string, in bytes.
    pub max_bulk: usize,
    /// Most elements in one array (and pairs in one map).
    pub max_array: usize,
    /// Longest inline command or header line, in bytes.
    pub max_inline: usize,
    /// Deepest nesting of aggregates, for values ([`ValueDecoder`]).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk: 512 * 1024 * 1024,
            max_array: 1024 * 1024,
            max_inline: 64 * 1024,
            max_depth: 32,
        }
    }
}

/// Why a peer's bytes are not RESP within the [`Limits`]. The `Display`
/// text is `redis-server`'s, without its `ERR ` prefix. After one, the
/// stream cannot be resynchronised: answer the error and close, as Redis
/// does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// An array header that is not a number, or announces more than
    /// [`Limits::max_array`] elements.
    InvalidMultibulkLength,
    /// A bulk header that is not a number, or announces more than
    /// [`Limits::max_bulk`] bytes.
    InvalidBulkLength,
    /// A command's array holds something other than a bulk string.
    ExpectedBulk(u8),
    /// A line (inline command or header) longer than
    /// [`Limits::max_inline`] with no end in sight.
    TooBigInline,
    /// A quote opened in an inline command and not closed.
    UnbalancedQuotes,
    /// A value nested deeper than [`Limits::max_depth`].
    TooDeep,
    /// A type byte RESP does not have.
    UnknownType(u8),
    /// A header or scalar that does not parse (a bad integer, a bulk not
    /// followed by `\r\n`).
    Malformed(&'static str),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::InvalidMultibulkLength => {
                f.write_str("Protocol error: invalid multibulk length")
            }
            ProtocolError::InvalidBulkLength => f.write_str("Protocol error: invalid bulk length"),
            ProtocolError::ExpectedBulk(got) => write!(
                f,
                "Protocol error: expected '$', got '{}'",
                char::from(*got).escape_default()
            ),
            ProtocolError::TooBigInline => f.write_str("Protocol error: too big inline request"),
            ProtocolError::UnbalancedQuotes => {
                f.write_str("Protocol error: unbalanced quotes in request")
            }
            ProtocolError::TooDeep => f.write_str("Protocol error: nesting too deep"),
            ProtocolError::UnknownType(b) => write!(
                f,
                "Protocol error: unknown type '{}'",
                char::from(*b).escape_default()
            ),
            ProtocolError::Malformed(what) => write!(f, "Protocol error: {what}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Finds `\r\n` in `buf` from `from`, returning the line's end (the index
/// of `\r`). `None` if the line has not ended; an error if it is already
/// longer than `max` without ending.
fn line_end(buf: &[u8], from: usize, max: usize) -> Result<Option<usize>, ProtocolError> {
    let window = &buf[from..buf.len().min(from.saturating_add(max + 2))];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(from + i)),
        None if window.len() >= max + 2 => Err(ProtocolError::TooBigInline),
        None => Ok(None),
    }
}

/// Parses a decimal `i64` (optional `-`), strictly: no spaces, no `+`.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some(value)
}

/// Where a [`RequestDecoder`] stopped inside a command that has not fully
/// arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    /// At the start of a command.
    Start,
    /// Inside an array of `left` more bulk strings, the next at `cursor`.
    Array { left: usize, cursor: usize },
}

/// Cuts client commands out of a byte stream: RESP arrays of bulk strings,
/// and inline commands.
///
/// Call [`decode`](RequestDecoder::decode) with the bytes from the start of
/// the next command. It returns `Some(len)` when a whole command of `len`
/// bytes is there (read its arguments with
/// [`args`](RequestDecoder::args) on the same bytes), or `None` when more
/// must arrive: then call it again later with the same start and more bytes
/// after it. It remembers how far it got, so the bytes already scanned are
/// not scanned again (a 512 MiB value arriving 64 KiB at a time is not
/// rescanned 8,000 times).
///
/// Inline commands are split on spaces and tabs; a double- or single-quoted
/// argument may hold spaces (its text is taken as it is, without escapes).
/// Empty lines are skipped, as Redis does.
///
/// # Examples
///
/// ```
/// use reactor::resp::{Limits, RequestDecoder};
///
/// let mut decoder = RequestDecoder::new(Limits::default());
/// let whole = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
/// assert_eq!(decoder.decode(&whole[..20]).unwrap(), None); // not all there yet
/// assert_eq!(decoder.decode(whole).unwrap(), Some(whole.len()));
/// let args: Vec<&[u8]> = decoder.args(whole).collect();
/// assert_eq!(args, [&b"ECHO"[..], b"hello"]);
/// ```
#[derive(Clone, Debug)]
pub struct RequestDecoder {
    limits: Limits,
    progress: Progress,
    /// The arguments found so far, as ranges from the command's start.
    args: Vec<Range<usize>>,
}

impl RequestDecoder {
    /// A decoder that holds its peer to `limits`.
    pub fn new(limits: Limits) -> RequestDecoder {
        RequestDecoder {
            limits,
            progress: Progress::Start,
            args: Vec::new(),
        }
    }

    /// The limits it holds its peer to.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Holds its peer to `limits` from the next command's header on: a
    /// server keeps a client that has not authenticated to small commands
    /// (Redis: 10 arguments of 16 KiB), and lifts that once it has.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::resp::{Limits, RequestDecoder};
    ///
    /// let mut decoder = RequestDecoder::new(Limits { max_bulk: 16, ..Limits::default() });
    /// assert!(decoder.decode(b"*1\r\n$100\r\n").is_err());
    /// let mut decoder = RequestDecoder::new(Limits { max_bulk: 16, ..Limits::default() });
    /// decoder.set_limits(Limits::default());
    /// assert!(decoder.decode(b"*1\r\n$100\r\n").is_ok());
    /// ```
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// True while a command has begun and not finished (the caller's
    /// unconsumed input is a partial command).
    pub fn in_command(&self) -> bool {
        self.progress != Progress::Start
    }

    /// Forgets a command in progress (after an error, or when the caller
    /// drops its input).
    pub fn reset(&mut self) {
        self.progress = Progress::Start;
        self.args.clear();
    }

    /// Decodes the command at the start of `buf`; see the
    /// [type's documentation](RequestDecoder) for the contract.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] for a header past the [`Limits`] or bytes that
    /// are not RESP; the decoder is then reset, and the connection should be
    /// answered with the error and closed.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let result = self.decode_inner(buf);
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn decode_inner(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let (mut left, mut cursor) = match self.progress {
            Progress::Array { left, cursor } => (left, cursor),
            Progress::Start => {
                self.args.clear();
                let Some(&first) = buf.first() else {
                    return Ok(None);
                };
                if first != b'*' {
                    return self.decode_inline(buf);
                }
                let Some(end) = line_end(buf, 1, self.limits.max_inline)? else {
                    return Ok(None);
                };
                let count = parse_i64(&buf[1..end]).ok_or(ProtocolError::InvalidMultibulkLength)?;
                if count > self.limits.max_array as i64 {
                    return Err(ProtocolError::InvalidMultibulkLength);
                }
                if count <= 0 {
                    // `*0` and `*-1` are empty commands: skipped, as Redis does.
                    return Ok(Some(end + 2));
                }
                (count as usize, end + 2)
            }
        };
        while left > 0 {
            let Some(&kind) = buf.get(cursor) else {
                self.progress = Progress::Array { left, cursor };
                return Ok(None);
            };
            if kind != b'$' {
                return Err(ProtocolError::ExpectedBulk(kind));
            }
            let Some(end) = line_end(buf, cursor + 1, self.limits.max_inline)? else {
                self.progress = Progress::Array { left, cursor };
                return Ok(None);
            };
            let len = parse_i64(&buf[cursor + 1..end]).ok_or(ProtocolError::InvalidBulkLength)?;
            if len < 0 || len as u64 > self.limits.max_bulk as u64 {
                return Err(ProtocolError::InvalidBulkLength);
            }
            let start = end + 2;
            let stop = start + len as usize;
            if buf.len() < stop + 2 {
                self.progress = Progress::Array { left, cursor };
                return Ok(None);
            }
            if &buf[stop..stop + 2] != b"\r\n" {
                return Err(ProtocolError::Malformed("bulk string not ended by CRLF"));
            }
            self.args.push(start..stop);
            cursor = stop + 2;
            left -= 1;
        }
        self.progress = Progress::Start;
        Ok(Some(cursor))
    }

    fn decode_inline(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        // An inline command ends at `\n` (a `\r` before it is dropped), as
        // Redis reads what `telnet` and `nc` send.
        let max = self.limits.max_inline;
        let window = &buf[..buf.len().min(max + 1)];
        let Some(nl) = window.iter().position(|&b| b == b'\n') else {
            if window.len() > max {
                return Err(ProtocolError::TooBigInline);
            }
            return Ok(None);
        };
        let line_stop = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let mut i = 0;
        while i < line_stop {
            match buf[i] {
                b' ' | b'\t' => i += 1,
                quote @ (b'"' | b'\'') => {
                    let close = buf[i + 1..line_stop]
                        .iter()
                        .position(|&b| b == quote)
                        .ok_or(ProtocolError::UnbalancedQuotes)?;
                    self.args.push(i + 1..i + 1 + close);
                    i += close + 2;
                }
                _ => {
                    let start = i;
                    while i < line_stop && !matches!(buf[i], b' ' | b'\t') {
                        i += 1;
                    }
                    self.args.push(start..i);
                }
            }
        }
        Ok(Some(nl + 1))
    }

    /// How many arguments the command just decoded has (0 for an empty
    /// line or `*0`, which a server skips).
    pub fn arg_count(&self) -> usize {
        self.args.len()
    }

    /// The arguments of the command [`decode`](RequestDecoder::decode) just
    /// returned, as slices of `buf` (the same bytes it was given).
    pub fn args<'s, 'b>(
        &'s self,
        buf: &'b [u8],
    ) -> impl ExactSizeIterator<Item = &'b [u8]> + use<'s, 'b> {
        self.args.iter().map(move |r| &buf[r.clone()])
    }
}

/// A RESP2 or RESP3 value, as a client reads a reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: the whole text, code included.
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc` (and RESP3's `=` verbatim strings, without their format).
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` and RESP3's `_`.
    Null,
    /// `*N`
    Array(Vec<Value>),
    /// RESP3 `%N`: pairs.
    Map(Vec<(Value, Value)>),
    /// RESP3 `~N`
    Set(Vec<Value>),
    /// RESP3 `,3.14`
    Double(f64),
    /// RESP3 `#t` / `#f`
    Boolean(bool),
    /// RESP3 `(` big number, as its digits.
    BigNumber(String),
    /// RESP3 `>N`: an out-of-band push (pub/sub messages).
    Push(Vec<Value>),
}

impl Value {
    /// The bytes of a bulk string or the text of a simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) => Some(b),
            Value::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// Writes this value as `proto` spells it (a RESP3 type written for
    /// RESP2 takes its RESP2 form: a map becomes a flat array).
    pub fn encode(&self, out: &mut Vec<u8>, proto: Protocol) {
        match self {
            Value::Simple(s) => encode::simple(out, s),
            Value::Error(e) => encode::error(out, e),
            Value::Integer(i) => encode::integer(out, *i),
            Value::Bulk(b) => encode::bulk(out, b),
            Value::Null => encode::null(out, proto),
            Value::Array(items) => {
                encode::array_header(out, items.len());
                items.iter().for_each(|v| v.encode(out, proto));
            }
            Value::Push(items) => {
                encode::header(
                    out,
                    if proto == Protocol::Resp3 { b'>' } else { b'*' },
                    items.len(),
                );
                items.iter().for_each(|v| v.encode(out, proto));
            }
            Value::Set(items) => {
                encode::set_header(out, items.len(), proto);
                items.iter().for_each(|v| v.encode(out, proto));
            }
            Value::Map(pairs) => {
                encode::map_header(out, pairs.len(), proto);
                for (k, v) in pairs {
                    k.encode(out, proto);
                    v.encode(out, proto);
                }
            }
            Value::Double(d) => encode::double(out, *d, proto),
            Value::Boolean(b) => encode::boolean(out, *b, proto),
            Value::BigNumber(n) => match proto {
                Protocol::Resp3 => {
                    out.push(b'(');
                    out.extend_from_slice(n.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                Protocol::Resp2 => encode::bulk(out, n.as_bytes()),
            },
        }
    }
}

/// Reads one RESP2 or RESP3 value from the start of a buffer: what a
/// client does with replies.
///
/// Unlike [`RequestDecoder`] it keeps no progress: a reply that has not
/// fully arrived is scanned again from its start on the next call, which is
/// cheap for replies of a few kilobytes and linear in the headers for large
/// ones (a bulk string's body is skipped by its length, not scanned).
///
/// RESP3 attributes (`|`) are read and dropped: the value they annotate is
/// returned. Verbatim strings (`=`) come back as [`Value::Bulk`] without
/// their three-letter format.
///
/// # Examples
///
/// ```
/// use reactor::resp::{Limits, Value, ValueDecoder};
///
/// let decoder = ValueDecoder::new(Limits::default());
/// assert_eq!(decoder.decode(b"*2\r\n:1\r\n$-1\r\n").unwrap(),
///            Some((Value::Array(vec![Value::Integer(1), Value::Null]), 13)));
/// assert_eq!(decoder.decode(b"$5\r\nhel").unwrap(), None); // wait for more
/// assert!(decoder.decode(b"$99999999999\r\n").is_err()); // over the limit
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ValueDecoder {
    limits: Limits,
}

impl ValueDecoder {
    /// A decoder that holds its peer to `limits`.
    pub fn new(limits: Limits) -> ValueDecoder {
        ValueDecoder { limits }
    }

    /// The value at the start of `buf` and its length in bytes, or `None`
    /// if it has not fully arrived.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] for bytes that are not RESP or a header past the
    /// [`Limits`].
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
        self.value(buf, 0, 0)
    }

    fn value(
        &self,
        buf: &[u8],
        at: usize,
        depth: usize,
    ) -> Result<Option<(Value, usize)>, ProtocolError> {
        if depth > self.limits.max_depth {
            return Err(ProtocolError::TooDeep);
        }
        let Some(&kind) = buf.get(at) else {
            return Ok(None);
        };
        let Some(end) = line_end(buf, at + 1, self.limits.max_inline)? else {
            return Ok(None);
        };
        let line = &buf[at + 1..end];
        let next = end + 2;
        let text = || String::from_utf8_lossy(line).into_owned();
        let number = || parse_i64(line).ok_or(ProtocolError::Malformed("invalid integer"));
        let value = match kind {
            b'+' => Value::Simple(text()),
            b'-' => Value::Error(text()),
            b':' => Value::Integer(number()?),
            b'_' => Value::Null,
            b'#' => match line {
                b"t" => Value::Boolean(true),
                b"f" => Value::Boolean(false),
                _ => return Err(ProtocolError::Malformed("invalid boolean")),
            },
            b',' => Value::Double(parse_double(line)?),
            b'(' => Value::BigNumber(text()),
            b'$' | b'=' | b'!' => {
                let len = parse_i64(line).ok_or(ProtocolError::InvalidBulkLength)?;
                if len < 0 {
                    return Ok(Some((Value::Null, next)));
                }
                if len as u64 > self.limits.max_bulk as u64 {
                    return Err(ProtocolError::InvalidBulkLength);
                }
                let stop = next + len as usize;
                if buf.len() < stop + 2 {
                    return Ok(None);
                }
                if &buf[stop..stop + 2] != b"\r\n" {
                    return Err(ProtocolError::Malformed("bulk string not ended by CRLF"));
                }
                let mut body = &buf[next..stop];
                if kind == b'=' && body.len() >= 4 && body[3] == b':' {
                    body = &body[4..];
                }
                let v = if kind == b'!' {
                    Value::Error(String::from_utf8_lossy(body).into_owned())
                } else {
                    Value::Bulk(body.to_vec())
                };
                return Ok(Some((v, stop + 2)));
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let count = parse_i64(line).ok_or(ProtocolError::InvalidMultibulkLength)?;
                if count < 0 {
                    return Ok(Some((Value::Null, next)));
                }
                if count as u64 > self.limits.max_array as u64 {
                    return Err(ProtocolError::InvalidMultibulkLength);
                }
                let pairs = matches!(kind, b'%' | b'|');
                let elements = count as usize * if pairs { 2 } else { 1 };
                // Never more than the bytes present could hold (each element
                // takes at least 3 bytes): a header's count is not trusted.
                let mut items = Vec::with_capacity(elements.min((buf.len() - next) / 3));
                let mut pos = next;
                for _ in 0..elements {
                    let Some((item, after)) = self.value(buf, pos, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    pos = after;
                }
                let value = match kind {
                    b'*' => Value::Array(items),
                    b'~' => Value::Set(items),
                    b'>' => Value::Push(items),
                    _ => {
                        let mut map = Vec::with_capacity(items.len() / 2);
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            map.push((k, v));
                        }
                        if kind == b'|' {
                            // An attribute: the annotated value follows.
                            return self.value(buf, pos, depth);
                        }
                        Value::Map(map)
                    }
                };
                return Ok(Some((value, pos)));
            }
            other => return Err(ProtocolError::UnknownType(other)),
        };
        Ok(Some((value, next)))
    }
}

fn parse_double(line: &[u8]) -> Result<f64, ProtocolError> {
    let text = std::str::from_utf8(line).map_err(|_| ProtocolError::Malformed("invalid double"))?;
    match text {
        "inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" => Ok(f64::NAN),
        _ => text
            .parse()
            .map_err(|_| ProtocolError::Malformed("invalid double")),
    }
}

/// Writing RESP: each function appends one value (or an aggregate's
/// header, to be followed by its elements) to a `Vec<u8>`, so that a whole
/// pipeline's replies build up in one buffer and go out in one write.
///
/// ```
/// use reactor::resp::{encode, Protocol};
///
/// let mut out = Vec::new();
/// encode::map_header(&mut out, 1, Protocol::Resp2); // a flat array in RESP2
/// encode::bulk(&mut out, b"field");
/// encode::integer(&mut out, 7);
/// encode::null(&mut out, Protocol::Resp3);
/// assert_eq!(out, b"*2\r\n$5\r\nfield\r\n:7\r\n_\r\n");
/// ```
pub mod encode {
    use super::Protocol;

    /// Appends the decimal digits of `n`, without going through `fmt`.
    pub fn digits(out: &mut Vec<u8>, n: i64) {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            out.push(b'-');
        }
        out.extend_from_slice(&buf[i..]);
    }

    /// An aggregate or length header: `kind`, the count, `\r\n`.
    pub fn header(out: &mut Vec<u8>, kind: u8, count: usize) {
        out.push(kind);
        digits(out, count as i64);
        out.extend_from_slice(b"\r\n");
    }

    /// `+text`: a simple string (must not hold `\r` or `\n`).
    pub fn simple(out: &mut Vec<u8>, text: &str) {
        out.push(b'+');
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// `-text`: an error, its code first (`ERR ...`, `WRONGTYPE ...`).
    pub fn error(out: &mut Vec<u8>, text: &str) {
        out.push(b'-');
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// `:n`
    pub fn integer(out: &mut Vec<u8>, n: i64) {
        out.push(b':');
        digits(out, n);
        out.extend_from_slice(b"\r\n");
    }

    /// `$len\r\nbytes\r\n`
    pub fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
        header(out, b'$', bytes.len());
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    }

    /// A null: `$-1` in RESP2, `_` in RESP3.
    pub fn null(out: &mut Vec<u8>, proto: Protocol) {
        out.extend_from_slice(match proto {
            Protocol::Resp2 => b"$-1\r\n",
            Protocol::Resp3 => b"_\r\n",
        });
    }

    /// A null array (`*-1` in RESP2, `_` in RESP3): an aborted `EXEC`.
    pub fn null_array(out: &mut Vec<u8>, proto: Protocol) {
        out.extend_from_slice(match proto {
            Protocol::Resp2 => b"*-1\r\n",
            Protocol::Resp3 => b"_\r\n",
        });
    }

    /// `*count`: an array of `count` values to follow.
    pub fn array_header(out: &mut Vec<u8>, count: usize) {
        header(out, b'*', count);
    }

    /// A map of `pairs` key-value pairs to follow: `%` in RESP3, a flat
    /// array of twice as many in RESP2.
    pub fn map_header(out: &mut Vec<u8>, pairs: usize, proto: Protocol) {
        match proto {
            Protocol::Resp2 => header(out, b'*', pairs * 2),
            Protocol::Resp3 => header(out, b'%', pairs),
        }
    }

    /// A set of `count` values to follow: `~` in RESP3, an array in RESP2.
    pub fn set_header(out: &mut Vec<u8>, count: usize, proto: Protocol) {
        header(
            out,
            if proto == Protocol::Resp3 { b'~' } else { b'*' },
            count,
        );
    }

    /// A double: `,3.5` in RESP3, a bulk string in RESP2.
    pub fn double(out: &mut Vec<u8>, value: f64, proto: Protocol) {
        let text = if value.is_nan() {
            "nan".to_string()
        } else if value.is_infinite() {
            if value > 0.0 { "inf" } else { "-inf" }.to_string()
        } else {
            value.to_string()
        };
        match proto {
            Protocol::Resp3 => {
                out.push(b',');
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Protocol::Resp2 => bulk(out, text.as_bytes()),
        }
    }

    /// A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
    pub fn boolean(out: &mut Vec<u8>, value: bool, proto: Protocol) {
        match proto {
            Protocol::Resp3 => out.extend_from_slice(if value { b"#t\r\n" } else { b"#f\r\n" }),
            Protocol::Resp2 => integer(out, i64::from(value)),
        }
    }

    /// A command as clients send it: an array of bulk strings.
    pub fn command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
        array_header(out, args.len());
        for arg in args {
            bulk(out, arg.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut decoder = RequestDecoder::new(Limits::default());
        let mut pos = 0;
        let mut out = Vec::new();
        while let Some(len) = decoder.decode(&input[pos..])? {
            out.push(decoder.args(&input[pos..]).map(<[u8]>::to_vec).collect());
            pos += len;
        }
        Ok(out)
    }

    #[test]
    fn pipelined_commands_split_at_every_byte_decode_the_same() {
        let input =
            b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\nPING\r\n*1\r\n$4\r\nPING\r\n";
        let whole = commands(input).unwrap();
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0][2], b"va\r\nl");
        for split in 0..input.len() {
            // Feed the first `split` bytes, then everything, as reads would.
            let mut decoder = RequestDecoder::new(Limits::default());
            let mut pos = 0;
            let mut got: Vec<Vec<Vec<u8>>> = Vec::new();
            for end in [split, input.len()] {
                while pos < end {
                    match decoder.decode(&input[pos..end]).unwrap() {
                        Some(len) => {
                            got.push(decoder.args(&input[pos..]).map(<[u8]>::to_vec).collect());
                            pos += len;
                        }
                        None => break,
                    }
                }
            }
            assert_eq!(got, whole, "split at {split}");
        }
    }

    #[test]
    fn inline_commands_split_on_spaces_and_honour_quotes() {
        let got = commands(b"SET a \"x y\"\r\n\r\nget  a\n").unwrap();
        assert_eq!(got[0], [&b"SET"[..], b"a", b"x y"]);
        assert!(got[1].is_empty()); // an empty line, skipped by a server
        assert_eq!(got[2], [&b"get"[..], b"a"]);
        assert_eq!(
            commands(b"SET a \"x\r\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }

    #[test]
    fn hostile_headers_are_errors_before_anything_is_reserved() {
        assert_eq!(
            commands(b"*99999999\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            commands(b"*1\r\n$4294967296\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            commands(b"*1\r\n$-5\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            commands(b"*1\r\n:1\r\n"),
            Err(ProtocolError::ExpectedBulk(b':'))
        );
        let long = vec![b'a'; 70 * 1024];
        assert_eq!(commands(&long), Err(ProtocolError::TooBigInline));
        // Under the limits, a large announced size just waits.
        let mut decoder = RequestDecoder::new(Limits::default());
        assert_eq!(decoder.decode(b"*1\r\n$100000000\r\nabc").unwrap(), None);
        assert!(decoder.in_command());
    }

    #[test]
    fn error_texts_are_redis_s() {
        assert_eq!(
            ProtocolError::InvalidBulkLength.to_string(),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            ProtocolError::ExpectedBulk(b'x').to_string(),
            "Protocol error: expected '$', got 'x'"
        );
    }

    #[test]
    fn every_value_type_round_trips_through_resp3() {
        let value = Value::Array(vec![
            Value::Simple("OK".into()),
            Value::Error("ERR no".into()),
            Value::Integer(-42),
            Value::Bulk(b"a\r\nb".to_vec()),
            Value::Null,
            Value::Map(vec![(Value::Bulk(b"k".to_vec()), Value::Double(1.5))]),
            Value::Set(vec![Value::Boolean(true)]),
            Value::BigNumber("12345678901234567890".into()),
            Value::Push(vec![Value::Integer(1)]),
        ]);
        let mut out = Vec::new();
        value.encode(&mut out, Protocol::Resp3);
        let decoder = ValueDecoder::new(Limits::default());
        assert_eq!(decoder.decode(&out).unwrap(), Some((value, out.len())));
        for split in 0..out.len() {
            assert_eq!(decoder.decode(&out[..split]).unwrap(), None);
        }
    }

    #[test]
    fn resp2_spells_resp3_types_as_redis_does() {
        let mut out = Vec::new();
        Value::Map(vec![(Value::Integer(1), Value::Boolean(false))])
            .encode(&mut out, Protocol::Resp2);
        Value::Null.encode(&mut out, Protocol::Resp2);
        encode::double(&mut out, 2.5, Protocol::Resp2);
        assert_eq!(out, b"*2\r\n:1\r\n:0\r\n$-1\r\n$3\r\n2.5\r\n");
    }

    #[test]
    fn value_decoder_bounds_depth_and_reads_attributes_and_verbatim() {
        let decoder = ValueDecoder::new(Limits {
            max_depth: 2,
            ..Limits::default()
        });
        assert_eq!(
            decoder.decode(b"*1\r\n*1\r\n*1\r\n*0\r\n"),
            Err(ProtocolError::TooDeep)
        );
        let (v, _) = decoder
            .decode(b"|1\r\n+ttl\r\n:3\r\n=7\r\ntxt:abc\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(v, Value::Bulk(b"abc".to_vec()));
        assert_eq!(
            decoder.decode(b"?\r\n"),
            Err(ProtocolError::UnknownType(b'?'))
        );
    }

    #[test]
    fn integers_parse_strictly() {
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b""), None);
        let mut out = Vec::new();
        encode::digits(&mut out, i64::MIN);
        assert_eq!(out, b"-9223372036854775808");
    }
}
