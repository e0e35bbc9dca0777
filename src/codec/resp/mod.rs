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
//!   a client reads as replies. [`ValueReader`] does the same for one
//!   connection's stream and keeps its place across short reads, so a large
//!   aggregate arriving in many reads is parsed once.
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
//! use reactor::codec::resp::{encode, Limits, Protocol, RequestDecoder};
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
//! use reactor::codec::resp::{encode, Limits, Value, ValueDecoder};
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

pub mod encode;
mod request;
mod value;

use std::fmt;

pub use request::RequestDecoder;
pub use value::{Value, ValueDecoder, ValueReader};

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
/// has one (`proto-max-bulk-len` 512 MiB, inline requests of 64 KiB); the
/// others are 1 Mi elements per array and a depth of 32.
///
/// ```
/// use reactor::codec::resp::Limits;
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
    /// Deepest nesting of aggregates, for values ([`ValueDecoder`],
    /// [`ValueReader`]): a value at the top is at depth 0, the elements of
    /// an array (set, map, push, attribute) one deeper. A value nested
    /// deeper is [`ProtocolError::TooDeep`], so that the aggregates held
    /// open while their elements arrive stay few. Attributes before a value
    /// do not nest it. Redis's replies nest a few levels at most.
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
pub(crate) fn line_end(
    buf: &[u8],
    from: usize,
    max: usize,
) -> Result<Option<usize>, ProtocolError> {
    let longest = max.saturating_add(2);
    let window = &buf[from..buf.len().min(from.saturating_add(longest))];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(from + i)),
        None if window.len() >= longest => Err(ProtocolError::TooBigInline),
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
        // At once, without waiting for a line end: a prompt is not RESP.
        assert_eq!(
            decoder.decode(b"Enter your name: "),
            Err(ProtocolError::UnknownType(b'E'))
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
