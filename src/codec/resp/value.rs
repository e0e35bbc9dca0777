//! Reading replies as a client does: [`Value`] and [`ValueDecoder`].

use super::{Limits, Protocol, ProtocolError, encode, line_end, parse_i64};

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
/// It keeps no progress: a reply that has not fully arrived is scanned
/// again from its start on the next call, which is fine for replies of a
/// few kilobytes (a bulk string's body is skipped by its length, not
/// scanned). A connection that may receive large aggregates in many reads
/// uses a [`ValueReader`], which keeps its place.
///
/// RESP3 attributes (`|`) are read and dropped: the value they annotate is
/// returned. Verbatim strings (`=`) come back as [`Value::Bulk`] without
/// their three-letter format.
///
/// # Examples
///
/// ```
/// use reactor::codec::resp::{Limits, Value, ValueDecoder};
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
        Progress::default().decode(&self.limits, buf)
    }
}

/// Reads RESP2 and RESP3 values from one connection's byte stream, keeping
/// its place inside a value that has not fully arrived: the elements of an
/// aggregate already read are kept, so a reply of a million elements
/// arriving 64 KiB at a time is parsed once, not again per read.
///
/// Call [`decode`](ValueReader::decode) with the bytes from the start of
/// the next value; `None` means more must arrive: call it again later with
/// the same start and more bytes after it. Values are read as by
/// [`ValueDecoder`].
///
/// # Examples
///
/// ```
/// use reactor::codec::resp::{Limits, Value, ValueReader};
///
/// let mut reader = ValueReader::new(Limits::default());
/// let whole = b"*2\r\n$5\r\nhello\r\n:7\r\n";
/// assert_eq!(reader.decode(&whole[..16]).unwrap(), None); // "hello" is kept
/// let value = Value::Array(vec![Value::Bulk(b"hello".to_vec()), Value::Integer(7)]);
/// assert_eq!(reader.decode(whole).unwrap(), Some((value, whole.len())));
/// ```
#[derive(Clone, Debug)]
pub struct ValueReader {
    limits: Limits,
    progress: Progress,
}

impl ValueReader {
    /// A reader that holds its peer to `limits`.
    pub fn new(limits: Limits) -> ValueReader {
        ValueReader {
            limits,
            progress: Progress::default(),
        }
    }

    /// The next value and its length in bytes from the start of `buf`, or
    /// `None` if it has not fully arrived (the place is kept).
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] for bytes that are not RESP or a header past the
    /// [`Limits`]; the reader is then reset, and the stream cannot be
    /// resynchronised.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
        let result = self.progress.decode(&self.limits, buf);
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// Forgets a value under way (for a stream that starts again, after a
    /// reconnect).
    pub fn reset(&mut self) {
        self.progress = Progress::default();
    }
}

/// How far into a value a decoder has come: the aggregates open around the
/// next element, innermost last, and where that element starts. The stack
/// is explicit, not the call stack: nesting is bounded by
/// [`Limits::max_depth`], and a run of attributes costs nothing.
#[derive(Clone, Debug, Default)]
struct Progress {
    open: Vec<Open>,
    at: usize,
}

/// An aggregate whose elements are still arriving.
#[derive(Clone, Debug)]
struct Open {
    kind: u8,
    /// Elements still to come (twice the pairs, for maps and attributes).
    left: usize,
    items: Vec<Value>,
}

/// What one type byte and its line introduced.
enum Item {
    /// A whole value.
    Value(Value),
    /// An aggregate header with this many elements to follow.
    Open(u8, usize),
}

impl Progress {
    fn decode(
        &mut self,
        limits: &Limits,
        buf: &[u8],
    ) -> Result<Option<(Value, usize)>, ProtocolError> {
        loop {
            if self.open.len() > limits.max_depth {
                return Err(ProtocolError::TooDeep);
            }
            let Some((item, next)) = item(limits, buf, self.at)? else {
                return Ok(None);
            };
            self.at = next;
            let mut value = match item {
                Item::Value(value) => value,
                Item::Open(kind, left) => {
                    // Never more than the bytes present could hold (each
                    // element takes at least 3 bytes): a header's count is
                    // not trusted.
                    let room = left.min((buf.len() - next) / 3);
                    self.open.push(Open {
                        kind,
                        left,
                        items: Vec::with_capacity(room),
                    });
                    match self.close_finished() {
                        Some(value) => value,
                        None => continue,
                    }
                }
            };
            // Hand the value to the aggregates around it, closing each one
            // it completes.
            loop {
                let Some(top) = self.open.last_mut() else {
                    let len = self.at;
                    self.at = 0;
                    return Ok(Some((value, len)));
                };
                top.items.push(value);
                top.left -= 1;
                match self.close_finished() {
                    Some(done) => value = done,
                    None => break,
                }
            }
        }
    }

    /// Pops the innermost aggregate if it has all its elements: its value,
    /// or `None` if it is not finished or was an attribute (dropped: the
    /// value it annotates is read next, in its place).
    fn close_finished(&mut self) -> Option<Value> {
        if self.open.last()?.left > 0 {
            return None;
        }
        let done = self.open.pop()?;
        let pairs = |items: Vec<Value>| {
            let mut map = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                map.push((k, v));
            }
            map
        };
        Some(match done.kind {
            b'*' => Value::Array(done.items),
            b'~' => Value::Set(done.items),
            b'>' => Value::Push(done.items),
            b'%' => Value::Map(pairs(done.items)),
            _ => return None, // `|`: an attribute
        })
    }
}

/// The item at `at`: a whole scalar, or an aggregate's header; `None` if it
/// has not fully arrived.
fn item(limits: &Limits, buf: &[u8], at: usize) -> Result<Option<(Item, usize)>, ProtocolError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    // A peer that does not speak RESP is told apart at its first byte, not
    // after a line that may never end (a prompt, a banner).
    if !b"+-:_#,($=!*~>%|".contains(&kind) {
        return Err(ProtocolError::UnknownType(kind));
    }
    let Some(end) = line_end(buf, at + 1, limits.max_inline)? else {
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
                return Ok(Some((Item::Value(Value::Null), next)));
            }
            if len as u64 > limits.max_bulk as u64 {
                return Err(ProtocolError::InvalidBulkLength);
            }
            // Nothing is reserved for the announced length: the body is
            // copied only once all of it is in `buf`.
            let stop = next.saturating_add(len as usize);
            if buf.len().saturating_sub(2) < stop {
                return Ok(None);
            }
            if &buf[stop..stop + 2] != b"\r\n" {
                return Err(ProtocolError::Malformed("bulk string not ended by CRLF"));
            }
            let mut body = &buf[next..stop];
            if kind == b'=' && body.len() >= 4 && body[3] == b':' {
                body = &body[4..];
            }
            let value = if kind == b'!' {
                Value::Error(String::from_utf8_lossy(body).into_owned())
            } else {
                Value::Bulk(body.to_vec())
            };
            return Ok(Some((Item::Value(value), stop + 2)));
        }
        // `*`, `~`, `>`, `%` and `|`, the only type bytes left.
        _ => {
            let count = parse_i64(line).ok_or(ProtocolError::InvalidMultibulkLength)?;
            if count < 0 {
                return Ok(Some((Item::Value(Value::Null), next)));
            }
            if count as u64 > limits.max_array as u64 {
                return Err(ProtocolError::InvalidMultibulkLength);
            }
            let per = if matches!(kind, b'%' | b'|') { 2 } else { 1 };
            return Ok(Some((
                Item::Open(kind, (count as usize).saturating_mul(per)),
                next,
            )));
        }
    };
    Ok(Some((Item::Value(value), next)))
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
