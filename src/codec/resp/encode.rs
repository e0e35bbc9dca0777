//! Writing RESP: each function appends one value (or an aggregate's
//! header, to be followed by its elements) to a `Vec<u8>`, so that a whole
//! pipeline's replies build up in one buffer and go out in one write.
//!
//! ```
//! use reactor::codec::resp::{encode, Protocol};
//!
//! let mut out = Vec::new();
//! encode::map_header(&mut out, 1, Protocol::Resp2); // a flat array in RESP2
//! encode::bulk(&mut out, b"field");
//! encode::integer(&mut out, 7);
//! encode::null(&mut out, Protocol::Resp3);
//! assert_eq!(out, b"*2\r\n$5\r\nfield\r\n:7\r\n_\r\n");
//! ```

use super::Protocol;

/// Appends the decimal digits of `n`, without going through `fmt`.
pub fn digits(out: &mut Vec<u8>, n: i64) {
    crate::decimal::write_i64(out, n);
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
