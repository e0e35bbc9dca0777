//! Writing frames: [`write_frame`], [`write_header`], [`write_close`], and
//! the masking both directions share ([`mask`]).

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// A frame's kind (its 4-bit opcode).
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::Opcode;
///
/// assert_eq!(Opcode::Text.bits(), 1);
/// assert_eq!(Opcode::from_bits(9), Some(Opcode::Ping));
/// assert_eq!(Opcode::from_bits(3), None); // reserved
/// assert!(Opcode::Close.is_control());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    /// 0: the next fragment of the message in progress.
    Continuation,
    /// 1: the first (or only) frame of a text message.
    Text,
    /// 2: the first (or only) frame of a binary message.
    Binary,
    /// 8: close.
    Close,
    /// 9: ping.
    Ping,
    /// 10: pong.
    Pong,
}

impl Opcode {
    /// The opcode's value on the wire.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(reactor::codec::websocket::Opcode::Pong.bits(), 10);
    /// ```
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0,
            Opcode::Text => 1,
            Opcode::Binary => 2,
            Opcode::Close => 8,
            Opcode::Ping => 9,
            Opcode::Pong => 10,
        }
    }

    /// The opcode for a wire value, or `None` for a reserved one (3-7,
    /// 11-15).
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::codec::websocket::Opcode;
    /// assert_eq!(Opcode::from_bits(0), Some(Opcode::Continuation));
    /// assert_eq!(Opcode::from_bits(11), None);
    /// ```
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong: never fragmented, at most 125 bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::codec::websocket::Opcode;
    /// assert!(Opcode::Ping.is_control() && !Opcode::Binary.is_control());
    /// ```
    pub fn is_control(self) -> bool {
        self.bits() >= 8
    }
}

/// Appends one whole, final frame (FIN set) to `out`. `mask`: `Some(key)`
/// for a client, whose frames must be masked (the payload is masked as it
/// is written; take keys from [`new_mask`]), `None` for a server.
///
/// A control frame (close, ping, pong) must carry at most 125 bytes; that
/// is the caller's to respect (a peer refuses a longer one).
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::{Opcode, write_frame};
///
/// let mut out = Vec::new();
/// write_frame(&mut out, Opcode::Text, b"Hello", None);
/// assert_eq!(out, b"\x81\x05Hello");
///
/// // RFC 6455 §5.7's masked example.
/// out.clear();
/// write_frame(&mut out, Opcode::Text, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]));
/// assert_eq!(out, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// ```
pub fn write_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) {
    write_header(out, opcode, payload.len(), mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        self::mask(&mut out[start..], key);
    }
}

/// Appends just the header of a final frame of `len` payload bytes, so that
/// a caller can render the payload straight after it (a server that writes
/// JSON once into its output buffer, say).
///
/// With `mask: Some(key)` the header carries the key, and the caller masks
/// the payload it appends with [`mask`]`(payload, key)`.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::{Opcode, write_header};
///
/// let mut out = Vec::new();
/// write_header(&mut out, Opcode::Binary, 300, None);
/// assert_eq!(out, [0x82, 126, 0x01, 0x2c]); // 126: a 16-bit length follows
/// out.clear();
/// write_header(&mut out, Opcode::Binary, 70_000, None);
/// assert_eq!(out, [0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]); // 127: 64 bits
/// ```
pub fn write_header(out: &mut Vec<u8>, opcode: Opcode, len: usize, mask: Option<[u8; 4]>) {
    let (bytes, n) = header(opcode, len, mask);
    out.extend_from_slice(&bytes[..n]);
}

/// Puts the header of an unmasked final frame in front of the payload that
/// `out` holds from `start` on: for a server that renders a message first
/// (its length is known only then) and frames it after. The payload moves
/// along by the header's 2 to 10 bytes; nothing is allocated.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::{Opcode, insert_header};
///
/// let mut out = b"earlier".to_vec();
/// out.extend_from_slice(b"Hello");
/// insert_header(&mut out, 7, Opcode::Text);
/// assert_eq!(out, b"earlier\x81\x05Hello");
/// ```
pub fn insert_header(out: &mut Vec<u8>, start: usize, opcode: Opcode) {
    let (bytes, n) = header(opcode, out.len() - start, None);
    out.splice(start..start, bytes[..n].iter().copied());
}

/// A frame header's bytes (at most 14: 2, a 64-bit length, a key) and how
/// many there are.
fn header(opcode: Opcode, len: usize, mask: Option<[u8; 4]>) -> ([u8; 14], usize) {
    let mut bytes = [0u8; 14];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    bytes[0] = 0x80 | opcode.bits();
    let mut n = 2;
    if len <= 125 {
        bytes[1] = mask_bit | len as u8;
    } else if let Ok(len) = u16::try_from(len) {
        bytes[1] = mask_bit | 126;
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        n = 4;
    } else {
        bytes[1] = mask_bit | 127;
        bytes[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        n = 10;
    }
    if let Some(key) = mask {
        bytes[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    (bytes, n)
}

/// The longest close reason that fits a close frame: 125 bytes of control
/// payload less the 2-byte code.
const MAX_CLOSE_REASON: usize = 123;

/// Appends a close frame carrying `code` and `reason`. A reason longer than
/// 123 bytes is cut at a character boundary so the frame stays a legal
/// control frame.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::write_close;
///
/// let mut out = Vec::new();
/// write_close(&mut out, 1000, "bye", None);
/// assert_eq!(out, [0x88, 5, 0x03, 0xe8, b'b', b'y', b'e']);
///
/// out.clear();
/// write_close(&mut out, 1009, &"é".repeat(100), None); // 200 bytes
/// assert_eq!(out[1], 2 + 122); // 61 whole characters
/// ```
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    let mut cut = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = [0u8; 2 + MAX_CLOSE_REASON];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
    write_frame(out, Opcode::Close, &payload[..2 + cut], mask);
}

/// Masks (or unmasks: it is its own inverse) `payload` with `key`, as if it
/// started at the beginning of a frame's payload.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::mask;
///
/// let mut bytes = *b"Hello";
/// mask(&mut bytes, [0x37, 0xfa, 0x21, 0x3d]);
/// assert_eq!(bytes, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// mask(&mut bytes, [0x37, 0xfa, 0x21, 0x3d]);
/// assert_eq!(&bytes, b"Hello");
/// ```
pub fn mask(payload: &mut [u8], key: [u8; 4]) {
    mask_from(payload, key, 0);
}

/// Masks `payload` as the part of a frame's payload that starts `offset`
/// bytes in (the decoder unmasks frames in pieces as they arrive).
///
/// Eight bytes at a time: the key, rotated to the offset and repeated
/// twice, is one `u64` to XOR with (in native byte order on both sides, so
/// the order does not matter).
pub(super) fn mask_from(payload: &mut [u8], key: [u8; 4], offset: usize) {
    let k: [u8; 4] = std::array::from_fn(|i| key[(offset + i) % 4]);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= k[i % 4];
    }
}

thread_local! {
    /// The state of [`random_u64`]'s generator, seeded once per thread.
    static RANDOM: Cell<u64> = Cell::new(seed());
}

/// A seed from std's per-process random hash keys (which std takes from
/// the OS), so that no two processes choose the same masks and keys.
fn seed() -> u64 {
    let seed = RandomState::new().hash_one(std::process::id());
    seed | 1 // xorshift's state must not be zero
}

/// A pseudo-random `u64` (xorshift64*): unpredictable enough for masking
/// keys and handshake nonces, which RFC 6455 wants unguessable by a script
/// in the page, not secret.
pub(super) fn random_u64() -> u64 {
    RANDOM.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A fresh masking key for a frame a client sends.
///
/// # Examples
///
/// ```
/// use reactor::codec::websocket::{Opcode, new_mask, write_frame};
///
/// let mut out = Vec::new();
/// write_frame(&mut out, Opcode::Binary, b"data", Some(new_mask()));
/// assert_eq!(out[1], 0x80 | 4); // masked, 4 bytes
/// ```
pub fn new_mask() -> [u8; 4] {
    let bytes = random_u64().to_le_bytes();
    [bytes[0], bytes[1], bytes[2], bytes[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_at_any_offset_matches_the_byte_by_byte_rule() {
        let key = [0xa1, 0xb2, 0xc3, 0xd4];
        let data: Vec<u8> = (0..=255u8).collect();
        for offset in 0..8 {
            for len in [0, 1, 3, 7, 8, 9, 17, 100] {
                let mut fast = data[..len].to_vec();
                mask_from(&mut fast, key, offset);
                let slow: Vec<u8> = data[..len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[(offset + i) % 4])
                    .collect();
                assert_eq!(fast, slow, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn lengths_use_the_shortest_form() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = Vec::new();
            write_header(&mut out, Opcode::Binary, len, None);
            assert_eq!(out.len(), header_len, "{len}");
            let mut out = Vec::new();
            write_header(&mut out, Opcode::Binary, len, Some([1, 2, 3, 4]));
            assert_eq!(out.len(), header_len + 4, "{len} masked");
        }
    }

    #[test]
    fn masks_differ() {
        assert_ne!(new_mask(), new_mask());
    }
}
