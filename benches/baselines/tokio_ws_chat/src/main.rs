//! tokio's chat example (tokio/examples/chat.rs) ported to WebSocket with
//! tokio-tungstenite: shared state behind a mutex, an unbounded channel per
//! peer, and a task per peer that `send`s (writes and flushes) each message
//! it is sent as soon as it receives it, as the example does.
//!
//! It speaks chat_server's JSON-over-WebSocket protocol (`GET /ws`, one
//! JSON object per text message): `{"type":"welcome",...}` first, then the
//! client's `{"type":"join","room":R,"username":N}` (only the room `lobby`
//! exists here), `{"type":"notification","message":"N joined lobby"}` to
//! everyone, and each `{"type":"chat","message":T}` reaches the others as
//! `{"type":"chat","username":N,"room":"lobby","message":T}`. So
//! `loadgen chat --ws` drives this and `chat_server --web-addr` alike.
//!
//! usage: tokio_ws_chat [ADDR:PORT] [--batch]   (default 127.0.0.1:10400)
//!
//! `--batch`: the honest variant. A peer's task `feed`s every message its
//! channel holds, then flushes once, instead of one flush (one write
//! system call) per message.
//!
//! Runs on tokio's current_thread runtime, like the reactor. Prints
//! `listening on ADDR`.

#[path = "../../tokio_chat/src/shared.rs"]
mod shared;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use shared::{Rx, Shared, Tx};

const WELCOME: &str = r#"{"type":"welcome","message":"Welcome! Send {\"type\": \"join\", \"room\": \"roomname\", \"username\": \"your_name\"}"}"#;

fn main() {
    let mut addr = "127.0.0.1:10400".to_string();
    let mut batch = false;
    for arg in std::env::args().skip(1) {
        if arg == "--batch" {
            batch = true;
        } else {
            addr = arg;
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let state = Arc::new(Mutex::new(Shared { peers: HashMap::new() }));
        let listener = TcpListener::bind(&addr).await.expect("bind");
        let local = listener.local_addr().unwrap();
        println!("listening on {local}{}", if batch { " (batched flushes)" } else { "" });
        std::io::stdout().flush().unwrap();
        let origin: Arc<str> = format!("http://{local}").into();
        loop {
            let Ok((stream, addr)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let state = Arc::clone(&state);
            let origin = Arc::clone(&origin);
            tokio::spawn(async move {
                let _ = process(state, stream, addr, &origin, batch).await;
            });
        }
    });
}

/// The handshake's checks, as chat_server makes them: the path is `/ws`,
/// and an `Origin`, if sent, is this listener's own.
fn check(origin: &str, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
    let refuse = |status: StatusCode| {
        let mut refusal = ErrorResponse::new(None);
        *refusal.status_mut() = status;
        Err(refusal)
    };
    if request.uri().path() != "/ws" {
        return refuse(StatusCode::NOT_FOUND);
    }
    match request.headers().get("origin") {
        Some(sent) if sent.as_bytes() != origin.as_bytes() => refuse(StatusCode::FORBIDDEN),
        _ => Ok(response),
    }
}

/// `"text"` as a JSON string, escaped.
fn json_string(text: &str) -> String {
    Value::from(text).to_string()
}

/// A text message's JSON object, if it is one.
fn parse(message: &Message) -> Option<serde_json::Map<String, Value>> {
    match message {
        Message::Text(text) => match serde_json::from_str(text.as_str()) {
            Ok(Value::Object(fields)) => Some(fields),
            _ => None,
        },
        _ => None,
    }
}

async fn process(
    state: Arc<Mutex<Shared>>,
    stream: TcpStream,
    addr: SocketAddr,
    origin: &str,
    batch: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut ws = tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp| check(origin, req, resp)).await?;
    ws.send(Message::text(WELCOME)).await?;
    // Nothing but a join is taken before the user has a name.
    let name = loop {
        let Some(message) = ws.next().await else { return Ok(()) };
        let Some(fields) = parse(&message?) else { continue };
        if fields.get("type").and_then(Value::as_str) == Some("join") {
            if let Some(name) = fields.get("username").and_then(Value::as_str) {
                break name.to_string();
            }
        }
    };
    let (tx, mut rx): (Tx, Rx) = mpsc::unbounded_channel();
    let joined = format!(r#"{{"type":"notification","message":{}}}"#, json_string(&format!("{name} joined lobby")));
    {
        let mut state = state.lock().await;
        state.peers.insert(addr, tx);
        state.broadcast(addr, &joined);
    }
    ws.send(Message::text(joined)).await?;
    let quoted_name = json_string(&name);
    loop {
        tokio::select! {
            // A message for this peer.
            Some(message) = rx.recv() => {
                if batch {
                    // Everything queued goes into the socket's buffer, then one flush.
                    ws.feed(Message::text(message)).await?;
                    while let Ok(more) = rx.try_recv() {
                        ws.feed(Message::text(more)).await?;
                    }
                    ws.flush().await?;
                } else {
                    // The example's way: written and flushed at once, one write each.
                    ws.send(Message::text(message)).await?;
                }
            }
            result = ws.next() => match result {
                Some(Ok(message)) => {
                    if message.is_close() {
                        break;
                    }
                    let Some(fields) = parse(&message) else { continue };
                    if fields.get("type").and_then(Value::as_str) != Some("chat") {
                        continue;
                    }
                    let Some(text) = fields.get("message").and_then(Value::as_str) else { continue };
                    let chat = format!(
                        r#"{{"type":"chat","username":{quoted_name},"room":"lobby","message":{}}}"#,
                        json_string(text)
                    );
                    let mut state = state.lock().await;
                    state.broadcast(addr, &chat);
                }
                _ => break,
            },
        }
    }
    let mut state = state.lock().await;
    state.peers.remove(&addr);
    let left = format!(r#"{{"type":"notification","message":{}}}"#, json_string(&format!("{name} left lobby")));
    state.broadcast(addr, &left);
    Ok(())
}
