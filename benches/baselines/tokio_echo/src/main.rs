//! A tokio echo server written the usual way: a task per connection,
//! `read` into a buffer, `write_all` it back.
//!
//! usage: tokio_echo [ADDR:PORT] [current|multi]   (default 127.0.0.1:10200 current)
//!
//! `current` is tokio's current_thread runtime (one thread, like the
//! reactor); `multi` its multi_thread runtime. Prints `listening on ADDR`.

use std::io::Write;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The read buffer of each connection.
const BUF: usize = 4096;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:10200".into());
    let flavor = args.next().unwrap_or_else(|| "current".into());
    let runtime = match flavor.as_str() {
        "current" => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        "multi" => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        other => panic!("unknown flavor {other}: current or multi"),
    }
    .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        println!("listening on {}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { continue };
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; BUF];
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if socket.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}
