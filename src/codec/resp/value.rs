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
/// Unlike [`RequestDecoder`](super::RequestDecoder) it keeps no progress: a reply that has not
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
        self.value(buf, 0, 0)
    }

    /// The value at `at`, after any attributes that annotate it. Each
    /// attribute is skipped in this loop, not by a call: a hostile run of
    /// `|0\r\n` (attributes with nothing nested) costs no stack.
    fn value(
        &self,
        buf: &[u8],
        mut at: usize,
        depth: usize,
    ) -> Result<Option<(Value, usize)>, ProtocolError> {
        if depth > self.limits.max_depth {
            return Err(ProtocolError::TooDeep);
        }
        loop {
            match self.one(buf, at, depth)? {
                None => return Ok(None),
                Some(Decoded::Attribute(after)) => at = after,
                Some(Decoded::Value(value, after)) => return Ok(Some((value, after))),
            }
        }
    }

    /// One value or attribute at `at`.
    fn one(&self, buf: &[u8], at: usize, depth: usize) -> Result<Option<Decoded>, ProtocolError> {
        let Some(&kind) = buf.get(at) else {
            return Ok(None);
        };
        // A peer that does not speak RESP is told apart at its first byte,
        // not after a line that may never end (a prompt, a banner).
        if !b"+-:_#,($=!*~>%|".contains(&kind) {
            return Err(ProtocolError::UnknownType(kind));
        }
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
                    return Ok(Some(Decoded::Value(Value::Null, next)));
                }
                if len as u64 > self.limits.max_bulk as u64 {
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
                let v = if kind == b'!' {
                    Value::Error(String::from_utf8_lossy(body).into_owned())
                } else {
                    Value::Bulk(body.to_vec())
                };
                return Ok(Some(Decoded::Value(v, stop + 2)));
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let count = parse_i64(line).ok_or(ProtocolError::InvalidMultibulkLength)?;
                if count < 0 {
                    return Ok(Some(Decoded::Value(Value::Null, next)));
                }
                if count as u64 > self.limits.max_array as u64 {
                    return Err(ProtocolError::InvalidMultibulkLength);
                }
                let pairs = matches!(kind, b'%' | b'|');
                let elements = (count as usize).saturating_mul(if pairs { 2 } else { 1 });
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
                            return Ok(Some(Decoded::Attribute(pos)));
                        }
                        Value::Map(map)
                    }
                };
                return Ok(Some(Decoded::Value(value, pos)));
            }
            other => return Err(ProtocolError::UnknownType(other)),
        };
        Ok(Some(Decoded::Value(value, next)))
    }
}

/// What one type byte at a position introduced.
enum Decoded {
    /// A value, and where the next one starts.
    Value(Value, usize),
    /// An attribute (dropped), and where the value it annotates starts.
    Attribute(usize),
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
