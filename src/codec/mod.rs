//! Framing codecs: cutting a byte stream into messages.
//!
//! TCP delivers a stream, not messages: one `recv` may hold half a message or
//! three and a half. A codec finds the message boundaries in whatever has
//! arrived, and says how much of it it used, so the rest can wait for more.
//! Both codecs here fit [`Handler::on_data`](crate::service::Handler::on_data)
//! directly: decode from the bytes you were handed, and return the position
//! the decoder reached as the number of bytes consumed.
//!
//! - [`LineDecoder`]: newline-terminated lines (`\n`, with `\r\n` accepted),
//!   with a maximum length. A longer line is reported once and skipped up to
//!   its newline, so one bad line does not end the connection.
//! - [`FrameDecoder`]: length-prefixed frames, a 4-byte big-endian length and
//!   then the payload (the seeds' `send_message`/`recv_message` format), with
//!   a maximum size. A header announcing more than the maximum is an error
//!   before anything is buffered or allocated.
//!
//! Neither decoder copies or allocates: lines and frames are slices of the
//! input.
//!
//! Protocols with more structure have a module each:
//!
//! - [`resp`]: Redis's protocol, RESP2 and RESP3, commands and replies.
//! - `websocket` (with the `websocket` feature): RFC 6455, the handshake
//!   and the frames, both sides.

use std::fmt;

pub mod resp;
#[cfg(feature = "websocket")]
pub mod websocket;

/// Why [`LineDecoder::next_line`] rejected a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineTooLong {
    /// The maximum length the decoder was configured with.
    pub max: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line longer than {} bytes", self.max)
    }
}

impl std::error::Error for LineTooLong {}

/// Splits input into lines of at most `max` bytes (not counting the line
/// end). Keep one per connection: it remembers when it is skipping the rest
/// of an overlong line.
///
/// # Examples
///
/// ```
/// use reactor::codec::LineDecoder;
///
/// let mut lines = LineDecoder::new(8);
/// let data = b"hi\r\nthis one is too long\nok\npart";
/// let mut pos = 0;
/// let mut seen = Vec::new();
/// while let Some(line) = lines.next_line(data, &mut pos) {
///     seen.push(line.map(|l| String::from_utf8_lossy(l).into_owned()).map_err(|e| e.to_string()));
/// }
/// assert_eq!(seen, [
///     Ok("hi".to_string()),
///     Err("line longer than 8 bytes".to_string()),
///     Ok("ok".to_string()),
/// ]);
/// assert_eq!(&data[pos..], b"part"); // kept for when the rest arrives
/// ```
#[derive(Clone, Debug)]
pub struct LineDecoder {
    max: usize,
    /// Inside an overlong line that was already reported: drop bytes up to
    /// and including the next newline.
    skipping: bool,
}

impl LineDecoder {
    /// A decoder for lines of at most `max` bytes. A service that decodes
    /// with it sets its [`Config::input_limit`](crate::service::Config::input_limit)
    /// to at least `max + 2`: what the handler leaves unconsumed is at most
    /// one partial line, and a `\r\n` may end it.
    pub fn new(max: usize) -> LineDecoder {
        LineDecoder {
            max,
            skipping: false,
        }
    }

    /// The maximum line length.
    pub fn max(&self) -> usize {
        self.max
    }

    /// True while the decoder is dropping the rest of an overlong line it
    /// has reported: it consumes those bytes, though the line has not ended.
    /// A server with an
    /// [`unfinished_input_timeout`](crate::service::Config::unfinished_input_timeout)
    /// says so with
    /// [`Connections::expect_message`](crate::service::Connections::expect_message),
    /// so that an endless line cannot dodge the deadline.
    ///
    /// ```
    /// use reactor::codec::LineDecoder;
    /// let mut lines = LineDecoder::new(4);
    /// let mut pos = 0;
    /// assert!(lines.next_line(b"toolong", &mut pos).unwrap().is_err());
    /// assert!(lines.in_overlong_line());
    /// pos = 0;
    /// assert!(lines.next_line(b"...\nok\n", &mut pos).unwrap().is_ok());
    /// assert!(!lines.in_overlong_line());
    /// ```
    pub fn in_overlong_line(&self) -> bool {
        self.skipping
    }

    /// Decodes the next line of `data` starting at `*pos`, and moves `*pos`
    /// past what it used.
    ///
    /// Returns `Some(Ok(line))` for a complete line (without its `\n` or
    /// `\r\n`), `Some(Err(LineTooLong))` once for each line over the limit
    /// (whose bytes are skipped, now and as they keep arriving, up to its
    /// newline), and `None` when `data` holds no complete line: then
    /// `data[*pos..]` is a partial line of at most `max` bytes, to be kept
    /// and handed back with more data.
    pub fn next_line<'a>(
        &mut self,
        data: &'a [u8],
        pos: &mut usize,
    ) -> Option<Result<&'a [u8], LineTooLong>> {
        loop {
            let rest = data.get(*pos..).unwrap_or_default();
            match rest.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    *pos += end + 1;
                    if self.skipping {
                        // The tail of a line already reported as too long.
                        self.skipping = false;
                        continue;
                    }
                    let mut line = &rest[..end];
                    if let [head @ .., b'\r'] = line {
                        line = head;
                    }
                    if line.len() > self.max {
                        return Some(Err(LineTooLong { max: self.max }));
                    }
                    return Some(Ok(line));
                }
                None if self.skipping => {
                    *pos = data.len();
                    return None;
                }
                // A trailing '\r' may belong to a "\r\n" still on its way.
                None if rest.len()
                    > self
                        .max
                        .saturating_add(usize::from(rest.last() == Some(&b'\r'))) =>
                {
                    // No newline within the limit: report it now, skip the rest.
                    *pos = data.len();
                    self.skipping = true;
                    return Some(Err(LineTooLong { max: self.max }));
                }
                None => return None,
            }
        }
    }
}

/// Why [`FrameDecoder::next_frame`] failed. Either way the stream cannot be
/// trusted past this point: close the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The header announced a frame larger than the maximum.
    TooLarge {
        /// The length the header announced.
        announced: u64,
        /// The decoder's maximum.
        max: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { announced, max } => {
                write!(
                    f,
                    "frame of {announced} bytes announced, over the limit of {max}"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Splits input into length-prefixed frames: a 4-byte big-endian payload
/// length, then the payload.
///
/// # Examples
///
/// ```
/// use reactor::codec::{FrameDecoder, FrameError, frame_header};
///
/// let mut wire = Vec::new();
/// for payload in [&b"hello"[..], b"", b"world"] {
///     wire.extend_from_slice(&frame_header(payload.len()).unwrap());
///     wire.extend_from_slice(payload);
/// }
/// let decoder = FrameDecoder::new(1024);
/// let mut pos = 0;
/// let mut frames = Vec::new();
/// while let Some(frame) = decoder.next_frame(&wire, &mut pos) {
///     frames.push(frame.unwrap());
/// }
/// assert_eq!(frames, [&b"hello"[..], b"", b"world"]);
///
/// // A header announcing 4 GiB is refused before anything is buffered.
/// let huge = [0xff, 0xff, 0xff, 0xff];
/// assert!(matches!(decoder.next_frame(&huge, &mut 0), Some(Err(FrameError::TooLarge { .. }))));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct FrameDecoder {
    max: usize,
}

/// Bytes in a frame header.
pub const FRAME_HEADER: usize = 4;

/// The header for a payload of `len` bytes, or `None` if `len` does not fit
/// in 32 bits.
pub fn frame_header(len: usize) -> Option<[u8; FRAME_HEADER]> {
    u32::try_from(len).ok().map(u32::to_be_bytes)
}

impl FrameDecoder {
    /// The default maximum payload: 16 MiB.
    pub const DEFAULT_MAX: usize = 16 * 1024 * 1024;

    /// A decoder for payloads of at most `max` bytes.
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder { max }
    }

    /// The maximum payload size.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Decodes the next frame of `data` starting at `*pos`, moving `*pos` past
    /// it. Returns `None` while the frame is incomplete (`data[*pos..]` is to
    /// be kept), and an error as soon as a header announces a payload over
    /// the maximum.
    pub fn next_frame<'a>(
        &self,
        data: &'a [u8],
        pos: &mut usize,
    ) -> Option<Result<&'a [u8], FrameError>> {
        let rest = data.get(*pos..).unwrap_or_default();
        let header: [u8; FRAME_HEADER] = rest.get(..FRAME_HEADER)?.try_into().ok()?;
        let len = u32::from_be_bytes(header) as u64;
        if len > self.max as u64 {
            return Some(Err(FrameError::TooLarge {
                announced: len,
                max: self.max,
            }));
        }
        let len = len as usize;
        let payload = rest.get(FRAME_HEADER..FRAME_HEADER + len)?;
        *pos += FRAME_HEADER + len;
        Some(Ok(payload))
    }

    /// Bytes still needed to complete the frame that starts at `data[pos..]`
    /// (0 if it is complete or its header is invalid): what a truncated
    /// stream was missing when it ended.
    pub fn missing(&self, data: &[u8], pos: usize) -> usize {
        let rest = data.get(pos..).unwrap_or_default();
        match rest.get(..FRAME_HEADER) {
            None => FRAME_HEADER - rest.len(),
            Some(header) => {
                let len = u32::from_be_bytes(header.try_into().unwrap_or_default()) as usize;
                (FRAME_HEADER + len).saturating_sub(rest.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(decoder: &mut LineDecoder, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, LineTooLong>> {
        // Feeds chunks the way the connection layer does: leftovers first.
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for chunk in chunks {
            pending.extend_from_slice(chunk);
            let mut pos = 0;
            while let Some(line) = decoder.next_line(&pending, &mut pos) {
                out.push(line.map(<[u8]>::to_vec));
            }
            pending.drain(..pos);
            assert!(pending.len() <= decoder.max() + 1, "kept more than a line");
        }
        out
    }

    #[test]
    fn an_overlong_line_split_across_reads_is_reported_once() {
        let mut decoder = LineDecoder::new(4);
        let got = lines(&mut decoder, &[b"abcdef", b"ghij", b"kl\nok\n"]);
        assert_eq!(got, [Err(LineTooLong { max: 4 }), Ok(b"ok".to_vec())]);
    }

    #[test]
    fn a_line_of_exactly_max_bytes_passes_even_with_crlf_split() {
        let mut decoder = LineDecoder::new(4);
        let got = lines(&mut decoder, &[b"abcd\r", b"\nxyz\n"]);
        assert_eq!(got, [Ok(b"abcd".to_vec()), Ok(b"xyz".to_vec())]);
    }

    #[test]
    fn an_empty_line_is_a_line() {
        let mut decoder = LineDecoder::new(4);
        assert_eq!(lines(&mut decoder, &[b"\n\r\n"]), [Ok(vec![]), Ok(vec![])]);
    }

    #[test]
    fn missing_counts_what_a_truncated_frame_lacks() {
        let decoder = FrameDecoder::new(100);
        assert_eq!(decoder.missing(b"", 0), 4);
        assert_eq!(decoder.missing(&[0, 0], 0), 2);
        assert_eq!(decoder.missing(&[0, 0, 0, 10, 1, 2], 0), 8);
    }
}
