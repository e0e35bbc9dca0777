//! Reading commands as a server does: [`RequestDecoder`].

use std::ops::Range;

use super::{Limits, ProtocolError, line_end, parse_i64};

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
/// use reactor::codec::resp::{Limits, RequestDecoder};
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
    /// use reactor::codec::resp::{Limits, RequestDecoder};
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
                if count > 0 && count as u64 > self.limits.max_array as u64 {
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
            // Nothing is reserved for the announced length: the argument
            // is a slice of `buf`, taken once all of it has arrived.
            let stop = start.saturating_add(len as usize);
            if buf.len().saturating_sub(2) < stop {
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
