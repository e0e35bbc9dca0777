//! A chat server built like tokio's chat example
//! (tokio/examples/chat.rs): shared state behind a mutex, an unbounded
//! channel per peer, a task per peer that writes each message it is sent
//! as soon as it receives it. It speaks chat_server's line protocol (name
//! prompt, `welcome to lobby, NAME`, `NAME joined lobby`, `NAME: text`), so
//! `loadgen chat` drives both.
//!
//! usage: tokio_chat [ADDR:PORT]   (default 127.0.0.1:10300)
//!
//! Runs on tokio's current_thread runtime, like the reactor. Prints
//! `listening on ADDR`.

mod shared;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};
use tokio_util::codec::{Framed, LinesCodec};

use shared::{Rx, Shared, Tx};

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:10300".into());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let state = Arc::new(Mutex::new(Shared { peers: HashMap::new() }));
        let listener = TcpListener::bind(&addr).await.expect("bind");
        println!("listening on {}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        loop {
            let Ok((stream, addr)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let _ = process(state, stream, addr).await;
            });
        }
    });
}

async fn process(state: Arc<Mutex<Shared>>, stream: TcpStream, addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let mut lines = Framed::new(stream, LinesCodec::new());
    // The prompt (LinesCodec ends every line it sends with a newline).
    lines.send("Enter your name: ").await?;
    let Some(Ok(name)) = lines.next().await else { return Ok(()) };
    let (tx, mut rx): (Tx, Rx) = mpsc::unbounded_channel();
    {
        let mut state = state.lock().await;
        state.peers.insert(addr, tx);
        state.broadcast(addr, &format!("{name} joined lobby"));
    }
    lines.send(format!("welcome to lobby, {name}")).await?;
    loop {
        tokio::select! {
            // A message for this peer: written at once, one write each.
            Some(message) = rx.recv() => {
                lines.send(&message).await?;
            }
            result = lines.next() => match result {
                Some(Ok(text)) => {
                    let mut state = state.lock().await;
                    state.broadcast(addr, &format!("{name}: {text}"));
                }
                _ => break,
            },
        }
    }
    let mut state = state.lock().await;
    state.peers.remove(&addr);
    state.broadcast(addr, &format!("{name} left lobby"));
    Ok(())
}
