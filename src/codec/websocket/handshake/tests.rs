//! The handshake's rules, both sides.

use super::*;
use crate::http::{EMPTY_HEADER, Limits};

const GOOD: &str = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// The status `check_upgrade` gives the request `head` (plus a blank
/// line), or 101 when it accepts it.
fn status_of(head: &str) -> u16 {
    let bytes = format!("{head}\r\n");
    let mut fields = [EMPTY_HEADER; 32];
    let request = http::parse_request(bytes.as_bytes(), &mut fields, &Limits::default())
        .expect("valid HTTP")
        .expect("a whole head");
    match check_upgrade(&request) {
        Ok(_) => 101,
        Err(e) => e.status,
    }
}

#[test]
fn one_origin_as_text_or_none() {
    assert_eq!(status_of(&format!("{GOOD}Origin: http://a\r\n")), 101);
    let two = format!("{GOOD}Origin: http://a\r\nOrigin: http://evil.example\r\n");
    assert_eq!(status_of(&two), 400);
    // Not UTF-8: not taken for a missing one (which a program may send).
    let mut bytes = format!("{GOOD}Origin: http://evil.example").into_bytes();
    bytes.extend_from_slice(b"\xff\r\n\r\n");
    let mut fields = [EMPTY_HEADER; 32];
    let request = http::parse_request(&bytes, &mut fields, &Limits::default())
        .expect("valid HTTP")
        .expect("a whole head");
    assert_eq!(check_upgrade(&request).unwrap_err().status, 400);
    let request_ok = status_of(GOOD);
    assert_eq!(request_ok, 101, "no Origin at all: a program, accepted");
}

#[test]
fn good_handshakes_are_accepted() {
    assert_eq!(status_of(GOOD), 101);
    // Tokens without case, in lists, with other tokens.
    let variant = GOOD
        .replace("Upgrade: websocket", "upgrade: WebSocket")
        .replace("Connection: Upgrade", "Connection: keep-alive, upgrade");
    assert_eq!(status_of(&variant), 101);
    // permessage-deflate offered: accepted, and declined by silence.
    let offered = format!("{GOOD}Sec-WebSocket-Extensions: permessage-deflate\r\n");
    assert_eq!(status_of(&offered), 101);
    let mut out = Vec::new();
    write_accept(&mut out, "dGhlIHNhbXBsZSBub25jZQ==");
    assert!(
        !String::from_utf8(out)
            .unwrap()
            .to_ascii_lowercase()
            .contains("extensions")
    );
}

#[test]
fn every_bad_variant_is_refused() {
    let cases: &[(String, u16)] = &[
        (GOOD.replace("GET", "POST"), 400),
        (GOOD.replace("HTTP/1.1", "HTTP/1.0"), 400),
        (GOOD.replace("Upgrade: websocket\r\n", ""), 400),
        (GOOD.replace("Upgrade: websocket", "Upgrade: h2c"), 400),
        (
            GOOD.replace("Connection: Upgrade", "Connection: keep-alive"),
            400,
        ),
        (GOOD.replace("Connection: Upgrade\r\n", ""), 400),
        (
            GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            400,
        ),
        (
            GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="),
            400,
        ),
        (
            GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "not base64 at all!!!!!=="),
            400,
        ),
        (
            format!("{GOOD}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
            400,
        ),
        (GOOD.replace("Sec-WebSocket-Version: 13\r\n", ""), 426),
        (GOOD.replace("Version: 13", "Version: 8"), 426),
        (GOOD.replace("Version: 13", "Version: 13, 8"), 426),
        (format!("{GOOD}Sec-WebSocket-Version: 8\r\n"), 426),
    ];
    for (head, status) in cases {
        assert_eq!(status_of(head), *status, "{head:?}");
    }
}

#[test]
fn the_client_checks_the_answer() {
    let key = new_key();
    let check = |extra: &str, accept: &str| {
        let bytes = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
        );
        let mut fields = [EMPTY_HEADER; 16];
        let response =
            http::parse_response(bytes.as_bytes(), &mut fields, &Limits::default(), false)
                .unwrap()
                .unwrap();
        check_accept(&response, &key)
    };
    let right = accept_key(&key);
    assert_eq!(check("", &right), Ok(()));
    assert!(check("", &accept_key("dGhlIHNhbXBsZSBub25jZQ==")).is_err());
    assert!(check("Sec-WebSocket-Extensions: permessage-deflate\r\n", &right).is_err());
    let mut fields = [EMPTY_HEADER; 16];
    let bytes = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    let response = http::parse_response(bytes, &mut fields, &Limits::default(), false)
        .unwrap()
        .unwrap();
    assert_eq!(check_accept(&response, &key).unwrap_err().status, 400);
}

#[test]
fn a_request_we_write_is_one_we_accept() {
    let key = new_key();
    let mut bytes = Vec::new();
    write_request(
        &mut bytes,
        "localhost:9001",
        "/chat",
        &key,
        Some("http://localhost:9001"),
    );
    let mut fields = [EMPTY_HEADER; 16];
    let request = http::parse_request(&bytes, &mut fields, &Limits::default())
        .unwrap()
        .unwrap();
    let upgrade = check_upgrade(&request).unwrap();
    assert_eq!(upgrade.key, key);
    assert_eq!(upgrade.origin, Some("http://localhost:9001"));
    assert_ne!(new_key(), key);
}
