//! The chat server's rule for users' text (`examples/chat_server/text.rs`),
//! tested directly. The server is tested over TCP in `tests/chat.rs`.

#[path = "../examples/chat_server/text.rs"]
mod text;

mod support;

use support::Rng;
use text::{
    is_unsafe_char, may_hold_unsafe, push_json_string, push_line_text, push_line_text_by_char,
};

/// The rule, spelled out here independently of `is_unsafe_char`.
fn unsafe_by_definition(c: char) -> bool {
    let c = u32::from(c);
    c < 0x20
        || (0x7F..=0x9F).contains(&c)
        || (0x202A..=0x202E).contains(&c)
        || (0x2066..=0x2069).contains(&c)
}

fn every_char() -> impl Iterator<Item = char> {
    (0..=u32::from(char::MAX)).filter_map(char::from_u32)
}

fn line(text: &str) -> String {
    let mut out = Vec::new();
    push_line_text(&mut out, text);
    String::from_utf8(out).expect("the line filter writes UTF-8")
}

fn line_by_char(text: &str) -> String {
    let mut out = Vec::new();
    push_line_text_by_char(&mut out, text);
    String::from_utf8(out).expect("the line filter writes UTF-8")
}

fn json(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    push_json_string(&mut out, text);
    out
}

#[test]
fn the_predicate_is_the_documented_rule_for_every_char() {
    for c in every_char() {
        assert_eq!(
            is_unsafe_char(c),
            unsafe_by_definition(c),
            "U+{:04X}",
            c as u32
        );
    }
}

/// The fast path's soundness, for every character: an unsafe one always
/// sends its string down the careful path. A string's bytes are its
/// characters' bytes, so this covers every string.
#[test]
fn no_unsafe_char_escapes_the_fast_path_test() {
    let mut buf = [0; 4];
    for c in every_char().filter(|&c| is_unsafe_char(c)) {
        assert!(
            may_hold_unsafe(c.encode_utf8(&mut buf)),
            "U+{:04X} would take the fast path",
            c as u32
        );
    }
}

#[test]
fn every_c0_c1_and_bidi_char_becomes_a_space_on_a_line() {
    let unsafe_chars: Vec<char> = every_char().filter(|&c| unsafe_by_definition(c)).collect();
    assert_eq!(unsafe_chars.len(), 0x20 + 0x21 + 5 + 4);
    for c in unsafe_chars {
        assert_eq!(line(&format!("a{c}b")), "a b", "U+{:04X}", c as u32);
    }
    // Both sides of a C1 or bidi character's neighbours are left alone.
    for text in [
        "\u{A0}°€“”",
        "\u{2029}\u{202F}\u{2065}\u{206A}",
        "café ∑ 😀",
    ] {
        assert_eq!(line(text), text);
    }
}

/// Characters drawn from where the rule's edges are: ASCII, C0 and DEL, C1
/// and its neighbours, the bidi characters and theirs, other characters
/// whose encodings begin with 0xC2 or 0xE2, and any code point at all. A
/// `plain` string takes only ASCII and any code point, so that it usually
/// takes the fast path.
fn random_char(rng: &mut Rng, plain: bool) -> char {
    let pick = |rng: &mut Rng, low: u32, high: u32| {
        char::from_u32(rng.range(low as usize, high as usize) as u32).unwrap_or('\u{FFFD}')
    };
    let kind = match plain {
        true => [0, 7][rng.range(0, 1)],
        false => rng.range(0, 7),
    };
    match kind {
        0 => pick(rng, 0x20, 0x7E),
        1 => pick(rng, 0x00, 0x1F),
        2 => pick(rng, 0x7E, 0xC0),
        3 => pick(rng, 0x2028, 0x2030),
        4 => pick(rng, 0x2064, 0x206B),
        5 => pick(rng, 0x2000, 0x2FFF),
        6 => '\u{7F}',
        _ => pick(rng, 0, u32::from(char::MAX)),
    }
}

#[test]
fn fast_and_careful_paths_agree_on_ten_thousand_random_strings() {
    let mut rng = Rng::new(0x0C1_C0DE);
    let mut fast_paths = 0;
    for round in 0..10_000 {
        let len = rng.range(0, 40);
        let plain = rng.range(0, 2) == 0;
        let input: String = (0..len).map(|_| random_char(&mut rng, plain)).collect();
        fast_paths += usize::from(!may_hold_unsafe(&input));
        let fast = line(&input);
        assert_eq!(fast, line_by_char(&input), "round {round}: {input:?}");
        assert!(
            !fast.chars().any(unsafe_by_definition),
            "round {round}: {fast:?}"
        );
        assert_eq!(fast.chars().count(), input.chars().count(), "{input:?}");
        for (was, now) in input.chars().zip(fast.chars()) {
            let expected = if unsafe_by_definition(was) { ' ' } else { was };
            assert_eq!(now, expected, "round {round}: {input:?}");
        }

        // JSON: the exact text comes back, no unsafe character on the wire,
        // and text with none is written exactly as serde_json writes it.
        let encoded = json(&input);
        let wire = std::str::from_utf8(&encoded).expect("JSON is UTF-8");
        assert!(!wire.chars().any(unsafe_by_definition), "{wire:?}");
        let decoded: String = serde_json::from_str(wire).expect("valid JSON");
        assert_eq!(decoded, input, "round {round}");
        if !input.chars().any(unsafe_by_definition) {
            assert_eq!(
                wire,
                serde_json::to_string(&input).expect("serialize"),
                "{input:?}"
            );
        }
    }
    // Both paths were exercised.
    assert!(
        (1000..9000).contains(&fast_paths),
        "{fast_paths} fast paths"
    );
}

#[test]
fn json_escapes_the_characters_serde_json_leaves_raw() {
    assert_eq!(
        json("a\u{9b}[31m\u{202E}\"\\\n\u{7F}"),
        br#""a\u009b[31m\u202e\"\\\u000a\u007f""#
    );
    assert_eq!(json("plain \"text\""), br#""plain \"text\"""#);
}

#[test]
fn the_log_shows_every_unsafe_char_as_an_escape_and_nothing_else_changed() {
    for c in every_char() {
        let text = format!("a{c}b");
        let logged = text::Loggable(&text).to_string();
        if unsafe_by_definition(c) {
            assert_eq!(logged, format!("a\\u{{{:04x}}}b", c as u32));
        } else {
            assert_eq!(logged, text);
        }
    }
}
