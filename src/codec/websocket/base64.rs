//! Base64 (RFC 4648, with padding), as much as the handshake needs: encoding
//! a 16-byte key and a 20-byte digest, and checking that a key is the
//! encoding of 16 bytes.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends the base64 of `bytes` to `out`.
pub(super) fn encode(bytes: &[u8], out: &mut Vec<u8>) {
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

/// Whether `text` is the canonical base64 of exactly 16 bytes: 22
/// characters of the alphabet, the last carrying 2 bits (so its low 4 bits
/// are zero), then `==`.
pub(super) fn is_16_bytes(text: &[u8]) -> bool {
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c);
    text.len() == 24
        && text[22..] == *b"=="
        && text[..22].iter().all(|&c| value(c).is_some())
        && value(text[21]).is_some_and(|v| v & 0x0f == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        encode(bytes, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc_4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encoded(plain.as_bytes()), coded);
        }
    }

    #[test]
    fn sixteen_byte_keys() {
        assert!(is_16_bytes(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_16_bytes(encoded(&[0xff; 16]).as_bytes()));
        assert!(!is_16_bytes(b"dGhlIHNhbXBsZSBub25jZR==")); // stray low bits
        assert!(!is_16_bytes(b"dGhlIHNhbXBsZSBub25jZQ")); // no padding
        assert!(!is_16_bytes(b"dGhlIHNhbXBsZSBub25j")); // 12 bytes
        assert!(!is_16_bytes(b"dGhlIHNhbXBsZSBub25j*Q=="));
        assert!(!is_16_bytes(encoded(&[1; 17]).as_bytes()));
    }
}
