//! The decoder's rules, one test per rule, on frames built byte by byte.

use super::*;

const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// A raw frame: any FIN, any opcode bits (reserved ones included), any
/// key; the length in its shortest form.
fn frame(fin: bool, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    write_header(&mut out, Opcode::Binary, payload.len(), key);
    out[0] = if fin { 0x80 } else { 0 } | opcode;
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = key {
        mask(&mut out[start..], key);
    }
    out
}

/// A client's (masked) frame.
fn client(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, opcode, payload, Some(KEY))
}

/// A message, owned, so that a test can keep a list of them.
#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

impl From<Message<'_>> for Owned {
    fn from(message: Message<'_>) -> Owned {
        match message {
            Message::Text(t) => Owned::Text(t.to_string()),
            Message::Binary(b) => Owned::Binary(b.to_vec()),
            Message::Ping(p) => Owned::Ping(p.to_vec()),
            Message::Pong(p) => Owned::Pong(p.to_vec()),
            Message::Close(code, reason) => Owned::Close(code, reason.to_string()),
        }
    }
}

/// Everything `decoder` makes of `input` fed in pieces of `step` bytes,
/// as the connection layer would: what is not consumed is kept and fed
/// again with the next piece. Stops at the first error.
fn feed(decoder: &mut Decoder, input: &[u8], step: usize) -> (Vec<Owned>, Option<Error>) {
    let mut messages = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for piece in input.chunks(step.max(1)) {
        pending.extend_from_slice(piece);
        let mut used = 0;
        loop {
            match decoder.decode(&pending[used..]) {
                Ok((n, message)) => {
                    used += n;
                    match message {
                        Some(message) => messages.push(Owned::from(message)),
                        None => break,
                    }
                }
                Err(error) => return (messages, Some(error)),
            }
        }
        // The decoder consumes partial frames: nothing is ever left over.
        assert_eq!(used, pending.len(), "the decoder left input unconsumed");
        pending.drain(..used);
    }
    (messages, None)
}

fn server() -> Decoder {
    Decoder::new(Role::Server, Limits::default())
}

/// What a server decoder makes of `input`, fed whole.
fn decode_all(input: &[u8]) -> (Vec<Owned>, Option<Error>) {
    feed(&mut server(), input, input.len())
}

/// The close code `input` fails with (0 if it does not fail).
fn failure(input: &[u8]) -> u16 {
    decode_all(input).1.map_or(0, |e| e.code)
}

#[test]
fn a_masked_frame_is_unmasked() {
    let (messages, error) = decode_all(&client(true, 1, b"Hello"));
    assert_eq!((messages, error), (vec![Owned::Text("Hello".into())], None));
    // RFC 6455 §5.7's bytes, exactly.
    let rfc = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(decode_all(&rfc).0, [Owned::Text("Hello".into())]);
}

#[test]
fn an_unmasked_client_frame_is_a_protocol_error() {
    let (messages, error) = decode_all(&frame(true, 1, b"Hello", None));
    assert!(messages.is_empty());
    assert_eq!(error, Some(Error::protocol("unmasked frame from a client")));
    // Found from the first two bytes, before the payload arrives.
    assert_eq!(server().decode(&[0x81, 0x05]).unwrap_err().code, 1002);
}

#[test]
fn a_client_decodes_unmasked_frames_and_refuses_masked_ones() {
    let mut decoder = Decoder::new(Role::Client, Limits::default());
    let (messages, error) = feed(&mut decoder, &frame(true, 2, b"\x00\x01", None), 100);
    assert_eq!((messages, error), (vec![Owned::Binary(vec![0, 1])], None));
    let mut decoder = Decoder::new(Role::Client, Limits::default());
    assert_eq!(
        decoder.decode(&client(true, 2, b"x")).unwrap_err().code,
        1002
    );
}

#[test]
fn lengths_of_7_16_and_64_bits() {
    for len in [0, 1, 125, 126, 127, 65535, 65536, 200_000] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let (messages, error) = decode_all(&client(true, 2, &payload));
        assert_eq!(
            (messages, error),
            (vec![Owned::Binary(payload)], None),
            "{len}"
        );
    }
}

#[test]
fn fragments_are_reassembled() {
    let mut input = client(false, 1, b"Hel");
    input.extend(client(false, 0, b""));
    input.extend(client(false, 0, b"lo, "));
    input.extend(client(true, 0, b"world"));
    input.extend(client(false, 2, &[1, 2]));
    input.extend(client(true, 0, &[3]));
    let (messages, error) = decode_all(&input);
    assert_eq!(error, None);
    assert_eq!(
        messages,
        [
            Owned::Text("Hello, world".into()),
            Owned::Binary(vec![1, 2, 3])
        ]
    );
}

#[test]
fn control_frames_come_between_fragments() {
    let mut input = client(false, 1, b"fragment ");
    input.extend(client(true, 9, b"ping 1"));
    input.extend(client(false, 0, b"two "));
    input.extend(client(true, 10, b"pong"));
    input.extend(client(true, 9, b""));
    input.extend(client(true, 0, b"done"));
    let (messages, error) = decode_all(&input);
    assert_eq!(error, None);
    assert_eq!(
        messages,
        [
            Owned::Ping(b"ping 1".to_vec()),
            Owned::Pong(b"pong".to_vec()),
            Owned::Ping(vec![]),
            Owned::Text("fragment two done".into()),
        ]
    );
    // A close in the middle of a message ends it: the rest is ignored.
    let mut input = client(false, 1, b"never ");
    input.extend(client(true, 8, &1000u16.to_be_bytes()));
    input.extend(client(true, 0, b"finished"));
    assert_eq!(
        decode_all(&input),
        (vec![Owned::Close(Some(1000), String::new())], None)
    );
}

#[test]
fn ping_and_pong_payloads_up_to_125_bytes() {
    let full = [0xabu8; 125];
    let mut input = client(true, 9, &full);
    input.extend(client(true, 10, &full[..7]));
    assert_eq!(
        decode_all(&input),
        (
            vec![Owned::Ping(full.to_vec()), Owned::Pong(full[..7].to_vec())],
            None
        )
    );
    assert_eq!(failure(&client(true, 9, &[0; 126])), 1002);
    assert_eq!(failure(&client(true, 10, &[0; 65536])), 1002);
    assert_eq!(failure(&client(true, 8, &[0x03; 126])), 1002);
}

#[test]
fn control_frames_are_never_fragmented() {
    for opcode in [8, 9, 10] {
        assert_eq!(failure(&client(false, opcode, b"")), 1002, "{opcode}");
    }
}

#[test]
fn reserved_bits_and_unknown_opcodes_are_protocol_errors() {
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        let mut input = client(true, 1, b"x");
        input[0] |= rsv;
        assert_eq!(failure(&input), 1002, "rsv {rsv:#x}");
        // Refused from the first two bytes.
        assert_eq!(server().decode(&input[..2]).unwrap_err().code, 1002);
    }
    for opcode in (3..=7).chain(11..=15) {
        assert_eq!(failure(&client(true, opcode, b"")), 1002, "opcode {opcode}");
    }
}

#[test]
fn continuations_need_a_message_and_messages_do_not_nest() {
    assert_eq!(failure(&client(true, 0, b"stray")), 1002);
    assert_eq!(failure(&client(false, 0, b"stray")), 1002);
    for second in [1, 2] {
        let mut input = client(false, 1, b"first ");
        input.extend(client(true, second, b"second"));
        assert_eq!(failure(&input), 1002, "{second}");
    }
    // After a finished message a continuation is stray again.
    let mut input = client(true, 2, b"whole");
    input.extend(client(true, 0, b"more"));
    let (messages, error) = decode_all(&input);
    assert_eq!(messages.len(), 1);
    assert_eq!(error.map(|e| e.code), Some(1002));
}

#[test]
fn a_64_bit_length_with_the_top_bit_set_is_refused() {
    let mut input = vec![0x82, 0xff];
    input.extend_from_slice(&(1u64 << 63).to_be_bytes());
    input.extend_from_slice(&KEY);
    assert_eq!(failure(&input), 1002);
}

#[test]
fn every_close_code_follows_the_rules() {
    for code in 0..=u16::MAX {
        let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(b"why");
        let (messages, error) = decode_all(&client(true, 8, &body));
        if valid {
            assert_eq!(messages, [Owned::Close(Some(code), "why".into())], "{code}");
        } else {
            assert_eq!(error.map(|e| e.code), Some(1002), "{code}");
        }
    }
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        assert!(!close_code::is_valid(code), "{code}");
    }
}

#[test]
fn close_bodies_empty_short_and_not_utf8() {
    assert_eq!(
        decode_all(&client(true, 8, b"")).0,
        [Owned::Close(None, String::new())]
    );
    assert_eq!(failure(&client(true, 8, &[3])), 1002);
    assert_eq!(failure(&client(true, 8, &[3, 232, 0xff])), 1007);
    let mut body = 1001u16.to_be_bytes().to_vec();
    body.extend_from_slice("κόσμε".as_bytes());
    assert_eq!(
        decode_all(&client(true, 8, &body)).0,
        [Owned::Close(Some(1001), "κόσμε".into())]
    );
}

#[test]
fn nothing_after_a_close_counts() {
    let mut decoder = server();
    let mut input = client(true, 8, &1000u16.to_be_bytes());
    input.extend(frame(true, 1, b"unmasked, ignored", None));
    let (messages, error) = feed(&mut decoder, &input, input.len());
    assert_eq!((messages.len(), error), (1, None));
    assert_eq!(decoder.decode(b"anything").unwrap(), (8, None));
}

#[test]
fn an_error_is_final() {
    let mut decoder = server();
    let first = decoder.decode(&frame(true, 1, b"x", None)).unwrap_err();
    assert_eq!(
        decoder.decode(&client(true, 1, b"fine")).unwrap_err(),
        first
    );
}

#[test]
fn utf8_split_at_every_byte_position() {
    // One to four bytes per character.
    let text = "a\u{e9}\u{3ba}\u{1f600}z\u{10ffff}";
    let bytes = text.as_bytes();
    for cut in 0..=bytes.len() {
        // In two fragments.
        let mut input = client(false, 1, &bytes[..cut]);
        input.extend(client(true, 0, &bytes[cut..]));
        assert_eq!(
            decode_all(&input),
            (vec![Owned::Text(text.into())], None),
            "fragments cut at {cut}"
        );
        // In one frame that arrives in two reads.
        let whole = client(true, 1, bytes);
        for step in [1, 2, 3, 5, cut.max(1)] {
            let (messages, error) = feed(&mut server(), &whole, step);
            assert_eq!(
                (messages, error),
                (vec![Owned::Text(text.into())], None),
                "step {step}"
            );
        }
    }
}

#[test]
fn invalid_utf8_is_refused_as_soon_as_it_arrives() {
    // Never valid: a lone continuation byte, an overlong form, a surrogate,
    // past U+10FFFF, a truncated character before an ASCII byte.
    for bad in [
        &b"\x80"[..],
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82a",
    ] {
        let mut payload = b"ok so far ".to_vec();
        payload.extend_from_slice(bad);
        // Whole, as the final frame.
        assert_eq!(failure(&client(true, 1, &payload)), 1007, "{bad:?}");
        // As the first fragment, with no second one sent: fail fast.
        assert_eq!(
            failure(&client(false, 1, &payload)),
            1007,
            "{bad:?} first fragment"
        );
        // Inside a frame whose end has not arrived yet.
        let mut long = payload.clone();
        long.extend_from_slice(&[b'x'; 1000]);
        let frame = client(true, 1, &long);
        let cut = frame.len() - 1000;
        assert_eq!(
            server().decode(&frame[..cut]).unwrap_err().code,
            1007,
            "{bad:?} in part"
        );
    }
    // A character cut short at the end of the message.
    assert_eq!(failure(&client(true, 1, b"\xe2\x82")), 1007);
    let mut input = client(false, 1, b"\xe2\x82");
    input.extend(client(true, 0, b""));
    assert_eq!(failure(&input), 1007);
    // Binary messages are not checked.
    assert_eq!(
        decode_all(&client(true, 2, b"\xff")).0,
        [Owned::Binary(vec![0xff])]
    );
}

#[test]
fn a_message_over_the_limit_is_refused_from_the_header() {
    let limits = Limits { max_message: 1000 };
    let at_limit = client(true, 2, &[7; 1000]);
    let (messages, error) = feed(&mut Decoder::new(Role::Server, limits), &at_limit, 64);
    assert_eq!((messages.len(), error), (1, None));

    let over = client(true, 2, &[7; 1001]);
    let error = Decoder::new(Role::Server, limits)
        .decode(&over[..4])
        .unwrap_err();
    assert_eq!(error.code, 1009);
    // Fragments add up: the third one takes the message over.
    let mut input = client(false, 1, &[b'a'; 400]);
    input.extend(client(false, 0, &[b'b'; 400]));
    input.extend(client(true, 0, &[b'c'; 201]));
    let (messages, error) = feed(&mut Decoder::new(Role::Server, limits), &input, 10);
    assert!(messages.is_empty());
    assert_eq!(error.map(|e| e.code), Some(1009));
}

#[test]
fn a_100_mib_header_is_refused_without_allocating() {
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(100u64 << 20).to_be_bytes());
    let mut decoder = server();
    // Refused from the length alone, before the key.
    assert_eq!(decoder.decode(&header).unwrap_err().code, 1009);
    assert_eq!(decoder.buffer_capacity(), 0);
}

#[test]
fn one_byte_at_a_time_gives_the_same_messages() {
    let mut input = Vec::new();
    input.extend(client(true, 1, "héllo".as_bytes()));
    input.extend(client(false, 2, &[0; 300]));
    input.extend(client(true, 9, b"are you there"));
    input.extend(client(true, 0, &[1; 70_000]));
    input.extend(client(true, 10, b""));
    input.extend(client(false, 1, "\u{1f600}".as_bytes()));
    input.extend(client(true, 0, b"!"));
    input.extend(client(true, 8, &[0x03, 0xe8, b'o', b'k']));
    let whole = decode_all(&input);
    assert_eq!(whole.1, None);
    assert_eq!(whole.0.len(), 6);
    for step in [1, 2, 7, 13, 4096] {
        assert_eq!(feed(&mut server(), &input, step), whole, "step {step}");
    }
}

#[test]
fn the_buffer_is_reused_and_large_ones_given_back() {
    let mut decoder = server();
    let big = client(true, 2, &[1; 200_000]);
    let (messages, _) = feed(&mut decoder, &big, big.len());
    assert_eq!(messages.len(), 1);
    let small = client(true, 2, b"x");
    assert_eq!(
        decoder.decode(&small).unwrap().1,
        Some(Message::Binary(b"x"))
    );
    assert!(decoder.buffer_capacity() < 200_000);
}

#[test]
fn the_buffer_never_grows_past_the_limit() {
    let limits = Limits {
        max_message: 600_000,
    };
    let mut decoder = Decoder::new(Role::Server, limits);
    // 600 000 bytes in 3 fragments that arrive in small reads: a doubling
    // Vec would reach 1 MiB of capacity.
    let mut input = Vec::new();
    for (opcode, fin) in [(2, false), (0, false), (0, true)] {
        input.extend(client(fin, opcode, &[9; 200_000]));
    }
    let mut pending: &[u8] = &input;
    let mut peak = 0;
    while !pending.is_empty() {
        let step = pending.len().min(1000);
        let (used, message) = decoder.decode(&pending[..step]).unwrap();
        if let Some(message) = message {
            assert_eq!(message, Message::Binary(&[9; 600_000][..]));
        }
        peak = peak.max(decoder.buffer_capacity());
        pending = &pending[used..];
    }
    assert!(peak <= 600_000, "capacity {peak}");
}
