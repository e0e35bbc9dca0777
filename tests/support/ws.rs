//! A blocking WebSocket client for tests, on the crate's own codec in the
//! client role (masked frames out, unmasked frames in): the chat's browser
//! protocol, and the DevTools protocol that drives Chromium.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use reactor::codec::websocket::{self, Decoder, Limits, Message, Opcode, Role};
use reactor::http;

/// A message, owned (the decoder's borrow ends with each call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

pub struct WsClient {
    pub stream: TcpStream,
    decoder: Decoder,
    /// Bytes read but not yet decoded.
    input: Vec<u8>,
    /// A per-client masking key sequence (tests need no unpredictability).
    mask: u32,
}

/// The head of a refused handshake: status and the whole text.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub head: String,
}

impl WsClient {
    /// Opens a WebSocket to `addr` at `path`, sending `origin` if given.
    pub fn connect(
        addr: SocketAddr,
        path: &str,
        origin: Option<&str>,
    ) -> Result<WsClient, Refused> {
        let stream = super::connect(addr);
        WsClient::handshake(stream, &addr.to_string(), path, origin, 64 << 20)
    }

    /// The handshake on an open stream (the DevTools endpoint's host is a
    /// name, hence the separate `host`).
    pub fn handshake(
        mut stream: TcpStream,
        host: &str,
        path: &str,
        origin: Option<&str>,
        max_message: usize,
    ) -> Result<WsClient, Refused> {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let key = websocket::new_key();
        let mut request = Vec::new();
        websocket::write_request(&mut request, host, path, &key, origin);
        stream.write_all(&request).unwrap();
        let mut input = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).expect("handshake response");
            assert!(n > 0, "closed during the handshake");
            input.extend_from_slice(&chunk[..n]);
            let mut fields = [http::EMPTY_HEADER; 32];
            match http::parse_response(&input, &mut fields, &http::Limits::default(), false) {
                Ok(None) => continue,
                Ok(Some(response)) => {
                    let head_len = response.head_len;
                    if response.status != 101 {
                        return Err(Refused {
                            status: response.status,
                            head: String::from_utf8_lossy(&input).into_owned(),
                        });
                    }
                    websocket::check_accept(&response, &key).expect("a valid accept");
                    let rest = input[head_len..].to_vec();
                    let limits = Limits { max_message };
                    return Ok(WsClient {
                        stream,
                        decoder: Decoder::new(Role::Client, limits),
                        input: rest,
                        mask: 0x1234_5678,
                    });
                }
                Err(e) => panic!("bad response head: {e:?}"),
            }
        }
    }

    fn next_mask(&mut self) -> [u8; 4] {
        self.mask = self.mask.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        self.mask.to_be_bytes()
    }

    pub fn send(&mut self, opcode: Opcode, payload: &[u8]) {
        let mask = self.next_mask();
        let mut frame = Vec::with_capacity(payload.len() + 14);
        websocket::write_frame(&mut frame, opcode, payload, Some(mask));
        self.stream.write_all(&frame).unwrap();
    }

    pub fn send_text(&mut self, text: &str) {
        self.send(Opcode::Text, text.as_bytes());
    }

    pub fn send_json(&mut self, value: &serde_json::Value) {
        self.send_text(&value.to_string());
    }

    /// Writes raw bytes (a hand-made frame).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next message, or None at the end of the stream.
    pub fn recv(&mut self) -> io::Result<Option<Received>> {
        loop {
            match self.decoder.decode(&self.input) {
                Ok((used, message)) => {
                    let owned = message.map(|m| match m {
                        Message::Text(t) => Received::Text(t.to_string()),
                        Message::Binary(b) => Received::Binary(b.to_vec()),
                        Message::Ping(b) => Received::Ping(b.to_vec()),
                        Message::Pong(b) => Received::Pong(b.to_vec()),
                        Message::Close(code, reason) => Received::Close(code, reason.to_string()),
                    });
                    self.input.drain(..used);
                    if let Some(message) = owned {
                        return Ok(Some(message));
                    }
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} ({})", e.reason, e.code),
                    ));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(None);
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next message; the end of the stream or bad frames fail the test.
    #[track_caller]
    pub fn next(&mut self) -> Received {
        match self.recv() {
            Ok(Some(message)) => message,
            Ok(None) => panic!("the server closed the connection"),
            Err(e) => panic!("bad frames from the server: {e}"),
        }
    }

    /// The server sends a close frame with `code`, then closes the
    /// connection.
    #[track_caller]
    pub fn expect_closed_with(&mut self, code: u16) {
        assert_eq!(self.expect_close(), Some(code));
        assert!(
            super::closed_within(&mut self.stream, Duration::from_secs(10)),
            "the server did not close the connection after its close frame"
        );
    }

    /// The next text message as JSON, answering pings on the way.
    #[track_caller]
    pub fn next_json(&mut self) -> serde_json::Value {
        loop {
            match self.recv().expect("a message") {
                Some(Received::Text(text)) => {
                    return serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
                }
                Some(Received::Ping(payload)) => self.send(Opcode::Pong, &payload),
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// Reads until the server's close frame; returns its code.
    #[track_caller]
    pub fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.recv() {
                Ok(Some(Received::Close(code, _))) => return code,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a close frame"),
                Err(e) => panic!("while waiting for a close frame: {e}"),
            }
        }
    }
}
