//! A tokio + tokio-rustls echo server written the usual way: a task per
//! connection, the handshake, then `read` into a buffer and `write_all` it
//! back.
//!
//! usage: tokio_tls_echo ADDR:PORT CERT.pem KEY.pem [current|multi]
//!
//! rustls 0.23 with the ring provider and its safe defaults, as the
//! reactor's `echo_server --tls-addr` uses. Prints `listening on ADDR`.

use std::io::Write;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The read buffer of each connection (a TLS record's worth).
const BUF: usize = 16 * 1024;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:10443".into());
    let cert = args.next().expect("CERT.pem");
    let key = args.next().expect("KEY.pem");
    let flavor = args.next().unwrap_or_else(|| "current".into());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(&key).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
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
            let Ok((socket, _)) = listener.accept().await else { continue };
            let _ = socket.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let mut buf = vec![0u8; BUF];
                loop {
                    let n = match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if tls.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    if tls.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}
