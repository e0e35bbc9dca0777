//! SHA-1 (FIPS 180-4), for the handshake's `Sec-WebSocket-Accept` only.
//!
//! SHA-1 is broken for signatures, but the handshake does not rely on it
//! being collision-resistant: the accept value only proves that the server
//! read the key and understood WebSocket (RFC 6455 §1.3). Forty lines here
//! cost less than a dependency.

/// The SHA-1 digest of the concatenation of `parts`.
pub(super) fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut state: [u32; 5] = [
        0x6745_2301,
        0xefcd_ab89,
        0x98ba_dcfe,
        0x1032_5476,
        0xc3d2_e1f0,
    ];
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut block = [0u8; 64];
    let mut filled = 0;
    // The message, then 0x80, zeros, and the length in bits (64-bit
    // big-endian) so that the whole is a multiple of 64 bytes.
    let padding_len = (64 + 56 - (total + 1) % 64) % 64;
    let mut tail = [0u8; 72];
    tail[0] = 0x80;
    tail[1 + padding_len..9 + padding_len].copy_from_slice(&((total as u64) * 8).to_be_bytes());
    let tail = &tail[..9 + padding_len];
    for byte in parts.iter().flat_map(|p| p.iter()).chain(tail.iter()) {
        block[filled] = *byte;
        filled += 1;
        if filled == 64 {
            compress(&mut state, &block);
            filled = 0;
        }
    }
    debug_assert_eq!(filled, 0);
    let mut digest = [0u8; 20];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

/// One 64-byte block into the state.
fn compress(state: &mut [u32; 5], block: &[u8; 64]) {
    let mut w = [0u32; 80];
    for (i, word) in block.chunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
    }
    for i in 16..80 {
        w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
    }
    let [mut a, mut b, mut c, mut d, mut e] = *state;
    for (i, wi) in w.iter().enumerate() {
        let (f, k) = match i {
            0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
            20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
            40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
            _ => (b ^ c ^ d, 0xca62_c1d6),
        };
        let t = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(*wi);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = t;
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(digest: [u8; 20]) -> String {
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn known_digests() {
        // FIPS 180 test vectors, and lengths around the padding boundary.
        assert_eq!(
            hex(sha1(&[b""])),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert_eq!(
            hex(sha1(&[b"abc"])),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(sha1(&[
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            ])),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(sha1(&[&[b'a'; 1000][..]])),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
        // Split input hashes as the whole.
        assert_eq!(sha1(&[b"ab", b"c"]), sha1(&[b"abc"]));
    }
}
