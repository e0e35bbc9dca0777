//! `reactor::codec::resp` checked against an independent implementation,
//! the `redis-protocol` crate, on random RESP2 and RESP3 values split at
//! random points:
//!
//! - theirs encodes, ours decodes ([`ValueDecoder`] and [`ValueReader`]
//!   for replies, [`RequestDecoder`] for commands), fed in random chunks as
//!   reads would deliver them;
//! - ours encodes, theirs decodes, fed the same way;
//!
//! and the values must come back equal. The random source is a small seeded
//! generator (splitmix64) written here, with a fixed number of cases, so a
//! failure names its seed and is replayed exactly (`RESP_PROPS_SEED=N`).
//!
//! Then the bounds: hostile lengths are errors before anything is reserved
//! for them (a counting allocator watches the decoding thread), and nesting,
//! or a run of attributes, cannot exhaust the stack.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use reactor::codec::resp::{
    Limits, Protocol, ProtocolError, RequestDecoder, Value, ValueDecoder, ValueReader, encode,
};
use redis_protocol::resp2::types::{OwnedFrame as Frame2, Resp2Frame};
use redis_protocol::resp3::types::{
    FrameMap, FrameSet, OwnedFrame as Frame3, Resp3Frame, VerbatimStringFormat,
};

/// Cases per property: enough to reach every type, nesting and split many
/// times over, and still well under a second in a debug build.
const CASES: u64 = 1500;

// ----- a seeded random source ----------------------------------------------

/// splitmix64: tiny, fast, and good enough to pick shapes and split points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Bytes of any value, CR and LF included (bulk strings are binary safe).
    fn bytes(&mut self) -> Vec<u8> {
        let len = match self.below(10) {
            0 => 0,
            1..=6 => self.below(16),
            7 | 8 => self.below(300),
            _ => self.below(5000),
        };
        (0..len)
            .map(|_| match self.below(8) {
                0 => b'\r',
                1 => b'\n',
                _ => self.next() as u8,
            })
            .collect()
    }

    /// Printable text without CR or LF, for simple strings and errors.
    fn line(&mut self) -> String {
        let len = self.below(40);
        (0..len)
            .map(|_| char::from(b' ' + self.below(95) as u8))
            .collect()
    }

    fn integer(&mut self) -> i64 {
        match self.below(6) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => 0,
            3 => -(self.below(1000) as i64),
            _ => self.next() as i64,
        }
    }

    fn double(&mut self) -> f64 {
        match self.below(8) {
            0 => f64::INFINITY,
            1 => f64::NEG_INFINITY,
            2 => 0.0,
            3 => self.integer() as f64,
            _ => loop {
                // Any finite double: Rust's `Display` writes the shortest
                // text that parses back to the same bits.
                let d = f64::from_bits(self.next());
                if d.is_finite() {
                    break d;
                }
            },
        }
    }
}

/// The seed of the run: fixed, or `RESP_PROPS_SEED` to replay a failure.
fn seed() -> u64 {
    std::env::var("RESP_PROPS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0F1E_57AB)
}

// ----- random values ------------------------------------------------------------

/// A value both implementations spell the same way in `proto`: RESP2's five
/// types, or all of RESP3's (a push only at the top, where servers send it).
fn value(rng: &mut Rng, proto: Protocol, depth: u32, top: bool) -> Value {
    let kinds = match proto {
        Protocol::Resp2 => 6,
        Protocol::Resp3 => 12,
    };
    // Aggregates get rarer as values nest.
    let kind = loop {
        let k = rng.below(kinds);
        let aggregate = matches!(k, 5 | 9 | 10 | 11);
        if !aggregate || rng.below(u64::from(depth) + 1) == 0 {
            break k;
        }
    };
    let elements = |rng: &mut Rng| match rng.below(4) {
        0 => 0,
        _ => rng.below(8) as usize,
    };
    match kind {
        0 => Value::Simple(rng.line()),
        1 => Value::Error(format!("ERR {}", rng.line())),
        2 => Value::Integer(rng.integer()),
        3 => Value::Bulk(rng.bytes()),
        4 => Value::Null,
        5 => {
            let n = elements(rng);
            let items = (0..n)
                .map(|_| value(rng, proto, depth + 1, false))
                .collect();
            if top && proto == Protocol::Resp3 && rng.chance(20) {
                Value::Push(items)
            } else {
                Value::Array(items)
            }
        }
        6 => Value::Double(rng.double()),
        7 => Value::Boolean(rng.chance(50)),
        8 => Value::BigNumber(format!(
            "{}{}{:019}",
            if rng.chance(30) { "-" } else { "" },
            1 + rng.below(9),
            rng.next() % 10_000_000_000_000_000_000
        )),
        9 => {
            let n = elements(rng);
            let keys = distinct_keys(rng, n);
            Value::Map(
                keys.into_iter()
                    .map(|k| (k, value(rng, proto, depth + 1, false)))
                    .collect(),
            )
        }
        10 => {
            let n = elements(rng);
            Value::Set(distinct_keys(rng, n))
        }
        _ => Value::Array(vec![value(rng, proto, depth + 1, false)]), // a chain
    }
}

/// Up to `n` distinct scalars: map keys and set members (theirs keeps them
/// in hashed collections, so they must differ).
fn distinct_keys(rng: &mut Rng, n: usize) -> Vec<Value> {
    let mut keys: Vec<Value> = Vec::new();
    for _ in 0..n {
        let key = match rng.below(3) {
            0 => Value::Bulk(rng.bytes()),
            1 => Value::Simple(rng.line()),
            _ => Value::Integer(rng.integer()),
        };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

// ----- between our values and their frames --------------------------------

fn to_resp2(v: &Value) -> Frame2 {
    match v {
        Value::Simple(s) => Frame2::SimpleString(s.clone().into_bytes()),
        Value::Error(e) => Frame2::Error(e.clone()),
        Value::Integer(i) => Frame2::Integer(*i),
        Value::Bulk(b) => Frame2::BulkString(b.clone()),
        Value::Null => Frame2::Null,
        Value::Array(items) => Frame2::Array(items.iter().map(to_resp2).collect()),
        other => panic!("not a RESP2 value: {other:?}"),
    }
}

fn from_resp2(f: Frame2) -> Value {
    match f {
        Frame2::SimpleString(s) => Value::Simple(String::from_utf8(s).unwrap()),
        Frame2::Error(e) => Value::Error(e),
        Frame2::Integer(i) => Value::Integer(i),
        Frame2::BulkString(b) => Value::Bulk(b),
        Frame2::Null => Value::Null,
        Frame2::Array(items) => Value::Array(items.into_iter().map(from_resp2).collect()),
    }
}

/// Our value as their frame. With a `rng`, it also takes forms ours reads
/// but never writes: a bulk string as a verbatim string, an error as a blob
/// error, and attributes on any value (which our decoder drops).
fn to_resp3(v: &Value, mut rng: Option<&mut Rng>) -> Frame3 {
    let mut vary = |percent| rng.as_deref_mut().is_some_and(|r| r.chance(percent));
    let (blob, verbatim, attributed) = (vary(30), vary(20), vary(10));
    let attributes = attributed.then(|| {
        let mut map = FrameMap::new();
        map.insert(
            Frame3::SimpleString {
                data: b"ttl".to_vec(),
                attributes: None,
            },
            Frame3::Number {
                data: 3600,
                attributes: None,
            },
        );
        map
    });
    let mut nested = |items: &[Value]| -> Vec<Frame3> {
        items
            .iter()
            .map(|i| to_resp3(i, rng.as_deref_mut()))
            .collect()
    };
    match v {
        Value::Simple(s) => Frame3::SimpleString {
            data: s.clone().into_bytes(),
            attributes,
        },
        Value::Error(e) if blob => Frame3::BlobError {
            data: e.clone().into_bytes(),
            attributes,
        },
        Value::Error(e) => Frame3::SimpleError {
            data: e.clone(),
            attributes,
        },
        Value::Integer(i) => Frame3::Number {
            data: *i,
            attributes,
        },
        Value::Bulk(b) if verbatim => Frame3::VerbatimString {
            data: b.clone(),
            format: if blob {
                VerbatimStringFormat::Markdown
            } else {
                VerbatimStringFormat::Text
            },
            attributes,
        },
        Value::Bulk(b) => Frame3::BlobString {
            data: b.clone(),
            attributes,
        },
        Value::Null => Frame3::Null,
        Value::Array(items) => Frame3::Array {
            data: nested(items),
            attributes,
        },
        Value::Push(items) => Frame3::Push {
            data: nested(items),
            attributes,
        },
        Value::Set(items) => Frame3::Set {
            data: nested(items).into_iter().collect::<FrameSet<_>>(),
            attributes,
        },
        Value::Map(pairs) => {
            let mut map = FrameMap::new();
            for (k, v) in pairs {
                // Keys plain: theirs hashes them, attributes included.
                map.insert(to_resp3(k, None), to_resp3(v, rng.as_deref_mut()));
            }
            Frame3::Map {
                data: map,
                attributes,
            }
        }
        Value::Double(d) => Frame3::Double {
            data: *d,
            attributes,
        },
        Value::Boolean(b) => Frame3::Boolean {
            data: *b,
            attributes,
        },
        Value::BigNumber(n) => Frame3::BigNumber {
            data: n.clone().into_bytes(),
            attributes,
        },
    }
}

fn from_resp3(f: Frame3) -> Value {
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    match f {
        Frame3::SimpleString { data, .. } => Value::Simple(text(data)),
        Frame3::SimpleError { data, .. } => Value::Error(data),
        Frame3::BlobError { data, .. } => Value::Error(text(data)),
        Frame3::Number { data, .. } => Value::Integer(data),
        Frame3::BlobString { data, .. } | Frame3::VerbatimString { data, .. } => Value::Bulk(data),
        Frame3::Null => Value::Null,
        Frame3::Array { data, .. } => Value::Array(data.into_iter().map(from_resp3).collect()),
        Frame3::Push { data, .. } => Value::Push(data.into_iter().map(from_resp3).collect()),
        Frame3::Set { data, .. } => Value::Set(data.into_iter().map(from_resp3).collect()),
        Frame3::Map { data, .. } => Value::Map(
            data.into_iter()
                .map(|(k, v)| (from_resp3(k), from_resp3(v)))
                .collect(),
        ),
        Frame3::Double { data, .. } => Value::Double(data),
        Frame3::Boolean { data, .. } => Value::Boolean(data),
        Frame3::BigNumber { data, .. } => Value::BigNumber(text(data)),
        other => panic!("a frame ours never writes: {other:?}"),
    }
}

/// `v` with its maps' pairs and sets' members in one canonical order:
/// RESP3 maps and sets are unordered, and theirs does not keep the order
/// of the wire.
fn canonical(v: Value) -> Value {
    let sorted = |mut items: Vec<Value>| {
        items.sort_by_key(|i| format!("{i:?}"));
        items
    };
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        Value::Push(items) => Value::Push(items.into_iter().map(canonical).collect()),
        Value::Set(items) => Value::Set(sorted(items.into_iter().map(canonical).collect())),
        Value::Map(pairs) => {
            let mut pairs: Vec<(Value, Value)> = pairs
                .into_iter()
                .map(|(k, v)| (canonical(k), canonical(v)))
                .collect();
            pairs.sort_by_key(|(k, _)| format!("{k:?}"));
            Value::Map(pairs)
        }
        other => other,
    }
}

fn encode_resp2(frame: &Frame2, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + frame.encode_len(false), 0);
    let n = redis_protocol::resp2::encode::encode(&mut out[start..], frame, false).unwrap();
    out.truncate(start + n);
}

fn encode_resp3(frame: &Frame3, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + frame.encode_len(false), 0);
    let n =
        redis_protocol::resp3::encode::complete::encode(&mut out[start..], frame, false).unwrap();
    out.truncate(start + n);
}

// ----- feeding a stream in random chunks ------------------------------------------

/// Cut points for `len` bytes: many tiny reads, some larger, as a socket
/// under load delivers them.
fn chunks(rng: &mut Rng, len: usize) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    while at < len {
        at += match rng.below(4) {
            0 => 1,
            1 => 1 + rng.below(8) as usize,
            2 => 1 + rng.below(64) as usize,
            _ => 1 + rng.below(4096) as usize,
        };
        ends.push(at.min(len));
    }
    ends
}

/// Feeds `stream` to `decode` as reads would: what has arrived, less what
/// has been consumed, after each chunk; every value decoded as soon as it
/// is whole. `decode` returns a value and its length, or `None` to wait.
fn feed<T>(
    rng: &mut Rng,
    stream: &[u8],
    mut decode: impl FnMut(&[u8]) -> Option<(T, usize)>,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut pos = 0;
    for end in chunks(rng, stream.len()) {
        while pos < end {
            match decode(&stream[pos..end]) {
                Some((value, len)) => {
                    assert!(len > 0 && pos + len <= end);
                    out.push(value);
                    pos += len;
                }
                None => break,
            }
        }
    }
    assert_eq!(pos, stream.len(), "the stream was not consumed whole");
    out
}

/// A few values, as a pipeline of replies or pushes would carry them.
fn values(rng: &mut Rng, proto: Protocol) -> Vec<Value> {
    let n = 1 + rng.below(6);
    (0..n).map(|_| value(rng, proto, 0, true)).collect()
}

/// Runs `check` on `CASES` cases, each with its own generator, naming the
/// seed of one that fails.
fn cases(name: &str, check: impl Fn(&mut Rng)) {
    let base = seed();
    for case in 0..CASES {
        let case_seed = base.wrapping_add(case.wrapping_mul(0x1000_0001));
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&mut Rng(case_seed))));
        if let Err(panic) = result {
            eprintln!("{name}: case {case} failed; replay with RESP_PROPS_SEED={case_seed}");
            std::panic::resume_unwind(panic);
        }
    }
}

// ----- the properties ---------------------------------------------------------------------

#[test]
fn resp2_theirs_encode_ours_decode_in_random_chunks() {
    cases("resp2 theirs -> ours", |rng| {
        let sent = values(rng, Protocol::Resp2);
        let mut stream = Vec::new();
        sent.iter()
            .for_each(|v| encode_resp2(&to_resp2(v), &mut stream));
        let decoder = ValueDecoder::new(Limits::default());
        let got = feed(rng, &stream, |buf| decoder.decode(buf).unwrap());
        assert_eq!(got, sent);
        let mut reader = ValueReader::new(Limits::default());
        let got = feed(rng, &stream, |buf| reader.decode(buf).unwrap());
        assert_eq!(got, sent);
    });
}

#[test]
fn resp2_ours_encode_theirs_decode_in_random_chunks() {
    cases("resp2 ours -> theirs", |rng| {
        let sent = values(rng, Protocol::Resp2);
        let mut stream = Vec::new();
        sent.iter()
            .for_each(|v| v.encode(&mut stream, Protocol::Resp2));
        let got = feed(rng, &stream, |buf| {
            redis_protocol::resp2::decode::decode(buf).unwrap()
        });
        let got: Vec<Value> = got.into_iter().map(from_resp2).collect();
        assert_eq!(got, sent);
    });
}

#[test]
fn resp3_theirs_encode_ours_decode_in_random_chunks() {
    cases("resp3 theirs -> ours", |rng| {
        let sent = values(rng, Protocol::Resp3);
        let mut stream = Vec::new();
        for v in &sent {
            // Verbatim strings, blob errors and attributes too.
            let frame = to_resp3(v, Some(rng));
            encode_resp3(&frame, &mut stream);
        }
        let sent: Vec<Value> = sent.into_iter().map(canonical).collect();
        let decoder = ValueDecoder::new(Limits::default());
        let got = feed(rng, &stream, |buf| decoder.decode(buf).unwrap());
        let got: Vec<Value> = got.into_iter().map(canonical).collect();
        assert_eq!(got, sent);
        let mut reader = ValueReader::new(Limits::default());
        let got = feed(rng, &stream, |buf| reader.decode(buf).unwrap());
        let got: Vec<Value> = got.into_iter().map(canonical).collect();
        assert_eq!(got, sent);
    });
}

#[test]
fn resp3_ours_encode_theirs_decode_in_random_chunks() {
    cases("resp3 ours -> theirs", |rng| {
        let sent = values(rng, Protocol::Resp3);
        let mut stream = Vec::new();
        sent.iter()
            .for_each(|v| v.encode(&mut stream, Protocol::Resp3));
        let got = feed(rng, &stream, |buf| {
            redis_protocol::resp3::decode::complete::decode(buf).unwrap()
        });
        let got: Vec<Value> = got.into_iter().map(|f| canonical(from_resp3(f))).collect();
        let sent: Vec<Value> = sent.into_iter().map(canonical).collect();
        assert_eq!(got, sent);
    });
}

#[test]
fn commands_theirs_encode_our_request_decoder_reads_in_random_chunks() {
    cases("commands theirs -> ours", |rng| {
        let commands: Vec<Vec<Vec<u8>>> = (0..1 + rng.below(8))
            .map(|_| (0..1 + rng.below(6)).map(|_| rng.bytes()).collect())
            .collect();
        let mut stream = Vec::new();
        for args in &commands {
            let frame = Frame2::Array(args.iter().cloned().map(Frame2::BulkString).collect());
            encode_resp2(&frame, &mut stream);
        }
        let mut decoder = RequestDecoder::new(Limits::default());
        let got = feed(rng, &stream, |buf| {
            let len = decoder.decode(buf).unwrap()?;
            let args: Vec<Vec<u8>> = decoder.args(buf).map(<[u8]>::to_vec).collect();
            Some((args, len))
        });
        assert_eq!(got, commands);
    });
}

#[test]
fn commands_ours_encode_theirs_decode_in_random_chunks() {
    cases("commands ours -> theirs", |rng| {
        let commands: Vec<Vec<Vec<u8>>> = (0..1 + rng.below(8))
            .map(|_| (0..1 + rng.below(6)).map(|_| rng.bytes()).collect())
            .collect();
        let mut stream = Vec::new();
        commands
            .iter()
            .for_each(|args| encode::command(&mut stream, args));
        let got = feed(rng, &stream, |buf| {
            redis_protocol::resp2::decode::decode(buf).unwrap()
        });
        let expected: Vec<Frame2> = commands
            .iter()
            .map(|args| Frame2::Array(args.iter().cloned().map(Frame2::BulkString).collect()))
            .collect();
        assert_eq!(got, expected);
    });
}

// ----- the bounds ---------------------------------------------------------------------

struct Counting;

thread_local! {
    /// Bytes requested from the allocator on this thread while counting.
    static REQUESTED: Cell<Option<usize>> = const { Cell::new(None) };
}

fn note(bytes: usize) {
    REQUESTED.with(|r| {
        if let Some(n) = r.get() {
            r.set(Some(n + bytes));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// thread-local counter does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What `f` returns and the bytes it asked the allocator for.
fn allocated<T>(f: impl FnOnce() -> T) -> (T, usize) {
    REQUESTED.with(|r| r.set(Some(0)));
    let out = f();
    let bytes = REQUESTED.with(|r| r.replace(None)).unwrap_or(0);
    (out, bytes)
}

#[test]
fn hostile_lengths_are_errors_and_reserve_nothing() {
    let values = ValueDecoder::new(Limits::default());
    for (input, error) in [
        (&b"$9999999999\r\n"[..], ProtocolError::InvalidBulkLength),
        (b"=9999999999\r\n", ProtocolError::InvalidBulkLength),
        (b"!9999999999\r\n", ProtocolError::InvalidBulkLength),
        (b"*9999999999\r\n", ProtocolError::InvalidMultibulkLength),
        (b"%9999999999\r\n", ProtocolError::InvalidMultibulkLength),
        (b"~9999999999\r\n", ProtocolError::InvalidMultibulkLength),
        (b">9999999999\r\n", ProtocolError::InvalidMultibulkLength),
        (b"|9999999999\r\n", ProtocolError::InvalidMultibulkLength),
        (
            b"*9223372036854775807\r\n",
            ProtocolError::InvalidMultibulkLength,
        ),
        (
            b"$99999999999999999999\r\n",
            ProtocolError::InvalidBulkLength,
        ),
    ] {
        let (result, bytes) = allocated(|| values.decode(input));
        assert_eq!(result, Err(error), "{}", input.escape_ascii());
        assert_eq!(bytes, 0, "{} allocated", input.escape_ascii());
    }
    let mut requests = RequestDecoder::new(Limits::default());
    for (input, error) in [
        (
            &b"*9999999999\r\n"[..],
            ProtocolError::InvalidMultibulkLength,
        ),
        (b"*1\r\n$9999999999\r\n", ProtocolError::InvalidBulkLength),
    ] {
        let (result, bytes) = allocated(|| requests.decode(input));
        assert_eq!(result, Err(error), "{}", input.escape_ascii());
        assert_eq!(bytes, 0, "{} allocated", input.escape_ascii());
    }
}

#[test]
fn lengths_under_the_limits_wait_for_the_data_and_reserve_nothing_for_it() {
    let values = ValueDecoder::new(Limits::default());
    // 512 MiB announced, a few bytes sent: the decoder waits, holding no
    // buffer for the rest (the caller's input buffer grows only as the
    // peer really sends).
    let (result, bytes) = allocated(|| values.decode(b"$536870912\r\nabc"));
    assert_eq!(result, Ok(None));
    assert_eq!(bytes, 0);
    // A million elements announced, one sent: at most what the bytes
    // present could hold is reserved.
    let (result, bytes) = allocated(|| values.decode(b"*1048576\r\n:1\r\n"));
    assert_eq!(result, Ok(None));
    assert!(bytes < 1024, "{bytes} bytes for one element");
    let mut requests = RequestDecoder::new(Limits::default());
    let (result, bytes) = allocated(|| requests.decode(b"*1048576\r\n$536870912\r\nab"));
    assert_eq!(result, Ok(None));
    assert!(bytes < 1024, "{bytes} bytes");
}

#[test]
fn nesting_past_the_depth_limit_is_an_error_not_a_stack_overflow() {
    let limits = Limits::default();
    let decoder = ValueDecoder::new(limits);
    let nested = |depth: usize| {
        let mut input = b"*1\r\n".repeat(depth);
        input.extend_from_slice(b":1\r\n");
        input
    };
    // As deep as allowed decodes; one more is an error.
    let (mut value, _) = decoder.decode(&nested(limits.max_depth)).unwrap().unwrap();
    for _ in 0..limits.max_depth {
        let Value::Array(mut items) = value else {
            panic!("not an array")
        };
        value = items.pop().unwrap();
    }
    assert_eq!(value, Value::Integer(1));
    assert_eq!(
        decoder.decode(&nested(limits.max_depth + 1)),
        Err(ProtocolError::TooDeep)
    );
    // A hostile depth, in every aggregate type and through map values
    // and attributes.
    for prefix in [
        &b"*1\r\n"[..],
        b"~1\r\n",
        b">1\r\n",
        b"%1\r\n:1\r\n",
        b"|1\r\n:1\r\n",
    ] {
        let input = prefix.repeat(1_000_000);
        assert_eq!(decoder.decode(&input), Err(ProtocolError::TooDeep));
        let mut reader = ValueReader::new(limits);
        assert_eq!(reader.decode(&input), Err(ProtocolError::TooDeep));
    }
}

#[test]
fn a_long_run_of_attributes_costs_no_stack() {
    let decoder = ValueDecoder::new(Limits::default());
    // A million empty attributes before a value: skipped in a loop.
    let mut input = b"|0\r\n".repeat(1_000_000);
    assert_eq!(decoder.decode(&input), Ok(None));
    input.extend_from_slice(b"+OK\r\n");
    assert_eq!(
        decoder.decode(&input),
        Ok(Some((Value::Simple("OK".into()), input.len())))
    );
}

#[test]
fn a_reader_keeps_its_place_and_parses_a_large_aggregate_once() {
    // 200,000 elements arriving 1,000 bytes at a time: the reader's work
    // per read is the new bytes (the allocator sees each element once),
    // where a decoder without progress would rebuild every element so far
    // on every read.
    let n = 200_000;
    let mut input = format!("*{n}\r\n").into_bytes();
    for i in 0..n {
        input.extend_from_slice(format!(":{i}\r\n").as_bytes());
    }
    let mut reader = ValueReader::new(Limits::default());
    let mut end = 0;
    let mut requested = 0;
    let value = loop {
        end = (end + 1000).min(input.len());
        let (result, bytes) = allocated(|| reader.decode(&input[..end]));
        requested += bytes;
        if let Some((value, len)) = result.unwrap() {
            assert_eq!(len, input.len());
            break value;
        }
    };
    let Value::Array(items) = value else {
        panic!("not an array")
    };
    assert_eq!(items.len(), n);
    assert_eq!(items[n - 1], Value::Integer(n as i64 - 1));
    // The items' vector grows by doubling: a few times its final size in
    // all (16 MB would be a rebuild per read).
    assert!(requested < 4 * n * size_of::<Value>(), "{requested} bytes");
}

#[test]
fn the_depth_limit_is_configurable() {
    let decoder = ValueDecoder::new(Limits {
        max_depth: 0,
        ..Limits::default()
    });
    assert_eq!(decoder.decode(b":1\r\n"), Ok(Some((Value::Integer(1), 4))));
    assert_eq!(
        decoder.decode(b"*0\r\n"),
        Ok(Some((Value::Array(vec![]), 4)))
    );
    assert_eq!(decoder.decode(b"*1\r\n:1\r\n"), Err(ProtocolError::TooDeep));
}
