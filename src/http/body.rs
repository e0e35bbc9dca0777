//! Finding the end of a body as its bytes arrive: [`BodyDecoder`].

use super::fields::is_token_byte;
use super::{Error, Framing, bad_request};

/// The longest chunk-extension or trailer section we read past, in bytes.
/// Nothing here uses them; the bound keeps a peer from sending an endless
/// one.
const MAX_CHUNK_META: usize = 8 * 1024;

/// The most characters a chunk size may have, leading zeros included
/// (sixteen hex digits fill a `u64`; the rest is room for zeros).
const MAX_SIZE_DIGITS: usize = 32;

/// What one [`BodyDecoder::feed`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyProgress {
    /// Bytes of the input that belong to this body (framing included):
    /// whatever follows them is the next message.
    pub consumed: usize,
    /// Whether the body is complete.
    pub done: bool,
}

/// Reads a body in whatever pieces it arrives, handing on the payload and
/// saying where the body ends, without buffering any of it.
///
/// One decoder serves every framing: a `Content-Length`, chunks (strict:
/// sizes are plain hexadecimal that must not overflow, every line ends in
/// CRLF, extensions are bounded and skipped, trailers are bounded, held to
/// the rules of header lines and skipped), and the end of
/// the stream. A proxy forwards `input[..consumed]` as it is; a server
/// collects what `data` is handed.
///
/// # Examples
///
/// ```
/// use reactor::http::{BodyDecoder, Framing};
///
/// let mut body = BodyDecoder::new(Framing::Chunked, 1024).unwrap();
/// let mut payload = Vec::new();
/// let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nGET /next";
/// // Two pieces, split anywhere.
/// let first = body.feed(&wire[..7], |data| payload.extend_from_slice(data)).unwrap();
/// assert!(!first.done);
/// let rest = body.feed(&wire[first.consumed..], |data| payload.extend_from_slice(data)).unwrap();
/// assert!(rest.done);
/// assert_eq!(payload, b"hello world");
/// assert_eq!(&wire[first.consumed + rest.consumed..], b"GET /next");
///
/// // A size that is not plain hex is an error, not a guess.
/// let mut body = BodyDecoder::new(Framing::Chunked, 1024).unwrap();
/// assert_eq!(body.feed(b"0x5\r\n", |_| {}).unwrap_err().status(), 400);
/// ```
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    state: State,
    received: u64,
    max_body: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Length {
        remaining: u64,
    },
    UntilClose,
    /// Reading a chunk-size line: its value so far and how many digits.
    ChunkSize {
        size: u64,
        digits: u8,
    },
    /// Spaces after a chunk size: only a `;` may follow them.
    ChunkSpace {
        size: u64,
    },
    /// Skipping a chunk extension, `len` bytes so far.
    ChunkExt {
        size: u64,
        len: usize,
    },
    /// The CR of a chunk-size line was read; the LF must follow.
    ChunkSizeLf {
        size: u64,
    },
    ChunkData {
        remaining: u64,
    },
    ChunkDataCr,
    ChunkDataLf,
    /// At the start of a trailer line (after `len` trailer bytes in all).
    TrailerStart {
        len: usize,
    },
    /// In a trailer field's name.
    TrailerName {
        len: usize,
    },
    /// In a trailer field's value (after its colon).
    TrailerLine {
        len: usize,
    },
    TrailerLineLf {
        len: usize,
    },
    TrailerEndLf,
    Done,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`, refusing a body over
    /// `max_body` bytes of payload with a 413 (at once for a
    /// `Content-Length`, when the limit is crossed otherwise).
    ///
    /// # Errors
    ///
    /// 413 if a declared length is over `max_body`.
    pub fn new(framing: Framing, max_body: u64) -> Result<BodyDecoder, Error> {
        let state = match framing {
            Framing::None | Framing::Length(0) => State::Done,
            Framing::Length(n) if n > max_body => return Err(too_large()),
            Framing::Length(n) => State::Length { remaining: n },
            Framing::Chunked => State::ChunkSize { size: 0, digits: 0 },
            Framing::UntilClose => State::UntilClose,
        };
        Ok(BodyDecoder {
            state,
            received: 0,
            max_body,
        })
    }

    /// Reads the front of `input`, handing each run of payload to `data`.
    ///
    /// # Errors
    ///
    /// 400 for malformed chunk framing, 413 past the body limit. After an
    /// error the connection's framing is lost: answer and close.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<BodyProgress, Error> {
        let mut at = 0;
        while at < input.len() && self.state != State::Done {
            at += self.step(&input[at..], &mut data)?;
        }
        Ok(BodyProgress {
            consumed: at,
            done: self.state == State::Done,
        })
    }

    /// One step of the state machine over the front of `input` (not
    /// empty): returns the bytes it took.
    fn step(&mut self, input: &[u8], data: &mut impl FnMut(&[u8])) -> Result<usize, Error> {
        use State::*;
        let byte = input[0];
        self.state = match self.state {
            Length { remaining } => {
                let n = self.payload(input, remaining, data)?;
                let remaining = remaining - n as u64;
                if remaining == 0 {
                    self.state = Done;
                } else {
                    self.state = Length { remaining };
                }
                return Ok(n);
            }
            UntilClose => return self.payload(input, u64::MAX, data),
            ChunkData { remaining } => {
                let n = self.payload(input, remaining, data)?;
                let remaining = remaining - n as u64;
                self.state = if remaining == 0 {
                    ChunkDataCr
                } else {
                    ChunkData { remaining }
                };
                return Ok(n);
            }
            ChunkSize { digits, .. } if usize::from(digits) >= MAX_SIZE_DIGITS => {
                return Err(bad_request("chunk size line too long"));
            }
            ChunkSize { size, digits } => match byte {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    let digit = u64::from((byte as char).to_digit(16).unwrap_or(0));
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(digit))
                        .ok_or_else(|| bad_request("chunk size overflows"))?;
                    ChunkSize {
                        size,
                        digits: digits.saturating_add(1),
                    }
                }
                b';' if digits > 0 => ChunkExt { size, len: 1 },
                b' ' | b'\t' if digits > 0 => ChunkSpace { size },
                b'\r' if digits > 0 => ChunkSizeLf { size },
                _ => return Err(bad_request("malformed chunk size")),
            },
            ChunkSpace { size } => match byte {
                b' ' | b'\t' => ChunkSpace { size },
                b';' => ChunkExt { size, len: 1 },
                _ => return Err(bad_request("malformed chunk size")),
            },
            ChunkExt { size, len } => match byte {
                b'\r' => ChunkSizeLf { size },
                b'\n' => return Err(bad_request("chunk line without CR")),
                _ if len >= MAX_CHUNK_META => return Err(bad_request("chunk extension too long")),
                0..=8 | 10..=31 | 127 => {
                    return Err(bad_request("control byte in chunk extension"));
                }
                _ => ChunkExt { size, len: len + 1 },
            },
            ChunkSizeLf { size } => match byte {
                b'\n' if size == 0 => TrailerStart { len: 0 },
                b'\n' if self.received.saturating_add(size) > self.max_body => {
                    return Err(too_large());
                }
                b'\n' => ChunkData { remaining: size },
                _ => return Err(bad_request("chunk line without LF")),
            },
            ChunkDataCr => match byte {
                b'\r' => ChunkDataLf,
                _ => return Err(bad_request("chunk longer than its size")),
            },
            ChunkDataLf => match byte {
                b'\n' => ChunkSize { size: 0, digits: 0 },
                _ => return Err(bad_request("chunk data without CRLF")),
            },
            // Trailer lines are field lines, held to the rules of header
            // fields: `name: value` ending in CRLF, no obsolete folding, no
            // control bytes. A lenient reading here is a smuggling path: a
            // peer that takes a bare LF for a line end would see the body
            // end, and a request begin, where we saw a trailer.
            _ if matches!(self.state, TrailerStart { len } | TrailerName { len } | TrailerLine { len } if len >= MAX_CHUNK_META) =>
            {
                return Err(bad_request("trailers too long"));
            }
            TrailerStart { len } => match byte {
                b'\r' => TrailerEndLf,
                _ if is_token_byte(byte) => TrailerName { len: len + 1 },
                b' ' | b'\t' => return Err(bad_request("folded trailer line")),
                _ => return Err(bad_request("malformed trailer line")),
            },
            TrailerName { len } => match byte {
                b':' => TrailerLine { len: len + 1 },
                _ if is_token_byte(byte) => TrailerName { len: len + 1 },
                _ => return Err(bad_request("malformed trailer field name")),
            },
            TrailerLine { len } => match byte {
                b'\r' => TrailerLineLf { len },
                b'\n' => return Err(bad_request("trailer line without CR")),
                0..=8 | 10..=31 | 127 => return Err(bad_request("control byte in a trailer")),
                _ => TrailerLine { len: len + 1 },
            },
            TrailerLineLf { len } => match byte {
                b'\n' => TrailerStart { len },
                _ => return Err(bad_request("trailer line without LF")),
            },
            TrailerEndLf => match byte {
                b'\n' => Done,
                _ => return Err(bad_request("trailers without a final CRLF")),
            },
            Done => return Ok(0),
        };
        Ok(1)
    }

    /// Hands on up to `limit` payload bytes from the front of `input`.
    fn payload(
        &mut self,
        input: &[u8],
        limit: u64,
        data: &mut impl FnMut(&[u8]),
    ) -> Result<usize, Error> {
        let n = usize::try_from(limit).map_or(input.len(), |limit| limit.min(input.len()));
        self.received += n as u64;
        if self.received > self.max_body {
            return Err(too_large());
        }
        data(&input[..n]);
        Ok(n)
    }

    /// Whether the whole body has been read.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::http::{BodyDecoder, Framing};
    ///
    /// let mut body = BodyDecoder::new(Framing::Length(3), 10).unwrap();
    /// body.feed(b"ab", |_| {}).unwrap();
    /// assert!(!body.is_done());
    /// body.feed(b"c", |_| {}).unwrap();
    /// assert!(body.is_done());
    /// assert_eq!(body.received(), 3);
    /// ```
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes handed on so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The peer closed: is the body complete? A close-delimited body ends
    /// here; any other body cut short is an error.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::http::{BodyDecoder, Framing};
    ///
    /// let mut until_close = BodyDecoder::new(Framing::UntilClose, 10).unwrap();
    /// assert!(until_close.finish_at_close().is_ok());
    /// let mut cut = BodyDecoder::new(Framing::Length(5), 10).unwrap();
    /// assert_eq!(cut.finish_at_close().unwrap_err().status(), 400);
    /// ```
    ///
    /// # Errors
    ///
    /// 400 ("body cut short") if the body expected more.
    pub fn finish_at_close(&mut self) -> Result<(), Error> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(bad_request("body cut short")),
        }
    }
}

fn too_large() -> Error {
    Error::new(413, "body too large")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `piece` bytes.
    fn decode(framing: Framing, wire: &[u8], piece: usize) -> Result<(Vec<u8>, usize, bool), u16> {
        let mut body = BodyDecoder::new(framing, 64).map_err(|e| e.status())?;
        let mut payload = Vec::new();
        let mut at = 0;
        while at < wire.len() && !body.is_done() {
            let end = (at + piece).min(wire.len());
            let progress = body
                .feed(&wire[at..end], |data| payload.extend_from_slice(data))
                .map_err(|e| e.status())?;
            at += progress.consumed;
            if progress.consumed == 0 {
                break;
            }
        }
        Ok((payload, at, body.is_done()))
    }

    #[test]
    fn chunks_split_at_every_boundary() {
        let wire = b"3\r\nabc\r\nA \t; name=\"v\"\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nnext";
        for piece in 1..wire.len() {
            let (payload, used, done) = decode(Framing::Chunked, wire, piece).unwrap();
            assert_eq!(payload, b"abc0123456789", "piece {piece}");
            assert_eq!(&wire[used..], b"next");
            assert!(done);
        }
    }

    #[test]
    fn bad_chunks_are_errors() {
        for bad in [
            &b"0x3\r\nabc\r\n0\r\n\r\n"[..],
            b"\r\n",
            b"-3\r\nabc\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabcd\r\n0\r\n\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"fffffffffffffffff\r\n",
            b"0\r\n\r\r",
            b"3 \r\nabc\r\n0\r\n\r\n",
            b" 3\r\nabc\r\n0\r\n\r\n",
            // Trailers are field lines: a bare LF, a NUL, no colon, a fold.
            b"0\r\n\nGET / HTTP/1.1\r\n\r\n",
            b"0\r\n\x00x\r\n\r\n",
            b"0\r\nA: \x01\r\n\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0\r\nA: b\r\n folded\r\n\r\n",
            b"0\r\nA b: c\r\n\r\n",
            b"00000000000000000000000000000000001\r\nx\r\n0\r\n\r\n",
        ] {
            assert_eq!(
                decode(Framing::Chunked, bad, 1),
                Err(400),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(decode(Framing::Chunked, b"41\r\n", 4), Err(413));
    }

    #[test]
    fn lengths_and_close() {
        let (payload, used, done) = decode(Framing::Length(3), b"abcdef", 2).unwrap();
        assert_eq!((payload.as_slice(), used, done), (&b"abc"[..], 3, true));
        assert_eq!(decode(Framing::Length(65), b"", 1), Err(413));
        let (payload, _, done) = decode(Framing::UntilClose, b"abcdef", 4).unwrap();
        assert_eq!((payload.as_slice(), done), (&b"abcdef"[..], false));
        assert_eq!(decode(Framing::UntilClose, &[0; 65], 65), Err(413));
        let mut cut = BodyDecoder::new(Framing::Length(3), 64).unwrap();
        assert_eq!(cut.finish_at_close().unwrap_err().status(), 400);
        let mut close = BodyDecoder::new(Framing::UntilClose, 64).unwrap();
        assert!(close.finish_at_close().is_ok());
    }
}
