//! TLS configuration for [`Service::listen_tls`] and
//! [`Connections::connect_tls`] (the `tls` feature, on by default): rustls's
//! types, re-exported since you configure them, and helpers that load
//! certificates and keys from PEM files.
//!
//! The connection layer drives rustls itself, without I/O of its own, on the
//! transport seam (`src/service/tls_transport.rs`); the handler sees
//! plaintext either way. rustls is built with the `ring` provider only.
//!
//! [`Service::listen_tls`]: crate::service::Service::listen_tls
//! [`Connections::connect_tls`]: crate::service::Connections::connect_tls

use std::io;
use std::path::Path;
use std::sync::Arc;

pub use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
pub use rustls::{ClientConfig, RootCertStore, ServerConfig};

use rustls::pki_types::pem::PemObject;

/// Reads every certificate in a PEM file (a server's chain: its own first,
/// then the intermediates).
///
/// # Errors
///
/// - `NotFound` and the like if the file cannot be read;
/// - `InvalidData` if it holds no certificate or a malformed one.
pub fn load_certs(path: impl AsRef<Path>) -> io::Result<Vec<CertificateDer<'static>>> {
    let path = path.as_ref();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: no certificate in it", path.display()),
        ));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
///
/// # Errors
///
/// As for [`load_certs`]: unreadable, or no key in it.
pub fn load_private_key(path: impl AsRef<Path>) -> io::Result<PrivateKeyDer<'static>> {
    let path = path.as_ref();
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: no private key in it", path.display()),
        ),
        e => pem_error(path, e),
    })
}

/// A server configuration from a certificate chain and its key, in PEM
/// files, with rustls's safe defaults (TLS 1.2 and 1.3) and no client
/// authentication.
///
/// # Errors
///
/// As for [`load_certs`] and [`load_private_key`], and `InvalidInput` if the
/// key does not match the certificate or rustls refuses it.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// let config = reactor::tls::server_config("cert.pem", "key.pem")?;
/// # let _ = config;
/// # Ok(())
/// # }
/// ```
pub fn server_config(
    cert_path: impl AsRef<Path>,
    key_path: impl AsRef<Path>,
) -> io::Result<Arc<ServerConfig>> {
    let certs = load_certs(cert_path)?;
    let key = load_private_key(key_path)?;
    server_config_from(certs, key)
}

/// A server configuration from a certificate chain and key already in
/// memory (made by a test, say).
///
/// # Errors
///
/// `InvalidInput` if the key does not match the certificate or rustls
/// refuses it.
pub fn server_config_from(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<Arc<ServerConfig>> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(invalid_input)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(invalid_input)?;
    Ok(Arc::new(config))
}

/// A client configuration that verifies servers against the certificates in
/// the PEM file `ca` (a private CA, or a self-signed server certificate),
/// or against the system's trusted roots when `ca` is `None`.
///
/// # Errors
///
/// As for [`load_certs`]; `NotFound` if the system has no trusted roots
/// (and `ca` is `None`); `InvalidInput` if rustls refuses a certificate.
pub fn client_config(ca: Option<&Path>) -> io::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(invalid_input)?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no trusted root certificates found on this system",
                ));
            }
        }
    }
    client_config_with_roots(roots)
}

/// A client configuration that verifies servers against `roots`.
///
/// # Errors
///
/// `InvalidInput` if rustls refuses the configuration.
pub fn client_config_with_roots(roots: RootCertStore) -> io::Result<Arc<ClientConfig>> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(invalid_input)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The crypto provider every configuration here is built with: `ring`.
/// Naming it explicitly keeps rustls from having to choose at run time.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> io::Error {
    let kind = match &e {
        rustls::pki_types::pem::Error::Io(e) => e.kind(),
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, format!("{}: {e}", path.display()))
}

fn invalid_input(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}
